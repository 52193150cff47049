"""The sans-IO tracker: expected jobs in, watcher events in, outcomes out.

A synchronous state machine in the manner of ``h11/_state.py``. It never reads a clock, never
sleeps and never touches the network: the caller passes ``now`` (monotonic seconds) and turns the
returned :class:`Outcome` values into resolved futures. Every call says what it did, so a caller
keeps no copy of the tracker's state: not of what is held, nor of what was a duplicate. It also
owns the trust decisions (#10): which notification may settle which job, and with what.

Invariants
----------

1. A job is in exactly one of three places: *pending* (``expect`` was called, no outcome yet),
   *settled* (an outcome was returned for it, exactly once) or *gone* (``discard``-ed, no outcome).
   ``expect`` with a key that is already pending raises ``ValueError``.
2. What an event is about, and what it may do to that job, is :func:`decide`'s, a pure function
   (the table in its docstring). In short: an event the watcher *observed* in S3 itself
   (:attr:`Origin.OBSERVED`) is about a job when, for the event's kind of location
   (``output_location`` for :class:`Completed`, ``failure_location`` for :class:`Failed`), both
   have one and they are equal, or, when either lacks it, by inference id (a location beats an
   id: two jobs that share an id, as AWS does not deduplicate them, are told apart by location;
   :func:`matches`), and it settles it. A *notification* (signed or not) is about a job when it
   names the job's own location or its inference id, and it settles the job only when it names
   the job's own location (or is signed, or the job has no location to check it against and
   unsigned notifications are trusted); what an unsigned one carries is never used for a job
   that has a location to read instead. Otherwise it is a *hint* (look at the job's own
   location) or it is *rejected* (another location, another endpoint, nothing to check it
   against). An event's ``tag`` plays no part.
3. ``feed(event)`` decides the event for every pending job it is about, then answers the first of:
   SETTLED, settling *every* job it settles (normally one), each with COMPLETED or FAILED; HINT,
   with the jobs to look at (nothing changes: the caller feeds an observed event if it finds the
   object); DUPLICATE (below); REJECTED, with the jobs and the :class:`Decision`; else the event
   is held (invariant 4). The first event to settle a job wins: a later event for a settled job
   (a second notification, the S3 listing after the notification, a Failed after a Completed,
   any event after expiry) is a *duplicate* when no pending job takes it: counted, never an
   outcome.
4. An event about no pending job that is not a duplicate is *held* (a notification can beat the
   202 answer that makes the job pending). A later ``expect`` takes every held event about the
   job out of the hold and decides each: the earliest that settles settles the job at once, the
   other settling ones and the hints count as duplicates; rejected ones are rejected; when none
   settles, the job is pending and its held hints come back as hints. A held event is dropped
   by the first ``expire(now)`` with ``now >= held_at + hold_seconds``, or sooner, oldest first,
   when more than ``max_held`` are held; a dropped event counts as *unknown*. An event with
   neither a location nor an inference id can never match, and with ``max_held=0`` nothing can
   be held: such an event is *refused* (REFUSED, not REJECTED: nothing says it is about a job of
   the caller's), unknown at once.
5. Every event leaves through exactly one door, and the caller is told which, with the event
   itself (so its ``tag`` comes back): ``feed`` returns a :class:`FeedResult` whose
   :class:`Effect` is SETTLED (with the outcomes), HINT, REJECTED, DUPLICATE, HELD or REFUSED; a
   held event later comes back either in the :class:`ExpectResult` of the job that took it
   (``consumed``, ``hints`` or ``rejected``, earliest first) or, dropped, from
   :meth:`Tracker.take_unknown`, as does every refused event. ``take_unknown`` keeps at least
   ``max_held`` events (and 1,024), so a caller that takes them after every ``feed`` and
   ``expire`` misses none; past that bound the oldest are forgotten (the count stays exact).
6. ``expire(now)`` settles EXPIRED exactly the pending jobs whose ``deadline <= now`` (in deadline
   order), at ``O(log n)`` each: deadlines live in a priority queue with lazy deletion
   (:class:`_DeadlineHeap`: a sorted run for those that come in order, a heap for the others),
   rebuilt when stale entries outnumber live ones (amortised ``O(1)`` per settlement). A job with
   ``deadline=None`` never expires.
7. Duplicate detection remembers the most recently settled ``remember_settled`` jobs (a FIFO of
   their locations and ids, not the job objects, which may carry more of the caller's, plus
   counting dicts of those; about 200-300 bytes a job). An
   event for a job settled longer ago than that is no longer recognised: it is held, then dropped
   as unknown. It can never settle a job twice, because a settled job is no longer pending.
8. Accounting: ``events == matched + duplicates + unknown + held + hints + rejected`` at all times
   (every event fed is counted once: it settled something, was a duplicate, was dropped or
   refused, is still held, was a hint or was rejected; a held event moves from ``held`` to where
   ``expect`` or ``expire`` puts it), and ``completed + failed + expired`` is the number of
   outcomes ever returned.
9. Memory per pending job: the :class:`Expected` itself plus one dict entry per location and id
   (no id entry with ``match_ids=False``: such a tracker finds pending jobs by location only),
   whose value is the key itself (an ``int``), a list only when several pending jobs share it.
10. Standard library only, and no I/O: every decision above is unit-tested by feeding events.

``now`` must not go backwards between calls; the tracker does not check it.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._events import (
    Completed,
    Decision,
    Effect,
    Expected,
    ExpectResult,
    FeedResult,
    Origin,
    Outcome,
    OutcomeStatus,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._events import Event

__all__ = ["Tracker", "TrackerStatistics", "decide", "matches"]

#: how many dropped (unknown) events :meth:`Tracker.take_unknown` keeps between two calls at
#: least (``max_held`` when larger: one ``expire`` can drop every held event, and each carries a
#: tag its caller may need back); the count in :class:`TrackerStatistics` is exact, this only
#: bounds what a caller that never takes them leaves behind.
_UNKNOWN_LOG = 1024

# The answers that carry nothing of their own: shared, not built per call (all are frozen).
_DUPLICATE = FeedResult(Effect.DUPLICATE)
_HELD = FeedResult(Effect.HELD)
_REFUSED = FeedResult(Effect.REFUSED)
_PENDING = ExpectResult()

# A location/id index: the value is the one key (or held sequence number) that has it, or a list
# when several do. Storing the bare int costs no memory beyond the dict entry: the same int
# object is already referenced by the Expected.
_Index = dict[str, "int | list[int]"]


def _index_add(index: _Index, name: str, key: int) -> None:
    current = index.get(name)
    if current is None:
        index[name] = key
    elif isinstance(current, int):
        index[name] = [current, key]
    else:
        current.append(key)


def _index_remove(index: _Index, name: str, key: int) -> None:
    current = index.get(name)
    if current is None:
        return
    if isinstance(current, int):
        if current == key:
            del index[name]
        return
    try:
        current.remove(key)
    except ValueError:
        return
    if len(current) == 1:
        index[name] = current[0]


def _index_get(index: _Index, name: str) -> list[int]:
    current = index.get(name)
    if current is None:
        return []
    if isinstance(current, int):
        return [current]
    return list(current)  # a copy: callers settle (and so unindex) while iterating


def _count_add(counts: dict[str, int], name: str | None) -> None:
    if name is not None:
        counts[name] = counts.get(name, 0) + 1


def _count_remove(counts: dict[str, int], name: str | None) -> None:
    if name is not None:
        left = counts[name] - 1
        if left:
            counts[name] = left
        else:
            del counts[name]


def _event_location(event: Event) -> str | None:
    if isinstance(event, Completed):
        return event.output_location
    return event.failure_location


def _job_location(job: Expected, event: Event) -> str | None:
    if isinstance(event, Completed):
        return job.output_location
    return job.failure_location


def matches(job: Expected, event: Event) -> bool:
    """Whether an observed ``event`` is about ``job`` (invariant 2): by location when both have
    one of the event's kind, else by inference id."""
    location = _event_location(event)
    job_location = _job_location(job, event)
    if location is not None and job_location is not None:
        return location == job_location
    return event.inference_id is not None and event.inference_id == job.inference_id


def decide(
    job: Expected,
    event: Event,
    *,
    trust_unsigned: bool = False,
    require_signatures: bool = False,
) -> Decision | None:
    """What ``event`` means for ``job``: ``None`` when it is not about it, else a :class:`Decision`.

    "Own" is the job's location of the event's kind (its output for a :class:`Completed`, its
    failure location for a :class:`Failed`), from the 202; "names" is the event's location of
    that kind. The first row that applies decides:

    =====================================================  ==========================================
    the event                                              decision
    =====================================================  ==========================================
    observed (an S3 listing or HEAD), :func:`matches`      SETTLE
    observed, not :func:`matches`                          ``None`` (another job's object)
    notification naming neither own location nor job id   ``None``
    names an endpoint, the job has another (no case)       WRONG_ENDPOINT
    the job has no own location                            SETTLE if signed or ``trust_unsigned``,
                                                           else UNVERIFIABLE
    names another location than own                        FOREIGN_LOCATION
    Completed naming no location (a responseBody or not)   HINT
    Completed naming own, signed                           SETTLE (an included body is used)
    Completed naming own, unsigned                         SETTLE_FROM_S3 (the body is not used; the
                                                           output is read from own), or HINT when
                                                           ``require_signatures``
    Failed naming own or none, signed                      SETTLE (with its failureReason)
    Failed naming own or none, unsigned                    HINT (the reason is read from own)
    =====================================================  ==========================================

    Why each row:

    * a notification is text anyone allowed to send to the queue can write; only the job's own
      locations (the 202 named them, before any notification) and a signature cannot be forged.
      So an unsigned notification's body or failure reason is never used for a job with a
      location to read, and an unsigned claim of failure is checked before it is believed: a
      forged one could otherwise fail a job whose output is on its way;
    * an unsigned Completed that names the job's own output may settle it, read from S3, because
      what is returned is then what S3 holds there; ``require_signatures`` (a verifier is
      configured, so every real notification is signed) makes even that a hint;
    * AWS's documented Failed notification names no failure location, so lacking one is a hint,
      never a rejection; naming *another* location, or another endpoint, is not something
      SageMaker does for this job: rejected;
    * a job without a location (a 202 without one) has nothing to check a claim against:
      only a signed notification, or an explicit ``trust_unsigned``, may settle it.

    :param trust_unsigned: let unsigned notifications settle jobs that have no location of
        their kind (``SqsNotifications(trust_unsigned_notifications=True)``).
    :param require_signatures: notifications are expected to be signed (a verifier checks them):
        an unsigned Completed naming the job's own output is a hint, not a settlement.
    """
    if event.origin is Origin.OBSERVED:
        return Decision.SETTLE if matches(job, event) else None
    location = _event_location(event)
    own = _job_location(job, event)
    names_own = location is not None and location == own
    if not names_own and (event.inference_id is None or event.inference_id != job.inference_id):
        return None
    if (
        event.endpoint_name is not None
        and job.endpoint_name is not None
        # Endpoint names are not case sensitive (CreateEndpoint API reference, EndpointName).
        and event.endpoint_name.lower() != job.endpoint_name.lower()
    ):
        return Decision.WRONG_ENDPOINT
    signed = event.origin is Origin.SIGNED
    if own is None:
        return Decision.SETTLE if signed or trust_unsigned else Decision.UNVERIFIABLE
    if location is not None and not names_own:
        return Decision.FOREIGN_LOCATION
    if isinstance(event, Completed):
        if location is None:
            return Decision.HINT
        if signed:
            return Decision.SETTLE
        return Decision.HINT if require_signatures else Decision.SETTLE_FROM_S3
    return Decision.SETTLE if signed else Decision.HINT


def _status(event: Event) -> OutcomeStatus:
    return OutcomeStatus.COMPLETED if isinstance(event, Completed) else OutcomeStatus.FAILED


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerStatistics:
    """A snapshot of a :class:`Tracker`.

    ``events == matched + duplicates + unknown + held + hints + rejected`` always holds.
    """

    #: jobs expected and not yet settled.
    pending: int
    #: events waiting for their job to be expected.
    held: int
    #: outcomes returned, by status.
    completed: int
    failed: int
    expired: int
    #: events fed in total.
    events: int
    #: events that settled at least one job (at once, or later from the hold).
    matched: int
    #: events for jobs already settled (or extra held events consumed with the one that won).
    duplicates: int
    #: events dropped unmatched (hold time over, ``max_held`` exceeded) or refused.
    unknown: int
    #: notifications about pending jobs that proved nothing (look at the job's own location).
    hints: int
    #: notifications about pending jobs that a trust rule rejected (:class:`Decision`).
    rejected: int

    @property
    def settled(self) -> int:
        return self.completed + self.failed + self.expired


@dataclass(slots=True)
class _Held:
    seq: int
    event: Event
    expires: float


# What expect() found in the hold for one job: each event taken, and its decision.
_Taken = list[tuple["Event", Decision]]

# What duplicate detection keeps of a settled job: its output and failure locations and its id.
_Settled = tuple[str | None, str | None, str]


class _DeadlineHeap:
    """``(deadline, key)`` entries, smallest first: the tracker's queue of deadlines (invariant 6;
    the tracker skips the stale entries it meets).

    Deadlines mostly come in order: jobs accepted one after another with the same TTL and timeout.
    Each entry after the last one (by deadline, then key) is appended to a sorted run, kept in two
    deques (about 16 bytes an entry, no tuple); only the others go to a binary heap of tuples
    (about 64 bytes an entry). The smaller of the two heads comes first.
    """

    __slots__ = ("_deadlines", "_heap", "_keys")

    def __init__(self) -> None:
        self._deadlines: deque[float] = deque()
        self._keys: deque[int] = deque()
        self._heap: list[tuple[float, int]] = []

    def __len__(self) -> int:
        return len(self._keys) + len(self._heap)

    def push(self, deadline: float, key: int) -> None:
        deadlines = self._deadlines
        if (
            not deadlines
            or deadline > deadlines[-1]
            or (deadline == deadlines[-1] and key > self._keys[-1])
        ):
            deadlines.append(deadline)
            self._keys.append(key)
        else:
            heapq.heappush(self._heap, (deadline, key))

    def first(self) -> tuple[float, int] | None:
        """The smallest entry, left in place; ``None`` when there is none."""
        heap = self._heap
        if self._deadlines:
            run = (self._deadlines[0], self._keys[0])
            return run if not heap or run < heap[0] else heap[0]
        return heap[0] if heap else None

    def pop(self) -> None:
        """Remove the smallest entry (there must be one)."""
        heap = self._heap
        if self._deadlines and (not heap or (self._deadlines[0], self._keys[0]) < heap[0]):
            self._deadlines.popleft()
            self._keys.popleft()
        else:
            heapq.heappop(heap)

    def replace(self, entries: list[tuple[float, int]]) -> None:
        """Hold exactly ``entries`` from now on (in any order: they are sorted into the run)."""
        entries.sort()
        self._deadlines = deque(deadline for deadline, _ in entries)
        self._keys = deque(key for _, key in entries)
        self._heap = []


class Tracker:
    """Match watcher events to expected jobs; settle each job exactly once.

    .. code-block:: python

        tracker = Tracker(hold_seconds=300.0)
        job = Expected(1, "id-1", "s3://b/out/1.out", "s3://b/err/1.out", 900.0)
        started = tracker.expect(job, now)         # started.outcome is None: pending
        fed = tracker.feed(Completed(output_location="s3://b/out/1.out", tag=receipt), now)
        assert fed.effect is Effect.SETTLED
        [outcome] = fed.outcomes
        expired = tracker.expire(now)              # call again at tracker.next_deadline()
        for dropped in tracker.take_unknown():     # dropped.tag: the caller's to ack or leave
            ...

    :param hold_seconds: how long an event that matches no pending job is kept for a job not yet
        expected.
    :param max_held: at most this many held events; past it the oldest is dropped (``0``: none
        is held, such events are refused).
    :param remember_settled: how many recently settled jobs duplicate detection remembers.
    :param trust_unsigned: unsigned notifications may settle jobs that have no location of their
        kind to check them against (:func:`decide`).
    :param require_signatures: an unsigned notification never settles a job by itself, even one
        naming the job's own output: it is a hint (:func:`decide`).
    :param match_ids: find the pending jobs an event is about by its inference id too
        (invariant 2). ``False`` for a caller whose events always name a location and never an id
        (an S3 listing): pending jobs are then found by location only, and not indexed by id (a
        dict entry less per pending job); :meth:`pending_by_inference_id` still answers, by a scan.
    """

    __slots__ = (
        "_by_failure",
        "_by_id",
        "_by_output",
        "_completed",
        "_duplicates",
        "_events",
        "_expired",
        "_failed",
        "_heap",
        "_held",
        "_held_failure",
        "_held_id",
        "_held_output",
        "_hints",
        "_hold_seconds",
        "_matched",
        "_max_held",
        "_pending",
        "_rejected",
        "_remember_settled",
        "_require_signatures",
        "_seq",
        "_settled",
        "_settled_failure",
        "_settled_id",
        "_settled_id_no_failure",
        "_settled_id_no_output",
        "_settled_output",
        "_timed",
        "_trust_unsigned",
        "_unknown",
        "_unknown_log",
    )

    def __init__(
        self,
        *,
        hold_seconds: float = 300.0,
        max_held: int = 100_000,
        remember_settled: int = 100_000,
        trust_unsigned: bool = False,
        require_signatures: bool = False,
        match_ids: bool = True,
    ) -> None:
        if hold_seconds < 0:
            raise ValueError(f"hold_seconds must be >= 0, not {hold_seconds!r}")
        if max_held < 0:
            raise ValueError(f"max_held must be >= 0, not {max_held!r}")
        if remember_settled < 0:
            raise ValueError(f"remember_settled must be >= 0, not {remember_settled!r}")
        self._hold_seconds = hold_seconds
        self._max_held = max_held
        self._remember_settled = remember_settled
        self._trust_unsigned = trust_unsigned
        self._require_signatures = require_signatures

        # Pending jobs, in expect order, and their indexes.
        self._pending: dict[int, Expected] = {}
        self._by_output: _Index = {}
        self._by_failure: _Index = {}
        self._by_id: _Index | None = {} if match_ids else None
        # (deadline, key) of pending jobs with a deadline; may hold stale entries (invariant 6).
        self._heap = _DeadlineHeap()
        self._timed = 0  # pending jobs with a deadline: len(heap) - timed entries are stale

        # Held events, oldest first (OrderedDict: O(1) pop from the front), and their indexes.
        self._held: OrderedDict[int, _Held] = OrderedDict()
        self._held_output: _Index = {}  # Completed events by output location
        self._held_failure: _Index = {}  # Failed events by failure location
        self._held_id: _Index = {}  # any event with an inference id
        self._seq = 0
        self._unknown_log: deque[Event] = deque(maxlen=max(_UNKNOWN_LOG, max_held))

        # Recently settled jobs, for duplicate detection (invariant 7).
        self._settled: deque[_Settled] = deque()
        self._settled_output: dict[str, int] = {}
        self._settled_failure: dict[str, int] = {}
        self._settled_id: dict[str, int] = {}
        self._settled_id_no_output: dict[str, int] = {}
        self._settled_id_no_failure: dict[str, int] = {}

        self._completed = self._failed = self._expired = 0
        self._events = self._matched = self._duplicates = self._unknown = 0
        self._hints = self._rejected = 0

    def __repr__(self) -> str:
        return (
            f"<Tracker [pending {len(self._pending)}, held {len(self._held)} | "
            f"completed {self._completed}, failed {self._failed}, expired {self._expired}]>"
        )

    # -- jobs ----------------------------------------------------------------------------------

    def expect(self, job: Expected, now: float) -> ExpectResult:
        """Start waiting for ``job``.

        :return: the job's outcome at once when a held event settles it (an event beat the 202
            answer), with every held event it took (their tags are the caller's to
            acknowledge); else an :class:`ExpectResult` without an outcome: the job is pending,
            and the result carries the held hints and rejected events about it, if any.
        :raises ValueError: a job with the same key is already pending.
        """
        if job.key in self._pending:
            raise ValueError(f"job key {job.key!r} is already pending")
        result = _PENDING
        if self._held:
            taken = self._take_held(job)
            if taken:
                result = self._use_held(job, taken)
                if result.outcome is not None:
                    return result
        key = job.key
        self._pending[key] = job
        if job.output_location is not None:
            _index_add(self._by_output, job.output_location, key)
        if job.failure_location is not None:
            _index_add(self._by_failure, job.failure_location, key)
        if self._by_id is not None:
            _index_add(self._by_id, job.inference_id, key)
        if job.deadline is not None:
            self._heap.push(job.deadline, key)
            self._timed += 1
        return result

    def discard(self, key: int) -> Expected | None:
        """Stop tracking a pending job without an outcome (the invoker is closing).

        :return: the job, or ``None`` when no job with that key is pending.
        """
        job = self._pending.get(key)
        if job is not None:
            self._unpend(job)
        return job

    # -- events --------------------------------------------------------------------------------

    def feed(self, event: Event, now: float) -> FeedResult:
        """Take one event from a watcher.

        :return: what the event did (invariants 3 and 5): SETTLED with the outcomes of the
            pending jobs it settled (usually one), HINT or REJECTED with the pending jobs it is
            about, DUPLICATE, HELD, or REFUSED.
        """
        self._events += 1
        decided = self._decide_pending(event)
        if decided:
            settling = [(job, decision) for job, decision in decided if decision.settles]
            if settling:
                self._matched += 1
                status = _status(event)
                outcomes = tuple(
                    self._settle(job, status, event, decision is Decision.SETTLE)
                    for job, decision in settling
                )
                return FeedResult(Effect.SETTLED, outcomes)
            hinted = tuple(job for job, decision in decided if decision is Decision.HINT)
            if hinted:
                self._hints += 1
                return FeedResult(Effect.HINT, jobs=hinted)
        if self._is_duplicate(event):
            self._duplicates += 1
            return _DUPLICATE
        if decided:  # every decision a rejection
            self._rejected += 1
            jobs = tuple(job for job, _ in decided)
            return FeedResult(Effect.REJECTED, jobs=jobs, decision=decided[0][1])
        if self._max_held == 0 or (event.inference_id is None and _event_location(event) is None):
            self._drop(event)  # no room to hold it, or it can never match anything
            return _REFUSED
        self._hold(event, now)
        return _HELD

    def expire(self, now: float) -> list[Outcome]:
        """Settle EXPIRED every pending job whose deadline is ``<= now`` (in deadline order), and
        drop held events whose hold time is over (see :meth:`take_unknown`)."""
        outcomes: list[Outcome] = []
        deadlines = self._heap  # settling may rebuild it, in place
        while (earliest := deadlines.first()) is not None and earliest[0] <= now:
            deadlines.pop()
            deadline, key = earliest
            job = self._pending.get(key)
            if job is None or job.deadline != deadline:
                continue  # stale: settled or discarded since
            outcomes.append(self._settle(job, OutcomeStatus.EXPIRED, None, True))
        held = self._held
        while held:
            first = next(iter(held.values()))
            if first.expires > now:
                break
            self._unhold(first)
            self._drop(first.event)
        return outcomes

    def has_unknown(self) -> bool:
        """Whether :meth:`take_unknown` has events to hand back (a check, not a list)."""
        return bool(self._unknown_log)

    def take_unknown(self) -> list[Event]:
        """The events dropped or refused since the last call, oldest first, each with its
        ``tag``: for the caller to log, and to acknowledge or leave their sources. At most the
        last ``max(1024, max_held)`` (invariant 5; the count in :meth:`statistics` is exact)."""
        dropped = list(self._unknown_log)
        self._unknown_log.clear()
        return dropped

    # -- queries -------------------------------------------------------------------------------

    def pending_job(self, key: int) -> Expected | None:
        """The pending job with ``key``; ``None`` when it is settled, discarded or unknown."""
        return self._pending.get(key)

    def pending_by_output(self, location: str) -> list[Expected]:
        """The pending jobs whose output would be written at ``location``."""
        return [self._pending[key] for key in _index_get(self._by_output, location)]

    def pending_by_failure(self, location: str) -> list[Expected]:
        """The pending jobs whose failure would be written at ``location``."""
        return [self._pending[key] for key in _index_get(self._by_failure, location)]

    def has_pending_output(self, location: str) -> bool:
        """Whether a pending job's output would be written at ``location`` (a dict lookup: what
        a watcher asks for every object it lists)."""
        return location in self._by_output

    def has_pending_failure(self, location: str) -> bool:
        """Whether a pending job's failure would be written at ``location``."""
        return location in self._by_failure

    def pending_by_inference_id(self, inference_id: str) -> list[Expected]:
        """The pending jobs with this inference id."""
        if self._by_id is None:
            return [job for job in self._pending.values() if job.inference_id == inference_id]
        return [self._pending[key] for key in _index_get(self._by_id, inference_id)]

    def pending(self) -> Iterator[Expected]:
        """All pending jobs, in ``expect`` order. Do not change the tracker while iterating."""
        return iter(self._pending.values())

    def pending_count(self) -> int:
        """How many jobs are pending."""
        return len(self._pending)

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has something to do: the earliest deadline of a pending job or
        hold expiry of a held event; ``None`` when there is neither."""
        deadlines = self._heap
        while (earliest := deadlines.first()) is not None:
            deadline, key = earliest
            job = self._pending.get(key)
            if job is not None and job.deadline == deadline:
                break
            deadlines.pop()
        best = earliest[0] if earliest is not None else None
        if self._held:
            hold = next(iter(self._held.values())).expires
            if best is None or hold < best:
                best = hold
        return best

    def statistics(self) -> TrackerStatistics:
        return TrackerStatistics(
            pending=len(self._pending),
            held=len(self._held),
            completed=self._completed,
            failed=self._failed,
            expired=self._expired,
            events=self._events,
            matched=self._matched,
            duplicates=self._duplicates,
            unknown=self._unknown,
            hints=self._hints,
            rejected=self._rejected,
        )

    # -- internals -----------------------------------------------------------------------------

    def _decide(self, job: Expected, event: Event) -> Decision | None:
        return decide(
            job,
            event,
            trust_unsigned=self._trust_unsigned,
            require_signatures=self._require_signatures,
        )

    def _decide_pending(self, event: Event) -> list[tuple[Expected, Decision]]:
        """The pending jobs ``event`` is about (invariant 2), each with its decision: those found
        by location first, then those found by inference id only."""
        if isinstance(event, Completed):
            location, index = event.output_location, self._by_output
        else:
            location, index = event.failure_location, self._by_failure
        keys = _index_get(index, location) if location is not None else []
        if event.inference_id is not None and self._by_id is not None:
            by_id = _index_get(self._by_id, event.inference_id)
            if keys:
                # A job found by location may have the id too: do not decide it twice.
                seen = set(keys)
                keys.extend(key for key in by_id if key not in seen)
            else:
                keys = by_id
        decided = []
        for key in keys:
            job = self._pending[key]
            decision = self._decide(job, event)
            if decision is not None:
                decided.append((job, decision))
        return decided

    def _is_duplicate(self, event: Event) -> bool:
        """Whether ``event`` matches one of the remembered settled jobs (invariant 7)."""
        if isinstance(event, Completed):
            location = event.output_location
            by_location, id_without = self._settled_output, self._settled_id_no_output
        else:
            location = event.failure_location
            by_location, id_without = self._settled_failure, self._settled_id_no_failure
        inference_id = event.inference_id
        if location is None:
            return inference_id is not None and inference_id in self._settled_id
        return location in by_location or (inference_id is not None and inference_id in id_without)

    def _settle(
        self, job: Expected, status: OutcomeStatus, event: Event | None, trusted: bool
    ) -> Outcome:
        self._unpend(job)
        return self._record(job, status, event, trusted)

    def _record(
        self, job: Expected, status: OutcomeStatus, event: Event | None, trusted: bool
    ) -> Outcome:
        if status is OutcomeStatus.COMPLETED:
            self._completed += 1
        elif status is OutcomeStatus.FAILED:
            self._failed += 1
        else:
            self._expired += 1
        self._remember(job)
        return Outcome(job, status, event, trusted)

    def _unpend(self, job: Expected) -> None:
        key = job.key
        del self._pending[key]
        if job.output_location is not None:
            _index_remove(self._by_output, job.output_location, key)
        if job.failure_location is not None:
            _index_remove(self._by_failure, job.failure_location, key)
        if self._by_id is not None:
            _index_remove(self._by_id, job.inference_id, key)
        if job.deadline is not None:
            # Its heap entry is now stale (or was just popped by expire(): then the heap is one
            # shorter than this count assumes, which only delays the next rebuild a little).
            self._timed -= 1
            if len(self._heap) > 2 * self._timed + 1024:
                self._rebuild_heap()

    def _rebuild_heap(self) -> None:
        self._heap.replace(
            [(j.deadline, j.key) for j in self._pending.values() if j.deadline is not None]
        )

    def _remember(self, job: Expected) -> None:
        if self._remember_settled == 0:
            return
        # Not the job itself: a caller's Expected may hold more than the tracker needs (a
        # watcher's holds its job, and so its result), for as long as it is remembered.
        settled = (job.output_location, job.failure_location, job.inference_id)
        self._settled.append(settled)
        self._count_settled(settled, _count_add)
        if len(self._settled) > self._remember_settled:
            self._count_settled(self._settled.popleft(), _count_remove)

    def _count_settled(
        self, settled: _Settled, update: Callable[[dict[str, int], str | None], None]
    ) -> None:
        """Add a settled job to (or remove it from) the indexes that recognise duplicates."""
        output_location, failure_location, inference_id = settled
        update(self._settled_output, output_location)
        update(self._settled_failure, failure_location)
        update(self._settled_id, inference_id)
        if output_location is None:
            update(self._settled_id_no_output, inference_id)
        if failure_location is None:
            update(self._settled_id_no_failure, inference_id)

    def _hold(self, event: Event, now: float) -> None:
        self._seq += 1
        held = _Held(self._seq, event, now + self._hold_seconds)
        self._held[held.seq] = held
        if isinstance(event, Completed):
            if event.output_location is not None:
                _index_add(self._held_output, event.output_location, held.seq)
        elif event.failure_location is not None:
            _index_add(self._held_failure, event.failure_location, held.seq)
        if event.inference_id is not None:
            _index_add(self._held_id, event.inference_id, held.seq)
        while len(self._held) > self._max_held:
            _, oldest = self._held.popitem(last=False)
            self._unindex_held(oldest)
            self._drop(oldest.event)

    def _unhold(self, held: _Held) -> None:
        del self._held[held.seq]
        self._unindex_held(held)

    def _unindex_held(self, held: _Held) -> None:
        event = held.event
        if isinstance(event, Completed):
            if event.output_location is not None:
                _index_remove(self._held_output, event.output_location, held.seq)
        elif event.failure_location is not None:
            _index_remove(self._held_failure, event.failure_location, held.seq)
        if event.inference_id is not None:
            _index_remove(self._held_id, event.inference_id, held.seq)

    def _drop(self, event: Event) -> None:
        self._unknown += 1
        self._unknown_log.append(event)

    def _take_held(self, job: Expected) -> _Taken:
        """Take the held events about ``job`` out of the hold, earliest first, with their
        decisions."""
        seqs: set[int] = set(_index_get(self._held_id, job.inference_id))
        if job.output_location is not None:
            seqs.update(_index_get(self._held_output, job.output_location))
        if job.failure_location is not None:
            seqs.update(_index_get(self._held_failure, job.failure_location))
        taken: _Taken = []
        for seq in sorted(seqs):
            held = self._held[seq]
            decision = self._decide(job, held.event)
            if decision is not None:
                self._unhold(held)
                taken.append((held.event, decision))
        return taken

    def _use_held(self, job: Expected, taken: _Taken) -> ExpectResult:
        """What the held events about a new job do to it (invariant 4): the earliest settling one
        settles it, the other settling ones and the hints are duplicates, the rejected are
        rejected; with none settling, the hints are hints and the job goes on to be pending."""
        rejected = tuple(event for event, decision in taken if decision.rejects)
        self._rejected += len(rejected)
        first = next((i for i, (_, decision) in enumerate(taken) if decision.settles), None)
        if first is None:
            hints = tuple(event for event, decision in taken if decision is Decision.HINT)
            self._hints += len(hints)
            return ExpectResult(hints=hints, rejected=rejected)
        event, decision = taken[first]
        others = tuple(e for i, (e, d) in enumerate(taken) if i != first and not d.rejects)
        self._matched += 1
        self._duplicates += len(others)
        outcome = self._record(job, _status(event), event, decision is Decision.SETTLE)
        return ExpectResult(outcome, (event, *others), rejected=rejected)
