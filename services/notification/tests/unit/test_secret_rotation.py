"""A rotated secret: for 24 hours both the old and the new one sign, then only the new."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from carveout_notification.delivery import Deliverer
from carveout_notification.domain import Subscription, new_secret, rotate, signing_secrets
from carveout_notification.store import NotificationStore
from carveout_runtime.stores import make_engine
from tests.receivers import WebhookReceiver, signature_verifies

from .test_delivery_receivers import Published, queue, settings, subscribe

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NotificationStore]:
    made = NotificationStore(make_engine(f"sqlite:///{tmp_path}/notification.db"))
    yield made
    made.engine.dispose()


def test_the_old_secret_signs_for_24_hours_then_only_the_new() -> None:
    old, new = new_secret(), new_secret()
    subscription = Subscription(
        subscription_id="sub_1", channel="webhook", address="https://x", event_types=["*"],
        secret=old,
    )  # fmt: skip
    rotated = rotate(subscription, new, T0)
    assert signing_secrets(subscription, T0) == [old]
    assert signing_secrets(rotated, T0) == [new, old]
    assert signing_secrets(rotated, T0 + timedelta(hours=24) - timedelta(seconds=1)) == [new, old]
    assert signing_secrets(rotated, T0 + timedelta(hours=24)) == [new]
    twice = rotate(rotated, new_secret(), T0 + timedelta(hours=1))
    assert len(signing_secrets(twice, T0 + timedelta(hours=1))) == 2  # never more than two


async def test_deliveries_carry_both_signatures_until_the_old_secret_expires(
    store: NotificationStore,
) -> None:
    receiver = WebhookReceiver(failures=0)
    receiver.start()
    now = [T0 + timedelta(hours=1)]
    try:
        subscription = subscribe(store, "webhook", receiver.url)
        old = subscription.secret
        assert old is not None
        rotated = rotate(subscription, new_secret(), T0)
        store.replace_subscription(rotated)
        assert rotated.secret is not None
        deliverer = Deliverer(store, settings(), Published(), clock=lambda: now[0])

        async def deliver() -> None:
            async with httpx.AsyncClient() as client:
                deliverer._http = client
                n = queue(store, rotated)
                await deliverer.attempt(n, store.get_subscription(rotated.subscription_id))

        await deliver()
        now[0] = T0 + timedelta(hours=24, seconds=1)
        await deliver()
        within, after = receiver.deliveries
        assert len(within.signature.split()) == 2
        assert signature_verifies(within, old) and signature_verifies(within, rotated.secret)
        assert len(after.signature.split()) == 1
        assert signature_verifies(after, rotated.secret)
        assert not signature_verifies(after, old)
    finally:
        receiver.stop()
