"""The watchers' GET and HEAD as signed requests of their own (``_s3_reads``), over loopback:
against moto (objects, keys that need encoding, errors shaped as botocore's, checksums), and
against a small fake S3 for what moto does not do (a wrong checksum, a bucket in another region).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from botocore.exceptions import ClientError, FlexibleChecksumError

from aiosagemaker import AwsContext
from aiosagemaker._s3_reads import S3Reads
from aiosagemaker.local import LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

KEY = "reads/ünï cödé+plus=eq~/x.out"


@pytest.fixture
async def reads(stack_env: LocalStack) -> AsyncIterator[tuple[S3Reads, Any, str]]:
    aws = AwsContext()
    client = await aws.client("s3")
    reads = S3Reads(client, aws=aws, pool=4)
    try:
        yield reads, client, stack_env.info.bucket
    finally:
        await reads.aclose()
        await aws.aclose()


async def _botocore_error(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        await call
    response = caught.value.response
    return {
        "code": response["Error"]["Code"],
        "status": response["ResponseMetadata"]["HTTPStatusCode"],
        "operation": caught.value.operation_name,
    }


async def test_get_and_head_read_what_botocore_reads(reads: tuple[S3Reads, Any, str]) -> None:
    ours, client, bucket = reads
    await client.put_object(
        Bucket=bucket, Key=KEY, Body=b"hello", ContentType="text/plain", ChecksumAlgorithm="SHA256"
    )
    assert await ours._routes.get(bucket) is not None  # our own request, not the fallback
    answer = await ours.get_object(Bucket=bucket, Key=KEY)
    assert (answer["ContentLength"], answer["ContentType"]) == (5, "text/plain")
    async with answer["Body"] as body:
        assert await body.read(3) == b"hel"
        assert await body.read() == b"lo"  # the SHA-256 S3 sent was checked on the way
    head = await ours.head_object(Bucket=bucket, Key=KEY)
    assert (head["ContentLength"], head["ContentType"]) == (5, "text/plain")


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
async def test_errors_are_botocores(reads: tuple[S3Reads, Any, str], operation: str) -> None:
    ours, client, bucket = reads
    for target in (bucket, "no-such-bucket-here"):
        theirs = await _botocore_error(getattr(client, operation)(Bucket=target, Key="missing"))
        mine = await _botocore_error(getattr(ours, operation)(Bucket=target, Key="missing"))
        assert mine == theirs


async def test_listing_reads_what_botocore_reads(reads: tuple[S3Reads, Any, str]) -> None:
    ours, client, bucket = reads
    prefix = "listing/ünï cöde+&<>/"
    keys = sorted(f"{prefix}{i:04d}-{c}.out" for i, c in enumerate("a b+c&d<e%f" * 3))
    for key in keys:
        await client.put_object(Bucket=bucket, Key=key, Body=b"x" * len(key))

    async def every_page(lister: Any, **args: Any) -> list[tuple[str, int]]:
        seen: list[tuple[str, int]] = []
        while True:
            page = (
                await lister(Bucket=bucket, Prefix=prefix, MaxKeys=7, **args)
                if False
                else (await lister(Bucket=bucket, Prefix=prefix, **args))
            )
            seen += [(item["Key"], item["Size"]) for item in page.get("Contents", ())]
            if not page.get("IsTruncated"):
                return seen
            args["ContinuationToken"] = page["NextContinuationToken"]

    mine = await every_page(ours.list_objects_v2)
    theirs = await every_page(client.list_objects_v2)
    assert mine == theirs
    assert [key for key, _ in mine] == keys
    start = keys[10]
    assert await every_page(ours.list_objects_v2, StartAfter=start) == await every_page(
        client.list_objects_v2, StartAfter=start
    )
    assert await ours.list_objects_v2(Bucket=bucket, Prefix="listing/none/") == {
        "IsTruncated": False,
        "KeyCount": 0,
    }


# --- a fake S3 for what moto does not do ---------------------------------------------------


@pytest.fixture
async def fake_s3(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[str, list[str]]]:
    """GET /bucket/KEY: ``good`` and ``bad`` carry a CRC32 (right, wrong); bucket ``elsewhere``
    answers 301 to requests signed for any region but eu-west-1, as S3 does."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        seen.append(f"{request.method} {request.path} {authorization.split('/')[2]}")
        bucket, _, key = request.path.lstrip("/").partition("/")
        if bucket == "elsewhere" and "/eu-west-1/" not in authorization:
            return web.Response(
                status=301,
                headers={"x-amz-bucket-region": "eu-west-1", "Content-Type": "application/xml"},
                body=b"<Error><Code>PermanentRedirect</Code><Message>elsewhere</Message></Error>",
            )
        body = b"payload bytes"
        crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        if key == "bad":
            crc = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
        return web.Response(body=body, headers={"x-amz-checksum-crc32": crc})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        yield "fake-bucket", seen
    finally:
        await runner.cleanup()


async def test_wrong_checksum_is_refused(fake_s3: tuple[str, list[str]]) -> None:
    bucket, _ = fake_s3
    aws = AwsContext(region_name="us-east-1")
    reads = S3Reads(await aws.client("s3"), aws=aws, pool=2)
    try:
        answer = await reads.get_object(Bucket=bucket, Key="good")
        async with answer["Body"] as body:
            assert await body.read() == b"payload bytes"
        answer = await reads.get_object(Bucket=bucket, Key="bad")
        async with answer["Body"] as body:
            with pytest.raises(FlexibleChecksumError):
                await body.read()
    finally:
        await reads.aclose()
        await aws.aclose()


async def test_bucket_in_another_region_is_read_through_botocore(
    fake_s3: tuple[str, list[str]],
) -> None:
    _, seen = fake_s3
    aws = AwsContext(region_name="us-east-1")
    reads = S3Reads(await aws.client("s3"), aws=aws, pool=2)
    try:
        answer = await reads.get_object(Bucket="elsewhere", Key="good")
        async with answer["Body"] as body:
            assert await body.read() == b"payload bytes"
        assert await reads._routes.get("elsewhere") is None  # from now on, botocore's
        answer = await reads.get_object(Bucket="elsewhere", Key="good")
        async with answer["Body"] as body:
            assert await body.read() == b"payload bytes"
    finally:
        await reads.aclose()
        await aws.aclose()
    # Ours (us-east-1), refused; botocore's, redirected by S3's answer to eu-west-1.
    assert seen[0] == "GET /elsewhere/good us-east-1"
    assert seen[-1] == "GET /elsewhere/good eu-west-1"
