"""AsyncInvoker against the local stack: inline, staged and rejected payloads, validation, limits."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest

from aiosagemaker import (
    MAX_INLINE_BODY_BYTES,
    AdmissionTimeoutError,
    AsyncInferenceError,
    AsyncInvoker,
    InvalidRequestError,
    InvocationError,
    InvokerClosedError,
    Limits,
    PayloadTooLargeError,
    S3Polling,
    S3Staging,
)
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")


@pytest.fixture
def endpoint(quiet_endpoint: EndpointInfo) -> EndpointInfo:
    """This module's tests read no notifications (no watcher, or S3 polling): a fresh endpoint
    without them spares the stack a topic pair and a queue, and a publish per result."""
    return quiet_endpoint


async def _accepted(stack: LocalStack, endpoint: EndpointInfo) -> int:
    stats = await stack.stats(endpoint.name)
    return int(stats["accepted"])


async def test_inline_submit_and_result(stack_env: LocalStack, endpoint: EndpointInfo) -> None:
    async with AsyncInvoker(endpoint.name, watcher=S3Polling(interval=0.05)) as invoker:
        job = await invoker.submit({"inputs": "hello"})
        assert job.inline
        accepted = await job.accepted()
        assert accepted.output_location == job.output_location
        assert job.output_location is not None and job.output_location.startswith(
            endpoint.output_path
        )
        assert job.failure_location is not None
        result = await job.result(timeout=30)
    assert json.loads(result.body or b"") == {"inputs": "hello"}
    assert result.inference_id == job.inference_id
    assert result.timings.accepted is not None and result.timings.fetched is not None
    assert invoker.statistics().resolved == 1


@pytest.mark.parametrize("size", [MAX_INLINE_BODY_BYTES - 1, MAX_INLINE_BODY_BYTES])
async def test_boundary_sizes_go_inline(
    stack_env: LocalStack, endpoint: EndpointInfo, size: int
) -> None:
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    async with AsyncInvoker(endpoint.name, watcher=S3Polling(interval=0.05)) as invoker:
        job = await invoker.submit(payload, content_type="application/octet-stream")
        assert job.inline and job.input_location is None
        result = await job.result(timeout=30)
    assert result.body == payload


async def test_over_limit_is_staged(stack_env: LocalStack, endpoint: EndpointInfo) -> None:
    payload = b"y" * (MAX_INLINE_BODY_BYTES + 1)
    staging = S3Staging(f"s3://{stack_env.info.bucket}/staging/{endpoint.name}/", cleanup=True)
    async with AsyncInvoker(
        endpoint.name, staging=staging, watcher=S3Polling(interval=0.05)
    ) as invoker:
        job = await invoker.submit(payload)
        assert not job.inline
        await job.accepted()
        assert job.input_location is not None
        assert job.input_location.startswith(f"s3://{stack_env.info.bucket}/staging/")
        result = await job.result(timeout=30)
        await invoker.drain()
    assert result.body == payload
    assert staging.staged == 1
    assert staging.deleted == 1  # cleanup ran once the result was known


async def test_over_limit_without_staging_is_refused_before_sending(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    async with AsyncInvoker(endpoint.name, watcher=None) as invoker:
        with pytest.raises(PayloadTooLargeError) as info:
            await invoker.submit(b"z" * (MAX_INLINE_BODY_BYTES + 1))
    assert info.value.size == MAX_INLINE_BODY_BYTES + 1
    assert info.value.inference_id
    assert await _accepted(stack_env, endpoint) == 0


INVALID_FIELDS = [
    ({"inference_id": ""}, "InferenceId"),
    ({"inference_id": "x" * 65}, "InferenceId"),
    ({"inference_id": " leading-space"}, "InferenceId"),
    ({"content_type": "é"}, "ContentType"),
    ({"content_type": "a" * 1025}, "ContentType"),
    ({"accept": "a" * 1025}, "Accept"),
    ({"custom_attributes": "c" * 1025}, "CustomAttributes"),
    ({"request_ttl": 59}, "RequestTTLSeconds"),
    ({"request_ttl": 21_601}, "RequestTTLSeconds"),
    ({"invocation_timeout": 0}, "InvocationTimeoutSeconds"),
    ({"invocation_timeout": 3_601}, "InvocationTimeoutSeconds"),
    ({"output_path_extension": "s3:bad"}, "S3OutputPathExtension"),
    ({"output_path_extension": "a b"}, "S3OutputPathExtension"),
    ({"output_path_extension": "a" * 513}, "S3OutputPathExtension"),
    ({"filename": "a.b.c"}, "Filename"),
    ({"filename": ".hidden"}, "Filename"),
    ({"filename": "f" * 33}, "Filename"),
]


@pytest.fixture(scope="module")
def shared_endpoint(local_stack: LocalStack) -> Iterator[EndpointInfo]:
    """One endpoint for the validation cases below: none of them may send it anything (each
    checks the whole server's request count), so they cannot disturb one another."""
    info = asyncio.run(
        local_stack.create_endpoint(f"v-{uuid.uuid4().hex[:20]}", notifications=False)
    )
    yield info
    asyncio.run(local_stack.delete_endpoint(info.name))


@pytest.mark.parametrize(("fields", "api_name"), INVALID_FIELDS)
async def test_invalid_fields_fail_fast(
    stack_env: LocalStack, shared_endpoint: EndpointInfo, fields: dict[str, object], api_name: str
) -> None:
    endpoint = shared_endpoint
    await stack_env.reset()
    async with AsyncInvoker(endpoint.name, watcher=None) as invoker:
        with pytest.raises(InvalidRequestError) as info:
            await invoker.submit(b"{}", **fields)  # type: ignore[arg-type]
    assert info.value.field == api_name
    assert (await stack_env.stats())["requests"] == 0


def test_invalid_endpoint_name_and_staging_uri() -> None:
    with pytest.raises(InvalidRequestError):
        AsyncInvoker("bad_name!", watcher=None)
    with pytest.raises(InvalidRequestError):
        S3Staging("https://bucket/prefix")
    with pytest.raises(InvalidRequestError):
        S3Staging("s3://UPPER/prefix")


async def test_unknown_endpoint_is_not_retried(stack_env: LocalStack) -> None:
    await stack_env.reset()
    async with AsyncInvoker("no-such-endpoint", watcher=None) as invoker:
        job = await invoker.submit(b"{}")
        with pytest.raises(InvocationError) as info:
            await job.accepted()
    assert info.value.code == "ValidationError"
    assert info.value.status == 400
    stats = await stack_env.stats()
    assert stats["requests"] == 1
    assert invoker.statistics().retried == 0


async def test_limits_bound_concurrency_and_connections(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    await stack_env.reset()
    # Slow answers keep calls in flight long enough for the limit to be what bounds them.
    await stack_env.set_faults({"latency": 0.05}, endpoint=endpoint.name)
    limits = Limits(max_concurrent_invocations=8, max_pending=1_000)
    # Each control call opens one connection of its own: count around them.
    before = (await stack_env.stats())["connections_opened"]
    async with AsyncInvoker(endpoint.name, limits=limits, watcher=None) as invoker:
        jobs = await asyncio.gather(*(invoker.submit(b"{}") for _ in range(200)))
    stats = await stack_env.stats()
    assert len({job.inference_id for job in jobs}) == 200
    assert stats["accepted"] == 200
    assert 1 < stats["peak_concurrent_http"] <= 8
    assert 1 < stats["connections_opened"] - before - 1 <= 8


async def test_max_pending_admission_timeout(
    stack_env: LocalStack, local_stack: LocalStack
) -> None:
    slow = await local_stack.create_endpoint(
        model="sleep:100"
    )  # 1 s at the test stack's time scale
    limits = Limits(max_pending=2, admission_timeout=0.2)
    async with AsyncInvoker(slow.name, limits=limits, watcher=S3Polling(interval=0.05)) as invoker:
        first = await invoker.submit(b"1")
        await invoker.submit(b"2")
        assert invoker.statistics().pending == 2
        with pytest.raises(AdmissionTimeoutError):
            await invoker.submit(b"3")
        assert invoker.statistics().submitted == 2
    # Closing with jobs unresolved fails them with their locations, for another watcher.
    with pytest.raises(InvokerClosedError) as info:
        await first.result()
    assert info.value.output_location == first.output_location
    assert info.value.failure_location == first.failure_location


async def test_submit_only_mode(stack_env: LocalStack, endpoint: EndpointInfo) -> None:
    async with AsyncInvoker(endpoint.name, watcher=None) as invoker:
        job = await invoker.submit("text payload", content_type="text/plain")
        await job.accepted()
        assert invoker.statistics().pending == 0
    assert not job.tracked
    with pytest.raises(AsyncInferenceError, match="not tracked") as info:
        await job.result()
    # The base class itself: no subclass (not a timeout, not closed) fits a job never tracked.
    assert type(info.value) is AsyncInferenceError
    assert info.value.inference_id == job.inference_id
    assert info.value.output_location == job.output_location
    assert info.value.failure_location == job.failure_location
    assert job.record()["output_location"] == job.output_location


async def test_submit_after_close_and_before_open(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    invoker = AsyncInvoker(endpoint.name, watcher=None)
    with pytest.raises(InvokerClosedError):
        await invoker.submit(b"{}")
    async with invoker:
        pass
    with pytest.raises(InvokerClosedError):
        await invoker.submit(b"{}")
    assert "closed" in repr(invoker)


async def test_cancelled_wait_leaves_job_tracked(
    stack_env: LocalStack, local_stack: LocalStack
) -> None:
    slow = await local_stack.create_endpoint(
        model="sleep:50"
    )  # 0.5 s at the test stack's time scale
    async with AsyncInvoker(slow.name, watcher=S3Polling(interval=0.05)) as invoker:
        job = await invoker.submit(b"payload")
        waiter = asyncio.create_task(job.result())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not job.done()
        result = await job  # awaitable again, and resolves
        assert result.body == b"payload"
        with pytest.raises(TimeoutError):
            # A wait shorter than the job's life times out without giving the job up.
            other = await invoker.submit(b"again")
            await other.result(timeout=0.01)
        assert (await other.result(timeout=30)).body == b"again"


async def test_map_ordered_and_unordered(stack_env: LocalStack, endpoint: EndpointInfo) -> None:
    payloads = [{"n": i} for i in range(50)]
    async with AsyncInvoker(
        endpoint.name, limits=Limits(max_pending=16), watcher=S3Polling(interval=0.05)
    ) as invoker:
        ordered = [r async for r in invoker.map(payloads)]
        unordered = [r async for r in invoker.map(payloads, ordered=False)]
        mixed = [
            r
            async for r in invoker.map(
                [b"ok", b"x" * (MAX_INLINE_BODY_BYTES + 1), b"fine"], return_exceptions=True
            )
        ]
    assert [json.loads(r.body) for r in ordered] == payloads  # type: ignore[union-attr,arg-type]
    assert sorted(json.loads(r.body)["n"] for r in unordered) == list(range(50))  # type: ignore[union-attr,arg-type]
    assert isinstance(mixed[1], PayloadTooLargeError)
    assert [m.body for m in (mixed[0], mixed[2])] == [b"ok", b"fine"]  # type: ignore[union-attr]


async def test_two_thousand_concurrent_submissions_accepted_once(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    async with AsyncInvoker(
        endpoint.name, limits=Limits(max_concurrent_invocations=64), watcher=None
    ) as invoker:
        jobs = await asyncio.gather(*(invoker.submit({"i": i}) for i in range(2_000)))
    stats = await stack_env.stats(endpoint.name)
    ids = [job.inference_id for job in jobs]
    assert len(set(ids)) == 2_000
    assert stats["accepted"] == 2_000
    assert all(stats["accepted_by_id"][i] == 1 for i in ids)


@pytest.mark.scale
async def test_ten_thousand_concurrent_submissions_accepted_once(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    async with AsyncInvoker(
        endpoint.name, limits=Limits(max_concurrent_invocations=128), watcher=None
    ) as invoker:
        jobs = await asyncio.gather(*(invoker.submit({"i": i}) for i in range(10_000)))
    stats = await stack_env.stats(endpoint.name)
    assert stats["accepted"] == 10_000
    assert all(stats["accepted_by_id"][job.inference_id] == 1 for job in jobs)


async def test_body_with_input_location_is_refused(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    async with AsyncInvoker(endpoint.name, watcher=None) as invoker:
        with pytest.raises(InvalidRequestError) as info:
            await invoker.submit(b"{}", input_location=f"s3://{stack_env.info.bucket}/in")
        with pytest.raises(InvalidRequestError):
            await invoker.submit(input_location="ftp://bucket/key")
    assert info.value.field == "InputLocation"
    assert (await stack_env.stats(endpoint.name))["accepted"] == 0


async def test_callers_input_location_is_used_and_never_cleaned_up(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    from aiobotocore.session import get_session

    bucket = stack_env.info.bucket
    key = f"inputs/{endpoint.name}/mine.json"
    async with get_session().create_client("s3") as s3:
        await s3.put_object(Bucket=bucket, Key=key, Body=b'{"mine": true}')
        staging = S3Staging(f"s3://{bucket}/staging/", cleanup=True)
        async with AsyncInvoker(
            endpoint.name, staging=staging, watcher=S3Polling(interval=0.05)
        ) as invoker:
            job = await invoker.submit(input_location=f"s3://{bucket}/{key}")
            assert not job.inline
            result = await job.result(timeout=30)
            await invoker.drain()
        assert result.body == b'{"mine": true}'
        assert staging.deleted == 0
        head = await s3.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == len(b'{"mine": true}')


async def test_cancelled_admission_waits_release_nothing(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    """Fifty submissions waiting for admission, cancelled at once: each raises CancelledError,
    no slot is lost, and the next submission is admitted when the first job is answered."""
    await stack_env.set_faults({"latency": 0.3}, endpoint=endpoint.name)
    async with AsyncInvoker(endpoint.name, limits=Limits(max_pending=1), watcher=None) as invoker:
        first = await invoker.submit(b"first")
        waiting = [asyncio.create_task(invoker.submit(b"{}")) for _ in range(50)]
        while invoker.statistics().admission.waiting < 50:
            await asyncio.sleep(0.01)
        for task in waiting:
            task.cancel()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
        admission = invoker.statistics().admission
        assert (admission.borrowed, admission.waiting) == (1, 0)
        last = await invoker.submit(b"last")  # admitted once the first job has its 202
        assert first.done()
        await last.accepted()
        stats = invoker.statistics()
    assert (stats.submitted, stats.accepted, stats.rejected, stats.pending) == (2, 2, 0, 0)
    assert (await stack_env.stats(endpoint.name))["accepted"] == 2


async def test_close_leaves_no_tasks_behind(stack_env: LocalStack, endpoint: EndpointInfo) -> None:
    before = asyncio.all_tasks()
    async with AsyncInvoker(endpoint.name, watcher=S3Polling(interval=0.05)) as invoker:
        job = await invoker.submit(b"x")
        await job.result(timeout=30)
        assert len(asyncio.all_tasks() - before) > 0  # the watcher and clean-up tasks run...
    assert asyncio.all_tasks() - before == set()  # ...and are gone once closed
