"""Fixtures for the ``aiosagemaker`` command's tests: the local stack's environment, an endpoint."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from aiosagemaker.local import EndpointInfo, LocalStack


@pytest.fixture
def cli_env(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    """Point the command (a child process inherits the variables) at the local stack."""
    for name, value in local_stack.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AIOSAGEMAKER_DEBUG", raising=False)
    yield local_stack


@pytest.fixture
async def quiet_endpoint(local_stack: LocalStack) -> AsyncIterator[EndpointInfo]:
    """A fresh echo endpoint without notifications (S3 polling finds its results).

    Nothing would drain a queue, and moto's SQS (and so SNS publishing) slows as a queue deepens.
    """
    info = await local_stack.create_endpoint(f"c-{uuid.uuid4().hex[:20]}", notifications=False)
    yield info
    await local_stack.delete_endpoint(info.name)
