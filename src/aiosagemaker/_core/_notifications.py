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

The rules, in order (:func:`read_message` says which applied; it never raises):

0. Over :data:`MAX_MESSAGE_BYTES`, not JSON (nor UTF-8), or nested deeper than
   :data:`MAX_DEPTH` (the message, or the ``Message`` of its SNS envelope): **unreadable**
   (:attr:`MessageKind.UNREADABLE`). Messages are bounded before anything else is done with them,
   because anyone allowed to send to a queue can send anything.
1. JSON that is not an object, an SNS envelope of another ``Type`` or whose ``Message`` is not a
   JSON object (another publisher's text): **not ours** (:attr:`MessageKind.OTHER`). A queue may
   carry other producers' messages; a watcher leaves those alone, it does not fail.
2. ``eventSource`` present and not ``aws:sagemaker``, or ``eventName`` present and not
   ``InferenceResult``: the ``TestNotification`` (:attr:`MessageKind.TEST`), or a kind this
   version does not know (OTHER). Without ``eventName``, a message is a SageMaker notification
   only if it has ``invocationStatus`` (some producers and test fixtures omit the event fields).
3. From here the message claims to be an inference result, and anything wrong with it makes it
   **malformed** (:attr:`MessageKind.MALFORMED`; :func:`parse_notification` raises
   :class:`NotificationError`): no ``inferenceId`` or one longer than AWS allows (64), an
   ``invocationStatus`` other than ``Completed``/``Failed`` (compared without case), a location,
   endpoint name or other field that is not a string or is longer than any real one, a
   ``requestParameters``, ``responseParameters`` or ``responseBody`` that is not an object,
   content that is not valid base64 when the encoding says ``BASE64``. Error messages never
   quote the message's content.
4. ``responseBody.content`` becomes :attr:`Completed.body`: base64-decoded for ``BASE64``, UTF-8
   for a string with no encoding or a text one (``JSON``, ``UTF-8``, ``TEXT``), re-serialised for
   an inline JSON value. An encoding this version does not know leaves ``body`` at ``None`` (the
   output is still in S3, so nothing is lost). For a failure, the included body stands in for a
   missing ``failureReason``; a reason is cut to 1,024 characters.
5. Every event read from a message is :attr:`Origin.UNSIGNED`, with the endpoint named in
   ``requestParameters.endpointName``: whether it is believed, and how far, is the tracker's
   decision (:func:`aiosagemaker._core._tracker.decide`). A watcher that verified the SNS
   signature of :attr:`Message.envelope` may mark it :attr:`Origin.SIGNED`.

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
import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from .._exceptions import NotificationError
from ._events import Completed, Failed, Origin

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "EVENT_SOURCE",
    "EVENT_VERSION",
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "MAX_RESPONSE_BODY_BYTES",
    "RESULT_EVENT",
    "TEST_EVENT",
    "Message",
    "MessageKind",
    "endpoint_test_notification",
    "event_time",
    "failure_notification",
    "loggable_id",
    "parse_notification",
    "read_message",
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
#: a failure reason is cut to this many characters (it is shown to users and logged).
_REASON_LIMIT = 1024
#: SQS's maximum message size until August 2025 (it is 1 MiB since): a SageMaker notification
#: is at most about 180 KB (a 128 KB response, base64, in an SNS envelope), so anything larger
#: is not one, and is not parsed at all.
MAX_MESSAGE_BYTES = 256 * 1024
#: a notification nests 3 levels deep; past this a message is unreadable. orjson itself stops at
#: 1,024 when reading, but writing an inline JSON ``responseBody`` back out stops at 254 with a
#: ``TypeError``: the bound keeps every document this module handles far from either.
MAX_DEPTH = 64
#: InferenceId is 1-64 characters (InvokeEndpointAsync API reference).
_ID_LIMIT = 64
#: EndpointName is 1-63 characters (CreateEndpoint API reference).
_ENDPOINT_LIMIT = 63
#: an S3 URI: a key is at most 1,024 bytes, a bucket name 63 characters.
_LOCATION_LIMIT = 2048
#: any other string field (content types, times): AWS's header limit for a content type.
_FIELD_LIMIT = 1024


class MessageKind(enum.Enum):
    """What :func:`read_message` made of one message."""

    #: a SageMaker inference result: :attr:`Message.event`.
    RESULT = "result"
    #: SageMaker's ``TestNotification`` (endpoint created or updated); belongs to no job.
    TEST = "test"
    #: readable, and not a SageMaker inference result (another producer's message, an SNS
    #: subscription confirmation, an event kind this version does not know).
    OTHER = "other"
    #: too large, not JSON, or nested too deep: nothing can be said about it.
    UNREADABLE = "unreadable"
    #: claims to be a SageMaker inference result, but cannot be read as one (rule 3).
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Message:
    """One message, read (see :func:`read_message`).

    :param event: the inference result (RESULT only), :attr:`Origin.UNSIGNED`.
    :param envelope: the SNS envelope the message came in (``Type``, ``Message``, ``Signature``,
        ...), for a signature verifier; ``None`` for raw delivery.
    :param problem: what is wrong (UNREADABLE, MALFORMED), never quoting the content.
    :param inference_id: the inference id a MALFORMED message names, when it is a string of at
        most 64 characters.
    """

    kind: MessageKind
    event: Completed | Failed | None = None
    envelope: dict[str, Any] | None = None
    problem: str | None = None
    inference_id: str | None = None


#: what :func:`_decode` answers for text that is not JSON.
_NOT_JSON = object()


def read_message(
    raw: bytes | bytearray | memoryview | str, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> Message:
    """Read one message from a queue: a SageMaker notification (raw or inside an SNS envelope),
    or something else. Never raises.

    .. code-block:: python

        message = read_message(sqs_message["Body"])
        if message.kind is MessageKind.RESULT:
            effect = tracker.feed(message.event, now).effect

    :param raw: the message body as received (an SQS message body, an HTTP POST body).
    :param max_bytes: larger messages are UNREADABLE, without being parsed.
    """
    if _size(raw, max_bytes) > max_bytes:
        return Message(MessageKind.UNREADABLE, problem=f"larger than {max_bytes} bytes")
    document = _decode(raw)
    if document is _NOT_JSON:
        return Message(MessageKind.UNREADABLE, problem="not JSON")
    if _too_deep(document):
        return Message(MessageKind.UNREADABLE, problem=f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(document, dict):
        return Message(MessageKind.OTHER)
    envelope = None
    if "Type" in document and "Message" in document:
        # An SNS envelope (SQS subscription without raw message delivery, or an HTTP endpoint).
        if document["Type"] != "Notification" or not isinstance(document["Message"], str):
            return Message(MessageKind.OTHER)
        envelope = document
        document = _decode(envelope["Message"])
        if document is _NOT_JSON:
            return Message(MessageKind.OTHER, envelope=envelope)  # another publisher's text
        if _too_deep(document):
            return Message(
                MessageKind.UNREADABLE,
                envelope=envelope,
                problem=f"its SNS Message is nested deeper than {MAX_DEPTH} levels",
            )
        if not isinstance(document, dict):
            return Message(MessageKind.OTHER, envelope=envelope)
    try:
        kind, event = _parse_sagemaker(document)
    except NotificationError as exc:
        claimed = document.get("inferenceId")
        return Message(
            MessageKind.MALFORMED,
            envelope=envelope,
            problem=str(exc),
            inference_id=claimed if _is_short_str(claimed, _ID_LIMIT) else None,
        )
    return Message(kind, event=event, envelope=envelope)


def parse_notification(raw: bytes | bytearray | memoryview | str) -> Completed | Failed | None:
    """Read one SageMaker async-inference notification, raw or inside an SNS envelope.

    .. code-block:: python

        event = parse_notification(sqs_message["Body"])
        if event is not None:
            outcomes = tracker.feed(event, now)

    :param raw: the message body as received (an SQS message body, an HTTP POST body).
    :return: a :class:`Completed` or :class:`Failed` event, :attr:`Origin.UNSIGNED`; ``None``
        when the message is not a SageMaker inference result (other JSON, not JSON, too large or
        too deep to read, an SNS subscription confirmation, SageMaker's test notification).
    :raises NotificationError: the message is a SageMaker inference result but cannot be read.
    """
    message = read_message(raw)
    if message.kind is MessageKind.MALFORMED:
        raise NotificationError(message.problem or "malformed", inference_id=message.inference_id)
    return message.event


def loggable_id(value: object) -> str:
    """An inference id as it may be logged: ``repr`` (so control characters are escaped), cut to
    64 characters. Ids in notifications are written by whoever sent them."""
    if not isinstance(value, str):
        return "<none>"
    return repr(value[:_ID_LIMIT])


def _size(raw: bytes | bytearray | memoryview | str, limit: int) -> int:
    if not isinstance(raw, str):
        return len(raw)
    # A character is 1-4 bytes of UTF-8: encode only when the count alone cannot decide.
    if len(raw) > limit:
        return len(raw)
    return len(raw) if len(raw) * 4 <= limit else len(raw.encode("utf-8", "surrogatepass"))


def _decode(raw: bytes | bytearray | memoryview | str) -> object:
    """The JSON value in ``raw``, or :data:`_NOT_JSON` (orjson also refuses nesting past 1,024)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _too_deep(document: object) -> bool:
    """Whether ``document`` nests deeper than :data:`MAX_DEPTH` (iteratively: no recursion)."""
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[object] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _is_short_str(value: object, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit


def _parse_sagemaker(document: dict[str, Any]) -> tuple[MessageKind, Completed | Failed | None]:
    source = document.get("eventSource")
    name = document.get("eventName")
    if source is not None and source != EVENT_SOURCE:
        return MessageKind.OTHER, None
    if name == TEST_EVENT:
        return MessageKind.TEST, None
    if name is not None and name != RESULT_EVENT:
        return MessageKind.OTHER, None  # an event kind this version does not know
    if name is None and "invocationStatus" not in document:
        return MessageKind.OTHER, None

    inference_id = document.get("inferenceId")
    if not isinstance(inference_id, str) or not inference_id:
        raise NotificationError("SageMaker inference notification without an inferenceId")
    if len(inference_id) > _ID_LIMIT:
        raise NotificationError(f"inferenceId is longer than {_ID_LIMIT} characters")
    response = _object(document, "responseParameters", inference_id)
    request = _object(document, "requestParameters", inference_id)
    endpoint_name = _optional_str(request, "endpointName", inference_id, _ENDPOINT_LIMIT)
    event_time = _optional_str(document, "eventTime", inference_id)
    received_time = _optional_str(document, "receivedTime", inference_id)
    status = document.get("invocationStatus")
    normalised = status.lower() if isinstance(status, str) else None

    if normalised == "completed":
        output_location = _location(document, response, "outputLocation", inference_id)
        return MessageKind.RESULT, Completed(
            inference_id=inference_id,
            output_location=output_location,
            body=_body(document, inference_id),
            content_type=_optional_str(response, "contentType", inference_id),
            event_time=event_time,
            received_time=received_time,
            origin=Origin.UNSIGNED,
            endpoint_name=endpoint_name,
        )
    if normalised == "failed":
        failure_location = _location(document, response, "failureLocation", inference_id)
        reason = _reason(document, response, inference_id)
        if reason is None:
            body = _body(document, inference_id)
            if body:
                reason = body.decode("utf-8", "replace")[:_REASON_LIMIT]
        return MessageKind.RESULT, Failed(
            inference_id=inference_id,
            failure_location=failure_location,
            reason=reason,
            event_time=event_time,
            received_time=received_time,
            origin=Origin.UNSIGNED,
            endpoint_name=endpoint_name,
        )
    # Not quoted: the status is the sender's text (never logged, see the module docstring).
    raise NotificationError(
        "invocationStatus is not 'Completed' or 'Failed'", inference_id=inference_id
    )


def _object(document: dict[str, Any], field: str, inference_id: str) -> dict[str, Any]:
    value = document.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NotificationError(f"{field} is not an object", inference_id=inference_id)
    return value


def _optional_str(
    document: dict[str, Any], field: str, inference_id: str, limit: int = _FIELD_LIMIT
) -> str | None:
    value = document.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise NotificationError(
            f"{field} is a {type(value).__name__}, not a string", inference_id=inference_id
        )
    if len(value) > limit:
        raise NotificationError(
            f"{field} is longer than {limit} characters", inference_id=inference_id
        )
    return value


def _location(
    document: dict[str, Any], response: dict[str, Any], field: str, inference_id: str
) -> str | None:
    """``field`` from the top level, else from ``responseParameters``."""
    value = _optional_str(document, field, inference_id, _LOCATION_LIMIT)
    if value is None:
        value = _optional_str(response, field, inference_id, _LOCATION_LIMIT)
    return value


def _reason(document: dict[str, Any], response: dict[str, Any], inference_id: str) -> str | None:
    """``failureReason`` from the top level, else from ``responseParameters``, cut to size (a
    long reason is still a reason)."""
    for where in (document, response):
        value = _optional_str(where, "failureReason", inference_id, limit=MAX_MESSAGE_BYTES)
        if value is not None:
            return value[:_REASON_LIMIT]
    return None


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
        try:
            return orjson.dumps(content)  # the JSON value inline
        except orjson.JSONEncodeError as exc:  # MAX_DEPTH keeps nesting away; this is a backstop
            raise NotificationError(
                "responseBody.content cannot be written as JSON", inference_id=inference_id
            ) from exc
    return None  # an encoding this version does not know: fetch the output from S3 instead


# -- Building ---------------------------------------------------------------------------------


def parse_event_time(text: str | None) -> float | None:
    """Seconds since the epoch of an ``eventTime``/``receivedTime``; ``None`` if absent or not a
    time this format has (``2022-01-25T22:46:00.608Z``)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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
