"""The watchers' error tree (#8): permanent errors fail the jobs they doom, promptly; transient
ones are retried and counted; a 403 to a HEAD (no s3:ListBucket) never fails a job.

AWS's refusals come from a loopback proxy in front of moto (``aws_proxy.py``; moto enforces no
IAM); a missing bucket or queue is moto's own answer (see test_watchers_s3 / test_watchers_sqs).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from aiohttp import web
from aws_proxy import (
    AwsProxy,
    drop_connection,
    forbid_if_missing,
    operation,
    s3_error,
    sqs_error,
)
from botocore.exceptions import ClientError, EndpointConnectionError
from watcher_helpers import RawClients, wait_until

from aiosagemaker import (
    AsyncInvoker,
    InferenceFailedError,
    InvokerClosedError,
    ResultReadError,
    S3Polling,
    SqsNotifications,
    WatcherError,
)
from aiosagemaker._aws import aws_error_code
from aiosagemaker._watchers._errors import ErrorKind, Streak, classify
from aiosagemaker.local import EndpointInfo, LocalStack


def client_error(code: str, status: int, operation_name: str = "Op") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation_name,
    )


def bucket_of(uri: str) -> str:
    return uri.removeprefix("s3://").partition("/")[0]


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiosagemaker" and r.levelno == logging.WARNING and text in r.getMessage()
    ]


# --- classification (no I/O) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation_name", "code", "status", "kind", "permission"),
    [
        ("ListObjectsV2", "AccessDenied", 403, ErrorKind.PERMANENT, "s3:ListBucket"),
        ("ListObjectsV2", "NoSuchBucket", 404, ErrorKind.PERMANENT, None),
        ("ListObjectsV2", "SlowDown", 503, ErrorKind.TRANSIENT, None),
        ("ListObjectsV2", "InternalError", 500, ErrorKind.TRANSIENT, None),
        ("ListObjectsV2", "HTTP502", 502, ErrorKind.TRANSIENT, None),
        ("HeadObject", "404", 404, ErrorKind.MISSING, None),
        ("HeadObject", "NoSuchKey", 404, ErrorKind.MISSING, None),
        ("HeadObject", "403", 403, ErrorKind.FORBIDDEN, None),
        ("HeadObject", "Forbidden", 403, ErrorKind.FORBIDDEN, None),
        ("HeadObject", "AccessDenied", 403, ErrorKind.FORBIDDEN, None),
        ("HeadObject", "503", 503, ErrorKind.TRANSIENT, None),
        ("GetObject", "AccessDenied", 403, ErrorKind.PERMANENT, "s3:GetObject"),
        ("GetObject", "NoSuchKey", 404, ErrorKind.MISSING, None),
        ("GetObject", "SlowDown", 503, ErrorKind.TRANSIENT, None),
        (
            "ReceiveMessage",
            "AWS.SimpleQueueService.NonExistentQueue",
            400,
            ErrorKind.PERMANENT,
            None,
        ),
        ("ReceiveMessage", "QueueDoesNotExist", 400, ErrorKind.PERMANENT, None),
        ("ReceiveMessage", "AccessDenied", 403, ErrorKind.PERMANENT, "sqs:ReceiveMessage"),
        (
            "ReceiveMessage",
            "AccessDeniedException",
            400,
            ErrorKind.PERMANENT,
            "sqs:ReceiveMessage",
        ),
        ("ReceiveMessage", "KmsAccessDenied", 400, ErrorKind.PERMANENT, "kms:Decrypt"),
        ("ReceiveMessage", "ThrottlingException", 400, ErrorKind.TRANSIENT, None),
        ("DeleteMessageBatch", "AccessDenied", 403, ErrorKind.PERMANENT, "sqs:DeleteMessage"),
    ],
)
def test_classification(
    operation_name: str, code: str, status: int, kind: ErrorKind, permission: str | None
) -> None:
    error = client_error(code, status)
    verdict = classify(operation_name, error, "s3://b/p/")
    assert verdict.kind is kind
    assert (verdict.code, verdict.status) == aws_error_code(error)  # the one reader's answer
    assert verdict.permission == permission
    if kind is ErrorKind.PERMANENT:
        assert verdict.advice
        if permission is not None:
            assert permission in verdict.advice


def test_errors_without_an_aws_code_are_transient() -> None:
    connection = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert classify("ListObjectsV2", connection).kind is ErrorKind.TRANSIENT
    assert classify("ReceiveMessage", TimeoutError()).kind is ErrorKind.TRANSIENT
    assert classify("HeadObject", connection).kind is ErrorKind.TRANSIENT


def test_a_streak_is_confirmed_by_a_later_identical_error() -> None:
    streak = Streak()
    assert not streak.record("AccessDenied", 1)
    assert not streak.record("AccessDenied", 1)  # the same poll: one try, however many calls
    assert not streak.record("NoSuchBucket", 2)  # a different answer starts over
    assert streak.record("NoSuchBucket", 3)
    streak.clear()  # a success
    assert not streak.record("NoSuchBucket", 4)


# --- S3Polling ------------------------------------------------------------------------------------


async def test_listing_denied_fails_that_directory_s_jobs(
    aws_proxy: AwsProxy, aws_clients: RawClients, quiet_endpoint: EndpointInfo
) -> None:
    bucket = bucket_of(quiet_endpoint.output_path)
    other = f"other-{uuid.uuid4().hex[:12]}"
    await aws_clients.s3.create_bucket(Bucket=other)
    aws_proxy.add(operation("ListObjectsV2", bucket=bucket), s3_error(403, "AccessDenied"))
    out = quiet_endpoint.output_path.rstrip("/")
    async with S3Polling(interval=0.02) as watcher:
        denied = watcher.track("denied", f"{out}/d/denied.out", None)
        elsewhere = watcher.track("elsewhere", f"s3://{other}/out/elsewhere.out", None)
        with pytest.raises(WatcherError) as caught:
            await denied.result(timeout=10)
        # Believed at the second poll's denial, not the first.
        assert aws_proxy.count("ListObjectsV2", 403) >= 2
        error = caught.value
        assert error.code == "AccessDenied" and error.permission == "s3:ListBucket"
        assert "s3:ListBucket" in str(error) and f"s3://{bucket}/" in str(error)
        assert error.inference_id == "denied" and error.output_location == f"{out}/d/denied.out"
        assert isinstance(error.__cause__, ClientError)
        # A job tracked afterwards in the denied directory fails at the next poll.
        later = watcher.track("later", f"{out}/d/later.out", None)
        with pytest.raises(WatcherError):
            await later.result(timeout=10)
        assert not elsewhere.done()  # its bucket lists fine
        stats = watcher.statistics()
    assert stats.abandoned == 2 and stats.transient_errors == 0
    assert stats.permanent_errors >= 3


async def test_a_single_denial_is_not_believed(
    aws_proxy: AwsProxy, quiet_endpoint: EndpointInfo
) -> None:
    aws_proxy.add(operation("ListObjectsV2"), s3_error(403, "AccessDenied"), times=1)
    watcher = S3Polling(interval=0.02)
    async with AsyncInvoker(quiet_endpoint.name, watcher=watcher) as invoker:
        job = await invoker.submit(b'{"once": 1}')
        assert (await job.result(timeout=30)).body == b'{"once": 1}'
    stats = watcher.statistics()
    assert aws_proxy.count("ListObjectsV2", 403) == 1
    assert stats.permanent_errors == 1 and stats.abandoned == 0


async def test_transient_s3_errors_are_retried_and_counted(
    aws_proxy: AwsProxy, quiet_endpoint: EndpointInfo
) -> None:
    aws_proxy.add(operation("ListObjectsV2"), s3_error(503, "SlowDown"), times=2)
    aws_proxy.add(operation("ListObjectsV2"), s3_error(500, "InternalError"), times=1)
    # aiohttp resends an idempotent request once when a reused connection drops: two drops
    # make at least one connection error that the watcher sees.
    aws_proxy.add(operation("ListObjectsV2"), drop_connection, times=2)
    aws_proxy.add(operation("GetObject"), s3_error(503, "SlowDown"), times=1)
    watcher = S3Polling(interval=0.02)
    async with AsyncInvoker(quiet_endpoint.name, watcher=watcher) as invoker:
        job = await invoker.submit(b'{"retried": 1}')
        assert (await job.result(timeout=30)).body == b'{"retried": 1}'
    stats = watcher.statistics()
    assert 5 <= stats.transient_errors <= 6, stats
    assert stats.permanent_errors == 0 and stats.abandoned == 0
    assert aws_proxy.count("GetObject") == 2  # the 503, then the read


async def test_unreadable_output_is_a_result_read_error(
    aws_proxy: AwsProxy, quiet_endpoint: EndpointInfo
) -> None:
    aws_proxy.add(operation("GetObject"), s3_error(403, "AccessDenied"))
    watcher = S3Polling(interval=0.02)
    async with AsyncInvoker(quiet_endpoint.name, watcher=watcher) as invoker:
        job = await invoker.submit(b'{"secret": 1}')
        with pytest.raises(ResultReadError) as caught:
            await job.result(timeout=30)
    error = caught.value
    assert error.code == "AccessDenied"
    assert "s3:GetObject" in str(error) and error.inference_id == job.inference_id
    assert error.output_location == job.output_location is not None
    assert isinstance(error.__cause__, ClientError)
    assert aws_proxy.count("GetObject") == 1  # a denial is not retried


async def test_unreadable_failure_object_is_still_a_failure(
    aws_proxy: AwsProxy, local_stack: LocalStack
) -> None:
    endpoint = await local_stack.create_endpoint(model="failing", notifications=False)
    try:
        aws_proxy.add(operation("GetObject"), s3_error(403, "AccessDenied"))
        async with AsyncInvoker(endpoint.name, watcher=S3Polling(interval=0.02)) as invoker:
            job = await invoker.submit(b"{}")
            with pytest.raises(InferenceFailedError) as caught:
                await job.result(timeout=30)
    finally:
        await local_stack.delete_endpoint(endpoint.name)
    assert "could not be read (AccessDenied)" in caught.value.reason
    assert isinstance(caught.value.__cause__, ClientError)


# --- SqsNotifications -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query_code", "code"),
    [(None, "AccessDeniedException"), ("AccessDenied", "AccessDenied")],
)
async def test_receive_denied_fails_every_pending_job(
    aws_proxy: AwsProxy, local_stack: LocalStack, query_code: str | None, code: str
) -> None:
    aws_proxy.add(operation("ReceiveMessage"), sqs_error(400, "AccessDeniedException", query_code))
    queue = f"{local_stack.info.sqs_url}/123456789012/q-{uuid.uuid4().hex[:8]}"
    bucket = "s3://b-nowhere/out"
    async with SqsNotifications(queue_url=queue, wait_time_seconds=1, reconcile_after=60) as w:
        jobs = [
            w.track(f"j{i}", f"{bucket}/j{i}.out", f"{bucket}/j{i}-error.out") for i in range(3)
        ]
        for job in jobs:
            with pytest.raises(WatcherError) as caught:
                await job.result(timeout=10)
            assert caught.value.code == code
            assert caught.value.permission == "sqs:ReceiveMessage"
            assert "sqs:ReceiveMessage" in str(caught.value) and queue in str(caught.value)
            assert isinstance(caught.value.__cause__, ClientError)
        assert aws_proxy.count("ReceiveMessage") >= 2  # believed at the second
        # Tracked while the denial lasts: fails at its first receive, not at its deadline.
        later = w.track("later", f"{bucket}/later.out", None)
        with pytest.raises(WatcherError):
            await later.result(timeout=10)
        stats = w.statistics()
    assert stats.abandoned == 4 and stats.transient_errors == 0


async def test_transient_sqs_errors_are_retried_and_counted(
    aws_proxy: AwsProxy, endpoint: EndpointInfo
) -> None:
    aws_proxy.add(operation("ReceiveMessage"), sqs_error(400, "ThrottlingException"), times=2)
    aws_proxy.add(operation("ReceiveMessage"), sqs_error(500, "InternalError"), times=1)
    assert endpoint.queue_url is not None
    watcher = SqsNotifications(
        queue_url=endpoint.queue_url, wait_time_seconds=1, reconcile_after=60, delete_linger=0.05
    )
    async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
        job = await invoker.submit(b'{"sqs": 1}')
        assert (await job.result(timeout=30)).body == b'{"sqs": 1}'
    stats = watcher.statistics()
    assert stats.transient_errors == 3 and stats.permanent_errors == 0
    assert stats.abandoned == 0 and watcher.reconciled == 0


async def test_reconciliation_head_403_warns_once_and_the_job_waits(
    aws_proxy: AwsProxy,
    aws_clients: RawClients,
    endpoint: EndpointInfo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A job whose notification is lost, under a role without s3:ListBucket: every reconciliation
    # HEAD answers 403 until the output is written; then it is found.
    caplog.set_level(logging.INFO, logger="aiosagemaker")
    assert endpoint.queue_url is not None
    bucket = bucket_of(endpoint.output_path)
    aws_proxy.add(operation("HeadObject", bucket=bucket), forbid_if_missing)
    output = f"{endpoint.output_path.rstrip('/')}/lost/lost.out"
    watcher = SqsNotifications(
        queue_url=endpoint.queue_url,
        wait_time_seconds=1,
        reconcile_after=0.05,
        reconcile_every=0.05,
    )
    async with watcher:
        job = watcher.track("lost", output, None)
        await aws_proxy.wait_for(lambda: aws_proxy.count("HeadObject", 403) >= 3)
        assert not job.done()
        await aws_clients.s3.put_object(
            Bucket=bucket, Key=output.removeprefix(f"s3://{bucket}/"), Body=b"late"
        )
        assert (await job.result(timeout=15)).body == b"late"
        stats = watcher.statistics()
    assert watcher.reconciled == 1
    assert stats.transient_errors == 0 and stats.abandoned == 0
    assert len(warnings_about(caplog, "s3:ListBucket")) == 1


async def test_denied_deletes_are_explained_once_and_results_still_arrive(
    aws_proxy: AwsProxy, endpoint: EndpointInfo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiosagemaker")
    aws_proxy.add(operation("DeleteMessageBatch"), sqs_error(400, "AccessDeniedException"))
    assert endpoint.queue_url is not None
    watcher = SqsNotifications(
        queue_url=endpoint.queue_url, wait_time_seconds=1, reconcile_after=60, delete_linger=0.01
    )
    async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
        jobs = [await invoker.submit(b'{"d": %d}' % i) for i in range(3)]
        assert [(await j.result(timeout=30)).body for j in jobs] == [
            b'{"d": %d}' % i for i in range(3)
        ]
        await aws_proxy.wait_for(lambda: aws_proxy.count("DeleteMessageBatch", 400) >= 1)
    stats = watcher.statistics()
    assert stats.permanent_errors >= 1 and stats.abandoned == 0 and stats.transient_errors == 0
    assert watcher.delete_failures >= 1
    assert len(warnings_about(caplog, "sqs:DeleteMessage")) == 1


async def test_closing_while_an_output_is_read_fails_the_job_as_closed(
    aws_proxy: AwsProxy, aws_clients: RawClients, quiet_endpoint: EndpointInfo
) -> None:
    """A job whose output GET is under way when its watcher closes fails with
    ``InvokerClosedError`` (with its location), instead of never resolving: it had left the
    watcher's pending jobs when its output was found."""
    bucket = bucket_of(quiet_endpoint.output_path)
    key = f"{quiet_endpoint.output_path.removeprefix(f's3://{bucket}/').rstrip('/')}/c/c.out"
    await aws_clients.s3.put_object(Bucket=bucket, Key=key, Body=b"never read")
    stall = asyncio.Event()

    async def hang(proxy: AwsProxy, request: web.Request, data: bytes) -> web.StreamResponse:
        await stall.wait()
        return web.Response(status=500)

    rule = aws_proxy.add(operation("GetObject", bucket=bucket), hang)
    watcher = S3Polling(interval=0.05)
    await watcher.open()
    try:
        job = watcher.track("c", f"s3://{bucket}/{key}", None)
        await wait_until(lambda: rule.hits >= 1, what="the output's GET")
    finally:
        await watcher.aclose()
        stall.set()
    with pytest.raises(InvokerClosedError) as caught:
        await job.result(timeout=10)
    assert caught.value.output_location == f"s3://{bucket}/{key}"


async def test_closing_fails_the_outputs_waiting_for_a_read_as_closed(
    aws_proxy: AwsProxy, aws_clients: RawClients, quiet_endpoint: EndpointInfo
) -> None:
    """Outputs found while every read is under way wait their turn; closing then fails each,
    the one being read and those waiting alike, with ``InvokerClosedError``: none is left
    unresolved, and no more GETs are in flight than ``max_concurrent_fetches``."""
    bucket = bucket_of(quiet_endpoint.output_path)
    prefix = quiet_endpoint.output_path.removeprefix(f"s3://{bucket}/").rstrip("/")
    locations = []
    for name in ("a", "b", "c"):
        key = f"{prefix}/queued/{name}.out"
        await aws_clients.s3.put_object(Bucket=bucket, Key=key, Body=b"never read")
        locations.append(f"s3://{bucket}/{key}")
    stall = asyncio.Event()

    async def hang(proxy: AwsProxy, request: web.Request, data: bytes) -> web.StreamResponse:
        await stall.wait()
        return web.Response(status=500)

    rule = aws_proxy.add(operation("GetObject", bucket=bucket), hang)
    watcher = S3Polling(interval=0.05, max_concurrent_fetches=1)
    await watcher.open()
    try:
        jobs = [watcher.track(f"q{i}", location, None) for i, location in enumerate(locations)]
        await wait_until(lambda: watcher.statistics().resolved == 3, what="every output found")
        await wait_until(lambda: rule.hits >= 1, what="the first output's GET")
        await asyncio.sleep(0.2)
        assert rule.hits == 1  # the other two wait for the one read allowed
    finally:
        await watcher.aclose()
        stall.set()
    for job, location in zip(jobs, locations, strict=True):
        with pytest.raises(InvokerClosedError) as caught:
            await job.result(timeout=10)
        assert caught.value.output_location == location


async def test_an_output_retried_after_a_pause_does_not_hold_up_the_others(
    aws_proxy: AwsProxy, aws_clients: RawClients, quiet_endpoint: EndpointInfo
) -> None:
    """A GET waiting out its backoff holds no read: with one read at a time, an output behind a
    throttled one is read meanwhile, and the throttled one still arrives."""
    bucket = bucket_of(quiet_endpoint.output_path)
    prefix = quiet_endpoint.output_path.removeprefix(f"s3://{bucket}/").rstrip("/")
    slow_key, quick_key = f"{prefix}/backoff/a.out", f"{prefix}/backoff/b.out"
    await aws_clients.s3.put_object(Bucket=bucket, Key=slow_key, Body=b"slow")
    await aws_clients.s3.put_object(Bucket=bucket, Key=quick_key, Body=b"quick")
    # Three refusals: 0.2 + 0.4 + 0.8 s of backoff before the slow output is read.
    aws_proxy.add(
        lambda call: call.operation == "GetObject" and call.key == slow_key,
        s3_error(503, "SlowDown"),
        times=3,
    )
    watcher = S3Polling(interval=0.05, max_concurrent_fetches=1)
    await watcher.open()
    try:
        slow = watcher.track("slow", f"s3://{bucket}/{slow_key}", None)
        quick = watcher.track("quick", f"s3://{bucket}/{quick_key}", None)
        assert (await quick.result(timeout=30)).body == b"quick"
        assert not slow.done()  # still in its backoff
        assert (await slow.result(timeout=30)).body == b"slow"
    finally:
        await watcher.aclose()
    assert watcher.statistics().transient_errors == 3
