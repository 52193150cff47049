"""SqsNotifications only: a shared queue, unreadable messages, inline bodies, a broken queue."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from botocore.exceptions import ClientError
from watcher_helpers import RawClients, build_watcher, completed_notification, wait_until

from aiosagemaker import AsyncInvoker, InvokerClosedError, SqsNotifications, WatcherError
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")


def foreign_notification(inference_id: str) -> bytes:
    """A well-formed SageMaker notification for a job nobody here submitted."""
    return completed_notification(inference_id, f"s3://elsewhere/out/{inference_id}.out").encode()


async def test_shared_queue_messages_of_others_are_left_alone(
    endpoint: EndpointInfo, aws_clients: RawClients
) -> None:
    assert endpoint.queue_url is not None
    queue = endpoint.queue_url
    other_id = f"other-{uuid.uuid4()}"
    unreadable = orjson.dumps(  # claims to be a result, has no inferenceId
        {
            "eventSource": "aws:sagemaker",
            "eventName": "InferenceResult",
            "invocationStatus": "Completed",
        }
    )
    for body in (foreign_notification(other_id), b'{"hello": "not sagemaker"}', unreadable):
        await aws_clients.sqs.send_message(QueueUrl=queue, MessageBody=body.decode())
    watcher = build_watcher("sqs", endpoint, visibility_timeout=1)
    assert isinstance(watcher, SqsNotifications)
    async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
        jobs = [await invoker.submit(b'{"i": %d}' % i) for i in range(20)]
        assert [(await j.result(timeout=30)).body for j in jobs] == [
            b'{"i": %d}' % i for i in range(20)
        ]
        # A job that never finishes keeps the receivers going until the others have been seen.
        blocker = watcher.track("blocker", f"{endpoint.output_path.rstrip('/')}/b/b.out", None)
        await wait_until(
            lambda: watcher.malformed_messages >= 1 and watcher.ignored_messages >= 1,
            what="the other messages to be seen",
        )
        assert not blocker.done()
    assert watcher.statistics().resolved == 20
    with pytest.raises(InvokerClosedError):
        await blocker
    ours = {job.inference_id for job in jobs}
    # Ours are deleted; the three others remain for their owners (the stack's test notifications
    # may remain too, when no receive happened to pick them up).
    seen: dict[str, str] = {}

    async def collect() -> bool:
        response = await aws_clients.sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30
        )
        for message in response.get("Messages", []):
            seen[message["MessageId"]] = message["Body"]
        return len(seen) >= 3 and await aws_clients.queue_depth(queue) == len(seen)

    await wait_until(collect, timeout=30, what="the messages left in the queue")
    bodies = set(seen.values())
    assert foreign_notification(other_id).decode() in bodies
    assert unreadable.decode() in bodies and '{"hello": "not sagemaker"}' in bodies
    assert not any(inference_id in body for body in bodies for inference_id in ours)


async def test_unsigned_inline_response_bodies_are_not_trusted(local_stack: LocalStack) -> None:
    """Raw delivery cannot be signed: the bodies a notification carries are not used (anyone who
    may send to the queue could write them); every output is read from its own S3 location.
    Signed envelopes' bodies are used without a GET (test_watchers_trust.py)."""
    endpoint = await local_stack.create_endpoint(include_response=True, raw_delivery=True)
    try:
        watcher = build_watcher("sqs", endpoint, reconcile_after=60.0)
        async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
            jobs = await asyncio.gather(*(invoker.submit(b'{"i": %d}' % i) for i in range(50)))
            bodies = [(await job.result(timeout=30)).body for job in jobs]
        assert bodies == [b'{"i": %d}' % i for i in range(50)]
        stats = watcher.statistics()
        assert stats.inline_bodies == 0 and stats.s3_get_calls == 50
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_missing_queue_fails_pending_jobs_promptly(endpoint: EndpointInfo) -> None:
    # moto's own answer: AWS.SimpleQueueService.NonExistentQueue. Reconciliation would find the
    # outputs after reconcile_after (60 s here): the jobs must fail long before that, not wait.
    assert endpoint.queue_url is not None
    broken = endpoint.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    watcher = SqsNotifications(queue_url=broken, wait_time_seconds=1, reconcile_after=60.0)
    async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
        jobs = [await invoker.submit(b'{"i": %d}' % i) for i in range(3)]
        for job in jobs:
            with pytest.raises(WatcherError) as caught:
                await job.result(timeout=10)
            error = caught.value
            assert error.code == "AWS.SimpleQueueService.NonExistentQueue"
            assert broken in str(error) and "does not exist" in str(error)
            assert isinstance(error.__cause__, ClientError)
            # Where the output will be: another watcher can still collect it.
            assert error.output_location == job.output_location is not None
        # A job submitted while the queue is still missing fails at its first receive.
        later = await invoker.submit(b'{"later": 1}')
        with pytest.raises(WatcherError):
            await later.result(timeout=10)
    stats = watcher.statistics()
    assert stats.abandoned == 4 and stats.resolved == 0
    assert stats.permanent_errors >= 3 and stats.transient_errors == 0
    assert watcher.reconciled == 0


def test_options_are_validated() -> None:
    with pytest.raises(ValueError):
        SqsNotifications(queue_url="")
    with pytest.raises(ValueError):
        SqsNotifications(queue_url="q", receivers=0)
    with pytest.raises(ValueError):
        SqsNotifications(queue_url="q", wait_time_seconds=21)
    assert SqsNotifications(queue_url="q").placement() == {}


async def test_early_copies_of_a_notification_are_consumed_and_deleted_together(
    endpoint: EndpointInfo, aws_clients: RawClients
) -> None:
    # SNS delivers at least once, and both copies can beat the 202: the tracker holds both, and
    # the track() that consumes them hands back both receipt handles.
    assert endpoint.queue_url is not None
    queue = endpoint.queue_url
    inference_id = f"early-{uuid.uuid4()}"
    output = f"{endpoint.output_path.rstrip('/')}/early/{inference_id}.out"
    # Received messages stay invisible past the test's waits: a copy left undeleted could not
    # come back and be deleted later as a duplicate.
    watcher = build_watcher(
        "sqs", endpoint, fetch=False, reconcile_after=60.0, visibility_timeout=120
    )
    assert isinstance(watcher, SqsNotifications)
    async with watcher:
        # A job that never finishes keeps the receivers going.
        blocker = watcher.track("blocker", f"{endpoint.output_path.rstrip('/')}/b/b.out", None)
        for _ in range(2):
            await aws_clients.sqs.send_message(
                QueueUrl=queue, MessageBody=completed_notification(inference_id, output)
            )
        await wait_until(lambda: watcher._tracker.statistics().held == 2, what="two held events")
        result = await watcher.track(inference_id, output, None).result(timeout=30)
        assert (result.inference_id, result.output_location, result.body) == (
            inference_id,
            output,
            None,
        )

        async def drained() -> bool:
            return await aws_clients.queue_depth(queue) == 0

        await wait_until(drained, what="both copies to be deleted")
        stats = watcher.statistics()
        assert (stats.resolved, stats.duplicates, stats.unknown, stats.pending) == (1, 1, 0, 1)
        assert watcher._tracker.statistics().held == 0
        assert not blocker.done()
    with pytest.raises(InvokerClosedError):
        await blocker


async def test_a_notification_whose_hold_ends_is_left_for_its_owner(
    endpoint: EndpointInfo, aws_clients: RawClients
) -> None:
    assert endpoint.queue_url is not None
    queue = endpoint.queue_url
    body = foreign_notification(f"other-{uuid.uuid4()}").decode()
    watcher = build_watcher("sqs", endpoint, hold_seconds=0.2, visibility_timeout=1)
    async with watcher:
        blocker = watcher.track("blocker", f"{endpoint.output_path.rstrip('/')}/b/b.out", None)
        await aws_clients.sqs.send_message(QueueUrl=queue, MessageBody=body)
        # Held (it might be for a job not tracked yet), then dropped when its hold ends: the
        # expiry loop wakes for a hold that ends before any job's deadline.
        await wait_until(lambda: watcher.statistics().unknown >= 1, what="the hold to end")
        assert not blocker.done()
    stats = watcher.statistics()
    assert (stats.resolved, stats.duplicates) == (0, 0)

    async def came_back() -> bool:
        response = await aws_clients.sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30
        )
        return any(message["Body"] == body for message in response.get("Messages", []))

    # Never deleted: it becomes visible again, for whoever owns it.
    await wait_until(came_back, timeout=30, what="the message to come back")
