"""``aiosagemaker notifications setup|teardown`` against the local stack's control plane.

The local stack registers each endpoint with moto's SageMaker (its ``AsyncInferenceConfig`` names
the endpoint's topics), so the command reads the same config it would read from AWS. moto stores
queue policies without enforcing them: the policy document itself is checked.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import orjson
import pytest

from aiosagemaker import AsyncInvoker, InferenceFailedError, SqsNotifications
from aiosagemaker.cli import main
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")


class Aws:
    """boto3 clients to the stack, and snapshots of what setup may touch."""

    def __init__(self, stack: LocalStack) -> None:
        info = stack.info
        self.sqs = boto3.client("sqs", endpoint_url=info.sqs_url, region_name=info.region)
        self.sns = boto3.client("sns", endpoint_url=info.sns_url, region_name=info.region)
        self.sagemaker = boto3.client(
            "sagemaker", endpoint_url=info.sagemaker_url, region_name=info.region
        )

    def close(self) -> None:
        for client in (self.sqs, self.sns, self.sagemaker):
            client.close()

    def queue(self, name: str) -> dict[str, Any] | None:
        """The queue's URL, attributes and tags, or ``None`` if it does not exist."""
        try:
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except self.sqs.exceptions.QueueDoesNotExist:
            return None
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        tags = self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
        return {"url": url, "attributes": attributes["Attributes"], "tags": tags}

    def subscriptions(self, *topics: str) -> dict[str, dict[str, Any]]:
        """Every subscription of ``topics``, by ARN, with its attributes."""
        out = {}
        for topic in topics:
            for sub in self.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]:
                arn = sub["SubscriptionArn"]
                out[arn] = self.sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
        return out

    def snapshot(self, endpoint: EndpointInfo, *queues: str) -> dict[str, Any]:
        topics = _topics(endpoint)
        state = {name: self.queue(name) for name in (endpoint_queue(endpoint), *queues)}
        for queue in state.values():
            if queue is not None:  # counts and clocks, not configuration
                for key in [k for k in queue["attributes"] if k.startswith("Approximate")]:
                    del queue["attributes"][key]
        return {"queues": state, "subscriptions": self.subscriptions(*topics)}


def endpoint_queue(endpoint: EndpointInfo) -> str:
    """The queue the stack itself made for the endpoint (not setup's: it must survive)."""
    assert endpoint.queue_url is not None
    return endpoint.queue_url.rsplit("/", 1)[1]


def _topics(endpoint: EndpointInfo) -> list[str]:
    assert endpoint.success_topic_arn and endpoint.error_topic_arn
    return [endpoint.success_topic_arn, endpoint.error_topic_arn]


@pytest.fixture
def aws(local_stack: LocalStack) -> Iterator[Aws]:
    clients = Aws(local_stack)
    yield clients
    clients.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``aiosagemaker ARGS`` in this process: (status, stdout, stderr)."""
    capsys.readouterr()
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def _queue_url(stdout: str) -> str:
    match = re.search(r"^queue: (http\S+)$", stdout, re.MULTILINE)
    assert match, stdout
    return match.group(1)


async def _invoke(stack: LocalStack, endpoint: str, queue_url: str, *, fail: bool) -> None:
    """A success (and with ``fail`` first a failure) through the library's submit path,
    resolved only by notifications from the queue (reconciliation in S3 is put out of reach)."""
    watcher = SqsNotifications(queue_url=queue_url, reconcile_after=3600.0, wait_time_seconds=1)
    async with AsyncInvoker(endpoint, watcher=watcher) as invoker:
        if fail:  # the error topic's notification
            await stack.set_faults({"model_error": {"next": 1}}, endpoint=endpoint)
            failing = await invoker.submit(b'{"n": 1}', content_type="application/json")
            with pytest.raises(InferenceFailedError):
                await failing.result(timeout=30)
        job = await invoker.submit(b'{"n": 2}', content_type="application/json")
        assert (await job.result(timeout=30)).body == b'{"n": 2}'


def test_setup_wires_the_queue_to_the_endpoints_topics_and_teardown_undoes_it(
    stack_env: LocalStack, endpoint: EndpointInfo, aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    name = endpoint.name
    queue_name, dead_letter = f"aiosagemaker-{name}", f"aiosagemaker-{name}-dlq"
    success, error = _topics(endpoint)
    before = aws.snapshot(endpoint, queue_name, dead_letter)
    assert before["queues"][queue_name] is None and len(before["subscriptions"]) == 2

    # --dry-run lists the plan and changes nothing.
    status, out, _ = run(capsys, "notifications", "setup", name, "--dry-run")
    assert status == 0
    assert f"create queue {queue_name}" in out and f"subscribe {queue_name} to {success}" in out
    assert "nothing was changed" in out
    assert aws.snapshot(endpoint, queue_name, dead_letter) == before

    status, out, err = run(capsys, "notifications", "setup", name)
    assert status == 0, err
    queue_url = _queue_url(out)
    assert f"--watcher sqs --queue-url {queue_url}" in out
    assert f"SqsNotifications(queue_url={queue_url!r})" in out
    queue = aws.queue(queue_name)
    dlq = aws.queue(dead_letter)
    assert queue is not None and dlq is not None and queue["url"] == queue_url
    arn, dlq_arn = queue["attributes"]["QueueArn"], dlq["attributes"]["QueueArn"]
    for made, role in ((queue, "notifications"), (dlq, "dead-letter")):
        assert made["tags"] == {
            "aiosagemaker:managed-by": "notifications-setup",
            "aiosagemaker:endpoint": name,
            "aiosagemaker:role": role,
        }
    redrive = orjson.loads(queue["attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn and int(redrive["maxReceiveCount"]) == 5
    # The policy: the endpoint's two topics may send (through SNS), every other sender is denied.
    topics = sorted([success, error])
    assert orjson.loads(queue["attributes"]["Policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EndpointTopicsOnly",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topics}},
            },
            {
                "Sid": "DenyEveryOtherSender",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnNotEquals": {"aws:SourceArn": topics}},
            },
        ],
    }
    subscribed = aws.subscriptions(success, error)
    ours = {k: v for k, v in subscribed.items() if v["Endpoint"] == arn}
    assert sorted(s["TopicArn"] for s in ours.values()) == topics
    assert all(s["Protocol"] == "sqs" for s in ours.values())
    # The default: the SNS envelope (signed by SNS), not raw delivery.
    assert all(str(s["RawMessageDelivery"]).lower() == "false" for s in ours.values())

    # The queue gets the endpoint's real notifications: a failure and a success resolve from it.
    asyncio.run(_invoke(stack_env, name, queue_url, fail=True))

    # A second run changes nothing, and says so.
    settled = aws.snapshot(endpoint, queue_name, dead_letter)
    status, out, _ = run(capsys, "notifications", "setup", name)
    assert status == 0 and "nothing to change" in out and _queue_url(out) == queue_url
    assert aws.snapshot(endpoint, queue_name, dead_letter) == settled

    # Raw delivery is a subscription attribute: switched in place, and the queue still works.
    status, out, _ = run(capsys, "notifications", "setup", name, "--raw-delivery")
    assert status == 0 and out.count("to raw delivery") == 2
    assert all(
        str(s["RawMessageDelivery"]).lower() == "true"
        for s in aws.subscriptions(success, error).values()
        if s["Endpoint"] == arn
    )
    asyncio.run(_invoke(stack_env, name, queue_url, fail=False))

    # teardown --dry-run removes nothing; teardown removes what setup made, and nothing else.
    kept = aws.snapshot(endpoint, queue_name, dead_letter)
    status, out, _ = run(capsys, "notifications", "teardown", name, "--dry-run")
    assert status == 0 and f"delete queue {queue_name}" in out
    assert aws.snapshot(endpoint, queue_name, dead_letter) == kept
    status, out, _ = run(capsys, "notifications", "teardown", name)
    assert status == 0 and f"delete dead-letter queue {dead_letter}" in out
    after = aws.snapshot(endpoint, queue_name, dead_letter)
    # The stack's own queue and its subscriptions (someone else's) are as they were; the topics
    # are still there.
    assert after == before
    status, out, _ = run(capsys, "notifications", "teardown", name)
    assert status == 0 and "nothing to remove" in out


def test_errors_name_the_problem_and_exit_with_the_cli_statuses(
    endpoint: EndpointInfo,
    quiet_endpoint: EndpointInfo,
    aws: Aws,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    status, _, err = run(capsys, "notifications", "setup", missing)
    assert status == 3 and f"endpoint {missing!r} not found" in err
    assert err.count("\n") == 1

    # An endpoint without notification topics (the stack's --no-notifications endpoint).
    status, _, err = run(capsys, "notifications", "setup", quiet_endpoint.name)
    assert status == 3 and "has no notification topics" in err and "--watcher s3" in err

    # A real-time endpoint: no AsyncInferenceConfig at all.
    realtime = f"rt-{uuid.uuid4().hex[:12]}"
    aws.sagemaker.create_model(
        ModelName=realtime,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/test",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/test:1"},
    )
    aws.sagemaker.create_endpoint_config(
        EndpointConfigName=realtime,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": realtime, "InstanceType": "ml.m5.large"}
        ],
    )
    aws.sagemaker.create_endpoint(EndpointName=realtime, EndpointConfigName=realtime)
    try:
        status, _, err = run(capsys, "notifications", "setup", realtime)
        assert status == 3 and "not an asynchronous endpoint" in err
    finally:
        aws.sagemaker.delete_endpoint(EndpointName=realtime)
        aws.sagemaker.delete_endpoint_config(EndpointConfigName=realtime)
        aws.sagemaker.delete_model(ModelName=realtime)

    # A queue of that name that setup did not make is neither changed nor deleted (exit 2).
    theirs = endpoint_queue(endpoint)
    before = aws.snapshot(endpoint)
    for action in ("setup", "teardown"):
        status, _, err = run(capsys, "notifications", action, endpoint.name, "--queue-name", theirs)
        assert status == 2 and "was not made by `aiosagemaker notifications setup`" in err
    assert aws.snapshot(endpoint) == before
    assert "Policy" not in before["queues"][theirs]["attributes"]

    # No action, or no region: usage (2), configuration (3).
    assert run(capsys, "notifications")[0] == 2
    with monkeypatch.context() as env:
        env.delenv("AWS_DEFAULT_REGION")
        status, _, err = run(capsys, "notifications", "setup", endpoint.name)
        assert status == 3 and "NoRegionError" in err

    # A name SQS would refuse (or leave no room for the dead-letter queue's) is a usage error.
    for bad in ("bad name!", "x" * 77):
        status, _, err = run(capsys, "notifications", "setup", endpoint.name, "--queue-name", bad)
        assert status == 2 and "--queue-name" in err
