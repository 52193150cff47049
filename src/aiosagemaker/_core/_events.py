"""What the tracker is told (events) and what it answers (outcomes). Plain data, no I/O.

Events come from watchers: an S3 listing that found an output or failure object, or a SageMaker
notification read from SQS. An event names the job by location where it can (the locations the
endpoint returned for the request) and by inference id otherwise. An event may carry the
caller's ``tag`` (an SQS receipt handle, say): the tracker never looks at it, and hands the event
back (tag and all) when it is done with it, so the caller keeps no map of its own.

The tracker answers each call with what it did: :class:`FeedResult` (an :class:`Effect` and the
outcomes settled) for an event, :class:`ExpectResult` (an outcome, and the held events consumed)
for a job.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "Completed",
    "Effect",
    "Event",
    "ExpectResult",
    "Expected",
    "Failed",
    "FeedResult",
    "Outcome",
    "OutcomeStatus",
]


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
    #: the caller's own handle on where the event came from (see the module docstring); not
    #: part of equality, hashing or matching, and left out of ``repr`` (receipt handles are long).
    tag: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Failed:
    """An inference failed. ``reason`` is ``None`` when only the failure object's existence is known."""

    inference_id: str | None = None
    failure_location: str | None = None
    reason: str | None = None
    event_time: str | None = None
    #: as :attr:`Completed.tag`.
    tag: object = field(default=None, compare=False, repr=False)


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


class Effect(enum.Enum):
    """What :meth:`Tracker.feed <aiosagemaker._core._tracker.Tracker.feed>` did with an event:
    exactly one of these, so the caller can acknowledge its source (or leave it) at once."""

    #: it settled at least one pending job (:attr:`FeedResult.outcomes`).
    SETTLED = "settled"
    #: it is about a job already settled (a second notification, a late listing): nothing to do.
    DUPLICATE = "duplicate"
    #: it matches no job yet; kept for one not expected yet. It comes back later in an
    #: :class:`ExpectResult` (a job consumed it) or from ``take_unknown()`` (it was dropped).
    HELD = "held"
    #: neither used nor kept: it can never match (no location, no inference id) or there is no
    #: room to hold it (``max_held=0``). Counted unknown, and reported by ``take_unknown()``.
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class FeedResult:
    """What one event did: its :class:`Effect`, and the outcomes it settled (SETTLED only)."""

    effect: Effect
    outcomes: tuple[Outcome, ...] = ()


@dataclass(frozen=True, slots=True)
class ExpectResult:
    """What expecting one job did.

    :param outcome: the job's outcome when a held event settled it at once (the event beat the
        202 answer); ``None`` when the job is now pending.
    :param consumed: every held event the job took out of the hold, earliest first:
        ``consumed[0]`` is the one that settled it (``outcome.event``), the others are held
        duplicates it made redundant. Empty when ``outcome`` is ``None``.
    """

    outcome: Outcome | None = None
    consumed: tuple[Event, ...] = ()

    @property
    def redundant(self) -> tuple[Event, ...]:
        """The consumed events that did not settle the job (duplicates of the one that did)."""
        return self.consumed[1:]
