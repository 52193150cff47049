"""The async layer around the sans-IO tracker, shared by every watcher.

A watcher owns a :class:`Tracker`, one future per tracked job and a task group. Subclasses only turn
what they observe (S3 listings, SQS messages) into tracker events with :meth:`Watcher._feed`; this
layer settles futures, fetches output bodies and failure reasons (one GET per settled job, bounded
in concurrency), and expires jobs at their deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .._aws import AwsContext
from .._core._events import Completed, Expected, Failed, Outcome, OutcomeStatus
from .._core._tracker import Tracker
from .._exceptions import (
    AsyncInferenceError,
    InferenceFailedError,
    InvokerClosedError,
    ResultTimeoutError,
)
from .._request import parse_s3_uri
from .._results import InferenceJob, InferenceResult

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["Watcher", "WatcherStatistics"]

logger = logging.getLogger("aiosagemaker")

# GETs of one output are retried this often (a notification can beat S3's listing by a moment).
_FETCH_ATTEMPTS = 4
_FETCH_BACKOFF = 0.2


@dataclass(frozen=True, slots=True)
class WatcherStatistics:
    """What a watcher has done. ``calls_per_result`` counts every AWS call it made."""

    kind: str
    pending: int
    resolved: int
    failed: int
    expired: int
    duplicates: int
    unknown: int
    s3_list_calls: int
    s3_head_calls: int
    s3_get_calls: int
    sqs_receive_calls: int
    sqs_delete_calls: int
    inline_bodies: int
    mean_lag: float | None

    @property
    def aws_calls(self) -> int:
        return (
            self.s3_list_calls
            + self.s3_head_calls
            + self.s3_get_calls
            + self.sqs_receive_calls
            + self.sqs_delete_calls
        )

    @property
    def calls_per_result(self) -> float:
        settled = self.resolved + self.failed
        return self.aws_calls / settled if settled else 0.0


@dataclass(slots=True)
class _Counters:
    s3_list_calls: int = 0
    s3_head_calls: int = 0
    s3_get_calls: int = 0
    sqs_receive_calls: int = 0
    sqs_delete_calls: int = 0
    inline_bodies: int = 0
    lag_total: float = 0.0
    lag_count: int = 0


@dataclass(slots=True)
class _Tracked:
    job: InferenceJob
    future: asyncio.Future[InferenceResult]
    fetch: bool


class Watcher(ABC):
    """Base class of the watchers: resolves each tracked job's future exactly once.

    Use one with an invoker (``AsyncInvoker(..., watcher=S3Polling())``), which opens and closes
    it, or on its own::

        async with SqsNotifications(queue_url=url) as watcher:
            job = watcher.track(inference_id, output_location, failure_location)
            result = await job

    :param fetch: read each output's body (``False``: results carry the location only).
    :param hold_seconds: how long an event for a job not yet tracked is kept (a notification can
        beat the 202 answer).
    :param max_concurrent_fetches: GETs of outputs in flight at once.
    :param expected_bucket_owner: the account that must own the output buckets, sent as
        ``ExpectedBucketOwner`` on every S3 call.
    """

    kind: ClassVar[str] = "watcher"

    def __init__(
        self,
        *,
        fetch: bool = True,
        hold_seconds: float = 300.0,
        max_concurrent_fetches: int = 64,
        expected_bucket_owner: str | None = None,
    ) -> None:
        self.fetch = fetch
        self.expected_bucket_owner = expected_bucket_owner
        self._tracker = Tracker(hold_seconds=hold_seconds)
        self._tracked: dict[int, _Tracked] = {}
        self._keys = itertools.count()
        self._fetch_slots = asyncio.Semaphore(max_concurrent_fetches)
        self._counters = _Counters()
        self._wakeup = asyncio.Event()
        self._task_group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._aws: AwsContext | None = None
        self._owns_aws = False
        self._s3: S3Client | None = None
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Any:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self, aws: AwsContext | None = None) -> None:
        """Start watching. An invoker passes its own session; alone, the default chain is used."""
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} is already open")
        if aws is None:
            aws, self._owns_aws = AwsContext(), True
        self._aws = aws
        self._s3 = await aws.client("s3", pool=64)
        await self._open_clients(aws)
        started = asyncio.Event()
        self._runner = asyncio.create_task(self._run(started), name=f"aiosagemaker-{self.kind}")
        await started.wait()

    async def _run(self, started: asyncio.Event) -> None:
        # Every background task of the watcher lives in this one task group.
        async with asyncio.TaskGroup() as task_group:
            self._task_group = task_group
            task_group.create_task(self._expiry_loop())
            task_group.create_task(self._watch())
            started.set()

    async def aclose(self) -> None:
        """Stop watching; jobs still pending fail with :class:`InvokerClosedError`."""
        if self._closed:
            return
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            try:
                await runner
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        for key in list(self._tracked):
            tracked = self._tracked.pop(key)
            self._tracker.discard(key)
            if not tracked.future.done():
                job = tracked.job
                tracked.future.set_exception(
                    InvokerClosedError(
                        "closed before the result arrived; collect it with another watcher",
                        inference_id=job.inference_id,
                        output_location=job.output_location,
                        failure_location=job.failure_location,
                    )
                )
        if self._owns_aws and self._aws is not None:
            await self._aws.aclose()

    # --- tracking ----------------------------------------------------------------------------

    def track(
        self,
        inference_id: str,
        output_location: str | None,
        failure_location: str | None,
        *,
        deadline: float | None = None,
        fetch: bool | None = None,
        job: InferenceJob | None = None,
    ) -> InferenceJob:
        """Start waiting for one request's result; return the job to await.

        :param deadline: ``time.monotonic()`` after which the job fails with
            :class:`ResultTimeoutError`; ``None`` waits until closed.
        :param fetch: read the output body (defaults to the watcher's ``fetch``).
        """
        if self._runner is None or self._closed:
            raise RuntimeError(f"{type(self).__name__} is not open")
        for location in (output_location, failure_location):
            if location is not None:
                parse_s3_uri(location, field="location")
        if job is None:
            job = InferenceJob(
                inference_id=inference_id,
                output_location=output_location,
                failure_location=failure_location,
                deadline=deadline,
            )
        future: asyncio.Future[InferenceResult] = asyncio.get_running_loop().create_future()
        # A result nobody awaits is not an error worth a warning at garbage collection.
        future.add_done_callback(_consume)
        job._attach(future)
        key = next(self._keys)
        self._tracked[key] = _Tracked(job, future, self.fetch if fetch is None else fetch)
        expected = Expected(key, inference_id, output_location, failure_location, deadline)
        outcome = self._tracker.expect(expected, time.monotonic())
        self._on_tracked(expected)
        if outcome is not None:
            self._settle(outcome)
        elif deadline is not None:
            self._wakeup.set()
        return job

    def placement(self) -> dict[str, str]:
        """Request fields (``output_path_extension``, ``filename``) for the next submission.

        The invoker applies them when the caller set neither field, so that a watcher can place
        outputs where it finds them cheaply (S3Polling names them to sort by submission order).
        """
        return {}

    def _on_tracked(self, expected: Expected) -> None:  # noqa: B027 - optional hook
        """Subclasses may note a new job (e.g. to widen a listing)."""

    def statistics(self) -> WatcherStatistics:
        stats = self._tracker.statistics()
        c = self._counters
        return WatcherStatistics(
            kind=self.kind,
            pending=stats.pending,
            resolved=stats.completed,
            failed=stats.failed,
            expired=stats.expired,
            duplicates=stats.duplicates,
            unknown=stats.unknown,
            s3_list_calls=c.s3_list_calls,
            s3_head_calls=c.s3_head_calls,
            s3_get_calls=c.s3_get_calls,
            sqs_receive_calls=c.sqs_receive_calls,
            sqs_delete_calls=c.sqs_delete_calls,
            inline_bodies=c.inline_bodies,
            mean_lag=c.lag_total / c.lag_count if c.lag_count else None,
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<{type(self).__name__} [pending {s.pending}, resolved {s.resolved}, failed {s.failed}]>"

    # --- for subclasses ------------------------------------------------------------------------

    async def _open_clients(self, aws: AwsContext) -> None:  # noqa: B027 - optional hook
        """Open the clients a subclass needs beyond S3."""

    @abstractmethod
    async def _watch(self) -> None:
        """Observe the result source forever, feeding events with :meth:`_feed`."""

    @property
    def _s3_client(self) -> S3Client:
        if self._s3 is None:
            raise RuntimeError("watcher is not open")
        return self._s3

    def _owner_args(self) -> dict[str, Any]:
        return (
            {"ExpectedBucketOwner": self.expected_bucket_owner}
            if self.expected_bucket_owner
            else {}
        )

    def _feed(self, event: Completed | Failed) -> int:
        """Give the tracker one event; settle what it settles; return how many jobs it settled."""
        before = self._tracker.next_deadline()
        outcomes = self._tracker.feed(event, time.monotonic())
        after = self._tracker.next_deadline()
        if after is not None and (before is None or after < before):
            # A held event's hold can end before any job's deadline: let the expiry loop know.
            self._wakeup.set()
        for outcome in outcomes:
            self._settle(outcome)
        self._log_unknown()
        return len(outcomes)

    def _log_unknown(self) -> None:
        for unknown in self._tracker.take_unknown():
            logger.info("result for an unknown inference id %s was dropped", unknown.inference_id)

    def _is_pending_output(self, location: str) -> bool:
        return bool(self._tracker.pending_by_output(location))

    def _is_pending_failure(self, location: str) -> bool:
        return bool(self._tracker.pending_by_failure(location))

    def _pending(self) -> list[Expected]:
        return list(self._tracker.pending())

    # --- settling -------------------------------------------------------------------------------

    def _settle(self, outcome: Outcome) -> None:
        tracked = self._tracked.pop(outcome.job.key, None)
        if tracked is None or tracked.future.done():
            return
        job = tracked.job
        job.timings.completed = time.time()
        if job.timings.accepted is not None:
            self._counters.lag_total += job.timings.completed - job.timings.accepted
            self._counters.lag_count += 1
        if outcome.status is OutcomeStatus.EXPIRED:
            tracked.future.set_exception(
                ResultTimeoutError(
                    "no result by the job's deadline (request TTL plus invocation timeout)",
                    inference_id=job.inference_id,
                    output_location=job.output_location,
                    failure_location=job.failure_location,
                )
            )
            return
        event = outcome.event
        if isinstance(event, Failed):
            if event.reason is not None or job.failure_location is None:
                self._fail(tracked, event.reason or "the endpoint reported a failure")
            else:
                self._spawn(self._read_failure(tracked, job.failure_location))
            return
        assert isinstance(event, Completed)
        if event.body is not None:
            self._counters.inline_bodies += 1
            self._succeed(tracked, event.body, event.content_type)
        elif not tracked.fetch or job.output_location is None:
            self._succeed(tracked, None, event.content_type)
        else:
            self._spawn(self._read_output(tracked, job.output_location))

    def _spawn(self, coro: Any) -> None:
        if self._task_group is None:
            coro.close()
            raise RuntimeError("watcher is not running")
        self._task_group.create_task(coro)

    def _succeed(self, tracked: _Tracked, body: bytes | None, content_type: str | None) -> None:
        job = tracked.job
        job.timings.fetched = time.time()
        if not tracked.future.done():
            tracked.future.set_result(
                InferenceResult(
                    inference_id=job.inference_id,
                    output_location=job.output_location,
                    body=body,
                    content_type=content_type,
                    timings=job.timings,
                )
            )

    def _fail(self, tracked: _Tracked, reason: str) -> None:
        job = tracked.job
        if not tracked.future.done():
            tracked.future.set_exception(
                InferenceFailedError(
                    reason,
                    inference_id=job.inference_id,
                    output_location=job.output_location,
                    failure_location=job.failure_location,
                )
            )

    async def _get(self, location: str) -> tuple[bytes, str | None]:
        """GET one object, retrying briefly; raise the last error."""
        target = parse_s3_uri(location, field="location")
        error: Exception | None = None
        for attempt in range(_FETCH_ATTEMPTS):
            if attempt:
                await asyncio.sleep(_FETCH_BACKOFF * 2 ** (attempt - 1))
            async with self._fetch_slots:
                self._counters.s3_get_calls += 1
                try:
                    response = await self._s3_client.get_object(
                        Bucket=target.bucket, Key=target.key, **self._owner_args()
                    )
                    async with response["Body"] as stream:
                        body = await stream.read()
                    return body, response.get("ContentType")
                except Exception as exc:  # noqa: BLE001 - retried, then reported on the job
                    error = exc
        assert error is not None
        raise error

    async def _read_output(self, tracked: _Tracked, location: str) -> None:
        try:
            body, content_type = await self._get(location)
        except Exception as exc:  # noqa: BLE001 - the job carries the error
            if not tracked.future.done():
                job = tracked.job
                tracked.future.set_exception(
                    AsyncInferenceError(
                        f"the output exists but could not be read: {exc}",
                        inference_id=job.inference_id,
                        output_location=job.output_location,
                        failure_location=job.failure_location,
                    )
                )
            return
        self._succeed(tracked, body, content_type)

    async def _read_failure(self, tracked: _Tracked, location: str) -> None:
        try:
            body, _ = await self._get(location)
            reason = body.decode(errors="replace").strip() or "the endpoint reported a failure"
        except Exception as exc:  # noqa: BLE001 - the failure itself is known; its text is not
            reason = f"the failure object could not be read: {exc}"
        self._fail(tracked, reason)

    async def _expiry_loop(self) -> None:
        while True:
            next_deadline = self._tracker.next_deadline()
            delay = None if next_deadline is None else max(0.0, next_deadline - time.monotonic())
            try:
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            self._wakeup.clear()
            for outcome in self._tracker.expire(time.monotonic()):
                self._settle(outcome)
            self._log_unknown()


def _consume(future: asyncio.Future[InferenceResult]) -> None:
    if not future.cancelled():
        future.exception()
