"""The SQS watcher's calls (ReceiveMessage, DeleteMessageBatch, ChangeMessageVisibilityBatch) as
one signed JSON request each, botocore as the fallback.

Every notification costs a share of a receive and of a delete batch: the result path's hot calls
for :class:`SqsNotifications`. Through aiobotocore each costs several times its HTTP request (the
same endpoint rules, event hooks, serialization and parsing as any call). Here each operation is
prepared once from botocore's own request (caught just before it would be sent, as ``_s3_reads``
prepares a bucket): its URL (custom endpoints, FIPS and dual-stack as the client resolves them),
its protocol headers (``X-Amz-Target``, the JSON content type, ``x-amzn-query-mode``) and the
region it signs for. A call is then its parameters as JSON, signed as botocore signs it (tested
byte for byte), on our keep-alive pool (``_http_pool``); the answer is parsed as botocore's JSON
parser reads it, errors included (the query-compatible code from ``x-amzn-query-error``, as
botocore gives it, so that the watchers classify them alike).

Left to aiobotocore: a client whose settings need aiohttp (a proxy), and any operation whose
request cannot be prepared.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from http.client import responses
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from botocore.exceptions import ClientError

from ._core._sigv4 import RequestSigner, amz_date
from ._http import USER_AGENT

if TYPE_CHECKING:
    from ._aws import AwsContext, CredentialSource
    from ._http_pool import ConnectionPool, HttpResponse

__all__ = ["SqsCalls"]

logger = logging.getLogger("aiosagemaker")

# The credential scope in an Authorization header: .../DATE/REGION/SERVICE/aws4_request
_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/([^/,]+)/([^/,]+)/aws4_request")
# botocore's defaults for a client without a timeout in its Config (a long poll is 20 s at most).
_BOTOCORE_TIMEOUT = 60.0
# A receive of 10 messages of 256 KiB each is 2.5 MiB; anything far longer is not an answer.
_MAX_ANSWER_BYTES = 16 * 1024 * 1024
# What botocore sends that belongs to one request only, or that we send ourselves.
_PER_REQUEST = frozenset(
    {
        "authorization",
        "x-amz-date",
        "x-amz-security-token",
        "user-agent",
        "content-length",
        "host",
        "expect",
        "amz-sdk-invocation-id",
        "amz-sdk-request",
        "x-amz-content-sha256",
    }
)
_PROBES: dict[str, tuple[str, dict[str, Any]]] = {
    "ReceiveMessage": ("receive_message", {"MaxNumberOfMessages": 1}),
    "DeleteMessageBatch": (
        "delete_message_batch",
        {"Entries": [{"Id": "0", "ReceiptHandle": "probe"}]},
    ),
    "ChangeMessageVisibilityBatch": (
        "change_message_visibility_batch",
        {"Entries": [{"Id": "0", "ReceiptHandle": "probe", "VisibilityTimeout": 0}]},
    ),
}


@dataclass(frozen=True, slots=True)
class _Operation:
    """One prepared operation: the request line, the fixed headers (signed) and the signer."""

    target: str
    headers: tuple[tuple[str, str], ...]
    signer: RequestSigner
    head_start: str


class _Probed(Exception):
    """Stops botocore's probe request before it is sent."""


class SqsCalls:
    """The SQS calls of one watcher: signed requests of our own where the settings allow, the
    aiobotocore ``client`` elsewhere. Answers are botocore's shapes; errors its ``ClientError``.

    :param client: the aiobotocore SQS client: its configuration resolves the URL, and it serves
        what this class does not.
    :param pool: connections (receivers in a long poll each, and the delete batches).
    """

    def __init__(self, client: Any, *, aws: AwsContext, pool: int) -> None:
        self._client = client
        self._aws = aws
        self._http = aws.http
        self._pool_size = pool
        self._credentials: CredentialSource | None = None
        self._operations: dict[str, _Operation | None] = {}
        self._preparing: dict[str, asyncio.Future[_Operation | None]] = {}
        self._pools: dict[str, ConnectionPool] = {}
        self._user_agent = self._http.user_agent(USER_AGENT)

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            await pool.close()

    async def receive_message(self, **params: Any) -> dict[str, Any]:
        return await self._call("ReceiveMessage", params)

    async def delete_message_batch(self, **params: Any) -> dict[str, Any]:
        return await self._call("DeleteMessageBatch", params)

    async def change_message_visibility_batch(self, **params: Any) -> dict[str, Any]:
        return await self._call("ChangeMessageVisibilityBatch", params)

    # --- one call ----------------------------------------------------------------------------------

    async def _call(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        operation = await self._operation(name, params["QueueUrl"])
        if operation is None:
            method, _ = _PROBES[name]
            answer: dict[str, Any] = await getattr(self._client, method)(**params)
            return answer
        pool = self._pools[operation.target]
        body = orjson.dumps(params)
        headers = dict(operation.headers)
        operation.signer.sign(headers, body, await self._keys(), amz_date())
        parts = [operation.head_start, str(len(body))]
        for header, value in headers.items():
            parts += ("\r\n", header, ": ", value)
        parts.append("\r\n\r\n")
        response = await pool.request(
            "".join(parts).encode("utf-8"),
            body,
            timeout=None,  # botocore's are per connect and per read, as the pool's are
            max_body=_MAX_ANSWER_BYTES,
        )
        if response.status == 200 and response.complete and not response.cut:
            parsed: dict[str, Any] = orjson.loads(response.body) if response.body else {}
            return parsed
        raise _client_error(response, name)

    async def _keys(self) -> Any:
        credentials = self._credentials
        if credentials is None:
            credentials = self._credentials = await self._aws.credentials()
        return await credentials.get_frozen_credentials()

    # --- preparing an operation --------------------------------------------------------------------

    async def _operation(self, name: str, queue_url: str) -> _Operation | None:
        key = f"{name} {queue_url}"
        if key in self._operations:
            return self._operations[key]
        pending = self._preparing.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = self._preparing[key] = asyncio.get_running_loop().create_future()
        try:
            operation = await self._prepare(name, queue_url)
        except Exception:  # noqa: BLE001 - any doubt: botocore sends this operation
            logger.debug("SQS %s: sent through botocore", name, exc_info=True)
            operation = None
        self._operations[key] = operation
        del self._preparing[key]
        pending.set_result(operation)
        return operation

    async def _prepare(self, name: str, queue_url: str) -> _Operation | None:
        """The operation's request as botocore makes it, caught before it is sent; ``None`` for
        one left to botocore."""
        method, probe_params = _PROBES[name]
        caught: list[Any] = []

        def catch(request: Any, **_: Any) -> None:
            caught.append(request)
            raise _Probed

        events = self._client.meta.events
        unique = f"aiosagemaker-probe-{name}"
        events.register_first(f"before-send.sqs.{name}", catch, unique_id=unique)
        try:
            await getattr(self._client, method)(QueueUrl=queue_url, **probe_params)
        except _Probed:
            pass
        finally:
            events.unregister(f"before-send.sqs.{name}", unique_id=unique)
        if not caught:
            return None
        request = caught[0]
        parts = urlsplit(request.url)
        headers = {
            key: value.decode() if isinstance(value, bytes) else value
            for key, value in request.headers.items()
        }
        scope = _SCOPE.search(headers.get("Authorization", ""))
        if (
            request.method != "POST"
            or scope is None
            or parts.scheme not in ("http", "https")
            or parts.query
            or "json" not in headers.get("Content-Type", "")
        ):
            return None
        base = f"{parts.scheme}://{parts.netloc}"
        pool = self._pools.get(base)
        if pool is None:
            # botocore's timeouts (60 s each), unless the user's Config sets them.
            pool = await self._http.pool(
                base, limit=self._pool_size, connect=_BOTOCORE_TIMEOUT, read=_BOTOCORE_TIMEOUT
            )
            if pool is None:
                return None  # a proxy or a resolver of the user's: aiobotocore sends it
            self._pools[base] = pool
        host = parts.netloc.rpartition("@")[2].lower()
        host = host.removesuffix({"http": ":80", "https": ":443"}[parts.scheme])
        path = parts.path or "/"
        fixed = tuple(
            (key, value) for key, value in headers.items() if key.lower() not in _PER_REQUEST
        )
        return _Operation(
            target=base,
            headers=fixed,
            signer=RequestSigner(
                host=host, path=path, region=scope.group(1), service=scope.group(2)
            ),
            head_start=(
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {self._user_agent}\r\n"
                "Content-Length: "
            ),
        )


def _client_error(response: HttpResponse, operation: str) -> ClientError:
    """An error answer as botocore's JSON parser reads it (the query-compatible code from
    ``x-amzn-query-error`` when the answer has one, as for SQS)."""
    headers = response.headers
    metadata: dict[str, Any] = {
        "RequestId": headers.get("x-amzn-RequestId", ""),
        "HTTPStatusCode": response.status,
        "HTTPHeaders": {key.lower(): value for key, value in headers.items()},
        "RetryAttempts": 0,
    }
    stripped = response.body.strip()
    if response.status >= 500 and (not stripped or stripped.startswith(b"<html>")):
        # A front end's page, not the service's answer: botocore's "generic" error.
        generic = {"Code": str(response.status), "Message": responses.get(response.status, "")}
        answer: Any = {"Error": generic, "ResponseMetadata": metadata}
        return ClientError(answer, operation)
    body: Any = None
    if response.body:
        try:
            body = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            # As botocore: a body that is not JSON is the message.
            body = {"message": response.body.decode("utf-8", "replace")}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("__type") or response.status)
    if ":" in code:
        code = code.split(":", 1)[0]
    if "#" in code:
        code = code.rsplit("#", 1)[1]
    error: dict[str, Any] = {
        "Error": {"Message": str(body.get("message", body.get("Message", ""))), "Code": code}
    }
    query_error = headers.get("x-amzn-query-error", "").split(";")
    if len(query_error) == 2 and query_error[0]:
        error["Error"].update(QueryErrorCode=code, Type=query_error[1], Code=query_error[0])
    error["ResponseMetadata"] = metadata
    if not response.complete or response.cut:
        error["Error"]["Message"] = error["Error"]["Message"] or "the answer broke off"
    return ClientError(error, operation)  # type: ignore[arg-type]
