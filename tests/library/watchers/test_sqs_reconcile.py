"""SqsNotifications looks in S3 only for jobs whose notification is overdue: overtaken by a job
tracked after it, or with notifications stalled. A job merely queued behind others in the
endpoint (notifications flowing for earlier jobs) is left alone, however long it waits.

Against the local stack (real SQS and S3 over loopback); reconciliation's deadlines run on a
clock the test moves (the watcher's ``_clock``), and its background loop is kept asleep
(``reconcile_every`` of an hour), so each round is the test's own ``reconcile_once()``.
"""

from __future__ import annotations

import pytest
from watcher_helpers import RawClients, completed_notification, wait_until

from aiosagemaker import InferenceJob, SqsNotifications
from aiosagemaker.local import EndpointInfo

pytestmark = pytest.mark.usefixtures("stack_env")

AFTER = 10.0  # reconcile_after, on the test's clock


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_only_overtaken_or_stalled_jobs_are_looked_for(
    endpoint: EndpointInfo, aws_clients: RawClients
) -> None:
    assert endpoint.queue_url is not None
    bucket, _, prefix = endpoint.output_path.removeprefix("s3://").partition("/")
    outputs = {}
    for name in "CABD":  # every output is in S3 already: a HEAD would find each
        key = f"{prefix.rstrip('/')}/reconcile/{name}.out"
        await aws_clients.s3.put_object(Bucket=bucket, Key=key, Body=name.encode())
        outputs[name] = f"s3://{bucket}/{key}"
    clock = Clock()
    watcher = SqsNotifications(
        queue_url=endpoint.queue_url,
        wait_time_seconds=1,
        reconcile_after=AFTER,
        reconcile_every=3600,
    )
    watcher._clock = clock
    watcher._last_notified = clock()

    async def notify(name: str) -> None:
        await aws_clients.sqs.send_message(
            QueueUrl=endpoint.queue_url, MessageBody=completed_notification(name, outputs[name])
        )
        await wait_until(lambda: jobs[name].done(), what=f"{name}'s notification")

    async with watcher:
        # Tracked in this order: C, then A, then B.
        jobs: dict[str, InferenceJob] = {
            name: watcher.track(name, outputs[name], None) for name in "CAB"
        }
        clock.now += 5
        await notify("C")  # notifications flow, for a job tracked before A and B
        clock.now += 6  # A and B are past reconcile_after; the last notification 6 s ago
        assert await watcher.reconcile_once() == 0
        assert watcher.reconciled == 0 and not jobs["A"].done() and not jobs["B"].done()

        clock.now += 1
        await notify("B")  # B, tracked after A, has its notification: A was overtaken
        clock.now += 1
        assert await watcher.reconcile_once() == 1
        assert (await jobs["A"].result(timeout=10)).body == b"A"
        assert watcher.reconciled == 1

        # No notification for AFTER seconds: stalled, so a job past its wait is looked for.
        jobs["D"] = watcher.track("D", outputs["D"], None)
        clock.now += AFTER - 1
        assert await watcher.reconcile_once() == 0  # D has not waited reconcile_after yet
        clock.now += 2
        assert await watcher.reconcile_once() == 1
        assert (await jobs["D"].result(timeout=10)).body == b"D"
        assert watcher.reconciled == 2
        assert watcher.statistics().s3_head_calls == 2  # A's and D's: none for a queued job
