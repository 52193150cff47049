"""Fixtures for the local stack's own tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from stack_helpers import NO_RETRIES, Boto3Clients, client_kwargs

from aiosagemaker.local import EndpointInfo, LocalStack


@pytest.fixture
def aws(local_stack: LocalStack) -> Iterator[Boto3Clients]:
    clients = Boto3Clients(local_stack)
    yield clients
    clients.close()


@pytest.fixture
async def aio_runtime(local_stack: LocalStack) -> AsyncIterator[Any]:
    session = get_session()
    config = AioConfig(max_pool_connections=100, retries=NO_RETRIES)
    async with session.create_client(
        "sagemaker-runtime", config=config, **client_kwargs(local_stack, "sagemaker-runtime")
    ) as client:
        yield client


@pytest.fixture(scope="module")
def quiet_endpoint(local_stack: LocalStack) -> Iterator[EndpointInfo]:
    """One echo endpoint without notifications, shared by a module's many small cases."""
    info = asyncio.run(local_stack.create_endpoint(notifications=False))
    yield info
    asyncio.run(local_stack.delete_endpoint(info.name))
