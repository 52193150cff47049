"""The capacity limiter under cancellation, and AIMD: events fed directly, no I/O."""

from __future__ import annotations

import asyncio

import pytest

from aiosagemaker._limits import AimdController, CapacityLimiter, LimiterStatistics


async def _until(condition: object) -> None:
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(0)


async def test_fifty_waiters_cancelled_as_a_slot_frees() -> None:
    """Cancelled waiters raise CancelledError (never ValueError) even when a slot frees in the
    same tick, and no slot is lost or handed out twice."""
    limiter = CapacityLimiter(1)
    await limiter.acquire()
    waiters = [asyncio.create_task(limiter.acquire()) for _ in range(50)]
    await _until(lambda: limiter.waiting == 50)
    limiter.release()  # hands the slot to the first waiter...
    for task in waiters:
        task.cancel()  # ...which is cancelled before it runs, with all the others
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
    assert (limiter.borrowed, limiter.waiting) == (0, 0)
    await asyncio.wait_for(limiter.acquire(), 1)  # the slot was passed on, not leaked
    assert limiter.borrowed == 1


async def test_cancelled_waiters_are_skipped_and_the_rest_served_in_order() -> None:
    limiter = CapacityLimiter(1)
    await limiter.acquire()
    served: list[int] = []

    async def take(n: int) -> None:
        await limiter.acquire()
        served.append(n)

    tasks = [asyncio.create_task(take(n)) for n in range(6)]
    await _until(lambda: limiter.waiting == 6)
    for n in (0, 2, 3):
        tasks[n].cancel()
    await asyncio.gather(*(tasks[n] for n in (0, 2, 3)), return_exceptions=True)
    assert limiter.waiting == 3
    assert not limiter.acquire_nowait()  # live waiters queue first
    for count in (1, 2, 3):
        limiter.release()
        await _until(lambda: len(served) == count)  # noqa: B023 - evaluated in this iteration
    await asyncio.gather(*(tasks[n] for n in (1, 4, 5)))
    assert served == [1, 4, 5]
    assert (limiter.borrowed, limiter.waiting) == (1, 0)


async def test_raising_total_wakes_waiters_and_lowering_lets_holders_finish() -> None:
    limiter = CapacityLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await _until(lambda: limiter.waiting == 1)
    limiter.total = 2
    await waiter
    assert limiter.statistics() == LimiterStatistics(total=2, borrowed=2, waiting=0)
    limiter.total = 1
    assert not limiter.acquire_nowait()
    limiter.release()
    assert not limiter.acquire_nowait()  # still at the new total
    limiter.release()
    assert limiter.acquire_nowait()
    with pytest.raises(ValueError):
        limiter.total = 0


def test_aimd_halves_once_per_burst_and_grows_back() -> None:
    limiter = CapacityLimiter(64)
    aimd = AimdController(limiter, ceiling=64, cooldown=1000.0)
    aimd.on_throttle()
    aimd.on_throttle()  # the same burst: counted once
    assert limiter.total == 32
    for _ in range(32):
        aimd.on_success()
    assert limiter.total == 33
