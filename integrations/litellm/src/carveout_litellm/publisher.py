"""Recording accesses from a gateway without a call waiting for it, and without losing one
while Kafka is briefly down.

Each access joins a bounded buffer; a background task publishes what is pending on
``carveout.access`` through Kafka, and whatever Kafka does not take in time goes by
enforcement's ``POST /v1/access`` instead. What neither takes stays pending, in order,
and is tried again with backoff. Event ids come from the gateway and request ids, so an
access sent both ways, or twice, is recorded once. While the buffer is full the caller
refuses new calls (:meth:`AccessPublisher.has_room`) rather than serve them unrecorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from itertools import islice
from typing import Any, Protocol

import httpx
from aiokafka import AIOKafkaProducer

from carveout_contracts import AccessRecorded, codec, topics

log = logging.getLogger("carveout.litellm")

HTTP_BATCH = 1000
"""Accesses in one ``POST /v1/access`` (it takes up to 10,000)."""


class Channel(Protocol):
    """A way to publish accesses; gives back those it could not publish."""

    async def send(self, events: Sequence[AccessRecorded]) -> list[AccessRecorded]: ...

    async def close(self) -> None: ...


class KafkaChannel:
    """``carveout.access`` through Kafka, each access keyed by its grantee. A producer that
    cannot start is not tried again for ``retry_start_s``: meanwhile, HTTP carries all."""

    def __init__(self, bootstrap: str, *, timeout_s: float = 2.0, retry_start_s: float = 5.0):
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self.retry_start_s = retry_start_s
        self._producer: Any = None
        self._next_start = 0.0

    async def _started(self) -> Any:
        if self._producer is None and time.monotonic() >= self._next_start:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                enable_idempotence=False,  # the embedded broker has no idempotent producers
                linger_ms=5,
                request_timeout_ms=int(self.timeout_s * 1000),
            )
            try:
                await asyncio.wait_for(producer.start(), self.timeout_s)
            except Exception as exc:
                self._next_start = time.monotonic() + self.retry_start_s
                with contextlib.suppress(Exception):
                    await producer.stop()
                log.warning(
                    "Kafka at %s is unreachable (%s): accesses go by HTTP", self.bootstrap, exc
                )
                return None
            self._producer = producer
        return self._producer

    async def send(self, events: Sequence[AccessRecorded]) -> list[AccessRecorded]:
        producer = await self._started()
        if producer is None:
            return list(events)
        headers = [(name, value.encode()) for name, value in codec.text_headers()]

        async def one(event: AccessRecorded) -> None:
            sent = await producer.send(
                topics.ACCESS, codec.encode_value(event), key=event.key.encode(), headers=headers
            )
            await sent

        results = await asyncio.gather(
            *(asyncio.wait_for(one(e), self.timeout_s) for e in events), return_exceptions=True
        )
        return [e for e, result in zip(events, results, strict=True) if result is not None]

    async def close(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None


def access_in(event: AccessRecorded) -> dict[str, Any]:
    """An access as ``POST /v1/access`` takes it: its data, when it happened, its event id."""
    return {
        **event.data.model_dump(mode="json"),
        "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "event_id": str(event.event_id),
    }


class HttpChannel:
    """Enforcement's ``POST /v1/access``, for gateways without Kafka or while it is down."""

    def __init__(
        self,
        enforcement_url: str,
        token: str,
        *,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=enforcement_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            transport=transport,
        )

    async def send(self, events: Sequence[AccessRecorded]) -> list[AccessRecorded]:
        failed: list[AccessRecorded] = []
        for start in range(0, len(events), HTTP_BATCH):
            failed += await self._post(list(events[start : start + HTTP_BATCH]))
        return failed

    async def _post(self, batch: list[AccessRecorded]) -> list[AccessRecorded]:
        try:
            answer = await self._client.post("/v1/access", json=[access_in(e) for e in batch])
        except httpx.HTTPError as exc:
            log.warning("POST /v1/access failed (%s): %d accesses wait", exc, len(batch))
            return batch
        if answer.status_code == 202:
            return []
        if answer.status_code in {401, 403, 408, 429} or answer.status_code >= 500:
            log.warning("POST /v1/access answered %d: %s", answer.status_code, answer.text[:500])
            return batch  # a token to fix, or a service to wait for: keep them
        if len(batch) > 1:  # one refused access refuses its batch: find it, keep the others
            failed: list[AccessRecorded] = []
            for event in batch:
                failed += await self._post([event])
            return failed
        log.error(
            "access %s refused for good (%d): %s",
            batch[0].event_id,
            answer.status_code,
            answer.text[:500],
        )
        return []

    async def close(self) -> None:
        await self._client.aclose()


class AccessPublisher:
    """A bounded buffer of accesses and the task publishing them: Kafka first, HTTP after."""

    def __init__(
        self,
        capacity: int,
        channels: Sequence[Channel],
        *,
        retry_max_s: float = 5.0,
    ) -> None:
        self.capacity = capacity
        self.channels = list(channels)
        self.retry_max_s = retry_max_s
        self._pending: deque[AccessRecorded] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def has_room(self) -> bool:
        return len(self._pending) < self.capacity

    def offer(self, event: AccessRecorded) -> bool:
        """Leave ``event`` to be published; ``False`` (and logged) when the buffer is full."""
        if not self.has_room():
            log.error(
                "access %s not recorded: %d are waiting already", event.event_id, self.capacity
            )
            return False
        self._pending.append(event)
        self._wake.set()
        self._ensure_running()
        return True

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run_forever())

    async def flush(self) -> int:
        """One round over what is pending; returns how many are still pending from it.
        A record stays in the buffer until a channel took it."""
        batch = list(islice(self._pending, len(self._pending)))
        left: list[AccessRecorded] = batch
        for channel in self.channels:
            if not left:
                break
            left = await channel.send(left)
        for _ in batch:
            self._pending.popleft()
        self._pending.extendleft(reversed(left))
        return len(left)

    async def run_forever(self) -> None:
        delay = 0.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self.flush():
                delay = 0.0
                continue
            delay = min(self.retry_max_s, max(0.1, delay * 2))
            await asyncio.sleep(delay)
            self._wake.set()

    async def close(self, within_s: float = 5.0) -> None:
        """Publish what is pending (for at most ``within_s``), then let go of the channels."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), within_s)
        if self._pending:
            log.error("%d accesses were not recorded before the proxy stopped", len(self._pending))
        for channel in self.channels:
            await channel.close()
