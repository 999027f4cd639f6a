"""Deliver queued notifications: signed webhooks and email, retried from a persisted schedule.

Every attempt's outcome is stored before the next is made, so a restart resumes the
schedule where it was. A notification is attempted only while pending, by one worker, so
each (event, subscription) is delivered at most once; receivers can also dedupe by the
``webhook-id`` header, which is the notification id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import smtplib
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
from prometheus_client import Counter

from carveout_contracts import (
    Envelope,
    NotificationDelivered,
    NotificationFailed,
    codec,
    telemetry,
    topics,
)
from carveout_contracts.runtime import with_retries

from .domain import NAMESPACE, Subscription, retry_delay, sign
from .settings import NotificationSettings
from .store import NotificationRecord, NotificationStore

log = logging.getLogger("carveout.notification.delivery")
DELIVERIES = Counter(
    "carveout_deliveries",
    "Notification delivery attempts, by channel and outcome (delivered, retried, failed).",
    ["channel", "outcome"],
)


class DeliveryFailed(Exception):
    pass


class Deliverer:
    def __init__(
        self,
        store: NotificationStore,
        settings: NotificationSettings,
        publish: Callable[[Envelope], Awaitable[None]],
    ) -> None:
        self.store = store
        self.settings = settings
        self.publish = publish
        self._wake = asyncio.Event()
        self._http: httpx.AsyncClient | None = None
        self._rng = random.Random()
        self._announcing = asyncio.Lock()
        self._first_round = True
        self._unrecorded: dict[str, dict[str, Any]] = {}
        self.announce_error: str | None = None
        self.last_error: str | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Deliver what is due, round after round; a failing round is retried with backoff.

        A store that is briefly unavailable delays deliveries; it never stops them.
        """
        self._http = httpx.AsyncClient(timeout=self.settings.webhook_timeout_seconds)
        limit = asyncio.Semaphore(16)
        backoff = 0.1
        try:
            while True:
                try:
                    wait = await self._round(limit)
                    self.last_error = None
                    backoff = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.error("delivery round failed, retrying in %.1fs: %s", backoff, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if wait is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            await self._http.aclose()

    async def _round(self, limit: asyncio.Semaphore) -> float | None:
        """Attempt what is due now; else how long to wait for the next (``None``: go on)."""
        if self._first_round:
            await self.announce_pending()
            self._first_round = False
        for notification_id, outcome in list(self._unrecorded.items()):
            await self._finish(notification_id, **outcome)  # raises while the store is down
        due = self.store.due(datetime.now(UTC))
        if due:
            subscriptions = {s.subscription_id: s for s in self.store.subscriptions()}
            # Every attempt of the round ends before the next round reads what is due, so
            # an attempt in flight is never started a second time.
            results = await asyncio.gather(
                *(self._limited(limit, n, subscriptions.get(n.subscription_id)) for n in due),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            return None
        self._wake.clear()
        await self.announce_pending()
        upcoming = self.store.next_due_at()
        wait = self.settings.delivery_poll_seconds
        if upcoming is not None:
            wait = min(wait, max(0.0, (upcoming - datetime.now(UTC)).total_seconds()))
        return wait

    async def _finish(self, notification_id: str, **outcome: Any) -> None:
        """Store an attempt's outcome, retrying while the store is briefly unavailable.

        After an accepted delivery this is what stops a second one: it is retried rather
        than given up at the first error.
        """
        try:
            await with_retries(
                lambda: self.store.finish_attempt(notification_id, **outcome),
                attempts=self.settings.store_retry_attempts,
                what="recording a delivery attempt",
                in_thread=True,
            )
        except Exception:
            # Kept until the store takes it; meanwhile the notification, still pending in
            # the store, is not attempted again.
            self._unrecorded[notification_id] = outcome
            raise
        self._unrecorded.pop(notification_id, None)

    async def _limited(
        self, limit: asyncio.Semaphore, n: NotificationRecord, subscription: Subscription | None
    ) -> None:
        async with limit:
            await self.attempt(n, subscription)

    async def attempt(self, n: NotificationRecord, subscription: Subscription | None) -> None:
        """One delivery attempt, in a span continuing the trace of the event it tells of."""
        with telemetry.continue_trace(
            f"deliver {n.event_type}",
            n.traceparent,
            attributes={
                "carveout.notification_id": n.notification_id,
                "carveout.event_id": n.event_id,
                "carveout.channel": n.channel,
                "carveout.attempt": n.attempts + 1,
            },
        ):
            await self._attempt(n, subscription)

    async def _attempt(self, n: NotificationRecord, subscription: Subscription | None) -> None:
        now = datetime.now(UTC)
        attempts = n.attempts + 1
        try:
            if subscription is None:
                raise DeliveryFailed(f"subscription {n.subscription_id} no longer exists")
            if n.channel == "webhook":
                await self._webhook(n, subscription)
            else:
                await asyncio.to_thread(self._email, n)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            if attempts >= self.settings.delivery_max_attempts:
                DELIVERIES.labels(n.channel, "failed").inc()
                outcome = outcome_event(n, "failed", attempts, now, error)
                await self._finish(
                    n.notification_id,
                    status="failed",
                    attempts=attempts,
                    next_attempt_at=None,
                    error=error,
                    at=now,
                    outcome_event=codec.encode_value(outcome).decode(),
                )
                log.warning("notification %s failed for good: %s", n.notification_id, error)
                await self.announce_pending()
            else:
                DELIVERIES.labels(n.channel, "retried").inc()
                delay = retry_delay(
                    attempts,
                    self.settings.retry_base_seconds,
                    self.settings.retry_cap_seconds,
                    self._rng.random(),
                )
                await self._finish(
                    n.notification_id,
                    status="pending",
                    attempts=attempts,
                    next_attempt_at=now + timedelta(seconds=delay),
                    error=error,
                    at=now,
                )
            return
        DELIVERIES.labels(n.channel, "delivered").inc()
        outcome = outcome_event(n, "delivered", attempts, now, None)
        await self._finish(
            n.notification_id,
            status="delivered",
            attempts=attempts,
            next_attempt_at=None,
            error=None,
            at=now,
            outcome_event=codec.encode_value(outcome).decode(),
        )
        await self.announce_pending()

    async def _webhook(self, n: NotificationRecord, subscription: Subscription) -> None:
        assert self._http is not None
        body = n.payload.encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": n.notification_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(
                subscription.secret or "", n.notification_id, timestamp, body
            ),
        }
        response = await self._http.post(n.address, content=body, headers=headers)
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"webhook answered {response.status_code}")

    def _email(self, n: NotificationRecord) -> None:
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = n.address
        message["Subject"] = f"Carveout: {n.event_type}"
        message["Message-ID"] = f"<{n.notification_id}@carveout>"
        message.set_content(n.payload)
        with smtplib.SMTP(
            self.settings.smtp_host, self.settings.smtp_port, timeout=self.settings.smtp_timeout
        ) as smtp:
            smtp.send_message(message)

    async def announce_pending(self) -> int:
        """Publish the outcome events stored and not yet published; returns how many.

        Called after each final outcome, at start-up and between rounds: an outcome whose
        announcement a crash or a broker failure interrupted is published later, with the
        same event id.
        """
        if self._announcing.locked():
            return 0
        total = 0
        async with self._announcing:
            while pending := self.store.unannounced():
                contexts = self.store.traceparents([nid for nid, _ in pending])
                try:
                    for nid, value in pending:
                        event = codec.decode(topics.NOTIFICATIONS, value)
                        # in the trace of the event the notification told of
                        with telemetry.continue_trace(f"announce {event.type}", contexts.get(nid)):
                            await self.publish(event)
                except Exception as exc:
                    self.announce_error = f"{type(exc).__name__}: {exc}"
                    log.error("could not announce a notification outcome, will retry: %s", exc)
                    break
                self.announce_error = None
                self.store.mark_announced([nid for nid, _ in pending], datetime.now(UTC))
                total += len(pending)
        return total


def outcome_event(
    n: NotificationRecord, outcome: str, attempts: int, at: datetime, error: str | None
) -> Envelope:
    """``notification.delivered`` or ``.failed``, with an id derived from the notification."""
    common: dict[str, Any] = {
        "notification_id": n.notification_id,
        "subscription_id": n.subscription_id,
        "source_event_id": n.event_id,
        "source_event_type": n.event_type,
        "channel": n.channel,
        "address": n.address,
        "attempts": attempts,
    }
    event_id = uuid.uuid5(NAMESPACE, f"{n.notification_id}/{outcome}")
    if outcome == "delivered":
        return NotificationDelivered.model_validate(
            {
                "event_id": event_id,
                "producer": "notification",
                "data": {**common, "delivered_at": at},
            }
        )
    return NotificationFailed.model_validate(
        {
            "event_id": event_id,
            "producer": "notification",
            "data": {**common, "failed_at": at, "error": error or "unknown"},
        }
    )
