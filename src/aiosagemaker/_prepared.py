"""What our own signed requests take from botocore, for the S3 reads (``_s3_reads``) and the SQS
watcher's calls (``_sqs_calls``): botocore's request for an operation, caught just before it would
be sent (so URL, addressing, custom endpoints, FIPS and dual-stack are whatever the user's client
resolves), what it signs for, and a place to keep each thing prepared once however many callers
ask for it at the same moment.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._logs import logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from urllib.parse import SplitResult

    from ._http import HttpSettings
    from ._http_pool import ConnectionPool

__all__ = [
    "BOTOCORE_TIMEOUT",
    "PoolsByHost",
    "PreparedOnce",
    "catch_request",
    "header_text",
    "host_header",
    "signing_scope",
]


#: botocore's connect and read timeouts for a client without them in its Config.
BOTOCORE_TIMEOUT = 60.0
# The credential scope in an Authorization header: .../DATE/REGION/SERVICE/aws4_request
_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/([^/,]+)/([^/,]+)/aws4_request")

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class _Probed(Exception):
    """Stops botocore's probe request before it is sent."""


async def catch_request(
    client: Any,
    event: str,
    call: Callable[[], Awaitable[object]],
    *,
    matches: Callable[[Any], bool] | None = None,
) -> Any | None:
    """botocore's request for ``call`` (an operation of ``client``), caught at ``event`` (a
    ``before-send`` event) and never sent; ``None`` if none came. ``matches`` picks the probe's
    own request among others sent at the same moment (which go through)."""
    caught: list[Any] = []

    def catch(request: Any, **_: Any) -> None:
        if matches is None or matches(request):
            caught.append(request)
            raise _Probed

    unique = f"aiosagemaker-probe-{uuid.uuid4().hex}"
    events = client.meta.events
    events.register_first(event, catch, unique_id=unique)
    try:
        await call()
    except _Probed:
        pass
    finally:
        events.unregister(event, unique_id=unique)
    return caught[0] if caught else None


def header_text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def signing_scope(request: Any) -> tuple[str, str] | None:
    """The (region, service) a caught request is signed for, from its ``Authorization``."""
    scope = _SCOPE.search(header_text(request.headers.get("Authorization", b"")))
    return (scope.group(1), scope.group(2)) if scope is not None else None


def host_header(parts: SplitResult) -> str:
    """The ``Host`` header of a URL: no user info, the port only when not the scheme's own."""
    host = parts.netloc.rpartition("@")[2].lower()
    return host.removesuffix({"http": ":80", "https": ":443"}.get(parts.scheme, ""))


class PreparedOnce(Generic[K, V]):
    """Each key's value, made by ``prepare`` for the first caller that asks (the others wait for
    it, and none cancels it for the rest); a value of ``None``, or a failure to make one, leaves
    the key to botocore."""

    def __init__(self, prepare: Callable[[K], Awaitable[V | None]], what: str) -> None:
        self._prepare = prepare
        self._what = what
        self._done: dict[K, V | None] = {}
        self._pending: dict[K, asyncio.Future[V | None]] = {}

    async def get(self, key: K) -> V | None:
        if key in self._done:
            return self._done[key]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = self._pending[key] = asyncio.get_running_loop().create_future()
        try:
            value = await self._prepare(key)
        except Exception:  # noqa: BLE001 - any doubt: botocore serves this key
            logger.debug("%s %s: left to botocore", self._what, key, exc_info=True)
            value = None
        self._done[key] = value
        del self._pending[key]
        pending.set_result(value)
        return value

    def get_now(self, key: K, default: D) -> V | None | D:
        """The value of a key prepared already, else ``default`` (no waiting: the hot path of
        every read, where :meth:`get` would cost a coroutine)."""
        return self._done.get(key, default)

    def leave_to_botocore(self, key: K) -> None:
        """From now on, ``key`` is botocore's (a bucket found to be in another region)."""
        self._done[key] = None


class PoolsByHost:
    """Our keep-alive pools, one per ``scheme://host:port``, with botocore's timeouts (60 s to
    connect and to read) unless the user's ``Config`` sets them."""

    def __init__(self, http: HttpSettings, *, limit: int) -> None:
        self._http = http
        self._limit = limit
        self._pools: dict[str, ConnectionPool | None] = {}

    async def get(self, base: str) -> ConnectionPool | None:
        """The pool for ``base``; ``None`` when the user's settings need aiohttp (a proxy)."""
        if base not in self._pools:
            self._pools[base] = await self._http.pool(
                base, limit=self._limit, connect=BOTOCORE_TIMEOUT, read=BOTOCORE_TIMEOUT
            )
        return self._pools[base]

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            if pool is not None:
                await pool.close()
