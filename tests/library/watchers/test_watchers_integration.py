"""Both watchers against the local stack over real HTTP: results, failures, faults, statistics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from watcher_helpers import RawClients, wait_until

from aiosagemaker import (
    AsyncInvoker,
    InferenceFailedError,
    InvokerClosedError,
    Limits,
    ResultTimeoutError,
    SqsNotifications,
)
from aiosagemaker._watchers._base import Watcher
from aiosagemaker.local import EndpointInfo, LocalStack


def bodies_for(count: int) -> list[bytes]:
    return [b'{"n": %d}' % i for i in range(count)]


async def run_jobs(endpoint: EndpointInfo, watcher: Watcher, count: int) -> list[bytes | None]:
    """Submit ``count`` echo jobs through an invoker; return the result bodies in input order."""
    limits = Limits(max_concurrent_invocations=32, max_pending=count)
    async with AsyncInvoker(endpoint.name, limits=limits, watcher=watcher) as invoker:
        jobs = await asyncio.gather(*(invoker.submit(body) for body in bodies_for(count)))
        results = await asyncio.gather(*(job.result(timeout=300) for job in jobs))
    return [result.body for result in results]


def check_calls(
    watcher: Watcher, results: int, *, s3_per_result: float, sqs_per_result: float
) -> None:
    """Calls per result stay far from the naive one-call-per-job-per-poll."""
    stats = watcher.statistics()
    assert stats.resolved + stats.failed == results
    assert stats.s3_get_calls <= results + stats.inline_bodies  # one GET per output (retries aside)
    s3_extra = stats.s3_list_calls + stats.s3_head_calls
    sqs = stats.sqs_receive_calls + stats.sqs_delete_calls
    assert s3_extra / results <= s3_per_result, stats
    assert sqs / results <= sqs_per_result, stats


# --- every job resolves ------------------------------------------------------------------------


# 500 jobs, many times the invoker's 32 in flight, prove what 2,000 do: every job resolves exactly
# once, with its own body, at a cost per result far from one call per job per poll. The 2,000-job
# run (and 10,000, below) runs under make test-scale.
@pytest.mark.parametrize("count", [500, pytest.param(2000, marks=pytest.mark.scale)])
async def test_many_jobs_resolve(
    make_watcher: Callable[..., Watcher],
    watched_endpoint: EndpointInfo,
    watcher_kind: str,
    count: int,
) -> None:
    # Polling every 0.2 s; reconciliation only for jobs really overdue.
    watcher = (
        make_watcher(watched_endpoint, interval=0.2)
        if watcher_kind == "s3-poll"
        else (make_watcher(watched_endpoint, reconcile_after=60.0))
    )
    assert await run_jobs(watched_endpoint, watcher, count) == bodies_for(count)
    stats = watcher.statistics()
    assert stats.pending == 0 and stats.failed == 0 and stats.expired == 0
    check_calls(watcher, count, s3_per_result=0.5, sqs_per_result=1.0)


@pytest.mark.scale
async def test_ten_thousand_jobs_resolve(
    make_watcher: Callable[..., Watcher], watched_endpoint: EndpointInfo, watcher_kind: str
) -> None:
    count = 10_000
    watcher = (
        make_watcher(watched_endpoint, interval=0.5)
        if watcher_kind == "s3-poll"
        else (make_watcher(watched_endpoint, reconcile_after=120.0))
    )
    assert await run_jobs(watched_endpoint, watcher, count) == bodies_for(count)
    check_calls(watcher, count, s3_per_result=0.25, sqs_per_result=1.0)


# --- failures and expiry -----------------------------------------------------------------------


async def test_failing_model_resolves_as_failures(
    make_watcher: Callable[..., Watcher],
    watcher_kind: str,
    local_stack: LocalStack,
) -> None:
    endpoint = await local_stack.create_endpoint(
        model="failing", notifications=watcher_kind == "sqs"
    )
    try:
        async with AsyncInvoker(endpoint.name, watcher=make_watcher(endpoint)) as invoker:
            jobs = [await invoker.submit(b"{}") for _ in range(10)]
            for job in jobs:
                with pytest.raises(InferenceFailedError) as caught:
                    await job.result(timeout=30)
                assert "always fails" in str(caught.value)
                assert caught.value.inference_id == job.inference_id
            assert invoker.watcher is not None
            assert invoker.watcher.statistics().failed == 10
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_request_ttl_expiry_is_a_failure(
    make_watcher: Callable[..., Watcher],
    watcher_kind: str,
    local_stack: LocalStack,
) -> None:
    # One worker, a 1 s model (100 s at the stack's time scale of 0.01) and a TTL of 0.6 s
    # (60 s scaled): the first request runs; the ones queued behind it expire in the queue.
    endpoint = await local_stack.create_endpoint(
        model="sleep:100",
        instances=1,
        max_concurrency=1,
        notifications=watcher_kind == "sqs",
    )
    try:
        async with AsyncInvoker(endpoint.name, watcher=make_watcher(endpoint)) as invoker:
            jobs = [await invoker.submit(b'{"i": %d}' % i, request_ttl=60) for i in range(3)]
            assert (await jobs[0].result(timeout=30)).body == b'{"i": 0}'
            for job in jobs[1:]:
                with pytest.raises(InferenceFailedError, match="expired"):
                    await job.result(timeout=30)
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_deadline_passes_without_a_result(
    make_watcher: Callable[..., Watcher], watched_endpoint: EndpointInfo
) -> None:
    async with make_watcher(watched_endpoint) as watcher:
        job = watcher.track(
            "never-sent",
            f"{watched_endpoint.output_path}/never/never.out",
            f"{watched_endpoint.failure_path}/never/never.out-error.out",
            deadline=time.monotonic() + 0.3,
        )
        with pytest.raises(ResultTimeoutError) as caught:
            await job
        assert caught.value.inference_id == "never-sent"
        assert watcher.statistics().expired == 1


async def test_close_fails_pending_jobs_with_their_locations(
    make_watcher: Callable[..., Watcher], watched_endpoint: EndpointInfo
) -> None:
    watcher = make_watcher(watched_endpoint)
    async with watcher:
        job = watcher.track("orphan", f"{watched_endpoint.output_path}/o.out", None)
    with pytest.raises(InvokerClosedError) as caught:
        await job
    assert caught.value.output_location == f"{watched_endpoint.output_path}/o.out"


# --- injected notification faults -----------------------------------------------------------------


async def test_duplicate_delayed_and_dropped_notifications_lose_nothing(
    make_watcher: Callable[..., Watcher],
    watcher_kind: str,
    local_stack: LocalStack,
    endpoint: EndpointInfo,  # with notifications, for both watchers: faults hit the publisher
) -> None:
    count = 150
    await local_stack.set_faults(
        {
            "seed": 4,
            "notification_drop": 0.15,
            "notification_duplicate": 0.3,
            "notification_delay": {"rate": 0.3, "seconds": 0.3},
        },
        endpoint=endpoint.name,
    )
    # SQS: a dropped notification is found by reconciliation after 0.5 s.
    watcher = make_watcher(endpoint, reconcile_after=0.5)
    assert await run_jobs(endpoint, watcher, count) == bodies_for(count)
    faults = await local_stack.stats(endpoint.name)
    assert faults["notifications_dropped"] > 0 and faults["notifications_duplicated"] > 0
    if watcher_kind == "sqs":
        assert isinstance(watcher, SqsNotifications)
        assert watcher.reconciled >= faults["notifications_dropped"] > 0
    # Duplicates never settle a job twice: exactly one resolution per job.
    stats = watcher.statistics()
    assert (stats.resolved, stats.failed, stats.expired) == (count, 0, 0)


# --- early notifications, standalone use, fetch=False -------------------------------------------


async def test_result_that_beats_track_is_not_lost(
    make_watcher: Callable[..., Watcher],
    watcher_kind: str,
    endpoint: EndpointInfo,
    aws_clients: RawClients,
) -> None:
    async with make_watcher(endpoint) as watcher:
        # A job that never finishes keeps the watcher busy (SQS receivers run while jobs pend).
        blocker = watcher.track("blocker", f"{endpoint.output_path}/blocker/x.out", None)
        answer = await aws_clients.invoke(endpoint.name, b'{"early": true}')
        await wait_until(lambda: aws_clients.exists(answer["OutputLocation"]), what="the output")
        if watcher_kind == "sqs":
            # The notification was received before its job was tracked: the tracker holds it.
            await wait_until(lambda: watcher._tracker.statistics().held >= 1, what="a held event")
        job = watcher.track(
            answer["InferenceId"], answer["OutputLocation"], answer["FailureLocation"]
        )
        result = await job.result(timeout=30)
        assert result.body == b'{"early": true}'
        assert result.output_location == answer["OutputLocation"]
    with pytest.raises(InvokerClosedError):
        await blocker
    if watcher_kind == "sqs":
        assert endpoint.queue_url is not None
        # Its message was deleted once the held event was matched (the test notifications too).
        assert await aws_clients.queue_depth(endpoint.queue_url) == 0


async def test_standalone_track_with_fetch_false(
    make_watcher: Callable[..., Watcher],
    endpoint: EndpointInfo,
    aws_clients: RawClients,
) -> None:
    answers = [await aws_clients.invoke(endpoint.name, b'{"i": %d}' % i) for i in range(5)]
    async with make_watcher(endpoint, fetch=False) as watcher:
        jobs = [
            watcher.track(a["InferenceId"], a["OutputLocation"], a["FailureLocation"])
            for a in answers
        ]
        fetched = watcher.track(
            answers[0]["InferenceId"],
            answers[0]["OutputLocation"],
            answers[0]["FailureLocation"],
            fetch=True,
        )
        results = [await job.result(timeout=30) for job in jobs]
        assert (await fetched.result(timeout=30)).body == b'{"i": 0}'
        stats = watcher.statistics()
    assert [r.body for r in results] == [None] * 5
    assert [r.output_location for r in results] == [a["OutputLocation"] for a in answers]
    assert stats.s3_get_calls == 1  # only the job tracked with fetch=True


async def test_invoker_passes_user_placement_through(
    make_watcher: Callable[..., Watcher], watched_endpoint: EndpointInfo
) -> None:
    async with AsyncInvoker(watched_endpoint.name, watcher=make_watcher(watched_endpoint)) as inv:
        own = await inv.submit(b'{"own": 1}', filename="mine.json", output_path_extension="me/x")
        placed = await inv.submit(b'{"placed": 1}')
        # submit() returns once admitted; the locations come with the 202.
        accepted = await own.accepted()
        assert accepted.output_location == own.output_location
        assert own.output_location == f"{watched_endpoint.output_path.rstrip('/')}/me/x/mine.json"
        assert (await own.result(timeout=30)).body == b'{"own": 1}'
        assert (await placed.result(timeout=30)).body == b'{"placed": 1}'
