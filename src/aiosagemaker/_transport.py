"""The signed HTTP call to ``InvokeEndpointAsync``: connection pool, SigV4, retries and backoff.

This is the hot path. Stock aiobotocore spends most of a call's CPU in event hooks, user-agent
building and request preparation; here the request is prepared once per endpoint and each call is
one signed aiohttp POST. botocore's own retries never apply (botocore does not send these requests),
so our ``RetryPolicy`` is the only one and the two cannot stack.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from ._exceptions import InvocationError, ThrottledError
from ._limits import AimdController, CapacityLimiter
from ._request import FAILURE_LOCATION_HEADER, OUTPUT_LOCATION_HEADER, AsyncRequest
from ._sigv4 import Keys, RequestSigner, amz_date
from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._config import Limits, RetryPolicy, Timeouts

__all__ = ["Accepted", "CredentialSource", "InvokeTransport", "TransportCounters"]

logger = logging.getLogger("aiosagemaker")

# Error codes worth another attempt: the request was refused or failed before it was queued.
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpointAsync.html
_THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
_RETRYABLE_CODES = _THROTTLING_CODES | {"ServiceUnavailable", "InternalFailure", "InternalError"}
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_USER_AGENT = f"aiosagemaker/{__version__} aiohttp/{aiohttp.__version__}"


class CredentialSource(Protocol):
    """What we need of botocore's (refreshable) credentials: a consistent snapshot."""

    def get_frozen_credentials(self) -> Awaitable[Keys]: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    """The endpoint's 202 answer."""

    inference_id: str
    output_location: str | None
    failure_location: str | None
    attempts: int
    #: retries sent after a failure that left it unknown whether the endpoint got the request
    ambiguous_retries: int


@dataclass(slots=True)
class TransportCounters:
    calls: int = 0
    retries: int = 0
    throttled: int = 0
    ambiguous_retries: int = 0
    in_flight: int = 0


class _RetryableFailure(Exception):
    """One attempt failed in a way the retry policy may retry."""

    def __init__(self, error: InvocationError, *, ambiguous: bool, throttled: bool) -> None:
        super().__init__(str(error))
        self.error = error
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

    The invocation limiter bounds HTTP calls in flight; a slot is held for one attempt and released
    when that HTTP call returns (never during a backoff sleep).
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
        rand: Callable[[], float] = random.random,
    ) -> None:
        path = f"/endpoints/{quote(endpoint_name, safe='')}/async-invocations"
        self.url = endpoint_url.rstrip("/") + path
        self._signer = RequestSigner(host=_host_header(endpoint_url), path=path, region=region)
        self._credentials = credentials
        self._timeouts = timeouts
        self._retry = retry
        self._rand = rand
        self.slots = CapacityLimiter(limits.max_concurrent_invocations)
        self._aimd = AimdController(self.slots, ceiling=limits.max_concurrent_invocations)
        self._pool_size = limits.max_concurrent_invocations
        self._session: aiohttp.ClientSession | None = None
        self.counters = TransportCounters()

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size,  # the pool is sized from max_concurrent_invocations, never apart
            limit_per_host=0,
            ttl_dns_cache=300,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=self._timeouts.invoke, sock_connect=self._timeouts.connect
            ),
            headers={"User-Agent": _USER_AGENT},
            skip_auto_headers=("Content-Type",),
            auto_decompress=False,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def invoke(self, request: AsyncRequest) -> Accepted:
        """Send ``request`` until it is accepted or the retry policy gives up.

        :raises InvocationError: a non-retryable error, or retries exhausted
            (``ThrottledError`` when the last failure was throttling).
        """
        body = request.body if request.body is not None else b""
        fields = request.headers()
        ambiguous_retries = 0
        attempt = 0
        while True:
            attempt += 1
            await self.slots.acquire()
            try:
                accepted = await self._send_once(fields, body, request.inference_id)
            except _RetryableFailure as failure:
                if failure.throttled:
                    self.counters.throttled += 1
                    self._aimd.on_throttle()
                may_retry = attempt < self._retry.max_attempts and (
                    not failure.ambiguous or self._retry.retry_ambiguous
                )
                if not may_retry:
                    raise failure.error from failure
                if failure.ambiguous:
                    ambiguous_retries += 1
                    self.counters.ambiguous_retries += 1
                self.counters.retries += 1
                logger.debug(
                    "retrying inference %s after %s (attempt %d)",
                    request.inference_id,
                    failure.error.code,
                    attempt,
                )
            else:
                self._aimd.on_success()
                return Accepted(accepted[0], accepted[1], accepted[2], attempt, ambiguous_retries)
            finally:
                self.slots.release()
            await asyncio.sleep(self._retry.backoff(attempt, self._rand()))

    async def _send_once(
        self, fields: dict[str, str], body: bytes, inference_id: str | None
    ) -> tuple[str, str | None, str | None]:
        session = self._session
        if session is None:
            raise RuntimeError("transport is not open")
        keys = await self._credentials.get_frozen_credentials()
        headers = dict(fields)
        self._signer.sign(headers, body, keys, amz_date())
        self.counters.calls += 1
        self.counters.in_flight += 1
        try:
            async with session.post(self.url, data=body, headers=headers) as response:
                payload = await response.read()
                status = response.status
                response_headers = response.headers
        except aiohttp.ClientConnectorError as exc:
            # The connection was never made, so the request was never sent: safe to retry.
            raise _RetryableFailure(
                InvocationError(
                    f"could not connect to {self.url}: {exc}",
                    code="ConnectionError",
                    inference_id=inference_id,
                ),
                ambiguous=False,
                throttled=False,
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Sent (or partly sent) with no answer: the endpoint may have queued it.
            raise _RetryableFailure(
                InvocationError(
                    f"no answer from the endpoint ({type(exc).__name__}: {exc}); the request "
                    "may have been received",
                    code="ConnectionError",
                    inference_id=inference_id,
                ),
                ambiguous=True,
                throttled=False,
            ) from exc
        finally:
            self.counters.in_flight -= 1
        if status == 202:
            answer = orjson.loads(payload)
            return (
                answer["InferenceId"],
                response_headers.get(OUTPUT_LOCATION_HEADER),
                response_headers.get(FAILURE_LOCATION_HEADER),
            )
        raise self._error(status, response_headers, payload, inference_id)

    @staticmethod
    def _error(
        status: int,
        headers: aiohttp.typedefs.LooseHeaders,
        payload: bytes,
        inference_id: str | None,
    ) -> Exception:
        code, message = _parse_error(status, headers, payload)
        request_id = _get(headers, "x-amzn-RequestId")
        throttled = code in _THROTTLING_CODES or status == 429
        cls = ThrottledError if throttled else InvocationError
        error = cls(
            message,
            code=code,
            status=status,
            request_id=request_id,
            inference_id=inference_id,
        )
        if throttled or code in _RETRYABLE_CODES or status in _RETRYABLE_STATUS:
            return _RetryableFailure(error, ambiguous=False, throttled=throttled)
        return error


def _get(headers: aiohttp.typedefs.LooseHeaders, name: str) -> str | None:
    getter = getattr(headers, "get", None)
    value = getter(name) if getter is not None else None
    return value if isinstance(value, str) else None


def _parse_error(
    status: int, headers: aiohttp.typedefs.LooseHeaders, payload: bytes
) -> tuple[str, str]:
    """The AWS error code and message of a rest-json error answer, as botocore reads them."""
    code = (_get(headers, "x-amzn-ErrorType") or "").split(":", 1)[0]
    message = ""
    try:
        body = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        body = {}
    if isinstance(body, dict):
        if not code:
            raw = str(body.get("__type") or body.get("code") or body.get("Code") or "")
            code = raw.rsplit("#", 1)[-1]
        message = str(body.get("message") or body.get("Message") or "")
    if not code:
        code = "ThrottlingException" if status == 429 else f"HTTP{status}"
    return code, message or f"HTTP {status}"
