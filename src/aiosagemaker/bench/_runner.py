"""One load run: requests sent on an open-loop schedule (or by closed-loop workers), timed from when
they were due, each latency into its own histogram.

**Open loop** (``rate`` or ``stages``): request ``i`` is due at ``start + arrival_times[i]``
(:mod:`._schedule`). It is sent then, or as soon after as a slot under ``max_in_flight`` frees; one
that starts more than :data:`LATE_AFTER` after its due time counts as *late*, one still not
started ``max_lateness`` after it is *dropped* (and counted with the errors). Its submit latency
runs from its due time to the 202, its end-to-end latency from its due time to its result in hand:
a stalled endpoint, or a client starved of slots or CPU, shows in the latency of every request
that was due meanwhile (no coordinated omission).

**Closed loop** (``concurrency``): that many workers, each sending its next request when the last
one is done (accepted, or with a watcher its result in hand), latencies from the actual send:
peak throughput, not latency under a given load.

**The end.** After the schedule, outstanding requests get ``drain`` seconds; those still open then
are recorded *censored* at the drain's end (a lower bound of their latency) and counted
``unfinished``, rather than left out.

The invoker is the caller's, built for load testing: retries and adaptive concurrency off unless
asked for (the endpoint's throttles are reported, not hidden behind backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import orjson

from aiosagemaker import AsyncInferenceError, ThrottledError

from ._histogram import Latency
from ._schedule import Stage, arrival_times

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aiosagemaker import InferenceJob, JobTimings

__all__ = ["LATE_AFTER", "LoadPlan", "LoadRun", "RunResult", "report_of", "result_from_report"]

#: A send that starts more than this after its due time is late (the event loop's own jitter is
#: well under it on an idle core).
LATE_AFTER = 0.010
# How long before the first due time the schedule starts: room to set up the first sends.
_LEAD = 0.05


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadPlan:
    """What to send, and when.

    Open loop: ``stages`` (a constant rate is one stage from ``start_rate`` = its target).
    Closed loop: ``concurrency`` workers. Either ends at ``duration`` seconds or ``requests``.
    """

    stages: list[Stage] | None = None
    start_rate: float = 0.0
    concurrency: int | None = None
    duration: float | None = None
    requests: int | None = None
    max_in_flight: int = 1000
    max_lateness: float = 1.0
    warmup: float = 0.0
    drain: float = 30.0
    #: wait for each result (a watcher is configured): end-to-end latencies
    watch: bool = False

    @property
    def mode(self) -> str:
        return "closed" if self.concurrency is not None else "open"

    @property
    def schedule_seconds(self) -> float | None:
        """How long the schedule runs, when the plan says (``duration``, or its stages)."""
        if self.duration is not None:
            return self.duration
        if self.stages is not None:
            return sum(s.duration for s in self.stages)
        return None


@dataclass(slots=True)
class RunResult:
    """What a run measured (merge several with :meth:`merge`)."""

    submit: Latency = field(default_factory=Latency)
    end_to_end: Latency = field(default_factory=Latency)
    #: the endpoint's service time (``eventTime - receivedTime`` of notifications: queueing,
    #: inference and upload, on the service's clock)
    service: Latency = field(default_factory=Latency)
    #: from ``eventTime`` to this client knowing the outcome (clocks of two machines)
    notification_lag: Latency = field(default_factory=Latency)
    #: from knowing the outcome to the output in hand (the GET; none when it rode along)
    fetch: Latency = field(default_factory=Latency)
    due: int = 0
    sent: int = 0
    late: int = 0
    dropped: int = 0
    accepted: int = 0
    completed: int = 0
    unfinished: int = 0
    throttled: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    #: seconds from the start of the schedule to its last due time (or the last send, closed)
    elapsed: float = 0.0

    def merge(self, other: RunResult) -> None:
        for name in _HISTOGRAMS:
            getattr(self, name).merge(getattr(other, name))
        for name in ("due", "sent", "late", "dropped", "accepted", "completed", "unfinished"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.throttled += other.throttled
        self.errors.update(other.errors)
        self.elapsed = max(self.elapsed, other.elapsed)


class LoadRun:
    """Runs a :class:`LoadPlan` through an open invoker.

    :param submit: sends one request and returns its job (``invoker.submit(payload, ...)``, or an
        upload to S3 then ``invoker.submit(input_location=...)`` for S3 submission).
    :param raw: where to write one JSON line per request (``--raw``), or ``None``.
    :param on_tick: called about once a second with the result so far (the live line).
    """

    def __init__(
        self,
        plan: LoadPlan,
        submit: Callable[[], Awaitable[InferenceJob]],
        *,
        raw: IO[bytes] | None = None,
        on_tick: Callable[[RunResult, float, int], None] | None = None,
    ) -> None:
        self.plan = plan
        self._submit = submit
        self._raw = raw
        self._on_tick = on_tick
        self.result = RunResult()
        self._tasks: dict[asyncio.Task[None], float] = {}
        self._in_flight = 0
        self._start = 0.0
        self._wall_offset = 0.0

    async def run(self) -> RunResult:
        loop = asyncio.get_running_loop()
        self._start = loop.time() + _LEAD
        self._wall_offset = time.time() - loop.time()
        ticker = asyncio.ensure_future(self._tick())
        try:
            if self.plan.concurrency is not None:
                await self._closed(self.plan.concurrency)
            else:
                await self._open()
            await self._drain()
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        return self.result

    # --- open loop -------------------------------------------------------------------------------

    async def _open(self) -> None:
        plan, result = self.plan, self.result
        assert plan.stages is not None
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(plan.max_in_flight)
        end = plan.schedule_seconds
        last_due = 0.0
        for i, offset in enumerate(arrival_times(plan.stages, start_rate=plan.start_rate)):
            if (plan.requests is not None and i >= plan.requests) or (
                end is not None and offset >= end
            ):
                break
            due = self._start + offset
            last_due = offset
            result.due += 1
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not await self._slot(slots, due + plan.max_lateness):
                result.dropped += 1
                result.errors["dropped"] += 1
                self._write_raw(due, None, None, None, "dropped", "dropped")
                continue
            started = loop.time()
            if started - due > LATE_AFTER:
                result.late += 1
            task = asyncio.ensure_future(self._one(due, started, slots))
            self._tasks[task] = due
            task.add_done_callback(self._tasks.pop)
        result.elapsed = end if end is not None else last_due

    async def _slot(self, slots: asyncio.Semaphore, give_up_at: float) -> bool:
        """Take a slot under ``max_in_flight``; ``False`` once ``give_up_at`` passed without."""
        loop = asyncio.get_running_loop()
        left = give_up_at - loop.time()
        if left <= 0:
            return False
        if not slots.locked():
            await slots.acquire()
            return True
        try:
            await asyncio.wait_for(slots.acquire(), timeout=left)
        except TimeoutError:
            return False
        return True

    # --- closed loop -----------------------------------------------------------------------------

    async def _closed(self, workers: int) -> None:
        plan = self.plan
        loop = asyncio.get_running_loop()
        stop_at = None if plan.duration is None else self._start + plan.duration
        budget = [plan.requests]

        async def worker() -> None:
            while True:
                if stop_at is not None and loop.time() >= stop_at:
                    return
                if budget[0] is not None:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                self.result.due += 1
                now = loop.time()
                await self._one(now, now, None)

        await asyncio.sleep(max(0.0, self._start - loop.time()))
        runners = [asyncio.ensure_future(worker()) for _ in range(workers)]
        # With a duration, a worker still waiting ``drain`` after it is over stops there: its
        # request is counted unfinished (a hung endpoint must not hold the run for a job's TTL).
        limit = None if plan.duration is None else plan.duration + plan.drain
        try:
            done, stuck = await asyncio.wait(runners, timeout=limit)
            self.result.unfinished += len(stuck)
            for runner in done:
                runner.result()  # a worker's bug is raised, not swallowed
        finally:
            for runner in runners:
                runner.cancel()
            await asyncio.gather(*runners, return_exceptions=True)
        self.result.elapsed = min(loop.time() - self._start, plan.duration or math.inf)

    # --- one request -----------------------------------------------------------------------------

    async def _one(self, due: float, started: float, slots: asyncio.Semaphore | None) -> None:
        loop = asyncio.get_running_loop()
        result, plan = self.result, self.plan
        counted = due - self._start >= plan.warmup
        self._in_flight += 1
        result.sent += 1
        accepted_at = None
        try:
            try:
                job = await self._submit()
                await job.accepted()
            except AsyncInferenceError as exc:
                self._failed(exc, due, started)
                return
            finally:
                if slots is not None:
                    slots.release()
            accepted_at = loop.time()
            result.accepted += 1
            if counted:
                result.submit.record(accepted_at - due)
            if not plan.watch:
                self._write_raw(due, started, accepted_at, None, "accepted", None)
                return
            try:
                output = await job.result()
            except AsyncInferenceError as exc:
                self._failed(exc, due, started, accepted_at)
                return
            done = loop.time()
            result.completed += 1
            if counted:
                result.end_to_end.record(done - due)
                self._record_stages(output.timings)
            self._write_raw(due, started, accepted_at, done, "completed", None)
        finally:
            self._in_flight -= 1

    def _record_stages(self, timings: JobTimings) -> None:
        received, ready = timings.service_received, timings.service_completed
        known, fetched = timings.completed, timings.fetched
        if received is not None and ready is not None:
            self.result.service.record(max(0.0, ready - received))
        if ready is not None and known is not None:
            self.result.notification_lag.record(max(0.0, known - ready))
        if known is not None and fetched is not None:
            self.result.fetch.record(max(0.0, fetched - known))

    def _failed(
        self,
        exc: AsyncInferenceError,
        due: float,
        started: float,
        accepted_at: float | None = None,
    ) -> None:
        code = exc.code or type(exc).__name__
        self.result.errors[code] += 1
        if isinstance(exc, ThrottledError):
            self.result.throttled += 1
        status = "failed" if accepted_at is not None else "error"
        self._write_raw(due, started, accepted_at, None, status, code)

    async def _drain(self) -> None:
        """Wait up to ``drain`` for what is outstanding; record the rest censored at the end."""
        loop = asyncio.get_running_loop()
        if self.plan.concurrency is not None:
            return  # workers finish their requests themselves
        pending = set(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=self.plan.drain)
        end = loop.time()
        left = {task: due for task, due in self._tasks.items() if not task.done()}
        for task, due in left.items():
            self.result.unfinished += 1
            if due - self._start >= self.plan.warmup:
                if self.plan.watch:
                    self.result.end_to_end.record(end - due)
            task.cancel()
            self._write_raw(due, None, None, None, "unfinished", None)
        if left:
            await asyncio.wait(set(left))

    # --- reporting -------------------------------------------------------------------------------

    def _write_raw(
        self,
        due: float,
        started: float | None,
        accepted: float | None,
        completed: float | None,
        status: str,
        code: str | None,
    ) -> None:
        if self._raw is None:
            return
        wall = self._wall_offset

        def at(value: float | None) -> float | None:
            return None if value is None else round(value + wall, 6)

        self._raw.write(
            orjson.dumps(
                {
                    "intended": at(due),
                    "sent": at(started),
                    "accepted": at(accepted),
                    "completed": at(completed),
                    "status": status,
                    "code": code,
                }
            )
            + b"\n"
        )

    async def _tick(self) -> None:
        if self._on_tick is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            self._on_tick(self.result, loop.time() - self._start, self._in_flight)


_COUNTS = ("due", "sent", "late", "dropped", "accepted", "completed", "unfinished", "throttled")
#: RunResult's histograms, and the report's key for each
_HISTOGRAMS = {
    "submit": "submit_latency_ms",
    "end_to_end": "end_to_end_latency_ms",
    "service": "service_time_ms",
    "notification_lag": "notification_lag_ms",
    "fetch": "output_fetch_ms",
}


def result_from_report(report: dict[str, Any]) -> RunResult:
    """A run's result back from its report with ``histograms`` (:func:`report_of`): exact, so
    that the results of several processes merge into the one of all their requests."""
    encoded = report["histograms"]
    result = RunResult(errors=Counter(report["errors"]), elapsed=float(report["elapsed_s"]))
    for name in _HISTOGRAMS:
        setattr(result, name, Latency.decode(encoded[name].encode()))
    for name in _COUNTS:
        setattr(result, name, int(report[name]))
    return result


def report_of(
    result: RunResult,
    plan: LoadPlan,
    settings: dict[str, Any],
    *,
    histograms: bool = False,
) -> dict[str, Any]:
    """The JSON report (its fields are a contract: see the README).

    :param histograms: include the encoded histograms (for :func:`result_from_report`).
    """
    seconds = result.elapsed or None
    target = None
    if plan.mode == "open" and plan.stages is not None:
        span = plan.schedule_seconds
        target = result.due / span if span else None
        if len(plan.stages) == 1 and plan.start_rate == plan.stages[0].target:
            target = plan.stages[0].target
    return {
        "mode": plan.mode,
        "target_rate": target,
        "achieved_rate": 0.0 if not seconds else round(result.sent / seconds, 3),
        "due": result.due,
        "sent": result.sent,
        "late": result.late,
        "dropped": result.dropped,
        "accepted": result.accepted,
        "completed": result.completed,
        "unfinished": result.unfinished,
        "throttled": result.throttled,
        "errors": dict(result.errors),
        "submit_latency_ms": result.submit.summary(),
        "end_to_end_latency_ms": result.end_to_end.summary() if plan.watch else None,
        # Where the watcher can tell (notifications carry the service's times): else null.
        "service_time_ms": result.service.summary() if result.service.count else None,
        "notification_lag_ms": (
            result.notification_lag.summary() if result.notification_lag.count else None
        ),
        "output_fetch_ms": result.fetch.summary() if result.fetch.count else None,
        "elapsed_s": round(result.elapsed, 6),
        "settings": settings,
    } | (
        {
            # HdrHistogram's own text form: compressed, then base64
            "histograms": {name: getattr(result, name).encode().decode() for name in _HISTOGRAMS}
        }
        if histograms
        else {}
    )
