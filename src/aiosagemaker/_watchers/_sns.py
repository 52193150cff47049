"""``SnsSignatureVerifier``: check an SNS envelope's signature before its message is trusted.

The sans-IO half (the envelope's shape, the string to sign, which certificate URLs are SNS's) is
:mod:`aiosagemaker._core._sns`; this is the I/O half: the signing certificates, fetched over HTTPS
from SNS (or pinned by the user), and the RSA check. See "Verifying the signatures of Amazon SNS
messages", https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html.

Cheap per message: each certificate is fetched once per URL, parsed once, and its public key kept
in a bounded LRU; concurrent messages naming a URL not yet loaded share one fetch. What is left
per message is the envelope's checks and one RSA-2048 verification: about 75 µs in all on the
development machine, 45 of them the RSA check (parsing the certificate again would add 25).
A failed fetch is remembered for a few seconds, so that a burst of messages does not become a
burst of requests while SNS's host is unreachable; such refusals are ``transient`` (see
:class:`SnsVerificationError`): the message may verify when it comes back.

What a fetched certificate must be: served with HTTP 200 within ``fetch_timeout`` from a URL the
core accepts, over TLS verified against the system's trust store, without redirects, at most
:data:`MAX_CERTIFICATE_BYTES`, a PEM X.509 certificate with an RSA key of at least 2048 bits, and
within its validity period when each message is verified. The TLS connection to SNS's own host is
what vouches for the certificate (as in AWS's SNS message validators for PHP and JavaScript); its
issuer chain is not verified again.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .._core._sns import (
    Rejection,
    SnsVerificationError,
    check_signing_cert_url,
    check_topic_arn,
    is_signing_cert_url,
    read_envelope,
)
from .._logs import logger

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Collection, Mapping
    from typing import Self

__all__ = [
    "DEFAULT_FETCH_TIMEOUT",
    "MAX_CERTIFICATE_BYTES",
    "SnsSignatureVerifier",
    "SnsVerifierStatistics",
]


#: seconds a certificate fetch may take in all (connect, TLS, answer). SNS's endpoints answer in
#: milliseconds; a longer wait only holds messages back.
DEFAULT_FETCH_TIMEOUT = 5.0
#: the largest certificate file read. SNS's are about 2 KB; the cap bounds what a slow or hostile
#: answer can cost.
MAX_CERTIFICATE_BYTES = 32 * 1024
#: certificates (public keys) kept, least recently used first out. SNS signs with a handful per
#: region, so this is room for several regions and rotations.
DEFAULT_MAX_CACHED_CERTIFICATES = 16
#: seconds a failed fetch is remembered before the URL is tried again.
_RETRY_FETCH_AFTER = 10.0
#: concurrent certificate fetches at most (one per URL already, by coalescing).
_MAX_CONCURRENT_FETCHES = 4
# SNS's certificates use 2048-bit RSA keys; anything weaker is not one of SNS's.
_MIN_RSA_BITS = 2048
_HASHES: Mapping[str, hashes.HashAlgorithm] = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}


@dataclass(frozen=True, slots=True)
class SnsVerifierStatistics:
    """What an :class:`SnsSignatureVerifier` has done."""

    #: envelopes whose signature verified
    verified: int
    #: envelopes refused, for any reason (transient ones included)
    refused: int
    #: certificate fetches started (each URL once while cached)
    certificate_fetches: int
    #: fetched certificates held in the cache now (pinned ones not counted)
    cached_certificates: int
    #: certificates pinned with ``trusted_certificates``
    pinned_certificates: int


@dataclass(frozen=True, slots=True)
class _SigningKey:
    """A loaded signing certificate: its public key and validity period (seconds since the epoch)."""

    public_key: rsa.RSAPublicKey
    not_before: float
    not_after: float

    @classmethod
    def load(cls, pem: bytes) -> _SigningKey:
        try:
            certificate = x509.load_pem_x509_certificate(pem)
            public_key = certificate.public_key()
        except ValueError:
            raise SnsVerificationError(
                "the signing certificate is not a PEM X.509 certificate",
                reason=Rejection.CERTIFICATE,
            ) from None
        if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < _MIN_RSA_BITS:
            raise SnsVerificationError(
                f"the signing certificate's key is not RSA of {_MIN_RSA_BITS} bits or more",
                reason=Rejection.CERTIFICATE,
            )
        return cls(
            public_key,
            certificate.not_valid_before_utc.timestamp(),
            certificate.not_valid_after_utc.timestamp(),
        )

    def check_valid(self, now: float) -> None:
        if not self.not_before <= now <= self.not_after:
            raise SnsVerificationError(
                "the signing certificate is expired or not yet valid",
                reason=Rejection.CERTIFICATE,
            )


class _FetchAbandoned(Exception):
    """The caller that was fetching a certificate was cancelled: a waiter fetches it again."""


class SnsSignatureVerifier:
    """Verify the SNS signature of an envelope, so that its message can be trusted.

    Without raw message delivery, each SQS message from an SNS topic is an envelope that SNS signed;
    :meth:`verify` checks its shape, its topic, its signing-certificate URL (SNS's own host for the
    topic's region, over HTTPS) and its RSA signature (``SignatureVersion`` 1, SHA1, or 2, SHA256),
    and raises :class:`SnsVerificationError` (a :class:`NotificationError`) for anything not
    trusted. Certificates are fetched with aiohttp and cached by URL; ``trusted_certificates`` pins
    them instead (no fetch), for hosts without a route to SNS.

    .. code-block:: python

        async with SnsSignatureVerifier(topic_arns=[SUCCESS_TOPIC, ERROR_TOPIC]) as verifier:
            envelope = orjson.loads(sqs_message["Body"])
            await verifier.verify(envelope)  # raises NotificationError if not from those topics
            event = parse_notification(envelope["Message"])

    :param topic_arns: the topics whose messages to trust (the endpoint's success and error
        topics); ``None`` trusts any topic, as long as SNS signed the message.
    :param trusted_certificates: certificate URL to PEM bytes: used for envelopes naming that URL,
        never fetched. Each URL must be one SNS could use (``https://sns.<region>.<partition's
        domain>/<name>.pem``), each PEM an X.509 certificate with an RSA key.
    :param fetch_certificates: fetch certificates not pinned; when false, an envelope naming
        another URL is refused (``CERTIFICATE_URL``).
    :param fetch_timeout: seconds a certificate fetch may take in all.
    :param max_cached_certificates: fetched certificates kept (least recently used first out).
    :param trust_env: let the fetches use the proxy settings of the environment (``HTTPS_PROXY``).
    :raises ValueError: a topic ARN, a pinned URL or a pinned certificate that is not valid.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        *,
        topic_arns: Collection[str] | None = None,
        trusted_certificates: Mapping[str, bytes] | None = None,
        fetch_certificates: bool = True,
        fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
        max_cached_certificates: int = DEFAULT_MAX_CACHED_CERTIFICATES,
        trust_env: bool = False,
    ) -> None:
        if isinstance(topic_arns, str):
            raise ValueError("topic_arns is a collection of ARNs, not one string")
        if topic_arns is not None:
            if not topic_arns:
                raise ValueError("topic_arns is empty: pass None to trust every topic")
            for arn in topic_arns:
                try:
                    check_topic_arn(arn)
                except SnsVerificationError as exc:
                    raise ValueError(f"topic_arns: {exc.message}") from None
        if not fetch_timeout > 0:
            raise ValueError(f"fetch_timeout must be > 0, not {fetch_timeout!r}")
        if max_cached_certificates < 1:
            raise ValueError(
                f"max_cached_certificates must be >= 1, not {max_cached_certificates!r}"
            )
        self.topic_arns: frozenset[str] | None = (
            frozenset(topic_arns) if topic_arns is not None else None
        )
        self.fetch_certificates = fetch_certificates
        self.fetch_timeout = fetch_timeout
        self.max_cached_certificates = max_cached_certificates
        self.trust_env = trust_env
        self._pinned: dict[str, _SigningKey] = {}
        for url, pem in (trusted_certificates or {}).items():
            if not is_signing_cert_url(url):
                raise ValueError(
                    f"trusted_certificates: {url!r} is not a URL SNS serves certificates from "
                    "(https://sns.<region>.<partition's domain>/<name>.pem)"
                )
            try:
                self._pinned[url] = _SigningKey.load(pem)
            except SnsVerificationError as exc:
                raise ValueError(f"trusted_certificates[{url!r}]: {exc.message}") from None
        self._cache: OrderedDict[str, _SigningKey] = OrderedDict()
        self._fetching: dict[str, asyncio.Future[_SigningKey]] = {}
        # URL to (when it failed, on the monotonic clock; the refusal's message and reason), oldest
        # first; bounded. (Not the exception itself: its traceback would keep the fetch's frames.)
        self._failures: OrderedDict[str, tuple[float, str, Rejection]] = OrderedDict()
        self._retry_after = _RETRY_FETCH_AFTER
        # The production URL rule (SNS's host for the topic's region, over https). Only tests
        # replace it, with one for their loopback server; there is no public way to.
        self._cert_url_rule: Callable[[str, str], None] = check_signing_cert_url
        # True: aiohttp's default, TLS verified against the system's trust store. Tests only set
        # a context that trusts their loopback server.
        self._ssl: ssl.SSLContext | bool = True
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._verified = 0
        self._refused = 0
        self._fetches = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session, if a fetch opened one. Pinned and cached certificates still
        verify afterwards; an envelope that needs a fetch is refused (``UNAVAILABLE``)."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- verifying ----------------------------------------------------------------------------

    async def verify(self, envelope: Mapping[str, Any]) -> None:
        """Check that SNS signed ``envelope`` for one of the configured topics.

        :param envelope: the decoded JSON of an SNS envelope (``Type``, ``Message``,
            ``Signature``, ``SigningCertURL``, ...).
        :raises SnsVerificationError: the envelope is not to be trusted; ``reason`` says why, and
            ``transient`` whether it may pass later (the certificate could not be fetched).
        """
        try:
            signed = read_envelope(
                envelope, topic_arns=self.topic_arns, cert_url_rule=self._cert_url_rule
            )
            key = self._pinned.get(signed.signing_cert_url)
            if key is None:
                key = await self._fetched_key(signed.signing_cert_url)
            key.check_valid(time.time())
            try:
                key.public_key.verify(
                    signed.signature,
                    signed.string_to_sign,
                    padding.PKCS1v15(),
                    _HASHES[signed.hash_name],
                )
            except InvalidSignature:
                raise SnsVerificationError(
                    f"the signature of message {signed.message_id} from {signed.topic_arn} does "
                    "not match: altered, or not signed by SNS",
                    reason=Rejection.SIGNATURE,
                ) from None
        except SnsVerificationError:
            self._refused += 1
            raise
        self._verified += 1

    # --- certificates -------------------------------------------------------------------------

    async def _fetched_key(self, url: str) -> _SigningKey:
        """The key of the certificate at ``url``: cached, being fetched by another caller, or
        fetched here."""
        while True:
            key = self._cache.get(url)
            if key is not None:
                self._cache.move_to_end(url)
                return key
            self._check_recent_failure(url)
            pending = self._fetching.get(url)
            if pending is None:
                break
            try:
                # shield: a waiter cancelled must not cancel the fetch the others wait for.
                return await asyncio.shield(pending)
            except _FetchAbandoned:
                continue  # its fetcher was cancelled: fetch it here
            except SnsVerificationError as exc:
                # A fresh error per waiter: one exception object raised in many tasks would
                # collect all their tracebacks.
                raise SnsVerificationError(exc.message, reason=exc.reason) from None

        future: asyncio.Future[_SigningKey] = asyncio.get_running_loop().create_future()
        self._fetching[url] = future
        try:
            key = await self._fetch(url)
        except SnsVerificationError as exc:
            self._remember_failure(url, exc)
            future.set_exception(exc)
            raise
        except BaseException:
            future.set_exception(_FetchAbandoned())
            raise
        else:
            self._cache[url] = key
            if len(self._cache) > self.max_cached_certificates:
                self._cache.popitem(last=False)
            future.set_result(key)
            return key
        finally:
            del self._fetching[url]
            if future.done() and not future.cancelled():
                future.exception()  # mark it retrieved: there may have been no waiter

    def _check_recent_failure(self, url: str) -> None:
        failure = self._failures.get(url)
        if failure is None:
            return
        failed_at, message, reason = failure
        if time.monotonic() - failed_at < self._retry_after:
            raise SnsVerificationError(message, reason=reason)
        del self._failures[url]

    def _remember_failure(self, url: str, error: SnsVerificationError) -> None:
        self._failures[url] = (time.monotonic(), error.message, error.reason)
        self._failures.move_to_end(url)
        if len(self._failures) > self.max_cached_certificates:
            self._failures.popitem(last=False)

    async def _fetch(self, url: str) -> _SigningKey:
        if not self.fetch_certificates:
            raise SnsVerificationError(
                f"SigningCertURL {url} is not among the trusted certificates (and fetching is off)",
                reason=Rejection.CERTIFICATE_URL,
            )
        if self._closed:
            raise SnsVerificationError("the verifier is closed", reason=Rejection.UNAVAILABLE)
        self._fetches += 1
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.fetch_timeout),
                connector=aiohttp.TCPConnector(limit=_MAX_CONCURRENT_FETCHES, ssl=self._ssl),
                # Read the bytes as sent: the size cap then bounds what is held, not a
                # decompressor's output.
                auto_decompress=False,
                trust_env=self.trust_env,
            )
        logger.debug("fetching SNS signing certificate %s", url)
        try:
            async with self._session.get(
                url, allow_redirects=False, headers={"Accept-Encoding": "identity"}
            ) as response:
                if response.status != 200:
                    raise SnsVerificationError(
                        f"fetching the signing certificate {url} answered HTTP {response.status}",
                        reason=Rejection.UNAVAILABLE,
                    )
                pem = await _read_capped(response.content, url)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.info("could not fetch SNS signing certificate %s: %r", url, exc)
            raise SnsVerificationError(
                f"could not fetch the signing certificate {url}: {type(exc).__name__}",
                reason=Rejection.UNAVAILABLE,
            ) from exc
        return _SigningKey.load(pem)

    # --- introspection ------------------------------------------------------------------------

    def statistics(self) -> SnsVerifierStatistics:
        return SnsVerifierStatistics(
            verified=self._verified,
            refused=self._refused,
            certificate_fetches=self._fetches,
            cached_certificates=len(self._cache),
            pinned_certificates=len(self._pinned),
        )

    def __repr__(self) -> str:
        s = self.statistics()
        topics = "any" if self.topic_arns is None else str(len(self.topic_arns))
        return (
            f"<{type(self).__name__} [verified {s.verified}, refused {s.refused} | topics {topics}, "
            f"certificates {s.cached_certificates} cached, {s.pinned_certificates} pinned]>"
        )


async def _read_capped(content: aiohttp.StreamReader, url: str) -> bytes:
    """The whole body, or a refusal as soon as it passes :data:`MAX_CERTIFICATE_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in content.iter_chunked(8192):
        size += len(chunk)
        if size > MAX_CERTIFICATE_BYTES:
            raise SnsVerificationError(
                f"the signing certificate {url} is over {MAX_CERTIFICATE_BYTES} bytes",
                reason=Rejection.CERTIFICATE,
            )
        chunks.append(chunk)
    return b"".join(chunks)
