"""Accesses the authorization endpoint records, published off the request path.

An answer must not wait for the broker, so a request with ``x-carveout-record: true``
leaves its access here and is answered at once; a background task publishes what is
pending on ``carveout.access``. The buffer is bounded: while it is full (the broker has
been unreachable for a while), requests that ask to be recorded are refused with 503
rather than answered without their record, and the gateway retries them; their event ids
come from the gateway and request ids, so a retry is recorded once. What fails to publish
stays pending, in order, and is tried again with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from carveout_contracts import AccessRecorded, AccessRecordedData, codec
from carveout_contracts.events.access import access_event_id

from ..access import AccessFacts
from .wire import Question

log = logging.getLogger("carveout.enforcement.authz")

PENDING = Gauge(
    "carveout_authz_records_pending",
    "Accesses the authorization endpoint recorded that are not yet on carveout.access",
)
REFUSED = Counter(
    "carveout_authz_records_refused",
    "Authorization requests refused (503) because the buffer of records to publish was full",
)

Publish = Callable[[bytes, bytes, dict[str, str]], Awaitable[Any]]
"""Publish a value on ``carveout.access`` with its key and headers; may give back a
confirmation to await (or ``None`` when there is none)."""

SHUTDOWN_FLUSH_S = 2.0
"""How long a stopping service still tries to publish what is pending."""


@dataclass(frozen=True, slots=True)
class Recording:
    """One access to record: what was asked, and when."""

    event_id: uuid.UUID
    occurred_at: float
    request_id: str
    facts: AccessFacts

    def value(self) -> bytes:
        facts = self.facts
        data = AccessRecordedData(request_id=self.request_id, **facts.as_data())
        event = AccessRecorded(
            event_id=self.event_id,
            occurred_at=datetime.fromtimestamp(self.occurred_at, UTC),
            producer=facts.gateway_id,
            key=facts.grantee_id,
            data=data,
        )
        return codec.encode_value(event)


class AccessRecorder:
    """A bounded buffer of accesses to record, and the task that publishes them."""

    def __init__(self, publish: Publish, capacity: int, *, retry_max_s: float = 1.0) -> None:
        self._publish = publish
        self.capacity = capacity
        self.retry_max_s = retry_max_s
        self._pending: deque[Recording] = deque()
        self._wake = asyncio.Event()
        PENDING.set_function(lambda: len(self._pending))

    @property
    def pending(self) -> int:
        """Accesses recorded and not yet confirmed published."""
        return len(self._pending)

    def has_room(self) -> bool:
        if len(self._pending) < self.capacity:
            return True
        REFUSED.inc()
        return False

    def record(self, question: Question, now: float) -> uuid.UUID:
        """Leave the access ``question`` asks about to be published; its event id."""
        event_id = access_event_id(question.facts.gateway_id, question.request_id)
        self._pending.append(Recording(event_id, now, question.request_id, question.facts))
        self._wake.set()
        return event_id

    async def drain(self) -> int:
        """Publish everything pending; what fails stays pending, first, in order. Returns
        how many failed. Until confirmed, a record stays in the buffer (and counts against
        its bound), so one cut off by a shutdown is still there for the last attempt."""
        batch = list(islice(self._pending, len(self._pending)))
        sent: list[tuple[int, Any]] = []
        failed: list[int] = []
        for n, recording in enumerate(batch):
            try:
                value = recording.value()
            except ValidationError as exc:  # never publishable: read once, it cannot change
                log.error("access %s cannot be recorded: %s", recording.event_id, exc)
                continue
            headers = dict(codec.text_headers())
            try:
                sent.append(
                    (n, await self._publish(value, recording.facts.grantee_id.encode(), headers))
                )
            except Exception as exc:
                log.debug("publishing access %s failed: %s", recording.event_id, exc)
                failed.append(n)
        for n, confirmation in sent:
            if confirmation is None:
                continue
            try:
                await confirmation
            except Exception as exc:
                log.debug("publishing access %s failed: %s", batch[n].event_id, exc)
                failed.append(n)
        for _ in batch:
            self._pending.popleft()
        self._pending.extendleft(batch[n] for n in sorted(failed, reverse=True))
        return len(failed)

    async def run_forever(self) -> None:
        """Publish as accesses are recorded; back off (to ``retry_max_s``) while it fails."""
        delay = 0.0
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                failed = await self.drain()
                if not failed:
                    if delay:
                        log.info("recorded accesses are published again")
                    delay = 0.0
                    continue
                if not delay:
                    log.warning(
                        "%d recorded accesses could not be published; retrying (%d pending, "
                        "at most %d)",
                        failed,
                        len(self._pending),
                        self.capacity,
                    )
                delay = min(self.retry_max_s, max(0.05, delay * 2))
                await asyncio.sleep(delay)
                self._wake.set()
        except asyncio.CancelledError:
            # Stopping: one last, bounded attempt for what is still pending.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.drain(), SHUTDOWN_FLUSH_S)
            if self._pending:
                log.error(
                    "%d recorded accesses were not published before the service stopped",
                    len(self._pending),
                )
            raise
