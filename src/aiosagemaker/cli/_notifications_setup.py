"""The AWS side of ``aiosagemaker notifications setup`` and ``teardown``: read, compare, change.

Every step first reads what is there and changes only what differs from what is wanted, so a
second run changes nothing; with ``dry_run`` nothing is changed at all and the steps are only
listed. What a run changed (or would change) is returned as :class:`Change` lines.

Setup, in order (each step needs the one before):

1. ``DescribeEndpoint`` then ``DescribeEndpointConfig``: the topics of
   ``AsyncInferenceConfig.OutputConfig.NotificationConfig`` (``SuccessTopic``, ``ErrorTopic``);
2. the dead-letter queue, then the queue, each created with the tags of
   :func:`~._queue_policy.managed_tags` unless it exists; an existing queue without those tags
   (someone else's) is refused, never changed;
3. the queue's ``Policy`` and ``RedrivePolicy``, set together (moto's ``SetQueueAttributes``
   drops a policy it is not given);
4. one ``sqs`` subscription per topic, with ``RawMessageDelivery`` as asked (an existing one is
   found with ``ListSubscriptionsByTopic`` and its attribute set if it differs).

Teardown deletes only queues carrying those tags for this endpoint: first the subscriptions that
deliver to the queue (whichever topic they belong to: with the queue gone they would deliver
nowhere), then the queue, then its dead-letter queue. Topics are never deleted. It does not need
the endpoint to exist any more.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.exceptions import ClientError

from ._common import EXIT_CONFIG, EXIT_USAGE, CliError
from ._queue_policy import (
    DEAD_LETTER_RETENTION_SECONDS,
    ROLE_DEAD_LETTER,
    ROLE_QUEUE,
    dead_letter_name,
    is_managed,
    managed_tags,
    queue_arn_for,
    queue_policy,
    redrive_policy,
    same_document,
)

__all__ = ["Change", "EndpointTopics", "SetupResult", "TeardownResult", "setup", "teardown"]

logger = logging.getLogger("aiosagemaker")


@dataclass(frozen=True, slots=True)
class Change:
    """One change made (or, in a dry run, to be made), as a line for the user."""

    text: str


@dataclass(frozen=True, slots=True)
class EndpointTopics:
    """What the endpoint's async inference config says about its notifications."""

    endpoint: str
    endpoint_arn: str
    config_name: str
    success_topic: str | None
    error_topic: str | None

    @property
    def topics(self) -> list[str]:
        """The topics to subscribe to (one, if the config names the same topic twice)."""
        return list(dict.fromkeys(t for t in (self.success_topic, self.error_topic) if t))


@dataclass(slots=True)
class SetupResult:
    endpoint: EndpointTopics
    queue_name: str
    #: ``None`` in a dry run that would create the queue
    queue_url: str | None
    changes: list[Change] = field(default_factory=list)


@dataclass(slots=True)
class TeardownResult:
    queue_name: str
    changes: list[Change] = field(default_factory=list)
    #: what was found and left alone, and why
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Queue:
    name: str
    #: ``None``: it does not exist (in a dry run, still to be created)
    url: str | None
    arn: str


# --- the endpoint ----------------------------------------------------------------------------


async def describe_topics(sagemaker: Any, endpoint: str) -> EndpointTopics:
    """Read the endpoint's notification topics.

    :raises CliError: the endpoint does not exist, is not asynchronous, or notifies no topic
        (exit 3).
    """
    try:
        described = await sagemaker.describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "ValidationException":
            # SageMaker answers an unknown endpoint (and a malformed name) this way.
            message = exc.response.get("Error", {}).get("Message", "")
            raise CliError(
                f"endpoint {endpoint!r} not found (SageMaker: {message})", EXIT_CONFIG
            ) from None
        raise
    config_name = described["EndpointConfigName"]
    config = await sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    async_config = config.get("AsyncInferenceConfig")
    if not async_config:
        raise CliError(
            f"endpoint {endpoint!r} is not an asynchronous endpoint: its endpoint config "
            f"{config_name!r} has no AsyncInferenceConfig",
            EXIT_CONFIG,
        )
    topics = async_config.get("OutputConfig", {}).get("NotificationConfig") or {}
    result = EndpointTopics(
        endpoint=endpoint,
        endpoint_arn=described["EndpointArn"],
        config_name=config_name,
        success_topic=topics.get("SuccessTopic") or None,
        error_topic=topics.get("ErrorTopic") or None,
    )
    if not result.topics:
        raise CliError(
            f"endpoint {endpoint!r} has no notification topics: its endpoint config "
            f"{config_name!r} sets no AsyncInferenceConfig.OutputConfig.NotificationConfig "
            "SuccessTopic or ErrorTopic; without them, find results by polling S3 "
            "(--watcher s3, the default)",
            EXIT_CONFIG,
        )
    return result


# --- queues ----------------------------------------------------------------------------------


async def _find_queue(sqs: Any, name: str) -> tuple[str, dict[str, str]] | None:
    """The queue's URL and tags, or ``None`` if there is no queue of that name."""
    try:
        url: str = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        return None
    tags: dict[str, str] = (await sqs.list_queue_tags(QueueUrl=url)).get("Tags") or {}
    return url, tags


async def _queue_attributes(sqs: Any, url: str, *names: str) -> dict[str, str]:
    answer = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))
    attributes: dict[str, str] = answer.get("Attributes") or {}
    return attributes


def _not_ours(name: str, endpoint: str, action: str) -> CliError:
    return CliError(
        f"queue {name!r} exists and was not made by `aiosagemaker notifications setup` for "
        f"endpoint {endpoint!r} (its aiosagemaker:* tags do not say so): {action}; pass another "
        "--queue-name",
        EXIT_USAGE,
    )


async def _ensure_queue(
    sqs: Any,
    name: str,
    *,
    endpoint: EndpointTopics,
    region: str | None,
    role: str,
    attributes: dict[str, str],
    changes: list[Change],
    dry_run: bool,
) -> _Queue:
    """The queue called ``name``, created (tagged) if missing; refused if someone else's."""
    found = await _find_queue(sqs, name)
    tags = managed_tags(endpoint.endpoint, role)
    if found is not None:
        url, existing = found
        if not is_managed(existing, endpoint.endpoint, role):
            raise _not_ours(name, endpoint.endpoint, "left alone")
        arn = (await _queue_attributes(sqs, url, "QueueArn"))["QueueArn"]
        return _Queue(name, url, arn)
    what = "dead-letter queue" if role == ROLE_DEAD_LETTER else "queue"
    changes.append(Change(f"create {what} {name}"))
    if dry_run:
        return _Queue(name, None, queue_arn_for(endpoint.endpoint_arn, name, region))
    answer = await sqs.create_queue(QueueName=name, Attributes=attributes, tags=tags)
    url = answer["QueueUrl"]
    arn = (await _queue_attributes(sqs, url, "QueueArn"))["QueueArn"]
    return _Queue(name, url, arn)


async def _ensure_policies(
    sqs: Any,
    queue: _Queue,
    dead_letter: _Queue,
    topics: list[str],
    changes: list[Change],
    *,
    dry_run: bool,
) -> None:
    policy = queue_policy(queue.arn, topics)
    redrive = redrive_policy(dead_letter.arn)
    current: dict[str, str] = {}
    if queue.url is not None:
        current = await _queue_attributes(sqs, queue.url, "Policy", "RedrivePolicy")
    policy_ok = same_document(current.get("Policy"), policy)
    redrive_ok = same_document(current.get("RedrivePolicy"), redrive)
    if policy_ok and redrive_ok:
        return
    if not policy_ok:
        changes.append(Change(f"set the policy of {queue.name}: only {', '.join(topics)} may send"))
    if not redrive_ok:
        changes.append(
            Change(
                f"set the redrive policy of {queue.name}: to {dead_letter.name} after "
                f"{redrive['maxReceiveCount']} receives"
            )
        )
    if dry_run or queue.url is None:
        return
    # Both at once: moto's SetQueueAttributes forgets the Policy when it is not given.
    await sqs.set_queue_attributes(
        QueueUrl=queue.url,
        Attributes={
            "Policy": _json_text(policy),
            "RedrivePolicy": _json_text(redrive),
        },
    )


def _json_text(document: dict[str, Any]) -> str:
    return orjson.dumps(document).decode()


# --- subscriptions ---------------------------------------------------------------------------


async def _subscriptions(sns: Any, operation: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every subscription a ``ListSubscriptions*`` call lists, page by page."""
    out: list[dict[str, Any]] = []
    async for page in sns.get_paginator(operation).paginate(**kwargs):
        out.extend(page.get("Subscriptions") or [])
    return out


def _delivery(raw: bool) -> str:
    return "raw delivery" if raw else "in the SNS envelope"


async def _ensure_subscription(
    sns: Any,
    topic: str,
    queue: _Queue,
    changes: list[Change],
    *,
    raw_delivery: bool,
    dry_run: bool,
) -> None:
    wanted = "true" if raw_delivery else "false"
    existing = None
    if queue.url is not None:
        try:
            listed = await _subscriptions(sns, "list_subscriptions_by_topic", TopicArn=topic)
        except sns.exceptions.NotFoundException:
            raise CliError(
                f"the endpoint's topic {topic} does not exist: fix its endpoint config", EXIT_CONFIG
            ) from None
        existing = next(
            (s for s in listed if s.get("Protocol") == "sqs" and s.get("Endpoint") == queue.arn),
            None,
        )
    if existing is None:
        changes.append(Change(f"subscribe {queue.name} to {topic} ({_delivery(raw_delivery)})"))
        if not dry_run:
            await sns.subscribe(
                TopicArn=topic,
                Protocol="sqs",
                Endpoint=queue.arn,
                Attributes={"RawMessageDelivery": wanted},
                ReturnSubscriptionArn=True,
            )
        return
    arn = existing.get("SubscriptionArn", "")
    if not arn.startswith("arn:"):
        # "PendingConfirmation": a topic of another account waits for the queue's owner to
        # confirm (the SubscriptionConfirmation message is in the queue); nothing to set yet.
        logger.warning("the subscription of %s to %s awaits confirmation", queue.name, topic)
        return
    attributes = (await sns.get_subscription_attributes(SubscriptionArn=arn))["Attributes"]
    if str(attributes.get("RawMessageDelivery", "false")).lower() != wanted:
        changes.append(
            Change(
                f"switch the subscription of {queue.name} to {topic} to {_delivery(raw_delivery)}"
            )
        )
        if not dry_run:
            await sns.set_subscription_attributes(
                SubscriptionArn=arn, AttributeName="RawMessageDelivery", AttributeValue=wanted
            )


# --- the two commands ------------------------------------------------------------------------


async def setup(
    *,
    sagemaker: Any,
    sqs: Any,
    sns: Any,
    endpoint: str,
    queue_name: str,
    region: str | None,
    raw_delivery: bool,
    dry_run: bool,
) -> SetupResult:
    """Make (or check) the queue, its dead-letter queue, policy and subscriptions."""
    topics = await describe_topics(sagemaker, endpoint)
    changes: list[Change] = []
    dead_letter = await _ensure_queue(
        sqs,
        dead_letter_name(queue_name),
        endpoint=topics,
        region=region,
        role=ROLE_DEAD_LETTER,
        attributes={"MessageRetentionPeriod": str(DEAD_LETTER_RETENTION_SECONDS)},
        changes=changes,
        dry_run=dry_run,
    )
    queue = await _ensure_queue(
        sqs,
        queue_name,
        endpoint=topics,
        region=region,
        role=ROLE_QUEUE,
        attributes={},
        changes=changes,
        dry_run=dry_run,
    )
    # The policy before the subscriptions: SNS may send as soon as it is subscribed.
    await _ensure_policies(sqs, queue, dead_letter, topics.topics, changes, dry_run=dry_run)
    for topic in topics.topics:
        await _ensure_subscription(
            sns, topic, queue, changes, raw_delivery=raw_delivery, dry_run=dry_run
        )
    return SetupResult(topics, queue_name, queue.url, changes)


async def teardown(
    *, sqs: Any, sns: Any, endpoint: str, queue_name: str, dry_run: bool
) -> TeardownResult:
    """Remove what :func:`setup` made for ``endpoint``: subscriptions, queue, dead-letter queue.

    :raises CliError: the queue exists but is not setup's for this endpoint (exit 2).
    """
    result = TeardownResult(queue_name)
    found = await _find_queue(sqs, queue_name)
    if found is not None:
        url, tags = found
        if not is_managed(tags, endpoint, ROLE_QUEUE):
            raise _not_ours(queue_name, endpoint, "not deleted")
        arn = (await _queue_attributes(sqs, url, "QueueArn"))["QueueArn"]
        # Unsubscribed first: should a step fail, a rerun still finds the queue, and with it
        # what delivers there.
        for subscription in await _subscriptions(sns, "list_subscriptions"):
            if subscription.get("Protocol") != "sqs" or subscription.get("Endpoint") != arn:
                continue
            sub_arn = subscription.get("SubscriptionArn", "")
            topic = subscription.get("TopicArn", "?")
            result.changes.append(Change(f"unsubscribe {queue_name} from {topic}"))
            if not dry_run and sub_arn.startswith("arn:"):
                await sns.unsubscribe(SubscriptionArn=sub_arn)
        result.changes.append(Change(f"delete queue {queue_name}"))
        if not dry_run:
            await sqs.delete_queue(QueueUrl=url)
    dead_letter = dead_letter_name(queue_name)
    found = await _find_queue(sqs, dead_letter)
    if found is not None:
        url, tags = found
        if is_managed(tags, endpoint, ROLE_DEAD_LETTER):
            result.changes.append(Change(f"delete dead-letter queue {dead_letter}"))
            if not dry_run:
                await sqs.delete_queue(QueueUrl=url)
        else:
            result.notes.append(
                f"queue {dead_letter} was not made by `notifications setup` for {endpoint}: "
                "left alone"
            )
    return result
