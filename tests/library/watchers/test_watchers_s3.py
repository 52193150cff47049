"""S3Polling only: output names, the listing cost model, AWS-named outputs, a missing bucket."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from botocore.exceptions import ClientError
from watcher_helpers import RawClients

from aiosagemaker import AsyncInvoker, ResultTimeoutError, S3Polling, WatcherError
from aiosagemaker._watchers._s3 import _SAMPLE, _Directory, _Entry
from aiosagemaker.local import EndpointInfo, LocalStack

# InvokeEndpointAsync's field rules (API reference).
_EXTENSION = re.compile(r"[a-zA-Z0-9!_.*'()/-]{1,512}")
_FILENAME = re.compile(r"[a-zA-Z0-9][^.]*(\.[^.]*)?")


def test_placement_sorts_by_submission_and_fits_the_api() -> None:
    watcher = S3Polling(run_id="abc")
    fields = [watcher.placement() for _ in range(1500)]
    names = [f["filename"] for f in fields]
    assert names == sorted(names) and len(set(names)) == 1500
    for f in fields[:3]:
        assert f["output_path_extension"] == "aiosm-abc"
        assert _EXTENSION.fullmatch(f["output_path_extension"])
        assert len(f["filename"]) <= 32 and _FILENAME.fullmatch(f["filename"])
    assert S3Polling(name_outputs=False).placement() == {}
    assert S3Polling().run_prefix != S3Polling().run_prefix
    with pytest.raises(ValueError):
        S3Polling(run_id="no spaces")
    with pytest.raises(ValueError):
        S3Polling(interval=-1)


def _directory(live: list[str], listed: list[str]) -> _Directory:
    """A directory whose last listing saw ``listed``, with ``live`` pending."""
    directory = _Directory("bucket", "out/")
    for key in live:
        directory.entries[key] = _Entry(output=f"s3://bucket/{key}")
    directory.sample = sorted(listed)[::_SAMPLE]
    return directory


def test_cost_model_lists_from_the_lowest_key_when_it_is_cheap() -> None:
    watcher = S3Polling(max_heads=16)
    live = [f"out/{i:04d}" for i in range(100)]
    assert watcher._split(_directory(live, []), live) == 0  # never listed: list
    listed = [f"out/{i:04d}-{j}" for i in range(100) for j in range(5)]  # one page
    assert watcher._split(_directory(live, listed), live) == 0


def test_cost_model_heads_a_straggler_below_many_finished_outputs() -> None:
    watcher = S3Polling(max_heads=16)
    live = ["out/0001", *(f"out/{i:04d}" for i in range(5000, 5010))]
    listed = [f"out/{i:04d}" for i in range(1, 5010)]  # 4,999 finished outputs above it
    assert watcher._split(_directory(live, listed), live) == 1


def test_cost_model_heads_few_jobs_in_a_huge_prefix_and_respects_the_budget() -> None:
    live = ["out/a", "out/m", "out/z"]
    listed = [f"out/{c}{i:05d}" for c in "amz" for i in range(30_000)]
    assert S3Polling(max_heads=16)._split(_directory(live, listed), live) == 3  # no listing
    assert S3Polling(max_heads=2)._split(_directory(live, listed), live) == 2
    assert S3Polling(max_heads=0)._split(_directory(live, listed), live) == 0


async def test_jobs_in_a_crowded_prefix_fall_back_to_heads(
    stack_env: LocalStack, aws_clients: RawClients
) -> None:
    # The caller names outputs (theirs win) in a prefix that already holds 1,100 other objects,
    # and the names sort below all of them: listing from them would cost two pages a poll.
    endpoint = await stack_env.create_endpoint(notifications=False)
    try:
        bucket, _, prefix = endpoint.output_path.removeprefix("s3://").partition("/")
        prefix = prefix.rstrip("/") + "/"
        semaphore = asyncio.Semaphore(32)

        async def put(i: int) -> None:
            async with semaphore:
                await aws_clients.s3.put_object(Bucket=bucket, Key=f"{prefix}old-{i:05d}", Body=b"")

        await asyncio.gather(*(put(i) for i in range(1100)))
        watcher = S3Polling(interval=0.05)
        async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
            first = await invoker.submit(b'{"first": 1}', filename="a-first.out")
            assert (await first.result(timeout=30)).body == b'{"first": 1}'
            assert first.output_location == f"s3://{bucket}/{prefix}a-first.out"
            # That first poll surveyed the prefix; from now on a job there is HEADed.
            lists_before, polls_before = watcher.statistics().s3_list_calls, watcher.polls
            for i in range(5):
                job = await invoker.submit(b'{"i": %d}' % i, filename=f"a-{i}.out")
                assert (await job.result(timeout=30)).body == b'{"i": %d}' % i
        stats = watcher.statistics()
        assert stats.s3_head_calls >= 5
        # Only the (empty) failure prefix is still listed, once a poll.
        assert stats.s3_list_calls - lists_before <= watcher.polls - polls_before + 1
    finally:
        await stack_env.delete_endpoint(endpoint.name)


async def test_outputs_named_by_inference_id_resolve(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    watcher = S3Polling(interval=0.02, name_outputs=False)
    async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
        jobs = await asyncio.gather(*(invoker.submit(b'{"i": %d}' % i) for i in range(100)))
        bodies = [(await job.result(timeout=30)).body for job in jobs]
    assert bodies == [b'{"i": %d}' % i for i in range(100)]
    assert all(job.output_location.endswith(f"/{job.inference_id}.out") for job in jobs)  # type: ignore[union-attr]


async def test_missing_bucket_fails_its_jobs_and_spares_the_others(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    # moto's own answer: ListObjectsV2 on a bucket that does not exist is NoSuchBucket (404).
    async with S3Polling(interval=0.02) as watcher:
        lost = watcher.track("lost", "s3://no-such-bucket-here/out/x.out", None)
        async with AsyncInvoker(endpoint.name, watcher=None) as invoker:
            submitted = await invoker.submit(b'{"ok": 1}')
            await submitted.accepted()
        job = watcher.track(
            submitted.inference_id, submitted.output_location, submitted.failure_location
        )
        assert (await job.result(timeout=30)).body == b'{"ok": 1}'
        with pytest.raises(WatcherError) as caught:
            await lost.result(timeout=10)  # not its deadline: none was given
        error = caught.value
        assert error.code == "NoSuchBucket" and error.permission is None
        assert error.inference_id == "lost"
        assert error.output_location == "s3://no-such-bucket-here/out/x.out"
        assert "does not exist" in str(error)
        assert isinstance(error.__cause__, ClientError)
        # A job tracked afterwards in that bucket (another directory) fails as promptly.
        later = watcher.track("later", "s3://no-such-bucket-here/elsewhere/y.out", None)
        with pytest.raises(WatcherError):
            await later.result(timeout=10)
        stats = watcher.statistics()
    assert stats.abandoned == 2 and stats.resolved == 1
    assert stats.permanent_errors >= 3  # two to believe it, one more for the later job's directory
    assert stats.transient_errors == 0


async def test_expected_bucket_owner_is_sent(stack_env: LocalStack, endpoint: EndpointInfo) -> None:
    # moto's account: the right owner is accepted on every call (list, head, get).
    watcher = S3Polling(interval=0.02, expected_bucket_owner="123456789012")
    async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
        job = await invoker.submit(b'{"owner": 1}')
        assert (await job.result(timeout=30)).body == b'{"owner": 1}'
    assert watcher.transient_errors == 0


async def test_settled_jobs_leave_no_entries_and_polling_stops(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    # A poll looks only at the lowest pending locations: what settles must leave the watcher's
    # directories (output and failure both), whether found by a listing or expired, or polls
    # would go on for jobs nobody waits for.
    async with S3Polling(interval=0.02) as watcher:
        async with AsyncInvoker(endpoint.name, watcher=None) as invoker:
            submitted = [await invoker.submit(b'{"i": %d}' % i) for i in range(40)]
            for job in submitted:
                await job.accepted()
        jobs = [
            watcher.track(job.inference_id, job.output_location, job.failure_location)
            for job in submitted
        ]
        # Two that never get an output: they expire, and are swept out on the next poll.
        bucket = endpoint.output_path.removeprefix("s3://").partition("/")[0]
        lost = [
            watcher.track(
                f"lost-{i}",
                f"s3://{bucket}/aaa-first/lost-{i}.out",
                f"s3://{bucket}/aaa-first/lost-{i}.err",
                deadline=time.monotonic() + 0.5,
            )
            for i in range(2)
        ]
        bodies = [(await job.result(timeout=30)).body for job in jobs]
        assert bodies == [b'{"i": %d}' % i for i in range(40)]
        for job in lost:
            with pytest.raises(ResultTimeoutError):
                await job.result(timeout=10)
        polls = watcher.polls
        await asyncio.sleep(0.3)  # a poll's worth of time, several times over
        assert all(not d.entries for d in watcher._directories.values())
        assert watcher.polls <= polls + 1  # at most the poll that swept the expired ones
