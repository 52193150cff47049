"""A local SageMaker async endpoint, with S3, SNS and SQS on moto's server, for tests and demos."""

from __future__ import annotations

from ._endpoint import EndpointConfig as EndpointConfig
from ._info import EndpointInfo as EndpointInfo
from ._info import StackInfo as StackInfo
from ._main import add_arguments as add_arguments
from ._main import main as main
from ._main import run as run
from ._stack import LocalStack as LocalStack
from ._stack import open_local_stack as open_local_stack

__all__ = [
    "EndpointConfig",
    "EndpointInfo",
    "LocalStack",
    "StackInfo",
    "add_arguments",
    "main",
    "open_local_stack",
    "run",
]
