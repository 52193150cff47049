"""Injected faults appear exactly as configured."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from stack_helpers import Boto3Clients, eventually, notifications

from aiosagemaker.local import EndpointInfo, LocalStack

CONNECTION_ERRORS = (ConnectionClosedError, EndpointConnectionError)


def _invoke(aws: Boto3Clients, endpoint: EndpointInfo, **kwargs: Any) -> dict[str, Any]:
    answer: dict[str, Any] = aws.runtime.invoke_endpoint_async(
        EndpointName=endpoint.name, Body=kwargs.pop("Body", b"x"), **kwargs
    )
    return answer


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("throttle", 429, "ThrottlingException"),
        ("internal_error", 500, "InternalFailure"),
        ("unavailable", 503, "ServiceUnavailable"),
    ],
)
async def test_error_answers(
    local_stack: LocalStack,
    endpoint: EndpointInfo,
    aws: Boto3Clients,
    fault: str,
    status: int,
    code: str,
) -> None:
    # The stack is shared by the whole session: count this test's faults, not all of them.
    before = (await local_stack.stats())["faults_injected"].get(fault, 0)
    await local_stack.set_faults({fault: {"next": 2}}, endpoint=endpoint.name)
    for _ in range(2):
        with pytest.raises(ClientError) as info:
            _invoke(aws, endpoint)
        assert info.value.response["Error"]["Code"] == code
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert _invoke(aws, endpoint)["ResponseMetadata"]["HTTPStatusCode"] == 202
    stats = await local_stack.stats()
    assert stats["faults_injected"][fault] - before == 2
    assert (await local_stack.stats(endpoint.name))["accepted"] == 1
    faults = await local_stack.faults()
    assert faults["endpoints"][endpoint.name][fault] == {"next": 0}


async def test_reset_before_accepting(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    await local_stack.set_faults({"reset": {"next": 1}}, endpoint=endpoint.name)
    with pytest.raises(CONNECTION_ERRORS):
        _invoke(aws, endpoint, InferenceId="reset-1")
    assert (await local_stack.stats(endpoint.name))["accepted"] == 0
    _invoke(aws, endpoint, InferenceId="after-reset")
    stats = await local_stack.stats(endpoint.name)
    assert stats["accepted_by_id"] == {"after-reset": 1}


async def test_accept_then_reset(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    await local_stack.set_faults({"accept_then_reset": {"next": 1}}, endpoint=endpoint.name)
    with pytest.raises(CONNECTION_ERRORS):
        _invoke(aws, endpoint, InferenceId="accepted-anyway")
    # The request was in fact enqueued: it runs and its output appears.
    stats = await local_stack.stats(endpoint.name)
    assert stats["accepted_by_id"] == {"accepted-anyway": 1}
    assert endpoint.queue_url is not None
    [note] = await notifications(aws, endpoint.queue_url, 1)
    assert note["inferenceId"] == "accepted-anyway"
    assert aws.get(note["responseParameters"]["outputLocation"]) == b"x"


async def test_latency_fault_still_answers(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    faults = await local_stack.set_faults({"latency": 0.05}, endpoint=endpoint.name)
    assert faults["endpoints"][endpoint.name]["latency"] == 0.05
    started = time.perf_counter()
    assert _invoke(aws, endpoint)["ResponseMetadata"]["HTTPStatusCode"] == 202
    # The answer waited the configured latency (a lower bound only: never flaky).
    assert time.perf_counter() - started >= 0.05


async def test_seeded_rates_repeat_exactly(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    async def pattern() -> list[int]:
        await local_stack.set_faults({"throttle": 0.5, "seed": 1234}, endpoint=endpoint.name)
        out = []
        for _ in range(24):
            try:
                out.append(_invoke(aws, endpoint)["ResponseMetadata"]["HTTPStatusCode"])
            except ClientError as exc:
                out.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])
        return out

    first = await pattern()
    assert set(first) == {202, 429}
    assert await pattern() == first


async def test_global_faults_and_reset(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    await local_stack.set_faults({"unavailable": {"next": 1}})
    try:
        with pytest.raises(ClientError) as info:
            _invoke(aws, endpoint)
        assert info.value.response["Error"]["Code"] == "ServiceUnavailable"
    finally:
        await local_stack.set_faults({})
    assert (await local_stack.faults())["global"] is None


async def test_notification_drop(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    await local_stack.set_faults({"notification_drop": {"next": 1}}, endpoint=endpoint.name)
    dropped = _invoke(aws, endpoint)["InferenceId"]

    async def first_done() -> bool:
        return bool((await local_stack.stats(endpoint.name))["completed"] == 1)

    await eventually(first_done, what="the first completion")
    kept = _invoke(aws, endpoint)["InferenceId"]
    assert endpoint.queue_url is not None
    [note] = await notifications(aws, endpoint.queue_url, 1)
    assert note["inferenceId"] == kept
    stats = await local_stack.stats(endpoint.name)
    assert stats["notifications_dropped"] == 1
    # The output of the dropped one exists all the same.
    assert aws.exists(f"{endpoint.output_path}{dropped}.out")


async def test_notification_duplicate(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    await local_stack.set_faults({"notification_duplicate": {"next": 1}}, endpoint=endpoint.name)
    inference_id = _invoke(aws, endpoint)["InferenceId"]
    assert endpoint.queue_url is not None
    got = await notifications(aws, endpoint.queue_url, 2)
    assert [n["inferenceId"] for n in got] == [inference_id, inference_id]
    assert (await local_stack.stats(endpoint.name))["notifications_duplicated"] == 1


async def test_notification_delay(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    await local_stack.set_faults(
        {"notification_delay": {"next": 1, "seconds": 0.2}}, endpoint=endpoint.name
    )
    inference_id = _invoke(aws, endpoint)["InferenceId"]
    assert endpoint.queue_url is not None
    [note] = await notifications(aws, endpoint.queue_url, 1)
    assert note["inferenceId"] == inference_id
    assert (await local_stack.stats(endpoint.name))["notifications_delayed"] == 1


async def test_bad_fault_plan_is_refused(local_stack: LocalStack) -> None:
    with pytest.raises(RuntimeError, match="400"):
        await local_stack.set_faults({"explode": 1.0})
    with pytest.raises(RuntimeError, match="400"):
        await local_stack.set_faults({"throttle": 2.0})


async def test_model_error_and_hang_write_failures_for_exactly_those_requests(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    await local_stack.set_faults(
        {"model_error": {"next": 1}, "model_hang": {"next": 1}}, endpoint=endpoint.name
    )
    # InvocationTimeoutSeconds=60 is 0.6 s on the shared stack (time scale 0.01).
    ids = [_invoke(aws, endpoint, InvocationTimeoutSeconds=60)["InferenceId"] for _ in range(3)]

    async def all_done() -> bool:
        stats = await local_stack.stats(endpoint.name)
        return bool(stats["completed"] + stats["failed"] == 3)

    await eventually(all_done, what="three outcomes")
    stats = await local_stack.stats(endpoint.name)
    assert stats["model_faults_by_id"] == {ids[0]: "model_error", ids[1]: "model_hang"}
    assert (stats["completed"], stats["failed"]) == (1, 2)
    failure = aws.get(f"{endpoint.failure_path}{ids[0]}-error.out").decode()
    assert "injected model error" in failure
    hang = aws.get(f"{endpoint.failure_path}{ids[1]}-error.out").decode()
    assert "timed out" in hang and "InvocationTimeoutSeconds (60 seconds)" in hang
    assert aws.exists(f"{endpoint.output_path}{ids[2]}.out")


async def test_output_late_notifies_before_the_object_exists(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    await local_stack.set_faults(
        {"output_late": {"next": 1, "seconds": 1.0}}, endpoint=endpoint.name
    )
    inference_id = _invoke(aws, endpoint)["InferenceId"]
    assert endpoint.queue_url is not None
    [note] = await notifications(aws, endpoint.queue_url, 1)
    output = note["responseParameters"]["outputLocation"]
    assert not aws.exists(output)  # notified, not yet written

    async def written() -> bool:
        return aws.exists(output)

    await eventually(written, what="the late output")
    assert aws.get(output) == b"x"
    stats = await local_stack.stats(endpoint.name)
    assert stats["faults_injected"] == {"output_late": 1}
    assert note["inferenceId"] == inference_id


async def test_reordered_notifications_overtake_each_other(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    # The first is held back up to 2 s at random (seeded); the next ones go out at once.
    await local_stack.set_faults(
        {"seed": 3, "notification_reorder": {"next": 1, "seconds": 2.0}}, endpoint=endpoint.name
    )
    first = _invoke(aws, endpoint)["InferenceId"]

    async def first_done() -> bool:
        return bool((await local_stack.stats(endpoint.name))["completed"] == 1)

    await eventually(first_done, what="the first completion")
    second = _invoke(aws, endpoint)["InferenceId"]
    assert endpoint.queue_url is not None
    got = await notifications(aws, endpoint.queue_url, 2)
    assert [n["inferenceId"] for n in got] == [second, first]
    assert (await local_stack.stats(endpoint.name))["faults_injected"] == {
        "notification_reorder": 1
    }


async def test_stack_wide_faults_only_in_the_global_plan(
    local_stack: LocalStack, endpoint: EndpointInfo
) -> None:
    with pytest.raises(RuntimeError, match="400.*global plan"):
        await local_stack.set_faults(
            {"endpoint_restart": {"every": 5, "seconds": 1}}, endpoint=endpoint.name
        )
    with pytest.raises(RuntimeError, match="400"):
        await local_stack.set_faults({"aws_pause": {"every": 0, "seconds": 1}})
    with pytest.raises(RuntimeError, match="400"):
        await local_stack.set_faults({"aws_pause": 0.5})
