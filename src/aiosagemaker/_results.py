"""What a submission hands back (:class:`InferenceJob`) and what it resolves to (:class:`InferenceResult`)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import (
    DEFAULT_INVOCATION_TIMEOUT_SECONDS,
    DEFAULT_REQUEST_TTL_SECONDS,
    DEFAULT_RESULT_GRACE,
)
from ._exceptions import (
    AsyncInferenceError,
    OutputTooLargeError,
    ResultReadError,
    ResultTimeoutError,
)

if TYPE_CHECKING:
    import io
    from collections.abc import Awaitable, Callable, Generator
    from contextlib import AbstractAsyncContextManager

    from ._telemetry import JobTrace

__all__ = [
    "Accepted",
    "InferenceJob",
    "InferenceResult",
    "JobTimings",
    "OutputStream",
    "job_deadline",
]


def outcome_future() -> asyncio.Future[Any]:
    """A future for one of a job's outcomes (its 202 or its result), on the running loop.

    An outcome nobody awaits is not an error worth a warning at garbage collection: it stays
    readable from the job and counted in the invoker's and watcher's statistics.
    """
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.add_done_callback(_mark_retrieved, context=CALLBACK_CONTEXT)
    return future


#: The context the library's own done-callbacks run in. ``add_done_callback`` copies the caller's
#: context for each callback otherwise: an object per job, kept until the job resolves, for
#: callbacks that read no context variable. (Callbacks run one at a time, so one context serves.)
CALLBACK_CONTEXT = contextvars.Context()


def _mark_retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


#: Bytes gathered before one write to a ``to_file`` file: each write is a hop to a worker thread
#: (disk writes block), so not one per network read (often 16-64 KiB); and small enough that a
#: stream to a file holds a fraction of a megabyte, whatever the output's size.
_WRITE_CHUNK = 256 * 1024


@dataclass(slots=True)
class JobTimings:
    """Wall-clock times (``time.time()``) of a job's milestones; ``None`` until reached."""

    submitted: float | None = None
    accepted: float | None = None
    #: when this client learned the job's outcome (a notification, a listing, a HEAD)
    completed: float | None = None
    fetched: float | None = None
    #: the endpoint's own clock, from a notification: when it received the request
    #: (``receivedTime``) and when the outcome was ready (``eventTime``); ``None`` without one.
    #: ``service_completed - service_received`` is the service time: queueing, inference, upload.
    service_received: float | None = None
    service_completed: float | None = None


def job_deadline(
    accepted_at: float,
    *,
    request_ttl: int | None = None,
    invocation_timeout: int | None = None,
    grace: float = DEFAULT_RESULT_GRACE,
) -> float:
    """The ``time.monotonic()`` deadline of a job the endpoint accepted at ``accepted_at``.

    A job's result is due within its request TTL (time in the endpoint's queue) plus its invocation
    timeout after the 202; ``grace`` more lets a failure object written as the timeout fires arrive.
    This is the ``deadline`` :class:`AsyncInvoker` gives each job it sends. To collect a job that
    was accepted earlier, by another process, pass it to :meth:`Watcher.track` with the job's
    recorded acceptance time (:meth:`InferenceJob.record`'s ``accepted``):

    .. code-block:: python

        deadline = job_deadline(record["accepted"], request_ttl=600)
        job = watcher.track(record["inference_id"], record["output_location"],
                            record["failure_location"], deadline=deadline)

    :param accepted_at: wall-clock time (``time.time()``) of the 202, ``job.timings.accepted``.
    :param request_ttl: the request's ``RequestTTLSeconds``; ``None`` for AWS's default (21,600).
    :param invocation_timeout: its ``InvocationTimeoutSeconds``; ``None`` for AWS's default (900).
    :param grace: seconds past TTL plus timeout (the invoker's ``result_grace``).
    :return: a ``time.monotonic()`` value; earlier than now for a job already past its deadline.

    .. versionadded:: 0.1
    """
    ttl = request_ttl or DEFAULT_REQUEST_TTL_SECONDS
    timeout = invocation_timeout or DEFAULT_INVOCATION_TIMEOUT_SECONDS
    # The acceptance time is wall-clock, as it may come from another process; deadlines are
    # monotonic: convert at one instant.
    return time.monotonic() + (accepted_at + ttl + timeout + grace - time.time())


@dataclass(frozen=True, slots=True)
class Accepted:
    """The endpoint's 202 answer to one request: what ``await job.accepted()`` returns.

    A location is ``None`` when the answer did not name it (the watcher then matches the job by
    inference id, where it can).
    """

    inference_id: str
    output_location: str | None
    failure_location: str | None
    #: HTTP attempts it took, the first included
    attempts: int = 1
    #: retries sent after a failure that left it unknown whether the endpoint got the request
    ambiguous_retries: int = 0


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """The output of one inference.

    ``body`` is the output, or ``None``: when the job was tracked with ``fetch=False``, or when
    the output was written to a file (``await job.result(to_file=path)``: ``path`` says where).
    """

    inference_id: str
    output_location: str | None
    body: bytes | None
    content_type: str | None
    timings: JobTimings = field(compare=False)
    #: the file the output was streamed to by ``job.result(to_file=...)``; else ``None``
    path: Path | None = None
    #: the output's size in bytes: ``len(body)``, or the bytes written to ``path``; ``None`` when
    #: the output was not read (``fetch=False``)
    size: int | None = None

    def __repr__(self) -> str:
        size = self.size if self.body is None else len(self.body)
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        return (
            f"InferenceResult(inference_id={self.inference_id!r}, "
            f"output_location={self.output_location!r}, body=<{size} bytes>{where})"
        )


@dataclass(frozen=True, slots=True)
class OutputStream:
    """A job's output opened for streaming by the watcher that tracks it (internal: what
    ``job.result(to_file=...)`` reads from; the watcher owns the S3 client and closes the stream).
    """

    #: the output's size from the GetObject answer (``None`` when S3 did not say)
    size: int | None
    content_type: str | None
    #: the next chunk of the output; ``b""`` at its end
    read: Callable[[], Awaitable[bytes]]


class InferenceJob:
    """One submitted request: ``await job.accepted()`` for the 202, ``await job.result()`` (or
    ``await job``) for its output.

    :meth:`AsyncInvoker.submit` hands the job back once it is admitted; the request is sent in the
    background. ``output_location``, ``failure_location`` and ``attempts`` are filled in when the
    endpoint accepts it. An invocation error is raised by both :meth:`accepted` and :meth:`result`.
    Cancelling a wait leaves the job alone: it can be awaited again.
    """

    __slots__ = (
        "_acceptance",
        "_accepted_at",
        "_future",
        "_open_output",
        "_timings",
        "_trace",
        "attempts",
        "deadline",
        "failure_location",
        "inference_id",
        "inline",
        "input_location",
        "output_location",
    )

    def __init__(
        self,
        *,
        inference_id: str,
        output_location: str | None,
        failure_location: str | None,
        inline: bool = True,
        input_location: str | None = None,
        deadline: float | None = None,
        attempts: int = 1,
        timings: JobTimings | None = None,
        future: asyncio.Future[InferenceResult] | None = None,
        acceptance: asyncio.Future[Accepted] | None = None,
        submitted: float | None = None,
    ) -> None:
        self.inference_id = inference_id
        self.output_location = output_location
        self.failure_location = failure_location
        self.inline = inline
        self.input_location = input_location
        #: ``time.monotonic()`` after which the job is given up as expired
        self.deadline = deadline
        self.attempts = attempts
        # The job's JobTimings once made: when first asked for (``timings``). Until then a
        # pending job keeps the only two times it has, not an object of six fields: its
        # submission time here (``submitted``), its 202's in ``_accepted_at``.
        self._timings: JobTimings | float | None = timings if timings is not None else submitted
        self._accepted_at: float | None = None
        self._future = future
        #: ``None``: accepted before this object was made (a job tracked by its locations), or
        #: accepted and tracked since, the 202's answer all in the job's own fields
        #: (:meth:`_release_acceptance`)
        self._acceptance = acceptance
        #: set by the watcher that tracks the job: opens its output for ``result(to_file=...)``
        #: (the watcher owns the S3 client; the job only keeps a way to ask it)
        self._open_output: (
            Callable[[InferenceJob], AbstractAsyncContextManager[OutputStream]] | None
        ) = None
        #: the caller's trace context at submission, and the accepted attempt's span (only when
        #: the invoker traces: ``None`` otherwise)
        self._trace: JobTrace | None = None

    def __repr__(self) -> str:
        acceptance = self._acceptance
        if acceptance is not None and not acceptance.done():
            state = "sending"
        elif acceptance is not None and (acceptance.cancelled() or acceptance.exception()):
            state = "rejected"
        elif self._future is None:
            state = "untracked"
        elif not self._future.done():
            state = "pending"
        elif self._future.cancelled() or self._future.exception() is not None:
            state = "failed"
        else:
            state = "completed"
        return f"<InferenceJob {self.inference_id} {state}>"

    @property
    def timings(self) -> JobTimings:
        """When the job reached each milestone (one object for the job's life: it fills in as the
        job goes on)."""
        timings = self._timings
        if not isinstance(timings, JobTimings):
            timings = self._timings = JobTimings(submitted=timings, accepted=self._accepted_at)
        return timings

    @timings.setter
    def timings(self, timings: JobTimings) -> None:
        self._timings = timings

    def _submitted_at(self) -> float | None:
        """``timings.submitted``, without making the job's :class:`JobTimings`."""
        timings = self._timings
        return timings.submitted if isinstance(timings, JobTimings) else timings

    def _mark_accepted(self, when: float) -> None:
        """Record the 202's wall-clock time (``timings.accepted``) without making the job's
        :class:`JobTimings` if nobody has asked for it yet."""
        timings = self._timings
        if isinstance(timings, JobTimings):
            timings.accepted = when
        else:
            self._accepted_at = when

    def _release_acceptance(self) -> None:
        """Drop the future of the 202 once the job is accepted and tracked, when its own fields
        say all the 202 did (``accepted()`` then rebuilds an equal :class:`Accepted`): a pending
        job then holds neither that future nor the answer in it. The result future tells
        :meth:`done` and ``repr`` from then on; waiters already on the 202 keep the future."""
        acceptance = self._acceptance
        if (
            acceptance is None
            or self._future is None
            or not acceptance.done()
            or acceptance.cancelled()
            or acceptance.exception() is not None
        ):
            return
        answer = acceptance.result()
        if (
            answer.ambiguous_retries == 0
            and answer.attempts == self.attempts
            and answer.inference_id == self.inference_id
            and answer.output_location == self.output_location
            and answer.failure_location == self.failure_location
        ):
            self._acceptance = None

    @property
    def tracked(self) -> bool:
        """Whether a watcher will resolve this job (``False`` in submit-only mode)."""
        return self._future is not None

    def done(self) -> bool:
        """Whether the job has its outcome: a result, a failure, or a refused request (or, in
        submit-only mode, its 202)."""
        if self._future is not None:
            return self._future.done()  # a refused request fails this future too
        return self._acceptance is not None and self._acceptance.done()

    async def accepted(self) -> Accepted:
        """Wait for the endpoint's 202 answer.

        :raises InvocationError: the endpoint refused the request, or retries ran out
            (``ThrottledError``; ``StagingError`` when uploading a large payload failed).
        :raises InvokerClosedError: the invoker closed before the request was answered.
        """
        acceptance = self._acceptance
        if acceptance is None:
            return Accepted(
                self.inference_id, self.output_location, self.failure_location, self.attempts
            )
        if acceptance.done():
            return acceptance.result()
        # shield: a cancelled wait must not cancel the request itself.
        return await asyncio.shield(acceptance)

    async def result(
        self, timeout: float | None = None, *, to_file: str | os.PathLike[str] | None = None
    ) -> InferenceResult:
        """Wait for the output; with ``to_file``, stream it to that file.

        The watcher reads an output into ``body`` only up to its ``max_output_bytes``; a larger
        one raises :class:`OutputTooLargeError`. ``to_file`` takes an output of any size: it is
        streamed from S3 to the file in chunks, never held whole (an output already read into
        memory is written from there), and the result has ``body=None``, ``path`` and ``size``.
        The file is written beside ``path`` under a temporary name and renamed over ``path`` once
        complete, so ``path`` holds the whole output or is left as it was.

        .. code-block:: python

            result = await job.result(to_file="outputs/17.bin")   # result.path, result.size

        :param timeout: seconds to wait for the result (not for the download that follows); by
            default until the job's deadline (request TTL plus invocation timeout after
            acceptance), when the watcher gives it up as expired.
        :param to_file: stream the output to this file instead of returning it in ``body``. The
            stream needs the job's watcher open (it owns the S3 client), and counts against its
            ``max_concurrent_fetches`` while it runs.
        :raises InvocationError: the request itself was refused (as :meth:`accepted`).
        :raises InferenceFailedError: the inference ran and failed.
        :raises OutputTooLargeError: the output is over the watcher's ``max_output_bytes`` (a
            :class:`ResultReadError`; never raised with ``to_file``).
        :raises ResultReadError: the output exists but could not be read from S3.
        :raises WatcherError: the watcher cannot read its result source (a missing permission,
            bucket or queue).
        :raises ResultTimeoutError: ``timeout`` passed (the job stays tracked) or the deadline did.
        :raises InvokerClosedError: the invoker closed before the result arrived (or, with
            ``to_file``, its watcher closed before the output was streamed).
        :raises OSError: ``to_file`` could not be written.

        .. versionchanged:: 0.1 ``to_file``.
        """
        if to_file is None:
            future = self._future
            if future is not None and future.done():
                return future.result()  # no waiting, and no coroutine of its own
            return await self._result(timeout)
        path = Path(to_file)
        try:
            result = await self._result(timeout)
        except OutputTooLargeError:
            # Too large to hold in memory is what streaming to a file is for.
            return await self._stream_to(path)
        if result.body is None:  # tracked with fetch=False: never read
            return await self._stream_to(path)
        size = await _write_file(path, _chunks_of(result.body))
        return replace(result, body=None, path=path, size=size)

    async def _result(self, timeout: float | None) -> InferenceResult:
        future = self._future
        if future is None:
            await self.accepted()
            raise AsyncInferenceError(
                "this job is not tracked: the invoker runs with watcher=None (submit-only); "
                "collect its result with a watcher's track()",
                inference_id=self.inference_id,
                output_location=self.output_location,
                failure_location=self.failure_location,
            )
        if future.done():
            return future.result()
        try:
            # shield: a timed-out or cancelled wait must not cancel the job itself.
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            if future.done():
                return future.result()
            raise ResultTimeoutError(
                f"no result within {timeout} s",
                inference_id=self.inference_id,
                output_location=self.output_location,
                failure_location=self.failure_location,
            ) from None

    def __await__(self) -> Generator[Any, None, InferenceResult]:
        return self.result().__await__()

    def record(self) -> dict[str, Any]:
        """A JSON-ready description that another process's watcher can ``track()``."""
        timings = self._timings
        if isinstance(timings, JobTimings):
            submitted, accepted = timings.submitted, timings.accepted
        else:
            submitted, accepted = timings, self._accepted_at
        return {
            "inference_id": self.inference_id,
            "output_location": self.output_location,
            "failure_location": self.failure_location,
            "inline": self.inline,
            "input_location": self.input_location,
            "submitted": submitted,
            "accepted": accepted,
        }

    def _attach(self, future: asyncio.Future[InferenceResult]) -> None:
        self._future = future

    async def _stream_to(self, path: Path) -> InferenceResult:
        """Stream the output from S3 to ``path`` through the job's watcher."""
        open_output = self._open_output
        if open_output is None or self.output_location is None:
            # Only a job tracked by a watcher, with the output location of its own 202, is read:
            # never a location a notification alone named.
            raise ResultReadError(
                "this job's output cannot be streamed: it has no output location of its own"
                if open_output is not None
                else "this job's output cannot be streamed: no watcher tracks it",
                inference_id=self.inference_id,
                output_location=self.output_location,
                failure_location=self.failure_location,
            )
        async with open_output(self) as output:
            size = await _write_file(path, output.read)
        if self.timings.fetched is None:
            self.timings.fetched = time.time()
        return InferenceResult(
            inference_id=self.inference_id,
            output_location=self.output_location,
            body=None,
            content_type=output.content_type,
            timings=self.timings,
            path=path,
            size=size,
        )


def _chunks_of(body: bytes) -> Callable[[], Awaitable[bytes]]:
    """``body`` as :attr:`OutputStream.read` hands out a stream: whole, then ``b""``."""
    chunks = [b"", body]

    async def read() -> bytes:
        return chunks.pop() if chunks else b""

    return read


def _open_for_writing(path: Path) -> io.BufferedWriter:
    return path.open("xb")


async def _write_file(path: Path, read: Callable[[], Awaitable[bytes]]) -> int:
    """Write what ``read`` returns, until ``b""``, to ``path``; return the bytes written.

    The chunks go to a new file beside ``path`` (through a worker thread: disk writes block the
    loop), renamed over ``path`` once complete, so that ``path`` holds a whole output or is left as
    it was; the partial file is removed on any error or cancellation.
    """
    partial = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    file = await asyncio.to_thread(_open_for_writing, partial)
    size = 0
    try:
        try:
            pending = bytearray()
            while chunk := await read():
                size += len(chunk)
                if not pending and len(chunk) >= _WRITE_CHUNK:
                    await asyncio.to_thread(file.write, chunk)  # large already: no copy
                    continue
                pending += chunk
                if len(pending) >= _WRITE_CHUNK:
                    await asyncio.to_thread(file.write, pending)
                    pending = bytearray()  # a new buffer: the thread may still hold the old one
            if pending:
                await asyncio.to_thread(file.write, pending)
        finally:
            await asyncio.to_thread(file.close)
        await asyncio.to_thread(os.replace, partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)  # one quick call, and awaiting here could be cancelled again
        raise
    return size
