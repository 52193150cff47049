"""What a submission hands back (:class:`InferenceJob`) and what it resolves to (:class:`InferenceResult`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._config import (
    DEFAULT_INVOCATION_TIMEOUT_SECONDS,
    DEFAULT_REQUEST_TTL_SECONDS,
    DEFAULT_RESULT_GRACE,
)
from ._exceptions import AsyncInferenceError, ResultTimeoutError

if TYPE_CHECKING:
    from collections.abc import Generator

__all__ = ["Accepted", "InferenceJob", "InferenceResult", "JobTimings", "job_deadline"]


@dataclass(slots=True)
class JobTimings:
    """Wall-clock times (``time.time()``) of a job's milestones; ``None`` until reached."""

    submitted: float | None = None
    accepted: float | None = None
    completed: float | None = None
    fetched: float | None = None


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

    ``body`` is ``None`` when the job was tracked with ``fetch=False``.
    """

    inference_id: str
    output_location: str | None
    body: bytes | None
    content_type: str | None
    timings: JobTimings = field(compare=False)

    def __repr__(self) -> str:
        size = None if self.body is None else len(self.body)
        return (
            f"InferenceResult(inference_id={self.inference_id!r}, "
            f"output_location={self.output_location!r}, body=<{size} bytes>)"
        )


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
        "_future",
        "attempts",
        "deadline",
        "failure_location",
        "inference_id",
        "inline",
        "input_location",
        "output_location",
        "timings",
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
    ) -> None:
        self.inference_id = inference_id
        self.output_location = output_location
        self.failure_location = failure_location
        self.inline = inline
        self.input_location = input_location
        #: ``time.monotonic()`` after which the job is given up as expired
        self.deadline = deadline
        self.attempts = attempts
        self.timings = timings or JobTimings()
        self._future = future
        #: ``None``: accepted before this object was made (a job tracked by its locations)
        self._acceptance = acceptance

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

    async def result(self, timeout: float | None = None) -> InferenceResult:
        """Wait for the output.

        :param timeout: seconds to wait; by default until the job's deadline (request TTL plus
            invocation timeout after acceptance), when the watcher gives it up as expired.
        :raises InvocationError: the request itself was refused (as :meth:`accepted`).
        :raises InferenceFailedError: the inference ran and failed.
        :raises ResultReadError: the output exists but could not be read from S3.
        :raises WatcherError: the watcher cannot read its result source (a missing permission,
            bucket or queue).
        :raises ResultTimeoutError: ``timeout`` passed (the job stays tracked) or the deadline did.
        :raises InvokerClosedError: the invoker closed before the result arrived.
        """
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
        return {
            "inference_id": self.inference_id,
            "output_location": self.output_location,
            "failure_location": self.failure_location,
            "inline": self.inline,
            "input_location": self.input_location,
            "submitted": self.timings.submitted,
            "accepted": self.timings.accepted,
        }

    def _attach(self, future: asyncio.Future[InferenceResult]) -> None:
        self._future = future
