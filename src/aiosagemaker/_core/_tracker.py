"""The sans-IO tracker: expected jobs in, watcher events in, outcomes out.

A synchronous state machine in the manner of ``h11/_state.py``. It never reads a clock, never
sleeps and never touches the network: the caller passes ``now`` (monotonic seconds) and turns the
returned :class:`Outcome` values into resolved futures. Every call says what it did, so a caller
keeps no copy of the tracker's state: not of what is held, nor of what was a duplicate.

Invariants
----------

1. A job is in exactly one of three places: *pending* (``expect`` was called, no outcome yet),
   *settled* (an outcome was returned for it, exactly once) or *gone* (``discard``-ed, no outcome).
   ``expect`` with a key that is already pending raises ``ValueError``.
2. An event *matches* a job when, for the event's kind of location (``output_location`` for
   :class:`Completed`, ``failure_location`` for :class:`Failed`), both the event and the job have
   one and they are equal; when either side lacks that location, the inference ids must be equal
   (and not ``None``). So a location always beats an id: two jobs that share an inference id (AWS
   does not deduplicate ids) are told apart by their locations. An event's ``tag`` plays no part.
   See :func:`matches`.
3. ``feed(event)`` settles *every* pending job the event matches at that moment (normally one),
   each with COMPLETED or FAILED. The first event to arrive wins: a later event for a settled job
   (a second notification, the S3 listing after the notification, a Failed after a Completed, any
   event after expiry) is a *duplicate*: counted, never an outcome.
4. An event that matches no pending job and is not a duplicate is *held* (a notification can beat
   the 202 answer that makes the job pending). A later ``expect`` for a matching job consumes every
   held event matching it: the earliest held one settles the job at once, the others count as
   duplicates. A held event is dropped by the first ``expire(now)`` with ``now >= held_at +
   hold_seconds``, or sooner, oldest first, when more than ``max_held`` are held; a dropped event
   counts as *unknown*. An event with neither a location nor an inference id can never match, and
   with ``max_held=0`` nothing can be held: such an event is *refused*, unknown at once.
5. Every event leaves through exactly one door, and the caller is told which, with the event
   itself (so its ``tag`` comes back): ``feed`` returns a :class:`FeedResult` whose
   :class:`Effect` is SETTLED (with the outcomes), DUPLICATE, HELD or REFUSED; a held event later
   comes back either in the :class:`ExpectResult` of the job that consumed it (earliest first) or,
   dropped, from :meth:`Tracker.take_unknown`, as does every refused event. ``take_unknown`` keeps
   at least ``max_held`` events (and 1,024), so a caller that takes them after every ``feed`` and
   ``expire`` misses none; past that bound the oldest are forgotten (the count stays exact).
6. ``expire(now)`` settles EXPIRED exactly the pending jobs whose ``deadline <= now`` (in deadline
   order), at ``O(log n)`` each: deadlines live in a heap with lazy deletion; the heap is rebuilt
   when stale entries outnumber live ones (amortised ``O(1)`` per settlement). A job with
   ``deadline=None`` never expires.
7. Duplicate detection remembers the most recently settled ``remember_settled`` jobs (a FIFO of
   the job objects plus counting dicts of their locations and ids; about 200-300 bytes a job). An
   event for a job settled longer ago than that is no longer recognised: it is held, then dropped
   as unknown. It can never settle a job twice, because a settled job is no longer pending.
8. Accounting: ``events == matched + duplicates + unknown + held`` at all times (every event fed is
   counted once: it settled something, was a duplicate, was dropped or refused, or is still held),
   and ``completed + failed + expired`` is the number of outcomes ever returned.
9. Memory per pending job: the :class:`Expected` itself plus one dict entry per location and id,
   whose value is the key itself (an ``int``), a list only when several pending jobs share it.

``now`` must not go backwards between calls; the tracker does not check it.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._events import (
    Completed,
    Effect,
    Expected,
    ExpectResult,
    FeedResult,
    Outcome,
    OutcomeStatus,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._events import Event

__all__ = ["Tracker", "TrackerStatistics", "matches"]

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
    """Whether ``event`` is about ``job`` (invariant 2): by location when both have one of the
    event's kind, else by inference id."""
    location = _event_location(event)
    job_location = _job_location(job, event)
    if location is not None and job_location is not None:
        return location == job_location
    return event.inference_id is not None and event.inference_id == job.inference_id


def _status(event: Event) -> OutcomeStatus:
    return OutcomeStatus.COMPLETED if isinstance(event, Completed) else OutcomeStatus.FAILED


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerStatistics:
    """A snapshot of a :class:`Tracker`.

    ``events == matched + duplicates + unknown + held`` always holds.
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

    @property
    def settled(self) -> int:
        return self.completed + self.failed + self.expired


@dataclass(slots=True)
class _Held:
    seq: int
    event: Event
    expires: float


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
        "_hold_seconds",
        "_matched",
        "_max_held",
        "_pending",
        "_remember_settled",
        "_seq",
        "_settled",
        "_settled_failure",
        "_settled_id",
        "_settled_id_no_failure",
        "_settled_id_no_output",
        "_settled_output",
        "_timed",
        "_unknown",
        "_unknown_log",
    )

    def __init__(
        self,
        *,
        hold_seconds: float = 300.0,
        max_held: int = 100_000,
        remember_settled: int = 100_000,
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

        # Pending jobs, in expect order, and their indexes.
        self._pending: dict[int, Expected] = {}
        self._by_output: _Index = {}
        self._by_failure: _Index = {}
        self._by_id: _Index = {}
        # (deadline, key) of pending jobs with a deadline; may hold stale entries (invariant 6).
        self._heap: list[tuple[float, int]] = []
        self._timed = 0  # pending jobs with a deadline: len(heap) - timed entries are stale

        # Held events, oldest first (OrderedDict: O(1) pop from the front), and their indexes.
        self._held: OrderedDict[int, _Held] = OrderedDict()
        self._held_output: _Index = {}  # Completed events by output location
        self._held_failure: _Index = {}  # Failed events by failure location
        self._held_id: _Index = {}  # any event with an inference id
        self._seq = 0
        self._unknown_log: deque[Event] = deque(maxlen=max(_UNKNOWN_LOG, max_held))

        # Recently settled jobs, for duplicate detection (invariant 7).
        self._settled: deque[Expected] = deque()
        self._settled_output: dict[str, int] = {}
        self._settled_failure: dict[str, int] = {}
        self._settled_id: dict[str, int] = {}
        self._settled_id_no_output: dict[str, int] = {}
        self._settled_id_no_failure: dict[str, int] = {}

        self._completed = self._failed = self._expired = 0
        self._events = self._matched = self._duplicates = self._unknown = 0

    def __repr__(self) -> str:
        return (
            f"<Tracker [pending {len(self._pending)}, held {len(self._held)} | "
            f"completed {self._completed}, failed {self._failed}, expired {self._expired}]>"
        )

    # -- jobs ----------------------------------------------------------------------------------

    def expect(self, job: Expected, now: float) -> ExpectResult:
        """Start waiting for ``job``.

        :return: the job's outcome at once when held events match it (an event beat the 202
            answer), with every held event it consumed (their tags are the caller's to
            acknowledge); else an :class:`ExpectResult` without an outcome: the job is pending.
        :raises ValueError: a job with the same key is already pending.
        """
        if job.key in self._pending:
            raise ValueError(f"job key {job.key!r} is already pending")
        if self._held:
            consumed = self._take_held(job)
            if consumed:
                return self._settle_from_held(job, consumed)
        key = job.key
        self._pending[key] = job
        if job.output_location is not None:
            _index_add(self._by_output, job.output_location, key)
        if job.failure_location is not None:
            _index_add(self._by_failure, job.failure_location, key)
        _index_add(self._by_id, job.inference_id, key)
        if job.deadline is not None:
            heapq.heappush(self._heap, (job.deadline, key))
            self._timed += 1
        return _PENDING

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

        :return: what the event did (invariant 5): SETTLED with the outcomes of the pending jobs
            it settled (usually one), DUPLICATE, HELD, or REFUSED.
        """
        self._events += 1
        keys = self._pending_matches(event)
        if keys:
            self._matched += 1
            status = _status(event)
            outcomes = tuple(self._settle(self._pending[key], status, event) for key in keys)
            return FeedResult(Effect.SETTLED, outcomes)
        if self._is_duplicate(event):
            self._duplicates += 1
            return _DUPLICATE
        if self._max_held == 0 or (event.inference_id is None and _event_location(event) is None):
            self._drop(event)  # no room to hold it, or it can never match anything
            return _REFUSED
        self._hold(event, now)
        return _HELD

    def expire(self, now: float) -> list[Outcome]:
        """Settle EXPIRED every pending job whose deadline is ``<= now`` (in deadline order), and
        drop held events whose hold time is over (see :meth:`take_unknown`)."""
        outcomes: list[Outcome] = []
        # self._heap, not a local: settling may rebuild it.
        while self._heap and self._heap[0][0] <= now:
            deadline, key = heapq.heappop(self._heap)
            job = self._pending.get(key)
            if job is None or job.deadline != deadline:
                continue  # stale: settled or discarded since
            outcomes.append(self._settle(job, OutcomeStatus.EXPIRED, None))
        held = self._held
        while held:
            first = next(iter(held.values()))
            if first.expires > now:
                break
            self._unhold(first)
            self._drop(first.event)
        return outcomes

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

    def pending(self) -> Iterator[Expected]:
        """All pending jobs, in ``expect`` order. Do not change the tracker while iterating."""
        return iter(self._pending.values())

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has something to do: the earliest deadline of a pending job or
        hold expiry of a held event; ``None`` when there is neither."""
        heap = self._heap
        while heap:
            deadline, key = heap[0]
            job = self._pending.get(key)
            if job is not None and job.deadline == deadline:
                break
            heapq.heappop(heap)
        best = heap[0][0] if heap else None
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
        )

    # -- internals -----------------------------------------------------------------------------

    def _pending_matches(self, event: Event) -> list[int]:
        """Keys of the pending jobs ``event`` matches (invariant 2), without repeats."""
        if isinstance(event, Completed):
            location, index = event.output_location, self._by_output
        else:
            location, index = event.failure_location, self._by_failure
        keys = _index_get(index, location) if location is not None else []
        if event.inference_id is not None:
            # Jobs found by location have one equal to the event's, so these never repeat them.
            for key in _index_get(self._by_id, event.inference_id):
                if location is None or _job_location(self._pending[key], event) is None:
                    keys.append(key)
        return keys

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

    def _settle(self, job: Expected, status: OutcomeStatus, event: Event | None) -> Outcome:
        self._unpend(job)
        return self._record(job, status, event)

    def _record(self, job: Expected, status: OutcomeStatus, event: Event | None) -> Outcome:
        if status is OutcomeStatus.COMPLETED:
            self._completed += 1
        elif status is OutcomeStatus.FAILED:
            self._failed += 1
        else:
            self._expired += 1
        self._remember(job)
        return Outcome(job, status, event)

    def _unpend(self, job: Expected) -> None:
        key = job.key
        del self._pending[key]
        if job.output_location is not None:
            _index_remove(self._by_output, job.output_location, key)
        if job.failure_location is not None:
            _index_remove(self._by_failure, job.failure_location, key)
        _index_remove(self._by_id, job.inference_id, key)
        if job.deadline is not None:
            # Its heap entry is now stale (or was just popped by expire(): then the heap is one
            # shorter than this count assumes, which only delays the next rebuild a little).
            self._timed -= 1
            if len(self._heap) > 2 * self._timed + 1024:
                self._rebuild_heap()

    def _rebuild_heap(self) -> None:
        self._heap = [(j.deadline, j.key) for j in self._pending.values() if j.deadline is not None]
        heapq.heapify(self._heap)

    def _remember(self, job: Expected) -> None:
        if self._remember_settled == 0:
            return
        self._settled.append(job)
        self._count_settled(job, _count_add)
        if len(self._settled) > self._remember_settled:
            self._count_settled(self._settled.popleft(), _count_remove)

    def _count_settled(
        self, job: Expected, update: Callable[[dict[str, int], str | None], None]
    ) -> None:
        """Add a settled job to (or remove it from) the indexes that recognise duplicates."""
        update(self._settled_output, job.output_location)
        update(self._settled_failure, job.failure_location)
        update(self._settled_id, job.inference_id)
        if job.output_location is None:
            update(self._settled_id_no_output, job.inference_id)
        if job.failure_location is None:
            update(self._settled_id_no_failure, job.inference_id)

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

    def _take_held(self, job: Expected) -> list[Event]:
        """Take the held events that match ``job`` out of the hold, earliest first."""
        seqs: set[int] = set(_index_get(self._held_id, job.inference_id))
        if job.output_location is not None:
            seqs.update(_index_get(self._held_output, job.output_location))
        if job.failure_location is not None:
            seqs.update(_index_get(self._held_failure, job.failure_location))
        found = sorted(seq for seq in seqs if matches(job, self._held[seq].event))
        taken = [self._held[seq] for seq in found]
        for held in taken:
            self._unhold(held)
        return [held.event for held in taken]

    def _settle_from_held(self, job: Expected, consumed: list[Event]) -> ExpectResult:
        """The earliest consumed event settles ``job``; the others are duplicates (invariant 4)."""
        event = consumed[0]
        self._matched += 1
        self._duplicates += len(consumed) - 1
        return ExpectResult(self._record(job, _status(event), event), tuple(consumed))
