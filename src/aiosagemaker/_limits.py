"""Capacity limiters with visible state, and the AIMD controller that adapts one to throttling."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass

__all__ = ["AimdController", "CapacityLimiter", "LimiterStatistics"]


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    total: int
    borrowed: int
    waiting: int


class CapacityLimiter:
    """A counting limiter whose ``total`` may change at runtime (like anyio's CapacityLimiter).

    Waiters are served first come, first served. Lowering ``total`` below ``borrowed`` lets the
    holders finish; no new slot is handed out until ``borrowed < total`` again. Slots are not
    tied to the task that took them (a job's slot is taken by ``submit`` and released when its
    result arrives), which is why this is not anyio's per-borrower limiter.

    A cancelled waiter raises ``CancelledError`` and nothing else: it stays in the queue, marked
    done, until a wake-up skips it (no O(n) removal, no race with a slot freed at the same moment);
    a slot handed to a waiter just as it was cancelled is passed on.
    """

    __slots__ = ("_borrowed", "_total", "_waiters", "_waiting")

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("total must be >= 1")
        self._total = total
        self._borrowed = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        # Live waiters: the deque may also hold cancelled ones not yet skipped.
        self._waiting = 0

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        if value < 1:
            raise ValueError("total must be >= 1")
        self._total = value
        self._wake()

    @property
    def borrowed(self) -> int:
        return self._borrowed

    @property
    def waiting(self) -> int:
        return self._waiting

    def statistics(self) -> LimiterStatistics:
        return LimiterStatistics(self._total, self._borrowed, self._waiting)

    def acquire_nowait(self) -> bool:
        """Take a slot if one is free and nobody is queued before us; never blocks."""
        if self._borrowed < self._total and not self._waiting:
            self._borrowed += 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait for a slot (wrap in ``asyncio.timeout`` to bound the wait)."""
        if self.acquire_nowait():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._waiting += 1
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed to us just as we gave up: pass it on.
                self.release()
            else:
                # Still queued: cancel the future so that _wake skips it.
                waiter.cancel()
                self._waiting -= 1
            raise

    def release(self) -> None:
        if self._borrowed <= 0:
            raise RuntimeError("release() without a matching acquire()")
        self._borrowed -= 1
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self._borrowed < self._total:
            waiter = waiters.popleft()
            if not waiter.done():
                self._borrowed += 1
                self._waiting -= 1
                waiter.set_result(None)


class AimdController:
    """Additive increase, multiplicative decrease of a limiter's ``total`` under throttling.

    On a throttle the limit is multiplied by ``decrease`` (at most once per ``cooldown`` seconds,
    so one burst of throttled answers to calls sent together counts once); after each run of
    ``total`` successes it grows by one, back up to ``ceiling``.
    """

    __slots__ = ("_cooldown", "_decrease", "_last_decrease", "_limiter", "_successes", "ceiling")

    def __init__(
        self,
        limiter: CapacityLimiter,
        *,
        ceiling: int,
        decrease: float = 0.5,
        cooldown: float = 0.1,
    ) -> None:
        self._limiter = limiter
        self.ceiling = ceiling
        self._decrease = decrease
        self._cooldown = cooldown
        self._last_decrease = -float("inf")
        self._successes = 0

    def on_success(self) -> None:
        limiter = self._limiter
        if limiter.total >= self.ceiling:
            return
        self._successes += 1
        if self._successes >= limiter.total:
            self._successes = 0
            limiter.total += 1

    def on_throttle(self) -> None:
        now = time.monotonic()
        if now - self._last_decrease < self._cooldown:
            return
        self._last_decrease = now
        self._successes = 0
        self._limiter.total = max(1, int(self._limiter.total * self._decrease))
