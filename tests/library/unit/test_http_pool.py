"""The lean HTTP/1.1 pool over real TCP on loopback, against a server each test scripts.

The server (``ScriptedServer``) runs one script per accepted connection and records what the
client did: how many connections it opened, how many were open (and how many requests in flight)
at once, every request's bytes, and whether the client closed each connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import trustme

from aiosagemaker._http_pool import (
    ConnectFailed,
    ConnectionPool,
    HttpResponse,
    ProtocolError,
    RequestHead,
)

Script = Callable[["Peer"], Awaitable[None]]


class Peer:
    """One accepted connection, as its script sees it."""

    def __init__(
        self,
        server: ScriptedServer,
        index: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.index = index  # 0 for the first connection accepted
        self.reader = reader
        self.writer = writer
        self.requests: list[bytes] = []
        self.eof = asyncio.Event()  # set once the client closed its side

    async def read_request(self) -> bytes | None:
        """One request (head and ``Content-Length`` body), or ``None`` once the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            request = head + await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.eof.set()
            return None
        self.requests.append(request)
        self.server.requests.append(request)
        self.server.in_flight += 1
        self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
        return request

    async def write(self, data: bytes, *, step: int = 0, pause: float = 0.001) -> None:
        """Write ``data`` whole, or ``step`` bytes a write with ``pause`` seconds between (long
        enough for the client to read each write on its own)."""
        pieces = [data[i : i + step] for i in range(0, len(data), step)] if step else [data]
        for n, piece in enumerate(pieces):
            if n:
                await asyncio.sleep(pause)
            self.writer.write(piece)
            await self.writer.drain()

    async def answer(self, data: bytes, **write: Any) -> None:
        """Write the answer to the last request read (then no longer in flight)."""
        self.server.in_flight -= 1
        await self.write(data, **write)

    async def until_eof(self) -> bytes:
        """Wait for the client to close; return what it sent meanwhile."""
        try:
            data = await self.reader.read()
        except ConnectionError:
            data = b""
        self.eof.set()
        return data


class ScriptedServer:
    """A loopback server running ``script`` for each connection it accepts."""

    def __init__(self, script: Script, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._script = script
        self._ssl = ssl_context
        self.peers: list[Peer] = []
        self.requests: list[bytes] = []
        self.open = self.max_open = 0
        self.in_flight = self.max_in_flight = 0
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def accepts(self) -> int:
        return len(self.peers)

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.errors and exc_info[0] is None:
            raise self.errors[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = Peer(self, len(self.peers), reader, writer)
        self.peers.append(peer)
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            try:
                await self._script(peer)
            finally:
                self.open -= 1
                writer.close()
                await writer.wait_closed()
        except (ConnectionError, asyncio.IncompleteReadError):
            peer.eof.set()
        except asyncio.CancelledError:
            pass  # by __aexit__ only: ending normally spares asyncio's log a cancelled callback
        except Exception as exc:  # a script's own failure: raised again by __aexit__
            self.errors.append(exc)
        finally:
            self._tasks.discard(task)


def _answer(
    body: bytes = b"", *, status: str = "200 OK", version: str = "HTTP/1.1", headers: str = ""
) -> bytes:
    """An answer with a ``Content-Length``; ``headers``: more lines, each ending in CRLF."""
    head = f"{version} {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def answering(answer: bytes | Callable[[bytes], bytes], *, delay: float = 0.0) -> Script:
    """A script answering every request on its connection (after ``delay``) until EOF."""

    async def script(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            if delay:
                await asyncio.sleep(delay)
            await peer.answer(answer(request) if callable(answer) else answer)

    return script


def _echo_target(request: bytes) -> bytes:
    """An answer whose body is the request's target: it tells which request it answers."""
    return _answer(request.split(b" ", 2)[1])


@asynccontextmanager
async def _serving(
    script: Script, *, server_ssl: ssl.SSLContext | None = None, **options: Any
) -> AsyncIterator[tuple[ScriptedServer, ConnectionPool]]:
    """A scripted server and a pool to it (``options``: the pool's), both closed after."""
    options.setdefault("limit", 4)
    options.setdefault("connect_timeout", 2.0)
    options.setdefault("ssl_context", None)
    async with ScriptedServer(script, ssl_context=server_ssl) as server:
        pool = ConnectionPool(host="127.0.0.1", port=server.port, **options)
        try:
            yield server, pool
        finally:
            await pool.close()


def _post(
    pool: ConnectionPool,
    target: str = "/",
    body: bytes = b"",
    *,
    timeout: float | None = 2.0,
    head_only: bool = False,
) -> Coroutine[Any, Any, HttpResponse]:
    head = RequestHead("POST", target, host="127.0.0.1", user_agent="test").render({}, len(body))
    return pool.request(head, body, head_only=head_only, timeout=timeout)


async def _until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


# --- one request ---------------------------------------------------------------------------------


async def test_request_bytes_on_the_wire_and_a_content_length_answer() -> None:
    """The head and body reach the server byte for byte in one request; the answer's status,
    reason, headers (case-insensitive, repeated, values stripped) and body are read whole."""
    answer = (
        b"HTTP/1.1 202 Accepted\r\nX-Amzn-RequestId:   req-1  \r\nx-amzn-part: one\r\n"
        b"X-AMZN-PART: two\r\nContent-Length: 5\r\n\r\nhello"
    )
    head = RequestHead(
        "POST", "/endpoints/e/async-invocations?x=1", host="runtime.example", user_agent="t/1"
    ).render({"X-Amz-Date": "20240101T000000Z"}, 4)
    assert head == (
        b"POST /endpoints/e/async-invocations?x=1 HTTP/1.1\r\nHost: runtime.example\r\n"
        b"User-Agent: t/1\r\nContent-Length: 4\r\nX-Amz-Date: 20240101T000000Z\r\n\r\n"
    )
    async with _serving(answering(answer)) as (server, pool):
        response = await pool.request(head, b"body", timeout=2.0)
    assert server.requests == [head + b"body"]
    assert (response.status, response.reason, response.body) == (202, "Accepted", b"hello")
    assert response.complete
    assert response.headers["x-amzn-requestid"] == "req-1"
    assert response.headers.getall("X-Amzn-Part") == ["one", "two"]
    assert response.headers["CONTENT-LENGTH"] == "5"


# --- keep-alive ----------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection() -> None:
    """Five requests one after another go over one connection, each answered in turn."""
    async with _serving(answering(_echo_target)) as (server, pool):
        bodies = [(await _post(pool, f"/r{n}")).body for n in range(5)]
    assert bodies == [f"/r{n}".encode() for n in range(5)]
    assert server.accepts == 1
    assert len(server.peers[0].requests) == 5


@pytest.mark.parametrize(
    ("version", "headers", "reused"),
    [
        ("HTTP/1.1", "Connection: close\r\n", False),
        ("HTTP/1.1", "Connection: Close\r\n", False),
        ("HTTP/1.0", "", False),
        ("HTTP/1.0", "Connection: keep-alive\r\n", True),
        ("HTTP/1.1", "Connection: keep-alive\r\n", True),
    ],
)
async def test_connection_close_and_http10_answers_are_not_reused(
    version: str, headers: str, reused: bool
) -> None:
    """An answer saying ``Connection: close`` (or HTTP/1.0 without keep-alive) leaves its
    connection to be closed by the client, though the server would take another request."""
    answer = _answer(b"ok", version=version, headers=headers)
    async with _serving(answering(answer)) as (server, pool):
        for _ in range(2):
            assert (await _post(pool)).body == b"ok"
        assert server.accepts == (1 if reused else 2)
        if not reused:
            await asyncio.wait_for(server.peers[0].eof.wait(), 1.0)  # the client closed it


async def test_answer_without_length_is_read_until_close() -> None:
    """No ``Content-Length`` and no chunking: the body is all the server sends until it
    closes, complete; that connection is not reused."""

    async def script(peer: Peer) -> None:
        if await peer.read_request() is None:
            return
        await peer.write(b"HTTP/1.1 200 OK\r\nX-Kind: stream\r\n\r\n")
        await peer.write(b"first part, second part, the end", step=5)

    async with _serving(script) as (server, pool):
        response = await _post(pool)
        assert (response.status, response.body) == (200, b"first part, second part, the end")
        assert response.complete
        assert response.headers["x-kind"] == "stream"
        await _post(pool)
        assert server.accepts == 2


# --- framing -------------------------------------------------------------------------------------

_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
_CHUNKED_BODIES = {
    "plain": b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
    "extensions": b"5;name=value\r\nhello\r\n7 ; a=1;b\r\n, world\r\n0;last\r\n\r\n",
    "trailer": b"5\r\nhello\r\n7\r\n, world\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
    "large chunk": b"1A\r\nhello, world, and the rest\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("step", [0, 1, 3], ids=["whole", "byte by byte", "3 bytes"])
@pytest.mark.parametrize("kind", list(_CHUNKED_BODIES))
async def test_chunked_body(kind: str, step: int) -> None:
    """A chunked body is joined whatever the writes' sizes (one byte at a time too), with
    chunk extensions and a trailer ignored; the connection then serves the next request,
    so the body's end was found exactly."""
    answer = _CHUNKED_HEAD + _CHUNKED_BODIES[kind]
    expected = b"hello, world, and the rest" if kind == "large chunk" else b"hello, world"

    async def script(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.answer(answer, step=step)
            await answering(_answer(b"next"))(peer)

    async with _serving(script) as (server, pool):
        response = await _post(pool)
        assert (response.status, response.body, response.complete) == (200, expected, True)
        assert (await _post(pool)).body == b"next"
    assert server.accepts == 1


@pytest.mark.parametrize(
    ("answer", "head_only"),
    [
        (b"HTTP/1.1 204 No Content\r\n\r\n", False),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 40\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", True),
    ],
    ids=["204", "304 with a length", "head_only", "head_only chunked"],
)
async def test_answers_without_a_body(answer: bytes, head_only: bool) -> None:
    """204, 304 and a ``head_only`` request's answer end at their head (whatever length they
    announce): the call returns at once and the connection serves the next request."""

    async def script(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.answer(answer)
            await answering(_answer(b"next"))(peer)

    async with _serving(script) as (server, pool):
        response = await _post(pool, head_only=head_only, timeout=1.0)
        assert (response.body, response.complete) == (b"", True)
        assert (await _post(pool)).body == b"next"
    assert server.accepts == 1


@pytest.mark.parametrize("separately", [False, True], ids=["one write", "two writes"])
async def test_interim_100_continue_is_skipped(separately: bool) -> None:
    """A ``100 Continue`` before the real answer is skipped, in the same write or its own."""
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    final = _answer(b"done", status="202 Accepted")

    async def script(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if separately:
                await peer.write(interim)
                await asyncio.sleep(0.01)
                await peer.answer(final)
            else:
                await peer.answer(interim + final)

    async with _serving(script) as (server, pool):
        for _ in range(2):
            response = await _post(pool)
            assert (response.status, response.reason, response.body) == (202, "Accepted", b"done")
    assert server.accepts == 1


async def test_answer_split_at_every_byte_boundary_of_the_head() -> None:
    """However the head is split across two writes (the blank line's four bytes too), the
    answer is the same; all on one connection."""
    answer = _answer(b"body!", status="201 Created", headers="X-A: 1\r\n")
    head_length = answer.index(b"\r\n\r\n") + 4

    async def script(peer: Peer) -> None:
        split = 1
        while await peer.read_request() is not None:
            await peer.write(answer[:split])
            await asyncio.sleep(0.002)
            await peer.answer(answer[split:])
            split += 1

    async with _serving(script) as (server, pool):
        for _ in range(1, head_length + 1):
            response = await _post(pool)
            assert (response.status, response.reason) == (201, "Created")
            assert (response.headers["x-a"], response.body) == ("1", b"body!")
    assert server.accepts == 1


async def test_bytes_after_an_answer_drop_the_connection() -> None:
    """Bytes after a complete answer (nobody asked for them) make the connection unfit: the
    next request opens another and never reads them as its answer."""

    async def script(peer: Peer) -> None:
        if peer.index == 0:
            if await peer.read_request() is not None:
                await peer.answer(_answer(b"one") + _answer(b"stray"))
                await peer.until_eof()
        else:
            await answering(_answer(b"two"))(peer)

    async with _serving(script) as (server, pool):
        assert (await _post(pool)).body == b"one"
        assert (await _post(pool)).body == b"two"
        assert server.accepts == 2


# --- the limit -----------------------------------------------------------------------------------


async def test_limit_bounds_connections_and_every_request_is_served() -> None:
    """With ``limit=2``, five concurrent calls to a slow server use at most two connections
    (and two requests in flight) at once, and each gets its own answer."""
    async with _serving(answering(_echo_target, delay=0.05), limit=2) as (server, pool):
        responses = await asyncio.gather(*(_post(pool, f"/r{n}") for n in range(5)))
    assert [r.body for r in responses] == [f"/r{n}".encode() for n in range(5)]
    assert (server.max_open, server.max_in_flight, server.accepts) == (2, 2, 2)


async def test_limit_holds_when_answers_close_their_connections() -> None:
    """With ``limit=1`` and every answer closing its connection, the room a closed connection
    frees goes to one caller only: the next queued one, or a caller that just got its answer
    and sends again at once, never both (at most one request in flight at the server)."""
    answer = _answer(b"ok", headers="Connection: close\r\n")
    async with _serving(answering(answer, delay=0.02), limit=1) as (server, pool):

        async def caller() -> list[int]:
            return [(await _post(pool)).status for _ in range(3)]

        results = await asyncio.gather(*(caller() for _ in range(3)))
    assert results == [[200] * 3] * 3
    assert server.max_in_flight == 1


async def test_cancelled_waiter_does_not_leak_room() -> None:
    """With ``limit=1``, a call cancelled while waiting for the busy connection takes no room
    with it: once the first call ends, a later call gets the connection."""
    release = asyncio.Event()

    async def script(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await release.wait()
            await peer.answer(_answer(b"ok"))

    async with _serving(script, limit=1) as (server, pool):
        first = asyncio.create_task(_post(pool))
        await _until(lambda: len(server.requests) == 1)
        waiting = asyncio.create_task(_post(pool))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        assert (await first).body == b"ok"
        assert (await _post(pool, timeout=1.0)).body == b"ok"
        assert server.accepts == 1


async def test_waiter_cancelled_as_room_frees_passes_it_on() -> None:
    """With ``limit=1`` and a ``Connection: close`` answer, a waiter cancelled in the very tick
    the room is handed to it passes that room on: the next waiter connects and is answered."""
    release = asyncio.Event()

    async def script(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await release.wait()
            await peer.answer(_answer(b"ok", headers="Connection: close\r\n"))

    async with _serving(script, limit=1) as (server, pool):
        tasks: dict[str, asyncio.Task[HttpResponse]] = {}

        async def first() -> HttpResponse:
            response = await _post(pool)
            tasks["second"].cancel()  # before the second caller runs with the room it was given
            return response

        tasks["first"] = asyncio.create_task(first())
        await _until(lambda: len(server.requests) == 1)
        tasks["second"] = asyncio.create_task(_post(pool))
        tasks["third"] = asyncio.create_task(_post(pool))
        await asyncio.sleep(0.01)
        release.set()
        assert (await tasks["first"]).body == b"ok"
        with pytest.raises(asyncio.CancelledError):
            await tasks["second"]
        assert (await asyncio.wait_for(tasks["third"], 1.0)).body == b"ok"
        assert server.accepts == 2


async def test_waiting_for_room_past_the_timeout_is_a_connection_timeout() -> None:
    """A call that waits for room longer than its ``timeout`` fails with aiohttp's
    ``ConnectionTimeoutError`` (nothing was sent), and leaves the room to the next call."""
    release = asyncio.Event()

    async def script(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await release.wait()
            await peer.answer(_answer(b"ok"))

    async with _serving(script, limit=1) as (server, pool):
        first = asyncio.create_task(_post(pool))
        await _until(lambda: len(server.requests) == 1)
        with pytest.raises(aiohttp.ConnectionTimeoutError):
            await _post(pool, timeout=0.05)
        release.set()
        assert (await first).body == b"ok"
        assert (await _post(pool, timeout=1.0)).body == b"ok"
        assert len(server.requests) == 2


# --- errors --------------------------------------------------------------------------------------


async def test_connection_refused_is_connect_failed() -> None:
    """A refused connection raises ``ConnectFailed`` (an ``aiohttp.ClientConnectionError``),
    and the failed attempt frees its room: with ``limit=1`` a second attempt fails the same."""
    with socket.socket() as bound:  # bound, never listening: connections to it are refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        pool = ConnectionPool(
            host="127.0.0.1", port=port, ssl_context=None, limit=1, connect_timeout=2.0
        )
        try:
            for _ in range(2):
                with pytest.raises(ConnectFailed) as caught:
                    await _post(pool, timeout=1.0)
                assert isinstance(caught.value, aiohttp.ClientConnectionError)
                assert f"127.0.0.1:{port}" in str(caught.value)
        finally:
            await pool.close()


async def test_server_closing_without_an_answer_is_server_disconnected() -> None:
    """A server that reads the request and closes without a status line raises
    ``aiohttp.ServerDisconnectedError``."""

    async def script(peer: Peer) -> None:
        await peer.read_request()

    async with _serving(script) as (_, pool):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await _post(pool)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\nonly part",
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwor",
    ],
    ids=["content-length", "chunked"],
)
async def test_body_broken_off_returns_an_incomplete_answer(answer: bytes) -> None:
    """The head arrives, then the server closes mid-body: the answer comes back with its
    status and ``complete=False``, not an error; the next call opens a new connection."""

    async def script(peer: Peer) -> None:
        if peer.index == 0:
            if await peer.read_request() is not None:
                await peer.answer(answer)
        else:
            await answering(_answer(b"next"))(peer)

    async with _serving(script) as (server, pool):
        response = await _post(pool)
        assert (response.status, response.reason, response.complete) == (202, "Accepted", False)
        assert (await _post(pool)).body == b"next"
        assert server.accepts == 2


async def test_total_timeout_raises_and_drops_the_connection() -> None:
    """A ``timeout`` shorter than the server's delay raises ``TimeoutError``; the late answer
    is never read: the next call opens a new connection and gets its own answer."""

    async def script(peer: Peer) -> None:
        if peer.index == 0:
            if await peer.read_request() is not None:
                await asyncio.sleep(0.2)
                await peer.answer(_answer(b"late"))
                await peer.until_eof()
        else:
            await answering(_answer(b"fresh"))(peer)

    async with _serving(script) as (server, pool):
        with pytest.raises(TimeoutError) as caught:
            await _post(pool, timeout=0.05)
        assert not isinstance(caught.value, aiohttp.SocketTimeoutError)
        await asyncio.sleep(0.25)  # the late answer has been written by now
        assert (await _post(pool)).body == b"fresh"
        assert server.accepts == 2


async def test_total_timeout_bounds_a_trickling_answer() -> None:
    """``timeout`` bounds the whole call even while bytes keep arriving."""

    async def script(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.write(_answer(b"x" * 100), step=1, pause=0.01)

    async with _serving(script, read_timeout=0.1) as (_, pool):
        with pytest.raises(TimeoutError) as caught:
            await _post(pool, timeout=0.15)
        assert not isinstance(caught.value, aiohttp.SocketTimeoutError)


async def test_read_timeout_raises_socket_timeout() -> None:
    """No byte within ``read_timeout`` raises ``aiohttp.SocketTimeoutError``, and the
    connection is dropped (the server sees it closed)."""

    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.until_eof()

    async with _serving(script, read_timeout=0.05) as (server, pool):
        with pytest.raises(aiohttp.SocketTimeoutError):
            await _post(pool, timeout=2.0)
        await asyncio.wait_for(server.peers[0].eof.wait(), 1.0)


async def test_trickle_faster_than_the_read_timeout_completes() -> None:
    """A server sending a piece every 0.04 s, 0.4 s in all, completes under a 0.15 s
    ``read_timeout``: the read timeout is between bytes, not for the whole answer."""
    answer = _answer(b"trickled body")

    async def script(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await asyncio.sleep(0.04)
            await peer.answer(answer, step=len(answer) // 10 + 1, pause=0.04)

    async with _serving(script, read_timeout=0.15) as (_, pool):
        started = asyncio.get_running_loop().time()
        response = await _post(pool, timeout=2.0)
        elapsed = asyncio.get_running_loop().time() - started
    assert (response.body, response.complete) == (b"trickled body", True)
    assert elapsed > 0.3


async def test_a_reused_connection_keeps_one_timer() -> None:
    """Requests on a kept-alive connection arm no timer of their own: the one an earlier request
    armed stays (it finds nothing to do once its request has ended), and closing the connection
    cancels it."""
    async with _serving(answering(_answer(b"ok")), read_timeout=30.0) as (server, pool):
        await _post(pool, timeout=30.0)
        [connection] = pool._idle
        timer = connection._timer
        assert timer is not None
        for _ in range(3):
            assert (await _post(pool, timeout=30.0)).body == b"ok"
        assert pool._idle == [connection] and connection._timer is timer
        assert server.accepts == 1
    await _until(lambda: connection.closed)
    assert timer.cancelled() and connection._timer is None


async def test_timeouts_count_from_each_request_on_a_reused_connection() -> None:
    """On a kept-alive connection, the timer an earlier request armed fires on time for a later
    one's deadlines: a read timeout counts from the later request (not from the one that armed
    it, nor never), and a shorter total timeout than the earlier request's is kept."""

    async def script(peer: Peer) -> None:
        # Answers the first request at once, then nothing, until the client closes.
        if await peer.read_request() is not None:
            await peer.answer(_answer(b"first"))
        await peer.read_request()
        await peer.until_eof()

    loop = asyncio.get_running_loop()
    async with _serving(script, read_timeout=0.3) as (server, pool):
        assert (await _post(pool, timeout=5.0)).body == b"first"
        await asyncio.sleep(0.15)  # the first request's read-timeout timer fires mid-way below
        started = loop.time()
        with pytest.raises(aiohttp.SocketTimeoutError):
            await _post(pool, timeout=5.0)
        assert 0.25 < loop.time() - started < 2.0
        assert server.accepts == 1

    async with _serving(script) as (server, pool):
        assert (await _post(pool, timeout=30.0)).body == b"first"
        started = loop.time()
        with pytest.raises(TimeoutError) as caught:
            await _post(pool, timeout=0.1)
        assert not isinstance(caught.value, aiohttp.SocketTimeoutError)
        assert loop.time() - started < 2.0
        assert server.accepts == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nhello\r\n0\r\n\r\n",
    ],
    ids=[
        "ssh banner",
        "no status code",
        "http/2",
        "empty head",
        "header without colon",
        "bad length",
        "bad chunk size",
        "negative chunk size",
    ],
)
async def test_garbage_answer_is_a_protocol_error(answer: bytes) -> None:
    """An answer that is not HTTP/1.1 raises ``ProtocolError`` (an ``aiohttp.ClientError``) and
    drops the connection."""

    async def script(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.answer(answer)
            await peer.until_eof()

    async with _serving(script) as (server, pool):
        with pytest.raises(ProtocolError) as caught:
            await _post(pool, timeout=1.0)
        assert isinstance(caught.value, aiohttp.ClientError)
        await asyncio.wait_for(server.peers[0].eof.wait(), 1.0)


@pytest.mark.parametrize("ended", [False, True], ids=["unterminated", "terminated"])
async def test_over_long_head_is_a_protocol_error(ended: bool) -> None:
    """A head over 64 KiB raises ``ProtocolError``, whether or not its blank line has come
    (an ended head in one write arrives in one read, so its length must be checked too)."""
    head = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n"
    answer = head + b"Content-Length: 0\r\n\r\n" if ended else head

    async def script(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.answer(answer)
            await peer.until_eof()

    async with _serving(script) as (_, pool):
        with pytest.raises(ProtocolError):
            await _post(pool, timeout=1.0)


# --- cancellation, idle connections, close -------------------------------------------------------


async def test_cancelled_request_drops_its_connection() -> None:
    """A call cancelled while waiting for its answer drops its connection: the next call opens
    a new one and gets its own answer, never the cancelled call's late one."""
    release = asyncio.Event()

    async def script(peer: Peer) -> None:
        if peer.index == 0:
            if await peer.read_request() is not None:
                await release.wait()
                await peer.answer(_answer(b"late"))
                await peer.until_eof()
        else:
            await answering(_answer(b"fresh"))(peer)

    async with _serving(script, limit=1) as (server, pool):
        task = asyncio.create_task(_post(pool))
        await _until(lambda: len(server.requests) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        following = asyncio.create_task(_post(pool, timeout=1.0))  # before the late answer
        await asyncio.sleep(0.01)
        release.set()
        assert (await following).body == b"fresh"
        assert server.accepts == 2
        await asyncio.wait_for(server.peers[0].eof.wait(), 1.0)


async def test_idle_connection_closed_by_the_server_is_not_reused() -> None:
    """A keep-alive connection the server closes while idle is forgotten: the next call opens
    a new connection and succeeds, with no error."""

    async def script(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.answer(_answer(b"ok"))  # then the script ends: the server closes

    async with _serving(script) as (server, pool):
        assert (await _post(pool)).body == b"ok"
        await asyncio.sleep(0.05)
        assert (await _post(pool)).body == b"ok"
        assert server.accepts == 2


async def test_connections_idle_past_keepalive_timeout_are_closed() -> None:
    """A connection idle for less than ``keepalive_timeout`` is reused; one idle longer is
    closed by the pool (the server sees it close) and the next call opens a new one."""
    async with _serving(answering(_answer(b"ok")), keepalive_timeout=0.2) as (server, pool):
        await _post(pool)
        await asyncio.sleep(0.05)
        await _post(pool)
        assert server.accepts == 1
        await asyncio.wait_for(server.peers[0].eof.wait(), 1.0)
        await _post(pool)
        assert server.accepts == 2


async def test_force_close_opens_a_connection_per_request() -> None:
    """``force_close=True``: every request has a connection of its own, closed after it."""
    async with _serving(answering(_answer(b"ok")), force_close=True) as (server, pool):
        for _ in range(3):
            assert (await _post(pool)).body == b"ok"
        assert server.accepts == 3
        await asyncio.wait_for(server.peers[2].eof.wait(), 1.0)


async def test_close_closes_idle_connections_and_refuses_requests() -> None:
    """``close()`` closes the idle connections (the server sees EOF) and a request after it
    raises ``aiohttp.ClientConnectionError`` without connecting."""
    async with _serving(answering(_answer(b"ok"))) as (server, pool):
        await asyncio.gather(_post(pool), _post(pool))
        assert server.accepts == 2
        await pool.close()
        await asyncio.wait_for(asyncio.gather(*(p.eof.wait() for p in server.peers)), 1.0)
        with pytest.raises(aiohttp.ClientConnectionError):
            await _post(pool)
        assert server.accepts == 2


async def test_close_fails_requests_under_way_and_waiting() -> None:
    """``close()`` fails the call in flight (server disconnected) and the one waiting for room,
    both as ``aiohttp.ClientConnectionError``."""

    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.until_eof()

    async with _serving(script, limit=1) as (server, pool):
        in_flight = asyncio.create_task(_post(pool))
        await _until(lambda: len(server.requests) == 1)
        waiting = asyncio.create_task(_post(pool))
        await asyncio.sleep(0.01)
        await pool.close()
        outcomes = await asyncio.wait_for(
            asyncio.gather(in_flight, waiting, return_exceptions=True), 1.0
        )
    assert isinstance(outcomes[0], aiohttp.ServerDisconnectedError), outcomes
    assert isinstance(outcomes[1], aiohttp.ClientConnectionError), outcomes
    assert server.accepts == 1


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_tls_with_the_ca_succeeds(
    authority: trustme.CA, server_context: ssl.SSLContext
) -> None:
    """Over TLS, a client trusting the server's CA is answered, on one connection throughout."""
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    async with _serving(
        answering(_echo_target), server_ssl=server_context, ssl_context=client_context
    ) as (server, pool):
        for n in range(2):
            assert (await _post(pool, f"/tls{n}")).body == f"/tls{n}".encode()
        assert server.accepts == 1


async def test_tls_without_the_ca_is_connect_failed(server_context: ssl.SSLContext) -> None:
    """Over TLS, a client not trusting the server's CA raises ``ConnectFailed`` naming
    CERTIFICATE_VERIFY_FAILED, and no request reaches the server."""
    async with _serving(
        answering(_answer(b"ok")),
        server_ssl=server_context,
        ssl_context=ssl.create_default_context(),
    ) as (server, pool):
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await _post(pool, timeout=2.0)
        assert server.requests == []
