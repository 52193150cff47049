"""Our prepared signer produces exactly what botocore's SigV4Auth produces for the same request."""

from __future__ import annotations

import datetime as dt

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from aiosagemaker._core._request import AsyncRequest
from aiosagemaker._core._sigv4 import FrozenKeys, RequestSigner
from aiosagemaker._transport import _host_header

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
