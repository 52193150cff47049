"""What a submission hands back (:class:`InferenceJob`) and what it resolves to (:class:`InferenceResult`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._exceptions import AsyncInferenceError, ResultTimeoutError

if TYPE_CHECKING:
    from collections.abc import Generator

__all__ = ["InferenceJob", "InferenceResult", "JobTimings"]


@dataclass(slots=True)
class JobTimings:
    """Wall-clock times (``time.time()``) of a job's milestones; ``None`` until reached."""

    submitted: float | None = None
    accepted: float | None = None
    completed: float | None = None
    fetched: float | None = None


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
    """One accepted request. ``await job`` or ``await job.result()`` waits for its output.

    Cancelling a wait leaves the job tracked: it can be awaited again.
    """

    __slots__ = (
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

    def __repr__(self) -> str:
        if self._future is None:
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
        return self._future is not None and self._future.done()

    async def result(self, timeout: float | None = None) -> InferenceResult:
        """Wait for the output.

        :param timeout: seconds to wait; by default until the job's deadline (request TTL plus
            invocation timeout after acceptance), when the watcher gives it up as expired.
        :raises InferenceFailedError: the inference ran and failed.
        :raises ResultTimeoutError: ``timeout`` passed (the job stays tracked) or the deadline did.
        """
        future = self._future
        if future is None:
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
