"""Failed inferences write the reason to the failure path and publish an error notification."""

from __future__ import annotations

import uuid

from stack_helpers import Boto3Clients, eventually, notifications

from aiosagemaker.local import LocalStack


async def test_failing_model(local_stack: LocalStack, aws: Boto3Clients) -> None:
    endpoint = await local_stack.create_endpoint(model="failing")
    try:
        answer = aws.runtime.invoke_endpoint_async(
            EndpointName=endpoint.name, Body=b"x", ContentType="text/plain"
        )
        assert endpoint.queue_url is not None
        [note] = await notifications(aws, endpoint.queue_url, 1)
        assert note["invocationStatus"] == "Failed"
        assert note["inferenceId"] == answer["InferenceId"]
        assert note["eventName"] == "InferenceResult"
        assert note["responseParameters"]["failureLocation"] == answer["FailureLocation"]
        assert note["failureReason"].startswith("ClientError: Received server error (500)")
        assert aws.get(answer["FailureLocation"]).decode() == note["failureReason"]
        assert not aws.exists(answer["OutputLocation"])
        stats = await local_stack.stats(endpoint.name)
        assert stats["failed"] == 1 and stats["completed"] == 0
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_request_ttl_expiry(local_stack: LocalStack, aws: Boto3Clients) -> None:
    # One worker, busy for 100 s (1 s at the shared stack's time scale), so a request queued
    # behind it with the minimum TTL of 60 s (0.6 s) expires before it starts.
    endpoint = await local_stack.create_endpoint(model="sleep:100", instances=1, max_concurrency=1)
    try:
        aws.runtime.invoke_endpoint_async(EndpointName=endpoint.name, Body=b"slow")
        late = aws.runtime.invoke_endpoint_async(
            EndpointName=endpoint.name, Body=b"late", RequestTTLSeconds=60
        )
        assert endpoint.queue_url is not None
        got = await notifications(aws, endpoint.queue_url, 2)
        by_id = {n["inferenceId"]: n for n in got}
        note = by_id[late["InferenceId"]]
        assert note["invocationStatus"] == "Failed"
        assert "RequestTTLSeconds" in note["failureReason"]
        assert b"expired" in aws.get(late["FailureLocation"])
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_invocation_timeout(local_stack: LocalStack, aws: Boto3Clients) -> None:
    # The model takes 5 s (0.05 s scaled); the timeout is 1 s (0.01 s scaled).
    endpoint = await local_stack.create_endpoint(model="sleep:5")
    try:
        answer = aws.runtime.invoke_endpoint_async(
            EndpointName=endpoint.name, Body=b"x", InvocationTimeoutSeconds=1
        )
        assert endpoint.queue_url is not None
        [note] = await notifications(aws, endpoint.queue_url, 1)
        assert note["invocationStatus"] == "Failed"
        assert note["failureReason"].startswith("ModelError:")
        assert "InvocationTimeoutSeconds" in note["failureReason"]
        assert aws.exists(answer["FailureLocation"])
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_missing_input_object(local_stack: LocalStack, aws: Boto3Clients) -> None:
    endpoint = await local_stack.create_endpoint()
    try:
        location = f"s3://{aws.bucket}/inputs/missing-{uuid.uuid4().hex}"
        answer = aws.runtime.invoke_endpoint_async(
            EndpointName=endpoint.name, InputLocation=location
        )
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
        assert endpoint.queue_url is not None
        [note] = await notifications(aws, endpoint.queue_url, 1)
        assert note["invocationStatus"] == "Failed"
        assert note["requestParameters"]["inputLocation"] == location
        assert location in note["failureReason"]
        await eventually(lambda: aws.exists(answer["FailureLocation"]), what="the failure")
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_module_function_model(local_stack: LocalStack, aws: Boto3Clients) -> None:
    # A sync stdlib callable taking (bytes, content_type): runs in a worker thread.
    endpoint = await local_stack.create_endpoint(model="stack_models:upper")
    try:
        answer = aws.runtime.invoke_endpoint_async(EndpointName=endpoint.name, Body=b"shout")
        await eventually(lambda: aws.exists(answer["OutputLocation"]), what="the output")
        assert aws.get(answer["OutputLocation"]) == b"SHOUT"
    finally:
        await local_stack.delete_endpoint(endpoint.name)
