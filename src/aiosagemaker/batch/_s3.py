"""The batch job's own S3 calls (inputs, part objects, the journal's checkpoints), in one place.

Every call carries ``ExpectedBucketOwner`` when the job sets one, and is retried with jittered
backoff on throttling, S3's 5xx and dropped connections (the clients of :class:`AwsContext` have
botocore's retries off). Any other refusal raises :class:`S3Error`, which names the object, S3's
code and what the credentials need.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiosagemaker import DEFAULT_RETRY_POLICY, AwsContext, S3Uri

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

__all__ = ["ObjectInfo", "S3Error", "S3Objects", "open_s3"]

logger = logging.getLogger("aiosagemaker")

_RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
    }
)
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_ATTEMPTS = 6
_NEEDS = {
    "get": "s3:GetObject",
    "put": "s3:PutObject",
    "list": "s3:ListBucket",
    "delete": "s3:DeleteObject",
    "head": "s3:GetObject",
}


class S3Error(OSError):
    """An S3 call of the batch job that failed for good.

    :param code: S3's error code (``NoSuchKey``, ``AccessDenied`` ...), or ``ConnectionError``.
    """

    def __init__(self, message: str, *, code: str, uri: S3Uri) -> None:
        super().__init__(message)
        self.code = code
        self.uri = uri


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object of a listing."""

    uri: S3Uri
    size: int
    etag: str


class S3Objects:
    """S3 calls under the job's settings.

    :param client: an aiobotocore S3 client (botocore's retries off).
    :param expected_bucket_owner: the account that must own every bucket the job touches.
    :param kms_key_id: objects this job writes are encrypted with this KMS key (SSE-KMS);
        ``None``: the bucket's default encryption (SSE-S3 unless the bucket says otherwise).
    """

    def __init__(
        self,
        client: Any,
        *,
        expected_bucket_owner: str | None = None,
        kms_key_id: str | None = None,
    ) -> None:
        self.client = client
        self.expected_bucket_owner = expected_bucket_owner
        self.kms_key_id = kms_key_id
        #: calls made, by kind (for the summary and tests)
        self.calls: dict[str, int] = {}

    def _owner(self) -> dict[str, str]:
        owner = self.expected_bucket_owner
        return {"ExpectedBucketOwner": owner} if owner else {}

    async def list(self, prefix: S3Uri) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix.key``, in key order (UTF-8 binary order,
        S3's own)."""
        found: list[ObjectInfo] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": prefix.bucket, "Prefix": prefix.key, **self._owner()}
            if token:
                args["ContinuationToken"] = token
            page = await self._call("list", prefix, functools.partial(self._list_page, args))
            for item in page.get("Contents", ()):
                found.append(
                    ObjectInfo(
                        S3Uri(prefix.bucket, item["Key"]),
                        int(item.get("Size", 0)),
                        str(item.get("ETag", "")).strip('"'),
                    )
                )
            if not page.get("IsTruncated"):
                return found
            token = page.get("NextContinuationToken")

    def _list_page(self, args: dict[str, Any]) -> Awaitable[Any]:
        return self.client.list_objects_v2(**args)  # type: ignore[no-any-return]

    async def head(self, uri: S3Uri) -> ObjectInfo | None:
        """The object's size and ETag; ``None`` when there is no such object."""
        try:
            response = await self._call(
                "head",
                uri,
                lambda: self.client.head_object(Bucket=uri.bucket, Key=uri.key, **self._owner()),
            )
        except S3Error as exc:
            if exc.code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(
            uri, int(response.get("ContentLength", 0)), str(response.get("ETag", "")).strip('"')
        )

    async def get(self, uri: S3Uri) -> bytes:
        """The whole object (for small ones: checkpoints, parts being checked)."""

        async def read() -> bytes:
            response = await self.client.get_object(Bucket=uri.bucket, Key=uri.key, **self._owner())
            async with response["Body"] as body:
                data: bytes = await body.read()
            return data

        data: bytes = await self._call("get", uri, read)
        return data

    async def chunks(
        self, uri: S3Uri, *, size: int = 1 << 20, if_match: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The object's bytes in chunks of about ``size``, streamed: memory does not grow with
        the object. A connection dropped part way resumes with a ranged GET from where it was.

        :param if_match: read only the version with this ETag (the one a listing saw): a
            replaced object fails with ``PreconditionFailed`` instead of mixing two versions.
        """
        offset = 0
        attempt = 0
        while True:
            args: dict[str, Any] = {"Bucket": uri.bucket, "Key": uri.key, **self._owner()}
            if if_match:
                args["IfMatch"] = f'"{if_match}"'
            if offset:
                args["Range"] = f"bytes={offset}-"
            response = await self._call("get", uri, functools.partial(self._get, args))
            try:
                async with response["Body"] as body:
                    while chunk := await body.read(size):
                        offset += len(chunk)
                        yield chunk
                return
            except Exception as exc:
                if not _is_connection_error(exc):
                    raise
                attempt += 1
                if attempt >= _ATTEMPTS:
                    raise S3Error(
                        f"cannot read s3://{uri.bucket}/{uri.key}: {exc}",
                        code="ConnectionError",
                        uri=uri,
                    ) from exc
                await asyncio.sleep(DEFAULT_RETRY_POLICY.backoff(attempt, random.random()))

    def _get(self, args: dict[str, Any]) -> Awaitable[Any]:
        return self.client.get_object(**args)  # type: ignore[no-any-return]

    async def put(
        self,
        uri: S3Uri,
        body: bytes,
        *,
        content_type: str | None = None,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str:
        """Write the object whole; return its ETag.

        :param if_none_match: only if there is no such object (else ``PreconditionFailed``).
        :param if_match: only if the object's ETag is this one (else ``PreconditionFailed``).
        """
        args: dict[str, Any] = {"Bucket": uri.bucket, "Key": uri.key, "Body": body, **self._owner()}
        if content_type:
            args["ContentType"] = content_type
        if if_none_match:
            args["IfNoneMatch"] = "*"
        if if_match:
            args["IfMatch"] = f'"{if_match}"'
        if self.kms_key_id:
            args["ServerSideEncryption"] = "aws:kms"
            args["SSEKMSKeyId"] = self.kms_key_id
        response = await self._call("put", uri, lambda: self.client.put_object(**args))
        return str(response.get("ETag", "")).strip('"')

    async def delete(self, uri: S3Uri) -> None:
        await self._call(
            "delete",
            uri,
            lambda: self.client.delete_object(Bucket=uri.bucket, Key=uri.key, **self._owner()),
        )

    async def _call(self, kind: str, uri: S3Uri, call: Callable[[], Awaitable[Any]]) -> Any:
        attempt = 0
        while True:
            attempt += 1
            self.calls[kind] = self.calls.get(kind, 0) + 1
            try:
                return await call()
            except Exception as exc:
                code, status = _code_of(exc)
                if code is None and not _is_connection_error(exc):
                    raise
                code = code or "ConnectionError"
                retryable = (
                    code in _RETRYABLE_CODES
                    or status in _RETRYABLE_STATUS
                    or code == "ConnectionError"
                )
                if not retryable or attempt >= _ATTEMPTS:
                    raise S3Error(
                        self._message(kind, uri, code, status, exc, attempt), code=code, uri=uri
                    ) from exc
                logger.debug("retrying S3 %s of %s after %s", kind, uri, code)
            await asyncio.sleep(DEFAULT_RETRY_POLICY.backoff(attempt, random.random()))

    def _message(
        self, kind: str, uri: S3Uri, code: str, status: int | None, exc: Exception, attempts: int
    ) -> str:
        where = f"s3://{uri.bucket}/{uri.key}"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        text = f"S3 {kind} of {where} failed{tries}: {code}"
        if status is not None:
            text += f" (HTTP {status})"
        if code in ("AccessDenied", "403"):
            needs = _NEEDS[kind]
            if kind == "put" and self.kms_key_id:
                needs += " and kms:GenerateDataKey on the key"
            owner = self.expected_bucket_owner
            text += f"; the credentials need {needs} there"
            if owner:
                text += f", and the bucket must be owned by account {owner}"
        elif code == "NoSuchBucket":
            text += f"; the bucket {uri.bucket!r} does not exist"
        elif code == "ConnectionError":
            text += f": {exc}"
        return text


def _code_of(exc: BaseException) -> tuple[str | None, int | None]:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None, None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = response.get("Error", {}).get("Code") or (f"{status}" if status else None)
    return code, status


def _is_connection_error(exc: BaseException) -> bool:
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError, ResponseStreamingError

    connection = (BotoConnectionError, HTTPClientError, ResponseStreamingError, OSError)
    return isinstance(exc, connection) or isinstance(exc, asyncio.TimeoutError)


async def open_s3(
    *,
    region: str | None,
    profile: str | None,
    expected_bucket_owner: str | None = None,
    kms_key_id: str | None = None,
) -> tuple[AwsContext, S3Objects]:
    """An S3 client under the job's settings; ``aclose()`` the context when done."""
    aws = AwsContext(region_name=region, profile=profile)
    try:
        client = await aws.client("s3")
    except BaseException:
        await aws.aclose()
        raise
    return aws, S3Objects(
        client, expected_bucket_owner=expected_bucket_owner, kms_key_id=kms_key_id
    )
