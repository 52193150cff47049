"""Fixtures for the watcher tests: the local stack's environment and a watcher of each kind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aws_proxy import AwsProxy
from watcher_helpers import WATCHER_KINDS, RawClients, build_watcher

from aiosagemaker._watchers._base import Watcher
from aiosagemaker.local import EndpointInfo, LocalStack


@pytest.fixture(params=WATCHER_KINDS)
def watcher_kind(request: pytest.FixtureRequest) -> str:
    """Each test that takes this runs once per watcher."""
    kind: str = request.param
    return kind


@pytest.fixture
def make_watcher(watcher_kind: str, stack_env: LocalStack) -> Callable[..., Watcher]:
    """``make_watcher(endpoint, **options)``: a watcher of this test's kind, not yet opened."""

    def make(endpoint: EndpointInfo, **options: Any) -> Watcher:
        return build_watcher(watcher_kind, endpoint, **options)

    return make


@pytest.fixture
async def watched_endpoint(
    watcher_kind: str, local_stack: LocalStack
) -> AsyncIterator[EndpointInfo]:
    """A fresh echo endpoint; with notifications only for the SQS watcher (publishing to moto's
    SNS is the local stack's slowest step, and S3Polling does not read them)."""
    info = await local_stack.create_endpoint(
        f"w-{uuid.uuid4().hex[:20]}", notifications=watcher_kind == "sqs"
    )
    yield info
    await local_stack.delete_endpoint(info.name)


@pytest.fixture
async def aws_clients(stack_env: LocalStack) -> AsyncIterator[RawClients]:
    """Plain aiobotocore clients (runtime, S3, SQS) to the local stack, for setting scenes."""
    async with RawClients.open() as clients:
        yield clients


@pytest.fixture
async def aws_proxy(
    stack_env: LocalStack, aws_clients: RawClients, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AwsProxy]:
    """A proxy in front of moto's S3 and SQS (see ``aws_proxy.py``); AWS clients made from here on
    (the watcher's) go through it, the ``aws_clients`` made before do not."""
    proxy = await AwsProxy(stack_env.info.s3_url).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", proxy.url)
    try:
        yield proxy
    finally:
        await proxy.aclose()
