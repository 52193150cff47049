"""What a running local stack tells its clients: URLs, credentials and endpoints (the info file)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["EndpointInfo", "StackInfo"]


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """One local endpoint: where its outputs go and where its notifications arrive."""

    name: str
    output_path: str
    failure_path: str
    success_topic_arn: str | None
    error_topic_arn: str | None
    queue_url: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EndpointInfo:
        return cls(
            name=data["name"],
            output_path=data["output_path"],
            failure_path=data["failure_path"],
            success_topic_arn=data.get("success_topic_arn"),
            error_topic_arn=data.get("error_topic_arn"),
            queue_url=data.get("queue_url"),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class StackInfo:
    """The whole stack, as written to ``--info-file``."""

    region: str
    aws_access_key_id: str
    aws_secret_access_key: str
    sagemaker_runtime_url: str
    #: SageMaker's control plane (DescribeEndpoint ...): moto's server, where each endpoint is
    #: registered with its async inference config
    sagemaker_url: str
    s3_url: str
    sns_url: str
    sqs_url: str
    control_url: str
    #: the bearer token of the control routes (``Authorization: Bearer <token>``); never printed
    control_token: str
    bucket: str
    endpoints: tuple[EndpointInfo, ...]

    def __repr__(self) -> str:
        # Never show the secret.
        return (
            f"StackInfo(sagemaker_runtime_url={self.sagemaker_runtime_url!r}, "
            f"s3_url={self.s3_url!r}, endpoints={[e.name for e in self.endpoints]!r})"
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackInfo:
        return cls(
            region=data["region"],
            aws_access_key_id=data["aws_access_key_id"],
            aws_secret_access_key=data["aws_secret_access_key"],
            sagemaker_runtime_url=data["sagemaker_runtime_url"],
            sagemaker_url=data["sagemaker_url"],
            s3_url=data["s3_url"],
            sns_url=data["sns_url"],
            sqs_url=data["sqs_url"],
            control_url=data["control_url"],
            control_token=data["control_token"],
            bucket=data["bucket"],
            endpoints=tuple(EndpointInfo.from_json(e) for e in data["endpoints"]),
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["endpoints"] = [e.to_json() for e in self.endpoints]
        return out

    def endpoint(self, name: str) -> EndpointInfo:
        """The endpoint called ``name``; ``KeyError`` if there is none."""
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        raise KeyError(name)

    def env(self) -> dict[str, str]:
        """The environment variables an AWS SDK client needs to use this stack."""
        return {
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.sagemaker_runtime_url,
            "AWS_ENDPOINT_URL_SAGEMAKER": self.sagemaker_url,
            "AWS_ENDPOINT_URL_S3": self.s3_url,
            "AWS_ENDPOINT_URL_SNS": self.sns_url,
            "AWS_ENDPOINT_URL_SQS": self.sqs_url,
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }
