"""The local stack's SigV4 verifier, without the stack: botocore signs, the verifier judges.

The verifier builds its canonical request with the client's own code (``aiosagemaker._core``), so
the reference here is botocore's ``SigV4Auth``: whatever it signs must pass, and any change to a
signed part of the request afterwards must fail. tests/local/test_auth.py does the same over HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from aiosagemaker.local._errors import ServiceError
from aiosagemaker.local._sigv4 import SigV4Verifier

ACCESS_KEY = "AKIALOCALSTACK000001"
SECRET = "local-secret/with+chars"
SIGNED_AT = dt.datetime(2026, 11, 25, 12, 0, 0)
NOW = SIGNED_AT.replace(tzinfo=dt.UTC).timestamp()

#: (method, raw path, headers as the server sees them, body)
Signed = tuple[str, str, CIMultiDict[str], bytes]


def _signed(
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    *,
    method: str = "POST",
    body: bytes = b'{"inputs": "hello"}',
    headers: list[tuple[str, str]] | None = None,
    region: str = "us-east-1",
) -> Signed:
    """A request botocore signed, as the server receives it."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: SIGNED_AT)
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers or []:
        request.headers[name] = value  # HTTPHeaders appends: repeated names stay repeated
    SigV4Auth(Credentials(ACCESS_KEY, SECRET), "sagemaker", region).add_auth(request)
    parts = urlsplit(url)
    raw_path = parts.path + (f"?{parts.query}" if parts.query else "")
    received = CIMultiDict([("Host", parts.netloc), *request.headers.items()])
    return method, raw_path, received, body


def _verifier() -> SigV4Verifier:
    return SigV4Verifier({ACCESS_KEY: SECRET}, region="us-east-1", clock=lambda: NOW)


REQUESTS = [
    pytest.param("http://127.0.0.1:8080/endpoints/e-1/async-invocations", "POST", [], id="invoke"),
    pytest.param(
        "http://127.0.0.1:8080/endpoints/e-1/async-invocations",
        "POST",
        [
            ("X-Amzn-SageMaker-Custom-Attributes", "a=1,   b=two  words"),
            ("X-Amzn-SageMaker-Inference-Id", " id with  spaces~!"),
            ("Content-Type", "text/plain;\tcharset=utf-8"),
        ],
        id="trimmed-values",
    ),
    pytest.param(
        "https://example.com/a/./b//c/../d?b=2&a=1&a=0&flag",
        "GET",
        [("X-Repeated", "second"), ("x-repeated", "first")],
        id="query-dots-repeats",
    ),
    pytest.param("http://h:1/%7Euser/key%2Fpart%20x", "PUT", [], id="encoded-path"),
]


@pytest.mark.parametrize(("url", "method", "headers"), REQUESTS)
def test_botocore_signed_requests_pass(
    monkeypatch: pytest.MonkeyPatch, url: str, method: str, headers: list[tuple[str, str]]
) -> None:
    assert _verifier().verify(*_signed(monkeypatch, url, method=method, headers=headers)) == (
        ACCESS_KEY
    )


def test_payload_hash_header_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that sends X-Amz-Content-SHA256 signs that value, not the body's hash."""
    digest = "UNSIGNED-PAYLOAD"
    method, path, headers, body = _signed(
        monkeypatch,
        "http://h:1/endpoints/e/async-invocations",
        headers=[("X-Amz-Content-SHA256", digest)],
    )
    assert _verifier().verify(method, path, headers, b"any body at all") == ACCESS_KEY


def test_verifier_caches_do_not_change_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = _verifier()
    request = _signed(monkeypatch, "http://h:1/endpoints/e/async-invocations")
    for _ in range(3):
        assert verifier.verify(*request) == ACCESS_KEY
    method, path, headers, body = request
    with pytest.raises(ServiceError):
        verifier.verify(method, path, headers, body + b"!")


def _tamper_body(method: str, path: str, headers: CIMultiDict[str], body: bytes) -> Signed:
    return method, path, headers, body + b" "


def _tamper_header(method: str, path: str, headers: CIMultiDict[str], body: bytes) -> Signed:
    headers["X-Amzn-SageMaker-Inference-Id"] = "someone-else"
    return method, path, headers, body


def _repeat_header(method: str, path: str, headers: CIMultiDict[str], body: bytes) -> Signed:
    headers.add("X-Amzn-SageMaker-Inference-Id", "a-second-value")
    return method, path, headers, body


def _drop_header(method: str, path: str, headers: CIMultiDict[str], body: bytes) -> Signed:
    del headers["X-Amzn-SageMaker-Inference-Id"]
    return method, path, headers, body


def _tamper_query(method: str, path: str, headers: CIMultiDict[str], body: bytes) -> Signed:
    return method, path + "?x=1", headers, body


def _tamper_path(method: str, path: str, headers: CIMultiDict[str], body: bytes) -> Signed:
    return method, path.replace("/e/", "/f/"), headers, body


def _tamper_method(method: str, path: str, headers: CIMultiDict[str], body: bytes) -> Signed:
    return "PUT", path, headers, body


def _tamper_date(method: str, path: str, headers: CIMultiDict[str], body: bytes) -> Signed:
    headers["X-Amz-Date"] = "20261125T120001Z"  # one second later: inside the skew window
    return method, path, headers, body


def _tamper_signature(method: str, path: str, headers: CIMultiDict[str], body: bytes) -> Signed:
    authorization = headers["Authorization"]
    flipped = "0" if authorization[-1] != "0" else "1"
    headers["Authorization"] = authorization[:-1] + flipped
    return method, path, headers, body


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_body,
        _tamper_header,
        _repeat_header,
        _drop_header,
        _tamper_query,
        _tamper_path,
        _tamper_method,
        _tamper_date,
        _tamper_signature,
    ],
)
def test_tampered_requests_are_refused(
    monkeypatch: pytest.MonkeyPatch, tamper: Callable[..., Signed]
) -> None:
    method, path, headers, body = _signed(
        monkeypatch,
        "http://h:1/endpoints/e/async-invocations",
        headers=[("X-Amzn-SageMaker-Inference-Id", "job-1")],
    )
    verifier = _verifier()
    assert verifier.verify(method, path, headers, body) == ACCESS_KEY  # the control
    with pytest.raises(ServiceError) as info:
        verifier.verify(*tamper(method, path, headers.copy(), body))
    assert (info.value.status, info.value.code) == (403, "InvalidSignatureException")


def test_unsigned_headers_may_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers outside SignedHeaders (proxies add some) do not affect the signature."""
    method, path, headers, body = _signed(monkeypatch, "http://h:1/endpoints/e/async-invocations")
    headers["User-Agent"] = "a proxy"
    headers["X-Forwarded-For"] = "10.0.0.1"
    assert _verifier().verify(method, path, headers, body) == ACCESS_KEY
