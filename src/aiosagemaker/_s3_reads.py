"""Reads of results (GET, HEAD, ListObjectsV2) as one signed request each, botocore as the
fallback.

Every completed job costs one GET of its output and, with ``S3Polling``, a share of a listing:
the result path's hot calls. Through aiobotocore a GET costs several times the HTTP request
itself (endpoint rules, event hooks, request serialization, response parsing), and a listing
parses every key's date with dateutil; here each bucket is prepared once (its URL, as botocore's
own endpoint resolution gives it, and a signer), each read is one signed request on a pool that
honours the user's HTTP settings (see ``_http``), and a listing keeps only what the watchers read
(keys, sizes, the continuation token). The pool is our own keep-alive pool (``_http_pool``) unless
the settings need aiohttp (a proxy); a GET read as a stream (``get_object``) goes through aiohttp.

Kept from botocore: the URL (virtual-hosted or path style, custom endpoints, FIPS, dual-stack:
whatever the client's configuration resolves to), the signature (``S3SigV4Auth``'s, tested byte
for byte), ``ExpectedBucketOwner``, GetObject's response checksum validation (the
``x-amz-checksum-mode`` request header and the same algorithms, when the client's
``response_checksum_validation`` is ``when_supported``, botocore's default), and errors as the
``ClientError`` botocore would raise (its code, message, status and request id). Left to
aiobotocore: a bucket whose region is not the client's (botocore follows S3's redirect), directory
buckets and access points (other signing), and any bucket whose URL cannot be prepared.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import re
import uuid
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

import aiohttp
import yarl
from botocore import httpchecksum
from botocore.exceptions import ClientError, FlexibleChecksumError

from ._core._sigv4 import S3ReadSigner, amz_date
from ._http import USER_AGENT, read_answer
from ._http_pool import ConnectionPool, HttpResponse, RequestHead
from ._logs import logger
from ._prepared import (
    BOTOCORE_TIMEOUT,
    PoolsByHost,
    PreparedOnce,
    catch_request,
    host_header,
    signing_scope,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._aws import AwsContext

__all__ = ["ObjectBody", "ObjectRead", "S3Reads"]


_PROBE_KEY = "aiosagemaker-probe"
# An error answer's body is a short XML document; anything longer is not one.
_MAX_ERROR_BYTES = 64 * 1024
# The credential scope in an Authorization header: .../DATE/REGION/SERVICE/aws4_request
_CODE = re.compile(rb"<Code>([^<]{1,256})</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]{0,2048})</Message>")
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
# A listing page of 1,000 keys is some 300 KB; anything far longer is not one.
_MAX_LISTING_BYTES = 32 * 1024 * 1024
# A key that quote() leaves as it is: letters, digits, "/" and "-_.~" (every key this library
# names its outputs with).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9/_.~-]*")
# A GET's read chunk from botocore's stream (the fallback): reads return what has arrived.
_READ_CHUNK = 256 * 1024


class _Unset(enum.Enum):
    """A bucket whose route is not prepared yet."""

    UNSET = 0


class ObjectBody(Protocol):
    """What the watchers read of a GET's body: ours, or aiobotocore's ``StreamingBody``."""

    async def read(self, amt: int = -1) -> bytes: ...


class _Crc32:
    def __init__(self) -> None:
        self._crc = 0

    def update(self, chunk: bytes) -> None:
        self._crc = zlib.crc32(chunk, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(4, "big")


def _checksum_classes() -> tuple[list[str], dict[str, Callable[[], Any]]]:
    """The response checksums botocore validates here, in its order of preference (the CRC32C
    and CRC64NVME ones only with ``awscrt`` installed, as botocore); our own table if botocore's
    private names ever move, rather than no validation."""
    classes = getattr(httpchecksum, "_CHECKSUM_CLS", None)
    order = getattr(httpchecksum, "_ALGORITHMS_PRIORITY_LIST", None)
    if isinstance(classes, dict) and isinstance(order, list):
        return [name for name in order if name in classes], dict(classes)
    return ["crc32", "sha1", "sha256"], {
        "crc32": _Crc32,
        "sha1": hashlib.sha1,
        "sha256": hashlib.sha256,
    }


_CHECKSUM_ORDER, _CHECKSUM_CLASSES = _checksum_classes()
# The answer header of each, in that order (formatted once, not per answer).
_CHECKSUM_HEADERS = [(f"x-amz-checksum-{name}", name) for name in _CHECKSUM_ORDER]


@dataclass(slots=True)
class ObjectRead:
    """One object read into memory by :meth:`S3Reads.read_object` (not frozen: made for every
    output read, and a frozen dataclass's ``__init__`` costs several times a plain one's)."""

    #: the object, or its first ``limit`` bytes (``cut``); ``None``: over the limit, left unread
    body: bytes | None
    #: the object's size, from the answer's ContentLength (``None`` when S3 sent none)
    size: int | None
    content_type: str | None
    #: ``body`` is the object's head only
    cut: bool = False
    #: body bytes read from S3 (what a watcher counts as read)
    read: int = 0


@dataclass(frozen=True, slots=True)
class _Route:
    """How to reach one bucket: the base URL, the path before the key, the signer, the proxy
    (read from the environment once, as botocore reads it once per client: reading it costs a
    walk of the whole environment), and our pool for its host (``None``: aiohttp's session)."""

    base: str
    prefix: str
    signer: S3ReadSigner
    proxy: str | None
    pool: ConnectionPool | None


def _checksum_of(headers: Any) -> tuple[Any, str] | None:
    """The checksum to validate a GET's body with, and its expected value (base64), as botocore
    picks it from the answer's headers; ``None`` when there is none to check."""
    algorithm, value = _checksum_header(headers)
    if value is None:
        return None
    return _CHECKSUM_CLASSES[algorithm](), value


def _checksum_header(headers: Any) -> tuple[str, str | None]:
    """The algorithm and expected value (base64) of the answer's checksum header that botocore
    would validate the body with; ``(\"\", None)`` when there is none."""
    get = headers.get
    for header, algorithm in _CHECKSUM_HEADERS:
        value = get(header)
        # A "-N" suffix marks a checksum of the parts' checksums: not the object's own.
        if value is not None and "-" not in value:
            return algorithm, value
    return "", None


def _check_body(headers: Any, body: bytes) -> None:
    """Check a whole body against the answer's checksum header, as botocore checks it."""
    algorithm, expected = _checksum_header(headers)
    if expected is None:
        return
    if algorithm == "crc32":
        # botocore's Crc32Checksum is zlib's CRC-32, big-endian: computed at once.
        _compare(zlib.crc32(body).to_bytes(4, "big"), expected)
        return
    checksum = _CHECKSUM_CLASSES[algorithm]()
    checksum.update(body)
    _verify(checksum, expected)


def _verify(checksum: Any, expected: str) -> None:
    _compare(checksum.digest(), expected)


def _compare(digest: bytes, expected: str) -> None:
    # binascii's decoder is what base64.b64decode calls (non-strict), without its wrapping.
    if digest != binascii.a2b_base64(expected):
        raise FlexibleChecksumError(
            error_msg=f"Expected checksum {expected} did not match calculated "
            f"checksum: {base64.b64encode(digest).decode()}"
        )


class _Body:
    """An open GET's body, as the watchers read aiobotocore's ``StreamingBody``: ``read(n)``, and
    ``async with`` to close it. A body left unread is dropped with its connection, not drained.
    A full read is checked against the response's checksum header, as botocore checks it."""

    __slots__ = ("_checksum", "_expected", "_length", "_read", "_response")

    def __init__(self, response: aiohttp.ClientResponse, length: int | None) -> None:
        self._response = response
        self._length = length
        self._read = 0
        checksum = _checksum_of(response.headers)
        self._checksum: Any = checksum[0] if checksum is not None else None
        self._expected = checksum[1] if checksum is not None else ""

    async def __aenter__(self) -> _Body:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()

    async def read(self, amt: int = -1) -> bytes:
        chunk = await self._response.content.read(amt)
        self._read += len(chunk)
        if self._checksum is not None:
            self._checksum.update(chunk)
            if not chunk or self._read == self._length:
                self._verify()
        return chunk

    def _verify(self) -> None:
        checksum, self._checksum = self._checksum, None
        _verify(checksum, self._expected)


class S3Reads:
    """GET and HEAD of S3 objects: signed requests of our own where a bucket allows, the
    aiobotocore ``client`` elsewhere. Answers are shaped as botocore's (``ContentLength``,
    ``ContentType``, ``Body``), errors raised as its ``ClientError``.

    :param client: the aiobotocore S3 client: its configuration resolves each bucket's URL, and it
        serves what this class does not.
    :param aws: where the client came from: the user's HTTP settings and the credentials (read at
        the first request, as botocore reads them).
    """

    def __init__(self, client: Any, *, aws: AwsContext, pool: int) -> None:
        self._client = client
        self._aws = aws
        self._http = aws.http
        self._pool = pool
        self._region: str = client.meta.region_name  # the client's; a bucket's may differ
        config = client.meta.config
        self._checksum_mode = (
            getattr(config, "response_checksum_validation", None) or "when_supported"
        ) == "when_supported"
        # Each bucket's route, prepared once (None: the bucket is botocore's).
        self._routes = PreparedOnce(self._prepare, "bucket")
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}
        self._sessions_lock = asyncio.Lock()
        self._pools = PoolsByHost(self._http, limit=pool)
        self._user_agent = self._http.user_agent(USER_AGENT)

    async def aclose(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()
        await self._pools.aclose()

    async def get_object(
        self, *, Bucket: str, Key: str, ExpectedBucketOwner: str | None = None
    ) -> dict[str, Any]:
        """The object's ``ContentLength``, ``ContentType`` and ``Body``: a stream, read as the
        caller goes (:meth:`read_object` reads one into memory)."""
        route = await self._routes.get(Bucket)
        if route is not None:
            headers = {"x-amz-checksum-mode": "ENABLED"} if self._checksum_mode else {}
            path = route.prefix + _key_path(Key)
            response = await self._open(route, "GET", path, headers, ExpectedBucketOwner)
            if response.status == 200:
                length = response.content_length
                return {
                    "ContentLength": length,
                    "ContentType": response.headers.get("Content-Type"),
                    "Body": _Body(response, length),
                }
            answer = await read_answer(response, _MAX_ERROR_BYTES)
            self._refused(answer, "GET", "GetObject", Bucket)
        return await self._fallback(
            "get_object", Bucket=Bucket, Key=Key, ExpectedBucketOwner=ExpectedBucketOwner
        )

    async def read_object(
        self, bucket: str, key: str, *, limit: int, cut: bool = False, owner: str | None = None
    ) -> ObjectRead:
        """GET an object into memory, at most ``limit`` bytes of it: the whole object when it
        fits, else (``body`` is ``None``) nothing of it when its size says so, its body closed
        unread; with ``cut``, its first ``limit`` bytes. What a watcher reads an output or a
        failure object with: one signed request on our pool, the answer read whole (checked
        against its checksum), or botocore's ``get_object`` read the same way.

        :param owner: ``ExpectedBucketOwner``.
        """
        route = self._routes.get_now(bucket, _Unset.UNSET)
        if isinstance(route, _Unset):
            route = await self._routes.get(bucket)
        if route is not None:
            headers = {"x-amz-checksum-mode": "ENABLED"} if self._checksum_mode else {}
            # One byte past the limit tells an object over it when S3 gives no size.
            answer = await self._send(
                route,
                "GET",
                route.prefix + _key_path(key),
                headers,
                owner,
                max_body=limit + 1,
                partial=cut,
            )
            if answer.status == 200:
                return _object_read(answer, limit, cut)
            self._refused(answer, "GET", "GetObject", bucket)
        response = await self._fallback(
            "get_object", Bucket=bucket, Key=key, ExpectedBucketOwner=owner
        )
        size = response.get("ContentLength")
        content_type = response.get("ContentType")
        # Leaving the block closes the body, read or not; unread, its connection is dropped
        # rather than drained, so no more of it is fetched.
        async with response["Body"] as stream:
            if size is not None and size > limit and not cut:
                return ObjectRead(None, size, content_type)
            body = await _read_at_most(stream, limit + 1)
        return _bounded(body, size, content_type, limit, cut)

    async def head_object(
        self, *, Bucket: str, Key: str, ExpectedBucketOwner: str | None = None
    ) -> dict[str, Any]:
        route = await self._routes.get(Bucket)
        if route is not None:
            path = route.prefix + _key_path(Key)
            answer = await self._send(route, "HEAD", path, {}, ExpectedBucketOwner, max_body=0)
            if answer.status == 200:
                length = answer.headers.get("Content-Length")
                return {
                    "ContentLength": int(length) if length and length.isdigit() else None,
                    "ContentType": answer.headers.get("Content-Type"),
                }
            self._refused(answer, "HEAD", "HeadObject", Bucket)
        return await self._fallback(
            "head_object", Bucket=Bucket, Key=Key, ExpectedBucketOwner=ExpectedBucketOwner
        )

    async def list_objects_v2(
        self,
        *,
        Bucket: str,
        Prefix: str = "",
        StartAfter: str | None = None,
        ContinuationToken: str | None = None,
        MaxKeys: int | None = None,
        ExpectedBucketOwner: str | None = None,
    ) -> dict[str, Any]:
        """One page of a listing: ``Contents`` (``Key`` and ``Size`` of each object),
        ``IsTruncated`` and ``NextContinuationToken``, as botocore gives them."""
        route = await self._routes.get(Bucket)
        if route is not None:
            params = {"list-type": "2", "encoding-type": "url", "prefix": Prefix}
            if StartAfter is not None:
                params["start-after"] = StartAfter
            if ContinuationToken is not None:
                params["continuation-token"] = ContinuationToken
            if MaxKeys is not None:
                params["max-keys"] = str(MaxKeys)
            # botocore's query: each name and value percent-encoded outside "-_.~".
            query = "&".join(
                f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}"
                for name, value in sorted(params.items())
            )
            # The bucket itself: "/bucket" (path style) or "/" (virtual-hosted), as botocore
            # sends it.
            path = route.prefix.rstrip("/") or "/"
            answer = await self._send(
                route, "GET", path, {}, ExpectedBucketOwner, query, max_body=_MAX_LISTING_BYTES
            )
            if answer.status == 200:
                if not answer.complete or answer.cut:
                    raise aiohttp.ClientPayloadError(
                        f"the listing of {Bucket} broke off after {len(answer.body)} bytes"
                    )
                return _parse_listing(answer.body)
            self._refused(answer, "GET", "ListObjectsV2", Bucket)
        return await self._fallback(
            "list_objects_v2",
            Bucket=Bucket,
            Prefix=Prefix,
            StartAfter=StartAfter,
            ContinuationToken=ContinuationToken,
            MaxKeys=MaxKeys,
            ExpectedBucketOwner=ExpectedBucketOwner,
        )

    # --- the request ----------------------------------------------------------------------------

    async def _send(
        self,
        route: _Route,
        method: str,
        path: str,
        headers: dict[str, str],
        owner: str | None,
        query: str = "",
        *,
        max_body: int,
        partial: bool = True,
    ) -> HttpResponse:
        """One signed request, its answer read (at most ``max_body`` bytes of its body, or of an
        error's: ``_MAX_ERROR_BYTES``; with ``partial=False``, none of a longer one)."""
        pool = route.pool
        if pool is None:
            response = await self._open(route, method, path, headers, owner, query)
            if response.status != 200:
                return await read_answer(response, _MAX_ERROR_BYTES)
            return await read_answer(response, max_body, partial=partial)
        target = _signed(route, method, path, headers, owner, query, await self._aws.signing_keys())
        head = RequestHead(method, target, host=route.signer.host, user_agent=self._user_agent)
        answer = await pool.request(
            head.render(headers),
            head_only=method == "HEAD",
            timeout=None,  # botocore's are per connect and per read, as the pool's are
            max_body=max(max_body, _MAX_ERROR_BYTES),
            partial=partial,
        )
        if answer.status == 200 and len(answer.body) > max_body:
            answer.cut = True
            answer.body = answer.body[:max_body] if partial else b""
        return answer

    async def _open(
        self,
        route: _Route,
        method: str,
        path: str,
        headers: dict[str, str],
        owner: str | None,
        query: str = "",
    ) -> aiohttp.ClientResponse:
        """One signed request through aiohttp, its body left to read as a stream."""
        target = _signed(route, method, path, headers, owner, query, await self._aws.signing_keys())
        session = await self._session(route.proxy)
        return await session.request(
            method, yarl.URL(route.base + target, encoded=True), headers=headers
        )

    def _refused(self, answer: HttpResponse, method: str, operation: str, bucket: str) -> None:
        """An answer other than 200: raise the ``ClientError`` botocore would raise; or, for a
        bucket in another region, leave the bucket to botocore (which follows S3's redirect)
        and return, for the caller to ask botocore."""
        region = answer.headers.get("x-amz-bucket-region")
        if region is not None and region != self._region and answer.status in (301, 307, 400):
            logger.debug("bucket %s is in %s: its reads go through botocore", bucket, region)
            self._routes.leave_to_botocore(bucket)
            return
        payload = b"" if method == "HEAD" else answer.body
        code_match = _CODE.search(payload)
        message_match = _MESSAGE.search(payload)
        code = code_match.group(1).decode("utf-8", "replace") if code_match else str(answer.status)
        # A HEAD has no body: botocore's message is then the status's reason phrase.
        message = (
            message_match.group(1).decode("utf-8", "replace") if message_match else answer.reason
        )
        raise ClientError(
            {
                "Error": {"Code": code, "Message": message},
                "ResponseMetadata": {
                    "RequestId": answer.headers.get("x-amz-request-id", ""),
                    "HostId": answer.headers.get("x-amz-id-2", ""),
                    "HTTPStatusCode": answer.status,
                    "HTTPHeaders": {k.lower(): v for k, v in answer.headers.items()},
                    "RetryAttempts": 0,
                },
            },
            operation,
        )

    async def _fallback(self, method: str, **args: Any) -> dict[str, Any]:
        """The same call through botocore (its own names; the unset ones left out)."""
        given = {name: value for name, value in args.items() if value is not None}
        answer: dict[str, Any] = await getattr(self._client, method)(**given)
        return answer

    async def _session(self, proxy: str | None) -> aiohttp.ClientSession:
        session = self._sessions.get(proxy)
        if session is None:
            async with self._sessions_lock:
                session = self._sessions.get(proxy)
                if session is None:
                    # botocore's timeouts (60 s each), unless the user's Config sets them.
                    session = await self._http.session(
                        limit=self._pool,
                        proxy=proxy,
                        total=None,
                        connect=BOTOCORE_TIMEOUT,
                        read=BOTOCORE_TIMEOUT,
                    )
                    self._sessions[proxy] = session
        return session

    # --- preparing a bucket ---------------------------------------------------------------------

    async def _prepare(self, bucket: str) -> _Route | None:
        """The bucket's URL and signing region as botocore resolves them, or ``None`` for the
        buckets left to botocore.

        botocore's own request for a probe key is caught just before it would be sent (a
        ``before-send`` handler that lets every other request through): its URL shows the scheme,
        host and the path before the key; its ``Authorization`` the region and service it signs
        for. Nothing is sent.
        """
        if bucket.startswith("arn:") or bucket.endswith(("--x-s3", "--xa-s3")):
            return None  # access points, directory buckets: other endpoints and signing
        probe = f"{_PROBE_KEY}-{uuid.uuid4().hex}"
        request = await catch_request(
            self._client,
            "before-send.s3.GetObject",
            lambda: self._client.get_object(Bucket=bucket, Key=probe),
            matches=lambda request: request.url.endswith("/" + probe),
        )
        if request is None:
            return None
        parts = urlsplit(request.url)
        scope = signing_scope(request)
        if (
            scope is None
            or scope[1] != "s3"
            or parts.scheme not in ("http", "https")
            or parts.query
            or not parts.path.endswith("/" + probe)
        ):
            return None
        base = f"{parts.scheme}://{parts.netloc}"
        proxy = self._http.proxy_for(base)
        pool = await self._pools.get(base) if proxy is None else None
        return _Route(
            base=base,
            prefix=parts.path[: -len(probe)],
            signer=S3ReadSigner(host=host_header(parts), region=scope[0]),
            proxy=proxy,
            pool=pool,
        )


def _object_read(answer: HttpResponse, limit: int, cut: bool) -> ObjectRead:
    """A GET's 200, read with ``max_body=limit + 1``, as :meth:`S3Reads.read_object` returns it:
    its body checked against its checksum when whole."""
    if not answer.complete:
        raise aiohttp.ClientPayloadError(
            f"the object's body broke off after {len(answer.body)} bytes"
        )
    headers = answer.headers
    body = answer.body
    if not answer.cut:
        _check_body(headers, body)
    length = headers.get("Content-Length")
    size = int(length) if length is not None and length.isdigit() else None
    return _bounded(body, size, headers.get("Content-Type"), limit, cut)


def _signed(
    route: _Route,
    method: str,
    path: str,
    headers: dict[str, str],
    owner: str | None,
    query: str,
    keys: Any,
) -> str:
    """Sign the request in ``headers`` with ``keys``; return its target (path and query, as
    sent)."""
    if owner:
        headers["x-amz-expected-bucket-owner"] = owner
    route.signer.sign(method, path, headers, keys, amz_date(), query)
    return f"{path}?{query}" if query else path


def _bounded(
    body: bytes, size: int | None, content_type: str | None, limit: int, cut: bool
) -> ObjectRead:
    """What a read of at most ``limit + 1`` bytes of an object (``body``) comes to."""
    if size is not None and size > limit and not cut:
        return ObjectRead(None, size, content_type)  # left unread
    if len(body) <= limit:
        return ObjectRead(body, len(body), content_type, read=len(body))
    if cut:
        return ObjectRead(body[:limit], size, content_type, cut=True, read=len(body))
    # One byte past the limit tells an object over it when S3 gave no size.
    return ObjectRead(None, size, content_type, read=len(body))


async def _read_at_most(stream: ObjectBody, limit: int) -> bytes:
    """Read ``stream`` to its end or to ``limit`` bytes, whichever comes first."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = await stream.read(min(left, _READ_CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _key_path(key: str) -> str:
    """A key as botocore puts it in a path: "/" kept, everything else outside "~" unreserved
    percent-encoded (S3 signs the path as sent)."""
    if _PLAIN_KEY.fullmatch(key):
        return key  # nothing to encode
    return quote(key, safe="/~")


def _parse_listing(document: bytes) -> dict[str, Any]:
    """The parts of a ListObjectsV2 answer the watchers read (keys URL-decoded, as botocore does
    for ``encoding-type=url``)."""
    root = ElementTree.fromstring(document)
    ns = _S3_NS if root.tag.startswith(_S3_NS) else ""
    contents = []
    for item in root.iter(f"{ns}Contents"):
        key = item.findtext(f"{ns}Key") or ""
        size = item.findtext(f"{ns}Size")
        if "%" in key or "+" in key:
            key = unquote_plus(key)  # else there is nothing to decode
        contents.append({"Key": key, "Size": int(size) if size else 0})
    answer: dict[str, Any] = {
        "IsTruncated": (root.findtext(f"{ns}IsTruncated") or "").strip() == "true",
        "KeyCount": len(contents),
    }
    if contents:
        answer["Contents"] = contents
    token = root.findtext(f"{ns}NextContinuationToken")
    if token:
        answer["NextContinuationToken"] = token
    return answer
