"""Clients and polling helpers for the local stack's tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import boto3
import orjson
import pytest
from botocore.config import Config

from aiosagemaker.local import LocalStack

T = TypeVar("T")

# One attempt: the tests look at each answer exactly as the server sent it.
NO_RETRIES = {"total_max_attempts": 1}


def client_kwargs(stack: LocalStack, service: str) -> dict[str, Any]:
    info = stack.info
    url = {
        "sagemaker-runtime": info.sagemaker_runtime_url,
        "s3": info.s3_url,
        "sns": info.sns_url,
        "sqs": info.sqs_url,
        "sagemaker": info.sagemaker_url,
    }[service]
    return {
        "endpoint_url": url,
        "region_name": info.region,
        "aws_access_key_id": info.aws_access_key_id,
        "aws_secret_access_key": info.aws_secret_access_key,
    }


class Boto3Clients:
    def __init__(self, stack: LocalStack) -> None:
        self.runtime = boto3.client(
            "sagemaker-runtime",
            config=Config(retries=NO_RETRIES),
            **client_kwargs(stack, "sagemaker-runtime"),
        )
        self.s3 = boto3.client("s3", **client_kwargs(stack, "s3"))
        self.sqs = boto3.client("sqs", **client_kwargs(stack, "sqs"))
        self.bucket = stack.info.bucket

    def close(self) -> None:
        for client in (self.runtime, self.s3, self.sqs):
            client.close()

    def get(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        body: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def exists(self, uri: str) -> bool:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        listing = self.s3.list_objects_v2(Bucket=bucket, Prefix=key)
        return any(o["Key"] == key for o in listing.get("Contents", []))

    def count(self, prefix_uri: str) -> int:
        bucket, _, prefix = prefix_uri.removeprefix("s3://").partition("/")
        paginator = self.s3.get_paginator("list_objects_v2")
        return sum(p.get("KeyCount", 0) for p in paginator.paginate(Bucket=bucket, Prefix=prefix))

    def receive(self, queue_url: str) -> list[dict[str, Any]]:
        """Every message now in the queue (deleted), each the notification JSON (unwrapped)."""
        out: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not got:
                return out
            for message in got:
                out.append(orjson.loads(message["Body"]))
            self.sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )


def unwrap(message: dict[str, Any]) -> dict[str, Any]:
    """The notification inside an SNS envelope (or the raw one)."""
    if message.get("Type") == "Notification" and "Message" in message:
        inner: dict[str, Any] = orjson.loads(message["Message"])
        return inner
    return message


async def eventually(
    check: Callable[[], Awaitable[T | None]] | Callable[[], T | None],
    *,
    timeout: float = 30.0,
    what: str = "condition",
) -> T:
    """Poll ``check`` (sync or async) until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def notifications(
    aws: Boto3Clients, queue_url: str, count: int, *, skip_tests: bool = True, timeout: float = 30
) -> list[dict[str, Any]]:
    """Collect ``count`` notifications from the queue (test notifications skipped)."""
    got: list[dict[str, Any]] = []

    def check() -> bool:
        for raw in aws.receive(queue_url):
            message = unwrap(raw)
            if skip_tests and message.get("eventName") == "TestNotification":
                continue
            got.append(message)
        return len(got) >= count

    await eventually(check, timeout=timeout, what=f"{count} notifications")
    return got
