"""``AsyncInvoker``: submit requests inline-first under explicit limits and hand back jobs."""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from ._aws import AwsContext
from ._config import (
    DEFAULT_INVOCATION_TIMEOUT_SECONDS,
    DEFAULT_LIMITS,
    DEFAULT_REQUEST_TTL_SECONDS,
    DEFAULT_RETRY_POLICY,
    DEFAULT_TIMEOUTS,
    MAX_INLINE_BODY_BYTES,
    Limits,
    RetryPolicy,
    Timeouts,
)
from ._exceptions import (
    AdmissionTimeoutError,
    InvalidRequestError,
    InvokerClosedError,
    PayloadTooLargeError,
)
from ._limits import CapacityLimiter
from ._payload import Payload, encode_payload
from ._request import AsyncRequest, check_endpoint_name
from ._results import InferenceJob, InferenceResult, JobTimings
from ._transport import InvokeTransport

if TYPE_CHECKING:
    from aiobotocore.session import AioSession
    from types_aiobotocore_s3 import S3Client

    from ._staging import S3Staging
    from ._watchers._base import Watcher

__all__ = ["AsyncInvoker", "InvokerState", "InvokerStatistics"]

logger = logging.getLogger("aiosagemaker")

# A failure object lands shortly after the invocation timeout fires: wait this much past the
# job's TTL plus timeout before giving it up.
DEFAULT_RESULT_GRACE = 60.0
# A placeholder InputLocation that lets a staged request's other fields be validated before upload.
_STAGED_PLACEHOLDER = "s3://staging-placeholder/key"


class _Default(enum.Enum):
    WATCHER = "default watcher"


#: ``watcher=`` default: :class:`S3Polling` with its default settings.
DEFAULT_WATCHER: Final = _Default.WATCHER


class InvokerState(enum.Enum):
    #: built, not yet opened
    UNOPENED = "unopened"
    #: accepting submissions
    OPEN = "open"
    #: refusing submissions, finishing the HTTP calls in flight
    CLOSING = "closing"
    #: every resource released
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class InvokerStatistics:
    """A snapshot of an invoker's counters."""

    state: InvokerState
    #: HTTP calls to InvokeEndpointAsync under way
    in_flight: int
    #: jobs submitted and not yet resolved
    pending: int
    #: the concurrency limit now in force (lowered under throttling, AIMD)
    concurrency_limit: int
    submitted: int
    accepted: int
    rejected: int
    staged: int
    retried: int
    throttled: int
    #: requests retried after an ambiguous failure: the endpoint may have run them twice
    ambiguous_retries: int
    resolved: int
    failed: int


class AsyncInvoker:
    """Fans out ``InvokeEndpointAsync`` requests with inline payloads and tracks their results.

    .. code-block:: python

        async with AsyncInvoker("my-endpoint", limits=Limits(max_concurrent_invocations=64)) as inv:
            job = await inv.submit({"inputs": "hello"})
            result = await job  # InferenceResult

    Payloads up to :data:`MAX_INLINE_BODY_BYTES` go inline as ``Body``; larger ones are uploaded to
    ``staging`` and sent as ``InputLocation`` (without ``staging`` they raise
    :class:`PayloadTooLargeError` before anything is sent).

    Results are exactly once; execution is at least once: AWS does not deduplicate by inference id,
    so a retry after an ambiguous failure (no answer to a request that was sent) can run the
    inference twice. ``RetryPolicy(retry_ambiguous=False)`` turns those retries off;
    ``statistics().ambiguous_retries`` counts them.

    :param endpoint_name: the SageMaker async endpoint.
    :param limits: HTTP calls in flight, jobs pending, admission timeout.
    :param staging: where payloads over the inline limit are uploaded.
    :param watcher: what resolves results: :class:`S3Polling` (the default),
        :class:`SqsNotifications`, or ``None`` for submit-only use. The invoker opens and closes it.
    :param endpoint_url: the runtime endpoint (else ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, then
        botocore's resolution for the region).
    :param session: an aiobotocore ``AioSession`` (credentials, profile, config).
    :param result_grace: seconds past a job's TTL plus invocation timeout before it expires.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        endpoint_name: str,
        *,
        limits: Limits = DEFAULT_LIMITS,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        staging: S3Staging | None = None,
        watcher: Watcher | None | _Default = DEFAULT_WATCHER,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        session: AioSession | None = None,
        profile: str | None = None,
        result_grace: float = DEFAULT_RESULT_GRACE,
    ) -> None:
        self.endpoint_name = check_endpoint_name(endpoint_name)
        self.limits = limits
        self.timeouts = timeouts
        self.retry = retry
        self.staging = staging
        if isinstance(watcher, _Default):
            from ._watchers import S3Polling

            self.watcher: Watcher | None = S3Polling()
        else:
            self.watcher = watcher
        self._region_name = region_name
        self._endpoint_url = endpoint_url
        self._aws = AwsContext(session, region_name=region_name, profile=profile)
        self._result_grace = result_grace
        self._state = InvokerState.UNOPENED
        self._transport: InvokeTransport | None = None
        self._s3: S3Client | None = None
        self._pending = CapacityLimiter(limits.max_pending)
        self._outstanding: set[asyncio.Future[InferenceResult]] = set()
        self._sending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._cleanup: asyncio.Queue[str | None] = asyncio.Queue()
        self._cleanup_task: asyncio.Task[None] | None = None
        self._counts = {"submitted": 0, "accepted": 0, "rejected": 0, "resolved": 0, "failed": 0}

    # --- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncInvoker:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Resolve the endpoint and credentials, open the pool, start the watcher."""
        if self._state is not InvokerState.UNOPENED:
            raise RuntimeError(f"cannot open an invoker that is {self._state.value}")
        try:
            runtime = await self._aws.client("sagemaker-runtime", endpoint_url=self._endpoint_url)
            region = runtime.meta.region_name
            self._transport = InvokeTransport(
                endpoint_name=self.endpoint_name,
                endpoint_url=runtime.meta.endpoint_url,
                region=region,
                credentials=await self._aws.credentials(),
                limits=self.limits,
                timeouts=self.timeouts,
                retry=self.retry,
            )
            await self._transport.open()
            if self.staging is not None:
                self._s3 = await self._aws.client(
                    "s3", pool=min(64, self.limits.max_concurrent_invocations)
                )
            if self.watcher is not None:
                await self.watcher.open(self._aws)
            self._cleanup_task = asyncio.create_task(
                self._cleanup_loop(), name="aiosagemaker-cleanup"
            )
        except BaseException:
            await self._release()
            raise
        self._state = InvokerState.OPEN

    async def drain(self) -> None:
        """Wait until every job submitted so far has resolved (or failed)."""
        await self._idle.wait()
        while self._outstanding:
            await asyncio.wait(set(self._outstanding))

    async def aclose(self) -> None:
        """Stop submissions, finish the HTTP calls in flight, stop the watcher.

        Jobs still unresolved fail with :class:`InvokerClosedError` carrying their locations.
        """
        if self._state in (InvokerState.CLOSING, InvokerState.CLOSED):
            return
        self._state = InvokerState.CLOSING
        await self._idle.wait()
        await self._release()

    async def _release(self) -> None:
        if self.watcher is not None:
            await self.watcher.aclose()
        if self._cleanup_task is not None:
            await self._cleanup.put(None)
            await self._cleanup_task
            self._cleanup_task = None
        if self._transport is not None:
            await self._transport.aclose()
        await self._aws.aclose()
        self._state = InvokerState.CLOSED

    # --- submitting ------------------------------------------------------------------------------

    async def submit(
        self,
        payload: Payload = None,
        *,
        input_location: str | None = None,
        content_type: str | None = None,
        accept: str | None = None,
        inference_id: str | None = None,
        custom_attributes: str | None = None,
        request_ttl: int | None = None,
        invocation_timeout: int | None = None,
        output_path_extension: str | None = None,
        filename: str | None = None,
    ) -> InferenceJob:
        """Send one request; return once the endpoint accepted it (HTTP 202).

        :param payload: bytes, str, a file-like object or a JSON-serializable value (sent as
            ``application/json`` unless ``content_type`` says otherwise).
        :param input_location: an ``s3://`` or ``https://`` input already in place, sent as
            ``InputLocation`` instead of a payload (giving both is an error, as AWS says).
        :param inference_id: fixed for every retry of this request (a uuid4 when ``None``).
        :raises InvalidRequestError: a field is outside the API's limits (nothing was sent).
        :raises PayloadTooLargeError: over 128,000 bytes and no ``staging``.
        :raises AdmissionTimeoutError: no room under ``max_pending`` in time.
        :raises InvocationError: the endpoint refused the request (``ThrottledError`` when
            throttling outlasted the retries).
        :raises InvokerClosedError: the invoker is closing.
        """
        submitted = time.time()
        self._check_open()
        inference_id = inference_id if inference_id is not None else str(uuid.uuid4())
        if input_location is not None:
            if payload is not None:
                raise InvalidRequestError(
                    "give a payload (sent as Body) or input_location, not both",
                    field="InputLocation",
                    inference_id=inference_id,
                )
            body = b""
        else:
            body, content_type = encode_payload(payload, content_type)
        staged = len(body) > MAX_INLINE_BODY_BYTES
        if staged and self.staging is None:
            raise PayloadTooLargeError(len(body), MAX_INLINE_BODY_BYTES, inference_id=inference_id)
        if self.watcher is not None and output_path_extension is None and filename is None:
            placement = self.watcher.placement()
            output_path_extension = placement.get("output_path_extension")
            filename = placement.get("filename")
        request = AsyncRequest(
            body=None if staged or input_location is not None else body,
            input_location=_STAGED_PLACEHOLDER if staged else input_location,
            content_type=content_type,
            accept=accept,
            custom_attributes=custom_attributes,
            inference_id=inference_id,
            output_path_extension=output_path_extension,
            filename=filename,
            request_ttl=request_ttl,
            invocation_timeout=invocation_timeout,
        ).validate()
        await self._admit(inference_id)
        self._counts["submitted"] += 1
        self._sending += 1
        self._idle.clear()
        # Only inputs we staged ourselves are ever cleaned up, never a caller's input_location.
        staged_location: str | None = None
        try:
            if staged:
                staged_location = await self._stage(body, content_type, inference_id)
                request = replace(request, input_location=staged_location)
            assert self._transport is not None
            accepted = await self._transport.invoke(request)
        except BaseException:
            self._counts["rejected"] += 1
            self._pending.release()
            self._clean_up_staged(staged_location)
            raise
        finally:
            self._sending -= 1
            if self._sending == 0:
                self._idle.set()
        self._counts["accepted"] += 1
        now = time.monotonic()
        ttl = request_ttl if request_ttl is not None else DEFAULT_REQUEST_TTL_SECONDS
        timeout = (
            invocation_timeout
            if invocation_timeout is not None
            else DEFAULT_INVOCATION_TIMEOUT_SECONDS
        )
        job = InferenceJob(
            inference_id=accepted.inference_id,
            output_location=accepted.output_location,
            failure_location=accepted.failure_location,
            inline=request.body is not None,
            input_location=request.input_location,
            deadline=now + ttl + timeout + self._result_grace,
            attempts=accepted.attempts,
            timings=JobTimings(submitted=submitted, accepted=time.time()),
        )
        if self.watcher is None:
            self._pending.release()
            return job
        self.watcher.track(
            job.inference_id,
            job.output_location,
            job.failure_location,
            deadline=job.deadline,
            job=job,
        )
        future = job._future
        assert future is not None
        self._outstanding.add(future)
        future.add_done_callback(lambda f: self._on_resolved(f, staged_location))
        return job

    def _check_open(self) -> None:
        if self._state is not InvokerState.OPEN:
            raise InvokerClosedError(
                f"the invoker is {self._state.value}: open it with `async with` first"
                if self._state is InvokerState.UNOPENED
                else f"the invoker is {self._state.value}"
            )

    async def _admit(self, inference_id: str) -> None:
        try:
            async with asyncio.timeout(self.limits.admission_timeout):
                await self._pending.acquire()
        except TimeoutError:
            raise AdmissionTimeoutError(
                f"no room under max_pending={self.limits.max_pending} within "
                f"{self.limits.admission_timeout} s",
                inference_id=inference_id,
            ) from None
        if self._state is not InvokerState.OPEN:
            self._pending.release()
            self._check_open()

    async def _stage(self, body: bytes, content_type: str | None, inference_id: str) -> str:
        assert self.staging is not None and self._s3 is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.staging.upload(self._s3, body, content_type, inference_id)
            except Exception:
                if attempt >= self.retry.max_attempts:
                    raise
                await asyncio.sleep(self.retry.backoff(attempt, random.random()))

    def _clean_up_staged(self, staged_location: str | None) -> None:
        if staged_location is not None and self.staging is not None and self.staging.cleanup:
            self._cleanup.put_nowait(staged_location)

    def _on_resolved(
        self, future: asyncio.Future[InferenceResult], staged_location: str | None
    ) -> None:
        self._outstanding.discard(future)
        self._pending.release()
        if future.cancelled() or future.exception() is not None:
            self._counts["failed"] += 1
        else:
            self._counts["resolved"] += 1
        self._clean_up_staged(staged_location)

    async def _cleanup_loop(self) -> None:
        while (location := await self._cleanup.get()) is not None:
            if self.staging is not None and self._s3 is not None:
                await self.staging.delete(self._s3, location)

    # --- results -------------------------------------------------------------------------------

    async def as_completed(
        self, jobs: Iterable[InferenceJob], *, return_exceptions: bool = False
    ) -> AsyncIterator[InferenceResult | BaseException]:
        """Yield the jobs' results as they complete.

        :param return_exceptions: yield a failed job's exception instead of raising it.
        """
        waiting = {asyncio.ensure_future(job.result()): job for job in jobs}
        try:
            while waiting:
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    waiting.pop(task)
                    error = task.exception()
                    if error is None:
                        yield task.result()
                    elif return_exceptions:
                        yield error
                    else:
                        raise error
        finally:
            for task in waiting:
                task.cancel()

    async def map(
        self,
        payloads: Iterable[Payload] | AsyncIterable[Payload],
        *,
        ordered: bool = True,
        return_exceptions: bool = False,
        **fields: Any,
    ) -> AsyncIterator[InferenceResult | BaseException]:
        """Submit every payload and yield results, holding at most ``max_pending`` jobs at once.

        :param ordered: yield in input order (else in completion order).
        :param return_exceptions: yield each failure (a rejected submission included) in place of
            its result instead of raising it.
        :param fields: request fields applied to every submission (``content_type``, ...).
        """
        # One slot per input between its submission and the moment it is yielded: memory stays
        # bounded by max_pending even when the caller reads slowly or the head of the line is slow.
        window = asyncio.Semaphore(self.limits.max_pending)
        ready: asyncio.Queue[asyncio.Future[InferenceResult] | None] = asyncio.Queue()
        produced = 0
        issued: set[asyncio.Future[InferenceResult]] = set()

        async def produce() -> None:
            nonlocal produced
            try:
                async for payload in _aiter(payloads):
                    await window.acquire()
                    try:
                        job = await self.submit(payload, **fields)
                        future: asyncio.Future[InferenceResult] = asyncio.ensure_future(
                            job.result()
                        )
                    except Exception as exc:  # noqa: BLE001 - reported in the input's place
                        future = asyncio.get_running_loop().create_future()
                        future.set_exception(exc)
                    produced += 1
                    issued.add(future)
                    if ordered:
                        ready.put_nowait(future)
                    else:
                        future.add_done_callback(ready.put_nowait)
            finally:
                ready.put_nowait(None)

        producer = asyncio.create_task(produce(), name="aiosagemaker-map")
        consumed = 0
        finished = False
        try:
            while not finished or consumed < produced:
                item = await ready.get()
                if item is None:
                    finished = True
                    continue
                consumed += 1
                try:
                    yield await _outcome(item, return_exceptions)
                finally:
                    issued.discard(item)
                    window.release()
            await producer
        finally:
            producer.cancel()
            for future in issued:
                future.cancel()
            await asyncio.gather(producer, return_exceptions=True)

    # --- introspection ---------------------------------------------------------------------------

    @property
    def state(self) -> InvokerState:
        return self._state

    def statistics(self) -> InvokerStatistics:
        transport = self._transport
        counters = transport.counters if transport is not None else None
        return InvokerStatistics(
            state=self._state,
            in_flight=counters.in_flight if counters else 0,
            pending=self._pending.borrowed,
            concurrency_limit=transport.slots.total
            if transport
            else self.limits.max_concurrent_invocations,
            submitted=self._counts["submitted"],
            accepted=self._counts["accepted"],
            rejected=self._counts["rejected"],
            staged=self.staging.staged if self.staging else 0,
            retried=counters.retries if counters else 0,
            throttled=counters.throttled if counters else 0,
            ambiguous_retries=counters.ambiguous_retries if counters else 0,
            resolved=self._counts["resolved"],
            failed=self._counts["failed"],
        )

    def __repr__(self) -> str:
        s = self.statistics()
        watcher = self.watcher.kind if self.watcher is not None else "none"
        return (
            f"<AsyncInvoker {self.endpoint_name} {s.state.value} [in-flight {s.in_flight}, "
            f"pending {s.pending}, resolved {s.resolved}, failed {s.failed} | watcher={watcher}]>"
        )


async def _outcome(
    future: asyncio.Future[InferenceResult], return_exceptions: bool
) -> InferenceResult | BaseException:
    if return_exceptions:
        try:
            return await future
        except Exception as exc:  # noqa: BLE001 - yielded, as asked
            return exc
    return await future


async def _aiter(items: Iterable[Payload] | AsyncIterable[Payload]) -> AsyncIterator[Payload]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
