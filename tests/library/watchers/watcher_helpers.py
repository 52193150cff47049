"""Helpers shared by the watcher tests (a module of its own: conftest modules are not importable)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from aiosagemaker import S3Polling, SqsNotifications
from aiosagemaker._watchers._base import Watcher
from aiosagemaker.local import EndpointInfo

WATCHER_KINDS = ["s3-poll", "sqs"]


#: options that only one kind of watcher takes; build_watcher drops them for the other kind.
_S3_ONLY = {"interval", "max_heads", "name_outputs", "run_id"}
_SQS_ONLY = {
    "receivers",
    "wait_time_seconds",
    "visibility_timeout",
    "reconcile_after",
    "reconcile_every",
    "reconcile_batch",
    "receive_linger",
    "delete_linger",
    "delete_test_notifications",
}


def build_watcher(kind: str, endpoint: EndpointInfo, **options: Any) -> Watcher:
    """A watcher of ``kind`` for ``endpoint``, tuned for tests (short polls and waits); options
    meant for the other kind are ignored, so one test can tune both."""
    if kind == "s3-poll":
        s3_options = {"interval": 0.02, **options}
        return S3Polling(**{k: v for k, v in s3_options.items() if k not in _SQS_ONLY})
    assert endpoint.queue_url is not None
    sqs_options = {
        "wait_time_seconds": 1,
        "reconcile_after": 1.0,
        "reconcile_every": 0.1,
        "receive_linger": 0.05,
        "delete_linger": 0.05,
        **options,
    }
    return SqsNotifications(
        queue_url=endpoint.queue_url,
        **{k: v for k, v in sqs_options.items() if k not in _S3_ONLY},
    )


def completed_notification(inference_id: str, output_location: str) -> str:
    """A SageMaker success notification (raw delivery), as the endpoint would publish it."""
    return orjson.dumps(
        {
            "eventSource": "aws:sagemaker",
            "eventName": "InferenceResult",
            "invocationStatus": "Completed",
            "inferenceId": inference_id,
            "responseParameters": {"outputLocation": output_location},
        }
    ).decode()


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 30.0, what: str = ""
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition!r}")
        await asyncio.sleep(0.02)


class RawClients:
    """aiobotocore clients made from the environment (``stack_env``), botocore retries on."""

    def __init__(self, runtime: Any, s3: Any, sqs: Any) -> None:
        self.runtime = runtime
        self.s3 = s3
        self.sqs = sqs

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls) -> AsyncIterator[RawClients]:
        session = get_session()
        config = AioConfig(max_pool_connections=64)
        async with (
            session.create_client("sagemaker-runtime", config=config) as runtime,
            session.create_client("s3", config=config) as s3,
            session.create_client("sqs", config=config) as sqs,
        ):
            yield cls(runtime, s3, sqs)

    async def exists(self, uri: str) -> bool:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        try:
            await self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            return False
        return True

    async def queue_depth(self, queue_url: str) -> int:
        """Messages in the queue, visible or not (moto's counts are exact)."""
        response = await self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        attributes = response["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    async def invoke(self, endpoint: str, body: bytes) -> dict[str, Any]:
        """One raw InvokeEndpointAsync; returns InferenceId, OutputLocation, FailureLocation."""
        response: dict[str, Any] = await self.runtime.invoke_endpoint_async(
            EndpointName=endpoint, Body=body, ContentType="application/json"
        )
        return response
