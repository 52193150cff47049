"""Thousands of concurrent aiobotocore requests: every one accepted, run and written, none lost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from stack_helpers import NO_RETRIES, Boto3Clients, client_kwargs, eventually

from aiosagemaker.local import LocalStack

# The client's concurrency: aiobotocore's connection pool (an aiohttp connector limited to it).
POOL = 200


async def _fan_out(local_stack: LocalStack, aws: Boto3Clients, total: int) -> None:
    endpoint = await local_stack.create_endpoint(
        notifications=False, instances=4, max_concurrency=16
    )
    try:
        session = get_session()
        config = AioConfig(max_pool_connections=POOL, retries=NO_RETRIES)
        # Each control call opens one connection of its own (this one included): count around.
        before = (await local_stack.stats())["connections_opened"]
        async with session.create_client(
            "sagemaker-runtime", config=config, **client_kwargs(local_stack, "sagemaker-runtime")
        ) as runtime:

            async def one(i: int) -> Any:
                return await runtime.invoke_endpoint_async(
                    EndpointName=endpoint.name, Body=b"%d" % i, InferenceId=f"job-{i}"
                )

            answers = await asyncio.gather(*(one(i) for i in range(total)))
        opened = (await local_stack.stats())["connections_opened"] - before - 1
        assert {a["InferenceId"] for a in answers} == {f"job-{i}" for i in range(total)}
        # The accept path never suspends, so the in-handler peak of concurrent HTTP may be 1:
        # connections show the concurrency instead. The pool opens a connection only when all
        # its open ones are busy, so POOL connections mean POOL requests in flight at once; and
        # a kept-alive connection is reused, never replaced, so there are no more than that.
        assert opened == POOL

        async def all_done() -> dict[str, Any] | None:
            stats = await local_stack.stats(endpoint.name)
            return stats if stats["completed"] + stats["failed"] >= total else None

        stats = await eventually(all_done, timeout=100, what=f"{total} completions")
        assert stats["accepted"] == total
        assert stats["completed"] == total and stats["failed"] == 0
        assert len(stats["accepted_by_id"]) == total
        assert set(stats["accepted_by_id"].values()) == {1}
        assert aws.count(endpoint.output_path) == total
        assert aws.get(f"{endpoint.output_path}job-{total - 1}.out") == b"%d" % (total - 1)
    finally:
        await local_stack.delete_endpoint(endpoint.name)


# 1,000 requests, five times the pool's 200 in flight, prove what 2,000 do (every one accepted,
# run and written, the pool's connections reused); 2,000 and 10,000 run under make test-scale.
@pytest.mark.parametrize("total", [1_000, pytest.param(2_000, marks=pytest.mark.scale)])
async def test_concurrent_requests(local_stack: LocalStack, aws: Boto3Clients, total: int) -> None:
    await _fan_out(local_stack, aws, total)


@pytest.mark.scale
@pytest.mark.timeout(600)
async def test_10000_concurrent_requests(local_stack: LocalStack, aws: Boto3Clients) -> None:
    await _fan_out(local_stack, aws, 10_000)
