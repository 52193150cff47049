"""The SQS watcher's own requests against botocore's, byte for byte: the URL and protocol headers
botocore's client resolves, and SigV4's signature over the same headers and body. botocore's
request is caught just before it would be sent. Error answers are read as botocore reads them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.parsers import create_parser
from multidict import CIMultiDict

from aiosagemaker import AwsContext
from aiosagemaker._core._sigv4 import FrozenKeys
from aiosagemaker._http_pool import HttpResponse
from aiosagemaker._sqs_calls import SqsCalls, _client_error

# Headers botocore adds but does not sign, or that only exist on its side.
UNSIGNED = {"user-agent", "amz-sdk-invocation-id", "amz-sdk-request", "content-length"}
OURS = {"authorization", "x-amz-date", "x-amz-security-token"}

CALLS = [
    (
        "ReceiveMessage",
        "receive_message",
        {"MaxNumberOfMessages": 10, "WaitTimeSeconds": 20, "VisibilityTimeout": 30},
    ),
    (
        "DeleteMessageBatch",
        "delete_message_batch",
        {
            "Entries": [
                {"Id": "0", "ReceiptHandle": "AQEB+/=ünï"},
                {"Id": "1", "ReceiptHandle": "x"},
            ]
        },
    ),
    (
        "ChangeMessageVisibilityBatch",
        "change_message_visibility_batch",
        {"Entries": [{"Id": "0", "ReceiptHandle": "AQEB", "VisibilityTimeout": 0}]},
    ),
]


class _Caught(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _catch(request: Any, **_: Any) -> None:
    raise _Caught(request)


@pytest.mark.parametrize(
    ("endpoint_url", "region", "token"),
    [
        ("http://127.0.0.1:5077", "us-east-1", None),
        (None, "eu-west-1", "session-token"),
        ("https://sqs.internal.example:8443", "ap-south-1", "tok"),
    ],
)
@pytest.mark.parametrize(("name", "method", "params"), CALLS)
async def test_request_matches_botocores(
    monkeypatch: pytest.MonkeyPatch,
    endpoint_url: str | None,
    region: str,
    token: str | None,
    name: str,
    method: str,
    params: dict[str, Any],
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    if token:
        monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    keys = FrozenKeys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token)
    aws = AwsContext(region_name=region)
    queue_url = f"https://sqs.{region}.amazonaws.com/111122223333/results-queue"
    try:
        client = await aws.client("sqs", endpoint_url=endpoint_url)
        calls = SqsCalls(client, aws=aws, pool=2)
        operation = await calls._operations.get((name, queue_url))
        assert operation is not None
        client.meta.events.register_first("before-send.sqs.*", _catch)
        with pytest.raises(_Caught) as caught:
            await getattr(client, method)(QueueUrl=queue_url, **params)
        theirs = caught.value.request
        client.meta.events.unregister("before-send.sqs.*", _catch)

        # The same place, the same protocol headers (X-Amz-Target, content type, query mode).
        head = operation.head.render({}).decode()
        assert head.startswith("POST / HTTP/1.1\r\n")
        where = urlsplit(theirs.url)
        assert (operation.pool.host, operation.pool.port) == (
            where.hostname,
            where.port or {"http": 80, "https": 443}[where.scheme],
        )
        assert f"\r\nHost: {where.netloc}\r\n" in head
        signed_by_them = {
            name.lower(): _text(value)
            for name, value in theirs.headers.items()
            if name.lower() not in UNSIGNED | OURS
        }
        assert {k.lower(): v for k, v in operation.headers} == signed_by_them
        assert signed_by_them["x-amz-target"] == f"AmazonSQS.{name}"

        # Over botocore's own body, our signer gives botocore's signature at the same instant.
        headers = dict(operation.headers)
        operation.signer.sign(headers, theirs.body, keys, _text(theirs.headers["X-Amz-Date"]))
        assert headers["Authorization"] == _text(theirs.headers["Authorization"])
        assert headers.get("X-Amz-Security-Token") == (
            _text(theirs.headers["X-Amz-Security-Token"]) if token else None
        )
        await calls.aclose()
    finally:
        await aws.aclose()


async def test_a_proxy_leaves_the_calls_to_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    aws = AwsContext(region_name="us-east-1")
    try:
        client = await aws.client("sqs", endpoint_url="http://127.0.0.1:5077")
        calls = SqsCalls(client, aws=aws, pool=2)
        assert await calls._operations.get(("ReceiveMessage", "http://127.0.0.1:5077/1/q")) is None
    finally:
        await aws.aclose()


def _answer(status: int, body: bytes, **headers: str) -> HttpResponse:
    answer = HttpResponse(status, "Bad Request", CIMultiDict(headers))
    answer.body = body
    return answer


@pytest.mark.parametrize(
    ("answer", "code", "message"),
    [
        # SQS's query-compatible answer: the legacy code from the header, as botocore gives it.
        (
            _answer(
                400,
                b'{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"gone"}',
                **{"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"},
            ),
            "AWS.SimpleQueueService.NonExistentQueue",
            "gone",
        ),
        (
            _answer(400, b'{"__type":"com.amazon.coral.service#AccessDeniedException:x"}'),
            "AccessDeniedException",
            "",
        ),
        (_answer(503, b"<html>busy</html>"), "503", "Service Unavailable"),
        (_answer(500, b""), "500", "Internal Server Error"),
        (_answer(400, b"not json"), "400", "not json"),
    ],
)
def test_error_answers_read_as_botocore_reads_them(
    answer: HttpResponse, code: str, message: str
) -> None:
    error = _client_error(answer, "ReceiveMessage")
    assert isinstance(error, ClientError)
    assert error.response["Error"]["Code"] == code
    assert error.response["Error"]["Message"] == message
    # ... as botocore's own parser reads the same answer.
    model = botocore.session.get_session().get_service_model("sqs")
    theirs = create_parser(model.protocol).parse(
        {
            "status_code": answer.status,
            "headers": {k.lower(): v for k, v in answer.headers.items()},
            "body": answer.body,
        },
        model.operation_model("ReceiveMessage").output_shape,
    )
    assert theirs["Error"]["Code"] == code
    assert theirs["Error"]["Message"] == message
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == answer.status
    assert error.operation_name == "ReceiveMessage"
