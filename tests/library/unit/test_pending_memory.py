"""What a pending job costs and keeps: the tracker's deadline queue, its id index and its memory
of settled jobs; a job's lazy timings and released acceptance; S3Polling's entries. No I/O."""

from __future__ import annotations

import asyncio
import gc
import random
import weakref
from dataclasses import dataclass

import pytest

from aiosagemaker import Accepted, InferenceJob, JobTimings, S3Polling
from aiosagemaker._core._events import Completed, Effect, Expected, ExpectResult, Failed
from aiosagemaker._core._tracker import Tracker, _DeadlineHeap
from aiosagemaker._watchers._s3 import _BOTH, _FAILURE, _OUTPUT


def _out(key: int) -> str:
    return f"s3://bkt/out/{key:04d}.out"


def _err(key: int) -> str:
    return f"s3://bkt/err/{key:04d}.out"


# --- the tracker -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_deadline_heap_pops_in_deadline_then_key_order(seed: int) -> None:
    """In-order entries go to the run, the others to the heap: popped together, in order."""
    rng = random.Random(seed)
    heap, model = _DeadlineHeap(), []
    for step in range(300):
        if rng.random() < 0.6:
            # Mostly rising (the run), with ties and stragglers below (the heap).
            deadline = float(rng.choice([step, step, rng.randint(0, step + 1)]))
            key = rng.randint(0, 40)
            heap.push(deadline, key)
            model.append((deadline, key))
        elif model:
            model.sort()
            assert heap.first() == model.pop(0)
            heap.pop()
        if rng.random() < 0.02:
            model = [entry for entry in model if rng.random() < 0.5]
            heap.replace(list(model))
        assert len(heap) == len(model)
        assert heap.first() == (min(model) if model else None)


def test_expire_orders_in_order_and_out_of_order_deadlines_alike() -> None:
    tracker = Tracker()
    deadlines = {1: 10.0, 2: 20.0, 3: 30.0, 4: 15.0, 5: 20.0, 0: 20.0, 6: 5.0}
    for key, deadline in deadlines.items():
        tracker.expect(Expected(key, f"id-{key}", _out(key), _err(key), deadline), now=0.0)
    assert tracker.next_deadline() == 5.0
    expired = [outcome.job.key for outcome in tracker.expire(20.0)]
    assert expired == [6, 1, 4, 0, 2, 5]
    assert tracker.next_deadline() == 30.0


def test_deadline_queue_is_compacted_with_in_order_deadlines() -> None:
    tracker = Tracker()
    for key in range(3000):
        tracker.expect(Expected(key, f"id-{key}", _out(key), None, 1000.0 + key), now=0.0)
    for key in range(2990):
        tracker.feed(Completed(output_location=_out(key)), now=1.0)
    assert len(tracker._heap) < 2 * 10 + 1024 + 1
    assert [o.job.key for o in tracker.expire(1e9)] == list(range(2990, 3000))


def test_tracker_without_id_matching_finds_jobs_by_location_only() -> None:
    tracker = Tracker(match_ids=False)
    tracker.expect(Expected(1, "id-1", _out(1), _err(1)), now=0.0)
    tracker.expect(Expected(2, "id-2", _out(2), _err(2)), now=0.0)
    # An event that names no location of its kind is about no pending job: held, not settled.
    assert tracker.feed(Completed(inference_id="id-1"), now=1.0).effect is Effect.HELD
    assert [job.key for job in tracker.pending_by_inference_id("id-2")] == [2]
    fed = tracker.feed(Failed(failure_location=_err(2)), now=1.0)
    assert fed.effect is Effect.SETTLED
    assert [outcome.job.key for outcome in fed.outcomes] == [2]
    assert tracker.pending_by_inference_id("id-2") == []
    assert tracker.feed(Failed(failure_location=_err(2)), now=1.0).effect is Effect.DUPLICATE
    assert (tracker.has_pending_output(_out(1)), tracker.has_pending_output(_out(2))) == (
        True,
        False,
    )
    assert (tracker.has_pending_failure(_err(1)), tracker.has_pending_failure(_err(2))) == (
        True,
        False,
    )
    assert tracker.pending_count() == 1


@dataclass(frozen=True, slots=True, eq=False, kw_only=True, weakref_slot=True)
class _Carrying(Expected):
    """An Expected that carries more of the caller's, as a watcher's does (its job)."""

    payload: object = None


def test_settled_jobs_are_remembered_without_the_job_objects() -> None:
    tracker = Tracker()
    job = _Carrying(1, "id-1", _out(1), _err(1), payload=bytearray(1000))
    gone = weakref.ref(job)
    tracker.expect(job, now=0.0)
    fed = tracker.feed(Completed(output_location=_out(1)), now=1.0)
    assert fed.outcomes[0].job is job
    del job, fed
    gc.collect()
    assert gone() is None
    # Still recognised as settled: by its location, and by id.
    assert tracker.feed(Completed(output_location=_out(1)), now=2.0).effect is Effect.DUPLICATE
    assert tracker.feed(Failed(failure_location=_err(1)), now=2.0).effect is Effect.DUPLICATE


# --- the job -----------------------------------------------------------------------------------


def test_job_timings_are_made_when_asked_for_and_then_kept() -> None:
    job = InferenceJob(inference_id="i", output_location=None, failure_location=None, submitted=1.0)
    job._mark_accepted(2.0)
    assert job.record()["submitted"] == 1.0 and job.record()["accepted"] == 2.0
    timings = job.timings
    assert timings == JobTimings(submitted=1.0, accepted=2.0)
    assert job.timings is timings
    job._mark_accepted(3.0)
    timings.completed = 4.0
    assert job.timings.accepted == 3.0 and job.timings.completed == 4.0
    assert job.record()["accepted"] == 3.0


def test_job_keeps_the_timings_it_was_given() -> None:
    given = JobTimings(submitted=5.0)
    job = InferenceJob(inference_id="i", output_location=None, failure_location=None, timings=given)
    job._mark_accepted(6.0)
    assert job.timings is given and given.accepted == 6.0
    fresh = InferenceJob(inference_id="i", output_location=None, failure_location=None)
    assert fresh.timings == JobTimings()
    fresh.timings = given
    assert fresh.timings is given


def _accepted_job(answer: Accepted, *, tracked: bool = True) -> InferenceJob:
    loop = asyncio.get_running_loop()
    acceptance: asyncio.Future[Accepted] = loop.create_future()
    job = InferenceJob(
        inference_id="id-1",
        output_location=answer.output_location,
        failure_location=answer.failure_location,
        attempts=answer.attempts,
        future=loop.create_future() if tracked else None,
        acceptance=acceptance,
    )
    acceptance.set_result(answer)
    return job


async def test_tracked_job_releases_its_acceptance_and_answers_the_same() -> None:
    answer = Accepted("id-1", "s3://b/out/1.out", "s3://b/err/1.out", attempts=2)
    job = _accepted_job(answer)
    waiter = asyncio.ensure_future(job.accepted())  # a wait begun before the release
    job._release_acceptance()
    assert job._acceptance is None
    assert await waiter == answer
    assert await job.accepted() == answer
    assert not job.done() and repr(job) == "<InferenceJob id-1 pending>"
    assert job._future is not None
    job._future.set_exception(RuntimeError("x"))
    assert job.done() and repr(job) == "<InferenceJob id-1 failed>"


async def test_acceptance_is_kept_when_the_job_cannot_say_all_it_did() -> None:
    # Ambiguous retries are not a field of the job's own.
    answer = Accepted("id-1", "s3://b/out/1.out", None, attempts=2, ambiguous_retries=1)
    job = _accepted_job(answer)
    job._release_acceptance()
    assert await job.accepted() == answer and job._acceptance is not None
    # Submit-only (no result future): the acceptance is the job's outcome.
    untracked = _accepted_job(Accepted("id-1", "s3://b/out/1.out", None), tracked=False)
    untracked._release_acceptance()
    assert untracked._acceptance is not None and untracked.done()
    # Not answered yet.
    loop = asyncio.get_running_loop()
    pending = InferenceJob(
        inference_id="id-1",
        output_location=None,
        failure_location=None,
        future=loop.create_future(),
        acceptance=loop.create_future(),
    )
    pending._release_acceptance()
    assert pending._acceptance is not None and repr(pending) == "<InferenceJob id-1 sending>"


# --- S3Polling ---------------------------------------------------------------------------------


def test_s3polling_keys_entries_by_the_jobs_own_locations() -> None:
    watcher = S3Polling(run_id="abc")
    jobs = [Expected(k, f"id-{k}", _out(k), _err(k)) for k in (3, 1, 2)]
    # A location that is one job's output and another's failure (a shared path).
    jobs.append(Expected(4, "id-4", _out(4), _out(5)))
    jobs.append(Expected(5, "id-5", _out(5), None))
    for expected in jobs:
        watcher._tracker.expect(expected, now=0.0)
        watcher._on_tracked(expected, ExpectResult())
    outputs = watcher._directories["s3://bkt/out/"]
    failures = watcher._directories["s3://bkt/err/"]
    assert (outputs.bucket, outputs.prefix, failures.prefix) == ("bkt", "out/", "err/")
    # The very string objects of the jobs' locations: no copy, no key cut from them (the one
    # shared location is held once, as the first job to name it named it).
    by_identity = {id(location) for location in outputs.entries}
    assert {id(job.output_location) for job in jobs[:4]} <= by_identity
    assert len(outputs.entries) == 5
    assert outputs.entries[_out(5)] is _BOTH and outputs.entries[_out(1)] is _OUTPUT
    assert failures.entries[_err(1)] is _FAILURE
    assert watcher._live(outputs) == [_out(k) for k in (1, 2, 3, 4, 5)]
    assert outputs.key(_out(1)) == "out/0001.out"
    watcher._tracker.discard(2)
    watcher._tracker.discard(5)
    # _out(5) is still job 4's failure location.
    assert watcher._live(outputs) == [_out(k) for k in (1, 3, 4, 5)]
    assert _out(2) not in outputs.entries
    assert watcher._live(failures) == [_err(1), _err(3)]


def test_s3polling_directory_of_a_bucket_root_location() -> None:
    watcher = S3Polling()
    top = watcher._directory_of("s3://bucket-a/key.out")
    assert (top.bucket, top.prefix, top.key("s3://bucket-a/key.out")) == ("bucket-a", "", "key.out")
    bare = watcher._directory_of("s3://bucket-b")
    assert (bare.bucket, bare.prefix, bare.key("s3://bucket-b")) == ("bucket-b", "", "")
    assert watcher._directory_of("s3://bucket-a/other.out") is top
