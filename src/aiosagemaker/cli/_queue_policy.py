"""What ``aiosagemaker notifications setup`` wants the queue to be: names, tags, policies (pure).

The queue policy lets the endpoint's two topics, and nothing else, send::

    {"Version": "2012-10-17",
     "Statement": [
       {"Sid": "EndpointTopicsOnly", "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": QUEUE_ARN,
        "Condition": {"ArnEquals": {"aws:SourceArn": [SUCCESS_TOPIC, ERROR_TOPIC]}}},
       {"Sid": "DenyEveryOtherSender", "Effect": "Deny", "Principal": "*",
        "Action": "sqs:SendMessage", "Resource": QUEUE_ARN,
        "Condition": {"ArnNotEquals": {"aws:SourceArn": [SUCCESS_TOPIC, ERROR_TOPIC]}}}]}

The ``Allow`` is what SNS needs to deliver (a topic publishes as the ``sns.amazonaws.com``
service principal, on behalf of the topic named in ``aws:SourceArn``). The explicit ``Deny``
wins over any ``Allow``, an identity policy's included: a negated operator (``ArnNotEquals``)
matches when the key is absent, so a caller sending directly (no ``aws:SourceArn`` at all) is
denied, and so is any other topic
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html).
Everything else (receive, delete, manage) is left to the account's IAM policies, as for any
queue.

Dead letters: a message received ``maxReceiveCount`` (5) times without being deleted moves to the
dead-letter queue. ``SqsNotifications`` deletes its own at their first or second receive (a held
one once its job is tracked), so five is plenty and what lands there was nobody's.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = [
    "DEAD_LETTER_RETENTION_SECONDS",
    "MANAGED_BY",
    "MAX_RECEIVE_COUNT",
    "ROLE_DEAD_LETTER",
    "ROLE_QUEUE",
    "TAG_ENDPOINT",
    "TAG_MANAGED_BY",
    "TAG_ROLE",
    "check_queue_name",
    "dead_letter_name",
    "default_queue_name",
    "is_managed",
    "managed_tags",
    "queue_arn_for",
    "queue_policy",
    "redrive_policy",
    "same_document",
]

#: the tags that mark a queue as made by ``notifications setup`` (teardown deletes nothing else)
TAG_MANAGED_BY = "aiosagemaker:managed-by"
MANAGED_BY = "notifications-setup"
TAG_ENDPOINT = "aiosagemaker:endpoint"
TAG_ROLE = "aiosagemaker:role"
ROLE_QUEUE = "notifications"
ROLE_DEAD_LETTER = "dead-letter"

#: receives before a message moves to the dead-letter queue (the README's advice: about 5).
MAX_RECEIVE_COUNT = 5
#: the dead-letter queue keeps messages for the most SQS allows, 14 days: time to look at them.
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600

# SQS queue names: 1-80 characters, letters, digits, hyphens and underscores.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_DLQ_SUFFIX = "-dlq"


def default_queue_name(endpoint: str) -> str:
    """``aiosagemaker-<endpoint>``: at most 76 characters (an endpoint name has at most 63), so
    its dead-letter queue's name fits SQS's 80 too."""
    return f"aiosagemaker-{endpoint}"


def dead_letter_name(queue_name: str) -> str:
    return queue_name + _DLQ_SUFFIX


def check_queue_name(name: str) -> None:
    """:raises ValueError: ``name`` or its dead-letter queue's name is not a valid SQS name."""
    if not _QUEUE_NAME.fullmatch(dead_letter_name(name)):
        raise ValueError(
            f"--queue-name {name!r}: SQS queue names are letters, digits, '-' and '_', and this "
            f"one needs room for {_DLQ_SUFFIX!r} (at most {80 - len(_DLQ_SUFFIX)} characters); "
            "FIFO queues cannot be subscribed to SageMaker's standard topics"
        )


def queue_arn_for(endpoint_arn: str, queue_name: str, region: str | None) -> str:
    """The ARN a queue called ``queue_name`` has (or will have) in the endpoint's account.

    For a plan printed before the queue exists; the policy applied names the ARN SQS reports.
    """
    parts = endpoint_arn.split(":")
    partition, arn_region, account = parts[1], parts[3], parts[4]
    return f"arn:{partition}:sqs:{region or arn_region}:{account}:{queue_name}"


def managed_tags(endpoint: str, role: str) -> dict[str, str]:
    """The tags setup puts on each queue it creates."""
    return {TAG_MANAGED_BY: MANAGED_BY, TAG_ENDPOINT: endpoint, TAG_ROLE: role}


def is_managed(tags: dict[str, str], endpoint: str, role: str) -> bool:
    """Whether a queue with ``tags`` is the one setup made for ``endpoint`` in ``role``."""
    return tags == {**tags, **managed_tags(endpoint, role)}


def queue_policy(queue_arn: str, topic_arns: list[str]) -> dict[str, Any]:
    """The queue policy: the endpoint's topics may send, every other sender is denied."""
    sources = sorted(set(topic_arns))
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EndpointTopicsOnly",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": sources}},
            },
            {
                "Sid": "DenyEveryOtherSender",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnNotEquals": {"aws:SourceArn": sources}},
            },
        ],
    }


def redrive_policy(dead_letter_arn: str) -> dict[str, Any]:
    return {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}


def same_document(current: str | None, wanted: dict[str, Any]) -> bool:
    """Whether a policy attribute as SQS returns it (JSON text) says what ``wanted`` says.

    Compared as JSON values, not text (SQS may reorder keys or space them); SQS returns
    ``maxReceiveCount`` as a number or a string, so numbers are compared as text.
    """
    if not current:
        return False
    try:
        value = orjson.loads(current)
    except orjson.JSONDecodeError:
        return False
    return bool(_normal(value) == _normal(wanted))


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value
