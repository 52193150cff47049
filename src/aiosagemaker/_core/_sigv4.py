"""AWS Signature Version 4: one canonical request for both roles, and the client's prepared signer.

The role-agnostic steps follow botocore's ``SigV4Auth`` (``botocore/auth.py``) one for one: the
canonical path, query string and headers; the canonical request; the credential scope; the string
to sign; the signature. The client's :class:`RequestSigner` and the local stack's verifier
(``aiosagemaker.local._sigv4``) both build their canonical request here, so a mistake here would
fool both at once: the signer is tested byte for byte against botocore's ``SigV4Auth``, and the
verifier against requests that plain boto3 signs.
https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html

botocore's ``SigV4Auth`` rebuilds everything per request (~100 µs). :class:`RequestSigner` computes
once per endpoint what never changes (the canonical path, the host, and once a day the keyed HMAC
and credential scope), leaving per request the canonical headers, two SHA-256 hashes and a copy of
the keyed HMAC: ~10 µs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "ALGORITHM",
    "EMPTY_PAYLOAD_HASH",
    "FrozenKeys",
    "Keys",
    "RequestSigner",
    "S3ReadSigner",
    "amz_date",
    "canonical_headers",
    "canonical_path",
    "canonical_query",
    "canonical_request",
    "credential_scope",
    "normalize_path",
    "payload_hash",
    "signature",
    "signing_key",
    "signing_mac",
    "string_to_sign",
]

ALGORITHM = "AWS4-HMAC-SHA256"
_by_name = itemgetter(0)


class Keys(Protocol):
    """What signing needs of a credentials snapshot (botocore's ``ReadOnlyCredentials`` fits)."""

    @property
    def access_key(self) -> str | None: ...
    @property
    def secret_key(self) -> str | None: ...
    @property
    def token(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class FrozenKeys:
    """One consistent set of credentials, like botocore's ``ReadOnlyCredentials``."""

    access_key: str
    secret_key: str
    token: str | None = None


def amz_date(now: datetime | None = None) -> str:
    """The ``X-Amz-Date`` value for ``now`` (UTC; the current second when ``None``)."""
    if now is not None:
        return now.strftime("%Y%m%dT%H%M%SZ")
    global _last_date
    second = int(time.time())
    cached = _last_date  # one tuple, rebound whole: consistent whatever thread reads it
    if cached[0] == second:
        return cached[1]
    # Formatted once a second, not once a request (strftime is a tenth of a signature's cost).
    text = datetime.fromtimestamp(second, UTC).strftime("%Y%m%dT%H%M%SZ")
    _last_date = (second, text)
    return text


_last_date: tuple[int, str] = (-1, "")


# -- The steps, in the order a signature is computed ------------------------------------------


def normalize_path(path: str) -> str:
    """``path`` with dot segments and repeated slashes removed, as botocore's ``normalize_url_path``.

    RFC 3986 section 5.2.4, plus AWS's own rule that consecutive slashes collapse; a trailing
    slash is kept, and an empty path becomes ``/``. (Here rather than imported from botocore so
    that the protocol core stays standard library only.)
    """
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if segments:
                segments.pop()
        else:
            segments.append(segment)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and segments else ""
    return first + "/".join(segments) + last


def canonical_path(path: str) -> str:
    """The canonical URI of a request path as sent (already percent-encoded once).

    AWS encodes it once more (``%`` becomes ``%25``): every service but S3 double-encodes.
    """
    return quote(normalize_path(path), safe="/~")


def canonical_query(query: str) -> str:
    """The canonical query string of the raw query (without ``?``), as botocore builds it from a URL.

    Pairs are sorted by (already encoded) name, then value; a name without ``=`` gets an empty value.
    """
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{name}={value}" for name, value in pairs)


def canonical_headers(headers: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """The canonical headers and the signed header names of ``(name, value)`` pairs.

    Names are lower-cased and sorted; each value is trimmed and its inner runs of white space
    collapse to one space; the values of a repeated name join with ``,`` in the order given. Each
    canonical header line ends with a newline, as the canonical request puts them.

    :return: ``("host:example.com\\nx-amz-date:...\\n", "host;x-amz-date")``
    """
    pairs = [(name.lower(), " ".join(value.split())) for name, value in headers]
    pairs.sort(key=_by_name)  # stable: a repeated name keeps its values' order
    lines: list[str] = []
    names: list[str] = []
    previous = None
    for name, value in pairs:
        if name == previous:
            lines[-1] += "," + value
        else:
            lines.append(f"{name}:{value}")
            names.append(name)
            previous = name
    lines.append("")
    return "\n".join(lines), ";".join(names)


def payload_hash(body: bytes) -> str:
    """The hex SHA-256 of the request body (the last line of the canonical request)."""
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: str,
    signed_headers: str,
    body_hash: str,
) -> str:
    """The canonical request, from parts already canonical (see the functions above).

    :param method: the HTTP method, upper case.
    :param path: from :func:`canonical_path`.
    :param query: from :func:`canonical_query`.
    :param headers: the first value of :func:`canonical_headers`.
    :param signed_headers: the signed header names, ``;``-separated.
    :param body_hash: from :func:`payload_hash` (or the request's ``X-Amz-Content-SHA256``).
    """
    return f"{method}\n{path}\n{query}\n{headers}\n{signed_headers}\n{body_hash}"


def credential_scope(date: str, region: str, service: str) -> str:
    """``YYYYMMDD/region/service/aws4_request``."""
    return f"{date}/{region}/{service}/aws4_request"


def string_to_sign(timestamp: str, scope: str, request: str) -> str:
    """What is signed: the algorithm, the ``X-Amz-Date`` value, the scope, the request's hash."""
    digest = hashlib.sha256(request.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The derived key of one day, region and service."""
    key = hmac.digest(("AWS4" + secret_key).encode("utf-8"), date.encode("utf-8"), "sha256")
    for part in (region, service, "aws4_request"):
        key = hmac.digest(key, part.encode("utf-8"), "sha256")
    return key


def signing_mac(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 keyed with a key from :func:`signing_key`, for :func:`signature`.

    Keying is about a third of the cost of an HMAC over a string to sign, and a copy of a keyed
    HMAC skips it: both roles keep one of these per signing key (that is, per day) and copy it
    per request.
    """
    return hmac.new(key, digestmod=hashlib.sha256)


def signature(mac: hmac.HMAC, to_sign: str) -> str:
    """The hex ``Signature`` of a string to sign, under a keyed HMAC from :func:`signing_mac`."""
    keyed = mac.copy()  # the original stays unused, for the next request
    keyed.update(to_sign.encode("utf-8"))
    return keyed.hexdigest()


# -- The client's signers ---------------------------------------------------------------------

#: The payload hash of a request without a body (S3's GET and HEAD send it as X-Amz-Content-SHA256).
EMPTY_PAYLOAD_HASH = payload_hash(b"")


class _Mac(Protocol):
    """A keyed HMAC as :func:`signing_mac` makes it, or the OpenSSL object inside one."""

    def copy(self) -> _Mac: ...
    def update(self, msg: bytes) -> None: ...
    def hexdigest(self) -> str: ...


class _SigningKeys:
    """The keyed HMAC and credential scope of one region and service, computed once a day, and
    the canonical headers of the last request signed (a GET's are the same all second long)."""

    __slots__ = ("_cache", "_headers", "_region", "_service")

    def __init__(self, region: str, service: str) -> None:
        self._region = region
        self._service = service
        # (secret key, date) -> (keyed HMAC, credential scope): both change once a day.
        self._cache: tuple[str, str, _Mac, str] | None = None
        # The (name, value) pairs of the last request signed, and their canonical headers.
        self._headers: tuple[tuple[tuple[str, str], ...], str, str] | None = None

    def get(self, secret_key: str, date: str) -> tuple[_Mac, str]:
        cached = self._cache
        if cached is not None and cached[0] == secret_key and cached[1] == date:
            return cached[2], cached[3]
        keyed = signing_mac(signing_key(secret_key, date, self._region, self._service))
        # The OpenSSL HMAC inside the stdlib's wrapper, when it has one: copying it is a C call,
        # where the wrapper's copy() is Python (the same bytes either way).
        mac: _Mac = getattr(keyed, "_hmac", None) or keyed
        scope = credential_scope(date, self._region, self._service)
        self._cache = (secret_key, date, mac, scope)
        return mac, scope

    def canonical_headers(self, pairs: tuple[tuple[str, str], ...]) -> tuple[str, str]:
        """:func:`canonical_headers` of ``pairs``, remembered for the next request: the GETs of
        one second sign the very same headers (only their paths differ)."""
        cached = self._headers
        if cached is not None and cached[0] == pairs:
            return cached[1], cached[2]
        lines, signed = canonical_headers(pairs)
        self._headers = (pairs, lines, signed)
        return lines, signed


def _sign(
    keys: Keys,
    signing_keys: _SigningKeys,
    host: tuple[str, str],
    method: str,
    path: str,
    headers: dict[str, str],
    body_hash: str,
    timestamp: str,
    query: str = "",
) -> None:
    """Add ``X-Amz-Date``, ``X-Amz-Security-Token`` and ``Authorization`` to ``headers``."""
    access_key, secret_key, token = keys.access_key, keys.secret_key, keys.token
    if not access_key or not secret_key:
        raise ValueError("credentials without an access key or secret key cannot sign")
    headers["X-Amz-Date"] = timestamp
    if token:
        headers["X-Amz-Security-Token"] = token
    lines, signed = signing_keys.canonical_headers((host, *headers.items()))
    request = (
        f"{method}\n{path}\n{canonical_query(query) if query else ''}\n{lines}\n{signed}\n"
        f"{body_hash}"
    )
    mac, scope = signing_keys.get(secret_key, timestamp[:8])
    keyed = mac.copy()
    keyed.update(string_to_sign(timestamp, scope, request).encode("utf-8"))
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, "
        f"Signature={keyed.hexdigest()}"
    )


class RequestSigner:
    """Signs POSTs to one path on one host, as botocore's SigV4Auth would.

    :param host: the ``Host`` header value (``host[:port]``, port only when not the default).
    :param path: the request path, already URI-encoded as botocore serializes it.
    """

    __slots__ = ("_host", "_keys", "_path", "host")

    def __init__(self, *, host: str, path: str, region: str, service: str = "sagemaker") -> None:
        self.host = host
        # Fixed per endpoint: the canonical path, and the Host header as a signed header.
        self._path = canonical_path(path)
        self._host = ("host", host)
        self._keys = _SigningKeys(region, service)

    def sign(self, headers: dict[str, str], body: bytes, keys: Keys, timestamp: str) -> None:
        """Add ``X-Amz-Date``, ``X-Amz-Security-Token`` and ``Authorization`` to ``headers``.

        ``headers`` holds only headers that botocore signs (the ``X-Amzn-SageMaker-*`` ones, not
        ``User-Agent``); ``Host`` is the signer's own.
        """
        _sign(
            keys, self._keys, self._host, "POST", self._path, headers, payload_hash(body), timestamp
        )


class S3ReadSigner:
    """Signs bodiless requests (GET, HEAD) to one S3 host, as botocore's ``S3SigV4Auth`` would.

    S3 differs from the other services in two ways: the canonical path is the path as sent (S3
    neither normalizes nor encodes it again), and the payload hash is sent too, as
    ``X-Amz-Content-SHA256`` (a signed header).

    :param host: the ``Host`` header value (``host[:port]``, port only when not the default).
    """

    __slots__ = ("_host", "_keys", "host")

    def __init__(self, *, host: str, region: str) -> None:
        self.host = host
        self._host = ("host", host)
        self._keys = _SigningKeys(region, "s3")

    def sign(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        keys: Keys,
        timestamp: str,
        query: str = "",
    ) -> None:
        """Sign a request for ``path`` and ``query`` (both already URI-encoded, as sent): add
        ``X-Amz-Content-SHA256``, ``X-Amz-Date``, ``X-Amz-Security-Token`` and ``Authorization``
        to ``headers``, which hold only headers to sign (not ``User-Agent``)."""
        headers["X-Amz-Content-SHA256"] = EMPTY_PAYLOAD_HASH
        _sign(
            keys,
            self._keys,
            self._host,
            method,
            path,
            headers,
            EMPTY_PAYLOAD_HASH,
            timestamp,
            query,
        )
