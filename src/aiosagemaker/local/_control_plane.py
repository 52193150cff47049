"""Each local endpoint, registered with moto's SageMaker control plane (on moto's own port).

The runtime calls (``InvokeEndpointAsync``) go to the stack's own server; the control-plane ones
(``DescribeEndpoint``, ``DescribeEndpointConfig``) go to moto's server, which routes a request
signed for ``sagemaker`` to its SageMaker backend. So a tool that reads an endpoint's async
inference config (``aiosagemaker notifications setup``) finds there what the local endpoint
does: the output and failure paths and the success and error topics.

Each endpoint gets a model, an endpoint config and an endpoint, all named after it (SageMaker
keeps the three kinds apart, so one name serves all three). moto 5.2 stores
``AsyncInferenceConfig`` as given, without checking it, and checks only that a production variant
names a known model and one of its listed instance types.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._core._request import S3Uri
    from ._aws import EndpointResources

__all__ = ["async_inference_config", "deregister_endpoint", "register_endpoint"]

#: an execution role for the model: moto wants one, and nothing assumes it.
ROLE_ARN = "arn:aws:iam::123456789012:role/aiosagemaker-local"
#: an instance type on moto's list; the local endpoint does not simulate instance types.
INSTANCE_TYPE = "ml.m5.large"
#: the model's container image (never pulled: the model runs in the stack's process).
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/aiosagemaker-local:latest"


def async_inference_config(
    *,
    output_path: S3Uri,
    failure_path: S3Uri,
    resources: EndpointResources,
    include_response: bool,
    max_concurrency: int,
) -> dict[str, Any]:
    """The endpoint config's ``AsyncInferenceConfig``, as SageMaker's API takes it."""
    output: dict[str, Any] = {
        "S3OutputPath": str(output_path),
        "S3FailurePath": str(failure_path),
    }
    topics: dict[str, Any] = {}
    if resources.success_topic_arn is not None:
        topics["SuccessTopic"] = resources.success_topic_arn
    if resources.error_topic_arn is not None:
        topics["ErrorTopic"] = resources.error_topic_arn
    if topics and include_response:
        topics["IncludeInferenceResponseIn"] = ["SUCCESS_NOTIFICATION_TOPIC"]
    if topics:
        output["NotificationConfig"] = topics
    return {
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": max_concurrency},
        "OutputConfig": output,
    }


async def register_endpoint(
    sagemaker: Any,
    name: str,
    *,
    instances: int,
    async_config: dict[str, Any],
) -> None:
    """Create the model, endpoint config and endpoint called ``name``.

    :param sagemaker: an aiobotocore ``sagemaker`` client to moto's server (untyped: the project
        does not ship the SageMaker stubs, whose service model is large).
    """
    await sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE_ARN,
        PrimaryContainer={"Image": IMAGE},
    )
    await sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": INSTANCE_TYPE,
                "InitialInstanceCount": instances,
            }
        ],
        AsyncInferenceConfig=async_config,
    )
    await sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


async def deregister_endpoint(sagemaker: Any, name: str) -> None:
    """Delete what :func:`register_endpoint` created.

    All three at once: moto checks no references between them (SageMaker itself would want the
    endpoint gone before its config is deleted, but this is moto's control plane only).
    """
    async with asyncio.TaskGroup() as tg:
        tg.create_task(sagemaker.delete_endpoint(EndpointName=name))
        tg.create_task(sagemaker.delete_endpoint_config(EndpointConfigName=name))
        tg.create_task(sagemaker.delete_model(ModelName=name))
