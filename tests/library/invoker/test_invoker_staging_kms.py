"""Staged payloads encrypted with a KMS key (``S3Staging(kms_key_id=)``), against the local stack:
the staged object says SSE-KMS and names the key; without a key, the bucket's default."""

from __future__ import annotations

import pytest
from aiobotocore.session import get_session

from aiosagemaker import (
    MAX_INLINE_BODY_BYTES,
    AsyncInvoker,
    S3Polling,
    S3Staging,
    parse_s3_uri,
)
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

KEY = "alias/my-key"


@pytest.fixture
def endpoint(quiet_endpoint: EndpointInfo) -> EndpointInfo:
    """Results are found by S3 polling: no notifications needed."""
    return quiet_endpoint


@pytest.mark.parametrize("kms_key_id", [KEY, None], ids=["kms-key", "bucket-default"])
async def test_staged_payload_is_encrypted_with_the_key(
    stack_env: LocalStack, endpoint: EndpointInfo, kms_key_id: str | None
) -> None:
    bucket = stack_env.info.bucket
    # cleanup=False: the staged object stays, to be looked at.
    staging = S3Staging(f"s3://{bucket}/staging/{endpoint.name}/", kms_key_id=kms_key_id)
    payload = bytes(range(256)) * (MAX_INLINE_BODY_BYTES // 256 + 1)
    assert len(payload) > MAX_INLINE_BODY_BYTES == 128_000
    async with AsyncInvoker(
        endpoint.name, staging=staging, watcher=S3Polling(interval=0.05)
    ) as invoker:
        job = await invoker.submit(payload, content_type="application/octet-stream")
        assert not job.inline
        result = await job.result(timeout=30)
        await invoker.drain()
    assert result.body == payload  # the endpoint read the encrypted input
    assert (staging.staged, staging.deleted) == (1, 0)
    assert job.input_location is not None
    staged = parse_s3_uri(job.input_location)
    assert staged.bucket == bucket and staged.key.startswith(f"staging/{endpoint.name}/")
    async with get_session().create_client("s3") as s3:
        head = await s3.head_object(Bucket=staged.bucket, Key=staged.key)
        stored = await s3.get_object(Bucket=staged.bucket, Key=staged.key)
        assert await stored["Body"].read() == payload
    assert head["ContentType"] == "application/octet-stream"
    if kms_key_id is not None:
        assert head["ServerSideEncryption"] == "aws:kms"
        # AWS answers with the key's ARN (an alias resolved to its key); moto with the key id as
        # it was sent. Either names a KMS key, never another kind of encryption.
        key_id = head["SSEKMSKeyId"]
        assert key_id == kms_key_id or key_id.startswith("arn:aws:kms:")
    else:
        # The bucket's default: SSE-S3 on AWS (AES256), nothing at all on moto; never SSE-KMS.
        assert head.get("ServerSideEncryption") in (None, "AES256")
        assert "SSEKMSKeyId" not in head
