"""A notification, its delivery and the outcome event continue the trace of what it tells of
(tracing off: no spans, the ``traceparent`` is passed on as it came)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from carveout_contracts import Envelope
from carveout_notification.delivery import Deliverer
from carveout_runtime import telemetry

from .conftest import NotificationHarness, golden_bytes

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_delivery_and_its_outcome_event_continue_the_trace_of_the_event(
    notification: NotificationHarness,
) -> None:
    await notification.publish(golden_bytes("grant.issued"), traceparent=TRACEPARENT)
    store = notification.context.store
    queued = store.due(datetime.now(UTC) + timedelta(days=1))
    assert queued
    assert {n.traceparent for n in queued} == {TRACEPARENT}

    seen: list[tuple[str, str | None]] = []

    async def publish(event: Envelope) -> None:
        seen.append((event.type, telemetry.kafka_headers()["traceparent"]))

    settings = notification.context.settings.model_copy(update={"delivery_max_attempts": 1})
    deliverer = Deliverer(store, settings, publish)
    await deliverer.attempt(queued[0], None)  # its subscription is gone: failed for good
    assert seen == [("notification.failed", TRACEPARENT)]
