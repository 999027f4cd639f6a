"""Post a signed notification to a webhook: one request to a checked address, and at most
:data:`MAX_RESPONSE_BYTES` of the answer read, all by a deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from carveout_contracts.limits import KIB
from carveout_runtime.addresses import WebhookTarget

from .domain import Subscription, signature, signing_secrets
from .errors import DeliveryFailed
from .store import NotificationRecord

MAX_RESPONSE_BYTES = 64 * KIB
"""The most of a receiver's answer that is read; the rest is never asked for."""


async def send_webhook(
    http: httpx.AsyncClient,
    n: NotificationRecord,
    subscription: Subscription,
    now: datetime,
    *,
    deadline: float,
    target_of: Callable[[str], Awaitable[WebhookTarget]],
) -> None:
    """Post ``n`` within ``deadline`` seconds, to the address ``target_of`` checked."""
    ends = asyncio.get_running_loop().time() + deadline
    body = n.payload.encode()
    timestamp = int(now.timestamp())
    secrets = signing_secrets(subscription, now)
    async with asyncio.timeout_at(ends):
        target = await target_of(n.address)
        response = await http.send(pinned_request(http, target, body, {
            "content-type": "application/json",
            "accept-encoding": "identity",
            "webhook-id": n.notification_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secrets, n.notification_id, timestamp, body),
        }), stream=True)  # fmt: skip
    try:
        head = await read_head(response, ends)
    finally:
        # Closing can fail (a connection reset after the answer); that undoes no status
        # already received, and a 2xx stays accepted.
        with contextlib.suppress(Exception):
            await response.aclose()
    # A 2xx status is the receiver's acceptance: it is final even when the body after
    # it is cut by the size limit or the deadline. Receivers answer 2xx once they have
    # the notification; what they write after it is not ours to wait for.
    if not 200 <= response.status_code < 300:
        text = head[:200].decode(errors="replace")
        raise DeliveryFailed(f"webhook answered {response.status_code}: {text}".rstrip(": "))


def pinned_request(
    client: httpx.AsyncClient, target: WebhookTarget, body: bytes, headers: dict[str, str]
) -> httpx.Request:
    """A POST to the checked address itself, not to the name again.

    Resolving twice (once to check, once to connect) would let a DNS answer that changes in
    between (rebinding) reach an address the check refused. The request goes to the first
    checked IP; the ``Host`` header and, for https, the TLS server name (SNI, and so the
    certificate check) still name the host of the URL.
    """
    url = httpx.URL(target.url)
    ip = target.addresses[0]
    extensions: dict[str, Any] = {}
    if target.scheme == "https" and str(ip) != target.host:
        extensions["sni_hostname"] = target.host
    return client.build_request(
        "POST",
        url.copy_with(host=str(ip)),
        content=body,
        headers={**headers, "host": url.netloc.decode("ascii")},
        extensions=extensions,
    )


async def read_head(response: httpx.Response, ends: float) -> bytes:
    """At most :data:`MAX_RESPONSE_BYTES` of the body, read until the loop time ``ends``.

    Stops at the limit or the deadline, whichever comes first; a body that is cut short is
    returned as far as it came.
    """
    head = bytearray()
    try:
        with contextlib.suppress(TimeoutError, httpx.HTTPError):
            async with asyncio.timeout_at(ends):
                # raw: the bytes as sent, never decompressed (no gzip bomb is expanded)
                async for chunk in response.aiter_raw():
                    head += chunk[: MAX_RESPONSE_BYTES - len(head)]
                    if len(head) >= MAX_RESPONSE_BYTES:
                        break
    except httpx.StreamConsumed:  # an answer made in memory (a mock transport): no stream
        return response.content[:MAX_RESPONSE_BYTES]
    return bytes(head)


class Addressed(Protocol):
    """A notification as far as its receiver goes."""

    @property
    def channel(self) -> str: ...

    @property
    def address(self) -> str: ...


Chosen = TypeVar("Chosen", bound=Addressed)


def receiver_of(n: Addressed) -> str | None:
    """The webhook host a notification goes to (``None`` for email: one relay, ours)."""
    if n.channel != "webhook":
        return None
    return (urlsplit(n.address).hostname or n.address).lower()


def within_shares(
    due: list[Chosen], room: int, in_flight: Mapping[str, int], share: int
) -> list[Chosen]:
    """At most ``room`` of ``due``, in order, none for a webhook host that already has
    ``share`` attempts in flight (``in_flight``: by host): one host's slow receivers cannot
    take every attempt and hold up everyone else's notifications."""
    taken: Counter[str] = Counter()
    chosen = []
    for n in due:
        receiver = receiver_of(n)
        if receiver is not None:
            if in_flight.get(receiver, 0) + taken[receiver] >= share:
                continue
            taken[receiver] += 1
        chosen.append(n)
        if len(chosen) == room:
            break
    return chosen
