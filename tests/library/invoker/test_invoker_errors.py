"""Error paths of the invoke and the staging upload, over real HTTP on 127.0.0.1 (issue #8).

The runtime endpoint is ``StubRuntime`` (invoker_stubs.py), which answers what the local stack
never would: a 202 with an empty, non-JSON or cut-off body, an HTML 502, a request held without an
answer. A connect timeout comes from a listener whose accept queue is full. Staging goes to the
local stack's moto S3, through ``S3Proxy`` where S3's own errors (``SlowDown``, ``AccessDenied``)
are needed and to count PUT attempts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError
from invoker_stubs import (
    Post,
    Reply,
    S3Proxy,
    StubRuntime,
    accepted,
    aws_error,
    full_backlog_listener,
    s3_error,
)

from aiosagemaker import (
    MAX_INLINE_BODY_BYTES,
    Accepted,
    AsyncInvoker,
    InvocationError,
    Limits,
    RetryPolicy,
    S3Polling,
    S3Staging,
    SqsNotifications,
    StagingError,
    ThrottledError,
    Timeouts,
)
from aiosagemaker.local import EndpointInfo, LocalStack

# Retries without waiting: the backoff is at most 2 ms.
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
ENDPOINT = "stub-endpoint"


@pytest.fixture
def stub_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and a region for signing; the stub never checks the signature."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTUBSTUBSTUBSTUB")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stub-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


async def send(invoker: AsyncInvoker, **fields: Any) -> Accepted:
    """Submit and wait for the 202: the one way that works whether submit waits for it or not."""
    job = await invoker.submit(b"{}", **fields)
    return await job.accepted()


def invoker_for(stub_url: str, **kwargs: Any) -> AsyncInvoker:
    return AsyncInvoker(ENDPOINT, endpoint_url=stub_url, watcher=None, **kwargs)


def answer_with(make: Any) -> Any:
    async def respond(post: Post) -> Reply:
        reply: Reply = make(post)
        return reply

    return respond


# --- the 202 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "declared_length"),
    [
        pytest.param(b"", None, id="empty"),
        pytest.param(b"<html><body>Accepted</body></html>", None, id="not-json"),
        pytest.param(b'{"OutputLocation": "s3://elsewhere/x"}', None, id="no-inference-id"),
        pytest.param(b'{"InferenceId": "someone-el', 200, id="cut-off"),
    ],
)
@pytest.mark.usefixtures("stub_credentials")
async def test_202_is_an_acceptance_whatever_its_body(
    body: bytes, declared_length: int | None
) -> None:
    respond = answer_with(lambda post: accepted(post, body, declared_length=declared_length))
    async with StubRuntime(respond) as stub:
        async with invoker_for(stub.url, retry=RetryPolicy(max_attempts=5)) as invoker:
            acc = await send(invoker, inference_id="ours-1")
    # The id we sent, the locations from the headers, and never a second POST (a duplicate).
    assert acc.inference_id == "ours-1"
    assert acc.output_location == "s3://stub-bucket/out/ours-1.out"
    assert acc.failure_location == "s3://stub-bucket/failures/ours-1-error.out"
    assert (acc.attempts, acc.ambiguous_retries) == (1, 0)
    assert [post.inference_id for post in stub.posts] == ["ours-1"]
    assert invoker.statistics().retried == 0


@pytest.mark.usefixtures("stub_credentials")
async def test_202_without_location_headers_has_no_locations() -> None:
    respond = answer_with(lambda post: Reply(202, "Accepted", {}, b'{"InferenceId": "ours-2"}'))
    async with StubRuntime(respond) as stub:
        async with invoker_for(stub.url) as invoker:
            acc = await send(invoker, inference_id="ours-2")
    assert (acc.inference_id, acc.output_location, acc.failure_location) == ("ours-2", None, None)
    assert len(stub.posts) == 1


@pytest.mark.usefixtures("stub_credentials")
async def test_202_without_locations_fails_where_the_watcher_needs_them() -> None:
    """S3Polling finds results by location only: such a job fails at once, typed, and is not
    re-sent (the request was accepted)."""
    respond = answer_with(lambda post: Reply(202, "Accepted", {}, b""))
    async with StubRuntime(respond) as stub:
        async with AsyncInvoker(
            ENDPOINT, endpoint_url=stub.url, watcher=S3Polling(interval=0.01)
        ) as invoker:
            job = await invoker.submit(b"{}", inference_id="ours-3")
            acc = await job.accepted()
            with pytest.raises(InvocationError) as info:
                await job.result(timeout=10)
    assert acc.output_location is None
    assert info.value.code == "MissingOutputLocation" and info.value.status == 202
    assert info.value.inference_id == "ours-3"
    assert len(stub.posts) == 1


async def test_202_without_locations_resolves_by_inference_id_from_notifications(
    stack_env: LocalStack,
) -> None:
    """SqsNotifications matches a notification to the job by inference id when the 202 named no
    location: an unsigned one only with the documented opt-in (there is nothing to check it
    against)."""
    import orjson

    respond = answer_with(lambda post: Reply(202, "Accepted", {}, b""))
    session = get_session()
    async with session.create_client("sqs") as sqs:
        queue = (await sqs.create_queue(QueueName=f"no-locations-{uuid.uuid4().hex[:12]}"))[
            "QueueUrl"
        ]
        async with StubRuntime(respond) as stub:
            async with AsyncInvoker(
                ENDPOINT,
                endpoint_url=stub.url,
                watcher=SqsNotifications(
                    queue_url=queue, wait_time_seconds=1, trust_unsigned_notifications=True
                ),
            ) as invoker:
                job = await invoker.submit(b"{}", inference_id="ours-4")
                await job.accepted()
                notification = {
                    "awsRegion": "us-east-1",
                    "eventTime": "2026-12-01T00:00:00.000Z",
                    "receivedTime": "2026-12-01T00:00:00.000Z",
                    "invocationStatus": "Completed",
                    "requestParameters": {"endpointName": ENDPOINT},
                    "responseParameters": {"contentType": "application/json"},
                    "inferenceId": "ours-4",
                    "eventVersion": "1.0",
                    "eventSource": "aws:sagemaker",
                    "eventName": "InferenceResult",
                }
                await sqs.send_message(
                    QueueUrl=queue, MessageBody=orjson.dumps(notification).decode()
                )
                result = await job.result(timeout=30)
        await sqs.delete_queue(QueueUrl=queue)
    assert result.inference_id == "ours-4" and result.output_location is None
    assert len(stub.posts) == 1


# --- error answers that are not AWS's ------------------------------------------------------------


@pytest.mark.usefixtures("stub_credentials")
async def test_html_502_is_retried_then_typed_by_its_status() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    respond = answer_with(
        lambda post: Reply(502, "Bad Gateway", {"Content-Type": "text/html"}, page)
    )
    async with StubRuntime(respond) as stub:
        async with invoker_for(stub.url, retry=FAST) as invoker:
            with pytest.raises(InvocationError) as info:
                await send(invoker, inference_id="ours-3", custom_attributes="secret-attr")
    error = info.value
    assert type(error) is InvocationError
    assert (error.code, error.status, error.inference_id) == ("HTTP502", 502, "ours-3")
    assert "text/html" in error.message and "nginx" not in error.message
    assert isinstance(error.__cause__, aiohttp.ClientResponseError)
    assert error.__cause__.status == 502
    # The cause keeps the answer, not the request's signature or CustomAttributes.
    shown = repr(error.__cause__) + str(error)
    assert "secret-attr" not in shown and "Signature=" not in shown
    assert len(stub.posts) == FAST.max_attempts
    assert invoker.statistics().retried == FAST.max_attempts - 1


@pytest.mark.parametrize(
    ("status", "reason", "headers", "body"),
    [
        pytest.param(400, "Bad Request", {"Content-Type": "text/plain"}, b"bad", id="400-text"),
        pytest.param(400, "Bad Request", {}, b"", id="400-empty"),
        pytest.param(403, "Forbidden", {"Content-Type": "text/html"}, b"<p>no</p>", id="403-html"),
    ],
)
@pytest.mark.usefixtures("stub_credentials")
async def test_4xx_without_an_aws_code_fails_at_once(
    status: int, reason: str, headers: dict[str, str], body: bytes
) -> None:
    respond = answer_with(lambda post: Reply(status, reason, headers, body))
    async with StubRuntime(respond) as stub:
        async with invoker_for(stub.url, retry=FAST) as invoker:
            with pytest.raises(InvocationError) as info:
                await send(invoker, inference_id="ours-4")
    assert (info.value.code, info.value.status) == (f"HTTP{status}", status)
    assert info.value.inference_id == "ours-4"
    assert isinstance(info.value.__cause__, aiohttp.ClientResponseError)
    assert len(stub.posts) == 1
    assert invoker.statistics().retried == 0


@pytest.mark.usefixtures("stub_credentials")
async def test_bare_429_is_throttling() -> None:
    respond = answer_with(lambda post: Reply(429, "Too Many Requests"))
    async with StubRuntime(respond) as stub:
        async with invoker_for(stub.url, retry=FAST) as invoker:
            with pytest.raises(ThrottledError) as info:
                await send(invoker, inference_id="ours-5")
    assert (info.value.code, info.value.status) == ("HTTP429", 429)
    assert len(stub.posts) == FAST.max_attempts
    assert invoker.statistics().throttled == FAST.max_attempts


@pytest.mark.usefixtures("stub_credentials")
async def test_aws_error_carries_request_id() -> None:
    def refuse(post: Post) -> Reply:
        reply = aws_error(400, "Bad Request", "ValidationError", "Endpoint stub not found.")
        return Reply(
            reply.status, reply.reason, {**reply.headers, "x-amzn-RequestId": "req-7"}, reply.body
        )

    async with StubRuntime(answer_with(refuse)) as stub:
        async with invoker_for(stub.url, retry=FAST) as invoker:
            with pytest.raises(InvocationError) as info:
                await send(invoker)
    assert (info.value.code, info.value.status, info.value.request_id) == (
        "ValidationError",
        400,
        "req-7",
    )
    assert info.value.message == "Endpoint stub not found."
    assert len(stub.posts) == 1


# --- no answer: before or after the request was sent ---------------------------------------------


@pytest.mark.usefixtures("stub_credentials")
async def test_connect_timeout_is_retried_and_not_ambiguous() -> None:
    # retry_ambiguous=False: only failures where nothing was sent may be retried, and this is one.
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002, retry_ambiguous=False)
    with full_backlog_listener() as (host, port):
        async with invoker_for(
            f"http://{host}:{port}", retry=policy, timeouts=Timeouts(connect=0.1)
        ) as invoker:
            with pytest.raises(InvocationError) as info:
                await send(invoker, inference_id="ours-6")
    error = info.value
    assert (error.code, error.status, error.inference_id) == ("ConnectionError", None, "ours-6")
    assert error.message.startswith("could not connect")
    assert isinstance(error.__cause__, aiohttp.ConnectionTimeoutError)
    stats = invoker.statistics()
    assert (stats.retried, stats.ambiguous_retries) == (policy.max_attempts - 1, 0)


@pytest.mark.parametrize("retry_ambiguous", [False, True])
@pytest.mark.usefixtures("stub_credentials")
async def test_read_timeout_is_ambiguous(retry_ambiguous: bool) -> None:
    async def never_answer(post: Post) -> Reply:
        await asyncio.Event().wait()  # cancelled when the stub closes
        raise AssertionError("unreachable")

    policy = RetryPolicy(
        max_attempts=2, base_delay=0.001, max_delay=0.002, retry_ambiguous=retry_ambiguous
    )
    async with StubRuntime(never_answer) as stub:
        async with invoker_for(stub.url, retry=policy, timeouts=Timeouts(invoke=0.2)) as invoker:
            with pytest.raises(InvocationError) as info:
                await send(invoker, inference_id="ours-7")
        posts = len(stub.posts)
    error = info.value
    assert (error.code, error.inference_id) == ("ConnectionError", "ours-7")
    assert "may have been received" in error.message
    assert isinstance(error.__cause__, TimeoutError)
    assert not isinstance(error.__cause__, aiohttp.ConnectionTimeoutError)
    retried = 1 if retry_ambiguous else 0
    assert posts == 1 + retried
    stats = invoker.statistics()
    assert (stats.retried, stats.ambiguous_retries) == (retried, retried)


# --- the in-flight limit under throttling --------------------------------------------------------


class ThrottleThenHold:
    """Answers the first ``throttles`` POSTs with 429, then holds every request until ``limit`` are
    in flight at once (the proof that the limit was not lowered), then accepts them all."""

    def __init__(self, throttles: int, limit: int) -> None:
        self.throttles = throttles
        self.limit = limit
        self.full = asyncio.Event()
        self.stub: StubRuntime | None = None

    async def __call__(self, post: Post) -> Reply:
        assert self.stub is not None
        if self.throttles:
            self.throttles -= 1
            return aws_error(429, "Too Many Requests", "ThrottlingException")
        if self.stub.in_flight >= self.limit:
            self.full.set()
        await self.full.wait()
        return accepted(post)


@pytest.mark.usefixtures("stub_credentials")
async def test_fixed_concurrency_holds_under_throttling() -> None:
    limit, jobs = 4, 8
    script = ThrottleThenHold(throttles=2 * limit, limit=limit)
    policy = RetryPolicy(max_attempts=2 * limit + 2, base_delay=0.001, max_delay=0.002)
    async with StubRuntime(script) as stub:
        script.stub = stub
        async with invoker_for(
            stub.url,
            limits=Limits(max_concurrent_invocations=limit, adaptive=False),
            retry=policy,
        ) as invoker:
            # Bounded: with a lowered limit, `limit` requests are never in flight together and the
            # held ones are never released.
            try:
                answers = await asyncio.wait_for(
                    asyncio.gather(*(send(invoker) for _ in range(jobs))), timeout=10
                )
            finally:
                script.full.set()  # a failed run still closes promptly
            stats = invoker.statistics()
    assert len({acc.inference_id for acc in answers}) == jobs
    assert stats.throttled == 2 * limit
    assert stats.concurrency_limit == limit
    assert stub.peak == limit


@pytest.mark.usefixtures("stub_credentials")
async def test_adaptive_concurrency_backs_off_under_the_same_throttling() -> None:
    # The contrast: the same 429s lower the limit when AIMD is on (the default), and the few
    # successes that follow are too few to grow it back.
    limit = 4
    throttles = 3 * limit

    async def respond(post: Post) -> Reply:
        nonlocal throttles
        if throttles:
            throttles -= 1
            return aws_error(429, "Too Many Requests", "ThrottlingException")
        return accepted(post)

    policy = RetryPolicy(max_attempts=throttles + 2, base_delay=0.001, max_delay=0.002)
    async with StubRuntime(respond) as stub:
        async with invoker_for(
            stub.url, limits=Limits(max_concurrent_invocations=limit), retry=policy
        ) as invoker:
            await asyncio.gather(*(send(invoker) for _ in range(limit)))
            stats = invoker.statistics()
    assert stats.throttled == 3 * limit
    assert stats.concurrency_limit < limit


# --- staging -------------------------------------------------------------------------------------


@asynccontextmanager
async def s3_client(endpoint_url: str) -> AsyncIterator[Any]:
    """An S3 client as the invoker makes it: botocore's own retries off."""
    config = AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})
    async with get_session().create_client("s3", endpoint_url=endpoint_url, config=config) as s3:
        yield s3


def no_jitter() -> float:
    return 0.0


async def test_stage_missing_bucket_fails_after_one_put(stack_env: LocalStack) -> None:
    staging = S3Staging(f"s3://no-such-bucket-{uuid.uuid4().hex[:12]}/inputs/")
    async with S3Proxy(stack_env.info.s3_url).running() as proxy, s3_client(proxy.url) as s3:
        with pytest.raises(StagingError) as info:
            await staging.stage(s3, b"x" * 1024, "application/json", "ours-8", FAST, no_jitter)
    error = info.value
    assert (error.code, error.status, error.inference_id) == ("NoSuchBucket", 404, "ours-8")
    assert "does not exist" in error.message
    assert isinstance(error.__cause__, ClientError)
    assert len(proxy.puts) == 1
    assert staging.staged == 0


async def test_stage_retries_slowdown_then_succeeds(stack_env: LocalStack) -> None:
    bucket = stack_env.info.bucket
    prefix = f"staging/{uuid.uuid4().hex[:12]}/"
    staging = S3Staging(f"s3://{bucket}/{prefix}")
    slow_down = [s3_error(503, "SlowDown", "Please reduce your request rate.") for _ in range(2)]
    body = bytes(range(256)) * 8
    async with S3Proxy(stack_env.info.s3_url, slow_down).running() as proxy:
        async with s3_client(proxy.url) as s3:
            uri = await staging.stage(
                s3, body, "application/octet-stream", "ours-9", FAST, no_jitter
            )
    assert uri.startswith(f"s3://{bucket}/{prefix}ours-9-")
    # Three attempts, all at the same key: a retry never leaves an orphan behind.
    assert len(proxy.puts) == 3 and len(set(proxy.puts)) == 1
    assert staging.staged == 1
    async with s3_client(stack_env.info.s3_url) as s3:
        stored = await s3.get_object(Bucket=bucket, Key=uri.removeprefix(f"s3://{bucket}/"))
        assert await stored["Body"].read() == body
        assert stored["ContentType"] == "application/octet-stream"


async def test_stage_access_denied_fails_at_once(stack_env: LocalStack) -> None:
    bucket = stack_env.info.bucket
    staging = S3Staging(f"s3://{bucket}/locked/")
    denied = [s3_error(403, "AccessDenied", "Access Denied") for _ in range(FAST.max_attempts)]
    async with S3Proxy(stack_env.info.s3_url, denied).running() as proxy:
        async with s3_client(proxy.url) as s3:
            with pytest.raises(StagingError) as info:
                await staging.stage(s3, b"{}", None, "ours-10", FAST, no_jitter)
    error = info.value
    assert (error.code, error.status, error.inference_id) == ("AccessDenied", 403, "ours-10")
    assert f"s3:PutObject on s3://{bucket}/locked/*" in error.message
    assert isinstance(error.__cause__, ClientError)
    assert len(proxy.puts) == 1


async def test_stage_5xx_html_exhausts_the_policy(stack_env: LocalStack) -> None:
    page = "<html><body>502 Bad Gateway</body></html>"
    bad_gateway = [
        aiohttp.web.Response(status=502, text=page, content_type="text/html")
        for _ in range(FAST.max_attempts)
    ]
    staging = S3Staging(f"s3://{stack_env.info.bucket}/staging/")
    async with S3Proxy(stack_env.info.s3_url, bad_gateway).running() as proxy:
        async with s3_client(proxy.url) as s3:
            with pytest.raises(StagingError) as info:
                await staging.stage(s3, b"{}", None, "ours-11", FAST, no_jitter)
    assert (info.value.code, info.value.status) == ("HTTP502", 502)
    assert f"after {FAST.max_attempts} attempts" in info.value.message
    assert len(proxy.puts) == FAST.max_attempts


async def test_invoker_stages_through_slowdown(
    stack_env: LocalStack, endpoint: EndpointInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_down = [s3_error(503, "SlowDown", "Please reduce your request rate.") for _ in range(2)]
    staging = S3Staging(f"s3://{stack_env.info.bucket}/staging/{endpoint.name}/")
    async with S3Proxy(stack_env.info.s3_url, slow_down).running() as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        async with AsyncInvoker(
            endpoint.name, staging=staging, retry=FAST, watcher=None
        ) as invoker:
            job = await invoker.submit(b"z" * (MAX_INLINE_BODY_BYTES + 1))
            acc = await job.accepted()
    assert acc.attempts == 1
    assert len(proxy.puts) == 3
    assert staging.staged == 1
    assert job.input_location is not None and job.input_location.startswith(
        f"s3://{stack_env.info.bucket}/staging/{endpoint.name}/"
    )
