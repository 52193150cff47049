"""What the tracker is told (events) and what it answers (outcomes). Plain data, no I/O.

Events come from watchers: an S3 listing that found an output or failure object, or a SageMaker
notification read from SQS. An event names the job by location where it can (the locations the
endpoint returned for the request) and by inference id otherwise. An event may carry the
caller's ``tag`` (an SQS receipt handle, say): the tracker never looks at it, and hands the event
back (tag and all) when it is done with it, so the caller keeps no map of its own.

An event also says where it comes from (:class:`Origin`): what the watcher saw itself in S3, or a
notification, signed or not. Anyone who may send to a queue can write a notification, so the
tracker believes a notification only as far as the job's own locations (from its 202) back it:
see :func:`aiosagemaker._core._tracker.decide` for the rules.

The tracker answers each call with what it did: :class:`FeedResult` (an :class:`Effect` and the
outcomes settled) for an event, :class:`ExpectResult` (an outcome, and the held events consumed)
for a job.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "Completed",
    "Decision",
    "Effect",
    "Event",
    "ExpectResult",
    "Expected",
    "Failed",
    "FeedResult",
    "Origin",
    "Outcome",
    "OutcomeStatus",
]


@dataclass(frozen=True, slots=True)
class Expected:
    """A job whose result the tracker waits for.

    :param key: the caller's unique handle for the job (two jobs may share an inference id).
    :param output_location: where the 202 said the output will be written (``None``: it said
        nothing, and nothing about the output can be checked).
    :param failure_location: the same for the failure object.
    :param deadline: the monotonic time after which the job expires; ``None`` never.
    :param endpoint_name: the endpoint the request went to; a notification that names another
        endpoint is refused (``None``: not checked).
    """

    key: int
    inference_id: str
    output_location: str | None
    failure_location: str | None
    deadline: float | None = None
    endpoint_name: str | None = None


class Origin(enum.Enum):
    """Where an event comes from: how far its claims can be believed."""

    #: the watcher saw the object itself (an S3 listing, a HEAD): its location is a fact. The
    #: default, so that the S3 watchers need not say it; a notification never is one.
    OBSERVED = "observed"
    #: a notification whose SNS signature a verifier accepted: SageMaker's own words.
    SIGNED = "signed"
    #: a notification nobody vouches for (raw delivery, no verifier, a signature refused):
    #: anyone who may send to the queue could have written it.
    UNSIGNED = "unsigned"


@dataclass(frozen=True, slots=True)
class Completed:
    """An output exists. ``body`` is set when the event carried it (a notification's responseBody,
    or a watcher that already fetched it). ``endpoint_name`` is the endpoint a notification
    names (``requestParameters.endpointName``)."""

    inference_id: str | None = None
    output_location: str | None = None
    body: bytes | None = None
    content_type: str | None = None
    event_time: str | None = None
    #: when the endpoint received the request (a notification's ``receivedTime``): measurement
    #: only (load tests' service time), so not part of equality
    received_time: str | None = field(default=None, compare=False)
    origin: Origin = Origin.OBSERVED
    endpoint_name: str | None = None
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
    #: as :attr:`Completed.received_time`
    received_time: str | None = field(default=None, compare=False)
    origin: Origin = Origin.OBSERVED
    endpoint_name: str | None = None
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
    """The one settlement of one expected job.

    :param content_trusted: whether what ``event`` carries (a body, a content type, a failure
        reason) may be used. ``False`` when an unsigned notification named the job's own output:
        the output is real only if it is in S3, so it is read from there, never from the message.
    """

    job: Expected
    status: OutcomeStatus
    event: Event | None = None
    content_trusted: bool = True


class Decision(enum.Enum):
    """What one event means for one job it is about (see
    :func:`aiosagemaker._core._tracker.decide`)."""

    #: it settles the job, with what it carries.
    SETTLE = "settle"
    #: it settles the job, but what it carries is not used: read the job's own location.
    SETTLE_FROM_S3 = "settle-from-s3"
    #: it proves nothing: look at the job's own location, and settle only if the object is there.
    HINT = "hint"
    #: rejected: it names a location that is not the job's.
    FOREIGN_LOCATION = "foreign-location"
    #: rejected: it names another endpoint than the job's.
    WRONG_ENDPOINT = "wrong-endpoint"
    #: rejected: unsigned, about a job without a location of its kind to check it against, and
    #: unsigned notifications are not trusted (``trust_unsigned``).
    UNVERIFIABLE = "unverifiable"

    @property
    def settles(self) -> bool:
        return self is Decision.SETTLE or self is Decision.SETTLE_FROM_S3

    @property
    def rejects(self) -> bool:
        return self in _REJECTIONS


_REJECTIONS = frozenset({Decision.FOREIGN_LOCATION, Decision.WRONG_ENDPOINT, Decision.UNVERIFIABLE})


class Effect(enum.Enum):
    """What :meth:`Tracker.feed <aiosagemaker._core._tracker.Tracker.feed>` did with an event:
    exactly one of these, so the caller can acknowledge its source (or leave it) at once."""

    #: it settled at least one pending job (:attr:`FeedResult.outcomes`).
    SETTLED = "settled"
    #: it is about pending jobs (:attr:`FeedResult.jobs`) but proves nothing: the caller should
    #: look at their own locations, and feed what it finds there. Nothing settled.
    HINT = "hint"
    #: it is about pending jobs (:attr:`FeedResult.jobs`) but a trust rule rejected it
    #: (:attr:`FeedResult.decision` says which). Nothing settled; being about jobs of the
    #: caller's, its source is the caller's to acknowledge.
    REJECTED = "rejected"
    #: it is about a job already settled (a second notification, a late listing): nothing to do.
    DUPLICATE = "duplicate"
    #: it matches no job yet; kept for one not expected yet. It comes back later in an
    #: :class:`ExpectResult` (a job consumed it) or from ``take_unknown()`` (it was dropped).
    HELD = "held"
    #: neither used nor kept: it can never match (no location, no inference id) or there is no
    #: room to hold it (``max_held=0``). Counted unknown, and reported by ``take_unknown()``.
    #: (Not REJECTED: nothing says it is about a job of the caller's.)
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class FeedResult:
    """What one event did: its :class:`Effect`, the outcomes it settled (SETTLED only), the jobs
    it hinted at or was rejected for (HINT, REJECTED), and why it was rejected (REJECTED)."""

    effect: Effect
    outcomes: tuple[Outcome, ...] = ()
    jobs: tuple[Expected, ...] = ()
    decision: Decision | None = None


@dataclass(frozen=True, slots=True)
class ExpectResult:
    """What expecting one job did.

    :param outcome: the job's outcome when a held event settled it at once (the event beat the
        202 answer); ``None`` when the job is now pending.
    :param consumed: the held events the job used, earliest first: ``consumed[0]`` is the one
        that settled it (``outcome.event``), the others are held duplicates (and hints) it made
        redundant. Empty when ``outcome`` is ``None``.
    :param hints: held hints for the job, now pending (``outcome`` is ``None``): the caller should
        look at the job's own locations.
    :param rejected: held events about the job that a trust rule rejected.

    Every event in the three left the hold, and is the caller's to acknowledge.
    """

    outcome: Outcome | None = None
    consumed: tuple[Event, ...] = ()
    hints: tuple[Event, ...] = ()
    rejected: tuple[Event, ...] = ()

    @property
    def redundant(self) -> tuple[Event, ...]:
        """The consumed events that did not settle the job (duplicates of the one that did)."""
        return self.consumed[1:]
