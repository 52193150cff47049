"""The user's HTTP settings, resolved as botocore resolves them, for the sessions we open ourselves.

The invoke POST does not go through botocore's client (see ``_transport``), so whatever botocore
would have applied to it is applied here, from the same sources and in the same order:

- certificate verification: the ``verify=`` argument, else the session's ``ca_bundle``
  (``AWS_CA_BUNDLE`` or ``ca_bundle`` in the profile), else ``REQUESTS_CA_BUNDLE``, else botocore's
  bundled CA certificates (botocore's ``EndpointCreator._get_verify_value`` and ``get_cert_path``);
- proxies: ``Config(proxies=...)``, else ``HTTP_PROXY``/``HTTPS_PROXY`` with ``NO_PROXY``
  (botocore's ``get_environ_proxies``), read once per endpoint URL as botocore does;
  ``proxies_config`` (``proxy_ca_bundle``, ``proxy_client_cert``) for the proxy hop;
- ``Config(client_cert=...)``: a certificate file, or ``(certificate, key)``;
- ``Config(connect_timeout=..., read_timeout=...)`` when set there (our ``Timeouts`` otherwise);
- ``Config(user_agent_extra=..., user_agent_appid=...)`` appended to the ``User-Agent``;
- ``AioConfig(connector_args=...)``: the DNS cache, keep-alive, resolver, SSL context.

The SSL contexts are built as aiobotocore's ``AIOHTTPSession`` builds them, in a thread (loading a
CA bundle reads a file of some 200 KB).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from botocore.httpsession import ProxyConfiguration, create_urllib3_context, get_cert_path
from botocore.utils import get_environ_proxies

from ._http_pool import ConnectionPool, HttpResponse
from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aiobotocore.session import AioSession
    from botocore.config import Config

__all__ = ["USER_AGENT", "HttpSettings", "read_answer"]

#: Ours, before the user's ``user_agent_extra`` and ``user_agent_appid``.
USER_AGENT = f"aiosagemaker/{__version__} aiohttp/{aiohttp.__version__}"

# The connector arguments of AioConfig that a TCPConnector takes as they are.
_CONNECTOR_ARGS = (
    "use_dns_cache",
    "ttl_dns_cache",
    "keepalive_timeout",
    "force_close",
    "resolver",
    "socket_factory",
)

# The connector arguments our own pool honours. DNS answers are never cached there: it looks a
# host up only to open a connection, and keeps connections alive. Any other argument (a resolver,
# a socket factory) sends the calls through aiohttp, which takes them.
_POOL_ARGS = frozenset(
    {"keepalive_timeout", "force_close", "ssl_context", "use_dns_cache", "ttl_dns_cache"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """What a botocore client would apply to an HTTP call, for a session of our own.

    :param verify: ``True`` (botocore's CA bundle), ``False`` (no verification) or a CA bundle path.
    :param proxies: ``{scheme: proxy URL}`` from ``Config(proxies=...)``; ``None``: the
        environment's, for each URL.
    :param connect_timeout: from the user's ``Config`` when set there, else ``None`` (ours apply).
    """

    verify: bool | str = True
    proxies: Mapping[str, str] | None = None
    proxies_config: Mapping[str, Any] = field(default_factory=dict)
    client_cert: str | tuple[str, str] | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    user_agent_extra: str = ""
    connector_args: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls, session: AioSession, config: Config | None, verify: bool | str | None
    ) -> HttpSettings:
        """The settings a client from ``session`` with ``config`` and ``verify`` would use."""
        if verify is None:
            verify = session.get_config_variable("ca_bundle")
        if verify is None:
            verify = os.environ.get("REQUESTS_CA_BUNDLE", True)
        # Only what the user set: a Config() carries botocore's defaults for everything else,
        # and its 60 s timeouts must not replace ours unless asked for.
        given: Mapping[str, Any] = (
            getattr(config, "_user_provided_options", {}) if config is not None else {}
        )
        extras = [
            text
            for text in (
                given.get("user_agent_extra"),
                f"app/{given['user_agent_appid']}" if given.get("user_agent_appid") else None,
            )
            if text
        ]
        connector_args = given.get("connector_args") or {}
        return cls(
            verify=verify,
            proxies=given.get("proxies"),
            proxies_config=given.get("proxies_config") or {},
            client_cert=given.get("client_cert"),
            connect_timeout=given.get("connect_timeout"),
            read_timeout=given.get("read_timeout"),
            user_agent_extra=" ".join(extras),
            connector_args=dict(connector_args),
        )

    def user_agent(self, base: str) -> str:
        return f"{base} {self.user_agent_extra}" if self.user_agent_extra else base

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL for requests to ``url``, or ``None`` to connect directly."""
        proxies = self.proxies if self.proxies is not None else get_environ_proxies(url)
        proxy: str | None = ProxyConfiguration(proxies=dict(proxies)).proxy_url_for(url)
        return proxy

    async def pool(
        self, url: str, *, limit: int, connect: float, read: float | None
    ) -> ConnectionPool | None:
        """Our lean keep-alive pool for ``url``'s host, or ``None`` when these settings need
        aiohttp: a proxy, or a connector argument the pool does not take (see ``_http_pool``).
        ``connect`` and ``read`` are our timeouts; the ones set in the user's ``Config`` win."""
        parts = urlsplit(url)
        if (
            parts.scheme not in _DEFAULT_PORTS
            or not parts.hostname
            or self.proxy_for(url) is not None
            or not _POOL_ARGS.issuperset(self.connector_args)
        ):
            return None
        ssl_context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            ssl_context = self.connector_args.get("ssl_context")
            if ssl_context is None:
                ssl_context, _ = await asyncio.to_thread(self._ssl_contexts, None)
        return ConnectionPool(
            host=parts.hostname,
            port=parts.port or _DEFAULT_PORTS[parts.scheme],
            ssl_context=ssl_context,
            limit=limit,
            connect_timeout=connect if self.connect_timeout is None else self.connect_timeout,
            read_timeout=read if self.read_timeout is None else self.read_timeout,
            keepalive_timeout=float(self.connector_args.get("keepalive_timeout", 15.0)),
            force_close=bool(self.connector_args.get("force_close", False)),
        )

    async def session(
        self,
        *,
        limit: int,
        proxy: str | None,
        total: float | None,
        connect: float,
        read: float | None,
    ) -> aiohttp.ClientSession:
        """A session of our own for one endpoint (its pool of ``limit`` connections, through
        ``proxy`` or directly). ``total``, ``connect`` and ``read`` are our timeouts; the ones set
        in the user's ``Config`` win."""
        return aiohttp.ClientSession(
            connector=await self.connector(limit=limit, proxy=proxy),
            timeout=aiohttp.ClientTimeout(
                total=total,
                sock_connect=connect if self.connect_timeout is None else self.connect_timeout,
                sock_read=read if self.read_timeout is None else self.read_timeout,
            ),
            headers={"User-Agent": self.user_agent(USER_AGENT)},
            skip_auto_headers=("Content-Type",),
            auto_decompress=False,
            proxy=proxy,
        )

    async def connector(self, *, limit: int, proxy: str | None) -> aiohttp.TCPConnector:
        """A connection pool for one endpoint, reached through ``proxy`` (or directly)."""
        # Unset, aiohttp's defaults: DNS answers cached 10 s (a failover is seen within seconds),
        # idle connections kept 15 s (under the 20 s or more AWS front ends keep them).
        given = self.connector_args
        args = {name: given[name] for name in _CONNECTOR_ARGS if name in given}
        endpoint_ssl: ssl.SSLContext | None = self.connector_args.get("ssl_context")
        proxy_ssl: ssl.SSLContext | None = None
        if endpoint_ssl is None or proxy is not None:
            built, proxy_ssl = await asyncio.to_thread(self._ssl_contexts, proxy)
            endpoint_ssl = endpoint_ssl or built
        return _ProxySslConnector(
            limit=limit,
            limit_per_host=0,
            ssl=endpoint_ssl,
            proxy_ssl=proxy_ssl,
            enable_cleanup_closed=True,
            **args,
        )

    # --- SSL, as aiobotocore's AIOHTTPSession builds it -----------------------------------------

    def _verify_context(self) -> ssl.SSLContext:
        context: ssl.SSLContext = create_urllib3_context()
        if self.verify:
            context.check_hostname = True
            # True: botocore's bundled CA certificates; a string: the user's bundle.
            context.load_verify_locations(get_cert_path(self.verify))  # type: ignore[arg-type]
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _ssl_contexts(self, proxy: str | None) -> tuple[ssl.SSLContext, ssl.SSLContext | None]:
        endpoint = self._verify_context()
        cert = self.client_cert
        if isinstance(cert, tuple):
            endpoint.load_cert_chain(cert[0], cert[1])
        elif cert:
            endpoint.load_cert_chain(cert)
        if proxy is None or not proxy.startswith("https:"):
            return endpoint, None
        # The proxy hop never gets the endpoint's client certificate, only proxy_client_cert.
        hop = self._verify_context()
        bundle = self.proxies_config.get("proxy_ca_bundle")
        if bundle:
            hop.load_verify_locations(cafile=bundle)
        proxy_cert = self.proxies_config.get("proxy_client_cert")
        if isinstance(proxy_cert, tuple):
            hop.load_cert_chain(proxy_cert[0], keyfile=proxy_cert[1])
        elif proxy_cert:
            hop.load_cert_chain(proxy_cert)
        return endpoint, hop


class _ProxySslConnector(aiohttp.TCPConnector):
    """A connector whose proxy hop has an SSL context of its own (as aiobotocore's has): aiohttp
    would otherwise offer the endpoint's client certificate to an HTTPS proxy."""

    def __init__(self, *, proxy_ssl: ssl.SSLContext | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._proxy_ssl = proxy_ssl

    def _update_proxy_auth_header_and_build_proxy_req(self, req: Any) -> Any:
        proxy_req = super()._update_proxy_auth_header_and_build_proxy_req(req)
        if self._proxy_ssl is not None:
            proxy_req._ssl = self._proxy_ssl
        return proxy_req


async def read_answer(
    response: aiohttp.ClientResponse, max_body: int, *, partial: bool = True
) -> HttpResponse:
    """An aiohttp answer as our pool gives it: at most ``max_body`` bytes of its body read (none
    of a longer one unless ``partial``), then the response released (or closed, the rest unread)."""
    answer = HttpResponse(response.status, response.reason or "", response.headers)
    if not partial and (response.content_length or 0) > max_body:
        answer.cut = True
        response.close()
        return answer
    chunks: list[bytes] = []
    try:
        left = max_body + 1  # one byte more tells a longer body
        while left > 0 and response.method != "HEAD":
            chunk = await response.content.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except (aiohttp.ClientError, TimeoutError):
        answer.complete = False
    finally:
        if response.content.at_eof():
            response.release()
        else:
            response.close()
    body = b"".join(chunks)
    if len(body) > max_body:
        answer.cut, body = True, body[:max_body] if partial else b""
    answer.body = body
    return answer
