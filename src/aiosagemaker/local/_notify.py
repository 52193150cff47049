"""The JSON SageMaker publishes to an endpoint's SNS topics, built as the service builds it.

Success::

    {"awsRegion", "eventTime", "receivedTime", "invocationStatus": "Completed",
     "requestParameters": {"accept", "contentType", "endpointName", "inputLocation"?},
     "responseParameters": {"contentType", "outputLocation"},
     "responseBody"?: {"content", "message", "encoding": "BASE64"},
     "inferenceId", "eventVersion": "1.0", "eventSource": "aws:sagemaker",
     "eventName": "InferenceResult"}

A failure has ``invocationStatus: "Failed"``, a ``failureReason`` and
``responseParameters.failureLocation``. ``inputLocation`` is absent for inline requests.

The test notification sent when an endpoint is created: we found no published sample of the
service's, so ours is marked plainly as a test: ``eventName: "TestNotification"``, no
``invocationStatus`` and no ``inferenceId``, which a watcher must ignore.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MAX_RESPONSE_BODY_BYTES",
    "failure_message",
    "success_message",
    "test_message",
    "utc_now",
]

#: responseBody is included only for outputs up to 128 KB.
MAX_RESPONSE_BODY_BYTES = 128 * 1024


def utc_time(timestamp: float) -> str:
    """A time, as the service formats event times: ``2024-01-31T12:00:00.123Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def utc_now() -> str:
    """Now, formatted as :func:`utc_time` does."""
    return utc_time(time.time())


def _request_parameters(
    endpoint_name: str, accept: str | None, content_type: str | None, input_location: str | None
) -> dict[str, str]:
    params = {
        "accept": accept or "*/*",
        "contentType": content_type or "application/octet-stream",
        "endpointName": endpoint_name,
    }
    if input_location is not None:
        params["inputLocation"] = input_location
    return params


def success_message(
    *,
    region: str,
    received_time: str,
    endpoint_name: str,
    inference_id: str,
    accept: str | None,
    content_type: str | None,
    input_location: str | None,
    output_location: str,
    output_content_type: str,
    output: bytes | None,
) -> dict[str, Any]:
    """A ``Completed`` notification; ``output`` is embedded when given and at most 128 KB."""
    message: dict[str, Any] = {
        "awsRegion": region,
        "eventTime": utc_now(),
        "receivedTime": received_time,
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
        eventVersion="1.0",
        eventSource="aws:sagemaker",
        eventName="InferenceResult",
    )
    return message


def failure_message(
    *,
    region: str,
    received_time: str,
    endpoint_name: str,
    inference_id: str,
    accept: str | None,
    content_type: str | None,
    input_location: str | None,
    failure_location: str,
    reason: str,
) -> dict[str, Any]:
    """A ``Failed`` notification."""
    return {
        "awsRegion": region,
        "eventTime": utc_now(),
        "receivedTime": received_time,
        "invocationStatus": "Failed",
        "failureReason": reason,
        "requestParameters": _request_parameters(
            endpoint_name, accept, content_type, input_location
        ),
        "responseParameters": {"failureLocation": failure_location},
        "inferenceId": inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }


def test_message(*, region: str, endpoint_name: str, topic_arn: str) -> dict[str, Any]:
    """The test notification sent to each topic when an endpoint is created."""
    return {
        "awsRegion": region,
        "eventTime": utc_now(),
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "TestNotification",
        "endpointName": endpoint_name,
        "topicArn": topic_arn,
        "message": "This is a test notification from the aiosagemaker local endpoint.",
    }
