"""The async layer around the sans-IO tracker, shared by every watcher.

A watcher owns a :class:`Tracker`, one future per tracked job, its AWS clients and a task group.
Subclasses only turn what they observe (S3 listings, SQS messages) into tracker events with
:meth:`Watcher._feed`, and act on what the tracker answers (:class:`FeedResult`,
:class:`ExpectResult`); this layer settles futures, fetches output bodies and failure reasons (one
GET per settled job, bounded in concurrency and in size: ``max_output_bytes``), streams outputs to
files on request (``job.result(to_file=...)``), and expires jobs at their deadline. What is pending,
held, settled or a duplicate is the tracker's to know: a watcher asks it, never keeps a copy.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import contextvars
import itertools
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

from .._aws import AwsContext
from .._core._events import (
    Completed,
    Effect,
    Event,
    Expected,
    ExpectResult,
    Failed,
    FeedResult,
    Outcome,
    OutcomeStatus,
)
from .._core._notifications import loggable_id, parse_event_time
from .._core._request import check_s3_uri, parse_s3_uri
from .._core._tracker import Tracker
from .._exceptions import (
    InferenceFailedError,
    InvokerClosedError,
    OutputTooLargeError,
    ResultReadError,
    ResultTimeoutError,
    WatcherError,
    with_cause,
)
from .._limits import CapacityLimiter
from .._logs import field_id, logger
from .._results import InferenceJob, InferenceResult, OutputStream, outcome_future
from .._s3_reads import ObjectRead, S3Reads
from ._errors import ErrorKind, classify

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

    from types_aiobotocore_s3 import S3Client

    from .._s3_reads import ObjectBody
    from ._errors import Verdict

__all__ = ["DEFAULT_MAX_OUTPUT_BYTES", "MAX_FAILURE_BYTES", "Watcher", "WatcherStatistics"]


# GETs of one output: an object not there yet is asked for this often (a notification can beat
# S3's listing by a moment: 0.2 + 0.4 + 0.8 s); a transient error (throttling, a 5xx, a reset)
# more often, up to 2 s apart (about 9 s in all): the output is there, and giving up would turn a
# result into an error.
_FETCH_ATTEMPTS = 4
_TRANSIENT_FETCH_ATTEMPTS = 8
_FETCH_BACKOFF = 0.2
_FETCH_BACKOFF_MAX = 2.0

#: The most of one output a watcher reads into memory by default (``max_output_bytes``). Async
#: outputs can be up to 1 GB and a watcher reads up to ``max_concurrent_fetches`` (64) at once:
#: unbounded, that is 64 GB at worst. 64 MiB covers what is sensibly handled as ``bytes`` (JSON,
#: embeddings, images, audio clips) and bounds the worst case to 4 GiB; a larger output resolves
#: as :class:`OutputTooLargeError`, for ``job.result(to_file=...)`` to stream.
DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024

#: The most of a failure object read for its reason; a longer one is cut, not an error. Reasons
#: are a line or a traceback (SageMaker's own are under 1 KiB): 8 KiB keeps a traceback's head,
#: and a model that writes megabytes there is not worth holding for every failed job.
MAX_FAILURE_BYTES = 8 * 1024

#: The largest read of a body: reads return what has arrived, up to this.
_READ_CHUNK = 256 * 1024


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
    #: errors retried: throttling, 5xx, connection errors, anything not known to be permanent
    transient_errors: int = 0
    #: answers that mean "cannot work as configured" (denied, bucket or queue missing), each
    #: counted, whether or not a repeat confirmed it
    permanent_errors: int = 0
    #: jobs failed with :class:`WatcherError`: their result source could not be read
    abandoned: int = 0
    #: body bytes read from S3: outputs, failure objects, outputs streamed to files
    bytes_read: int = 0
    #: outputs over ``max_output_bytes``, not read (:class:`OutputTooLargeError`)
    outputs_too_large: int = 0
    #: notifications about pending jobs refused by a trust rule (another output or failure
    #: location than the job's, another endpoint, unsigned with nothing to check it against)
    refused_notifications: int = 0
    #: messages that could not be read (over 256 KiB, not JSON, nested too deep, a SageMaker
    #: notification with wrong types)
    malformed_notifications: int = 0
    #: notifications that proved nothing by themselves: the job's own location was looked at
    hint_notifications: int = 0

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
    transient_errors: int = 0
    permanent_errors: int = 0
    abandoned: int = 0
    bytes_read: int = 0
    outputs_too_large: int = 0
    malformed_notifications: int = 0
    lag_total: float = 0.0
    lag_count: int = 0


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class _Tracked(Expected):
    """A tracked job, as the tracker waits for it (an :class:`Expected`: the tracker hands it back
    in its outcomes and answers) and as the watcher settles it: one object a job, and no map of
    the watcher's own beside the tracker's pending jobs.

    The tracker forgets it once settled (it remembers settled jobs by their locations and ids
    only), so nothing here outlives the job's wait but the job itself.
    """

    job: InferenceJob
    #: read the output body
    fetch: bool

    @property
    def future(self) -> asyncio.Future[InferenceResult]:
        future = self.job._future
        assert future is not None  # attached by track()
        return future


def _as_tracked(expected: Expected) -> _Tracked:
    """A job the tracker handed back: one of the watcher's own (it expects no other kind)."""
    return cast("_Tracked", expected)


class Watcher(ABC):
    """Base class of the watchers: resolves each tracked job's future exactly once.

    Use one with an invoker (``AsyncInvoker(..., watcher=S3Polling())``), which opens and closes
    it, or on its own::

        async with SqsNotifications(queue_url=url) as watcher:
            job = watcher.track(inference_id, output_location, failure_location)
            result = await job

    **One watcher, many endpoints.** A watcher can serve several invokers at once (one queue
    subscribed to several endpoints' topics: one consumer, so no invoker's watcher holds
    another's messages). Open it yourself and hand it to each invoker; an invoker uses a watcher
    that is open already and never closes it (closing, it fails and forgets only its own jobs
    still pending)::

        async with SqsNotifications(queue_url=url) as watcher:
            async with (
                AsyncInvoker("endpoint-a", watcher=watcher) as a,
                AsyncInvoker("endpoint-b", watcher=watcher) as b,
            ):
                ...

    A watcher not open yet is opened by the first invoker that uses it (with that invoker's
    session and settings, in clients of its own) and closed by the last one to close. Each job
    is matched by its own locations and inference id, and a notification naming another endpoint
    than its job's is refused.

    A tracked job resolves to its :class:`InferenceResult`, or raises :class:`InferenceFailedError`
    (the inference failed), :class:`ResultReadError` (the output exists but could not be read:
    S3's code, the botocore error as ``__cause__``; :class:`OutputTooLargeError`, a kind of it:
    the output is over ``max_output_bytes`` and was left unread), :class:`WatcherError` (the
    watcher can never see its result: a bucket or queue missing, a denied read; ``code`` and
    ``permission`` say which), :class:`ResultTimeoutError` (its deadline passed) or
    :class:`InvokerClosedError`. Throttling, 5xx and connection errors never fail a job: they are
    retried and counted in :meth:`statistics`.

    :param fetch: read each output's body (``False``: results carry the location only).
    :param hold_seconds: how long an event for a job not yet tracked is kept (a notification can
        beat the 202 answer).
    :param max_concurrent_fetches: GETs of outputs in flight at once.
    :param expected_bucket_owner: the account that must own the output buckets, sent as
        ``ExpectedBucketOwner`` on every S3 call.
    :param max_output_bytes: the largest output read into memory (default 64 MiB,
        :data:`DEFAULT_MAX_OUTPUT_BYTES`). A larger one is not read: its size is checked in the
        GetObject answer's headers and its body closed unread (an output a notification carried
        is dropped), and the job raises :class:`OutputTooLargeError` with its location and size;
        ``await job.result(to_file=path)`` streams it whatever its size. Memory held by reads is
        at most ``max_concurrent_fetches * max_output_bytes``. Failure objects are read up to
        :data:`MAX_FAILURE_BYTES` and cut there.

    .. versionchanged:: 0.1 ``max_output_bytes``; one watcher can serve several invokers.
    """

    kind: ClassVar[str] = "watcher"
    #: whether results can be found for a job accepted without an output location (by its id)
    matches_by_inference_id: ClassVar[bool] = False

    def __init__(
        self,
        *,
        fetch: bool = True,
        hold_seconds: float = 300.0,
        max_concurrent_fetches: int = 64,
        expected_bucket_owner: str | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> None:
        if max_output_bytes < 0:
            raise ValueError(f"max_output_bytes must be >= 0, not {max_output_bytes!r}")
        self.fetch = fetch
        self.expected_bucket_owner = expected_bucket_owner
        self.max_output_bytes = max_output_bytes
        # Its pending jobs are the watcher's (_Tracked): there is no second map of them.
        self._tracker = self._new_tracker(hold_seconds)
        self._keys = itertools.count()
        # GETs in flight (outputs read into memory, failure objects, streams to files).
        self._fetch_slots = CapacityLimiter(max_concurrent_fetches)
        # Outputs to read into memory, for the fetchers: up to max_concurrent_fetches long-lived
        # tasks that take them in turn (not a task per output), started as needed.
        self._fetches: collections.deque[_Tracked] = collections.deque()
        self._idle_fetchers: collections.deque[asyncio.Future[None]] = collections.deque()
        self._fetchers = 0
        self._max_fetchers = max_concurrent_fetches
        # GETs waiting out a backoff before their next attempt (holding no slot): as many more
        # fetchers may run meanwhile, so that a few slow objects do not hold up the others.
        self._backoffs = 0
        # The fetchers' context: the watcher runner's (a copy of open()'s caller's).
        self._fetch_context: contextvars.Context | None = None
        self._counters = _Counters()
        self._wakeup = asyncio.Event()
        self._task_group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._aws: AwsContext | None = None
        self._owns_aws = False
        self._s3: S3Client | None = None
        self._reads: S3Reads | None = None
        # One bound method handed to every job (rather than a new one per job).
        self._open_output_method = self._open_output
        self._closed = False
        # Buckets whose missing s3:ListBucket has been explained in a warning (once each).
        self._explained_buckets: set[str] = set()
        # The invokers using this watcher, by endpoint name (one watcher can serve several);
        # whether they opened it (then the last to leave closes it) or its owner did.
        self._endpoints: dict[str, int] = {}
        self._opened_by_invokers = False
        # Notifications refused by a trust rule, by the endpoint of the job they were about
        # (they add up to ``statistics().refused_notifications``).
        self._refused: dict[str | None, int] = {}

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Any:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self, aws: AwsContext | None = None) -> None:
        """Start watching, with the clients of ``aws`` (the default chain when ``None``).

        The watcher's owner opens it (or ``async with watcher:``); an invoker given a watcher
        that is not open yet opens it itself (see the class docstring).
        """
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} is already open")
        if aws is None:
            aws, self._owns_aws = AwsContext(), True
        self._aws = aws
        self._s3 = await aws.client("s3", pool=64)
        # The GET of every output (and HEADs) as signed requests of our own: see _s3_reads.
        self._reads = S3Reads(self._s3, aws=aws, pool=64)
        await self._open_clients(aws)
        started = asyncio.Event()
        self._runner = asyncio.create_task(self._run(started), name=f"aiosagemaker-{self.kind}")
        await started.wait()

    async def _run(self, started: asyncio.Event) -> None:
        # Every background task of the watcher lives in this one task group.
        async with asyncio.TaskGroup() as task_group:
            self._task_group = task_group
            self._fetch_context = contextvars.copy_context()
            task_group.create_task(self._expiry_loop())
            task_group.create_task(self._watch())
            started.set()

    async def aclose(self) -> None:
        """Stop watching; jobs still pending fail with :class:`InvokerClosedError`."""
        if self._closed:
            return
        self._endpoints.clear()
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
        for expected in list(self._tracker.pending()):
            self._tracker.discard(expected.key)
            self._fail_closed(_as_tracked(expected), "closed before the result arrived")
        # Settled, their outputs not read yet: no fetcher will read them now.
        while self._fetches:
            self._fail_closed(self._fetches.popleft(), "closed before the result was read from S3")
        if self._reads is not None:
            await self._reads.aclose()
        if self._owns_aws and self._aws is not None:
            await self._aws.aclose()

    # --- sharing: one watcher for several invokers ------------------------------------------

    async def _attach(self, aws: AwsContext, endpoint_name: str) -> None:
        """An invoker starts using this watcher for ``endpoint_name``'s jobs.

        A watcher its owner opened (``async with watcher:``) is only used: it stays open until
        its owner closes it. One that is not open yet is opened here, with clients of its own
        made from the invoker's session and settings (so that the invoker's closing does not
        close them under another invoker), and the last invoker to leave closes it.
        """
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        if self._runner is None:
            # The invoker's session and settings, in clients (and a context) of the watcher's own.
            own = aws.fresh()
            try:
                await self.open(own)
            except BaseException:
                await own.aclose()
                raise
            self._owns_aws = True
            self._opened_by_invokers = True
        self._endpoints[endpoint_name] = self._endpoints.get(endpoint_name, 0) + 1

    async def _detach(self, endpoint_name: str, jobs: Iterable[InferenceJob]) -> None:
        """An invoker is done with this watcher: its jobs still pending fail with
        :class:`InvokerClosedError` and are forgotten (their notifications, should they come,
        are another consumer's to collect); the last invoker of a watcher they opened closes it.
        """
        count = self._endpoints.get(endpoint_name, 0) - 1
        if count > 0:
            self._endpoints[endpoint_name] = count
        else:
            self._endpoints.pop(endpoint_name, None)
        if self._closed:
            return
        if self._opened_by_invokers and not self._endpoints:
            await self.aclose()
            return
        ours = {id(job) for job in jobs}
        if not ours:
            return
        for expected in list(self._tracker.pending()):
            tracked = _as_tracked(expected)
            if id(tracked.job) in ours:
                self._tracker.discard(expected.key)
                self._fail_closed(tracked, "the invoker closed before the result arrived")

    @property
    def shared(self) -> bool:
        """Whether several invokers (or one invoker and the watcher's owner) use this watcher."""
        return sum(self._endpoints.values()) > 1 or (
            bool(self._endpoints) and not self._opened_by_invokers
        )

    def _log_fields(self, expected: Expected | None = None) -> dict[str, Any]:
        """The ``extra=`` fields of a log record: the endpoint (the job's; for the watcher's
        own records, every endpoint it serves, comma-separated) and the inference id (the job's;
        ``None`` when the record is about none)."""
        if expected is not None:
            return {
                "endpoint": expected.endpoint_name,
                "inference_id": field_id(expected.inference_id),
            }
        return {"endpoint": ", ".join(sorted(self._endpoints)) or None, "inference_id": None}

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
        endpoint_name: str | None = None,
    ) -> InferenceJob:
        """Start waiting for one request's result; return the job to await.

        :param deadline: ``time.monotonic()`` after which the job fails with
            :class:`ResultTimeoutError`; ``None`` waits until closed.
        :param fetch: read the output body (defaults to the watcher's ``fetch``).
        :param endpoint_name: the endpoint the request went to: a notification naming another
            is refused (``None``: not checked).
        """
        if self._runner is None or self._closed:
            raise RuntimeError(f"{type(self).__name__} is not open")
        if output_location is not None:
            check_s3_uri(output_location, field="location")
        if failure_location is not None:
            check_s3_uri(failure_location, field="location")
        if job is None:
            job = InferenceJob(
                inference_id=inference_id,
                output_location=output_location,
                failure_location=failure_location,
                deadline=deadline,
            )
        # An invoker's job already has its result future (made at submission); keep it.
        future = job._future
        if future is None:
            future = outcome_future()
            job._attach(future)
        # The watcher owns the S3 client: the job keeps a way to ask it for a stream of its output.
        job._open_output = self._open_output_method
        # An invoker's job, accepted: its result future is all it needs while pending.
        job._release_acceptance()
        tracked = _Tracked(
            next(self._keys),
            inference_id,
            output_location,
            failure_location,
            deadline,
            endpoint_name,
            job=job,
            fetch=self.fetch if fetch is None else fetch,
        )
        result = self._tracker.expect(tracked, time.monotonic())
        if result.rejected:
            self._count_refused(endpoint_name, len(result.rejected))
        self._on_tracked(tracked, result)
        if result.outcome is not None:
            self._settle(result.outcome)
        elif deadline is not None:
            self._wakeup.set()
        return job

    def placement(self) -> dict[str, str]:
        """Request fields (``output_path_extension``, ``filename``) for the next submission.

        The invoker applies them when the caller set neither field, so that a watcher can place
        outputs where it finds them cheaply (S3Polling names them to sort by submission order).
        """
        return {}

    def _on_tracked(  # noqa: B027 - optional hook
        self, expected: Expected, result: ExpectResult
    ) -> None:
        """Subclasses may act on a new job: widen a listing for it while it is pending, or
        acknowledge the held events it consumed (``result.consumed``, each with its tag)."""

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
            transient_errors=c.transient_errors,
            permanent_errors=c.permanent_errors,
            abandoned=c.abandoned,
            bytes_read=c.bytes_read,
            outputs_too_large=c.outputs_too_large,
            refused_notifications=stats.rejected,
            malformed_notifications=c.malformed_notifications,
            hint_notifications=stats.hints,
        )

    @property
    def transient_errors(self) -> int:
        """AWS errors met and retried (see :attr:`WatcherStatistics.transient_errors`)."""
        return self._counters.transient_errors

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<{type(self).__name__} [pending {s.pending}, resolved {s.resolved}, failed {s.failed}]>"

    # --- for subclasses ------------------------------------------------------------------------

    async def _open_clients(self, aws: AwsContext) -> None:  # noqa: B027 - optional hook
        """Open the clients a subclass needs beyond S3."""

    def _new_tracker(self, hold_seconds: float) -> Tracker:
        """The tracker, built once in ``__init__``; a subclass may set its trust policy."""
        return Tracker(hold_seconds=hold_seconds)

    @abstractmethod
    async def _watch(self) -> None:
        """Observe the result source forever, feeding events with :meth:`_feed`."""

    @property
    def _s3_client(self) -> S3Client:
        if self._s3 is None:
            raise RuntimeError("watcher is not open")
        return self._s3

    @property
    def _s3_reads(self) -> S3Reads:
        if self._reads is None:
            raise RuntimeError("watcher is not open")
        return self._reads

    def _owner_args(self) -> dict[str, Any]:
        return (
            {"ExpectedBucketOwner": self.expected_bucket_owner}
            if self.expected_bucket_owner
            else {}
        )

    def _feed(self, event: Completed | Failed) -> FeedResult:
        """Give the tracker one event; settle what it settles; return what it did, for the
        subclass to acknowledge the event's source (or leave it)."""
        result = self._tracker.feed(event, time.monotonic())
        if result.effect is Effect.REJECTED:
            self._count_refused(result.jobs[0].endpoint_name if result.jobs else None, 1)
        if result.effect is Effect.HELD:
            # Its hold can end before any job's deadline: the expiry loop recomputes its sleep.
            self._wakeup.set()
        for outcome in result.outcomes:
            self._settle(outcome)
        self._log_unknown()
        return result

    def _count_refused(self, endpoint_name: str | None, count: int) -> None:
        self._refused[endpoint_name] = self._refused.get(endpoint_name, 0) + count

    def refused_notifications_for(self, endpoint_name: str | None) -> int:
        """Notifications refused by a trust rule about jobs of ``endpoint_name`` (``None``:
        jobs tracked without one); over every endpoint they add up to
        :attr:`WatcherStatistics.refused_notifications`."""
        return self._refused.get(endpoint_name, 0)

    def _log_unknown(self) -> None:
        # Dropped and refused events are only logged: their sources are left alone (an SQS
        # message becomes visible again after its visibility timeout, for whoever owns it).
        if not self._tracker.has_unknown():
            return  # nearly always: no list made for nothing
        for unknown in self._tracker.take_unknown():
            self._dropped(unknown)
            logger.info(
                "result for an unknown inference id %s was dropped",
                loggable_id(unknown.inference_id),  # the sender's text: escaped and cut
                extra={**self._log_fields(), "inference_id": field_id(unknown.inference_id)},
            )

    def _dropped(self, event: Event) -> None:  # noqa: B027 - optional hook
        """A dropped or refused event, before it is logged: a subclass lets go of its source."""

    def _is_pending_output(self, location: str) -> bool:
        return self._tracker.has_pending_output(location)

    def _is_pending_failure(self, location: str) -> bool:
        return self._tracker.has_pending_failure(location)

    def _pending(self) -> list[Expected]:
        return list(self._tracker.pending())

    @property
    def _tracked(self) -> int:
        """How many tracked jobs wait for their outcome (none: nothing to look for)."""
        return self._tracker.pending_count()

    # --- errors ---------------------------------------------------------------------------------

    def _transient(self, operation: str, where: str, exc: BaseException) -> None:
        """Count and log an error that the next poll, receive or round retries."""
        self._counters.transient_errors += 1
        logger.warning(
            "%s on %s failed (retried): %s", operation, where, exc, extra=self._log_fields()
        )

    def _give_up(
        self, jobs: Iterable[Expected], verdict: Verdict, message: str, exc: BaseException
    ) -> int:
        """Fail pending ``jobs`` with a :class:`WatcherError` chained to ``exc``: this watcher
        can never see their results. Return how many it failed."""
        failed = 0
        for expected in list(jobs):  # a copy: discarding changes the tracker
            discarded = self._tracker.discard(expected.key)
            if discarded is None:
                continue  # not pending (any more)
            tracked = _as_tracked(discarded)
            if tracked.future.done():
                continue
            job = tracked.job
            error = WatcherError(
                message,
                code=verdict.code,
                permission=verdict.permission,
                inference_id=job.inference_id,
                output_location=job.output_location,
                failure_location=job.failure_location,
            )
            with_cause(error, exc)
            tracked.future.set_exception(error)
            failed += 1
        self._counters.abandoned += failed
        return failed

    async def _object_exists(self, bucket: str, key: str, *, waiting: str) -> bool:
        """HEAD one object: whether it exists. Never raises and never fails a job: a 404 is "not
        yet", a 403 is explained once (``waiting`` says what happens meanwhile), anything else is
        counted as transient."""
        self._counters.s3_head_calls += 1
        try:
            await self._s3_reads.head_object(Bucket=bucket, Key=key, **self._owner_args())
        except Exception as exc:  # noqa: BLE001 - classified; a HEAD never fails a job
            location = f"s3://{bucket}/{key}"
            kind = classify("HeadObject", exc).kind
            if kind is ErrorKind.FORBIDDEN:
                self._explain_list_bucket(bucket, f"A HEAD of {location} answered 403", waiting)
            elif kind is not ErrorKind.MISSING:
                self._transient("HeadObject", location, exc)
            return False
        return True

    def _explain_list_bucket(self, bucket: str, symptom: str, effect: str) -> None:
        """Say once per bucket why a missing ``s3:ListBucket`` slows the watcher, not fails it."""
        if bucket in self._explained_buckets:
            return
        self._explained_buckets.add(bucket)
        # A wrong ExpectedBucketOwner is refused with the same 403s: worth a word when it is set.
        owner = (
            f" (or the bucket is not owned by {self.expected_bucket_owner}, the "
            "expected_bucket_owner)"
            if self.expected_bucket_owner
            else ""
        )
        logger.warning(
            "%s. Without s3:ListBucket on a bucket, S3 answers 403 instead of 404 to a HEAD of an "
            "object not written yet (and to every request without s3:GetObject), so %s cannot "
            "tell a job still running from an output it may not read: %s. Fix: grant "
            "s3:ListBucket on arn:aws:s3:::%s to this role%s.",
            symptom,
            type(self).__name__,
            effect,
            bucket,
            owner,
            extra=self._log_fields(),
        )

    # --- settling -------------------------------------------------------------------------------

    def _settle(self, outcome: Outcome) -> None:
        tracked = _as_tracked(outcome.job)  # settled once: the tracker no longer has it pending
        if tracked.future.done():
            return
        job = tracked.job
        timings = job.timings
        timings.completed = completed = time.time()
        if timings.accepted is not None:
            self._counters.lag_total += completed - timings.accepted
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
        # The service's own times (a notification's): what a load test reports as service time.
        if event is not None:
            timings.service_received = parse_event_time(event.received_time)
            timings.service_completed = parse_event_time(event.event_time)
        # What the event carries is used only when the tracker trusts it (an unsigned
        # notification's is not: the job's own location is read instead).
        trusted = outcome.content_trusted
        if isinstance(event, Failed):
            reason = event.reason if trusted else None
            if reason is not None or job.failure_location is None:
                self._fail(tracked, reason or "the endpoint reported a failure")
            else:
                self._spawn(self._read_failure(tracked, job.failure_location))
            return
        assert isinstance(event, Completed)
        body = event.body if trusted else None
        content_type = event.content_type if trusted else None
        if body is not None:
            self._counters.inline_bodies += 1
            if len(body) > self.max_output_bytes:
                # In hand already, but the caller bounded what it holds: as if read from S3.
                self._too_large(tracked, len(body), content_type)
            else:
                self._succeed(tracked, body, content_type)
        elif not tracked.fetch or job.output_location is None:
            self._succeed(tracked, None, content_type)
        else:
            self._fetch(tracked)

    def _fetch(self, tracked: _Tracked) -> None:
        """Queue a settled job's output to be read, for an idle fetcher (or a new one)."""
        if self._task_group is None or self._fetch_context is None:
            raise RuntimeError("watcher is not running")
        if self._closed:  # no fetcher will take it
            self._fail_closed(tracked, "closed before the result was read from S3")
            return
        self._fetches.append(tracked)
        self._wake_fetcher()

    def _wake_fetcher(self) -> None:
        """Wake an idle fetcher for the queued outputs, or start one if fewer run than
        ``max_concurrent_fetches`` (not counting those waiting out a backoff)."""
        idle = self._idle_fetchers
        while idle:
            waiter = idle.popleft()
            if not waiter.done():  # else its fetcher was cancelled
                waiter.set_result(None)
                return
        task_group, context = self._task_group, self._fetch_context
        if (
            task_group is not None
            and context is not None
            and self._fetchers < self._max_fetchers + self._backoffs
        ):
            fetcher = self._fetcher()
            try:
                # Each fetcher in its own copy of the runner's context.
                task_group.create_task(
                    fetcher, name=f"aiosagemaker-{self.kind}-fetch", context=context.copy()
                )
            except RuntimeError:  # the watcher is closing: it fails what is still queued
                fetcher.close()
                return
            self._fetchers += 1

    async def _fetcher(self) -> None:
        """Read queued outputs one after another; wait for the next; end with the watcher."""
        queue, idle = self._fetches, self._idle_fetchers
        loop = asyncio.get_running_loop()
        tracked: _Tracked | None = None
        try:
            while True:
                if not queue:
                    waiter: asyncio.Future[None] = loop.create_future()
                    idle.append(waiter)
                    await waiter
                    continue
                tracked = queue.popleft()
                job = tracked.job
                location = job.output_location
                assert location is not None  # queued only with one
                try:
                    read = await self._get(location, limit=self.max_output_bytes)
                except Exception as exc:  # noqa: BLE001 - the job carries the error
                    if not tracked.future.done():
                        tracked.future.set_exception(_read_error(job, location, exc))
                else:
                    if read.body is None:
                        self._too_large(tracked, read.size, read.content_type)
                    else:
                        self._succeed(tracked, read.body, read.content_type)
                    del read
                # Hold nothing of this job (its output above all) while waiting for the next.
                tracked = None
                del job
        except asyncio.CancelledError:
            if tracked is not None:
                self._fail_closed(tracked, "closed while the result was being read from S3")
            raise
        finally:
            self._fetchers -= 1

    def _spawn(self, coro: Any) -> None:
        if self._task_group is None:
            coro.close()
            raise RuntimeError("watcher is not running")
        self._task_group.create_task(coro)

    def _succeed(self, tracked: _Tracked, body: bytes | None, content_type: str | None) -> None:
        job = tracked.job
        timings = job.timings
        timings.fetched = time.time()
        future = tracked.future
        if not future.done():
            future.set_result(
                InferenceResult(
                    inference_id=job.inference_id,
                    output_location=job.output_location,
                    body=body,
                    content_type=content_type,
                    timings=timings,
                    size=None if body is None else len(body),
                )
            )

    def _fail(self, tracked: _Tracked, reason: str, cause: BaseException | None = None) -> None:
        job = tracked.job
        if not tracked.future.done():
            error = InferenceFailedError(
                reason,
                inference_id=job.inference_id,
                output_location=job.output_location,
                failure_location=job.failure_location,
            )
            if cause is not None:
                with_cause(error, cause)
            tracked.future.set_exception(error)

    async def _get(self, location: str, *, limit: int, cut: bool = False) -> ObjectRead:
        """GET one object, reading at most ``limit`` bytes of it; retry briefly what may pass
        (throttling, a 5xx, an object a moment early); raise the last error, or a permanent one
        (access denied) at once.

        An object over ``limit`` is left unread (``body`` is ``None``): its size is in the
        answer's headers, and its body is closed before any of it is read. With ``cut``, its
        first ``limit`` bytes are read instead.
        """
        # A job's own location, which track() checked: s3://bucket/key.
        bucket, _, key = location[5:].partition("/")
        reads, slots, counters = self._s3_reads, self._fetch_slots, self._counters
        owner = self.expected_bucket_owner or None
        attempt = 0
        while True:
            await slots.acquire()
            try:
                counters.s3_get_calls += 1
                try:
                    read = await reads.read_object(bucket, key, limit=limit, cut=cut, owner=owner)
                except Exception as exc:
                    attempt += 1
                    if not self._retry_get(location, exc, attempt):
                        raise  # the caller puts it on the job
                else:
                    counters.bytes_read += read.read
                    return read
            finally:
                slots.release()
            self._backoffs += 1
            try:
                if self._fetches:
                    self._wake_fetcher()  # the outputs queued behind this one go on meanwhile
                await asyncio.sleep(_fetch_backoff(attempt))
            finally:
                self._backoffs -= 1

    def _retry_get(self, location: str, exc: Exception, attempt: int) -> bool:
        """Whether a GET that failed with ``exc`` (its ``attempt``-th) is worth another attempt;
        count a transient error."""
        kind = classify("GetObject", exc, location).kind
        if kind is ErrorKind.PERMANENT:
            return False
        if kind is ErrorKind.TRANSIENT:
            self._counters.transient_errors += 1
            return attempt < _TRANSIENT_FETCH_ATTEMPTS
        return attempt < _FETCH_ATTEMPTS

    def _fail_closed(self, tracked: _Tracked, what: str) -> None:
        """Fail a job the closing watcher will not resolve: one still pending, or one whose
        output (or failure) was being read (its outcome had taken it out of the tracker)."""
        job = tracked.job
        if not tracked.future.done():
            tracked.future.set_exception(
                InvokerClosedError(
                    f"{what}; collect it with another watcher",
                    inference_id=job.inference_id,
                    output_location=job.output_location,
                    failure_location=job.failure_location,
                )
            )

    def _too_large(self, tracked: _Tracked, size: int | None, content_type: str | None) -> None:
        """Resolve a job whose output is over ``max_output_bytes``: the inference succeeded, and
        its output is the caller's to stream (``job.result(to_file=...)``), not ours to hold."""
        self._counters.outputs_too_large += 1
        job = tracked.job
        if not tracked.future.done():
            tracked.future.set_exception(
                OutputTooLargeError(
                    size=size,
                    limit=self.max_output_bytes,
                    content_type=content_type,
                    inference_id=job.inference_id,
                    output_location=job.output_location,
                    failure_location=job.failure_location,
                )
            )

    async def _read_failure(self, tracked: _Tracked, location: str) -> None:
        try:
            read = await self._get(location, limit=MAX_FAILURE_BYTES, cut=True)
        except asyncio.CancelledError:
            self._fail_closed(tracked, "closed while the result was being read from S3")
            raise
        except Exception as exc:  # noqa: BLE001 - the failure itself is known; its text is not
            code = classify("GetObject", exc, location).code or type(exc).__name__
            self._fail(tracked, f"the failure object could not be read ({code})", cause=exc)
            return
        self._fail(tracked, _failure_reason(read))

    @contextlib.asynccontextmanager
    async def _open_output(self, job: InferenceJob) -> AsyncIterator[OutputStream]:
        """Open ``job``'s output for streaming, whatever its size (``max_output_bytes`` is for
        reads into memory): what ``job.result(to_file=...)`` reads from. Only the job's own
        output location is read. The GET is retried as :meth:`_get` retries; the open stream
        holds a fetch slot, and its body is closed on leaving.

        :raises InvokerClosedError: the watcher is closed, and its S3 client with it.
        :raises ResultReadError: the GET failed, or reading the body did midway.
        """
        location = job.output_location
        if location is None:
            raise ValueError("the job has no output location")  # the job checks first
        if self._closed:
            raise InvokerClosedError(
                f"the watcher is closed, and its S3 client with it: read the output at {location} "
                "with another S3 client, or stream it before closing",
                inference_id=job.inference_id,
                output_location=location,
                failure_location=job.failure_location,
            )
        target = parse_s3_uri(location, field="location")
        attempt = 0
        while True:
            await self._fetch_slots.acquire()
            try:
                self._counters.s3_get_calls += 1
                try:
                    response = await self._s3_reads.get_object(
                        Bucket=target.bucket, Key=target.key, **self._owner_args()
                    )
                except Exception as exc:
                    attempt += 1
                    if not self._retry_get(location, exc, attempt):
                        raise _read_error(job, location, exc) from exc
                else:
                    async with response["Body"] as stream:
                        yield OutputStream(
                            size=response.get("ContentLength"),
                            content_type=response.get("ContentType"),
                            read=self._chunk_reader(job, location, stream),
                        )
                    return
            finally:
                self._fetch_slots.release()
            await asyncio.sleep(_fetch_backoff(attempt))

    def _chunk_reader(
        self, job: InferenceJob, location: str, stream: ObjectBody
    ) -> Callable[[], Awaitable[bytes]]:
        """:attr:`OutputStream.read` over an open body: its errors are the job's read errors."""

        async def read() -> bytes:
            try:
                chunk = await stream.read(_READ_CHUNK)
            except Exception as exc:
                # Not retried: the chunks before it are written out already.
                raise _read_error(job, location, exc) from exc
            self._counters.bytes_read += len(chunk)
            return chunk

        return read

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


def _failure_reason(read: ObjectRead) -> str:
    """The reason a failure object gives: its text, marked where it was cut."""
    body = read.body or b""
    # A cut can split a UTF-8 character in two: an incremental decoder leaves its first bytes out
    # where a plain decode would make them a U+FFFD.
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(body, final=not read.cut)
    text = text.strip()
    if read.cut:
        total = f" of {read.size:,}" if read.size is not None else ""
        return f"{text} [... cut at {len(body):,}{total} bytes]"
    return text or "the endpoint reported a failure"


def _fetch_backoff(attempt: int) -> float:
    """The pause after a GET's ``attempt``-th failure."""
    return float(min(_FETCH_BACKOFF * 2 ** (attempt - 1), _FETCH_BACKOFF_MAX))


def _read_error(job: InferenceJob, location: str, exc: BaseException) -> ResultReadError:
    """The error of a job whose output exists (it was listed or notified) but was not read."""
    verdict = classify("GetObject", exc, location)
    message = f"the output at {location} could not be read ({verdict.code or type(exc).__name__})"
    if verdict.advice:
        message = f"{message}: {verdict.advice}"
    elif verdict.kind is ErrorKind.MISSING:
        message = f"{message}: it was reported written, but S3 does not have it"
    error = ResultReadError(
        message,
        code=verdict.code,
        inference_id=job.inference_id,
        output_location=job.output_location,
        failure_location=job.failure_location,
    )
    with_cause(error, exc)
    return error
