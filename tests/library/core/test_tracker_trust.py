"""The tracker's trust decisions (#10): which notification may settle which job, and with what.

Each row of :func:`aiosagemaker._core._tracker.decide`'s table, then what ``feed`` and ``expect``
do with each decision (SETTLED with or without the event's content, HINT, REJECTED), and the
accounting that goes with them. No I/O: events are fed directly.
"""

from __future__ import annotations

import pytest

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
from aiosagemaker._core._tracker import Tracker, decide

OUT = "s3://b/out/1.out"
ERR = "s3://b/err/1-error.out"
OTHER_OUT = "s3://evil/out/1.out"
OTHER_ERR = "s3://evil/err/1-error.out"
SIGNED, UNSIGNED, OBSERVED = Origin.SIGNED, Origin.UNSIGNED, Origin.OBSERVED


def job(
    key: int = 1,
    *,
    output: str | None = OUT,
    failure: str | None = ERR,
    endpoint: str | None = "my-endpoint",
    inference_id: str = "id-1",
) -> Expected:
    return Expected(key, inference_id, output, failure, 100.0, endpoint)


def done(
    location: str | None = None,
    origin: Origin = UNSIGNED,
    *,
    inference_id: str | None = "id-1",
    body: bytes | None = None,
    endpoint: str | None = "my-endpoint",
    tag: object = None,
) -> Completed:
    return Completed(
        inference_id=inference_id,
        output_location=location,
        body=body,
        content_type="application/json" if body is not None else None,
        origin=origin,
        endpoint_name=endpoint,
        tag=tag,
    )


def failed(
    location: str | None = None,
    origin: Origin = UNSIGNED,
    *,
    inference_id: str | None = "id-1",
    reason: str | None = "ModelError: forged?",
    endpoint: str | None = "my-endpoint",
    tag: object = None,
) -> Failed:
    return Failed(
        inference_id=inference_id,
        failure_location=location,
        reason=reason,
        origin=origin,
        endpoint_name=endpoint,
        tag=tag,
    )


def check_accounting(tracker: Tracker) -> None:
    s = tracker.statistics()
    assert s.events == s.matched + s.duplicates + s.unknown + s.held + s.hints + s.rejected
    assert s.settled == s.completed + s.failed + s.expired


# --- decide(): the table, row by row ---------------------------------------------------------


@pytest.mark.parametrize(
    ("the_job", "event", "decision"),
    [
        # Observed in S3 by the watcher itself: the old location-beats-id rule.
        (job(), Completed(output_location=OUT), Decision.SETTLE),
        (job(), Completed(inference_id="id-1", output_location=OTHER_OUT), None),
        (job(), Failed(inference_id="id-1"), Decision.SETTLE),
        # A notification about neither the job's location nor its id: not about it.
        (job(), done(OTHER_OUT, inference_id="id-2"), None),
        (job(), done(None, inference_id=None, body=b"x"), None),
        # Another endpoint (compared without case: endpoint names are not case sensitive).
        (job(), done(OUT, SIGNED, endpoint="other-endpoint"), Decision.WRONG_ENDPOINT),
        (job(), failed(None, SIGNED, endpoint="other"), Decision.WRONG_ENDPOINT),
        (job(), done(OUT, SIGNED, endpoint="My-Endpoint"), Decision.SETTLE),
        (job(endpoint=None), done(OUT, SIGNED, endpoint="any"), Decision.SETTLE),
        (job(), done(OUT, SIGNED, endpoint=None), Decision.SETTLE),
        # A job without a location of the event's kind: nothing to check the claim against.
        (job(output=None), done(None, body=b"x"), Decision.UNVERIFIABLE),
        (job(output=None), done(OUT, body=b"x"), Decision.UNVERIFIABLE),
        (job(output=None), done(None, SIGNED, body=b"x"), Decision.SETTLE),
        (job(failure=None), failed(None), Decision.UNVERIFIABLE),
        (job(failure=None), failed(None, SIGNED), Decision.SETTLE),
        # Another location than the job's own: not SageMaker's word about this job.
        (job(), done(OTHER_OUT, body=b"forged"), Decision.FOREIGN_LOCATION),
        (job(), done(OTHER_OUT, SIGNED), Decision.FOREIGN_LOCATION),
        (job(), failed(OTHER_ERR), Decision.FOREIGN_LOCATION),
        (job(), failed(OTHER_ERR, SIGNED), Decision.FOREIGN_LOCATION),
        # Completed naming no location (a bare responseBody, say): a hint, signed or not.
        (job(), done(None, body=b"forged"), Decision.HINT),
        (job(), done(None), Decision.HINT),
        (job(), done(None, SIGNED, body=b"x"), Decision.HINT),
        # Completed naming the job's own output.
        (job(), done(OUT, SIGNED, body=b"x"), Decision.SETTLE),
        (job(), done(OUT, body=b"x"), Decision.SETTLE_FROM_S3),
        (job(), done(OUT), Decision.SETTLE_FROM_S3),
        # ... by location alone (another id): a location beats an id.
        (job(), done(OUT, inference_id="id-9"), Decision.SETTLE_FROM_S3),
        # Failed: AWS's documented one names no failure location.
        (job(), failed(None), Decision.HINT),
        (job(), failed(ERR), Decision.HINT),
        (job(), failed(None, SIGNED), Decision.SETTLE),
        (job(), failed(ERR, SIGNED), Decision.SETTLE),
    ],
)
def test_decide_table(the_job: Expected, event: Event, decision: Decision | None) -> None:
    assert decide(the_job, event) is decision


@pytest.mark.parametrize(
    ("the_job", "event", "decision"),
    [
        (job(output=None), done(None, body=b"x"), Decision.SETTLE),
        (job(output=None), done(OTHER_OUT), Decision.SETTLE),
        (job(failure=None), failed(None), Decision.SETTLE),
        # Only jobs without a location are affected.
        (job(), done(None, body=b"x"), Decision.HINT),
        (job(), done(OTHER_OUT), Decision.FOREIGN_LOCATION),
        (job(), failed(None), Decision.HINT),
        (job(output=None), done(None, endpoint="other"), Decision.WRONG_ENDPOINT),
    ],
)
def test_decide_trust_unsigned(the_job: Expected, event: Event, decision: Decision) -> None:
    assert decide(the_job, event, trust_unsigned=True) is decision


@pytest.mark.parametrize(
    ("event", "decision"),
    [
        (done(OUT), Decision.HINT),  # the one row it changes
        (done(OUT, SIGNED), Decision.SETTLE),
        (Completed(output_location=OUT), Decision.SETTLE),  # observed
        (failed(ERR), Decision.HINT),
    ],
)
def test_decide_require_signatures(event: Event, decision: Decision) -> None:
    assert decide(job(), event, require_signatures=True) is decision


def test_decisions_say_whether_they_settle_or_reject() -> None:
    assert {d for d in Decision if d.settles} == {Decision.SETTLE, Decision.SETTLE_FROM_S3}
    assert {d for d in Decision if d.rejects} == {
        Decision.FOREIGN_LOCATION,
        Decision.WRONG_ENDPOINT,
        Decision.UNVERIFIABLE,
    }


# --- feed(): what each decision does ---------------------------------------------------------


def test_forged_bare_completed_with_body_is_a_hint_not_a_result() -> None:
    # The attack of #10: a bare Completed with a body for a job whose 202 gave an output.
    tracker = Tracker()
    tracker.expect(job(), now=0.0)
    forged = done(None, body=b'{"forged": true}', tag="r1")
    assert tracker.feed(forged, now=1.0) == FeedResult(Effect.HINT, jobs=(job(),))
    assert tracker.pending_job(1) == job()
    # The watcher looked, and found the job's own output: an observed event settles it.
    seen = Completed(inference_id="id-1", output_location=OUT)
    [outcome] = tracker.feed(seen, now=2.0).outcomes
    assert outcome == Outcome(job(), OutcomeStatus.COMPLETED, seen, True)
    assert outcome.event is not None and outcome.event.body is None  # read from S3
    s = tracker.statistics()
    assert (s.hints, s.matched, s.completed, s.rejected) == (1, 1, 1, 0)
    check_accounting(tracker)


def test_unsigned_completed_naming_own_output_settles_without_its_body() -> None:
    tracker = Tracker()
    tracker.expect(job(), now=0.0)
    event = done(OUT, body=b"claimed")
    [outcome] = tracker.feed(event, now=1.0).outcomes
    assert outcome.status is OutcomeStatus.COMPLETED
    assert outcome.event is event and not outcome.content_trusted


def test_signed_completed_naming_own_output_settles_with_its_body() -> None:
    tracker = Tracker()
    tracker.expect(job(), now=0.0)
    event = done(OUT, SIGNED, body=b"real")
    [outcome] = tracker.feed(event, now=1.0).outcomes
    assert outcome.event is event and outcome.content_trusted


@pytest.mark.parametrize(
    ("event", "decision"),
    [
        (done(OTHER_OUT, body=b"forged"), Decision.FOREIGN_LOCATION),
        (failed(OTHER_ERR), Decision.FOREIGN_LOCATION),
        (done(OUT, SIGNED, endpoint="other"), Decision.WRONG_ENDPOINT),
    ],
)
def test_rejected_notification_settles_nothing_and_is_counted(
    event: Event, decision: Decision
) -> None:
    tracker = Tracker()
    tracker.expect(job(), now=0.0)
    assert tracker.feed(event, now=1.0) == FeedResult(
        Effect.REJECTED, jobs=(job(),), decision=decision
    )
    s = tracker.statistics()
    assert (s.pending, s.rejected, s.held, s.unknown) == (1, 1, 0, 0)
    assert tracker.take_unknown() == []  # rejected is not unknown: the caller deletes it
    check_accounting(tracker)
    # The real result still settles the job.
    assert tracker.feed(done(OUT), now=2.0).effect is Effect.SETTLED


def test_unverifiable_for_a_job_without_output_location() -> None:
    tracker = Tracker()
    tracker.expect(job(output=None), now=0.0)
    assert tracker.feed(done(None, body=b"x"), now=1.0).decision is Decision.UNVERIFIABLE
    trusting = Tracker(trust_unsigned=True)
    trusting.expect(job(output=None), now=0.0)
    [outcome] = trusting.feed(done(None, body=b"x"), now=1.0).outcomes
    assert outcome.content_trusted and outcome.event is not None
    assert outcome.event.body == b"x"  # type: ignore[union-attr]


def test_forged_failed_is_a_hint_then_the_failure_object_settles() -> None:
    tracker = Tracker()
    tracker.expect(job(), now=0.0)
    assert tracker.feed(failed(None), now=1.0).effect is Effect.HINT
    assert tracker.feed(failed(ERR), now=1.0).effect is Effect.HINT
    assert tracker.pending_job(1) == job()
    # Found by the watcher's HEAD: settled FAILED, the reason read from the object.
    [outcome] = tracker.feed(Failed(failure_location=ERR), now=2.0).outcomes
    assert outcome.status is OutcomeStatus.FAILED and outcome.content_trusted
    assert tracker.statistics().hints == 2


def test_signed_failed_without_location_settles_with_its_reason() -> None:
    tracker = Tracker()
    tracker.expect(job(), now=0.0)
    event = failed(None, SIGNED, reason="ClientError: 500 from model")
    [outcome] = tracker.feed(event, now=1.0).outcomes
    assert outcome == Outcome(job(), OutcomeStatus.FAILED, event, True)


def test_a_location_match_wins_over_an_id_rejection() -> None:
    # Two jobs share an id (AWS does not deduplicate): the event names job 2's output. It
    # settles job 2; for job 1 it names another location, but it was never job 1's.
    tracker = Tracker()
    one = job(1, output="s3://b/out/a.out", inference_id="same")
    two = job(2, output="s3://b/out/b.out", inference_id="same")
    tracker.expect(one, now=0.0)
    tracker.expect(two, now=0.0)
    result = tracker.feed(done("s3://b/out/b.out", inference_id="same"), now=1.0)
    assert result.effect is Effect.SETTLED
    assert [o.job for o in result.outcomes] == [two]
    assert tracker.statistics().rejected == 0


def test_a_hint_for_a_settled_job_is_a_duplicate() -> None:
    tracker = Tracker()
    tracker.expect(job(), now=0.0)
    tracker.feed(done(OUT), now=1.0)
    assert tracker.feed(done(None, body=b"late"), now=2.0).effect is Effect.DUPLICATE
    assert tracker.feed(failed(None), now=2.0).effect is Effect.DUPLICATE


def test_repeat_of_a_settled_job_is_a_duplicate_not_a_rejection() -> None:
    # Job 1 (id X) is settled; job 2 shares the id. A repeat of job 1's notification is about
    # job 2 by id (another location), but it is a duplicate first.
    tracker = Tracker()
    one = job(1, output="s3://b/out/a.out", inference_id="X")
    tracker.expect(one, now=0.0)
    tracker.feed(done("s3://b/out/a.out", inference_id="X"), now=1.0)
    tracker.expect(job(2, output="s3://b/out/b.out", inference_id="X"), now=1.0)
    again = done("s3://b/out/a.out", inference_id="X")
    assert tracker.feed(again, now=2.0).effect is Effect.DUPLICATE


def test_pending_by_inference_id() -> None:
    tracker = Tracker()
    tracker.expect(job(1, inference_id="x"), now=0.0)
    tracker.expect(job(2, inference_id="x", output="s3://b/out/2.out"), now=0.0)
    assert [j.key for j in tracker.pending_by_inference_id("x")] == [1, 2]
    assert tracker.pending_by_inference_id("y") == []


# --- expect(): held notifications decided when their job arrives -----------------------------


def test_held_hint_comes_back_as_a_hint_and_the_job_pends() -> None:
    tracker = Tracker()
    hint = done(None, body=b"forged", tag="r-hint")
    assert tracker.feed(hint, now=0.0).effect is Effect.HELD
    result = tracker.expect(job(), now=1.0)
    assert result == ExpectResult(hints=(hint,))
    assert result.hints[0].tag == "r-hint"
    assert tracker.pending_job(1) == job()
    s = tracker.statistics()
    assert (s.held, s.hints, s.pending) == (0, 1, 1)
    check_accounting(tracker)


def test_held_foreign_location_is_rejected_on_expect() -> None:
    tracker = Tracker()
    forged = done(OTHER_OUT, body=b"forged", tag="r-forged")
    assert tracker.feed(forged, now=0.0).effect is Effect.HELD
    result = tracker.expect(job(), now=1.0)
    assert result == ExpectResult(rejected=(forged,))
    s = tracker.statistics()
    assert (s.held, s.rejected, s.pending) == (0, 1, 1)
    check_accounting(tracker)


def test_held_settling_event_wins_over_earlier_hints_and_rejections() -> None:
    tracker = Tracker()
    hint = done(None, tag="hint")
    bad = failed(OTHER_ERR, tag="bad")
    real = done(OUT, tag="real")
    copy = done(OUT, tag="copy")
    for now, event in enumerate([hint, bad, real, copy]):
        assert tracker.feed(event, now=float(now)).effect is Effect.HELD
    result = tracker.expect(job(), now=5.0)
    assert result.outcome == Outcome(job(), OutcomeStatus.COMPLETED, real, False)
    assert [e.tag for e in result.consumed] == ["real", "hint", "copy"]
    assert [e.tag for e in result.rejected] == ["bad"]
    assert result.hints == ()
    s = tracker.statistics()
    assert (s.matched, s.duplicates, s.rejected, s.hints, s.held) == (1, 2, 1, 0, 0)
    check_accounting(tracker)


def test_held_notification_for_a_job_without_location_needs_trust() -> None:
    for trust, settles in ((False, False), (True, True)):
        tracker = Tracker(trust_unsigned=trust)
        event = done(None, body=b"inline", tag="r")
        tracker.feed(event, now=0.0)
        result = tracker.expect(job(output=None), now=1.0)
        assert (result.outcome is not None) is settles
        if not settles:
            assert result.rejected == (event,)
        check_accounting(tracker)
