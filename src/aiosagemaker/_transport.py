"""The signed HTTP call to ``InvokeEndpointAsync``: connection pool, SigV4, retries and backoff.

This is the hot path. Stock aiobotocore spends most of a call's CPU in event hooks, user-agent
building and request preparation; here the request is prepared once per endpoint and each call is
one signed POST on our own keep-alive pool (``_http_pool``), or on an aiohttp session when the
user's settings need one (a proxy, a resolver of their own). botocore's own retries never apply
(botocore does not send these requests), so our ``RetryPolicy`` is the only one and the two cannot
stack.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
import yarl
from multidict import CIMultiDict, CIMultiDictProxy

from ._aws import CredentialSource, aws_error_code
from ._core._request import FAILURE_LOCATION_HEADER, OUTPUT_LOCATION_HEADER, AsyncRequest
from ._core._sigv4 import RequestSigner, amz_date
from ._exceptions import InvocationError, ThrottledError, with_cause
from ._http import USER_AGENT, HttpSettings, read_answer
from ._http_pool import ConnectFailed, ConnectionPool, HttpResponse, RequestHead
from ._limits import AimdController, CapacityLimiter
from ._logs import logger
from ._results import Accepted

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._config import Limits, RetryPolicy, Timeouts
    from ._telemetry import JobTrace, Tracing

__all__ = ["Accepted", "InvokeTransport", "TransportCounters"]


# Error codes worth another attempt: the request was refused or failed before it was queued.
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpointAsync.html
_THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
_RETRYABLE_CODES = _THROTTLING_CODES | {"ServiceUnavailable", "InternalFailure", "InternalError"}
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
# What is read of an answer: a 202's body is a line of JSON, an error's a short document; a proxy's
# page past this is not needed to say what went wrong.
_MAX_ANSWER_BYTES = 1024 * 1024
# The AWS request id of an answer (the spans' aws.request_id; an error's request_id).
_REQUEST_ID_HEADER = "x-amzn-RequestId"


@dataclass(slots=True)
class TransportCounters:
    calls: int = 0
    retries: int = 0
    throttled: int = 0
    ambiguous_retries: int = 0
    in_flight: int = 0


class _Failure:
    """One attempt that got no 202: the error to raise, and what the retry policy may do with it.

    A plain object rather than an exception: a retried failure is never raised, and the error keeps
    the backend's exception as its ``__cause__`` (not a wrapper of ours).
    """

    __slots__ = ("ambiguous", "error", "retryable", "throttled")

    def __init__(
        self,
        error: InvocationError,
        *,
        retryable: bool,
        ambiguous: bool = False,
        throttled: bool = False,
    ) -> None:
        self.error = error
        self.retryable = retryable
        self.ambiguous = ambiguous
        self.throttled = throttled


def _host_header(url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    if parts.port is not None and parts.port != default_port:
        return f"{host}:{parts.port}"
    return host


class InvokeTransport:
    """Sends ``InvokeEndpointAsync`` requests for one endpoint, with retries and AIMD concurrency.

    The invocation limiter (``slots``) bounds HTTP calls in flight; a slot is held for one attempt
    and released when that HTTP call returns (never during a backoff sleep). With
    ``Limits(adaptive=False)`` its total stays at ``max_concurrent_invocations`` whatever the
    throttling.

    How an attempt's outcome is read:

    - a 202 is an acceptance whatever its body: the inference id is the one we sent (SageMaker
      echoes it), the locations come from the headers (``None`` when absent); never retried, as a
      retry would be a certain duplicate;
    - an error answer gives its AWS code, or ``HTTP<status>`` when the body names none (an HTML
      page from a proxy, an empty body); throttling, 5xx and ``ServiceUnavailable`` are retried;
    - no connection (refused, DNS, connect timeout): nothing was sent, retried;
    - no answer once connected (reset, read timeout): *ambiguous*, retried only when
      ``RetryPolicy.retry_ambiguous`` allows, and counted.

    Every error raised is an :class:`InvocationError` (``ThrottledError`` when throttling outlasted
    the retries) with the backend's exception as its ``__cause__``.
    """

    def __init__(
        self,
        *,
        endpoint_name: str,
        endpoint_url: str,
        region: str,
        credentials: CredentialSource,
        limits: Limits,
        timeouts: Timeouts,
        retry: RetryPolicy,
        http: HttpSettings | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.endpoint_name = endpoint_name
        path = f"/endpoints/{quote(endpoint_name, safe='')}/async-invocations"
        self.url = endpoint_url.rstrip("/") + path
        self._signer = RequestSigner(host=_host_header(endpoint_url), path=path, region=region)
        self._credentials = credentials
        self._timeouts = timeouts
        self._retry = retry
        self._rand = rand
        self.slots = CapacityLimiter(limits.max_concurrent_invocations)
        # None: the in-flight limit is held where it was configured (Limits(adaptive=False)).
        self._aimd = (
            AimdController(self.slots, ceiling=limits.max_concurrent_invocations)
            if limits.adaptive
            else None
        )
        self._pool_size = limits.max_concurrent_invocations
        # The user's proxies, CA bundle, client certificate, timeouts and user agent (as botocore
        # would apply them to this call); the proxy is read once per endpoint, as botocore does.
        self._http = http if http is not None else HttpSettings()
        self._proxy = self._http.proxy_for(self.url)
        # Our pool, or an aiohttp session when the settings need one; either is opened by open().
        self._pool: ConnectionPool | None = None
        self._session: aiohttp.ClientSession | None = None
        self._head = RequestHead(
            "POST", path, host=self._signer.host, user_agent=self._http.user_agent(USER_AGENT)
        )
        self.counters = TransportCounters()
        #: a span per attempt of the jobs that carry a trace (set by the invoker; ``None``: off)
        self.tracing: Tracing | None = None

    async def open(self) -> None:
        # The pool is sized from max_concurrent_invocations, never apart.
        self._pool = await self._http.pool(
            self.url,
            limit=self._pool_size,
            connect=self._timeouts.connect,
            read=None,  # within the call's total
        )
        if self._pool is None:
            self._session = await self._http.session(
                limit=self._pool_size,
                proxy=self._proxy,
                total=self._timeouts.invoke,
                connect=self._timeouts.connect,
                read=None,
            )

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def invoke(self, request: AsyncRequest, trace: JobTrace | None = None) -> Accepted:
        """Send ``request`` until it is accepted or the retry policy gives up.

        :param trace: the job's trace (tracing on): each attempt is a span, its child.
        :raises InvocationError: a non-retryable error, or retries exhausted
            (``ThrottledError`` when the last failure was throttling).
        """
        inference_id = request.inference_id
        if inference_id is None:
            # The 202 is read by the id we sent, so there always is one (the invoker sets it).
            inference_id = str(uuid.uuid4())
            request = replace(request, inference_id=inference_id)
        body = request.body if request.body is not None else b""
        fields = request.headers()
        ambiguous_retries = 0
        attempt = 0
        while True:
            attempt += 1
            if trace is not None and self.tracing is not None:
                outcome = await self._traced_send(fields, body, inference_id, attempt, trace)
            else:
                outcome = await self._send_in_slot(fields, body, inference_id)
            if type(outcome) is tuple:
                if self._aimd is not None:
                    self._aimd.on_success()
                return Accepted(inference_id, outcome[0], outcome[1], attempt, ambiguous_retries)
            assert isinstance(outcome, _Failure)
            if outcome.throttled:
                self.counters.throttled += 1
                if self._aimd is not None:
                    self._aimd.on_throttle()
            may_retry = (
                outcome.retryable
                and attempt < self._retry.max_attempts
                and (not outcome.ambiguous or self._retry.retry_ambiguous)
            )
            if not may_retry:
                # Raised outside any except block: the error's only chain is its own __cause__.
                raise outcome.error
            if outcome.ambiguous:
                ambiguous_retries += 1
                self.counters.ambiguous_retries += 1
            self.counters.retries += 1
            logger.debug(
                "retrying inference %s after %s (attempt %d)",
                inference_id,
                outcome.error.code,
                attempt,
                extra={"endpoint": self.endpoint_name, "inference_id": inference_id},
            )
            await asyncio.sleep(self._retry.backoff(attempt, self._rand()))

    async def _traced_send(
        self,
        fields: dict[str, str],
        body: bytes,
        inference_id: str,
        attempt: int,
        trace: JobTrace,
    ) -> tuple[str | None, str | None, str | None] | _Failure:
        """One attempt as :meth:`_send_once`, in a CLIENT span of its own (from when it waits
        for its invocation slot to the answer)."""
        tracing = self.tracing
        assert tracing is not None
        span = tracing.start_attempt(trace, inference_id, attempt)
        try:
            outcome = await self._send_in_slot(fields, body, inference_id)
        except BaseException as exc:
            tracing.end_attempt(span, trace, request_id=None, error=exc)
            raise
        if type(outcome) is tuple:
            tracing.end_attempt(span, trace, request_id=outcome[2], error=None, status=202)
        else:
            assert isinstance(outcome, _Failure)
            error = outcome.error
            tracing.end_attempt(
                span, trace, request_id=error.request_id, error=error, status=error.status
            )
        return outcome

    async def _send_in_slot(
        self, fields: dict[str, str], body: bytes, inference_id: str
    ) -> tuple[str | None, str | None, str | None] | _Failure:
        """:meth:`_send_once` holding an invocation slot (the in-flight limit)."""
        await self.slots.acquire()
        try:
            return await self._send_once(fields, body, inference_id)
        finally:
            self.slots.release()

    async def _send_once(
        self, fields: dict[str, str], body: bytes, inference_id: str
    ) -> tuple[str | None, str | None, str | None] | _Failure:
        """One signed POST: the 202's (output, failure) locations and AWS request id, or why
        there was none."""
        if self._pool is None and self._session is None:
            raise RuntimeError("transport is not open")
        try:
            keys = await self._credentials.get_frozen_credentials()
        except Exception as exc:  # noqa: BLE001 - any credential provider's failure, translated
            return _credentials_failure(exc, inference_id)
        headers = dict(fields)
        self._signer.sign(headers, body, keys, amz_date())
        self.counters.calls += 1
        self.counters.in_flight += 1
        try:
            if self._pool is not None:
                response = await self._pool.request(
                    self._head.render(headers, len(body)),
                    body,
                    timeout=self._timeouts.invoke,
                    max_body=_MAX_ANSWER_BYTES,
                )
            else:
                response = await self._post(headers, body)
            if response.status == 202:
                # Accepted the moment the status line said so: the body (InferenceId, which
                # echoes the id we sent) only keeps the connection reusable, and a failure to
                # read it must not turn an acceptance into a retry (a duplicate).
                answer = response.headers
                return (
                    answer.get(OUTPUT_LOCATION_HEADER),
                    answer.get(FAILURE_LOCATION_HEADER),
                    answer.get(_REQUEST_ID_HEADER),
                )
            # An error answer with a broken-off body was still refused: not ambiguous.
            return _rejection(response, self.url, inference_id)
        except aiohttp.ConnectionTimeoutError as exc:
            # Raised only around the connector's connect (aiohttp >= 3.10): no connection, so
            # nothing was sent. Checked before the read timeouts that share its ServerTimeoutError
            # base (SocketTimeoutError), which are ambiguous.
            return _Failure(
                with_cause(
                    InvocationError(
                        f"could not connect to {self.url} within {self._timeouts.connect} s",
                        code="ConnectionError",
                        inference_id=inference_id,
                    ),
                    exc,
                ),
                retryable=True,
            )
        except (aiohttp.ClientConnectorError, ConnectFailed) as exc:
            # Refused, unreachable, DNS, TLS handshake: the request was never sent.
            return _Failure(
                with_cause(
                    InvocationError(
                        f"could not connect to {self.url}: {exc}",
                        code="ConnectionError",
                        inference_id=inference_id,
                    ),
                    exc,
                ),
                retryable=True,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Connected, then no complete answer: a reset, a read timeout (SocketTimeoutError) or
            # the call's total timeout. The endpoint may have queued the request.
            return _Failure(
                with_cause(
                    InvocationError(
                        f"no answer from the endpoint ({type(exc).__name__}: {exc}); the request "
                        "may have been received",
                        code="ConnectionError",
                        ambiguous=True,
                        inference_id=inference_id,
                    ),
                    exc,
                ),
                retryable=True,
                ambiguous=True,
            )
        finally:
            self.counters.in_flight -= 1

    async def _post(self, headers: dict[str, str], body: bytes) -> HttpResponse:
        """The POST through aiohttp (a proxy, a resolver of the user's), as our pool answers it."""
        assert self._session is not None
        response = await self._session.post(self.url, data=body, headers=headers)
        return await read_answer(response, _MAX_ANSWER_BYTES)


def _credentials_failure(exc: Exception, inference_id: str) -> _Failure:
    code, status = aws_error_code(exc)
    return _Failure(
        with_cause(
            InvocationError(
                f"could not get AWS credentials to sign the request: {exc}",
                code=code or type(exc).__name__,
                status=status,
                inference_id=inference_id,
            ),
            exc,
        ),
        retryable=False,
    )


def _rejection(response: HttpResponse, url: str, inference_id: str) -> _Failure:
    """An error answer, as the typed error it stands for and whether to retry it."""
    status = response.status
    headers = response.headers
    code, message = _parse_error(status, headers, response.body)
    throttled = code in _THROTTLING_CODES or status == 429
    cls = ThrottledError if throttled else InvocationError
    error = cls(
        message,
        code=code,
        status=status,
        request_id=headers.get(_REQUEST_ID_HEADER),
        inference_id=inference_id,
    )
    # The HTTP answer itself is the cause (as raise_for_status would give it): status, reason and
    # headers for whoever debugs a proxy's HTML page. Its body is not kept, nor are the request's
    # headers (its repr would show the session token, the signature and CustomAttributes).
    address = yarl.URL(url)
    cause = aiohttp.ClientResponseError(
        aiohttp.RequestInfo(address, "POST", _NO_HEADERS, address),
        (),
        status=status,
        message=response.reason,
        headers=headers,
    )
    retryable = throttled or code in _RETRYABLE_CODES or status in _RETRYABLE_STATUS
    return _Failure(with_cause(error, cause), retryable=retryable, throttled=throttled)


def _parse_error(status: int, headers: Mapping[str, str], payload: bytes) -> tuple[str, str]:
    """The AWS error code and message of a rest-json error answer, as botocore reads them.

    Without a code (no ``x-amzn-ErrorType``, a body that is empty, not JSON or names none) the
    code is ``HTTP<status>``, as everywhere in the error tree.
    """
    code = (headers.get("x-amzn-ErrorType") or "").split(":", 1)[0]
    message = ""
    body: object = None
    if payload:
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            body = None
    if isinstance(body, dict):
        if not code:
            raw = str(body.get("__type") or body.get("code") or body.get("Code") or "")
            code = raw.rsplit("#", 1)[-1]
        message = str(body.get("message") or body.get("Message") or "")
    if not message:
        # Describe a body that is not an AWS error without repeating it (it may be a large page).
        kind = headers.get("Content-Type") or "no content type"
        message = (
            f"HTTP {status} with an empty body"
            if not payload
            else f"HTTP {status} with a body that is not an AWS error ({kind}, {len(payload)} bytes)"
        )
    return code or f"HTTP{status}", message
