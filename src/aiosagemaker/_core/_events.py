"""What the tracker is told (events) and what it answers (outcomes). Plain data, no I/O.

Events come from watchers: an S3 listing that found an output or failure object, or a SageMaker
notification read from SQS. An event names the job by location where it can (the locations the
endpoint returned for the request) and by inference id otherwise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Completed", "Event", "Expected", "Failed", "Outcome", "OutcomeStatus"]


@dataclass(frozen=True, slots=True)
class Expected:
    """A job whose result the tracker waits for.

    :param key: the caller's unique handle for the job (two jobs may share an inference id).
    :param deadline: the monotonic time after which the job expires; ``None`` never.
    """

    key: int
    inference_id: str
    output_location: str | None
    failure_location: str | None
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    """An output exists. ``body`` is set when the event carried it (a notification's responseBody,
    or a watcher that already fetched it)."""

    inference_id: str | None = None
    output_location: str | None = None
    body: bytes | None = None
    content_type: str | None = None
    event_time: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """An inference failed. ``reason`` is ``None`` when only the failure object's existence is known."""

    inference_id: str | None = None
    failure_location: str | None = None
    reason: str | None = None
    event_time: str | None = None


Event = Completed | Failed


class OutcomeStatus(enum.Enum):
    #: the output is in S3 (and perhaps already in hand).
    COMPLETED = "completed"
    #: the endpoint reported the inference as failed.
    FAILED = "failed"
    #: the job's deadline passed with no result.
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The one settlement of one expected job."""

    job: Expected
    status: OutcomeStatus
    event: Event | None = None
