"""Upload payloads over the inline limit to S3, and remove them once their result is known.

Uploads are retried under the invoker's ``RetryPolicy``: throttling (``SlowDown`` and kin, 429,
503), S3's 5xx and connection errors; a permanent refusal (``AccessDenied``, ``NoSuchBucket``, any
other 4xx) fails at once. Every attempt of one upload writes the same fresh key, so a retry after an
upload whose answer was lost overwrites it instead of leaving an orphan.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ._aws import aws_error_code
from ._core._request import S3Uri, parse_s3_uri
from ._exceptions import StagingError
from ._logs import logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from types_aiobotocore_s3 import S3Client

    from ._config import RetryPolicy

__all__ = ["S3Staging"]


# S3 asks to be called again later: throttling and transient server errors, by the codes botocore's
# standard retry mode treats so (botocore/retries/standard.py) that a PutObject can answer.
# https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
_RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "InternalError",
        "ServiceUnavailable",
        # 400 on the wire, but S3 means "the upload stalled": the next attempt can succeed.
        "RequestTimeout",
    }
)
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# What each permanent refusal means for whoever reads the error.
_HINTS = {
    "AccessDenied": "the credentials need s3:PutObject on {location} (and kms:GenerateDataKey on "
    "the key when staged inputs or the bucket use SSE-KMS){owner}",
    "NoSuchBucket": "the staging bucket {bucket!r} does not exist",
    "InvalidBucketName": "{bucket!r} is not a valid bucket name",
    "AllAccessDisabled": "all access to the bucket {bucket!r} is disabled",
}


class S3Staging:
    """Where payloads over 128,000 bytes are uploaded before they are sent as ``InputLocation``.

    .. code-block:: python

        AsyncInvoker("my-endpoint", staging=S3Staging("s3://my-bucket/inputs/", cleanup=True))

    :param uri: an ``s3://bucket/prefix/`` location the endpoint's role can read.
    :param cleanup: delete each staged input once its job's result (or failure) is known.
    :param expected_bucket_owner: the account that must own the bucket (``ExpectedBucketOwner``).
    :param kms_key_id: encrypt staged payloads with this KMS key (SSE-KMS: a key id, ARN or
        alias); ``None``: the bucket's default encryption (SSE-S3 unless the bucket says
        otherwise). The endpoint's execution role then needs ``kms:Decrypt`` on the key.
    :raises InvalidRequestError: ``uri`` is not an ``s3://`` URI.
    """

    def __init__(
        self,
        uri: str,
        *,
        cleanup: bool = False,
        expected_bucket_owner: str | None = None,
        kms_key_id: str | None = None,
    ) -> None:
        self.location: S3Uri = parse_s3_uri(uri, field="staging")
        self.cleanup = cleanup
        self.expected_bucket_owner = expected_bucket_owner
        self.kms_key_id = kms_key_id
        self.staged = 0
        self.deleted = 0

    def __repr__(self) -> str:
        return f"S3Staging({str(self.location)!r}, cleanup={self.cleanup})"

    def key_for(self, inference_id: str) -> S3Uri:
        # A random suffix keeps two jobs that share an inference id from overwriting each other.
        return self.location.join(f"{inference_id}-{uuid.uuid4().hex[:12]}")

    async def stage(
        self,
        s3: S3Client,
        body: bytes,
        content_type: str | None,
        inference_id: str,
        retry: RetryPolicy,
        rand: Callable[[], float] = random.random,
        *,
        endpoint_name: str | None = None,
    ) -> str:
        """Upload ``body`` to a fresh key below the staging location; return its ``s3://`` URI.

        Throttling, S3's 5xx and connection errors are retried under ``retry`` (the policy of the
        invokes, with its jittered backoff); any other refusal fails at once.

        :param s3: a client with botocore's own retries off (ours are the only ones).
        :param rand: draws the jitter of each backoff, in [0, 1).
        :param endpoint_name: the endpoint the payload is for (a field of the log records).
        :raises StagingError: with S3's error code (``HTTP<status>`` when it gave none,
            ``ConnectionError`` when S3 could not be reached) and the botocore error as its cause.
        """
        target = self.key_for(inference_id)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._put(s3, target, body, content_type)
            except (ClientError, BotoCoreError) as exc:
                code, status = _classify(exc)
                retryable = (
                    code in _RETRYABLE_CODES
                    or status in _RETRYABLE_STATUS
                    or isinstance(exc, (BotoConnectionError, HTTPClientError))
                )
                if not retryable or attempt >= retry.max_attempts:
                    raise _staging_error(
                        exc,
                        code,
                        status,
                        target=target,
                        staging=self,
                        inference_id=inference_id,
                        attempts=attempt,
                    ) from exc
                logger.debug(
                    "retrying the upload of inference %s after %s (attempt %d)",
                    inference_id,
                    code,
                    attempt,
                    extra={"endpoint": endpoint_name, "inference_id": inference_id},
                )
            else:
                self.staged += 1
                return str(target)
            await asyncio.sleep(retry.backoff(attempt, rand()))

    async def _put(
        self, s3: S3Client, target: S3Uri, body: bytes, content_type: str | None
    ) -> None:
        extra: dict[str, str] = {}
        if content_type:
            extra["ContentType"] = content_type
        if self.expected_bucket_owner:
            extra["ExpectedBucketOwner"] = self.expected_bucket_owner
        if self.kms_key_id:
            extra["ServerSideEncryption"] = "aws:kms"
            extra["SSEKMSKeyId"] = self.kms_key_id
        await s3.put_object(Bucket=target.bucket, Key=target.key, Body=body, **extra)  # type: ignore[arg-type]

    async def delete(self, s3: S3Client, uri: str, *, endpoint_name: str | None = None) -> None:
        """Remove a staged input; failures are logged, never raised (the result is already known).

        :param endpoint_name: the endpoint the input was for (a field of the log records).
        """
        target = parse_s3_uri(uri, field="InputLocation")
        try:
            if self.expected_bucket_owner:
                await s3.delete_object(
                    Bucket=target.bucket,
                    Key=target.key,
                    ExpectedBucketOwner=self.expected_bucket_owner,
                )
            else:
                await s3.delete_object(Bucket=target.bucket, Key=target.key)
            self.deleted += 1
        except Exception as exc:  # noqa: BLE001 - clean-up is best effort
            logger.warning(
                "could not delete staged input %s: %s", uri, exc, extra={"endpoint": endpoint_name}
            )


def _classify(exc: ClientError | BotoCoreError) -> tuple[str, int | None]:
    code, status = aws_error_code(exc)
    if code is None:
        # No answer from S3 (botocore's connection and timeout errors), or a local botocore error.
        code = (
            "ConnectionError"
            if isinstance(exc, (BotoConnectionError, HTTPClientError))
            else type(exc).__name__
        )
    return code, status


def _staging_error(
    exc: ClientError | BotoCoreError,
    code: str,
    status: int | None,
    *,
    target: S3Uri,
    staging: S3Staging,
    inference_id: str,
    attempts: int,
) -> StagingError:
    if isinstance(exc, ClientError):
        detail = str(exc.response.get("Error", {}).get("Message") or "")
        where = f"HTTP {status}" if status is not None else "no status"
        answer = f"S3 answered {code} ({where}{': ' + detail if detail else ''})"
    elif code == "ConnectionError":
        answer = f"S3 could not be reached ({exc})"
    else:
        answer = f"{code}: {exc}"
    hint = _HINTS.get(code)
    if hint:
        owner = staging.expected_bucket_owner
        hint = "; " + hint.format(
            bucket=staging.location.bucket,
            location=f"{staging.location}*",
            owner=f", and the bucket must be owned by account {owner}" if owner else "",
        )
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return StagingError(
        f"could not upload the payload to {target}{tries}: {answer}{hint}",
        code=code,
        status=status,
        inference_id=inference_id,
    )
