"""A smoke run on uvloop: the submit path, retries and shutdown work on another event loop."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from aiosagemaker import AsyncInvoker, RetryPolicy
from aiosagemaker.local import LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")


def test_submit_on_uvloop(stack_env: LocalStack) -> None:
    async def scenario() -> tuple[list[str], dict[str, int], str]:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        endpoint = await stack_env.create_endpoint()
        await stack_env.set_faults({"throttle": {"next": 2}}, endpoint=endpoint.name)
        retry = RetryPolicy(base_delay=0.001, max_delay=0.01)
        async with AsyncInvoker(endpoint.name, retry=retry, watcher=None) as invoker:
            jobs = await asyncio.gather(*(invoker.submit({"i": i}) for i in range(100)))
        stats = await stack_env.stats(endpoint.name)
        await stack_env.delete_endpoint(endpoint.name)
        return [job.inference_id for job in jobs], stats["accepted_by_id"], invoker.state.value

    ids, accepted_by_id, state = uvloop.run(scenario())
    assert len(set(ids)) == 100
    assert all(accepted_by_id[i] == 1 for i in ids)
    assert state == "closed"
