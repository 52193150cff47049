"""Every documented request rule is enforced by the server with AWS's answer: 400 ValidationError."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from stack_helpers import NO_RETRIES, client_kwargs

from aiosagemaker.local import EndpointInfo, LocalStack

LIMIT = 128_000


@pytest.fixture(scope="module")
def runtime(local_stack: LocalStack) -> Any:
    # botocore checks some minimums itself; switch that off so the server sees every value.
    client = boto3.client(
        "sagemaker-runtime",
        config=Config(retries=NO_RETRIES, parameter_validation=False),
        **client_kwargs(local_stack, "sagemaker-runtime"),
    )
    yield client
    client.close()


ACCEPTED: list[dict[str, Any]] = [
    {"Body": b"x" * LIMIT},
    {"Body": b"x", "ContentType": "a" * 1024},
    {"Body": b"x", "Accept": "a" * 1024},
    {"Body": b"x", "CustomAttributes": "a" * 1024},
    {"Body": b"x", "InferenceId": "i" * 64},
    {"Body": b"x", "InferenceId": "a b!~"},
    {"Body": b"x", "S3OutputPathExtension": "a" * 512},
    {"Body": b"x", "S3OutputPathExtension": "a/b_c.d!*'()-"},
    {"Body": b"x", "Filename": "f" * 32},
    {"Body": b"x", "Filename": "out-1_a.json"},
    {"Body": b"x", "RequestTTLSeconds": 60},
    {"Body": b"x", "RequestTTLSeconds": 21_600},
    {"Body": b"x", "InvocationTimeoutSeconds": 1},
    {"Body": b"x", "InvocationTimeoutSeconds": 3_600},
    {"InputLocation": "s3://aiosagemaker-local/missing/object"},
]

REJECTED: list[dict[str, Any]] = [
    {"Body": b"x", "InputLocation": "s3://aiosagemaker-local/k"},
    {},
    {"Body": b"x" * (LIMIT + 1)},
    {"Body": b"x", "ContentType": "a" * 1025},
    {"Body": b"x", "Accept": "a" * 1025},
    {"Body": b"x", "CustomAttributes": "a" * 1025},
    {"Body": b"x", "InferenceId": "i" * 65},
    {"Body": b"x", "InputLocation": "ftp://bucket/key"},
    {"InputLocation": "s3://b/" + "k" * 1020},
    {"Body": b"x", "S3OutputPathExtension": "a" * 513},
    {"Body": b"x", "S3OutputPathExtension": "s3:bucket"},
    {"Body": b"x", "S3OutputPathExtension": "https:x"},
    {"Body": b"x", "S3OutputPathExtension": "a b"},
    {"Body": b"x", "Filename": "f" * 33},
    {"Body": b"x", "Filename": "a.b.c"},
    {"Body": b"x", "Filename": ".hidden"},
    {"Body": b"x", "RequestTTLSeconds": 59},
    {"Body": b"x", "RequestTTLSeconds": 21_601},
    {"Body": b"x", "InvocationTimeoutSeconds": 0},
    {"Body": b"x", "InvocationTimeoutSeconds": 3_601},
]


def _id(case: dict[str, Any]) -> str:
    return (
        ",".join(
            f"{k}={len(v) if isinstance(v, bytes | str) and len(v) > 20 else v!r}"
            for k, v in case.items()
        )
        or "empty"
    )


@pytest.mark.parametrize("case", ACCEPTED, ids=_id)
def test_accepted(runtime: Any, quiet_endpoint: EndpointInfo, case: dict[str, Any]) -> None:
    answer = runtime.invoke_endpoint_async(EndpointName=quiet_endpoint.name, **case)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202


@pytest.mark.parametrize("case", REJECTED, ids=_id)
def test_rejected(runtime: Any, quiet_endpoint: EndpointInfo, case: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint_async(EndpointName=quiet_endpoint.name, **case)
    response = info.value.response
    assert response["Error"]["Code"] == "ValidationError"
    assert response["Error"]["Message"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["ResponseMetadata"]["RequestId"]


@pytest.mark.parametrize("name", ["no-such-endpoint", "bad_name", "a" * 64])
def test_unknown_or_invalid_endpoint(runtime: Any, name: str) -> None:
    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint_async(EndpointName=name, Body=b"x")
    assert info.value.response["Error"]["Code"] == "ValidationError"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


async def test_rejections_are_counted(local_stack: LocalStack, runtime: Any) -> None:
    before = (await local_stack.stats())["rejected"].get("ValidationError", 0)
    with pytest.raises(ClientError):
        runtime.invoke_endpoint_async(EndpointName="no-such-endpoint", Body=b"x")
    after = (await local_stack.stats())["rejected"]["ValidationError"]
    assert after == before + 1
