"""The one fixture module for the local stack: a clean AWS environment for every test, the stack,
its environment for a test's AWS clients, and fresh endpoints.

The tree mirrors the package's three layers: ``library/`` (the client), ``application/`` (batch job
and CLI), ``local/`` (the local stack).

``local_stack`` is session-scoped and started synchronously (a child process), so it outlives
every test's event loop; its async control helpers open a fresh HTTP session per call and work
from any loop. ``endpoint`` gives each test a fresh endpoint (its own S3 prefix, topics and queue),
because moto's S3 listing sorts the whole bucket and its SQS slows as queues deepen.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aiosagemaker.local import EndpointInfo, LocalStack, open_local_stack

# The shared stack runs time 100x fast: a RequestTTLSeconds of 60 expires after 0.6 s.
LOCAL_STACK_TIME_SCALE = 0.01


@pytest.fixture(autouse=True)
def isolate_aws_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test sees the developer's AWS variables, config or credentials."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    missing = str(tmp_path_factory.getbasetemp() / "no-such-aws-file")
    monkeypatch.setenv("AWS_CONFIG_FILE", missing)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The local endpoint + moto (S3/SNS/SQS), one per test session, on free loopback ports."""
    with open_local_stack(
        model="echo",
        instances=2,
        max_concurrency=8,
        time_scale=LOCAL_STACK_TIME_SCALE,
        # tests/local/stack_models.py: module:function models for the local stack's tests.
        pythonpath=[str(Path(__file__).parent / "local")],
        # The one code model the tests create through the control route.
        extra_args=["--allow-model", "stack_models:upper"],
    ) as stack:
        yield stack


@pytest.fixture
async def endpoint(local_stack: LocalStack) -> AsyncIterator[EndpointInfo]:
    """A fresh echo endpoint on the shared stack, deleted (with its queue) after the test."""
    info = await local_stack.create_endpoint(f"t-{uuid.uuid4().hex[:20]}")
    yield info
    await local_stack.delete_endpoint(info.name)


@pytest.fixture
def stack_env(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    """Point every AWS client made in the test (and the commands it runs) at the local stack
    through the standard ``AWS_*`` variables."""
    for name, value in local_stack.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AIOSAGEMAKER_DEBUG", raising=False)
    yield local_stack


@pytest.fixture
async def quiet_endpoint(local_stack: LocalStack) -> AsyncIterator[EndpointInfo]:
    """A fresh echo endpoint without notifications, for S3 polling.

    Nothing would drain its queue, and moto's SQS (and so SNS publishing) slows as a queue deepens.
    """
    info = await local_stack.create_endpoint(f"q-{uuid.uuid4().hex[:20]}", notifications=False)
    yield info
    await local_stack.delete_endpoint(info.name)


@pytest.fixture
async def two_endpoints_one_queue(
    local_stack: LocalStack,
) -> AsyncIterator[tuple[EndpointInfo, EndpointInfo]]:
    """Two echo endpoints whose four topics all deliver to the first one's queue (the second's
    own queue gets its copies too, and is deleted with it): a service's one queue."""
    from aiobotocore.session import get_session

    first = await local_stack.create_endpoint()
    second = await local_stack.create_endpoint()
    try:
        env = local_stack.env()
        kwargs = {
            "region_name": env["AWS_DEFAULT_REGION"],
            "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        }
        session = get_session()
        async with (
            session.create_client("sns", endpoint_url=local_stack.info.sns_url, **kwargs) as sns,
            session.create_client("sqs", endpoint_url=local_stack.info.sqs_url, **kwargs) as sqs,
        ):
            assert first.queue_url is not None
            attributes = await sqs.get_queue_attributes(
                QueueUrl=first.queue_url, AttributeNames=["QueueArn"]
            )
            for topic in (second.success_topic_arn, second.error_topic_arn):
                await sns.subscribe(
                    TopicArn=topic, Protocol="sqs", Endpoint=attributes["Attributes"]["QueueArn"]
                )
        yield first, second
    finally:
        await local_stack.delete_endpoint(first.name)
        await local_stack.delete_endpoint(second.name)
