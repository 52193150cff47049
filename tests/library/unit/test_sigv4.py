"""SigV4 against the reference: botocore's SigV4Auth, byte for byte.

The client's signer and the local stack's verifier share the canonical request of
``aiosagemaker._core._sigv4``, so they cannot check each other: each shared step is checked here
against botocore's own, on requests of any shape (the verifier sees whatever clients send), and
the prepared signer as a whole against botocore's serializer and signer.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from aiosagemaker._core._request import AsyncRequest
from aiosagemaker._core._sigv4 import (
    FrozenKeys,
    RequestSigner,
    S3ReadSigner,
    canonical_headers,
    canonical_path,
    canonical_query,
    canonical_request,
    credential_scope,
    payload_hash,
    signature,
    signing_key,
    signing_mac,
    string_to_sign,
)
from aiosagemaker._transport import _host_header

TIMESTAMP = "20261125T120000Z"

CASES = [
    ("http://127.0.0.1:8080", "us-east-1", None, AsyncRequest(body=b'{"a": 1}')),
    (
        "https://runtime.sagemaker.eu-west-1.amazonaws.com",
        "eu-west-1",
        "session-token",
        AsyncRequest(
            body=b"x" * 1000,
            content_type="application/json",
            accept="application/json",
            custom_attributes="trace=1,  spaced   value",
            inference_id="job-00001",
            output_path_extension="run-1/part",
            filename="0001.out",
            request_ttl=600,
            invocation_timeout=60,
        ),
    ),
    (
        "https://example.com:8443/",
        "ap-south-1",
        None,
        AsyncRequest(input_location="s3://bucket/key", inference_id="id with spaces"),
    ),
]


@pytest.mark.parametrize(("url", "region", "token", "request_"), CASES)
def test_signature_matches_botocore(
    url: str, region: str, token: str | None, request_: AsyncRequest
) -> None:
    timestamp = "20261125T120000Z"
    body = request_.body or b""
    path = "/endpoints/my-endpoint-1/async-invocations"

    ours = request_.headers()
    RequestSigner(host=_host_header(url), path=path, region=region).sign(
        ours, body, FrozenKeys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token), timestamp
    )

    # botocore's own serializer for the operation, then its signer at the same instant.
    session = botocore.session.get_session()
    client = session.create_client(
        "sagemaker-runtime",
        region_name=region,
        endpoint_url=url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG",
        aws_session_token=token,
    )
    params = {"EndpointName": "my-endpoint-1"}
    for attr, name in [
        ("body", "Body"),
        ("input_location", "InputLocation"),
        ("content_type", "ContentType"),
        ("accept", "Accept"),
        ("custom_attributes", "CustomAttributes"),
        ("inference_id", "InferenceId"),
        ("output_path_extension", "S3OutputPathExtension"),
        ("filename", "Filename"),
        ("request_ttl", "RequestTTLSeconds"),
        ("invocation_timeout", "InvocationTimeoutSeconds"),
    ]:
        if getattr(request_, attr) is not None:
            params[name] = getattr(request_, attr)
    model = client.meta.service_model.operation_model("InvokeEndpointAsync")
    serialized = client._serializer.serialize_to_request(params, model)
    aws_request = AWSRequest(
        method=serialized["method"],
        url=url.rstrip("/") + serialized["url_path"],
        headers=serialized["headers"],
        data=serialized["body"],
    )
    assert serialized["url_path"] == path
    assert {k: str(v) for k, v in serialized["headers"].items()} == request_.headers()

    signer = SigV4Auth(
        Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token), "sagemaker", region
    )
    frozen = dt.datetime(2026, 11, 25, 12, 0, 0)

    class _Clock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return frozen.replace(tzinfo=tz)

        @classmethod
        def utcnow(cls) -> dt.datetime:  # type: ignore[override]
            return frozen

    import botocore.auth as auth_module

    original = auth_module.datetime.datetime
    auth_module.datetime.datetime = _Clock  # type: ignore[misc]
    try:
        signer.add_auth(aws_request)
    finally:
        auth_module.datetime.datetime = original  # type: ignore[misc]
    client.close()

    assert aws_request.headers["X-Amz-Date"] == timestamp
    assert ours["Authorization"] == aws_request.headers["Authorization"]
    if token:
        assert ours["X-Amz-Security-Token"] == token


def _reference(region: str = "us-east-1", service: str = "sagemaker") -> SigV4Auth:
    return SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG"), service, region)


# Path segments that exercise normalisation (dot segments, empty segments) and quoting.
_SEGMENTS = st.sampled_from(
    ["", ".", "..", "a", "endpoints", "%2F", "a%20b", "~x", "é", "a b", "-_."]
)


@given(st.lists(_SEGMENTS, max_size=6), st.booleans(), st.booleans())
def test_canonical_path_matches_botocore(segments: list[str], lead: bool, trail: bool) -> None:
    path = ("/" if lead else "") + "/".join(segments) + ("/" if trail else "")
    assert canonical_path(path) == _reference()._normalize_url_path(path)


@pytest.mark.parametrize(
    "query",
    ["", "a=1", "b=2&a=1", "a=2&a=1", "flag", "x=%20y&x=", "k=v=w&j", "b=1&a=2&a=1&c"],
)
def test_canonical_query_matches_botocore(query: str) -> None:
    assert canonical_query(query) == _reference()._canonical_query_string_url(
        urlsplit(f"http://h/p?{query}")
    )


_HEADERS = [
    [("X-Amz-Date", TIMESTAMP)],
    [("X-Amz-Date", TIMESTAMP), ("Content-Type", "  text/plain;   charset=utf-8 ")],
    # a repeated name, in both cases: values join in the order sent
    [("X-Amz-Date", TIMESTAMP), ("X-Custom", "b"), ("x-custom", " a  1"), ("X-Other", "")],
    [("X-Amz-Date", TIMESTAMP), ("X-Tabs", "a\tb \t c"), ("Zeta", "z"), ("Alpha", "a")],
]


@pytest.mark.parametrize("headers", _HEADERS)
@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "http://127.0.0.1:8080/endpoints/e-1/async-invocations", b'{"a": 1}'),
        ("GET", "https://example.com/a/./b//c/../d?b=2&a=1&a=0", b""),
        ("PUT", "https://example.com:8443/%7Euser/key%2Fpart?x", b"x" * 70_000),
    ],
)
def test_canonical_request_and_signature_match_botocore(
    headers: list[tuple[str, str]], method: str, url: str, body: bytes
) -> None:
    """Each shared step, assembled as the verifier assembles them, against botocore's."""
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        request.headers[name] = value  # HTTPHeaders appends: repeated names stay repeated
    request.context["timestamp"] = TIMESTAMP
    reference = _reference("eu-west-1")

    parts = urlsplit(url)
    lines, signed = canonical_headers([("Host", parts.netloc), *request.headers.items()])
    ours = canonical_request(
        method,
        canonical_path(parts.path),
        canonical_query(parts.query),
        lines,
        signed,
        payload_hash(body),
    )
    expected = reference.canonical_request(request)
    assert ours == expected

    scope = credential_scope(TIMESTAMP[:8], "eu-west-1", "sagemaker")
    to_sign = string_to_sign(TIMESTAMP, scope, ours)
    assert to_sign == reference.string_to_sign(request, expected)
    key = signing_key("wJalrXUtnFEMI/K7MDENG", TIMESTAMP[:8], "eu-west-1", "sagemaker")
    assert signature(signing_mac(key), to_sign) == reference.signature(to_sign, request)


def test_signing_mac_is_reused_not_consumed() -> None:
    """The prepared HMAC is copied per signature: signing twice gives the same answer."""
    mac = signing_mac(signing_key("secret", "20261125", "us-east-1", "sagemaker"))
    assert signature(mac, "one") == signature(mac, "one") != signature(mac, "two")


def test_signer_key_follows_the_day_and_the_secret() -> None:
    """The once-a-day key is recomputed when the date or the credentials change."""
    signer = RequestSigner(host="h", path="/endpoints/e/async-invocations", region="us-east-1")
    answers = []
    for secret, timestamp in [
        ("s1", "20261125T235959Z"),
        ("s1", "20261126T000000Z"),
        ("s2", "20261126T000000Z"),
        ("s1", "20261126T000000Z"),
    ]:
        headers: dict[str, str] = {}
        signer.sign(headers, b"", FrozenKeys("AKID", secret), timestamp)
        answers.append(headers["Authorization"])
    assert len(set(answers)) == 3
    assert answers[1] == answers[3]
    assert "/20261126/us-east-1/sagemaker/aws4_request," in answers[1]


def test_signer_refuses_incomplete_credentials() -> None:
    signer = RequestSigner(host="h", path="/p", region="us-east-1")
    with pytest.raises(ValueError, match="cannot sign"):
        signer.sign({}, b"", FrozenKeys("AKID", ""), TIMESTAMP)


def test_a_signer_s_remembered_headers_never_outlive_them() -> None:
    """A signer remembers the canonical headers of its last request (the GETs of one second sign
    the same ones): a run of requests whose headers, date, token or path change between any two
    is signed as a fresh signer signs each alone."""
    requests = [
        ("GET", "/b/out/1.out", {"x-amz-checksum-mode": "ENABLED"}, None, TIMESTAMP),
        ("GET", "/b/out/2.out", {"x-amz-checksum-mode": "ENABLED"}, None, TIMESTAMP),
        ("HEAD", "/b/out/2.out", {}, None, TIMESTAMP),
        ("GET", "/b/out/3.out", {"x-amz-checksum-mode": "ENABLED"}, "token-1", TIMESTAMP),
        ("GET", "/b/out/3.out", {"x-amz-checksum-mode": "ENABLED"}, "token-2", TIMESTAMP),
        ("GET", "/b/out/4.out", {"x-amz-checksum-mode": "ENABLED"}, "token-2", "20261125T120001Z"),
        (
            "GET",
            "/b/out/4.out",
            {"x-amz-checksum-mode": "ENABLED", "x-amz-expected-bucket-owner": "111122223333"},
            "token-2",
            "20261125T120001Z",
        ),
        ("GET", "/b/out/1.out", {"x-amz-checksum-mode": "ENABLED"}, None, TIMESTAMP),
    ]
    signer = S3ReadSigner(host="127.0.0.1:9000", region="us-east-1")
    for method, path, headers, token, timestamp in requests:
        keys = FrozenKeys("AKID", "secret", token)
        ours, alone = dict(headers), dict(headers)
        signer.sign(method, path, ours, keys, timestamp)
        S3ReadSigner(host="127.0.0.1:9000", region="us-east-1").sign(
            method, path, alone, keys, timestamp
        )
        assert ours == alone
