"""A breach read before its grant's events are stored still reaches the grant's contacts.

``carveout.grants`` and ``carveout.breaches`` are read apart (and by different replicas),
so a breach can come in before the ``grant.issued`` that made its grant, which was on the
log first. The handler then waits until the grant events on the log are stored before it
tells anyone, as a replay (folding the log in order) would have them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from carveout_notification.handlers.grants import Notifier
from carveout_notification.store import NotificationStore
from carveout_runtime.inbound import Inbound
from carveout_runtime.retries import ConsumerHealth
from carveout_runtime.stores import make_engine

from .test_subscription_start import SUBSCRIBED_MS, contact_subscription, golden, heard


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NotificationStore]:
    made = NotificationStore(make_engine(f"sqlite:///{tmp_path}/notification.db"))
    yield made
    made.engine.dispose()


@dataclass
class GrantsConsumer:
    """The grants log as another consumer stores it: each wait lets it store one more
    event, and it has them all after ``rounds_to_store`` waits."""

    store_one: Callable[[], Awaitable[None]]
    rounds_to_store: int = 1
    waits: list[float] = field(default_factory=list)

    async def wait_caught_up(self, within_s: float) -> bool:
        self.waits.append(within_s)
        if len(self.waits) == self.rounds_to_store:
            await self.store_one()
            return True
        return False


async def test_a_breach_waits_for_its_grant_and_reaches_its_contacts(
    store: NotificationStore,
) -> None:
    issued = golden("grant.issued")
    plain = Notifier(store, retry_attempts=1)

    async def store_the_grant() -> None:
        await plain(issued, Inbound.at(SUBSCRIBED_MS))

    grants = GrantsConsumer(store_the_grant)
    notifier = Notifier(store, retry_attempts=1, grants_stored=grants, grants_sync_s=0.5)

    await notifier(golden("condition.breached"), Inbound.at(SUBSCRIBED_MS + 1))

    assert grants.waits == [0.5]
    assert heard(store, contact_subscription(store)) == ["condition.breached", "grant.issued"]


async def test_the_wait_is_shown_as_a_stall_on_the_grants_log_and_ends(
    store: NotificationStore,
) -> None:
    issued = golden("grant.issued")
    plain = Notifier(store, retry_attempts=1)
    health = ConsumerHealth("notification", "carveout.breaches")
    seen: list[str | None] = []

    async def store_the_grant() -> None:
        seen.append(health.describe())
        await plain(issued, Inbound.at(SUBSCRIBED_MS))

    grants = GrantsConsumer(store_the_grant, rounds_to_store=3)
    notifier = Notifier(store, retry_attempts=1, grants_stored=grants, grants_sync_s=0.01)
    inbound = Inbound("carveout.breaches", 0, 0, SUBSCRIBED_MS + 1, None, health=health)

    await notifier(golden("condition.breached"), inbound)

    assert len(grants.waits) == 3
    assert seen[0] is not None and "grants log" in seen[0]
    assert health.describe() is None
    assert "condition.breached" in heard(store, contact_subscription(store))


async def test_a_breach_of_a_known_grant_waits_for_nothing(store: NotificationStore) -> None:
    async def never() -> None:
        raise AssertionError("not waited on")

    grants = GrantsConsumer(never)
    notifier = Notifier(store, retry_attempts=1, grants_stored=grants)
    await notifier(golden("grant.issued"), Inbound.at(SUBSCRIBED_MS))
    await notifier(golden("condition.breached"), Inbound.at(SUBSCRIBED_MS + 1))

    assert grants.waits == []
    assert heard(store, contact_subscription(store)) == ["condition.breached", "grant.issued"]


async def test_a_broker_error_while_waiting_is_waited_out_not_a_failure(
    store: NotificationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker restarting while a breach waits: asked again, the breach still told."""
    from carveout_notification.handlers import grants as handler

    monkeypatch.setattr(handler, "ASK_AGAIN_S", 0)
    issued = golden("grant.issued")
    plain = Notifier(store, retry_attempts=1)

    class Restarting:
        asked = 0

        async def wait_caught_up(self, within_s: float) -> bool:
            self.asked += 1
            if self.asked == 1:
                raise ConnectionError("the broker is restarting")
            await plain(issued, Inbound.at(SUBSCRIBED_MS))
            return True

    grants = Restarting()
    notifier = Notifier(store, retry_attempts=1, grants_stored=grants)
    await notifier(golden("condition.breached"), Inbound.at(SUBSCRIBED_MS + 1))

    assert grants.asked == 2
    assert "condition.breached" in heard(store, contact_subscription(store))
