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

from dataclasses import dataclass
from http.client import responses
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from botocore.exceptions import ClientError

from ._core._sigv4 import RequestSigner, amz_date
from ._http import USER_AGENT
from ._http_pool import RequestHead
from ._prepared import (
    PoolsByHost,
    PreparedOnce,
    catch_request,
    header_text,
    host_header,
    signing_scope,
)

if TYPE_CHECKING:
    from ._aws import AwsContext
    from ._http_pool import ConnectionPool, HttpResponse

__all__ = ["SqsCalls"]


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
    """One prepared operation: its pool, the fixed headers (signed), the signer, and the
    request's fixed head."""

    pool: ConnectionPool
    headers: tuple[tuple[str, str], ...]
    signer: RequestSigner
    head: RequestHead


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
        # Each (operation, queue URL)'s request, prepared once (None: botocore sends it).
        self._operations = PreparedOnce(self._prepare, "SQS call")
        self._pools = PoolsByHost(self._http, limit=pool)
        self._user_agent = self._http.user_agent(USER_AGENT)

    async def aclose(self) -> None:
        await self._pools.aclose()

    async def receive_message(self, **params: Any) -> dict[str, Any]:
        return await self._call("ReceiveMessage", params)

    async def delete_message_batch(self, **params: Any) -> dict[str, Any]:
        return await self._call("DeleteMessageBatch", params)

    async def change_message_visibility_batch(self, **params: Any) -> dict[str, Any]:
        return await self._call("ChangeMessageVisibilityBatch", params)

    # --- one call ----------------------------------------------------------------------------------

    async def _call(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        operation = await self._operations.get((name, params["QueueUrl"]))
        if operation is None:
            method, _ = _PROBES[name]
            answer: dict[str, Any] = await getattr(self._client, method)(**params)
            return answer
        body = orjson.dumps(params)
        headers = dict(operation.headers)
        operation.signer.sign(headers, body, await self._aws.signing_keys(), amz_date())
        response = await operation.pool.request(
            operation.head.render(headers, len(body)),
            body,
            timeout=None,  # botocore's are per connect and per read, as the pool's are
            max_body=_MAX_ANSWER_BYTES,
        )
        if response.status == 200 and response.complete and not response.cut:
            parsed: dict[str, Any] = orjson.loads(response.body) if response.body else {}
            return parsed
        raise _client_error(response, name)

    # --- preparing an operation --------------------------------------------------------------------

    async def _prepare(self, key: tuple[str, str]) -> _Operation | None:
        """The operation's request as botocore makes it, caught before it is sent; ``None`` for
        one left to botocore."""
        name, queue_url = key
        method, probe_params = _PROBES[name]
        request = await catch_request(
            self._client,
            f"before-send.sqs.{name}",
            lambda: getattr(self._client, method)(QueueUrl=queue_url, **probe_params),
        )
        if request is None:
            return None
        parts = urlsplit(request.url)
        headers = {key: header_text(value) for key, value in request.headers.items()}
        scope = signing_scope(request)
        if (
            request.method != "POST"
            or scope is None
            or parts.scheme not in ("http", "https")
            or parts.query
            or "json" not in headers.get("Content-Type", "")
        ):
            return None
        pool = await self._pools.get(f"{parts.scheme}://{parts.netloc}")
        if pool is None:
            return None  # a proxy or a resolver of the user's: aiobotocore sends it
        host = host_header(parts)
        path = parts.path or "/"
        return _Operation(
            pool=pool,
            headers=tuple(
                (key, value) for key, value in headers.items() if key.lower() not in _PER_REQUEST
            ),
            signer=RequestSigner(host=host, path=path, region=scope[0], service=scope[1]),
            head=RequestHead("POST", path, host=host, user_agent=self._user_agent),
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
