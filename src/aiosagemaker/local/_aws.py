"""The endpoint server's own S3, SNS, SQS and SageMaker (control plane) clients (aiobotocore, one
per service) to moto."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

if TYPE_CHECKING:
    from types import TracebackType

    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient

    from .._core._request import S3Uri

__all__ = ["AwsClients", "EndpointResources"]


@dataclass(frozen=True, slots=True)
class EndpointResources:
    success_topic_arn: str | None
    error_topic_arn: str | None
    queue_url: str | None


class AwsClients:
    """Open with ``async with``; every call goes to the moto server at ``url``."""

    def __init__(self, url: str, *, region: str, access_key: str, secret_key: str) -> None:
        self._url = url
        self._region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._stack = contextlib.AsyncExitStack()
        self._batchers: dict[str, _TopicBatcher] = {}
        self.s3: S3Client
        self.sns: SNSClient
        self.sqs: SQSClient
        #: the SageMaker control plane (CreateEndpoint ...): untyped, no stubs are installed
        self.sagemaker: Any

    async def __aenter__(self) -> AwsClients:
        session = get_session()
        # Enough connections for every worker of every endpoint to write at once.
        config = AioConfig(
            max_pool_connections=256, retries={"max_attempts": 5, "mode": "standard"}
        )
        kwargs: dict[str, Any] = {
            "endpoint_url": self._url,
            "region_name": self._region,
            "aws_access_key_id": self._access_key,
            "aws_secret_access_key": self._secret_key,
            "config": config,
        }
        async with contextlib.AsyncExitStack() as stack:
            self.s3 = await stack.enter_async_context(session.create_client("s3", **kwargs))
            self.sns = await stack.enter_async_context(session.create_client("sns", **kwargs))
            self.sqs = await stack.enter_async_context(session.create_client("sqs", **kwargs))
            self.sagemaker = await stack.enter_async_context(
                session.create_client("sagemaker", **kwargs)
            )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for batcher in self._batchers.values():
            await batcher.aclose()
        await self._stack.aclose()

    async def create_bucket(self, bucket: str) -> None:
        with contextlib.suppress(self.s3.exceptions.BucketAlreadyOwnedByYou):
            await self.s3.create_bucket(Bucket=bucket)

    async def create_endpoint_resources(
        self, name: str, *, notifications: bool, raw_delivery: bool
    ) -> EndpointResources:
        """Two topics and one queue subscribed to both, all named after the endpoint."""
        if not notifications:
            return EndpointResources(None, None, None)
        success = (await self.sns.create_topic(Name=f"{name}-success"))["TopicArn"]
        error = (await self.sns.create_topic(Name=f"{name}-error"))["TopicArn"]
        queue_url = (await self.sqs.create_queue(QueueName=f"{name}-notifications"))["QueueUrl"]
        attrs = await self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        queue_arn = attrs["Attributes"]["QueueArn"]
        sub_attrs = {"RawMessageDelivery": "true"} if raw_delivery else {}
        for topic in (success, error):
            await self.sns.subscribe(
                TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes=sub_attrs
            )
        return EndpointResources(success, error, queue_url)

    async def delete_endpoint_resources(self, resources: EndpointResources) -> None:
        if resources.queue_url is not None:
            await self.sqs.delete_queue(QueueUrl=resources.queue_url)
        for topic in (resources.success_topic_arn, resources.error_topic_arn):
            if topic is not None:
                await self.sns.delete_topic(TopicArn=topic)

    async def put(self, location: S3Uri, body: bytes, content_type: str) -> None:
        await self.s3.put_object(
            Bucket=location.bucket, Key=location.key, Body=body, ContentType=content_type
        )

    async def get(self, location: S3Uri) -> bytes:
        response = await self.s3.get_object(Bucket=location.bucket, Key=location.key)
        async with response["Body"] as stream:
            return await stream.read()

    async def publish(self, topic_arn: str, message: dict[str, Any]) -> None:
        """Publish one notification; concurrent ones to a topic share PublishBatch calls.

        moto's server spends most of a publish in per-request overhead: ten messages a call
        deliver ~4x as many notifications per second, and each subscriber still gets one message
        per notification in the SNS envelope, as from single publishes.
        """
        batcher = self._batchers.get(topic_arn)
        if batcher is None:
            batcher = self._batchers[topic_arn] = _TopicBatcher(self.sns, topic_arn)
        await batcher.publish(orjson.dumps(message).decode())


class _TopicBatcher:
    """Gathers the notifications published to one topic at about the same time into batches.

    The batches are sent by a task of the batcher's own, not by the first publisher: a publisher
    cancelled while it waits (a worker stopped by a restart) neither stops the others' sends nor
    fails them; what it handed over is still sent.
    """

    # How long the first publisher waits for others to join its batch.
    LINGER = 0.002
    # SNS PublishBatch takes at most ten entries.
    BATCH = 10

    def __init__(self, sns: SNSClient, topic_arn: str) -> None:
        self._sns = sns
        self._topic_arn = topic_arn
        self._waiting: list[tuple[str, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def publish(self, message: str) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((message, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        """Send batches until nobody waits."""
        try:
            await asyncio.sleep(self.LINGER)
            while self._waiting:
                batch = self._waiting[: self.BATCH]
                del self._waiting[: self.BATCH]
                await self._send(batch)
        finally:
            # Only when the stack stops: nothing will send what is left.
            for _, future in self._waiting:
                if not future.done():
                    future.set_exception(RuntimeError("publisher stopped"))
            self._waiting.clear()

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _send(self, batch: list[tuple[str, asyncio.Future[None]]]) -> None:
        try:
            response = await self._sns.publish_batch(
                TopicArn=self._topic_arn,
                PublishBatchRequestEntries=[
                    {"Id": str(i), "Message": message} for i, (message, _) in enumerate(batch)
                ],
            )
        except Exception as exc:  # noqa: BLE001 - each publisher gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        failed = {entry["Id"]: entry for entry in response.get("Failed", [])}
        for i, (_, future) in enumerate(batch):
            if future.done():
                continue
            entry = failed.get(str(i))
            if entry is None:
                future.set_result(None)
            else:
                future.set_exception(RuntimeError(f"publish failed: {entry.get('Code')}"))
