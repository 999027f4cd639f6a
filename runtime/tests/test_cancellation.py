"""A task told to stop stops: no retry and no wait swallows its cancellation.

Every long-running loop (the outbox relay, the deliveries, the consumers) is cancelled
when its service shuts down; one that swallowed the cancellation kept the process alive.
"""

from __future__ import annotations

import asyncio

from carveout_runtime.retries import retrying, wait_set


async def test_a_retried_operation_is_not_tried_again_after_a_cancellation() -> None:
    attempts = 0

    async def slow() -> None:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(30)

    task = asyncio.create_task(retrying(slow, what="a slow operation", failures=5))
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done and task.cancelled()
    assert attempts == 1


async def test_a_wait_cancelled_as_its_event_is_set_ends_the_waiting_loop() -> None:
    woken = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            await wait_set(woken, 30)
            woken.clear()
            rounds += 1

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # the loop is waiting
    woken.set()
    task.cancel()  # in the same moment: asyncio.wait_for of Python 3.11 lost this one
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done and task.cancelled()
    assert rounds == 0


async def test_a_wait_says_whether_its_event_was_set() -> None:
    event = asyncio.Event()
    assert not await wait_set(event, 0.01)
    event.set()
    assert await wait_set(event, 0.01)
