"""``AsyncInvoker``: admit requests under explicit limits, send them in the background, hand back jobs.

One request's way, one limit per concern whatever the entry point (``submit``, ``map``)::

    submit(payload): validate, encode -> admission (max_pending) -> room in the send queue
        (2 x max_concurrent_invocations) -> returns the InferenceJob
    background: [stage to S3] -> invocation slot (max_concurrent_invocations, AIMD) -> 202
        -> job.accepted() -> watcher.track() -> job.result()

A pending slot is released when the job's outcome is known (result, failure or refusal), a send-queue
slot when its HTTP call returned, an invocation slot when one HTTP attempt returned.

The background half runs on long-lived sender workers in the invoker's task group, not on a task
per job: ``submit`` appends the admitted job to a queue that up to ``max_concurrent_invocations``
workers drain (each takes an invocation slot inside the transport, whose limit AIMD adapts), so a
job's hook, upload and HTTP call run concurrently with the others' up to that limit. Workers start
on demand and end with the invoker. A task, coroutine and frame per job live as long as its send:
long enough for the cyclic GC to promote them, which made its collections (full ones included)
far more frequent.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import enum
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from ._aws import AwsContext
from ._config import (
    DEFAULT_LIMITS,
    DEFAULT_RESULT_GRACE,
    DEFAULT_RETRY_POLICY,
    DEFAULT_TIMEOUTS,
    MAX_INLINE_BODY_BYTES,
    Limits,
    RetryPolicy,
    Timeouts,
)
from ._core._request import AsyncRequest, check_endpoint_name
from ._exceptions import (
    AdmissionTimeoutError,
    AsyncInferenceError,
    InvalidRequestError,
    InvocationError,
    InvokerClosedError,
    PayloadTooLargeError,
)
from ._limits import CapacityLimiter, LimiterStatistics
from ._payload import Payload, encode_payload
from ._results import (
    CALLBACK_CONTEXT,
    Accepted,
    InferenceJob,
    InferenceResult,
    job_deadline,
)
from ._telemetry import Readings, open_telemetry
from ._transport import InvokeTransport, TransportCounters

if TYPE_CHECKING:
    from aiobotocore.session import AioSession
    from botocore.config import Config
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider
    from types_aiobotocore_s3 import S3Client

    from ._staging import S3Staging
    from ._telemetry import Telemetry
    from ._watchers._base import Watcher

__all__ = ["AsyncInvoker", "InvokerState", "InvokerStatistics"]


# A placeholder InputLocation that lets a staged request's other fields be validated before upload.
_STAGED_PLACEHOLDER = "s3://staging-placeholder/key"

# One admitted request waiting for a sender: its job, request, payload to stage, before_send hook.
_Send = tuple[InferenceJob, AsyncRequest, bytes | None, Callable[[], Awaitable[object]] | None]


#: Inference ids made ahead (random UUIDs), taken from the end.
_IDS: list[str] = []
#: Ids made at once: one read of random bytes (and one hex conversion) for all of them.
_IDS_AT_ONCE = 64
#: The variant digit of a random UUID for each hex digit of random bits (RFC 9562: 10xx).
_VARIANT = {f"{d:x}": f"{8 | (d & 3):x}" for d in range(16)}


def new_inference_id() -> str:
    """A random inference id: a version 4 UUID, as ``str(uuid.uuid4())`` makes one (122 bits of
    ``os.urandom``), made :data:`_IDS_AT_ONCE` at a time rather than one system call and one
    ``UUID`` object each."""
    while True:
        try:
            return _IDS.pop()  # atomic: invokers in other threads may take ids too
        except IndexError:
            digits = os.urandom(16 * _IDS_AT_ONCE).hex()
            _IDS.extend(
                f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
                for h in (digits[i : i + 32] for i in range(0, len(digits), 32))
            )


# A child process (fork) must not hand out the ids its parent made ahead.
os.register_at_fork(after_in_child=_IDS.clear)


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
    #: the in-flight limit now in force (lowered under throttling by AIMD)
    concurrency_limit: int
    #: the admission limiter (``max_pending``): total, borrowed, waiting
    admission: LimiterStatistics
    #: the in-flight limiter (``max_concurrent_invocations``, adapted by AIMD)
    invocations: LimiterStatistics
    #: encoded requests admitted and not yet answered (bounded at twice the in-flight limit)
    send_queue: LimiterStatistics
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
            jobs = [await inv.submit({"inputs": text}) for text in texts]  # sent concurrently
            results = [await job for job in jobs]  # InferenceResult

    :meth:`submit` returns as soon as the job is admitted; the request goes out in the background,
    up to ``max_concurrent_invocations`` at once, so a loop of awaited submissions fans out.
    ``await job.accepted()`` gives the 202, ``await job.result()`` the output; an invocation error
    is raised by both. :meth:`invoke` submits and waits for the 202 in one call.

    Payloads up to :data:`MAX_INLINE_BODY_BYTES` go inline as ``Body``; larger ones are uploaded to
    ``staging`` and sent as ``InputLocation`` (without ``staging`` they raise
    :class:`PayloadTooLargeError` before anything is sent).

    One limit per concern, whatever the entry point: ``max_pending`` admits jobs (a slot from
    submission until the outcome is known), ``max_concurrent_invocations`` bounds HTTP calls in
    flight (adapted to throttling unless ``Limits(adaptive=False)``). Encoded requests waiting to be
    sent are bounded by twice the in-flight limit (``submit`` waits for room), so memory does not
    grow with ``max_pending`` times the payload size.

    Results are exactly once; execution is at least once: AWS does not deduplicate by inference id,
    so a retry after an ambiguous failure (no answer to a request that was sent) can run the
    inference twice. ``RetryPolicy(retry_ambiguous=False)`` turns those retries off;
    ``statistics().ambiguous_retries`` counts them.

    :param endpoint_name: the SageMaker async endpoint.
    :param limits: HTTP calls in flight, jobs pending, admission timeout, AIMD on or off.
    :param staging: where payloads over the inline limit are uploaded.
    :param watcher: what resolves results: :class:`S3Polling` (the default),
        :class:`SqsNotifications`, or ``None`` for submit-only use. A watcher not open yet is
        opened by the invoker and closed with it (by the last of the invokers sharing it); one
        its owner opened already (``async with watcher:``) is used and left open, so that one
        watcher, and one queue, serves several invokers (endpoints).
    :param endpoint_url: the runtime endpoint (else ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, then
        botocore's resolution for the region).
    :param session: an aiobotocore ``AioSession`` (credentials, profile, config).
    :param config: a botocore ``Config`` (or aiobotocore ``AioConfig``) for every call the invoker
        and its watcher make, the invokes included: ``proxies``, ``proxies_config``,
        ``client_cert``, ``connect_timeout``, ``read_timeout``, ``user_agent_extra``,
        ``max_pool_connections`` (S3 and SQS clients). Its ``retries`` are ignored: ``retry`` is
        the only retry layer. ``HTTP(S)_PROXY``/``NO_PROXY`` and ``AWS_CA_BUNDLE`` apply as they
        do to botocore.
    :param verify: as botocore's: ``False`` to skip certificate verification, or a CA bundle path.
    :param result_grace: seconds past a job's TTL plus invocation timeout before it expires.
    :param tracer_provider: an OpenTelemetry ``TracerProvider`` for the invoker's spans (a
        CLIENT span per HTTP attempt, a child of the caller's context at ``submit()``; a short
        span when a result is collected, linked to it). ``None``: the global one, if the
        application has set it by the time the invoker opens; else no spans, at no cost.
        Needs the ``otel`` extra (``opentelemetry-api``).
    :param meter_provider: an OpenTelemetry ``MeterProvider`` for the invoker's metrics (counters
        that read :meth:`statistics`, latency histograms, gauges of what is in flight and
        pending). ``None``: the global one, if set by the time the invoker opens; else none.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``submit`` returns once admitted and sends in the background.
    .. versionchanged:: 0.2 ``tracer_provider``, ``meter_provider``; a watcher can be shared.
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
        config: Config | None = None,
        verify: bool | str | None = None,
        result_grace: float = DEFAULT_RESULT_GRACE,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
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
        self._endpoint_url = endpoint_url
        self._aws = AwsContext(
            session, region_name=region_name, profile=profile, config=config, verify=verify
        )
        self._result_grace = result_grace
        self._state = InvokerState.UNOPENED
        self._transport: InvokeTransport | None = None
        self._s3: S3Client | None = None
        # Admission: a slot from submit() until the job's outcome is known.
        self._pending = CapacityLimiter(limits.max_pending)
        # Encoded requests not yet answered: bounds payload memory whatever max_pending is.
        self._unsent = CapacityLimiter(2 * limits.max_concurrent_invocations)
        # Each job's outcome future (its result, or its 202 in submit-only mode), until done.
        self._outstanding: dict[asyncio.Future[Any], InferenceJob] = {}
        # The outcomes of jobs whose input we staged (deleted once the outcome is known).
        self._staged: set[asyncio.Future[Any]] = set()
        self._on_outcome_callback = self._on_outcome
        # Admitted requests no sender has taken yet (their send-queue slots are held).
        self._queue: collections.deque[_Send] = collections.deque()
        # Senders waiting for a request, each on its own future; and how many senders run.
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._senders = 0
        # As many senders as HTTP calls may be in flight: AIMD lowers the transport's limit below
        # this, and the senders beyond it wait for a slot (their requests staged and ready).
        self._max_senders = limits.max_concurrent_invocations
        # The senders' context: the runner's (copied from open()'s caller), not a submitter's.
        self._sender_context: contextvars.Context | None = None
        # Admitted requests whose HTTP call has not returned (queued or with a sender).
        self._sending = 0
        self._sends_idle = asyncio.Event()
        self._sends_idle.set()
        self._closed = asyncio.Event()
        self._task_group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._cleanup: asyncio.Queue[str | None] = asyncio.Queue()
        self._submitted = 0
        self._accepted = 0
        self._rejected = 0
        self._resolved = 0
        self._failed = 0
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        # OpenTelemetry, when on (see _telemetry): None costs the hot path an `is None` test.
        self._telemetry: Telemetry | None = None
        # Whether this invoker uses its watcher (attached at open, detached at close).
        self._attached = False

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
            self._transport = InvokeTransport(
                endpoint_name=self.endpoint_name,
                endpoint_url=runtime.meta.endpoint_url,
                region=runtime.meta.region_name,
                credentials=await self._aws.credentials(),
                limits=self.limits,
                timeouts=self.timeouts,
                retry=self.retry,
                http=self._aws.http,
            )
            await self._transport.open()
            self._telemetry = open_telemetry(
                self.endpoint_name,
                tracer_provider=self._tracer_provider,
                meter_provider=self._meter_provider,
            )
            if self._telemetry is not None:
                self._transport.tracing = self._telemetry.tracing
                self._telemetry.watch(id(self), self._readings)
            if self.staging is not None:
                self._s3 = await self._aws.client(
                    "s3", pool=min(64, self.limits.max_concurrent_invocations)
                )
            if self.watcher is not None:
                await self.watcher._attach(self._aws, self.endpoint_name)
                self._attached = True
            started = asyncio.Event()
            self._runner = asyncio.create_task(self._run(started), name="aiosagemaker-invoker")
            await started.wait()
        except BaseException:
            await self._release()
            raise
        self._state = InvokerState.OPEN

    async def _run(self, started: asyncio.Event) -> None:
        # Every background task of the invoker (senders, staged-input clean-up) lives in this group.
        try:
            async with asyncio.TaskGroup() as task_group:
                self._task_group = task_group
                self._sender_context = contextvars.copy_context()
                task_group.create_task(self._cleanup_loop())
                started.set()
                await self._stop.wait()
                # Idle senders end (busy ones end once the queue is empty).
                self._wake_sender(everyone=True)
                await self._cleanup.put(None)
        finally:
            # Cancelled (an interrupted close): what no sender took was never sent.
            self._fail_queued()

    async def drain(self) -> None:
        """Wait until every job submitted so far has its outcome (result, failure or refusal)."""
        while self._outstanding:
            await asyncio.wait(set(self._outstanding))

    async def aclose(self) -> None:
        """Stop submissions, send what was admitted, finish the HTTP calls in flight, stop the watcher.

        Jobs still unresolved fail with :class:`InvokerClosedError` carrying their locations
        (``drain()`` first to wait for them). Safe to call twice and safe to cancel: cancelled, it
        stops sending at once (the jobs not yet answered fail with :class:`InvokerClosedError`) and
        still closes the watcher, the connections and the AWS clients before it re-raises.
        """
        if self._state is InvokerState.CLOSED:
            return
        if self._state is InvokerState.CLOSING:
            await self._closed.wait()
            return
        self._state = InvokerState.CLOSING
        try:
            # submit() promised these requests would go out: send them before closing.
            await self._sends_idle.wait()
        finally:
            await self._release()

    async def _release(self) -> None:
        """Close everything the invoker opened; each step runs even if one before it failed."""
        try:
            if self._runner is not None and not self._sends_idle.is_set():
                # An interrupted close: stop the sends (their jobs fail as closed).
                await _cancel_and_wait(self._runner)
        finally:
            try:
                if self.watcher is not None and self._attached:
                    # This invoker's jobs still pending fail as closed; the watcher itself closes
                    # only if this invoker was the last of those that opened it.
                    self._attached = False
                    await self.watcher._detach(self.endpoint_name, list(self._outstanding.values()))
            finally:
                try:
                    if self._runner is not None:
                        # Lets the clean-up loop finish the deletes queued so far, then ends.
                        self._stop.set()
                        await asyncio.wait([self._runner])
                        self._runner = None
                finally:
                    try:
                        if self._transport is not None:
                            await self._transport.aclose()
                    finally:
                        await self._aws.aclose()
                        self._state = InvokerState.CLOSED
                        self._closed.set()
                        self._retire_telemetry()

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
        before_send: Callable[[], Awaitable[object]] | None = None,
    ) -> InferenceJob:
        """Admit one request and send it in the background; return its job.

        Returns once the job has room under ``max_pending`` (and the send queue has room), not
        once the endpoint answered: ``await job.accepted()`` for the 202, ``await job.result()``
        for the output. Every field is checked here, before anything is sent.

        :param payload: bytes, str, a file-like object or a JSON-serializable value (sent as
            ``application/json`` unless ``content_type`` says otherwise).
        :param input_location: an ``s3://`` or ``https://`` input already in place, sent as
            ``InputLocation`` instead of a payload (giving both is an error, as AWS says).
        :param inference_id: fixed for every retry of this request (a uuid4 when ``None``).
        :param before_send: awaited in the background just before the request is first sent (or
            staged), e.g. to journal the intent to send; if it raises, nothing is sent and the
            job fails with that error.
        :raises InvalidRequestError: a field is outside the API's limits (nothing was sent).
        :raises PayloadTooLargeError: over 128,000 bytes and no ``staging``.
        :raises AdmissionTimeoutError: no room under the limits within ``admission_timeout``.
        :raises InvokerClosedError: the invoker is not open.
        """
        submitted = time.time()
        self._check_open()
        inference_id = inference_id if inference_id is not None else new_inference_id()
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
        # One done callback per job, on its outcome (_on_outcome, which also marks an error
        # retrieved); the acceptance is settled only by _accept and _reject, which marks its own.
        loop = asyncio.get_running_loop()
        acceptance: asyncio.Future[Accepted] = loop.create_future()
        result: asyncio.Future[InferenceResult] | None = None
        if self.watcher is not None:
            result = loop.create_future()
        job = InferenceJob(
            inference_id=inference_id,
            output_location=None,
            failure_location=None,
            inline=request.body is not None,
            input_location=input_location,
            attempts=0,
            submitted=submitted,
            future=result,
            acceptance=acceptance,
        )
        telemetry = self._telemetry
        if telemetry is not None and telemetry.tracing is not None:
            # Senders run in the invoker's own tasks: the caller's context goes with the job.
            job._trace = telemetry.tracing.capture()
        outcome = result if result is not None else acceptance
        self._outstanding[outcome] = job
        if staged:
            self._staged.add(outcome)
        # One bound method for every job, and no copy of the caller's context per job.
        outcome.add_done_callback(self._on_outcome_callback, context=CALLBACK_CONTEXT)
        self._submitted += 1
        self._sending += 1
        self._sends_idle.clear()
        # To a sender: no task (nor coroutine) per job.
        self._queue.append((job, request, body if staged else None, before_send))
        if not self._wake_sender() and self._senders < self._max_senders:
            self._start_sender()
        return job

    async def invoke(self, payload: Payload = None, **fields: Any) -> InferenceJob:
        """:meth:`submit` and wait for the 202: the job comes back accepted, its locations known.

        Takes the same arguments as :meth:`submit`. A loop of ``invoke`` calls sends one request at
        a time; use :meth:`submit` or :meth:`map` to fan out.

        :raises InvocationError: the endpoint refused the request (as ``job.accepted()``).
        """
        job = await self.submit(payload, **fields)
        await job.accepted()
        return job

    def _check_open(self) -> None:
        if self._state is not InvokerState.OPEN:
            raise InvokerClosedError(
                f"the invoker is {self._state.value}: open it with `async with` first"
                if self._state is InvokerState.UNOPENED
                else f"the invoker is {self._state.value}"
            )

    async def _admit(self, inference_id: str) -> None:
        """Take a pending slot, then room in the send queue, within one admission timeout."""
        pending, unsent = self._pending, self._unsent
        has_pending = pending.acquire_nowait()
        if not (has_pending and unsent.acquire_nowait()):
            timeout = self.limits.admission_timeout
            try:
                if timeout is None:
                    # No deadline (the default): no asyncio.timeout per waiting submission.
                    if not has_pending:
                        await pending.acquire()
                        has_pending = True
                    await unsent.acquire()
                else:
                    async with asyncio.timeout(timeout):
                        if not has_pending:
                            await pending.acquire()
                            has_pending = True
                        await unsent.acquire()
            except BaseException as exc:
                if has_pending:
                    pending.release()
                if isinstance(exc, TimeoutError):
                    raise AdmissionTimeoutError(
                        f"no room under max_pending={self.limits.max_pending} within "
                        f"{self.limits.admission_timeout} s",
                        inference_id=inference_id,
                    ) from None
                raise
        if self._state is not InvokerState.OPEN:
            pending.release()
            unsent.release()
            self._check_open()

    def _start_sender(self) -> None:
        assert self._task_group is not None and self._sender_context is not None
        self._senders += 1
        # Each sender in its own copy of the runner's context (a copy of open()'s caller's): hooks
        # run there, not in their submitter's context, and a context variable one sets stays
        # with its sender.
        self._task_group.create_task(
            self._sender(), name="aiosagemaker-sender", context=self._sender_context.copy()
        )

    def _wake_sender(self, *, everyone: bool = False) -> bool:
        """Wake an idle sender (or every one); whether one was idle."""
        idle = self._idle
        woken = False
        while idle:
            waiter = idle.popleft()
            if not waiter.done():  # else its sender was cancelled
                waiter.set_result(None)
                woken = True
                if not everyone:
                    break
        return woken

    async def _sender(self) -> None:
        """The background half of submissions, one job after another: stage if needed, invoke,
        hand the job on; wait for the next; end once the invoker stops and the queue is empty."""
        transport = self._transport
        assert transport is not None
        queue, idle, unsent, stop = self._queue, self._idle, self._unsent, self._stop
        loop = asyncio.get_running_loop()
        this = asyncio.current_task()
        assert this is not None
        try:
            while True:
                if this.cancelling():
                    # Cancelled, and a hook swallowed it: stop all the same (the runner fails
                    # what is still queued), or an interrupted close would wait for this sender.
                    raise asyncio.CancelledError
                if not queue:
                    if stop.is_set():
                        return
                    waiter: asyncio.Future[None] = loop.create_future()
                    idle.append(waiter)
                    await waiter
                    continue
                job, request, staged_body, before_send = queue.popleft()
                accepted: Accepted | None = None
                try:
                    if before_send is not None:
                        await before_send()
                        if this.cancelling():  # the hook swallowed this sender's cancellation
                            raise asyncio.CancelledError
                    if staged_body is not None:
                        job.input_location = await self._stage(
                            staged_body, request, job.inference_id
                        )
                        request = replace(request, input_location=job.input_location)
                    accepted = await transport.invoke(request, job._trace)
                except AsyncInferenceError as exc:
                    self._reject(job, exc)
                except Exception as exc:  # noqa: BLE001 - a before_send hook's error: the job carries it
                    error = AsyncInferenceError(
                        f"not sent: {type(exc).__name__}: {exc}", inference_id=job.inference_id
                    )
                    error.__cause__ = exc
                    self._reject(job, error)
                except BaseException as exc:  # cancelled (an interrupted close), or exiting
                    self._reject(
                        job,
                        InvokerClosedError(
                            "the invoker closed before the endpoint answered; the request may "
                            "or may not have been received",
                            inference_id=job.inference_id,
                        ),
                    )
                    if not isinstance(exc, asyncio.CancelledError) or this.cancelling():
                        raise
                    # Not this sender's cancellation (a hook's own): the job failed, go on.
                finally:
                    unsent.release()
                    self._sending -= 1
                    if self._sending == 0:
                        self._sends_idle.set()
                if accepted is not None:
                    self._accept(job, request, accepted)
                # Hold nothing of this job (its payload above all) while waiting for the next.
                del job, request, staged_body, before_send, accepted
        finally:
            self._senders -= 1

    def _fail_queued(self) -> None:
        """Fail the jobs no sender took (the invoker stopped sending): they were never sent."""
        queue = self._queue
        while queue:
            job = queue.popleft()[0]
            self._reject(
                job,
                InvokerClosedError(
                    "the invoker closed before the request was sent",
                    inference_id=job.inference_id,
                ),
            )
            self._unsent.release()
            self._sending -= 1
        if self._sending == 0:
            self._sends_idle.set()

    def _reject(self, job: InferenceJob, error: BaseException) -> None:
        self._rejected += 1
        if self._telemetry is not None:
            self._telemetry.count_rejected(error)
        if job._future is not None and not job._future.done():
            job._future.set_exception(error)
        assert job._acceptance is not None
        job._acceptance.set_exception(error)
        # Readable from the job whenever asked, never worth a warning if nobody asks.
        job._acceptance.exception()

    def _accept(self, job: InferenceJob, request: AsyncRequest, accepted: Accepted) -> None:
        self._accepted += 1
        job.output_location = accepted.output_location
        job.failure_location = accepted.failure_location
        job.attempts = accepted.attempts
        accepted_at = time.time()
        job._mark_accepted(accepted_at)
        telemetry = self._telemetry
        if telemetry is not None and telemetry.meters is not None:
            submitted = job._submitted_at()
            if submitted is not None:
                telemetry.meters.submit_duration.record(
                    max(0.0, accepted_at - submitted), telemetry.accepted_attributes
                )
        job.deadline = job_deadline(
            accepted_at,
            request_ttl=request.request_ttl,
            invocation_timeout=request.invocation_timeout,
            grace=self._result_grace,
        )
        assert job._acceptance is not None
        job._acceptance.set_result(accepted)
        watcher = self.watcher
        if watcher is None:
            return
        if accepted.output_location is None and not watcher.matches_by_inference_id:
            self._fail_result(
                job,
                InvocationError(
                    "the endpoint accepted the request (HTTP 202) without an output location, "
                    f"and {type(watcher).__name__} can only find results by location; use "
                    "SqsNotifications, which matches notifications by inference id",
                    code="MissingOutputLocation",
                    status=202,
                    inference_id=job.inference_id,
                ),
            )
            return
        try:
            watcher.track(
                job.inference_id,
                job.output_location,
                job.failure_location,
                deadline=job.deadline,
                job=job,
                endpoint_name=self.endpoint_name,
            )
        except AsyncInferenceError as exc:  # a location the watcher cannot read
            self._fail_result(job, exc)
        except RuntimeError:  # the watcher closed while the request was in flight
            self._fail_result(
                job,
                InvokerClosedError(
                    "closed before the result arrived; collect it with another watcher",
                    inference_id=job.inference_id,
                    output_location=job.output_location,
                    failure_location=job.failure_location,
                ),
            )

    @staticmethod
    def _fail_result(job: InferenceJob, error: BaseException) -> None:
        if job._future is not None and not job._future.done():
            job._future.set_exception(error)

    async def _stage(self, body: bytes, request: AsyncRequest, inference_id: str) -> str:
        assert self.staging is not None and self._s3 is not None
        return await self.staging.stage(
            self._s3,
            body,
            request.content_type,
            inference_id,
            self.retry,
            endpoint_name=self.endpoint_name,
        )

    def _on_outcome(self, outcome: asyncio.Future[Any]) -> None:
        """A job's outcome is known: free its pending slot, count it, clean up its staged input."""
        job = self._outstanding.pop(outcome)
        self._pending.release()
        # exception() also marks it retrieved: never worth a warning if nobody asks.
        error = None if outcome.cancelled() else outcome.exception()
        if not outcome.cancelled() and error is None:
            self._resolved += 1
            if self._telemetry is not None:
                self._observe_outcome(job, None)
        else:
            acceptance = job._acceptance
            if (
                acceptance is None
                or not acceptance.done()
                or acceptance.cancelled()
                or acceptance.exception() is None
            ):
                self._failed += 1
                if self._telemetry is not None:
                    self._telemetry.count_failed(error or asyncio.CancelledError())
                    self._observe_outcome(job, error or asyncio.CancelledError())
            # else refused: counted as rejected
        if self._telemetry is not None and self._state is InvokerState.CLOSED:
            self._retire_telemetry()  # the last outcomes of a closed invoker
        # Only inputs we staged ourselves are ever cleaned up, never a caller's input_location.
        if self._staged and outcome in self._staged:
            self._staged.discard(outcome)
            if job.input_location is not None and self.staging is not None:
                if self.staging.cleanup:
                    self._cleanup.put_nowait(job.input_location)

    def _observe_outcome(self, job: InferenceJob, error: BaseException | None) -> None:
        """Telemetry of a job's outcome (accepted, then completed or failed): its end-to-end
        latency, and the short span of its collected result."""
        telemetry = self._telemetry
        assert telemetry is not None
        now = time.time()
        # Submit-only, the 202 is the outcome: its latency is the submit histogram's already.
        if telemetry.meters is not None and self.watcher is not None:
            submitted = job._submitted_at()
            if submitted is not None:
                telemetry.meters.result_duration.record(
                    max(0.0, now - submitted), telemetry.outcome_attributes(error)
                )
        trace = job._trace
        if telemetry.tracing is not None and trace is not None and self.watcher is not None:
            job._trace = None
            telemetry.tracing.result(
                trace, job.inference_id, started=job.timings.completed, error=error
            )

    def _readings(self) -> Readings:
        """What the metrics report of this invoker: its statistics, its failures by code."""
        s = self.statistics()
        telemetry = self._telemetry
        watcher = self.watcher
        return Readings(
            endpoint=self.endpoint_name,
            submitted=s.submitted,
            accepted=s.accepted,
            retried=s.retried,
            throttled=s.throttled,
            ambiguous_retries=s.ambiguous_retries,
            resolved=s.resolved,
            failed=dict(telemetry.failed) if telemetry is not None else {},
            rejected=dict(telemetry.rejected) if telemetry is not None else {},
            refused_notifications=(
                watcher.refused_notifications_for(self.endpoint_name) if watcher is not None else 0
            ),
            in_flight=s.in_flight,
            pending=s.pending,
            concurrency_limit=s.concurrency_limit,
        )

    def _retire_telemetry(self) -> None:
        """Closed, every outcome known: the metrics keep this invoker's last counts."""
        if self._telemetry is not None and not self._outstanding:
            self._telemetry.close(id(self))

    async def _cleanup_loop(self) -> None:
        while (location := await self._cleanup.get()) is not None:
            if self.staging is not None and self._s3 is not None:
                await self.staging.delete(self._s3, location, endpoint_name=self.endpoint_name)

    # --- results -------------------------------------------------------------------------------

    async def as_completed(
        self, jobs: Iterable[InferenceJob], *, return_exceptions: bool = False
    ) -> AsyncIterator[InferenceResult | BaseException]:
        """Yield the jobs' results as they complete.

        :param return_exceptions: yield a failed job's exception instead of raising it.
        """
        ready: asyncio.Queue[asyncio.Future[InferenceResult]] = asyncio.Queue()
        made: list[asyncio.Future[InferenceResult]] = []
        count = 0
        for job in jobs:
            future = _result_future(job, made)
            future.add_done_callback(ready.put_nowait)
            count += 1
        try:
            for _ in range(count):
                yield _outcome(await ready.get(), return_exceptions)
        finally:
            for future in made:
                future.cancel()

    async def map(
        self,
        payloads: Iterable[Payload] | AsyncIterable[Payload],
        *,
        ordered: bool = True,
        return_exceptions: bool = False,
        **fields: Any,
    ) -> AsyncIterator[InferenceResult | BaseException]:
        """Submit every payload and yield the results, up to ``max_concurrent_invocations`` in flight.

        Payloads are pulled (and encoded) only when there is room for them: at most ``max_pending``
        jobs between submission and the moment their result is yielded, and at most twice the
        in-flight limit of encoded requests waiting to be sent.

        :param ordered: yield in input order (else in completion order).
        :param return_exceptions: yield each failure (a refused submission included) in place of
            its result instead of raising it.
        :param fields: request fields applied to every submission (``content_type``, ...).
        """
        # One slot per input from before it is pulled until it is yielded: memory stays bounded by
        # max_pending even when the caller reads slowly or the head of the line is slow.
        window = CapacityLimiter(self.limits.max_pending)
        ready: asyncio.Queue[asyncio.Future[InferenceResult] | None] = asyncio.Queue()
        made: list[asyncio.Future[InferenceResult]] = []
        loop = asyncio.get_running_loop()

        async def produce() -> None:
            iterator = _aiter(payloads)
            try:
                while True:
                    await window.acquire()
                    try:
                        payload = await anext(iterator)
                    except StopAsyncIteration:
                        window.release()
                        return
                    try:
                        future = _result_future(await self.submit(payload, **fields), made)
                    except AsyncInferenceError as exc:
                        future = loop.create_future()
                        future.set_exception(exc)
                    if ordered:
                        ready.put_nowait(future)
                    else:
                        future.add_done_callback(ready.put_nowait)
            finally:
                # Unordered: the end mark goes behind the futures still pending (see the loop).
                ready.put_nowait(None)

        producer = asyncio.create_task(produce(), name="aiosagemaker-map")
        produced_all = False
        try:
            while not produced_all or window.borrowed:
                item = await ready.get()
                if item is None:
                    produced_all = True
                    continue
                try:
                    if not item.done():
                        await asyncio.wait([item])
                    yield _outcome(item, return_exceptions)
                finally:
                    window.release()
            await producer
        finally:
            producer.cancel()
            await asyncio.wait([producer])
            for future in made:
                future.cancel()

    # --- introspection ---------------------------------------------------------------------------

    @property
    def state(self) -> InvokerState:
        return self._state

    def statistics(self) -> InvokerStatistics:
        transport = self._transport
        counters = transport.counters if transport is not None else TransportCounters()
        invocations = (
            transport.slots.statistics()
            if transport is not None
            else LimiterStatistics(self.limits.max_concurrent_invocations, 0, 0)
        )
        return InvokerStatistics(
            state=self._state,
            in_flight=counters.in_flight,
            pending=self._pending.borrowed,
            concurrency_limit=invocations.total,
            admission=self._pending.statistics(),
            invocations=invocations,
            send_queue=self._unsent.statistics(),
            submitted=self._submitted,
            accepted=self._accepted,
            rejected=self._rejected,
            staged=self.staging.staged if self.staging else 0,
            retried=counters.retries,
            throttled=counters.throttled,
            ambiguous_retries=counters.ambiguous_retries,
            resolved=self._resolved,
            failed=self._failed,
        )

    def __repr__(self) -> str:
        s = self.statistics()
        watcher = self.watcher.kind if self.watcher is not None else "none"
        return (
            f"<AsyncInvoker {self.endpoint_name} {s.state.value} [in-flight {s.in_flight}, "
            f"pending {s.pending}, resolved {s.resolved}, failed {s.failed} | watcher={watcher}]>"
        )


def _result_future(
    job: InferenceJob, made: list[asyncio.Future[InferenceResult]]
) -> asyncio.Future[InferenceResult]:
    """The future that holds ``job``'s result; a task awaiting it for an untracked job."""
    if job._future is not None:
        return job._future
    future = asyncio.ensure_future(job.result())
    made.append(future)
    return future


def _outcome(
    future: asyncio.Future[InferenceResult], return_exceptions: bool
) -> InferenceResult | BaseException:
    """A done future's result, or its error (returned when asked, else raised)."""
    if future.cancelled():
        raise asyncio.CancelledError
    error = future.exception()
    if error is None:
        return future.result()
    if return_exceptions and isinstance(error, Exception):
        return error
    raise error


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it to end, without taking its cancellation as ours."""
    task.cancel()
    await asyncio.wait([task])


async def _aiter(items: Iterable[Payload] | AsyncIterable[Payload]) -> AsyncIterator[Payload]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
