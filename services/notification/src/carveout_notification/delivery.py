"""Deliver queued notifications: signed webhooks and email, retried from a persisted schedule.

Every attempt's outcome is stored before the next is made, so a restart resumes the
schedule where it was. Replicas share the store: a notification is attempted only while
pending and only by the replica holding its claim (:mod:`.claims`), one task at a time, and
its outcome is recorded only while that claim is still held, so each (event, subscription)
is delivered at most once. A replica that dies is taken over when its leases run out;
receivers can also dedupe by the ``webhook-id`` header, which is the notification id.

No receiver can hold up anyone else's deliveries: each attempt runs as a task of its own
(at most ``delivery_concurrency`` at once), under a total deadline over resolving,
connecting, sending and the whole answer, and the loop that starts attempts never waits
for one to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client import Counter

from carveout_contracts import Envelope, codec
from carveout_contracts.common import utcnow
from carveout_runtime import telemetry
from carveout_runtime.addresses import (
    AddressRefused,
    HostUnresolved,
    Resolver,
    WebhookTarget,
    check_webhook_address,
    system_resolver,
)
from carveout_runtime.retries import wait_set, with_retries

from .claims import Lease
from .domain import Subscription, retry_delay
from .errors import DeliveryFailed, Undeliverable
from .held import HeldClaims
from .mail import send_email
from .outcomes import Announcer, outcome_event
from .settings import NotificationSettings
from .starting import take_due
from .store import NotificationRecord, NotificationStore
from .webhooks import receiver_of, send_webhook

log = logging.getLogger("carveout.notification.delivery")
DELIVERIES = Counter(
    "carveout_deliveries",
    "Notification delivery attempts, by channel and outcome (delivered, retried, failed).",
    ["channel", "outcome"],
)


class Deliverer:
    def __init__(
        self,
        store: NotificationStore,
        settings: NotificationSettings,
        publish: Callable[[Envelope], Awaitable[None]],
        *,
        resolve: Resolver = system_resolver,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.publish = publish
        self.resolve = resolve
        self.clock = clock
        self._wake = asyncio.Event()
        self._http: httpx.AsyncClient | None = None
        self._rng = random.Random()
        self.claims = HeldClaims(store, settings.replica, Lease(settings.lease_seconds), clock)
        self._announcer = Announcer(store, publish, self.claims)
        self._first_round = True
        self._unrecorded: dict[str, dict[str, Any]] = {}
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._receivers: Tally[str] = Tally()
        """Attempts in flight by webhook host (see :func:`receiver_of`)."""
        # Name resolution blocks a thread; its own pool, as large as the attempts in flight,
        # so a slow DNS server can occupy neither the store's threads nor more than that.
        self._resolving = ThreadPoolExecutor(
            max_workers=settings.delivery_concurrency, thread_name_prefix="resolve"
        )
        self.last_error: str | None = None

    @property
    def announce_error(self) -> str | None:
        return self._announcer.error

    def wake(self) -> None:
        self._wake.set()

    def in_flight(self) -> set[str]:
        """Notification ids with an attempt under way."""
        return set(self._in_flight)

    async def run(self) -> None:
        """Start what is due, round after round; a failing round is retried with backoff.

        A store that is briefly unavailable delays deliveries; it never stops them.
        """
        if self._http is None:
            self._http = httpx.AsyncClient(
                # a backstop only: the deadline of each attempt is what bounds it
                timeout=self.settings.delivery_deadline_seconds,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=self.settings.delivery_concurrency),
            )
        backoff = 0.1
        try:
            while True:
                try:
                    wait = await self._round()
                    self.last_error = self._recording_problem()
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
                    await wait_set(self._wake, wait)
        finally:
            await self.stop_attempts()
            # Others take over the attempts stopped at once, not when their leases run out;
            # an accepted delivery not recorded yet stays claimed, so none sends it again.
            with contextlib.suppress(Exception):
                self.claims.release([n for n in self.claims.leases if n not in self._unrecorded])
            await self._http.aclose()
            self._resolving.shutdown(wait=False, cancel_futures=True)

    async def stop_attempts(self) -> None:
        """Cancel the attempts in flight; each stays pending in the store, to be made again."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _round(self) -> float | None:
        """Start the attempts due now; else how long to wait (``None``: look again at once).

        Never waits for an attempt: an attempt in flight (or whose outcome the store has not
        taken yet) is left out of what is due, so it is never started a second time, and
        its task wakes the loop when it ends.
        """
        self._wake.clear()
        if self._first_round:
            # Claims its previous process left under this replica's id: free for anyone now.
            self.claims.release()
            await self.announce_pending()
            self._first_round = False
        for lost in self.claims.renew_due():
            self._lost(lost)
        for notification_id, outcome in list(self._unrecorded.items()):
            if notification_id in self._in_flight:
                continue  # its own attempt is storing it
            # Each on its own: one outcome the store keeps refusing holds up no other
            # outcome and no delivery; it stays in ``_unrecorded`` for the next round.
            try:
                await self._finish(notification_id, **outcome)
            except Exception as exc:
                log.error("outcome of %s still not recorded: %s", notification_id, exc)
        self.last_error = self._recording_problem()
        busy = set(self._in_flight) | set(self._unrecorded)
        room = self.settings.delivery_concurrency - len(self._in_flight)
        held_back = False
        if room > 0:
            # Store calls in a worker thread: on the loop they left its consumers a few
            # records a second (measured under chaos).
            share, receivers = self.settings.delivery_per_receiver, dict(self._receivers)
            starts = await asyncio.to_thread(
                take_due, self.store, self.claims, self.clock(), room, busy, receivers, share
            )
            for n in starts.notifications:
                self._start(n, starts.subscriptions.get(n.subscription_id))
            if starts.notifications:
                return None
            held_back = starts.any_due
        await self.announce_pending()
        # Back before the claims held are due for renewal, whatever else wakes the loop.
        wait = min(self.settings.delivery_poll_seconds, self.claims.lease.check_every)
        if room <= 0 or held_back:
            return wait  # until an attempt ends and wakes us (or another replica won them)
        upcoming = await asyncio.to_thread(self.store.next_due_at, busy)
        if upcoming is not None:
            wait = min(wait, max(0.0, (upcoming - self.clock()).total_seconds()))
        return wait

    def _start(self, n: NotificationRecord, subscription: Subscription | None) -> None:
        task = asyncio.create_task(
            self.attempt(n, subscription), name=f"deliver {n.notification_id}"
        )
        self._in_flight[n.notification_id] = task
        receiver = receiver_of(n)
        if receiver is not None:
            self._receivers[receiver] += 1
        task.add_done_callback(lambda t: self._ended(n.notification_id, t, receiver))

    def _ended(
        self, notification_id: str, task: asyncio.Task[None], receiver: str | None = None
    ) -> None:
        self._in_flight.pop(notification_id, None)
        if receiver is not None:
            self._receivers[receiver] -= 1
            if self._receivers[receiver] <= 0:
                del self._receivers[receiver]
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Only storing the outcome can fail here; it is kept in ``_unrecorded`` and the
            # next round retries it (and says so in ``last_error`` while it fails).
            self.last_error = self._recording_problem() or "a delivery attempt failed"
            log.error("delivery %s could not record its outcome: %s", notification_id, exc)
        self._wake.set()

    def _recording_problem(self) -> str | None:
        """What readiness is told while outcomes wait for the store (no exception text)."""
        if self._unrecorded:
            return f"{len(self._unrecorded)} delivery outcome(s) not recorded yet"
        return None

    def _lost(self, notification_id: str) -> None:
        """Taken over by another replica (this one stalled past the lease): abandoned here."""
        log.warning("notification %s was taken over by another replica", notification_id)
        self._unrecorded.pop(notification_id, None)
        if (task := self._in_flight.get(notification_id)) is not None:
            task.cancel()

    async def _finish(self, notification_id: str, **outcome: Any) -> bool:
        """Store an attempt's outcome, retrying while the store is briefly unavailable;
        says whether it was stored (not if another replica took the notification over).

        After an accepted delivery this is what stops a second one: it is retried rather
        than given up at the first error.
        """
        until = self.claims.until()
        try:
            recorded = await with_retries(
                lambda: self.store.finish_attempt(
                    notification_id, replica=self.claims.replica, until=until, **outcome
                ),
                attempts=self.settings.store_retry_attempts,
                health=None,  # not a consumer: bounded, the outcome is kept until stored
                what="recording a delivery attempt",
                in_thread=True,
            )
        except Exception:
            # Kept until the store takes it; meanwhile the notification, still pending in
            # the store, is not attempted again.
            self._unrecorded[notification_id] = outcome
            raise
        self._unrecorded.pop(notification_id, None)
        if recorded and outcome["status"] != "pending" and outcome.get("outcome_event"):
            self.claims.kept([notification_id], until)  # held until its outcome is published
        else:
            self.claims.ended([notification_id])
        if not recorded:
            log.warning("outcome of %s not recorded: another replica holds it", notification_id)
        return bool(recorded)

    async def attempt(self, n: NotificationRecord, subscription: Subscription | None) -> None:
        """One delivery attempt, in a span continuing the trace of the event it tells of;
        the notification is claimed first unless this replica holds it already."""
        if n.notification_id not in self.claims and not self.claims.claim([n.notification_id]):
            log.info("notification %s is another replica's to attempt", n.notification_id)
            return
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
        now = self.clock()
        attempts = n.attempts + 1
        try:
            if subscription is None:
                raise Undeliverable(f"subscription {n.subscription_id} no longer exists")
            if n.channel == "webhook":
                await self._webhook(n, subscription, now)
            else:
                await send_email(n, self.settings)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            if isinstance(exc, TimeoutError):
                error = (
                    f"no complete answer within the deadline of "
                    f"{self.settings.delivery_deadline_seconds:g}s"
                )
            if isinstance(exc, Undeliverable) or attempts >= self.settings.delivery_max_attempts:
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
        await self._accepted(n, attempts, now)

    async def _accepted(self, n: NotificationRecord, attempts: int, now: datetime) -> None:
        """Record a delivery the receiver accepted; nothing here can lead to another attempt.

        The outcome is kept in ``_unrecorded`` first, so whatever fails after it (making the
        outcome event, storing it) leaves the notification out of what is due until a
        round stores it.
        """
        outcome: dict[str, Any] = {
            "status": "delivered",
            "attempts": attempts,
            "next_attempt_at": None,
            "error": None,
            "at": now,
        }
        self._unrecorded[n.notification_id] = outcome
        DELIVERIES.labels(n.channel, "delivered").inc()
        try:
            event = outcome_event(n, "delivered", attempts, now, None)
            outcome["outcome_event"] = codec.encode_value(event).decode()
        except Exception as exc:  # recorded as delivered all the same, never sent again
            log.error("notification %s: no outcome event could be made: %s", n.notification_id, exc)
        await self._finish(n.notification_id, **outcome)
        try:
            await self.announce_pending()
        except Exception as exc:  # recorded: announced by a later round
            log.error("could not announce the outcome of %s yet: %s", n.notification_id, exc)

    async def _target(self, address: str) -> WebhookTarget:
        """The webhook's host resolved once and every address checked; refused ones fail."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._resolving,
                lambda: check_webhook_address(address, self.settings.allow_networks, self.resolve),
            )
        except HostUnresolved as exc:
            raise DeliveryFailed(str(exc)) from None  # DNS may answer later: retried
        except AddressRefused as exc:
            raise Undeliverable(str(exc)) from None

    async def _webhook(
        self, n: NotificationRecord, subscription: Subscription, now: datetime
    ) -> None:
        assert self._http is not None
        await send_webhook(
            self._http,
            n,
            subscription,
            now,
            deadline=self.settings.delivery_deadline_seconds,
            target_of=self._target,
        )

    async def announce_pending(self) -> int:
        """Publish the outcome events stored and not yet published that this replica holds
        or takes over; returns how many (see :class:`~.outcomes.Announcer`).

        Called after each final outcome, at start-up and between rounds: an outcome whose
        announcement a crash or a broker failure interrupted is published later, with the
        same event id.
        """
        return await self._announcer()
