"""A lean HTTP/1.1 client for the hot calls: one keep-alive pool per host, one request at a time
on each connection, the whole answer parsed in the protocol's ``data_received``.

Why not aiohttp for these calls: a signed POST through ``ClientSession`` builds a request object,
merges headers into multidicts, wraps the body in a payload writer, runs a response object, a
stream reader and two timers; at 100 calls in flight that is most of a submit's CPU and most of
its short-lived allocations (which the cyclic GC then promotes and scans). Here a request is one
``write`` of a prepared head and body, and the answer one parse of bytes already received.

What it does not do, and the callers leave to aiohttp: proxies, custom resolvers and socket
factories (see ``HttpSettings.lean_pool``), compression, cookies, redirects, pipelining.

Errors are aiohttp's classes, so a caller handles one hierarchy whichever client sent the call:

- :class:`ConnectFailed` (an ``aiohttp.ClientConnectionError``) or
  ``aiohttp.ConnectionTimeoutError``: no connection, so nothing was sent;
- ``aiohttp.ServerDisconnectedError``, ``aiohttp.ClientOSError``: connected, then no status line;
- ``TimeoutError`` (the call's total) or ``aiohttp.SocketTimeoutError`` (no data within the read
  timeout): connected, no complete answer;
- :class:`ProtocolError` (an ``aiohttp.ClientError``): an answer that is not HTTP/1.1.

An answer whose status line and headers arrived but whose body broke off is returned with
``complete=False`` rather than raised: the status alone says whether the request was accepted.
A body longer than the request's ``max_body`` is cut there (``cut=True``): the rest is never
read, and the connection is dropped; with ``partial=False`` and a longer ``Content-Length``, none of
it is read.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Final

import aiohttp
from multidict import CIMultiDict, MultiMapping

if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping

__all__ = ["ConnectFailed", "ConnectionPool", "HttpResponse", "ProtocolError", "RequestHead"]

# A status line and headers longer than this are not an AWS answer (aiohttp's limit is 8 KiB a line).
_MAX_HEAD_BYTES: Final = 64 * 1024
_HEAD_END: Final = b"\r\n\r\n"
_NO_BODY_STATUS: Final = frozenset({204, 304})

# What a connection is reading.
_IDLE, _HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(5)
# Where a chunked body's reader stands, when it is not inside a chunk (``_remaining`` >= 0).
_AT_SIZE_LINE, _AT_TRAILER = -1, -2


class ConnectFailed(aiohttp.ClientConnectionError):
    """No connection to the host (refused, unreachable, DNS, TLS handshake): nothing was sent."""


class ProtocolError(aiohttp.ClientError):
    """The peer's answer is not HTTP/1.1 as this client reads it."""


class RequestHead:
    """A request's head, its fixed part (request line, ``Host``, ``User-Agent``) made once: each
    request adds its own headers, and ``Content-Length`` when it has a body."""

    __slots__ = ("_start",)

    def __init__(self, method: str, target: str, *, host: str, user_agent: str) -> None:
        self._start = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}"

    def render(self, headers: Mapping[str, str], content_length: int | None = None) -> bytes:
        parts = [self._start]
        if content_length is not None:
            parts += ("\r\nContent-Length: ", str(content_length))
        for name, value in headers.items():
            parts += ("\r\n", name, ": ", value)
        parts.append("\r\n\r\n")
        return "".join(parts).encode("utf-8")


class HttpResponse:
    """One answer: status, reason, headers (case-insensitive), body.

    ``complete`` is ``False`` when the body broke off after the headers (the status stands);
    ``cut`` is ``True`` when the body was longer than the request's ``max_body`` and only that much
    of it was read.
    """

    __slots__ = ("body", "complete", "cut", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: MultiMapping[str]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = b""
        self.complete = True
        self.cut = False


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request is written whole, its answer parsed as it arrives."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._state = _IDLE
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self._response: HttpResponse | None = None
        self._head_only = False
        self._max_body: int | None = None
        self._partial = True
        self._received = 0  # body bytes so far, of a chunked or read-until-close body
        self._remaining = 0
        self._parts: list[bytes] = []
        # The connection's timer, and when it fires: armed by a request, left armed when the
        # request ends (it then finds nothing to do), so that a request costs no timer of its own
        # while one already armed fires no later than its deadlines (see send and _on_timer).
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline = 0.0
        self._last_read = 0.0
        self.reusable = True
        self.closed = False
        self.idle_since = 0.0

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's too)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # An answer nobody asked for: this connection's framing can no longer be trusted.
            self.reusable = False
            self.abort()
            return
        if self._pool.read_timeout is not None:
            self._last_read = self._loop.time()
        self._buffer += data
        try:
            self._parse()
        except ProtocolError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pool._forget(self)
        if self._waiter is None or self._waiter.done():
            return
        if self._state == _UNTIL_CLOSE:
            self._take_until_close()
            if self._waiter is not None:
                self._finish(b"".join(self._parts), complete=True)
        elif self._response is not None:
            self._finish(b"".join(self._parts), complete=False)
        elif exc is None:
            self._fail(aiohttp.ServerDisconnectedError())
        else:
            error = aiohttp.ClientOSError(getattr(exc, "errno", None) or 0, str(exc))
            error.__cause__ = exc
            self._fail(error)

    # --- one request -----------------------------------------------------------------------------

    def send(
        self,
        data: bytes,
        *,
        head_only: bool,
        timeout: float | None,
        max_body: int | None,
        partial: bool,
    ) -> asyncio.Future[HttpResponse]:
        transport = self.transport
        assert transport is not None and self._waiter is None
        waiter = self._waiter = self._loop.create_future()
        self._state = _HEAD
        self._head_only = head_only
        self._max_body = max_body
        self._partial = partial
        self._received = 0
        self._response = None
        self._parts = []
        now = self._loop.time()
        self._deadline = now + timeout if timeout is not None else float("inf")
        read_timeout = self._pool.read_timeout
        if read_timeout is not None:
            self._last_read = now
        wake = min(self._deadline, now + read_timeout if read_timeout is not None else float("inf"))
        if wake != float("inf"):
            timer = self._timer
            if timer is None or self._timer_at > wake:
                # None armed (or one too late for this request): a timer per request only then;
                # one that fires sooner finds this request's deadlines and waits again for them.
                if timer is not None:
                    timer.cancel()
                self._arm(wake)
        transport.write(data)
        return waiter

    def _arm(self, when: float) -> None:
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return  # the request that armed it has ended: idle, nothing to time
        now = self._loop.time()
        read_timeout = self._pool.read_timeout
        if now >= self._deadline:
            error: Exception = TimeoutError()
        elif read_timeout is not None and now >= self._last_read + read_timeout:
            error = aiohttp.SocketTimeoutError("Timeout on reading data from socket")
        else:  # data arrived since, or another request's timer: wait for this one's deadlines
            wake = self._deadline
            if read_timeout is not None:
                wake = min(wake, self._last_read + read_timeout)
            if wake != float("inf"):
                self._arm(wake)
            return
        self._fail(error)

    def _parse(self) -> None:
        buffer = self._buffer
        while True:
            state = self._state
            if state == _HEAD:
                end = buffer.find(_HEAD_END)
                if end > _MAX_HEAD_BYTES or (end < 0 and len(buffer) > _MAX_HEAD_BYTES):
                    raise ProtocolError("the answer's headers are too long")
                if end < 0:
                    return
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._read_head(head)
            elif state == _LENGTH:
                remaining = self._remaining
                if len(buffer) < remaining:
                    return
                body = bytes(buffer[:remaining])
                del buffer[:remaining]
                self._finish(body, complete=True)
                return
            elif state == _UNTIL_CLOSE:
                self._take_until_close()
                return
            elif state == _CHUNKED:
                if not self._read_chunks():
                    return
            else:  # _IDLE after a finished answer
                return

    def _read_head(self, head: bytes) -> None:
        # One decode of the whole head (as aiohttp reads values: UTF-8, undecodable bytes kept).
        lines = head.decode("utf-8", "surrogateescape").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit() or not code.isascii():
            raise ProtocolError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        status = int(code)
        if 100 <= status < 200:
            return  # an interim answer (100 Continue): the real one follows
        del lines[0]
        # Comprehensions, not a loop of appends: the head of every answer passes here.
        parts = [line.partition(":") for line in lines]
        pairs = [(name.strip(), value.strip()) for name, colon, value in parts if colon]
        if len(pairs) != len(parts):
            raise ProtocolError("a header line without a colon")
        headers: CIMultiDict[str] = CIMultiDict(pairs)
        self._response = HttpResponse(status, rest[4:], headers)
        connection = headers.get("Connection", "").lower()
        if connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive"):
            self.reusable = False
        if self._head_only or status in _NO_BODY_STATUS:
            self._finish(b"", complete=True)
            return
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            self._state = _CHUNKED
            self._remaining = _AT_SIZE_LINE
            return
        length = headers.get("Content-Length")
        if length is None:
            self._state = _UNTIL_CLOSE
            self.reusable = False
            return
        if not (length.isascii() and length.isdigit()):
            raise ProtocolError(f"a Content-Length that is not a number: {length[:40]!r}")
        self._state = _LENGTH
        self._remaining = int(length)
        if self._max_body is not None and self._remaining > self._max_body:
            self._response.cut = True  # never read the rest
            if not self._partial:
                self._finish(b"", complete=True)
                return
            self._remaining = self._max_body

    def _read_chunks(self) -> bool:
        """Read what the buffer holds of a chunked body; ``True`` once it is whole."""
        buffer = self._buffer
        while True:
            remaining = self._remaining
            if remaining == _AT_SIZE_LINE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > _MAX_HEAD_BYTES:
                        raise ProtocolError("a chunk size line that does not end")
                    return False
                size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
                # Hex digits only: int() would also take "-2", "+5", "0x5" or "5_0".
                if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
                    raise ProtocolError(f"a bad chunk size: {size_text[:20]!r}")
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise ProtocolError(f"a bad chunk size: {size_text[:20]!r}") from None
                del buffer[: end + 2]
                self._remaining = size if size else _AT_TRAILER
            elif remaining == _AT_TRAILER:
                # After the last chunk: trailer lines (ignored), then an empty line.
                if buffer[:2] == b"\r\n":
                    del buffer[:2]
                else:
                    end = buffer.find(_HEAD_END)
                    if end > _MAX_HEAD_BYTES or (end < 0 and len(buffer) > _MAX_HEAD_BYTES):
                        raise ProtocolError("a chunked trailer that is too long")
                    if end < 0:
                        return False
                    del buffer[: end + 4]
                self._finish(b"".join(self._parts), complete=True)
                return True
            else:
                if len(buffer) < remaining + 2:
                    return False
                self._parts.append(bytes(buffer[:remaining]))
                del buffer[: remaining + 2]
                self._remaining = _AT_SIZE_LINE
                self._received += remaining
                if self._over_max_body():
                    return True

    def _take_until_close(self) -> None:
        """Move a read-until-close body's bytes out of the buffer (and stop at ``max_body``)."""
        self._received += len(self._buffer)
        self._parts.append(bytes(self._buffer))
        self._buffer.clear()
        self._over_max_body()

    def _over_max_body(self) -> bool:
        """Past ``max_body``: finish with what fits, and read no more of this answer."""
        limit = self._max_body
        if limit is None or self._received <= limit:
            return False
        assert self._response is not None
        self._response.cut = True
        self._finish(b"".join(self._parts)[:limit], complete=True)
        return True

    # --- ending a request ------------------------------------------------------------------------

    def _finish(self, body: bytes, *, complete: bool) -> None:
        response, waiter = self._response, self._waiter
        assert response is not None and waiter is not None
        response.body = body
        response.complete = complete
        self._end()
        if not complete or response.cut or self._buffer:
            self.reusable = False  # broken off, cut short, or bytes nobody asked for follow
        if not waiter.done():
            waiter.set_result(response)
        self._pool._release(self)

    def _fail(self, error: BaseException) -> None:
        waiter = self._waiter
        self._end()
        self.reusable = False
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self._pool._release(self)

    def _end(self) -> None:
        # The timer stays armed: the next request on this connection most likely needs one at
        # about the same time, and when it fires with no request under way it does nothing.
        self._waiter = None
        self._response = None
        self._parts = []
        self._state = _IDLE

    def abort(self) -> None:
        """Drop the connection now (a cancelled or failed request leaves it in an unknown state)."""
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()


class ConnectionPool:
    """Keep-alive connections to one ``host:port`` (over TLS with ``ssl_context``), at most
    ``limit`` at once; callers past the limit wait for a connection in order.

    :param connect_timeout: for opening a connection (TCP and TLS handshake).
    :param read_timeout: the longest wait for data once a request is written (``None``: none).
    :param keepalive_timeout: an idle connection older than this is closed, not reused (under
        the 20 s or more that AWS front ends keep one).
    :param force_close: a new connection per request (``AioConfig(connector_args=...)``'s).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        limit: int,
        connect_timeout: float | None,
        read_timeout: float | None = None,
        keepalive_timeout: float = 15.0,
        force_close: bool = False,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._limit = limit
        self._connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._keepalive = keepalive_timeout
        self._force_close = force_close
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._opening = 0
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._prune_timer: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(
        self,
        head: bytes,
        body: bytes = b"",
        *,
        head_only: bool = False,
        timeout: float | None,
        max_body: int | None = None,
        partial: bool = True,
    ) -> HttpResponse:
        """Write ``head`` (request line and headers, ending in an empty line) and ``body`` on a
        pooled connection; return the answer. ``timeout`` bounds the whole call, connecting
        included. ``head_only``: the answer has no body (a ``HEAD`` request). ``max_body``: read
        at most this much of the answer's body (the answer says ``cut`` when there was more);
        with ``partial=False``, none of a body whose ``Content-Length`` says it is longer."""
        if self._closed:
            raise aiohttp.ClientConnectionError("the connection pool is closed")
        connection = self._take_idle()
        remaining = timeout
        if connection is None:
            if timeout is None:
                connection = await self._acquire()
            else:
                deadline = self.loop.time() + timeout
                try:
                    async with asyncio.timeout_at(deadline):
                        connection = await self._acquire()
                except TimeoutError as exc:
                    # Still not connected when the call's time ran out: nothing was sent.
                    raise aiohttp.ConnectionTimeoutError(
                        f"no connection to {self.host}:{self.port} within {timeout} s"
                    ) from exc
                remaining = max(0.0, deadline - self.loop.time())
        waiter = connection.send(
            head + body if body else head,
            head_only=head_only,
            timeout=remaining,
            max_body=max_body,
            partial=partial,
        )
        try:
            return await waiter
        except BaseException:
            if connection._waiter is waiter:  # cancelled mid-request: the state is unknown
                connection._fail(asyncio.CancelledError())
            raise

    async def close(self) -> None:
        """Close every connection; requests under way fail."""
        self._closed = True
        if self._prune_timer is not None:
            self._prune_timer.cancel()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(aiohttp.ClientConnectionError("the connection pool is closed"))
        connections = [*self._idle, *self._busy]
        self._idle.clear()
        for connection in connections:
            connection.close()
        await asyncio.sleep(0)  # let the transports run their connection_lost

    # --- connections -----------------------------------------------------------------------------

    def _take_idle(self) -> _Connection | None:
        """The most recently used idle connection still fit for a request, if any."""
        idle = self._idle
        if not idle:
            return None
        now = self.loop.time()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self._keepalive:
                self._busy.add(connection)
                return connection
            connection.close()
        return None

    async def _acquire(self) -> _Connection:
        """A connection, when ``request`` found none idle: a new one, or one handed over."""
        if len(self._busy) + self._opening >= self._limit:
            waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._release_unused(waiter.result())
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
            if handed is not None:
                if not handed.closed and not handed.transport.is_closing():  # type: ignore[union-attr]
                    return handed  # already counted busy by _release
                # Closed by the server in the moment it was handed over: open one in its room.
                self._busy.discard(handed)
                handed.close()
            else:
                self._opening -= 1  # the room _wake_one held for us; _open counts it again
        return await self._open()

    async def _open(self) -> _Connection:
        self._opening += 1
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    _, connection = await self.loop.create_connection(
                        lambda: _Connection(self),
                        self.host,
                        self.port,
                        ssl=self._ssl,
                        server_hostname=self.host if self._ssl is not None else None,
                    )
            except TimeoutError as exc:  # also an OSError: caught first
                raise aiohttp.ConnectionTimeoutError(
                    f"Connection timeout to host {self.host}:{self.port}"
                ) from exc
            except OSError as exc:  # refused, unreachable, DNS, TLS handshake (ssl.SSLError)
                raise ConnectFailed(
                    f"Cannot connect to host {self.host}:{self.port} "
                    f"ssl:{self._ssl is not None} [{exc}]"
                ) from exc
        except BaseException:
            self._opening -= 1
            self._wake_one()  # the room this attempt held is free again
            raise
        self._opening -= 1
        self._busy.add(connection)
        return connection

    def _release(self, connection: _Connection) -> None:
        """A request on ``connection`` ended: hand it to a waiter, keep it idle, or drop it."""
        self._busy.discard(connection)
        if (
            connection.reusable
            and not connection.closed
            and not self._force_close
            and not self._closed
        ):
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    self._busy.add(connection)
                    waiter.set_result(connection)
                    return
            connection.idle_since = self.loop.time()
            self._idle.append(connection)
            if self._prune_timer is None:
                self._prune_timer = self.loop.call_later(self._keepalive, self._prune)
            return
        connection.close()
        self._wake_one()

    def _release_unused(self, connection: _Connection | None) -> None:
        """A waiter handed ``connection`` was cancelled before it could use it."""
        if connection is None:
            self._opening -= 1
            self._wake_one()
        else:
            self._release(connection)

    def _wake_one(self) -> None:
        """Room under the limit: the first waiter opens a connection of its own. The room counts
        as opening until it does, so that nobody else takes it in the meantime."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._opening += 1
                waiter.set_result(None)
                return

    def _forget(self, connection: _Connection) -> None:
        """``connection`` closed (either side): it is neither idle nor busy any more."""
        if connection in self._busy:
            return  # its request ends through _finish or _fail, which release it
        if connection in self._idle:
            self._idle.remove(connection)

    def _prune(self) -> None:
        """Close the connections idle longer than the keep-alive timeout."""
        self._prune_timer = None
        cutoff = self.loop.time() - self._keepalive
        stale = [c for c in self._idle if c.idle_since <= cutoff]
        if stale:
            self._idle = [c for c in self._idle if c.idle_since > cutoff]
            for connection in stale:
                connection.close()
        if self._idle and not self._closed:
            self._prune_timer = self.loop.call_later(self._keepalive, self._prune)
