"""parse_notification over real-shaped SageMaker async-inference notifications, and the builders.

The shapes follow the SageMaker developer guide ("Check prediction results", "Create Endpoint")
and a recorded SNS message with an included response body; see the module comment of
``aiosagemaker._core._notifications``. What the builders make (the local stack publishes it) must
have the documented fields and read back through the parser, raw and inside an SNS envelope.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiosagemaker._core import _notifications
from aiosagemaker._core._events import Completed, Failed, Origin
from aiosagemaker._core._notifications import (
    MAX_DEPTH,
    MAX_MESSAGE_BYTES,
    MAX_RESPONSE_BODY_BYTES,
    MessageKind,
    endpoint_test_notification,
    event_time,
    failure_notification,
    loggable_id,
    parse_notification,
    read_message,
    success_notification,
)
from aiosagemaker._exceptions import NotificationError

INFERENCE_ID = "11111111-2222-3333-4444-555555555555"
OUTPUT = "s3://bucket/output/prediction.out"
FAILURE = "s3://bucket/failure/prediction.out"


def success(**extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "awsRegion": "us-east-1",
        "eventTime": "2022-01-25T22:46:00.608Z",
        "receivedTime": "2022-01-25T22:46:00.455Z",
        "invocationStatus": "Completed",
        "requestParameters": {
            "contentType": "text/csv",
            "endpointName": "my-endpoint",
            "inputLocation": "s3://bucket/input/input-data.csv",
        },
        "responseParameters": {"contentType": "text/csv; charset=utf-8", "outputLocation": OUTPUT},
        "inferenceId": INFERENCE_ID,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    message.update(extra)
    return message


def error(**extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "awsRegion": "us-east-1",
        "eventTime": "2022-01-25T22:46:00.608Z",
        "receivedTime": "2022-01-25T22:46:00.455Z",
        "invocationStatus": "Failed",
        "failureReason": (
            "ClientError: Received server error (500) from model. See the SageMaker Endpoint "
            "logs in your account for more information."
        ),
        "requestParameters": {"endpointName": "my-endpoint"},  # inline request: no inputLocation
        "inferenceId": INFERENCE_ID,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    message.update(extra)
    return message


def sns(message: dict[str, Any] | str, type_: str = "Notification") -> bytes:
    return json.dumps(
        {
            "Type": type_,
            "MessageId": "51fc6647-b68f-5b38-a3aa-074eedd93798",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:success",
            "Subject": None,
            "Message": message if isinstance(message, str) else json.dumps(message),
            "Timestamp": "2022-01-25T22:46:00.700Z",
            "SignatureVersion": "1",
            "Signature": "",
            "SigningCertURL": "",
            "UnsubscribeURL": "",
        }
    ).encode()


def test_success_raw() -> None:
    event = parse_notification(json.dumps(success()).encode())
    # Unsigned: read from a message, whoever wrote it; the endpoint it names, for the tracker.
    assert event == Completed(
        inference_id=INFERENCE_ID,
        output_location=OUTPUT,
        body=None,
        content_type="text/csv; charset=utf-8",
        event_time="2022-01-25T22:46:00.608Z",
        origin=Origin.UNSIGNED,
        endpoint_name="my-endpoint",
    )


def test_success_in_sns_envelope_and_as_str() -> None:
    raw = parse_notification(json.dumps(success()))
    assert parse_notification(sns(success())) == raw
    assert isinstance(raw, Completed)


def test_success_with_base64_response_body() -> None:
    payload = b'{"label": "cat", "score": 0.98}'
    message = success(
        responseBody={
            "content": base64.b64encode(payload).decode(),
            "message": "Check S3 path location(if configured) or Cloudwatch for additional details.",
            "encoding": "BASE64",
        }
    )
    event = parse_notification(sns(message))
    assert isinstance(event, Completed)
    assert event.body == payload
    assert event.output_location == OUTPUT


def test_empty_base64_body_is_empty_bytes() -> None:
    event = parse_notification(
        json.dumps(success(responseBody={"content": "", "encoding": "BASE64"}))
    )
    assert isinstance(event, Completed)
    assert event.body == b""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"content": "plain text"}, b"plain text"),
        ({"content": '{"a": 1}', "encoding": "JSON"}, b'{"a": 1}'),
        ({"content": {"a": 1}, "encoding": "JSON"}, b'{"a":1}'),
        ({"content": "x", "encoding": "utf-8"}, b"x"),
        ({"content": "x", "encoding": "GZIP+BASE64"}, None),  # unknown: fetch from S3 instead
        ({"message": "response larger than 128 KB"}, None),
    ],
)
def test_response_body_encodings(body: dict[str, Any], expected: bytes | None) -> None:
    event = parse_notification(json.dumps(success(responseBody=body)))
    assert isinstance(event, Completed)
    assert event.body == expected


def test_output_location_at_top_level() -> None:
    message = success(outputLocation="s3://bucket/top.out", responseParameters=None)
    event = parse_notification(json.dumps(message))
    assert isinstance(event, Completed)
    assert event.output_location == "s3://bucket/top.out"
    assert event.content_type is None


def test_error_without_failure_location() -> None:
    event = parse_notification(sns(error()))
    assert event == Failed(
        inference_id=INFERENCE_ID,
        failure_location=None,
        reason=error()["failureReason"],
        event_time="2022-01-25T22:46:00.608Z",
        origin=Origin.UNSIGNED,
        endpoint_name="my-endpoint",
    )


@pytest.mark.parametrize(
    "placement",
    [
        {"failureLocation": FAILURE},
        {"responseParameters": {"contentType": "text/plain", "failureLocation": FAILURE}},
    ],
)
def test_error_failure_location_top_level_or_response_parameters(
    placement: dict[str, Any],
) -> None:
    event = parse_notification(json.dumps(error(**placement)))
    assert isinstance(event, Failed)
    assert event.failure_location == FAILURE


def test_error_reason_under_response_parameters() -> None:
    message = error(failureReason=None, responseParameters={"failureReason": "ModelError: bad"})
    event = parse_notification(json.dumps(message))
    assert isinstance(event, Failed)
    assert event.reason == "ModelError: bad"


def test_error_reason_from_included_body_when_no_failure_reason() -> None:
    body = {"content": base64.b64encode(b"CUDA out of memory").decode(), "encoding": "BASE64"}
    message = error(failureReason=None, responseBody=body)
    event = parse_notification(json.dumps(message))
    assert isinstance(event, Failed)
    assert event.reason == "CUDA out of memory"


def test_minimal_message_without_event_fields() -> None:
    # Some producers (and test fixtures in the wild) send only the essential fields.
    message = {"inferenceId": "j1", "invocationStatus": "Completed"}
    assert parse_notification(json.dumps(message)) == Completed(
        inference_id="j1", origin=Origin.UNSIGNED
    )
    message = {"inferenceId": "j1", "invocationStatus": "FAILED", "failureReason": "x"}
    assert parse_notification(json.dumps(message)) == Failed(
        inference_id="j1", reason="x", origin=Origin.UNSIGNED
    )


@pytest.mark.parametrize(
    "raw",
    [
        # SageMaker's test notification on CreateEndpoint / UpdateEndpoint.
        json.dumps(
            {"eventVersion": "1.0", "eventSource": "aws:sagemaker", "eventName": "TestNotification"}
        ),
        sns(
            {"eventVersion": "1.0", "eventSource": "aws:sagemaker", "eventName": "TestNotification"}
        ),
        # SNS subscription handshakes.
        sns("You have chosen to subscribe to the topic ...", type_="SubscriptionConfirmation"),
        sns("You have chosen to deactivate subscription ...", type_="UnsubscribeConfirmation"),
        # An SNS notification whose message is not JSON, or not ours.
        sns("hello"),
        sns({"Records": [{"eventSource": "aws:s3"}]}),
        # Other JSON.
        json.dumps({"hello": "world"}),
        json.dumps([1, 2, 3]),
        "42",
        json.dumps(success(eventSource="aws:s3")),
        json.dumps(success(eventName="SomethingElse")),
        # Not JSON at all.
        b"\x00\xff garbage",
        "",
        "not json",
    ],
)
def test_not_ours_is_none(raw: bytes | str) -> None:
    assert parse_notification(raw) is None


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (success(inferenceId=None), "inferenceId"),
        (success(inferenceId=""), "inferenceId"),
        (success(inferenceId=7), "inferenceId"),
        (success(invocationStatus="Pending"), "invocationStatus"),
        (success(invocationStatus=None), "invocationStatus"),
        (success(responseParameters=["x"]), "responseParameters"),
        (success(responseParameters={"outputLocation": 5}), "outputLocation"),
        (success(eventTime=123), "eventTime"),
        (success(responseBody="abc"), "responseBody"),
        (success(responseBody={"content": "not base64!", "encoding": "BASE64"}), "base64"),
        (success(responseBody={"content": "asdfsdf", "encoding": "BASE64"}), "base64"),
        (success(responseBody={"content": "é", "encoding": "BASE64"}), "base64"),
        (success(responseBody={"content": 12, "encoding": "BASE64"}), "base64"),
        (error(failureLocation=["x"]), "failureLocation"),
        # Wrong types and sizes a real notification never has.
        (success(inferenceId="x" * 65), "inferenceId"),
        (success(requestParameters="my-endpoint"), "requestParameters"),
        (success(requestParameters={"endpointName": 7}), "endpointName"),
        (success(requestParameters={"endpointName": "e" * 64}), "endpointName"),
        (success(outputLocation="s3://b/" + "k" * 4096), "outputLocation"),
        (success(eventTime="t" * 2000), "eventTime"),
        (error(failureReason=["x"]), "failureReason"),
    ],
)
def test_malformed_inference_notification_raises(message: dict[str, Any], match: str) -> None:
    with pytest.raises(NotificationError, match=match):
        parse_notification(json.dumps(message))
    with pytest.raises(NotificationError, match=match):
        parse_notification(sns(message))


def test_notification_error_carries_inference_id() -> None:
    with pytest.raises(NotificationError) as caught:
        parse_notification(json.dumps(success(invocationStatus="Weird")))
    assert caught.value.inference_id == INFERENCE_ID
    assert isinstance(caught.value, ValueError)


# -- Built notifications read back -----------------------------------------------------------

EVENT_AT = 1_643_150_760.608  # 2022-01-25T22:46:00.608Z
RECEIVED_AT = 1_643_150_760.455


def _request_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "region": "us-east-1",
        "event_at": EVENT_AT,
        "received_at": RECEIVED_AT,
        "endpoint_name": "my-endpoint",
        "inference_id": INFERENCE_ID,
        "accept": "application/json",
        "content_type": "text/csv",
        "input_location": None,
    }
    fields.update(overrides)
    return fields


def _both_ways(message: dict[str, Any]) -> list[Completed | Failed | None]:
    """The message parsed as delivered raw, and inside an SNS envelope."""
    raw = orjson.dumps(message)
    return [parse_notification(raw), parse_notification(sns(orjson.loads(raw)))]


def test_event_time_format() -> None:
    assert event_time(EVENT_AT) == "2022-01-25T22:46:00.608Z"
    assert event_time(RECEIVED_AT) == "2022-01-25T22:46:00.455Z"
    assert event_time(0) == "1970-01-01T00:00:00.000Z"


def test_built_success_has_the_documented_fields() -> None:
    message = success_notification(
        **_request_fields(input_location="s3://bucket/input/input-data.csv"),
        output_location=OUTPUT,
        output_content_type="text/csv; charset=utf-8",
    )
    # The developer guide's example, field for field (our fixture `success()` is that example).
    assert message == success(
        requestParameters={
            "accept": "application/json",
            "contentType": "text/csv",
            "endpointName": "my-endpoint",
            "inputLocation": "s3://bucket/input/input-data.csv",
        }
    )


def test_built_failure_has_the_documented_fields() -> None:
    message = failure_notification(
        **_request_fields(accept=None, content_type=None),
        failure_location=FAILURE,
        reason="ModelError: bad input",
    )
    assert message == error(
        failureReason="ModelError: bad input",
        requestParameters={
            "accept": "*/*",
            "contentType": "application/octet-stream",
            "endpointName": "my-endpoint",
        },
        responseParameters={"failureLocation": FAILURE},
    )


@given(
    output=st.binary(max_size=2048),
    include=st.booleans(),
    input_location=st.none() | st.just("s3://bucket/in/x.json"),
    inference_id=st.text(min_size=1, max_size=64),
    output_content_type=st.sampled_from(["application/json", "text/csv; charset=utf-8"]),
)
def test_built_success_reads_back(
    output: bytes,
    include: bool,
    input_location: str | None,
    inference_id: str,
    output_content_type: str,
) -> None:
    message = success_notification(
        **_request_fields(inference_id=inference_id, input_location=input_location),
        output_location=OUTPUT,
        output_content_type=output_content_type,
        output=output if include else None,
    )
    expected = Completed(
        inference_id=inference_id,
        output_location=OUTPUT,
        body=output if include else None,
        content_type=output_content_type,
        event_time="2022-01-25T22:46:00.608Z",
        origin=Origin.UNSIGNED,
        endpoint_name="my-endpoint",
    )
    assert _both_ways(message) == [expected, expected]


@pytest.mark.parametrize(
    ("size", "included"),
    [(MAX_RESPONSE_BODY_BYTES, True), (MAX_RESPONSE_BODY_BYTES + 1, False)],
)
def test_built_success_leaves_out_large_outputs(size: int, included: bool) -> None:
    output = b"x" * size
    message = success_notification(
        **_request_fields(), output_location=OUTPUT, output_content_type="text/plain", output=output
    )
    assert ("responseBody" in message) is included
    for event in _both_ways(message):
        assert isinstance(event, Completed)
        assert event.body == (output if included else None)
        assert event.output_location == OUTPUT


@given(
    reason=st.text(min_size=1, max_size=300),
    inference_id=st.text(min_size=1, max_size=64),
    input_location=st.none() | st.just("s3://bucket/in/x.json"),
)
def test_built_failure_reads_back(
    reason: str, inference_id: str, input_location: str | None
) -> None:
    message = failure_notification(
        **_request_fields(inference_id=inference_id, input_location=input_location),
        failure_location=FAILURE,
        reason=reason,
    )
    expected = Failed(
        inference_id=inference_id,
        failure_location=FAILURE,
        reason=reason,
        event_time="2022-01-25T22:46:00.608Z",
        origin=Origin.UNSIGNED,
        endpoint_name="my-endpoint",
    )
    assert _both_ways(message) == [expected, expected]


def test_built_test_notification_is_ignored() -> None:
    message = endpoint_test_notification(
        region="us-east-1",
        event_at=EVENT_AT,
        endpoint_name="my-endpoint",
        topic_arn="arn:aws:sns:us-east-1:123456789012:success",
        message="a test",
    )
    assert message["eventName"] == "TestNotification"
    assert "invocationStatus" not in message and "inferenceId" not in message
    assert _both_ways(message) == [None, None]


# -- read_message: every message has a kind, and nothing raises (#10) ---------------------------


def test_read_message_kinds() -> None:
    raw = read_message(json.dumps(success()))
    assert raw.kind is MessageKind.RESULT and raw.envelope is None
    assert isinstance(raw.event, Completed) and raw.event.origin is Origin.UNSIGNED
    enveloped = read_message(sns(success()))
    assert enveloped.kind is MessageKind.RESULT and enveloped.event == raw.event
    # The envelope is kept for a signature verifier.
    assert enveloped.envelope is not None and enveloped.envelope["Type"] == "Notification"
    assert enveloped.envelope["Signature"] == ""
    test = {"eventVersion": "1.0", "eventSource": "aws:sagemaker", "eventName": "TestNotification"}
    assert read_message(json.dumps(test)).kind is MessageKind.TEST
    assert read_message(sns(test)).kind is MessageKind.TEST
    for other in (
        '{"hello": 1}',
        "[1]",
        sns("text"),
        sns("[1, 2]"),
        sns("x", type_="SubscriptionConfirmation"),
    ):
        assert read_message(other).kind is MessageKind.OTHER


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        b"\x00\xff garbage",
        "",
        "[" * 2000 + "]" * 2000,  # past orjson's own limit
        '{"a": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}",
        # Deep inside the SNS message, or in a responseBody written back out as JSON (orjson
        # stops writing at 254 levels: this would be a TypeError without the bound).
        sns('{"x": ' + "[" * 300 + "]" * 300 + "}"),
        '{"inferenceId": "j", "invocationStatus": "Completed", "responseBody": '
        '{"encoding": "JSON", "content": ' + "[" * 300 + "]" * 300 + "}}",
        "x" * (MAX_MESSAGE_BYTES + 1),
        b"{" + b" " * MAX_MESSAGE_BYTES + b"}",
        "\u00e9" * (MAX_MESSAGE_BYTES // 2 + 1),  # few characters, too many UTF-8 bytes
    ],
)
def test_unreadable_messages_are_not_parsed_and_never_raise(raw: bytes | str) -> None:
    message = read_message(raw)
    assert message.kind is MessageKind.UNREADABLE
    assert message.event is None and message.problem
    assert parse_notification(raw) is None


def test_inline_json_body_that_cannot_be_written_back_is_malformed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # MAX_DEPTH keeps such bodies out; without it, orjson's writer would raise a TypeError.
    monkeypatch.setattr(_notifications, "MAX_DEPTH", 1000)
    raw = (
        '{"inferenceId": "j", "invocationStatus": "Completed", "responseBody": '
        '{"encoding": "JSON", "content": ' + "[" * 300 + "]" * 300 + "}}"
    )
    read = read_message(raw)
    assert read.kind is MessageKind.MALFORMED and read.problem is not None
    assert "responseBody" in read.problem


def test_size_limit_is_inclusive_and_counts_bytes() -> None:
    padded = json.dumps(success(padding=""))
    fill = MAX_MESSAGE_BYTES - len(padded.encode())
    exact = json.dumps(success(padding=" " * fill))
    assert len(exact.encode()) == MAX_MESSAGE_BYTES
    assert read_message(exact).kind is MessageKind.RESULT
    assert read_message(exact.encode()).kind is MessageKind.RESULT
    assert read_message(exact, max_bytes=1024).kind is MessageKind.UNREADABLE


def test_a_real_notification_with_the_largest_included_response_fits() -> None:
    output = b"x" * MAX_RESPONSE_BODY_BYTES
    message = success_notification(
        **_request_fields(), output_location=OUTPUT, output_content_type="text/plain", output=output
    )
    for raw in (orjson.dumps(message), sns(message)):
        read = read_message(raw)
        assert read.kind is MessageKind.RESULT
        assert isinstance(read.event, Completed) and read.event.body == output


def test_malformed_message_problem_never_quotes_the_content() -> None:
    secret = "SECRET-" + "z" * 40
    for message in (
        success(invocationStatus=secret),
        success(responseBody={"content": secret + "!", "encoding": "BASE64"}),
        success(outputLocation={"k": secret}),
        success(inferenceId=secret * 3),
    ):
        read = read_message(json.dumps(message))
        assert read.kind is MessageKind.MALFORMED
        assert read.problem is not None and "SECRET" not in read.problem


def test_malformed_message_keeps_a_short_inference_id_only() -> None:
    read = read_message(json.dumps(success(invocationStatus="Weird")))
    assert (read.kind, read.inference_id) == (MessageKind.MALFORMED, INFERENCE_ID)
    read = read_message(json.dumps(success(inferenceId="x" * 65)))
    assert (read.kind, read.inference_id) == (MessageKind.MALFORMED, None)
    read = read_message(json.dumps(success(inferenceId=7)))
    assert read.inference_id is None


def test_long_failure_reason_is_cut_not_refused() -> None:
    event = parse_notification(json.dumps(error(failureReason="r" * 5000)))
    assert isinstance(event, Failed) and event.reason == "r" * 1024


def test_loggable_id_escapes_and_cuts() -> None:
    assert loggable_id("id-1") == "'id-1'"
    assert loggable_id("a\nb") == "'a\\nb'"
    assert loggable_id("x" * 500) == repr("x" * 64)
    assert loggable_id(None) == "<none>"
