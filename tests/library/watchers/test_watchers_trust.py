"""SqsNotifications over real HTTP (moto's SQS and S3 on loopback): notifications prove what they
claim, or the job is settled from S3 (#10).

Forged messages go straight into the endpoint's queue (anyone allowed to send to it can do as
much). Most tests track a job by hand at locations in the endpoint's real output and failure
paths, and write the "real" objects themselves, so that the order of events is the test's, not a
race; one goes through an invoker and a slow model end to end. The ``aws_proxy`` (a loopback
proxy in front of moto) counts the watcher's HEADs, to wait for a hint to have been looked at.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from aws_proxy import AwsProxy
from watcher_helpers import RawClients, build_watcher, wait_until

from aiosagemaker import (
    AsyncInvoker,
    InferenceFailedError,
    InvokerClosedError,
    NotificationError,
    SqsNotifications,
)
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

FORGED = b'{"label": "forged"}'
REAL = b'{"label": "real"}'
#: the gap between two HEADs of one job's location for hints (``_HINT_GAP``), and a little.
_HINT_SETTLE = 1.3


def notification(
    inference_id: str,
    *,
    status: str = "Completed",
    output: str | None = None,
    failure: str | None = None,
    body: bytes | None = None,
    endpoint: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """A SageMaker-shaped notification with only the fields asked for (a forger's freedom)."""
    message: dict[str, Any] = {
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
        "invocationStatus": status,
        "inferenceId": inference_id,
    }
    response: dict[str, str] = {}
    if output is not None:
        response["outputLocation"] = output
    if failure is not None:
        response["failureLocation"] = failure
    if response:
        message["responseParameters"] = response
    if endpoint is not None:
        message["requestParameters"] = {"endpointName": endpoint}
    if body is not None:
        message["responseBody"] = {
            "content": base64.b64encode(body).decode(),
            "encoding": "BASE64",
            "message": "The inference response is included in the notification.",
        }
    if reason is not None:
        message["failureReason"] = reason
    return message


def envelope(message: dict[str, Any], signature: str) -> dict[str, Any]:
    """The SNS envelope of a delivery without raw message delivery."""
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:success",
        "Message": orjson.dumps(message).decode(),
        "Timestamp": "2022-01-25T22:46:00.700Z",
        "SignatureVersion": "2",
        "Signature": signature,
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.pem",
    }


async def send(clients: RawClients, endpoint: EndpointInfo, message: dict[str, Any] | str) -> None:
    assert endpoint.queue_url is not None
    body = message if isinstance(message, str) else orjson.dumps(message).decode()
    await clients.sqs.send_message(QueueUrl=endpoint.queue_url, MessageBody=body)


def places(endpoint: EndpointInfo, name: str) -> tuple[str, str]:
    """An output and a failure location in the endpoint's own paths, where nothing is yet."""
    return (
        f"{endpoint.output_path.rstrip('/')}/trust/{name}.out",
        f"{endpoint.failure_path.rstrip('/')}/trust/{name}-error.out",
    )


async def put(clients: RawClients, location: str, body: bytes) -> None:
    bucket, _, key = location.removeprefix("s3://").partition("/")
    await clients.s3.put_object(Bucket=bucket, Key=key, Body=body)


def sqs_watcher(endpoint: EndpointInfo, **options: Any) -> SqsNotifications:
    """Reconciliation out of the way: only notifications (and hints) settle jobs here."""
    watcher = build_watcher("sqs", endpoint, reconcile_after=60.0, **options)
    assert isinstance(watcher, SqsNotifications)
    return watcher


async def drained(clients: RawClients, endpoint: EndpointInfo) -> None:
    assert endpoint.queue_url is not None
    queue = endpoint.queue_url

    async def empty() -> bool:
        return await clients.queue_depth(queue) == 0

    await wait_until(empty, what="the queue to be drained")


# --- Completed ------------------------------------------------------------------------------------


async def test_forged_bare_completed_is_a_hint_and_the_real_output_wins(
    endpoint: EndpointInfo, aws_clients: RawClients, aws_proxy: AwsProxy
) -> None:
    inference_id = f"forged-{uuid.uuid4()}"
    output, failure = places(endpoint, inference_id)
    forged = notification(inference_id, body=FORGED)  # no location: the attack of #10
    async with sqs_watcher(endpoint) as watcher:
        job = watcher.track(inference_id, output, failure, endpoint_name=endpoint.name)
        await send(aws_clients, endpoint, forged)
        # A hint: the watcher HEADs the job's own output, which is not there.
        await aws_proxy.wait_for(lambda: aws_proxy.count("HeadObject", 404) >= 1)
        assert watcher.statistics().hint_notifications == 1
        await asyncio.sleep(0.2)  # anything the hint could still do, it would have done
        assert not job.done()
        await drained(aws_clients, endpoint)  # about our job: acted on, deleted
        # The real output is written; the next hint (forged or not) finds it.
        await put(aws_clients, output, REAL)
        await send(aws_clients, endpoint, forged)
        result = await job.result(timeout=15)
        stats = watcher.statistics()
    assert result.body == REAL and result.output_location == output
    assert stats.hint_notifications == 2 and stats.inline_bodies == 0
    assert (stats.resolved, stats.refused_notifications, stats.s3_get_calls) == (1, 0, 1)


async def test_unsigned_completed_naming_the_own_output_is_read_from_s3(
    endpoint: EndpointInfo, aws_clients: RawClients
) -> None:
    inference_id = f"own-{uuid.uuid4()}"
    output, failure = places(endpoint, inference_id)
    await put(aws_clients, output, REAL)
    async with sqs_watcher(endpoint) as watcher:
        job = watcher.track(inference_id, output, failure, endpoint_name=endpoint.name)
        await send(aws_clients, endpoint, notification(inference_id, output=output, body=FORGED))
        result = await job.result(timeout=15)
        stats = watcher.statistics()
    assert result.body == REAL  # what S3 holds at the job's own location, not the message's
    assert stats.inline_bodies == 0 and stats.s3_get_calls == 1 and stats.hint_notifications == 0


async def test_foreign_location_is_refused_and_counted(
    endpoint: EndpointInfo, aws_clients: RawClients
) -> None:
    inference_id = f"foreign-{uuid.uuid4()}"
    output, failure = places(endpoint, inference_id)
    elsewhere = f"s3://attacker-bucket/out/{inference_id}.out"
    async with sqs_watcher(endpoint) as watcher:
        job = watcher.track(inference_id, output, failure, endpoint_name=endpoint.name)
        await send(aws_clients, endpoint, notification(inference_id, output=elsewhere, body=FORGED))
        await wait_until(lambda: watcher.statistics().refused_notifications == 1, what="refusal")
        assert not job.done()
        await drained(aws_clients, endpoint)  # about one of our pending jobs: ours to delete
        # The real notification still settles it, from S3.
        await put(aws_clients, output, REAL)
        await send(aws_clients, endpoint, notification(inference_id, output=output))
        assert (await job.result(timeout=15)).body == REAL
        stats = watcher.statistics()
    assert (stats.refused_notifications, stats.resolved, stats.s3_head_calls) == (1, 1, 0)


async def test_wrong_endpoint_name_is_refused(
    endpoint: EndpointInfo, aws_clients: RawClients
) -> None:
    inference_id = f"endpoint-{uuid.uuid4()}"
    output, failure = places(endpoint, inference_id)
    await put(aws_clients, output, REAL)
    async with sqs_watcher(endpoint) as watcher:
        job = watcher.track(inference_id, output, failure, endpoint_name=endpoint.name)
        wrong = notification(inference_id, output=output, endpoint="someone-elses-endpoint")
        await send(aws_clients, endpoint, wrong)
        await wait_until(lambda: watcher.statistics().refused_notifications == 1, what="refusal")
        assert not job.done()
        # The same, naming the job's endpoint (names are not case sensitive): settled.
        right = notification(inference_id, output=output, endpoint=endpoint.name.upper())
        await send(aws_clients, endpoint, right)
        assert (await job.result(timeout=15)).body == REAL
    assert watcher.statistics().refused_notifications == 1


# --- Failed ---------------------------------------------------------------------------------------


async def test_forged_failed_is_a_hint_and_never_fails_a_job_without_its_failure_object(
    endpoint: EndpointInfo, aws_clients: RawClients, aws_proxy: AwsProxy
) -> None:
    inference_id = f"failed-{uuid.uuid4()}"
    output, failure = places(endpoint, inference_id)
    async with sqs_watcher(endpoint) as watcher:
        job = watcher.track(inference_id, output, failure, endpoint_name=endpoint.name)
        # AWS's documented shape (no failure location), and one naming the job's own.
        await send(aws_clients, endpoint, notification(inference_id, status="Failed", reason="x"))
        await send(
            aws_clients,
            endpoint,
            notification(inference_id, status="Failed", failure=failure, reason="forged"),
        )
        await wait_until(lambda: watcher.statistics().hint_notifications == 2, what="hints")
        await aws_proxy.wait_for(lambda: aws_proxy.count("HeadObject", 404) >= 1)
        await asyncio.sleep(_HINT_SETTLE)  # a coalesced second look, if any, has happened
        assert not job.done()
        await drained(aws_clients, endpoint)
        # The inference really fails: the failure object is written, and AWS's documented
        # notification (no failure location) is a hint that now finds it.
        await put(aws_clients, failure, b"ModelError: the real reason")
        await send(
            aws_clients, endpoint, notification(inference_id, status="Failed", reason="forged")
        )
        with pytest.raises(InferenceFailedError) as caught:
            await job.result(timeout=15)
        stats = watcher.statistics()
    assert caught.value.reason == "ModelError: the real reason"  # read from the object
    assert stats.failed == 1 and stats.hint_notifications == 3


async def test_failure_notification_of_the_local_stack_is_believed_once_checked(
    local_stack: LocalStack,
) -> None:
    # The local stack's (unsigned) Failed names the failure location: a hint, which finds the
    # failure object at once; the reason is the object's.
    endpoint = await local_stack.create_endpoint(model="failing")
    try:
        watcher = sqs_watcher(endpoint)
        async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
            job = await invoker.submit(b"{}")
            with pytest.raises(InferenceFailedError, match="always fails"):
                await job.result(timeout=30)
        stats = watcher.statistics()
        assert (stats.failed, stats.hint_notifications, stats.refused_notifications) == (1, 1, 0)
    finally:
        await local_stack.delete_endpoint(endpoint.name)


# --- end to end: a real job, forged messages while it runs ----------------------------------------


async def test_a_real_job_returns_its_real_body_whatever_is_forged_meanwhile(
    local_stack: LocalStack, aws_clients: RawClients
) -> None:
    # A 2 s model (at the stack's time scale): the forgeries arrive while the job runs.
    endpoint = await local_stack.create_endpoint(model="sleep:200", include_response=True)
    try:
        watcher = sqs_watcher(endpoint)
        async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
            job = await invoker.submit(REAL)
            accepted = await job.accepted()
            output = accepted.output_location
            assert output is not None
            inference_id = job.inference_id
            forgeries = [
                notification(inference_id, body=FORGED),  # bare: a hint
                notification(inference_id, status="Failed", reason="forged"),  # a hint
                notification(inference_id, output="s3://attacker/x.out", body=FORGED),  # refused
                # The invoker passed its endpoint name to the watcher: refused.
                notification(inference_id, output=output, body=FORGED, endpoint="not-this-one"),
            ]
            for forged in forgeries:
                await send(aws_clients, endpoint, forged)
            await wait_until(
                lambda: (
                    watcher.statistics().refused_notifications == 2
                    and watcher.statistics().hint_notifications == 2
                ),
                what="the forgeries to be read",
            )
            assert not job.done()
            result = await job.result(timeout=30)
        stats = watcher.statistics()
        assert result.body == REAL
        # The real notification included the body, unsigned: not used; read from S3.
        assert stats.inline_bodies == 0 and stats.s3_get_calls == 1
        assert (stats.resolved, stats.failed) == (1, 0)
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_included_response_bodies_in_sns_envelopes_are_read_from_s3(
    local_stack: LocalStack,
) -> None:
    # Real notifications with responseBody, in SNS envelopes, no verifier: accepted, and the
    # output is what S3 holds.
    endpoint = await local_stack.create_endpoint(include_response=True)
    try:
        watcher = sqs_watcher(endpoint)
        async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
            jobs = await asyncio.gather(*(invoker.submit(b'{"i": %d}' % i) for i in range(10)))
            bodies = [(await job.result(timeout=30)).body for job in jobs]
        assert bodies == [b'{"i": %d}' % i for i in range(10)]
        stats = watcher.statistics()
        assert stats.inline_bodies == 0 and stats.s3_get_calls == 10
        assert stats.hint_notifications == 0 and stats.refused_notifications == 0
    finally:
        await local_stack.delete_endpoint(endpoint.name)


# --- malformed messages -------------------------------------------------------------------------


async def test_oversized_and_malformed_messages_are_counted_and_the_watcher_survives(
    endpoint: EndpointInfo, aws_clients: RawClients
) -> None:
    assert endpoint.queue_url is not None
    inference_id = f"survivor-{uuid.uuid4()}"
    output, failure = places(endpoint, inference_id)
    deep_envelope = envelope({}, "unsigned")
    deep_envelope["Message"] = '{"x": ' + "[" * 100 + "]" * 100 + "}"
    ours = orjson.dumps(  # wrong types, about our pending job: ours to delete
        {**notification(inference_id), "responseParameters": {"outputLocation": 42}}
    ).decode()
    theirs = [
        # Over 256 KiB (SQS takes up to 1 MiB): never parsed, whatever it says.
        orjson.dumps({**notification(inference_id), "padding": "x" * 300_000}).decode(),
        "this is not JSON {",
        '{"a": ' + "[" * 500 + "]" * 500 + "}",  # nested far too deep
        orjson.dumps(deep_envelope).decode(),  # an SNS envelope whose Message nests far too deep
        orjson.dumps({**notification("someone-else"), "invocationStatus": ["x"]}).decode(),
    ]
    watcher = sqs_watcher(endpoint, visibility_timeout=1)
    async with watcher:
        job = watcher.track(inference_id, output, failure, endpoint_name=endpoint.name)
        for body in [ours, *theirs]:
            await send(aws_clients, endpoint, body)
        await wait_until(
            lambda: watcher.statistics().malformed_notifications >= 1 + len(theirs),
            what="the malformed messages to be read",
        )
        assert watcher.malformed_messages == watcher.statistics().malformed_notifications
        # Still receiving: a real result arrives and settles its job.
        await put(aws_clients, output, REAL)
        await send(aws_clients, endpoint, notification(inference_id, output=output))
        assert (await job.result(timeout=15)).body == REAL
        assert watcher._runner is not None and not watcher._runner.done()
        # A job that never finishes keeps the receivers going while the others come back.
        blocker = watcher.track("blocker", places(endpoint, "blocker")[0], None)
    with pytest.raises(InvokerClosedError):
        await blocker
    assert watcher.statistics().resolved == 1

    # Ours was deleted; the others are left for their owners (and a redrive policy).
    seen: dict[str, str] = {}
    tests: set[str] = set()  # the endpoint's test notifications, if a receive missed them

    async def collect() -> bool:
        response = await aws_clients.sqs.receive_message(
            QueueUrl=endpoint.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in response.get("Messages", []):
            if "TestNotification" in message["Body"]:
                tests.add(message["MessageId"])
            else:
                seen[message["MessageId"]] = message["Body"]
        depth = await aws_clients.queue_depth(endpoint.queue_url)
        return len(seen) >= len(theirs) and depth == len(seen) + len(tests)

    await wait_until(collect, timeout=30, what="the messages left in the queue")
    assert sorted(seen.values()) == sorted(theirs)


# --- jobs without locations ---------------------------------------------------------------------


async def test_job_without_locations_refuses_unsigned_notifications(
    endpoint: EndpointInfo, aws_clients: RawClients
) -> None:
    inference_id = f"nowhere-{uuid.uuid4()}"
    async with sqs_watcher(endpoint) as watcher:
        job = watcher.track(inference_id, None, None, endpoint_name=endpoint.name)
        await send(aws_clients, endpoint, notification(inference_id, body=REAL))
        await wait_until(lambda: watcher.statistics().refused_notifications == 1, what="refusal")
        assert not job.done()
        await drained(aws_clients, endpoint)  # about our pending job: deleted
    with pytest.raises(InvokerClosedError):
        await job


async def test_job_without_locations_with_trust_unsigned_notifications(
    endpoint: EndpointInfo, aws_clients: RawClients
) -> None:
    # (A test of its own: a closing watcher's long poll, still open on moto's side, could take
    # a message sent right after it closed.)
    inference_id = f"nowhere-{uuid.uuid4()}"
    async with sqs_watcher(endpoint, trust_unsigned_notifications=True) as watcher:
        job = watcher.track(inference_id, None, None, endpoint_name=endpoint.name)
        await send(aws_clients, endpoint, notification(inference_id, body=REAL))
        result = await job.result(timeout=15)
        stats = watcher.statistics()
    assert result.body == REAL and result.output_location is None
    assert (stats.inline_bodies, stats.s3_get_calls, stats.refused_notifications) == (1, 0, 0)


# --- signed notifications (a stand-in verifier) ---------------------------------------------------


class AcceptValid:
    """A verifier that trusts envelopes whose ``Signature`` is ``"valid"`` (the real one checks
    SNS's signature and the topic)."""

    def __init__(self) -> None:
        self.seen = 0

    async def verify(self, envelope: Mapping[str, Any]) -> None:
        self.seen += 1
        if envelope.get("Signature") != "valid":
            raise NotificationError("bad signature")


async def test_signed_notification_body_is_used_and_unsigned_ones_are_hints(
    endpoint: EndpointInfo, aws_clients: RawClients, aws_proxy: AwsProxy
) -> None:
    inference_id = f"signed-{uuid.uuid4()}"
    output, failure = places(endpoint, inference_id)
    verifier = AcceptValid()
    async with sqs_watcher(endpoint, verifier=verifier) as watcher:
        job = watcher.track(inference_id, output, failure, endpoint_name=endpoint.name)
        claim = notification(inference_id, output=output, body=FORGED, endpoint=endpoint.name)
        # A bad signature, and raw delivery: unsigned. With a verifier, even naming the job's
        # own output only makes them hints.
        await send(aws_clients, endpoint, envelope(claim, "forged"))
        await send(aws_clients, endpoint, claim)
        await wait_until(lambda: watcher.statistics().hint_notifications == 2, what="hints")
        await aws_proxy.wait_for(lambda: aws_proxy.count("HeadObject", 404) >= 1)
        assert not job.done() and watcher.unverified_notifications == 1
        real = notification(inference_id, output=output, body=REAL, endpoint=endpoint.name)
        await send(aws_clients, endpoint, envelope(real, "valid"))
        result = await job.result(timeout=15)
        stats = watcher.statistics()
    assert result.body == REAL
    assert stats.inline_bodies == 1 and stats.s3_get_calls == 0
    assert verifier.seen == 2  # raw delivery has no envelope to verify
