"""Loopback stand-ins for the error paths the local stack cannot produce.

``StubRuntime`` plays the SageMaker runtime endpoint on a raw asyncio socket server, so a test
decides every byte of each answer (an HTML 502, a 202 with no body or a cut-off one, a request held
without an answer). ``S3Proxy`` sits in front of moto's S3: it counts PUTs, answers scripted S3
errors (``SlowDown``, ``AccessDenied``) and forwards everything else. ``full_backlog_listener``
gives an address whose connects time out (nothing is ever sent to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import aiohttp
import orjson
from aiohttp import web

INFERENCE_ID_HEADER = "x-amzn-sagemaker-inference-id"
OUTPUT_LOCATION_HEADER = "X-Amzn-SageMaker-OutputLocation"
FAILURE_LOCATION_HEADER = "X-Amzn-SageMaker-FailureLocation"


# --- the runtime endpoint ------------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """One request the stub received."""

    target: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def inference_id(self) -> str | None:
        return self.headers.get(INFERENCE_ID_HEADER)


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, written as is. ``declared_length`` lies about the body (a cut-off answer);
    ``close`` drops the connection after it."""

    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    declared_length: int | None = None
    close: bool = False

    def encode(self) -> bytes:
        length = len(self.body) if self.declared_length is None else self.declared_length
        lines = [f"HTTP/1.1 {self.status} {self.reason}", f"Content-Length: {length}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if self.close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def locations(post: Post) -> dict[str, str]:
    return {
        OUTPUT_LOCATION_HEADER: f"s3://stub-bucket/out/{post.inference_id}.out",
        FAILURE_LOCATION_HEADER: f"s3://stub-bucket/failures/{post.inference_id}-error.out",
    }


def accepted(post: Post, body: bytes | None = None, *, declared_length: int | None = None) -> Reply:
    """A well-formed 202 (or one with another ``body``)."""
    if body is None:
        body = orjson.dumps({"InferenceId": post.inference_id})
    return Reply(202, "Accepted", locations(post), body, declared_length=declared_length)


def aws_error(status: int, reason: str, code: str, message: str = "stub") -> Reply:
    """A rest-json error answer as SageMaker sends it."""
    return Reply(
        status,
        reason,
        {"x-amzn-ErrorType": code, "Content-Type": "application/json"},
        orjson.dumps({"message": message}),
    )


Responder = Callable[[Post], Awaitable[Reply | None]]


class StubRuntime:
    """A runtime endpoint on 127.0.0.1 answering each POST with ``await respond(post)``.

    ``None`` from ``respond`` closes the connection without an answer. ``in_flight`` counts
    requests received and not yet answered; ``peak`` is its maximum.
    """

    def __init__(self, respond: Responder) -> None:
        self._respond = respond
        self.posts: list[Post] = []
        self.in_flight = 0
        self.peak = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = False
        self.url = ""

    async def __aenter__(self) -> StubRuntime:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self._closing = True
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed a kept-alive connection
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, value in (line.split(":", 1) for line in lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                post = Post(request_line.split(" ")[1], headers, body)
                self.posts.append(post)
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                try:
                    reply = await self._respond(post)
                finally:
                    self.in_flight -= 1
                if reply is None:
                    return
                writer.write(reply.encode())
                await writer.drain()
                if reply.close or reply.declared_length is not None:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        except asyncio.CancelledError:
            # Our own __aexit__ ending a held request: end quietly (asyncio's start_server logs a
            # handler task that ends cancelled as an error). Any other cancellation propagates.
            if not self._closing:
                raise
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.contextmanager
def full_backlog_listener() -> Iterator[tuple[str, int]]:
    """A 127.0.0.1 port whose accept queue is full, so that a new connect hangs until it times out.

    Nothing accepts: with a backlog of 0, Linux queues one completed connection and then drops
    every further SYN (``net.ipv4.tcp_abort_on_overflow=0``, the default), so the client keeps
    retransmitting its SYN and its connect times out. No request can ever reach it.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        filler.settimeout(5)
        filler.connect(address)  # completes at once on loopback, and fills the queue
        yield address[0], address[1]
    finally:
        filler.close()
        listener.close()


# --- S3 ------------------------------------------------------------------------------------------


def s3_error(status: int, code: str, message: str) -> web.Response:
    """An S3 REST-XML error answer."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>STUBREQUEST</RequestId><HostId>stub</HostId></Error>"
    )
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


# Hop-by-hop and framing headers: the proxy's own HTTP stacks set them.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "expect",
        "content-encoding",
    }
)


class S3Proxy:
    """Forwards S3 requests to ``upstream``, answering the first PUTs from ``script`` instead.

    ``puts`` lists the path of every PUT received, scripted or forwarded.
    """

    def __init__(self, upstream: str, script: list[web.Response] | None = None) -> None:
        self._upstream = upstream.rstrip("/")
        self._script = list(script or [])
        self.puts: list[str] = []
        self.url = ""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[S3Proxy]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            self._session = session
            try:
                yield self
            finally:
                await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "PUT":
            self.puts.append(request.path)
            if self._script:
                return self._script.pop(0)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        async with self._session.request(
            request.method,
            self._upstream + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
            skip_auto_headers=("Content-Type",),
        ) as answer:
            payload = await answer.read()
            reply_headers = {
                k: v for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED
            }
            return web.Response(status=answer.status, body=payload, headers=reply_headers)
