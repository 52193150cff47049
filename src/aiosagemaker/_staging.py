"""Upload payloads over the inline limit to S3, and remove them once their result is known."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from ._request import S3Uri, parse_s3_uri

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["S3Staging"]

logger = logging.getLogger("aiosagemaker")


class S3Staging:
    """Where payloads over 128,000 bytes are uploaded before they are sent as ``InputLocation``.

    .. code-block:: python

        AsyncInvoker("my-endpoint", staging=S3Staging("s3://my-bucket/inputs/", cleanup=True))

    :param uri: an ``s3://bucket/prefix/`` location the endpoint's role can read.
    :param cleanup: delete each staged input once its job's result (or failure) is known.
    :param expected_bucket_owner: the account that must own the bucket (``ExpectedBucketOwner``).
    :raises InvalidRequestError: ``uri`` is not an ``s3://`` URI.
    """

    def __init__(
        self, uri: str, *, cleanup: bool = False, expected_bucket_owner: str | None = None
    ) -> None:
        self.location: S3Uri = parse_s3_uri(uri, field="staging")
        self.cleanup = cleanup
        self.expected_bucket_owner = expected_bucket_owner
        self.staged = 0
        self.deleted = 0

    def __repr__(self) -> str:
        return f"S3Staging({str(self.location)!r}, cleanup={self.cleanup})"

    def key_for(self, inference_id: str) -> S3Uri:
        # A random suffix keeps two jobs that share an inference id from overwriting each other.
        return self.location.join(f"{inference_id}-{uuid.uuid4().hex[:12]}")

    async def upload(
        self, s3: S3Client, body: bytes, content_type: str | None, inference_id: str
    ) -> str:
        """Put ``body`` at a fresh key below the staging location; return its ``s3://`` URI."""
        target = self.key_for(inference_id)
        extra: dict[str, str] = {}
        if content_type:
            extra["ContentType"] = content_type
        if self.expected_bucket_owner:
            extra["ExpectedBucketOwner"] = self.expected_bucket_owner
        await s3.put_object(Bucket=target.bucket, Key=target.key, Body=body, **extra)  # type: ignore[arg-type]
        self.staged += 1
        return str(target)

    async def delete(self, s3: S3Client, uri: str) -> None:
        """Remove a staged input; failures are logged, never raised (the result is already known)."""
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
            logger.warning("could not delete staged input %s: %s", uri, exc)
