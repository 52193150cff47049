"""One local async endpoint: its queue, its workers, and what a worker does with a request.

Accepting a request only enqueues it (the HTTP answer does not wait). ``instances x
max_concurrency`` workers take requests in order; each checks the request TTL (time from
acceptance to the start of processing), fetches an S3 input, runs the model under the invocation
timeout, writes the output (or the failure reason to the failure path) and publishes the
notification. Times are multiplied by the stack's ``time_scale``.

The queue outlives the workers: a restart (:meth:`LocalEndpoint.stop_workers`, then
:meth:`~LocalEndpoint.start_workers`) puts the requests it interrupted back in the queue, so they
run again, as the service's own queue keeps what it accepted. Notifications and outputs already
scheduled for later (the delay, reorder and late-output faults) are not the workers' and go out
regardless.

Output naming (our reading of the API reference, which says only that ``S3OutputPathExtension`` is
"appended to the Amazon S3 output path" and that without ``Filename`` "SageMaker generates a
filename based on the inference ID"): the output is ``<output_path>[/<ext>]/<Filename>`` or
``<output_path>[/<ext>]/<inference-id>.out``; the failure is
``<failure_path>[/<ext>]/<Filename or inference-id>-error.out`` (the service names failures
``<inference-id>-error.out``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from .._core._notifications import (
    endpoint_test_notification,
    failure_notification,
    success_notification,
)
from .._core._request import (
    DEFAULT_INVOCATION_TIMEOUT_SECONDS,
    DEFAULT_REQUEST_TTL_SECONDS,
    S3Uri,
    check_endpoint_name,
    parse_s3_uri,
)
from .._exceptions import InvalidRequestError
from ._faults import MODEL_FAULTS
from ._info import EndpointInfo
from ._stats import EndpointStats

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._core._request import AsyncRequest
    from ._aws import AwsClients, EndpointResources
    from ._faults import FaultPlan
    from ._models import ModelRunner

__all__ = ["EndpointConfig", "Job", "LocalEndpoint"]

logger = logging.getLogger("aiosagemaker")


@dataclass(frozen=True, kw_only=True, slots=True)
class EndpointConfig:
    """How one local endpoint behaves.

    :param model: a model spec (``echo``, ``sleep:<s>``, ``failing``, ``module:function``).
    :param instances: simulated instances; workers = ``instances * max_concurrency``.
    :param max_concurrency: concurrent invocations per instance.
    :param notifications: publish SNS notifications (and create topics and a queue).
    :param include_response: embed outputs up to 128 KB in success notifications.
    :param raw_delivery: SQS receives the notification JSON itself, not the SNS envelope.
    """

    name: str
    model: str = "echo"
    instances: int = 1
    max_concurrency: int = 4
    notifications: bool = True
    include_response: bool = False
    raw_delivery: bool = False

    def __post_init__(self) -> None:
        check_endpoint_name(self.name)
        if self.instances < 1 or self.max_concurrency < 1:
            raise ValueError("instances and max_concurrency must be >= 1")

    @classmethod
    def from_json(cls, data: dict[str, Any], **defaults: Any) -> EndpointConfig:
        known = {
            "name",
            "model",
            "instances",
            "max_concurrency",
            "notifications",
            "include_response",
            "raw_delivery",
        }
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown endpoint options {sorted(unknown)}")
        return cls(**{**defaults, **data})


@dataclass(slots=True)
class Job:
    """An accepted request waiting for (or under) processing."""

    request: AsyncRequest
    inference_id: str
    output: S3Uri
    failure: S3Uri
    accepted_at: float
    received_at: float


class LocalEndpoint:
    """An endpoint's queue and workers; ``run()`` serves until cancelled."""

    def __init__(
        self,
        config: EndpointConfig,
        *,
        model: ModelRunner,
        aws: AwsClients,
        resources: EndpointResources,
        output_path: S3Uri,
        failure_path: S3Uri,
        region: str,
        time_scale: float,
        faults: Callable[[str], FaultPlan | None],
    ) -> None:
        self.config = config
        self.name = config.name
        self.resources = resources
        self.output_path = output_path
        self.failure_path = failure_path
        self.stats = EndpointStats()
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self._model = model
        self._aws = aws
        self._region = region
        self._scale = time_scale
        self._faults = faults
        self._tg: asyncio.TaskGroup | None = None
        self._workers: set[asyncio.Task[None]] = set()
        # The model fault each inference id drew on its first run (only while a plan has model
        # faults): a request accepted twice, or re-run after a restart, ends the same way.
        self._model_fault_by_id: dict[str, str | None] = {}

    def __repr__(self) -> str:
        return (
            f"<LocalEndpoint {self.name!r} [queued {self.queue.qsize()}, "
            f"in progress {self.stats.in_progress}] model={self._model.spec!r}>"
        )

    def info(self) -> EndpointInfo:
        return EndpointInfo(
            name=self.name,
            output_path=str(self.output_path),
            failure_path=str(self.failure_path),
            success_topic_arn=self.resources.success_topic_arn,
            error_topic_arn=self.resources.error_topic_arn,
            queue_url=self.resources.queue_url,
        )

    def locations(self, request: AsyncRequest, inference_id: str) -> tuple[S3Uri, S3Uri]:
        """Where this request's output and failure objects go."""
        output, failure = self.output_path, self.failure_path
        if request.output_path_extension:
            ext = request.output_path_extension.strip("/")
            output, failure = output.join(ext), failure.join(ext)
        stem = request.filename or inference_id
        return (
            output.join(request.filename or f"{inference_id}.out"),
            failure.join(f"{stem}-error.out"),
        )

    def accept(self, request: AsyncRequest, inference_id: str, now: float) -> Job:
        """Enqueue a validated request; never blocks."""
        output, failure = self.locations(request, inference_id)
        job = Job(request, inference_id, output, failure, now, time.time())
        self.queue.put_nowait(job)
        self.stats.accepted += 1
        self.stats.accepted_by_id[inference_id] += 1
        return job

    async def run(self) -> None:
        """Serve the queue with ``instances * max_concurrency`` workers until cancelled."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            self.start_workers()
            # The group stays open while its workers stop and start again (a restart).
            await asyncio.get_running_loop().create_future()

    def start_workers(self) -> None:
        """Start the workers (after :meth:`stop_workers`; :meth:`run` starts them first)."""
        if self._tg is None or self._workers:
            return
        for _ in range(self.config.instances * self.config.max_concurrency):
            self._workers.add(self._tg.create_task(self._worker()))

    async def stop_workers(self) -> None:
        """Stop every worker at once, as a crash would; what they were running is queued again."""
        workers, self._workers = self._workers, set()
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.wait(workers)

    async def send_test_notifications(self) -> None:
        for topic in (self.resources.success_topic_arn, self.resources.error_topic_arn):
            if topic is not None:
                await self._aws.publish(
                    topic,
                    endpoint_test_notification(
                        region=self._region,
                        event_at=time.time(),
                        endpoint_name=self.name,
                        topic_arn=topic,
                        message="This is a test notification from the aiosagemaker local endpoint.",
                    ),
                )

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self.queue.get()
            self.stats.in_progress += 1
            try:
                await self._process(job, loop.time())
            except asyncio.CancelledError:
                # Stopped mid-run (a restart, or the endpoint deleted): the request is not lost.
                self.queue.put_nowait(job)
                self.stats.reruns += 1
                raise
            except Exception:
                # An S3 or SNS call to moto failed; count it and keep serving.
                logger.exception(
                    "local endpoint %s: processing %s failed", self.name, job.inference_id
                )
                self.stats.failed += 1
            finally:
                self.stats.in_progress -= 1

    async def _process(self, job: Job, started: float) -> None:
        request = job.request
        ttl = request.request_ttl or DEFAULT_REQUEST_TTL_SECONDS
        if started - job.accepted_at > ttl * self._scale:
            await self._fail(
                job,
                f"ClientError: The request expired before it was processed: it waited longer "
                f"than its RequestTTLSeconds ({ttl} seconds) in the queue.",
            )
            return
        if request.body is not None:
            body = request.body
        else:
            location = request.input_location or ""
            try:
                body = await self._aws.get(parse_s3_uri(location, field="InputLocation"))
            except (InvalidRequestError, ClientError, BotoCoreError) as exc:
                code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else "Error"
                await self._fail(
                    job,
                    f"ClientError: Failed to download the input data from {location} ({code}).",
                )
                return
        timeout = request.invocation_timeout or DEFAULT_INVOCATION_TIMEOUT_SECONDS
        deadline = asyncio.timeout(timeout * self._scale)
        model_fault = self._model_fault(job.inference_id)
        try:
            async with deadline:
                if model_fault == "model_error":
                    raise RuntimeError("injected model error")
                if model_fault == "model_hang":
                    await asyncio.get_running_loop().create_future()  # until the deadline
                output = await self._model(body, request.content_type)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                reason = (
                    f"ModelError: The invocation timed out: the model did not answer within "
                    f"InvocationTimeoutSeconds ({timeout} seconds)."
                )
            else:
                reason = (
                    f"ClientError: Received server error (500) from primary with message "
                    f'"{type(exc).__name__}: {exc}".'
                )
            await self._fail(job, reason)
            return
        content_type = _output_content_type(request)
        plan = self._faults(self.name)
        late = plan.fault("output_late") if plan is not None else None
        if late is not None and self._tg is not None:
            # The notification goes out first; the object it names appears a while later.
            self.stats.faults_injected["output_late"] += 1
            self._tg.create_task(self._put_later(late.seconds, job.output, output, content_type))
        else:
            await self._aws.put(job.output, output, content_type)
        topic = self.resources.success_topic_arn
        if topic is not None:
            message = success_notification(
                **self._notification_fields(job),
                output_location=str(job.output),
                output_content_type=content_type,
                output=output if self.config.include_response else None,
            )
            await self._publish(topic, message)
        self.stats.completed += 1

    def _model_fault(self, inference_id: str) -> str | None:
        """The model fault of ``inference_id``: drawn on its first run, the same on any other."""
        if inference_id in self._model_fault_by_id:
            return self._model_fault_by_id[inference_id]
        plan = self._faults(self.name)
        if plan is None or not any(name in plan.triggers for name in MODEL_FAULTS):
            return None
        fault = self._model_fault_by_id[inference_id] = plan.model_fault()
        if fault is not None:
            self.stats.faults_injected[fault] += 1
            self.stats.model_faults_by_id[inference_id] = fault
        return fault

    async def _put_later(self, delay: float, where: S3Uri, body: bytes, content_type: str) -> None:
        await asyncio.sleep(delay)
        try:
            await self._aws.put(where, body, content_type)
        except Exception:
            # Not the workers' task: an error here must not stop the endpoint.
            logger.exception("local endpoint %s: a late output write failed", self.name)

    async def _fail(self, job: Job, reason: str) -> None:
        await self._aws.put(job.failure, reason.encode("utf-8"), "text/plain; charset=utf-8")
        topic = self.resources.error_topic_arn
        if topic is not None:
            message = failure_notification(
                **self._notification_fields(job),
                failure_location=str(job.failure),
                reason=reason,
            )
            await self._publish(topic, message)
        self.stats.failed += 1

    def _notification_fields(self, job: Job) -> dict[str, Any]:
        """What success and failure notifications both say about the request."""
        request = job.request
        return {
            "region": self._region,
            "event_at": time.time(),
            "received_at": job.received_at,
            "endpoint_name": self.name,
            "inference_id": job.inference_id,
            "accept": request.accept,
            "content_type": request.content_type,
            "input_location": request.input_location,
        }

    async def _publish(self, topic: str, message: dict[str, Any]) -> None:
        copies = 1
        plan = self._faults(self.name)
        if plan is not None:
            if plan.fault("notification_drop") is not None:
                self.stats.notifications_dropped += 1
                self.stats.faults_injected["notification_drop"] += 1
                return
            if plan.fault("notification_duplicate") is not None:
                self.stats.notifications_duplicated += 1
                self.stats.faults_injected["notification_duplicate"] += 1
                copies = 2
            delay = plan.fault("notification_delay")
            if delay is not None and self._tg is not None:
                self.stats.notifications_delayed += 1
                self.stats.faults_injected["notification_delay"] += 1
                self._tg.create_task(self._publish_later(delay.seconds, topic, message, copies))
                return
            reorder = plan.fault("notification_reorder")
            if reorder is not None and self._tg is not None:
                # Held back a random while: later notifications overtake it.
                self.stats.faults_injected["notification_reorder"] += 1
                held = plan.rng.uniform(0.0, reorder.seconds)
                self._tg.create_task(self._publish_later(held, topic, message, copies))
                return
        await self._send(topic, message, copies)

    async def _publish_later(
        self, delay: float, topic: str, message: dict[str, Any], copies: int
    ) -> None:
        await asyncio.sleep(delay)
        try:
            await self._send(topic, message, copies)
        except Exception:
            # Not the workers' task: an error here must not stop the endpoint.
            logger.exception("local endpoint %s: a delayed notification failed", self.name)

    async def _send(self, topic: str, message: dict[str, Any], copies: int) -> None:
        for _ in range(copies):
            await self._aws.publish(topic, message)
            self.stats.notifications_published += 1


def _output_content_type(request: AsyncRequest) -> str:
    accept = request.accept
    if accept and "*" not in accept and "," not in accept:
        return accept
    return request.content_type or "application/octet-stream"
