"""Unit tests of the sans-IO tracker: events fed directly, time passed in."""

from __future__ import annotations

import pytest

from aiosagemaker._core._events import (
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
from aiosagemaker._core._tracker import Tracker, matches

PENDING = ExpectResult()
DUPLICATE = FeedResult(Effect.DUPLICATE)
HELD = FeedResult(Effect.HELD)
REFUSED = FeedResult(Effect.REFUSED)


def job(
    key: int,
    inference_id: str | None = None,
    *,
    output: str | None = "default",
    failure: str | None = "default",
    deadline: float | None = 100.0,
) -> Expected:
    return Expected(
        key=key,
        inference_id=inference_id if inference_id is not None else f"id-{key}",
        output_location=f"s3://b/out/{key}.out" if output == "default" else output,
        failure_location=f"s3://b/err/{key}.out" if failure == "default" else failure,
        deadline=deadline,
    )


def out(key: int) -> str:
    return f"s3://b/out/{key}.out"


def err(key: int) -> str:
    return f"s3://b/err/{key}.out"


def check_accounting(tracker: Tracker) -> None:
    s = tracker.statistics()
    assert s.events == s.matched + s.duplicates + s.unknown + s.held
    assert s.settled == s.completed + s.failed + s.expired


def test_completed_by_output_location() -> None:
    tracker = Tracker()
    assert tracker.expect(job(1), now=0.0) == PENDING
    event = Completed(output_location=out(1))
    assert tracker.feed(event, now=1.0) == FeedResult(
        Effect.SETTLED, (Outcome(job(1), OutcomeStatus.COMPLETED, event),)
    )
    s = tracker.statistics()
    assert (s.pending, s.completed, s.matched, s.events) == (0, 1, 1, 1)
    check_accounting(tracker)


def test_failed_by_failure_location_carries_reason() -> None:
    tracker = Tracker()
    tracker.expect(job(1), now=0.0)
    event = Failed(failure_location=err(1), reason="ModelError")
    result = tracker.feed(event, now=1.0)
    assert result.effect is Effect.SETTLED
    [outcome] = result.outcomes
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.event == event


def test_by_inference_id_when_event_has_no_location() -> None:
    tracker = Tracker()
    tracker.expect(job(1), now=0.0)
    [outcome] = tracker.feed(Failed(inference_id="id-1", reason="boom"), now=1.0).outcomes
    assert outcome.job.key == 1
    assert outcome.status is OutcomeStatus.FAILED


def test_location_beats_inference_id() -> None:
    # Two requests with the same inference id (a retried ambiguous request): locations differ.
    tracker = Tracker()
    tracker.expect(job(1, "same"), now=0.0)
    tracker.expect(job(2, "same"), now=0.0)
    event = Completed(inference_id="same", output_location=out(2))
    [outcome] = tracker.feed(event, now=1.0).outcomes
    assert outcome.job.key == 2
    assert [j.key for j in tracker.pending()] == [1]


def test_event_without_location_settles_every_job_with_that_id() -> None:
    tracker = Tracker()
    tracker.expect(job(1, "same"), now=0.0)
    tracker.expect(job(2, "same"), now=0.0)
    result = tracker.feed(Completed(inference_id="same"), now=1.0)
    assert result.effect is Effect.SETTLED
    assert sorted(o.job.key for o in result.outcomes) == [1, 2]
    assert tracker.statistics().matched == 1  # one event, two jobs


def test_shared_output_location_settles_both() -> None:
    tracker = Tracker()
    a = job(1, output="s3://b/out/x.out")
    b = job(2, output="s3://b/out/x.out")
    tracker.expect(a, now=0.0)
    tracker.expect(b, now=0.0)
    assert tracker.pending_by_output("s3://b/out/x.out") == [a, b]
    outcomes = tracker.feed(Completed(output_location="s3://b/out/x.out"), now=1.0).outcomes
    assert [o.job for o in outcomes] == [a, b]
    assert tracker.pending_by_output("s3://b/out/x.out") == []


def test_job_without_failure_location_matched_by_id() -> None:
    # No S3FailurePath configured: the 202 has no FailureLocation, the error notification may.
    tracker = Tracker()
    tracker.expect(job(1, failure=None), now=0.0)
    event = Failed(inference_id="id-1", failure_location=err(9))
    [outcome] = tracker.feed(event, now=1.0).outcomes
    assert outcome.job.key == 1


def test_duplicate_after_settle_is_counted_not_settled() -> None:
    tracker = Tracker()
    tracker.expect(job(1), now=0.0)
    tracker.feed(Completed(output_location=out(1)), now=1.0)
    assert tracker.feed(Completed(output_location=out(1)), now=2.0) == DUPLICATE
    assert tracker.feed(Completed(inference_id="id-1"), now=2.0) == DUPLICATE
    s = tracker.statistics()
    assert (s.duplicates, s.held, s.completed) == (2, 0, 1)
    check_accounting(tracker)


def test_completed_then_failed_first_wins() -> None:
    tracker = Tracker()
    tracker.expect(job(1), now=0.0)
    [first] = tracker.feed(Completed(output_location=out(1)), now=1.0).outcomes
    assert tracker.feed(Failed(failure_location=err(1)), now=1.5) == DUPLICATE
    assert first.status is OutcomeStatus.COMPLETED
    s = tracker.statistics()
    assert (s.completed, s.failed, s.duplicates) == (1, 0, 1)


def test_event_before_expect_is_held_then_settles_on_expect() -> None:
    tracker = Tracker()
    event = Completed(inference_id="id-1", output_location=out(1), body=b"{}", tag="receipt-1")
    assert tracker.feed(event, now=0.0) == HELD
    assert tracker.statistics().held == 1
    result = tracker.expect(job(1), now=0.5)
    assert result == ExpectResult(Outcome(job(1), OutcomeStatus.COMPLETED, event), (event,))
    assert result.outcome is not None and result.outcome.event is result.consumed[0]
    assert [e.tag for e in result.consumed] == ["receipt-1"]
    assert result.redundant == ()
    s = tracker.statistics()
    assert (s.held, s.pending, s.matched, s.completed) == (0, 0, 1, 1)
    # The job is settled: a second copy of the event is a duplicate, not held again.
    assert tracker.feed(event, now=0.6) == DUPLICATE
    assert tracker.statistics().duplicates == 1
    check_accounting(tracker)


def test_several_held_events_earliest_wins_rest_are_duplicates() -> None:
    tracker = Tracker()
    first = Failed(inference_id="id-1", reason="first", tag="r-first")
    copy = Completed(output_location=out(1), tag="r-copy")
    other = Completed(output_location=out(2), tag="r-other")  # another job's
    events: list[Event] = [first, copy, other]
    for now, event in enumerate(events):
        assert tracker.feed(event, now=now / 10) == HELD
    result = tracker.expect(job(1), now=1.0)
    assert result.outcome == Outcome(job(1), OutcomeStatus.FAILED, first)
    # Both of job 1's held events come back, the winner first, so both sources can be
    # acknowledged; the other job's stays held.
    assert [e.tag for e in result.consumed] == ["r-first", "r-copy"]
    assert [e.tag for e in result.redundant] == ["r-copy"]
    s = tracker.statistics()
    assert (s.held, s.duplicates, s.matched) == (1, 1, 1)
    check_accounting(tracker)
    result = tracker.expect(job(2), now=1.0)
    assert [e.tag for e in result.consumed] == ["r-other"]


def test_expect_with_held_events_of_other_jobs_only_is_pending() -> None:
    tracker = Tracker()
    tracker.feed(Completed(output_location=out(2), tag="r-2"), now=0.0)
    assert tracker.expect(job(1), now=1.0) == PENDING
    assert tracker.pending_job(1) == job(1)
    assert tracker.statistics().held == 1


def test_held_event_is_dropped_after_hold_seconds() -> None:
    tracker = Tracker(hold_seconds=10.0)
    stray = Completed(output_location="s3://b/out/stray.out", tag="r-stray")
    assert tracker.feed(stray, now=0.0) == HELD
    assert tracker.next_deadline() == 10.0
    assert tracker.expire(9.9) == []
    assert tracker.statistics().held == 1
    assert tracker.take_unknown() == []
    assert tracker.expire(10.0) == []
    s = tracker.statistics()
    assert (s.held, s.unknown) == (0, 1)
    dropped = tracker.take_unknown()
    assert dropped == [stray] and dropped[0].tag == "r-stray"
    assert tracker.take_unknown() == []
    assert tracker.next_deadline() is None
    check_accounting(tracker)


def test_max_held_drops_oldest() -> None:
    tracker = Tracker(max_held=2)
    events = [Completed(output_location=f"s3://b/out/x{i}.out", tag=i) for i in range(3)]
    # The third is held; the oldest makes room for it and is reported dropped, with its tag.
    assert [tracker.feed(event, now=0.0) for event in events] == [HELD] * 3
    s = tracker.statistics()
    assert (s.held, s.unknown) == (2, 1)
    assert [e.tag for e in tracker.take_unknown()] == [0]
    check_accounting(tracker)


def test_unmatchable_event_is_refused() -> None:
    tracker = Tracker()
    event = Completed(body=b"x", tag="r-nothing")
    assert tracker.feed(event, now=0.0) == REFUSED
    s = tracker.statistics()
    assert (s.held, s.unknown) == (0, 1)
    assert [e.tag for e in tracker.take_unknown()] == ["r-nothing"]
    check_accounting(tracker)


def test_no_room_to_hold_is_refused() -> None:
    tracker = Tracker(max_held=0)
    event = Failed(inference_id="id-1", tag="r-1")
    assert tracker.feed(event, now=0.0) == REFUSED
    s = tracker.statistics()
    assert (s.held, s.unknown) == (0, 1)
    assert [e.tag for e in tracker.take_unknown()] == ["r-1"]
    # Refused means not kept: the job expected next cannot consume it.
    assert tracker.expect(job(1), now=1.0) == PENDING
    check_accounting(tracker)


def test_one_expire_reports_every_dropped_event() -> None:
    # More than the log's floor of 1,024 expire at once: each tag still comes back once.
    tracker = Tracker(hold_seconds=1.0, max_held=3000)
    for i in range(3000):
        assert tracker.feed(Completed(inference_id=f"stray-{i}", tag=i), now=0.0) == HELD
    assert tracker.expire(1.0) == []
    assert [e.tag for e in tracker.take_unknown()] == list(range(3000))
    assert tracker.statistics().unknown == 3000


def test_tag_plays_no_part_in_equality_or_matching() -> None:
    a = Completed(inference_id="id-1", output_location=out(1), tag="receipt-a")
    b = Completed(inference_id="id-1", output_location=out(1), tag="receipt-b")
    assert a == b and hash(a) == hash(b)
    assert Failed(inference_id="x", tag=1) == Failed(inference_id="x", tag=2)
    assert "receipt-a" not in repr(a)
    tracker = Tracker()
    tracker.expect(job(1), now=0.0)
    [outcome] = tracker.feed(a, now=1.0).outcomes
    assert outcome.event is a
    assert tracker.feed(b, now=1.0) == DUPLICATE


def test_expire_in_deadline_order_and_only_due_jobs() -> None:
    tracker = Tracker()
    tracker.expect(job(1, deadline=30.0), now=0.0)
    tracker.expect(job(2, deadline=10.0), now=0.0)
    tracker.expect(job(3, deadline=None), now=0.0)
    tracker.expect(job(4, deadline=20.0), now=0.0)
    assert tracker.next_deadline() == 10.0
    assert tracker.expire(5.0) == []
    outcomes = tracker.expire(20.0)
    assert [(o.job.key, o.status, o.event) for o in outcomes] == [
        (2, OutcomeStatus.EXPIRED, None),
        (4, OutcomeStatus.EXPIRED, None),
    ]
    assert tracker.next_deadline() == 30.0
    assert [o.job.key for o in tracker.expire(1e9)] == [1]
    assert tracker.next_deadline() is None
    assert [j.key for j in tracker.pending()] == [3]


def test_settled_job_does_not_expire_and_next_deadline_skips_it() -> None:
    tracker = Tracker()
    tracker.expect(job(1, deadline=10.0), now=0.0)
    tracker.expect(job(2, deadline=20.0), now=0.0)
    tracker.feed(Completed(output_location=out(1)), now=1.0)
    assert tracker.next_deadline() == 20.0
    assert [o.job.key for o in tracker.expire(100.0)] == [2]


def test_late_event_after_expiry_is_duplicate() -> None:
    tracker = Tracker()
    tracker.expect(job(1, deadline=10.0), now=0.0)
    [expired] = tracker.expire(10.0)
    assert expired.status is OutcomeStatus.EXPIRED
    assert tracker.feed(Completed(output_location=out(1)), now=11.0) == DUPLICATE
    assert tracker.statistics().duplicates == 1


def test_next_deadline_includes_hold_expiry() -> None:
    tracker = Tracker(hold_seconds=5.0)
    tracker.expect(job(1, deadline=100.0), now=0.0)
    tracker.feed(Completed(output_location="s3://b/out/other.out"), now=1.0)
    assert tracker.next_deadline() == 6.0


def test_discard_stops_tracking_without_outcome() -> None:
    tracker = Tracker()
    tracker.expect(job(1), now=0.0)
    assert tracker.pending_job(1) == job(1)
    assert tracker.discard(1) == job(1)
    assert tracker.discard(1) is None
    assert tracker.pending_job(1) is None
    assert tracker.pending_by_output(out(1)) == []
    assert tracker.pending_by_failure(err(1)) == []
    assert tracker.expire(1e9) == []
    assert tracker.next_deadline() is None
    # Its event now matches nothing pending and no settled job: it is held.
    assert tracker.feed(Completed(output_location=out(1)), now=1.0) == HELD
    assert tracker.statistics().held == 1


def test_expect_same_key_twice_raises() -> None:
    tracker = Tracker()
    tracker.expect(job(1), now=0.0)
    with pytest.raises(ValueError, match="already pending"):
        tracker.expect(job(1), now=0.0)


def test_key_can_be_reused_after_settle() -> None:
    tracker = Tracker()
    tracker.expect(job(1, deadline=10.0), now=0.0)
    tracker.feed(Completed(output_location=out(1)), now=1.0)
    fresh = job(1, "id-new", output="s3://b/out/new.out", deadline=10.0)
    assert tracker.expect(fresh, now=2.0) == PENDING
    assert [o.job for o in tracker.expire(10.0)] == [fresh]


def test_pending_queries() -> None:
    tracker = Tracker()
    jobs = [job(k) for k in (5, 3, 9)]
    for j in jobs:
        tracker.expect(j, now=0.0)
    assert list(tracker.pending()) == jobs
    assert tracker.pending_by_failure(err(3)) == [jobs[1]]
    assert tracker.pending_by_output("s3://b/out/none.out") == []


def test_remember_settled_bound() -> None:
    tracker = Tracker(remember_settled=1)
    tracker.expect(job(1), now=0.0)
    tracker.expect(job(2), now=0.0)
    tracker.feed(Completed(output_location=out(1)), now=1.0)
    tracker.feed(Completed(output_location=out(2)), now=1.0)
    # job 1 is forgotten: its repeat is held (and later dropped), job 2's is a duplicate.
    assert tracker.feed(Completed(output_location=out(1)), now=2.0) == HELD
    assert tracker.feed(Completed(output_location=out(2)), now=2.0) == DUPLICATE
    s = tracker.statistics()
    assert (s.held, s.duplicates) == (1, 1)
    check_accounting(tracker)


def test_remember_nothing() -> None:
    tracker = Tracker(remember_settled=0)
    tracker.expect(job(1), now=0.0)
    tracker.feed(Completed(output_location=out(1)), now=1.0)
    assert tracker.feed(Completed(output_location=out(1)), now=1.0) == HELD
    assert tracker.statistics().held == 1


def test_heap_is_compacted_when_mostly_stale() -> None:
    tracker = Tracker()
    for key in range(5000):
        tracker.expect(job(key, deadline=1000.0 + key), now=0.0)
    for key in range(4990):
        tracker.feed(Completed(output_location=out(key)), now=1.0)
    assert len(tracker._heap) < 2 * 10 + 1024 + 1
    assert [o.job.key for o in tracker.expire(1e9)] == list(range(4990, 5000))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hold_seconds": -1.0}, "hold_seconds"),
        ({"max_held": -1}, "max_held"),
        ({"remember_settled": -1}, "remember_settled"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tracker(**kwargs)  # type: ignore[arg-type]


def test_repr_shows_live_state() -> None:
    tracker = Tracker()
    tracker.expect(job(1), now=0.0)
    assert repr(tracker) == "<Tracker [pending 1, held 0 | completed 0, failed 0, expired 0]>"


def test_matches_rules() -> None:
    j = job(1)
    assert matches(j, Completed(output_location=out(1)))
    assert not matches(j, Completed(output_location=out(2), inference_id="id-1"))
    assert matches(j, Completed(inference_id="id-1"))
    assert not matches(j, Completed())
    assert matches(j, Failed(failure_location=err(1)))
    assert not matches(j, Failed(failure_location=out(1)))  # kinds are not mixed
    assert matches(job(2, "x", failure=None), Failed(inference_id="x", failure_location="s3://z"))


def test_duplicate_by_id_for_settled_job_without_that_location() -> None:
    # The job had no failure location (no S3FailurePath); it settled by id. A later Failed event
    # that does carry a failure location is still recognised as its duplicate.
    tracker = Tracker()
    tracker.expect(job(1, failure=None), now=0.0)
    tracker.feed(Failed(inference_id="id-1"), now=1.0)
    event = Failed(inference_id="id-1", failure_location="s3://b/err/x")
    assert tracker.feed(event, now=2.0) == DUPLICATE
    s = tracker.statistics()
    assert (s.duplicates, s.held) == (1, 0)
    # A location-carrying event for a different location of a job that had one is not.
    tracker.expect(job(2), now=2.0)
    tracker.feed(Completed(output_location=out(2)), now=3.0)
    assert tracker.feed(Completed(inference_id="id-2", output_location=out(3)), now=3.0) == HELD
    assert tracker.statistics().held == 1
