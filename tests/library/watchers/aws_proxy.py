"""A loopback proxy in front of moto's server that answers chosen S3/SQS requests itself.

moto's server enforces no IAM, so the tests that need AWS's refusals (``AccessDenied`` on a
listing, a 403 to a HEAD without ``s3:ListBucket``, throttling, a dropped connection) point the
watcher's clients at this proxy (``AWS_ENDPOINT_URL_S3`` / ``_SQS``); every request no rule takes
is forwarded to moto unchanged. Clients use path-style S3 addressing on a loopback URL, so a
request's operation is read from its method, path and query (S3) or ``X-Amz-Target`` (SQS).

    proxy.add(operation("ListObjectsV2"), s3_error(403, "AccessDenied"))
    proxy.add(operation("HeadObject"), forbid_if_missing)
    await proxy.wait_for(lambda: proxy.count("ListObjectsV2", 403) >= 2)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import EllipsisType

import aiohttp
import orjson
from aiohttp import web

#: hop-by-hop and length headers: the proxy's own HTTP stack sets them.
_SKIP_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}
)


@dataclass(frozen=True)
class Call:
    """One request as the proxy saw it."""

    method: str
    operation: str
    bucket: str
    key: str


@dataclass
class Answered:
    """A request and the status it got (``None``: the connection was dropped)."""

    call: Call
    status: int | None


Matcher = Callable[[Call], bool]
Answer = Callable[["AwsProxy", web.Request, bytes], Awaitable[web.StreamResponse]]


@dataclass
class Rule:
    """Answer the requests ``matches`` accepts with ``answer``, the first ``times`` of them
    (all when ``None``)."""

    matches: Matcher
    answer: Answer
    times: int | None = None
    hits: int = field(default=0)

    def takes(self, call: Call) -> bool:
        return (self.times is None or self.hits < self.times) and self.matches(call)


def classify_request(request: web.Request) -> Call:
    """The operation of one request (enough of S3's and SQS's for these tests)."""
    target = request.headers.get("X-Amz-Target", "")
    if target.startswith("AmazonSQS."):
        return Call(request.method, target.removeprefix("AmazonSQS."), "", "")
    bucket, _, key = request.path.lstrip("/").partition("/")
    if not key:
        operation = "ListObjectsV2" if request.query.get("list-type") == "2" else "Bucket"
    else:
        operation = {"HEAD": "HeadObject", "GET": "GetObject", "PUT": "PutObject"}.get(
            request.method, "Object"
        )
    return Call(request.method, operation, bucket, key)


def operation(name: str, *, bucket: str | None = None) -> Matcher:
    """Requests of one operation (``ListObjectsV2``, ``HeadObject``, ``ReceiveMessage``, ...),
    in one bucket when given."""
    return lambda call: call.operation == name and (bucket is None or call.bucket == bucket)


def s3_error(status: int, code: str) -> Answer:
    """S3's error document (a HEAD gets the status alone, as from S3)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>refused by the test proxy</Message>"
        "<RequestId>0000PROXY</RequestId></Error>"
    ).encode()

    async def answer(proxy: AwsProxy, request: web.Request, data: bytes) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response(status=status)
        return web.Response(status=status, body=body, content_type="application/xml")

    return answer


def sqs_error(status: int, code: str, query_code: str | None = None) -> Answer:
    """SQS's JSON-protocol error; ``query_code`` adds the AWS-query-compatible code header."""
    body = orjson.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": "refused by the proxy"})
    headers = {"x-amzn-query-error": f"{query_code};Sender"} if query_code else {}

    async def answer(proxy: AwsProxy, request: web.Request, data: bytes) -> web.StreamResponse:
        return web.Response(
            status=status,
            body=body,
            headers={"Content-Type": "application/x-amz-json-1.0", **headers},
        )

    return answer


async def forbid_if_missing(
    proxy: AwsProxy, request: web.Request, data: bytes
) -> web.StreamResponse:
    """What S3 answers a role without s3:ListBucket: 403, not 404, for an object not there."""
    response = await proxy.forward(request, data)
    if response.status == 404:
        return web.Response(status=403)
    return response


async def drop_connection(proxy: AwsProxy, request: web.Request, data: bytes) -> web.StreamResponse:
    """Close the connection without an answer (the client sees a connection error)."""
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=599)  # never sent: the connection is gone


class AwsProxy:
    """An aiohttp server on 127.0.0.1 forwarding to ``upstream`` unless a rule answers."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.answered: list[Answered] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    def add(self, matches: Matcher, answer: Answer, *, times: int | None = None) -> Rule:
        rule = Rule(matches, answer, times)
        self.rules.append(rule)
        return rule

    async def start(self) -> AwsProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def count(self, operation: str, status: int | EllipsisType | None = ...) -> int:
        """Requests of ``operation`` answered (with ``status``, when given)."""
        return sum(
            1
            for a in self.answered
            if a.call.operation == operation and (status is ... or a.status == status)
        )

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 15.0) -> None:
        """Wait until ``condition`` holds after some request (it is checked after each one)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(condition)

    async def forward(self, request: web.Request, data: bytes) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_HEADERS}
        async with self._session.request(
            request.method, self.upstream + request.raw_path, headers=headers, data=data
        ) as upstream:
            body = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _SKIP_HEADERS}
            return web.Response(status=upstream.status, body=body, headers=out)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        call = classify_request(request)
        data = await request.read()
        rule = next((r for r in self.rules if r.takes(call)), None)
        status: int | None = None
        try:
            if rule is None:
                response: web.StreamResponse = await self.forward(request, data)
            else:
                rule.hits += 1
                response = await rule.answer(self, request, data)
            status = response.status
            return response
        finally:
            self.answered.append(Answered(call, status))
            async with self._changed:
                self._changed.notify_all()
