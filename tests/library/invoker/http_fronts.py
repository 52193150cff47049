"""Loopback HTTP servers that stand between the client and the local stack, for the tests of the
user's HTTP settings: a forward proxy that counts what passes through it, and a TLS front (a
reverse proxy with a generated certificate) that only a client trusting its CA can reach.

Both forward each request as received (the ``Host`` header included, so that the local endpoint's
SigV4 check sees what the client signed) and answer with the upstream's status, headers and body.
"""

from __future__ import annotations

import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# Hop-by-hop headers (RFC 9110 7.6.1) and the lengths aiohttp recomputes.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


@dataclass
class Seen:
    """One request that passed: its method, target (``host:port``), path, user agent and, for
    the JSON protocols (SQS), the operation its ``X-Amz-Target`` names."""

    method: str
    target: str
    path: str
    user_agent: str
    operation: str


@dataclass
class _Relay:
    upstream: str | None  # a reverse proxy's base URL; None: a forward proxy (absolute URLs)
    seen: list[Seen] = field(default_factory=list)
    _client: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.upstream is None:
            if not request.url.is_absolute() or request.url.scheme != "http":
                return web.Response(status=400, text="a forward proxy takes absolute http URLs")
            url = str(request.url)
        else:
            url = self.upstream.rstrip("/") + request.raw_path
        target = urlsplit(url).netloc
        self.seen.append(
            Seen(
                request.method,
                target,
                request.path,
                request.headers.get("User-Agent", ""),
                request.headers.get("X-Amz-Target", "").rpartition(".")[2],
            )
        )
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
        body = await request.read()
        assert self._client is not None
        async with self._client.request(
            request.method, url, headers=headers, data=body, allow_redirects=False
        ) as answer:
            payload = await answer.read()
            out = [(k, v) for k, v in answer.headers.items() if k.lower() not in _HOP]
            response = web.Response(status=answer.status, body=payload)
            for name, value in out:
                response.headers.add(name, value)
            return response

    def count(self, *, method: str | None = None, target: str | None = None) -> int:
        return sum(
            1
            for s in self.seen
            if (method is None or s.method == method) and (target is None or s.target == target)
        )

    def by_target(self) -> Counter[str]:
        return Counter(s.target for s in self.seen)


@dataclass
class Front:
    """A running relay: its URL and what it saw."""

    url: str
    relay: _Relay

    @property
    def seen(self) -> list[Seen]:
        return self.relay.seen

    def count(self, *, method: str | None = None, target: str | None = None) -> int:
        return self.relay.count(method=method, target=target)


async def _serve(relay: _Relay, ssl_context: ssl.SSLContext | None) -> AsyncIterator[Front]:
    # The relay's own client never uses a proxy (trust_env off) and never decompresses.
    async with aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("User-Agent",)) as c:
        relay._client = c
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", relay.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        scheme = "https" if ssl_context is not None else "http"
        try:
            yield Front(f"{scheme}://127.0.0.1:{port}", relay)
        finally:
            await runner.cleanup()


async def forward_proxy() -> AsyncIterator[Front]:
    """A counting forward proxy for ``http://`` URLs (``HTTP_PROXY``)."""
    async for front in _serve(_Relay(upstream=None), None):
        yield front


async def tls_front(upstream: str, server_context: ssl.SSLContext) -> AsyncIterator[Front]:
    """``https://127.0.0.1:PORT`` in front of ``upstream``, with ``server_context``'s certificate."""
    async for front in _serve(_Relay(upstream=upstream), server_context):
        yield front
