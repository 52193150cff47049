"""Requests through plain boto3 and aiobotocore complete with outputs in S3 and notifications."""

from __future__ import annotations

import base64
import uuid

from stack_helpers import Boto3Clients, eventually, notifications

from aiosagemaker.local import EndpointInfo, LocalStack


async def test_inline_roundtrip(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    answer = aws.runtime.invoke_endpoint_async(
        EndpointName=endpoint.name,
        Body=b'{"inputs": "hello"}',
        ContentType="application/json",
        Accept="application/json",
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert answer["ResponseMetadata"]["RequestId"]
    inference_id = answer["InferenceId"]
    uuid.UUID(inference_id)
    assert answer["OutputLocation"] == f"{endpoint.output_path}{inference_id}.out"
    assert answer["FailureLocation"] == f"{endpoint.failure_path}{inference_id}-error.out"

    await eventually(lambda: aws.exists(answer["OutputLocation"]), what="the output")
    assert aws.get(answer["OutputLocation"]) == b'{"inputs": "hello"}'
    assert endpoint.queue_url is not None
    [note] = await notifications(aws, endpoint.queue_url, 1)
    assert note["invocationStatus"] == "Completed"
    assert note["inferenceId"] == inference_id
    assert note["eventSource"] == "aws:sagemaker"
    assert note["eventName"] == "InferenceResult"
    assert note["eventVersion"] == "1.0"
    assert note["awsRegion"] == local_stack.info.region
    assert note["requestParameters"] == {
        "accept": "application/json",
        "contentType": "application/json",
        "endpointName": endpoint.name,
    }
    assert note["responseParameters"] == {
        "contentType": "application/json",
        "outputLocation": answer["OutputLocation"],
    }
    assert "responseBody" not in note
    assert note["eventTime"].endswith("Z") and note["receivedTime"].endswith("Z")


async def test_s3_input_roundtrip(endpoint: EndpointInfo, aws: Boto3Clients) -> None:
    key = f"inputs/{uuid.uuid4().hex}.bin"
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=b"from s3")
    location = f"s3://{aws.bucket}/{key}"
    answer = aws.runtime.invoke_endpoint_async(
        EndpointName=endpoint.name, InputLocation=location, InferenceId="s3-input-1"
    )
    assert answer["InferenceId"] == "s3-input-1"
    assert endpoint.queue_url is not None
    [note] = await notifications(aws, endpoint.queue_url, 1)
    assert note["requestParameters"]["inputLocation"] == location
    assert aws.get(answer["OutputLocation"]) == b"from s3"


async def test_include_response(local_stack: LocalStack, aws: Boto3Clients) -> None:
    endpoint = await local_stack.create_endpoint(include_response=True)
    try:
        answer = aws.runtime.invoke_endpoint_async(EndpointName=endpoint.name, Body=b"\x00\xffdata")
        assert endpoint.queue_url is not None
        [note] = await notifications(aws, endpoint.queue_url, 1)
        assert note["inferenceId"] == answer["InferenceId"]
        body = note["responseBody"]
        assert body["encoding"] == "BASE64"
        assert isinstance(body["message"], str)
        assert base64.b64decode(body["content"]) == b"\x00\xffdata"
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_test_notification_at_creation(local_stack: LocalStack, aws: Boto3Clients) -> None:
    endpoint = await local_stack.create_endpoint()
    try:
        assert endpoint.queue_url is not None
        got = await notifications(aws, endpoint.queue_url, 2, skip_tests=False)
        assert {n["eventName"] for n in got} == {"TestNotification"}
        assert all("invocationStatus" not in n and "inferenceId" not in n for n in got)
        assert {n["topicArn"] for n in got} == {
            endpoint.success_topic_arn,
            endpoint.error_topic_arn,
        }
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_raw_delivery(local_stack: LocalStack, aws: Boto3Clients) -> None:
    endpoint = await local_stack.create_endpoint(raw_delivery=True)
    try:
        answer = aws.runtime.invoke_endpoint_async(EndpointName=endpoint.name, Body=b"raw")
        assert endpoint.queue_url is not None

        def raw() -> list[dict[str, object]]:
            return [
                m
                for m in aws.receive(endpoint.queue_url or "")
                if m.get("eventName") == "InferenceResult"
            ]

        [note] = await eventually(raw, what="a raw notification")
        assert "Type" not in note
        assert note["inferenceId"] == answer["InferenceId"]
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_no_notifications(local_stack: LocalStack, aws: Boto3Clients) -> None:
    endpoint = await local_stack.create_endpoint(notifications=False)
    try:
        assert endpoint.queue_url is None and endpoint.success_topic_arn is None
        answer = aws.runtime.invoke_endpoint_async(EndpointName=endpoint.name, Body=b"quiet")
        await eventually(lambda: aws.exists(answer["OutputLocation"]), what="the output")
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_aiobotocore_roundtrip(
    local_stack: LocalStack, endpoint: EndpointInfo, aio_runtime: object, aws: Boto3Clients
) -> None:
    answer = await aio_runtime.invoke_endpoint_async(  # type: ignore[attr-defined]
        EndpointName=endpoint.name,
        Body=b"aio",
        ContentType="text/plain",
        S3OutputPathExtension="batch-7/part_1",
        Filename="result-0001.txt",
        RequestTTLSeconds=600,
        InvocationTimeoutSeconds=60,
        CustomAttributes="trace=1",
    )
    assert answer["OutputLocation"] == f"{endpoint.output_path}batch-7/part_1/result-0001.txt"
    assert answer["FailureLocation"] == (
        f"{endpoint.failure_path}batch-7/part_1/result-0001.txt-error.out"
    )
    await eventually(lambda: aws.exists(answer["OutputLocation"]), what="the output")
    assert aws.get(answer["OutputLocation"]) == b"aio"


async def test_same_inference_id_runs_twice(
    local_stack: LocalStack, endpoint: EndpointInfo, aws: Boto3Clients
) -> None:
    for _ in range(2):
        aws.runtime.invoke_endpoint_async(
            EndpointName=endpoint.name, Body=b"again", InferenceId="dup-1"
        )

    async def done() -> dict[str, object] | None:
        stats = await local_stack.stats(endpoint.name)
        return stats if stats["completed"] == 2 else None

    stats = await eventually(done, what="two completions")
    assert stats["accepted"] == 2
    assert stats["accepted_by_id"] == {"dup-1": 2}
    assert endpoint.queue_url is not None
    got = await notifications(aws, endpoint.queue_url, 2)
    assert [n["inferenceId"] for n in got] == ["dup-1", "dup-1"]
