"""SageMaker asynchronous-inference notifications: parsed into tracker events, and built. No I/O.

The client parses them (:func:`parse_notification`, used by the SQS watcher); the local stack
builds them as the service does (:func:`success_notification`, :func:`failure_notification`,
:func:`endpoint_test_notification`). One module for both, so that what the local stack publishes
is what the parser reads (a test feeds the one to the other, raw and inside an SNS envelope).

What the messages look like (sources read while writing this; fields seen in practice vary, so the
parser is defensive):

* Success, per the "Check prediction results" page of the SageMaker developer guide
  (https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-check-predictions.html)::

    {"awsRegion": "us-east-1", "eventTime": "2022-01-25T22:46:00.608Z",
     "receivedTime": "2022-01-25T22:46:00.455Z", "invocationStatus": "Completed",
     "requestParameters": {"contentType": "text/csv", "endpointName": "<endpoint>",
                           "inputLocation": "s3://<bucket>/<input>/input-data.csv"},
     "responseParameters": {"contentType": "text/csv; charset=utf-8",
                            "outputLocation": "s3://<bucket>/<output>/prediction.out"},
     "inferenceId": "11111111-2222-3333-4444-555555555555", "eventVersion": "1.0",
     "eventSource": "aws:sagemaker", "eventName": "InferenceResult"}

* Error, same page: ``"invocationStatus": "Failed"`` and a top-level ``failureReason`` such as
  ``"ClientError: Received server error (500) from model. See the SageMaker Endpoint logs in your
  account for more information."``; that example has no ``responseParameters`` and no failure
  location at all. Code that consumes real messages reads ``failureLocation`` at top level; the
  project design notes have seen it (and ``outputLocation``) under ``responseParameters`` too: both
  places are read, top level first. ``requestParameters.inputLocation`` is absent for inline
  requests (and is not needed here).

* With the response included (``AsyncInferenceNotificationConfig.IncludeInferenceResponseIn``, only
  when the response is at most 128 KB, per the API reference), a recorded SNS message from a public
  project's test fixture carries::

    "responseBody": {"content": "<base64>", "encoding": "BASE64",
                     "message": "Check S3 path location(if configured) or Cloudwatch for
                                 additional details."}

* Test notification, sent on ``CreateEndpoint``, ``UpdateEndpoint`` and
  ``UpdateEndpointWeightsAndCapacities`` ("can simply be ignored", SageMaker developer guide, "Create
  Endpoint" page)::

    {"eventVersion": "1.0", "eventSource": "aws:sagemaker", "eventName": "TestNotification"}

* Delivered through SQS from SNS without raw delivery, the message is the string ``Message`` of an
  SNS envelope ``{"Type": "Notification", "MessageId": ..., "TopicArn": ..., "Message": "..."}``;
  the queue may also see ``SubscriptionConfirmation`` envelopes.

The rules, in order:

1. Not JSON, JSON that is not an object, an SNS envelope of another ``Type`` or whose ``Message``
   is not a JSON object: **not ours**, ``None``. A queue may carry other producers' messages; a
   watcher deletes or ignores those, it does not fail.
2. ``eventSource`` present and not ``aws:sagemaker``, or ``eventName`` present and not
   ``InferenceResult`` (the ``TestNotification``, or a kind this version does not know): ``None``.
   Without ``eventName``, a message is a SageMaker notification only if it has
   ``invocationStatus`` (some producers and test fixtures omit the event fields).
3. From here the message claims to be an inference result, and anything wrong with it raises
   :class:`NotificationError`: no ``inferenceId``, an ``invocationStatus`` other than
   ``Completed``/``Failed`` (compared without case), a location that is not a string, a
   ``responseBody`` that is not an object, content that is not valid base64 when the encoding says
   ``BASE64``.
4. ``responseBody.content`` becomes :attr:`Completed.body`: base64-decoded for ``BASE64``, UTF-8
   for a string with no encoding or a text one (``JSON``, ``UTF-8``, ``TEXT``), re-serialised for
   an inline JSON value. An encoding this version does not know leaves ``body`` at ``None`` (the
   output is still in S3, so nothing is lost). For a failure, the included body stands in for a
   missing ``failureReason``.

What the builders make: the success and error documents above, field for field, with
``failureLocation`` under ``responseParameters``, ``requestParameters.inputLocation`` only for
requests that named one, and ``responseBody`` (base64) only when asked for and at most
:data:`MAX_RESPONSE_BODY_BYTES`. We found no published sample of the test notification, so the
one built here is marked plainly as a test: ``eventName: "TestNotification"`` and no
``invocationStatus`` or ``inferenceId``, which the parser ignores.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import orjson

from .._exceptions import NotificationError
from ._events import Completed, Failed

__all__ = [
    "EVENT_SOURCE",
    "EVENT_VERSION",
    "MAX_RESPONSE_BODY_BYTES",
    "RESULT_EVENT",
    "TEST_EVENT",
    "endpoint_test_notification",
    "event_time",
    "failure_notification",
    "parse_notification",
    "success_notification",
]

EVENT_SOURCE = "aws:sagemaker"
EVENT_VERSION = "1.0"
#: the ``eventName`` of an inference's result, success or failure.
RESULT_EVENT = "InferenceResult"
#: the ``eventName`` of the test sent when an endpoint is created or updated.
TEST_EVENT = "TestNotification"
#: the response is included (``IncludeInferenceResponseIn``) only for outputs up to 128 KB.
MAX_RESPONSE_BODY_BYTES = 128 * 1024
_TEXT_ENCODINGS = frozenset({"JSON", "UTF-8", "UTF8", "TEXT", "STRING"})
#: a failure reason taken from an included response body is cut to this many characters.
_REASON_LIMIT = 1024


def parse_notification(raw: bytes | bytearray | memoryview | str) -> Completed | Failed | None:
    """Read one SageMaker async-inference notification, raw or inside an SNS envelope.

    .. code-block:: python

        event = parse_notification(sqs_message["Body"])
        if event is not None:
            outcomes = tracker.feed(event, now)

    :param raw: the message body as received (an SQS message body, an HTTP POST body).
    :return: a :class:`Completed` or :class:`Failed` event; ``None`` when the message is not a
        SageMaker inference result (other JSON, not JSON, an SNS subscription confirmation,
        SageMaker's test notification).
    :raises NotificationError: the message is a SageMaker inference result but cannot be read.
    """
    document = _loads(raw)
    if document is None:
        return None
    if "Type" in document and "Message" in document:
        # An SNS envelope (SQS subscription without raw message delivery, or an HTTP endpoint).
        if document["Type"] != "Notification" or not isinstance(document["Message"], str):
            return None
        document = _loads(document["Message"])
        if document is None:
            return None
    return _parse_sagemaker(document)


def _loads(raw: bytes | bytearray | memoryview | str) -> dict[str, Any] | None:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _parse_sagemaker(document: dict[str, Any]) -> Completed | Failed | None:
    source = document.get("eventSource")
    name = document.get("eventName")
    if source is not None and source != EVENT_SOURCE:
        return None
    if name is not None and name != RESULT_EVENT:
        return None  # "TestNotification", or an event kind this version does not know
    if name is None and "invocationStatus" not in document:
        return None

    inference_id = document.get("inferenceId")
    if not isinstance(inference_id, str) or not inference_id:
        raise NotificationError("SageMaker inference notification without an inferenceId")
    response = document.get("responseParameters")
    if response is None:
        response = {}
    elif not isinstance(response, dict):
        raise NotificationError("responseParameters is not an object", inference_id=inference_id)
    event_time = _optional_str(document, "eventTime", inference_id)
    status = document.get("invocationStatus")
    normalised = status.lower() if isinstance(status, str) else None

    if normalised == "completed":
        output_location = _location(document, response, "outputLocation", inference_id)
        return Completed(
            inference_id=inference_id,
            output_location=output_location,
            body=_body(document, inference_id),
            content_type=_optional_str(response, "contentType", inference_id),
            event_time=event_time,
        )
    if normalised == "failed":
        failure_location = _location(document, response, "failureLocation", inference_id)
        reason = _location(document, response, "failureReason", inference_id)
        if reason is None:
            body = _body(document, inference_id)
            if body:
                reason = body.decode("utf-8", "replace")[:_REASON_LIMIT]
        return Failed(
            inference_id=inference_id,
            failure_location=failure_location,
            reason=reason,
            event_time=event_time,
        )
    raise NotificationError(
        f"unknown invocationStatus {status!r} (expected 'Completed' or 'Failed')",
        inference_id=inference_id,
    )


def _optional_str(document: dict[str, Any], field: str, inference_id: str) -> str | None:
    value = document.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise NotificationError(
            f"{field} is a {type(value).__name__}, not a string", inference_id=inference_id
        )
    return value


def _location(
    document: dict[str, Any], response: dict[str, Any], field: str, inference_id: str
) -> str | None:
    """``field`` from the top level, else from ``responseParameters``."""
    value = _optional_str(document, field, inference_id)
    if value is None:
        value = _optional_str(response, field, inference_id)
    return value


def _body(document: dict[str, Any], inference_id: str) -> bytes | None:
    included = document.get("responseBody")
    if included is None:
        return None
    if not isinstance(included, dict):
        raise NotificationError("responseBody is not an object", inference_id=inference_id)
    content = included.get("content")
    if content is None:
        return None
    encoding = included.get("encoding")
    label = encoding.upper() if isinstance(encoding, str) else None
    if label == "BASE64":
        if not isinstance(content, str):
            raise NotificationError(
                "responseBody.content is not a base64 string", inference_id=inference_id
            )
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise NotificationError(
                f"responseBody.content is not valid base64: {exc}", inference_id=inference_id
            ) from exc
    if encoding is None or label in _TEXT_ENCODINGS:
        if isinstance(content, str):
            return content.encode("utf-8")
        return orjson.dumps(content)  # the JSON value inline
    return None  # an encoding this version does not know: fetch the output from S3 instead


# -- Building ---------------------------------------------------------------------------------


def event_time(timestamp: float) -> str:
    """A time as the service writes ``eventTime``/``receivedTime``: ``2022-01-25T22:46:00.608Z``.

    :param timestamp: seconds since the epoch.
    """
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _request_parameters(
    endpoint_name: str, accept: str | None, content_type: str | None, input_location: str | None
) -> dict[str, str]:
    # A request without Accept or ContentType is reported with the defaults it was served under.
    params = {
        "accept": accept or "*/*",
        "contentType": content_type or "application/octet-stream",
        "endpointName": endpoint_name,
    }
    if input_location is not None:  # absent for inline (Body) requests
        params["inputLocation"] = input_location
    return params


def success_notification(
    *,
    region: str,
    event_at: float,
    received_at: float,
    endpoint_name: str,
    inference_id: str,
    accept: str | None,
    content_type: str | None,
    input_location: str | None,
    output_location: str,
    output_content_type: str,
    output: bytes | None = None,
) -> dict[str, Any]:
    """A ``Completed`` notification, as SageMaker publishes it to the success topic.

    .. code-block:: python

        message = success_notification(region="us-east-1", event_at=time.time(), ...)
        await sns.publish(TopicArn=success_topic, Message=orjson.dumps(message).decode())

    :param event_at: when the inference finished (seconds since the epoch).
    :param received_at: when the request was accepted.
    :param input_location: the request's ``InputLocation``; ``None`` for an inline request.
    :param output: the output, to include as ``responseBody``; left out when ``None`` or over
        :data:`MAX_RESPONSE_BODY_BYTES`, as the service leaves it out.
    :return: the JSON object (a ``dict`` to serialise).
    """
    message: dict[str, Any] = {
        "awsRegion": region,
        "eventTime": event_time(event_at),
        "receivedTime": event_time(received_at),
        "invocationStatus": "Completed",
        "requestParameters": _request_parameters(
            endpoint_name, accept, content_type, input_location
        ),
        "responseParameters": {
            "contentType": output_content_type,
            "outputLocation": output_location,
        },
    }
    if output is not None and len(output) <= MAX_RESPONSE_BODY_BYTES:
        message["responseBody"] = {
            "content": base64.b64encode(output).decode("ascii"),
            "message": "The inference response is included in the notification.",
            "encoding": "BASE64",
        }
    message.update(
        inferenceId=inference_id,
        eventVersion=EVENT_VERSION,
        eventSource=EVENT_SOURCE,
        eventName=RESULT_EVENT,
    )
    return message


def failure_notification(
    *,
    region: str,
    event_at: float,
    received_at: float,
    endpoint_name: str,
    inference_id: str,
    accept: str | None,
    content_type: str | None,
    input_location: str | None,
    failure_location: str,
    reason: str,
) -> dict[str, Any]:
    """A ``Failed`` notification, as SageMaker publishes it to the error topic.

    :param reason: the ``failureReason``, e.g. ``"ModelError: ..."`` or ``"ClientError: ..."``.
    :param failure_location: where the failure object was written.

    The other parameters are :func:`success_notification`'s.
    """
    return {
        "awsRegion": region,
        "eventTime": event_time(event_at),
        "receivedTime": event_time(received_at),
        "invocationStatus": "Failed",
        "failureReason": reason,
        "requestParameters": _request_parameters(
            endpoint_name, accept, content_type, input_location
        ),
        "responseParameters": {"failureLocation": failure_location},
        "inferenceId": inference_id,
        "eventVersion": EVENT_VERSION,
        "eventSource": EVENT_SOURCE,
        "eventName": RESULT_EVENT,
    }


def endpoint_test_notification(
    *, region: str, event_at: float, endpoint_name: str, topic_arn: str, message: str
) -> dict[str, Any]:
    """The test notification sent to each of an endpoint's topics when it is created.

    (Not named ``test_*``: pytest would collect it from any test module that imports it.)

    :param message: a human-readable ``message`` saying who sent the test.
    """
    return {
        "awsRegion": region,
        "eventTime": event_time(event_at),
        "eventVersion": EVENT_VERSION,
        "eventSource": EVENT_SOURCE,
        "eventName": TEST_EVENT,
        "endpointName": endpoint_name,
        "topicArn": topic_arn,
        "message": message,
    }
