"""SigV4 is verified as AWS verifies it, and refusals carry AWS's codes (HTTP 403)."""

from __future__ import annotations

import datetime
from typing import Any

import aiohttp
import boto3
import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from stack_helpers import NO_RETRIES, client_kwargs

from aiosagemaker.local import EndpointInfo, LocalStack


def _runtime(stack: LocalStack, **overrides: Any) -> Any:
    kwargs = client_kwargs(stack, "sagemaker-runtime")
    config = Config(retries=NO_RETRIES, signature_version=overrides.pop("signature_version", None))
    kwargs.update(overrides)
    return boto3.client("sagemaker-runtime", config=config, **kwargs)


def _refusal(client: Any, endpoint: str) -> dict[str, Any]:
    try:
        with pytest.raises(ClientError) as info:
            client.invoke_endpoint_async(EndpointName=endpoint, Body=b"x")
    finally:
        client.close()
    response: dict[str, Any] = info.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert response["ResponseMetadata"]["RequestId"]
    return response["Error"]


def test_wrong_secret(local_stack: LocalStack, quiet_endpoint: EndpointInfo) -> None:
    client = _runtime(local_stack, aws_secret_access_key="not-the-secret")
    error = _refusal(client, quiet_endpoint.name)
    assert error["Code"] == "InvalidSignatureException"
    assert "signature we calculated does not match" in error["Message"]


def test_unknown_access_key(local_stack: LocalStack, quiet_endpoint: EndpointInfo) -> None:
    client = _runtime(local_stack, aws_access_key_id="AKIAUNKNOWN000000000")
    error = _refusal(client, quiet_endpoint.name)
    assert error["Code"] == "UnrecognizedClientException"
    assert error["Message"] == "The security token included in the request is invalid."


def test_wrong_region(local_stack: LocalStack, quiet_endpoint: EndpointInfo) -> None:
    client = _runtime(local_stack, region_name="eu-west-1")
    assert _refusal(client, quiet_endpoint.name)["Code"] == "InvalidSignatureException"


def test_stale_date(
    local_stack: LocalStack, quiet_endpoint: EndpointInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=6)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: stale)
    error = _refusal(_runtime(local_stack), quiet_endpoint.name)
    assert error["Code"] == "InvalidSignatureException"
    assert error["Message"].startswith("Signature expired:")


def test_future_date(
    local_stack: LocalStack, quiet_endpoint: EndpointInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    ahead = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(minutes=6)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: ahead)
    error = _refusal(_runtime(local_stack), quiet_endpoint.name)
    assert error["Code"] == "InvalidSignatureException"
    assert error["Message"].startswith("Signature not yet current:")


def test_missing_authentication(local_stack: LocalStack, quiet_endpoint: EndpointInfo) -> None:
    error = _refusal(_runtime(local_stack, signature_version=UNSIGNED), quiet_endpoint.name)
    assert error["Code"] == "MissingAuthenticationTokenException"


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256 Credential=AKIALOCALSTACK000001/20240101/us-east-1/sagemaker/aws4_request",
        "AWS4-HMAC-SHA256 Signature=abc",
        "AWS4-HMAC-SHA256 Credential=short, SignedHeaders=host, Signature=abc",
        "Basic dXNlcjpwYXNz",
    ],
)
async def test_malformed_authorization(
    local_stack: LocalStack, quiet_endpoint: EndpointInfo, authorization: str
) -> None:
    url = f"{local_stack.info.sagemaker_runtime_url}/endpoints/{quiet_endpoint.name}/async-invocations"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=b"x", headers={"Authorization": authorization}) as response,
    ):
        assert response.status == 403
        assert response.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
        assert response.headers["x-amzn-RequestId"]
        assert (await response.json())["message"]


def test_signed_requests_pass(local_stack: LocalStack, quiet_endpoint: EndpointInfo) -> None:
    client = _runtime(local_stack)
    try:
        # Headers with runs of spaces and odd characters are canonicalised as botocore does.
        answer = client.invoke_endpoint_async(
            EndpointName=quiet_endpoint.name,
            Body=b"x",
            ContentType="text/plain;   charset=utf-8",
            CustomAttributes="a=1,  b=two words",
            InferenceId="id with  spaces~!",
        )
    finally:
        client.close()
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202


@pytest.mark.parametrize(
    ("tamper", "status"),
    [
        pytest.param({}, 202, id="untouched"),
        pytest.param({"body": b"another payload"}, 403, id="body"),
        pytest.param({"X-Amzn-SageMaker-Inference-Id": "someone-else"}, 403, id="signed-header"),
        pytest.param({"query": "?extra=1"}, 403, id="query"),
        pytest.param({"User-Agent": "a proxy"}, 202, id="unsigned-header"),
    ],
)
async def test_tampered_requests_are_refused(
    local_stack: LocalStack, quiet_endpoint: EndpointInfo, tamper: dict[str, Any], status: int
) -> None:
    """botocore signs, the request changes on the way: the stack refuses what the signature covers.

    Signer and verifier share the canonical request code, so this is botocore's signature (not
    ours) against the verifier over HTTP; the control case shows the unchanged request passes.
    """
    info = local_stack.info
    url = f"{info.sagemaker_runtime_url}/endpoints/{quiet_endpoint.name}/async-invocations"
    body = b'{"inputs": "hello"}'
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Content-Type": "application/octet-stream",
            "X-Amzn-SageMaker-Inference-Id": "job-1",
        },
    )
    credentials = Credentials(info.aws_access_key_id, info.aws_secret_access_key)
    SigV4Auth(credentials, "sagemaker", info.region).add_auth(request)
    headers = dict(request.headers.items())
    tamper = dict(tamper)
    body = tamper.pop("body", body)
    url += tamper.pop("query", "")
    headers.update(tamper)
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        assert response.status == status, await response.text()
        if status == 403:
            assert response.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
            assert "signature we calculated does not match" in (await response.json())["message"]
