"""One watcher for many endpoints: two invokers (endpoints) through one ``SqsNotifications`` and one
queue subscribed to both endpoints' topics, and who opens and closes a shared watcher."""

from __future__ import annotations

import asyncio

import pytest
from watcher_helpers import RawClients, build_watcher, wait_until

from aiosagemaker import AsyncInvoker, InvokerClosedError, S3Polling
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

JOBS = 20


async def _messages(clients: RawClients, queue_url: str) -> tuple[int, int]:
    """(visible, in flight: received and neither deleted nor handed back) in the queue."""
    response = await clients.sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    attributes = response["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


async def test_two_endpoints_one_queue_one_watcher(
    two_endpoints_one_queue: tuple[EndpointInfo, EndpointInfo], aws_clients: RawClients
) -> None:
    first, second = two_endpoints_one_queue
    assert first.queue_url is not None
    # A visibility timeout far past the test: a message held by anyone would still be in flight.
    watcher = build_watcher("sqs", first, visibility_timeout=600, reconcile_after=60.0)
    async with watcher:
        async with (
            AsyncInvoker(first.name, watcher=watcher) as a,
            AsyncInvoker(second.name, watcher=watcher) as b,
        ):
            jobs = []
            for n in range(JOBS):  # interleaved: the queue mixes both endpoints' notifications
                jobs.append((a, n, await a.submit({"endpoint": "a", "n": n})))
                jobs.append((b, n, await b.submit({"endpoint": "b", "n": n})))
            results = await asyncio.gather(*(job.result() for _, _, job in jobs))
        for (invoker, n, job), result in zip(jobs, results, strict=True):
            name = "a" if invoker is a else "b"
            assert result.body == f'{{"endpoint":"{name}","n":{n}}}'.encode()
            assert result.output_location == job.output_location
            assert job.output_location is not None
            expected = first if invoker is a else second
            assert job.output_location.startswith(expected.output_path)
        for invoker in (a, b):
            s = invoker.statistics()
            assert (s.accepted, s.resolved, s.failed) == (JOBS, JOBS, 0)
        # The invokers closed; the watcher, opened by its owner, did not close with them.
        assert watcher._runner is not None and not watcher._closed
        stats = watcher.statistics()
        # Every notification found its job: each resolved once, none refused, none unknown,
        # none settled by a look in S3 rather than its notification.
        assert (stats.resolved, stats.failed, stats.pending) == (2 * JOBS, 0, 0)
        assert (stats.duplicates, stats.unknown, stats.refused_notifications) == (0, 0, 0)
        assert watcher.reconciled == 0
        assert stats.sqs_receive_calls > 0
        # No message held past its job: each deleted once its result was recorded (the test
        # notification of the first endpoint too), none left in flight.
        await wait_until(
            lambda: _empty(aws_clients, first.queue_url), what="an empty queue", timeout=10
        )
    assert watcher._closed


async def _empty(clients: RawClients, queue_url: str | None) -> bool:
    assert queue_url is not None
    return await _messages(clients, queue_url) == (0, 0)


async def test_an_unopened_shared_watcher_closes_with_its_last_invoker(
    local_stack: LocalStack, quiet_endpoint: EndpointInfo
) -> None:
    slow = await local_stack.create_endpoint(model="sleep:100", notifications=False)  # 1 s
    watcher = S3Polling(interval=0.02)
    try:
        fast = AsyncInvoker(quiet_endpoint.name, watcher=watcher)
        async with fast:
            async with AsyncInvoker(slow.name, watcher=watcher) as slowly:
                assert watcher.shared
                pending = await slowly.submit(b"{}")
                await pending.accepted()
                job = await fast.submit(b'"fast"')
            # The slow invoker closed with its job pending: that job fails as closed, and is
            # forgotten by the watcher; the other invoker's job resolves through it all the same.
            with pytest.raises(InvokerClosedError):
                await pending.result()
            assert watcher._runner is not None and not watcher._closed
            assert (await job.result()).body == b'"fast"'
            assert watcher.statistics().pending == 0
        # The last invoker to leave closed the watcher the invokers had opened.
        assert watcher._closed
    finally:
        await local_stack.delete_endpoint(slow.name)
