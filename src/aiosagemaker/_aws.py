"""AWS session, region and botocore clients shared by the invoker and the watchers."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Protocol, cast

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from ._exceptions import AsyncInferenceError
from ._http import HttpSettings

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from botocore.config import Config

    from ._core._sigv4 import Keys

__all__ = ["AwsContext", "CredentialSource", "aws_error_code"]


class CredentialSource(Protocol):
    """What we need of botocore's (refreshable) credentials: a consistent snapshot."""

    def get_frozen_credentials(self) -> Awaitable[Keys]: ...


class AwsContext:
    """One aiobotocore session, region and client configuration, and the clients opened from it.

    Every client gets the user's ``config`` and ``verify`` (proxies, CA bundle, client
    certificate, timeouts, user agent), and :attr:`http` carries the same settings to the sessions
    we open ourselves. Clients are made with botocore's retries off, whatever ``config`` says:
    where we retry, our ``RetryPolicy`` is the only retry layer; where a watcher polls, the next
    poll is the retry.

    :param session: an ``AioSession``; a new default one (the standard credential chain, the
        ``AWS_ENDPOINT_URL_<SERVICE>`` variables, profiles) when ``None``.
    :param config: a botocore ``Config`` or aiobotocore ``AioConfig``.
    :param verify: as botocore's ``create_client(verify=...)``: ``False``, or a CA bundle path.
    """

    def __init__(
        self,
        session: AioSession | None = None,
        *,
        region_name: str | None = None,
        profile: str | None = None,
        config: Config | None = None,
        verify: bool | str | None = None,
    ) -> None:
        if session is None:
            session = get_session()
            if profile:
                session.set_config_variable("profile", profile)
        self.session = session
        self.region_name = region_name
        self.config = config
        self.verify = verify
        self.http = HttpSettings.resolve(session, config, verify)
        self._stack = AsyncExitStack()
        self._signing_credentials: CredentialSource | None = None

    def fresh(self) -> AwsContext:
        """A context of the same session and settings, with clients of its own (closing one
        context does not close the other's)."""
        return AwsContext(
            self.session, region_name=self.region_name, config=self.config, verify=self.verify
        )

    async def client(self, service: str, *, pool: int = 32, endpoint_url: str | None = None) -> Any:
        """Open a client that lives until :meth:`aclose`.

        ``pool`` sizes its connection pool unless the user's ``config`` sets
        ``max_pool_connections``; botocore's retries are off whatever the ``config`` says.
        """
        config = AioConfig(max_pool_connections=pool)
        if self.config is not None:
            config = config.merge(self.config)  # type: ignore[arg-type]  # any Config merges
        config = config.merge(AioConfig(retries={"total_max_attempts": 1, "mode": "standard"}))
        creator = self.session.create_client(
            service,  # type: ignore[call-overload]
            region_name=self.region_name,
            endpoint_url=endpoint_url,
            config=config,
            verify=self.verify,
        )
        return await self._stack.enter_async_context(creator)

    async def credentials(self) -> CredentialSource:
        """The session's credentials (refreshable ones refresh themselves)."""
        credentials = await self.session.get_credentials()
        if credentials is None:
            raise AsyncInferenceError(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a "
                "profile, or run where an instance or container role is available"
            )
        # AioCredentials and its refreshable kinds all have an async get_frozen_credentials().
        return cast("CredentialSource", credentials)

    async def signing_keys(self) -> Any:
        """The keys to sign one of our own requests with, now (the credentials are found at the
        first request, as botocore finds them, and refresh themselves)."""
        credentials = self._signing_credentials
        if credentials is None:
            credentials = self._signing_credentials = await self.credentials()
        return await credentials.get_frozen_credentials()

    async def aclose(self) -> None:
        await self._stack.aclose()


def aws_error_code(exc: BaseException) -> tuple[str | None, int | None]:
    """The AWS error code and HTTP status of a botocore ``ClientError`` (``(None, None)`` otherwise).

    The one place the library reads botocore's error shape; an answer without a code (or with
    botocore's bare status for a body it could not parse) gets ``HTTP<status>``.
    """
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None, None
    error = response.get("Error") or {}
    meta = response.get("ResponseMetadata") or {}
    status = meta.get("HTTPStatusCode")
    status = status if isinstance(status, int) else None
    code = error.get("Code") if isinstance(error, dict) else None
    if status is not None and (not code or str(code) == str(status)):
        # botocore names an error body it cannot parse (a proxy's HTML page) by its bare status.
        code = f"HTTP{status}"
    return (str(code) if code else None), status
