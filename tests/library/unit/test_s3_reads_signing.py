"""The S3 reads' requests against botocore's, byte for byte: the URL botocore's endpoint resolution
gives (virtual-hosted or path style), the key's encoding, and ``S3SigV4Auth``'s signature over the
same headers. botocore's request is caught just before it would be sent."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from botocore.config import Config

from aiosagemaker import AwsContext
from aiosagemaker._core._sigv4 import FrozenKeys
from aiosagemaker._s3_reads import S3Reads

KEYS = [
    "out/plain.out",
    "out/with space+plus=eq~tilde.out",
    "out/ünïcödé/日本.out",
    "out/%41-percent&amp;?#.out",
    "a//double/slash/../dots/./x",
]
# Headers botocore adds but does not sign, or that only exist on its side.
UNSIGNED = {"user-agent", "amz-sdk-invocation-id", "amz-sdk-request"}


class _Caught(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _headers_to_sign(request: Any) -> dict[str, str]:
    """botocore's request headers that our signer is given: not those it adds itself, nor those
    botocore sends unsigned."""
    ours = {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
    return {
        name: _text(value)
        for name, value in request.headers.items()
        if name.lower() not in UNSIGNED | ours
    }


def _catch(request: Any, **_: Any) -> None:
    raise _Caught(request)


async def _botocore_request(client: Any, operation: str, **params: Any) -> Any:
    client.meta.events.register_first("before-send.s3.*", _catch)
    try:
        with pytest.raises(_Caught) as caught:
            await getattr(client, operation)(**params)
    finally:
        client.meta.events.unregister("before-send.s3.*", _catch)
    return caught.value.request


@pytest.mark.parametrize(
    ("endpoint_url", "region", "token", "bucket", "owner"),
    [
        ("http://127.0.0.1:5077", "us-east-1", None, "results-bucket", None),
        (None, "eu-west-1", "session-token", "results-bucket", "111122223333"),
        (None, "us-east-1", None, "results.with.dots", None),
        ("https://s3.internal.example:8443", "ap-south-1", "tok", "results-bucket", None),
    ],
)
@pytest.mark.parametrize("operation", ["get_object", "head_object"])
async def test_request_matches_botocores(
    monkeypatch: pytest.MonkeyPatch,
    endpoint_url: str | None,
    region: str,
    token: str | None,
    bucket: str,
    owner: str | None,
    operation: str,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    if token:
        monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    keys = FrozenKeys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token)
    aws = AwsContext(region_name=region)
    try:
        client = await aws.client("s3", endpoint_url=endpoint_url)
        reads = S3Reads(client, aws=aws, pool=4)
        route = await reads._routes.get(bucket)
        assert route is not None
        for key in KEYS:
            extra = {"ExpectedBucketOwner": owner} if owner else {}
            if operation == "get_object":
                extra["ChecksumMode"] = "ENABLED"  # what botocore sends by default
            theirs = await _botocore_request(client, operation, Bucket=bucket, Key=key, **extra)
            path = route.prefix + quote(key, safe="/~")
            assert route.base + path == theirs.url
            headers = _headers_to_sign(theirs)
            timestamp = _text(theirs.headers["X-Amz-Date"])
            method = "GET" if operation == "get_object" else "HEAD"
            route.signer.sign(method, path, headers, keys, timestamp)
            assert headers["Authorization"] == _text(theirs.headers["Authorization"])
            assert headers["X-Amz-Content-SHA256"] == _text(theirs.headers["X-Amz-Content-SHA256"])
        await reads.aclose()
    finally:
        await aws.aclose()


LISTINGS = [
    {"Prefix": "out/aiosm-run/"},
    {"Prefix": "out/ünï cöde+/", "StartAfter": "out/ünï cöde+/00000000004"},
    {"Prefix": "", "ContinuationToken": "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=="},
]


@pytest.mark.parametrize(
    ("endpoint_url", "region", "bucket"),
    [
        ("http://127.0.0.1:5077", "us-east-1", "results-bucket"),
        (None, "eu-west-1", "results-bucket"),
    ],
)
async def test_listing_matches_botocores(
    monkeypatch: pytest.MonkeyPatch, endpoint_url: str | None, region: str, bucket: str
) -> None:
    """ListObjectsV2 (encoding-type=url, as botocore asks): the same URL, query and signature."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    keys = FrozenKeys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG")
    aws = AwsContext(region_name=region)
    sent: list[Any] = []

    async def fake_send(
        route: Any,
        method: str,
        path: str,
        headers: dict[str, str],
        owner: Any,
        query: str = "",
        **_: Any,
    ) -> Any:
        sent.append((route, method, path, query))
        raise _Caught(None)

    try:
        client = await aws.client("s3", endpoint_url=endpoint_url)
        reads = S3Reads(client, aws=aws, pool=4)
        monkeypatch.setattr(reads, "_send", fake_send)
        for listing in LISTINGS:
            theirs = await _botocore_request(client, "list_objects_v2", Bucket=bucket, **listing)
            with pytest.raises(_Caught):
                await reads.list_objects_v2(Bucket=bucket, **listing)
            route, method, path, query = sent.pop()
            url, _, their_query = theirs.url.partition("?")
            assert route.base + path == url
            assert sorted(query.split("&")) == sorted(their_query.split("&"))
            headers = _headers_to_sign(theirs)
            route.signer.sign(
                method, path, headers, keys, _text(theirs.headers["X-Amz-Date"]), query
            )
            assert headers["Authorization"] == _text(theirs.headers["Authorization"])
        await reads.aclose()
    finally:
        await aws.aclose()


async def test_directory_buckets_and_access_points_are_botocores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    aws = AwsContext(region_name="us-east-1")
    try:
        reads = S3Reads(await aws.client("s3"), aws=aws, pool=4)
        assert await reads._routes.get("results--use1-az4--x-s3") is None
        assert await reads._routes.get("arn:aws:s3:us-east-1:111122223333:accesspoint/ap") is None
    finally:
        await aws.aclose()


@pytest.mark.parametrize(
    ("config", "header"),
    [(None, "ENABLED"), (Config(response_checksum_validation="when_required"), None)],
    ids=["botocore-default", "when_required"],
)
async def test_checksum_mode_follows_the_clients_config(
    monkeypatch: pytest.MonkeyPatch, config: Config | None, header: str | None
) -> None:
    """A GET asks for the object's checksum (and checks it) as botocore does by default, and not
    when the user's ``Config`` says ``response_checksum_validation="when_required"``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    sent: list[dict[str, str]] = []

    async def fake_send(
        route: Any, method: str, path: str, headers: dict[str, str], *_: Any, **__: Any
    ) -> Any:
        sent.append(headers)
        raise _Caught(None)

    aws = AwsContext(region_name="us-east-1", config=config)
    try:
        reads = S3Reads(await aws.client("s3", endpoint_url="http://127.0.0.1:9"), aws=aws, pool=2)
        monkeypatch.setattr(reads, "_send", fake_send)
        with pytest.raises(_Caught):
            await reads.read_object("results-bucket", "k", limit=1024)
    finally:
        await aws.aclose()
    assert sent[0].get("x-amz-checksum-mode") == header
