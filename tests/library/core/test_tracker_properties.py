"""Property test: the tracker against a naive model, over random interleavings.

The model keeps plain lists and scans them; it states the tracker's rules the obvious way, with
the one pure rule both share, :func:`decide` (unit-tested row by row in test_tracker_trust.py):

* an event is decided for every pending job; it settles every job it settles (SETTLED, the event's
  content trusted only for SETTLE), the first event to settle a job wins; else it is a HINT for
  the jobs it hints at;
* else it is a DUPLICATE if it matches a remembered settled job, else REJECTED if some pending job
  rejected it, else it is HELD (unmatchable ones, and any with ``max_held=0``, are REFUSED:
  unknown at once); ``expect`` takes every held event it decides for the job, earliest first:
  the earliest settling one settles it (the other settling ones and the hints are duplicates),
  the rejected ones are rejected, and with none settling the hints come back as hints;
* ``expire(now)`` settles pending jobs with ``deadline <= now`` in (deadline, key) order and drops
  held events whose hold time is over; dropped and refused events are what ``take_unknown``
  returns, oldest first.

On top of agreeing with the model at every step (effects, outcomes, consumed and dropped events,
compared tag by tag since tags play no part in equality), every job settles exactly once by the
end, an event-carrying outcome's event matches its job, the statistics add up, and every event's
tag comes back to the caller through exactly one door: a SETTLED, HINT, REJECTED or DUPLICATE
feed, an expect that took it, or ``take_unknown``. And the point of #10, checked on every
outcome: an unsigned notification never settles a job that has a location of its kind unless it
names that location, never settles a failure that has one at all, and its content (body,
reason) is used only for a job without a location, with ``trust_unsigned``.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from aiosagemaker._core._events import (
    Completed,
    Decision,
    Effect,
    Event,
    Expected,
    ExpectResult,
    Failed,
    FeedResult,
    Origin,
    Outcome,
    OutcomeStatus,
)
from aiosagemaker._core._tracker import Tracker, TrackerStatistics, decide, matches

ID_POOL = ["a", "b", "c"]
#: endpoints of jobs (None: not checked) and those events name ("EP": the same, in other case).
JOB_ENDPOINTS = [None, "ep"]
EVENT_ENDPOINTS = [None, "ep", "EP", "other"]


def status_of(event: Event) -> OutcomeStatus:
    return OutcomeStatus.COMPLETED if isinstance(event, Completed) else OutcomeStatus.FAILED


@dataclass
class Model:
    hold_seconds: float
    max_held: int
    remember: int
    trust_unsigned: bool
    require_signatures: bool
    pending: dict[int, Expected] = field(default_factory=dict)
    held: list[tuple[Event, float]] = field(default_factory=list)
    settled: deque[Expected] = field(default_factory=deque)
    dropped: list[Event] = field(default_factory=list)  # since the last take_unknown
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            [
                "completed",
                "failed",
                "expired",
                "events",
                "matched",
                "duplicates",
                "unknown",
                "hints",
                "rejected",
            ],
            0,
        )
    )

    def decide(self, job: Expected, event: Event) -> Decision | None:
        return decide(
            job,
            event,
            trust_unsigned=self.trust_unsigned,
            require_signatures=self.require_signatures,
        )

    def _record(
        self, job: Expected, status: OutcomeStatus, event: Event | None, trusted: bool = True
    ) -> Outcome:
        self.counts[status.value] += 1
        if self.remember:
            self.settled.append(job)
            if len(self.settled) > self.remember:
                self.settled.popleft()
        return Outcome(job, status, event, trusted)

    def _drop(self, event: Event) -> None:
        self.counts["unknown"] += 1
        self.dropped.append(event)

    def expect(self, job: Expected, now: float) -> ExpectResult:
        found: list[tuple[Event, Decision]] = []
        for event, _ in self.held:
            decision = self.decide(job, event)
            if decision is not None:
                found.append((event, decision))
        taken = {id(event) for event, _ in found}
        self.held = [h for h in self.held if id(h[0]) not in taken]
        rejected = tuple(e for e, d in found if d.rejects)
        self.counts["rejected"] += len(rejected)
        settling = [i for i, (_, d) in enumerate(found) if d.settles]
        if settling:
            first = settling[0]
            event, decision = found[first]
            others = [e for i, (e, d) in enumerate(found) if i != first and not d.rejects]
            self.counts["matched"] += 1
            self.counts["duplicates"] += len(others)
            outcome = self._record(job, status_of(event), event, decision is Decision.SETTLE)
            return ExpectResult(outcome, (event, *others), rejected=rejected)
        hints = tuple(e for e, d in found if d is Decision.HINT)
        self.counts["hints"] += len(hints)
        self.pending[job.key] = job
        return ExpectResult(hints=hints, rejected=rejected)

    def feed(self, event: Event, now: float) -> FeedResult:
        self.counts["events"] += 1
        decided = [(j, self.decide(j, event)) for j in self.pending.values()]
        settling = [(j, d) for j, d in decided if d is not None and d.settles]
        if settling:
            self.counts["matched"] += 1
            for j, _ in settling:
                del self.pending[j.key]
            return FeedResult(
                Effect.SETTLED,
                tuple(
                    self._record(j, status_of(event), event, d is Decision.SETTLE)
                    for j, d in settling
                ),
            )
        hinted = tuple(j for j, d in decided if d is Decision.HINT)
        if hinted:
            self.counts["hints"] += 1
            return FeedResult(Effect.HINT, jobs=hinted)
        if any(matches(j, event) for j in self.settled):
            self.counts["duplicates"] += 1
            return FeedResult(Effect.DUPLICATE)
        refusing = tuple(j for j, d in decided if d is not None and d.rejects)
        if refusing:
            self.counts["rejected"] += 1
            return FeedResult(Effect.REJECTED, jobs=refusing)
        location = event.output_location if isinstance(event, Completed) else event.failure_location
        if (event.inference_id is None and location is None) or self.max_held == 0:
            self._drop(event)
            return FeedResult(Effect.REFUSED)
        self.held.append((event, now + self.hold_seconds))
        if len(self.held) > self.max_held:
            self._drop(self.held.pop(0)[0])
        return FeedResult(Effect.HELD)

    def expire(self, now: float) -> list[Outcome]:
        due = sorted(
            (j for j in self.pending.values() if j.deadline is not None and j.deadline <= now),
            key=lambda j: (j.deadline, j.key),
        )
        for j in due:
            del self.pending[j.key]
        outcomes = [self._record(j, OutcomeStatus.EXPIRED, None) for j in due]
        for h in self.held:
            if h[1] <= now:
                self._drop(h[0])
        self.held = [h for h in self.held if h[1] > now]
        return outcomes

    def take_unknown(self) -> list[Event]:
        dropped, self.dropped = self.dropped, []
        return dropped

    def discard(self, key: int) -> Expected | None:
        return self.pending.pop(key, None)

    def statistics(self) -> TrackerStatistics:
        return TrackerStatistics(pending=len(self.pending), held=len(self.held), **self.counts)


@st.composite
def jobs(draw: st.DrawFn) -> list[Expected]:
    n = draw(st.integers(1, 5))
    result = []
    for key in range(n):
        result.append(
            Expected(
                key=key,
                inference_id=draw(st.sampled_from(ID_POOL)),
                # Mostly distinct locations; sometimes shared (AWS does not deduplicate) or absent.
                output_location=draw(
                    st.sampled_from([f"s3://b/out/{key}"] * 3 + ["s3://b/out/shared", None])
                ),
                failure_location=draw(st.sampled_from([f"s3://b/err/{key}"] * 3 + [None])),
                deadline=draw(st.none() | st.integers(0, 60).map(float)),
                endpoint_name=draw(st.sampled_from(JOB_ENDPOINTS)),
            )
        )
    return result


def operations(n: int) -> st.SearchStrategy[tuple[object, ...]]:
    keys = st.integers(0, n - 1)
    kinds = st.sampled_from(["completed", "failed"])
    # Observed events (the watcher's own S3 look) as often as notifications, signed or not.
    origins = st.sampled_from([Origin.OBSERVED, Origin.OBSERVED, Origin.SIGNED, Origin.UNSIGNED])
    endpoints = st.sampled_from(EVENT_ENDPOINTS)
    return st.one_of(
        st.tuples(st.just("expect"), keys),
        st.tuples(
            st.just("event"),
            keys,
            kinds,
            # "foreign": the job's id, another location (a forgery, or another job's).
            st.sampled_from(["location", "id", "both", "foreign"]),
            origins,
            endpoints,
        ),
        st.tuples(
            st.just("stray"),
            kinds,
            st.none() | st.sampled_from(ID_POOL),
            st.none() | st.just("s3://b/out/stray"),
            origins,
        ),
        st.tuples(st.just("advance"), st.integers(0, 15).map(float)),
        st.tuples(st.just("discard"), keys),
    )


def event_for(
    job: Expected, kind: str, how: str, tag: int, origin: Origin, endpoint: str | None
) -> Event:
    inference_id = job.inference_id if how in ("id", "both", "foreign") else None
    if kind == "completed":
        location = job.output_location if how in ("location", "both") else None
        if how == "foreign":
            location = "s3://b/out/foreign"
        return Completed(
            inference_id=inference_id,
            output_location=location,
            body=b"x",
            origin=origin,
            endpoint_name=endpoint,
            tag=tag,
        )
    location = job.failure_location if how in ("location", "both") else None
    if how == "foreign":
        location = "s3://b/err/foreign"
    return Failed(
        inference_id=inference_id,
        failure_location=location,
        reason="r",
        origin=origin,
        endpoint_name=endpoint,
        tag=tag,
    )


def by_key(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return sorted(outcomes, key=lambda o: o.job.key)


def tags(events: Iterable[Event | None]) -> list[object]:
    """Equality ignores tags: compare them apart, to tell equal-looking events from each other."""
    return [None if event is None else event.tag for event in events]


def check_feed(got: FeedResult, want: FeedResult, event: Event, model: Model) -> None:
    assert got.effect is want.effect
    assert by_key(got.outcomes) == by_key(want.outcomes)
    assert tags(o.event for o in by_key(got.outcomes)) == tags(
        o.event for o in by_key(want.outcomes)
    )
    assert (got.effect is Effect.SETTLED) == bool(got.outcomes)
    assert sorted(j.key for j in got.jobs) == sorted(j.key for j in want.jobs)
    assert bool(got.jobs) == (got.effect in (Effect.HINT, Effect.REJECTED))
    if got.effect is Effect.REJECTED:
        # The decision reported is the first job's (which is first is the tracker's affair).
        assert got.decision is not None and got.decision.rejects
        assert got.decision is model.decide(got.jobs[0], event)
    else:
        assert got.decision is None


def check_expect(got: ExpectResult, want: ExpectResult) -> None:
    assert got == want
    assert tags(got.consumed) == tags(want.consumed)
    assert tags(got.hints) == tags(want.hints)
    assert tags(got.rejected) == tags(want.rejected)
    if got.outcome is None:
        assert got.consumed == ()
    else:
        assert got.outcome.event is got.consumed[0]
        assert got.hints == ()


def check_trust(outcome: Outcome, trust_unsigned: bool) -> None:
    """The point of #10: what an unsigned notification may do to a job."""
    event = outcome.event
    if event is None or event.origin is not Origin.UNSIGNED:
        return
    job = outcome.job
    if isinstance(event, Completed):
        own, named = job.output_location, event.output_location
    else:
        own, named = job.failure_location, event.failure_location
        # An unsigned Failed is at most a hint for a job with a failure location.
        assert own is None
    if own is not None:
        assert named == own, "an unsigned notification settled a job it does not name"
        assert not outcome.content_trusted, "an unsigned body was used for a job with a location"
    else:
        assert trust_unsigned and outcome.content_trusted


@settings(max_examples=400, deadline=None)
@given(
    data=st.data(),
    all_jobs=jobs(),
    hold_seconds=st.sampled_from([0.0, 5.0, 20.0]),
    max_held=st.sampled_from([0, 2, 100]),
    remember=st.sampled_from([0, 1, 3, 1000]),
    trust_unsigned=st.booleans(),
    require_signatures=st.booleans(),
)
def test_tracker_agrees_with_model(
    data: st.DataObject,
    all_jobs: list[Expected],
    hold_seconds: float,
    max_held: int,
    remember: int,
    trust_unsigned: bool,
    require_signatures: bool,
) -> None:
    ops = data.draw(st.lists(operations(len(all_jobs)), min_size=4, max_size=80))
    tracker = Tracker(
        hold_seconds=hold_seconds,
        max_held=max_held,
        remember_settled=remember,
        trust_unsigned=trust_unsigned,
        require_signatures=require_signatures,
    )
    model = Model(hold_seconds, max_held, remember, trust_unsigned, require_signatures)
    now = 0.0
    expected: set[int] = set()
    discarded: set[int] = set()
    settled: dict[int, Outcome] = {}
    new_tag = itertools.count()
    fed: list[int] = []  # every tag fed
    returned: list[object] = []  # every tag handed back (each must come back exactly once)

    def settle(outcomes: list[Outcome], *, expiring: bool) -> None:
        for outcome in outcomes:
            key = outcome.job.key
            assert key not in settled, "a job settled twice"
            assert key in expected and key not in discarded
            settled[key] = outcome
            if outcome.status is OutcomeStatus.EXPIRED:
                assert expiring and outcome.event is None
                assert outcome.job.deadline is not None and outcome.job.deadline <= now
            else:
                assert outcome.event is not None and matches(outcome.job, outcome.event)
                assert outcome.status is status_of(outcome.event)
                check_trust(outcome, trust_unsigned)

    def feed(event: Event) -> None:
        fed.append(event.tag)  # type: ignore[arg-type]
        got = tracker.feed(event, now)
        check_feed(got, model.feed(event, now), event, model)
        settle(list(got.outcomes), expiring=False)
        if got.effect in (Effect.SETTLED, Effect.DUPLICATE, Effect.HINT, Effect.REJECTED):
            returned.append(event.tag)  # HELD comes back later; REFUSED from take_unknown

    def take_unknown() -> None:
        dropped = tracker.take_unknown()
        want = model.take_unknown()
        assert dropped == want and tags(dropped) == tags(want)
        returned.extend(tags(dropped))

    for op in ops:
        match op:
            case ("expect", int(key)):
                if key in expected:
                    continue
                expected.add(key)
                got = tracker.expect(all_jobs[key], now)
                check_expect(got, model.expect(all_jobs[key], now))
                settle([got.outcome] if got.outcome else [], expiring=False)
                for events in (got.consumed, got.hints, got.rejected):
                    returned.extend(tags(events))
            case ("event", int(key), str(kind), str(how), Origin() as origin, endpoint):
                assert endpoint is None or isinstance(endpoint, str)
                event = event_for(all_jobs[key], kind, how, next(new_tag), origin, endpoint)
                feed(event)
            case ("stray", str(kind), inference_id, location, Origin() as origin):
                assert inference_id is None or isinstance(inference_id, str)
                assert location is None or isinstance(location, str)
                tag = next(new_tag)
                stray: Event = (
                    Completed(
                        inference_id=inference_id, output_location=location, origin=origin, tag=tag
                    )
                    if kind == "completed"
                    else Failed(
                        inference_id=inference_id, failure_location=location, origin=origin, tag=tag
                    )
                )
                feed(stray)
            case ("advance", float(dt)):
                now += dt
                nxt = tracker.next_deadline()
                got_list = tracker.expire(now)
                assert got_list == model.expire(now)
                if nxt is None or nxt > now:
                    assert got_list == []
                settle(got_list, expiring=True)
            case ("discard", int(key)):
                assert tracker.discard(key) == model.discard(key)
                if key in expected and key not in settled:
                    discarded.add(key)
            case _:  # pragma: no cover
                raise AssertionError(op)
        take_unknown()
        stats = tracker.statistics()
        assert stats == model.statistics()
        assert stats.events == (
            stats.matched
            + stats.duplicates
            + stats.unknown
            + stats.held
            + stats.hints
            + stats.rejected
        )
        assert stats.settled == len(settled)
        assert stats.pending == len(expected - discarded - set(settled))
        assert {j.key for j in tracker.pending()} == expected - discarded - set(settled)

    # Jobs with a deadline all settle by the end of time; jobs without one stay pending.
    now = math.inf
    settle(tracker.expire(now), expiring=True)
    model.expire(now)
    take_unknown()
    # Nothing is held any more: every tag fed has come back, once.
    assert sorted(returned) == fed  # type: ignore[type-var]
    assert stats_pending_keys(tracker) == {
        k for k in expected - discarded - set(settled) if all_jobs[k].deadline is None
    }
    for key in expected - discarded:
        if all_jobs[key].deadline is not None:
            assert key in settled
    assert tracker.statistics().held == 0
    assert tracker.next_deadline() is None


def stats_pending_keys(tracker: Tracker) -> set[int]:
    return {j.key for j in tracker.pending()}
