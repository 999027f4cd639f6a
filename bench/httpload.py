"""A lean HTTP/1.1 load client: fixed-rate requests over keep-alive connections.

Latency is measured from when each request was due, not when it was sent, so queueing
in the client or the server counts against the figure (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def _connection(
    host: str, port: int, queue: asyncio.Queue[tuple[float, bytes] | None], samples: list[float]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (item := await queue.get()) is not None:
            due, request = item
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:40]!r} {body[:200]!r}")
            samples.append((time.perf_counter() - due) * 1000)
    finally:
        writer.close()


async def fixed_rate(
    host: str,
    port: int,
    request: bytes,
    *,
    rate: int,
    seconds: float,
    connections: int = 16,
    warmup: int = 300,
    vary: Callable[[int], bytes] | None = None,
) -> list[float]:
    """Send ``request`` at ``rate`` per second for ``seconds``; latency of each, in ms.
    With ``vary``, the n-th request is ``vary(n)`` instead (a request id of its own, say)."""
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    warm: list[float] = []
    workers = [asyncio.create_task(_connection(host, port, queue, warm)) for _ in range(4)]
    for _ in range(warmup):
        queue.put_nowait((time.perf_counter(), request))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)

    samples: list[float] = []
    workers = [
        asyncio.create_task(_connection(host, port, queue, samples)) for _ in range(connections)
    ]
    begin = time.perf_counter() + 0.05
    for n in range(int(rate * seconds)):
        due = begin + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, request if vary is None else vary(n)))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return samples


def post_json(host: str, port: int, path: str, body: bytes, token: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
