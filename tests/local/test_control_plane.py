"""The stack registers each endpoint with moto's SageMaker control plane (``sagemaker_url``)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from stack_helpers import client_kwargs

from aiosagemaker.local import LocalStack


async def test_endpoints_are_described_as_sagemaker_would(local_stack: LocalStack) -> None:
    assert local_stack.env()["AWS_ENDPOINT_URL_SAGEMAKER"] == local_stack.info.sagemaker_url
    sagemaker = boto3.client("sagemaker", **client_kwargs(local_stack, "sagemaker"))
    try:
        loud = await local_stack.create_endpoint(include_response=True, instances=2)
        quiet = await local_stack.create_endpoint(notifications=False)
        described = sagemaker.describe_endpoint(EndpointName=loud.name)
        assert described["EndpointStatus"] == "InService"
        config = sagemaker.describe_endpoint_config(
            EndpointConfigName=described["EndpointConfigName"]
        )
        assert config["ProductionVariants"][0]["InitialInstanceCount"] == 2
        assert config["AsyncInferenceConfig"]["OutputConfig"] == {
            "S3OutputPath": loud.output_path,
            "S3FailurePath": loud.failure_path,
            "NotificationConfig": {
                "SuccessTopic": loud.success_topic_arn,
                "ErrorTopic": loud.error_topic_arn,
                "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"],
            },
        }
        # Without notifications: an async endpoint that names no topics.
        quiet_config = sagemaker.describe_endpoint_config(EndpointConfigName=quiet.name)
        assert "NotificationConfig" not in quiet_config["AsyncInferenceConfig"]["OutputConfig"]
        # Deleting the endpoint deletes its registration too.
        for endpoint in (loud, quiet):
            await local_stack.delete_endpoint(endpoint.name)
            with pytest.raises(ClientError, match="Could not find endpoint"):
                sagemaker.describe_endpoint(EndpointName=endpoint.name)
    finally:
        sagemaker.close()
