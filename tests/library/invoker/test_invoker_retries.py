"""Retries under injected throttling, 5xx and connection resets, and AIMD concurrency."""

from __future__ import annotations

import pytest

from aiosagemaker import AsyncInvoker, InvocationError, Limits, RetryPolicy, ThrottledError
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

FAST = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.01)


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("throttle", "ThrottlingException"),
        ("internal_error", "InternalFailure"),
        ("unavailable", "ServiceUnavailable"),
    ],
)
async def test_retried_faults(
    stack_env: LocalStack, endpoint: EndpointInfo, fault: str, code: str
) -> None:
    await stack_env.reset()
    await stack_env.set_faults({fault: {"next": 3}}, endpoint=endpoint.name)
    async with AsyncInvoker(endpoint.name, retry=FAST, watcher=None) as invoker:
        job = await invoker.invoke(b"{}")
    stats = await stack_env.stats()
    assert job.attempts == 4
    assert stats["rejected"] == {code: 3}
    assert stats["accepted_by_id"] == {job.inference_id: 1}
    counters = invoker.statistics()
    assert counters.retried == 3
    assert counters.throttled == (3 if fault == "throttle" else 0)
    assert counters.ambiguous_retries == 0


async def test_throttling_outlasting_the_policy(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    await stack_env.set_faults({"throttle": 1.0}, endpoint=endpoint.name)
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01)
    async with AsyncInvoker(endpoint.name, retry=policy, watcher=None) as invoker:
        job = await invoker.submit(b"{}", inference_id="throttled-1")
        with pytest.raises(ThrottledError) as info:
            await job.accepted()
        with pytest.raises(ThrottledError) as again:
            await job.result()  # the same error, from either wait
    assert again.value is info.value
    assert info.value.code == "ThrottlingException"
    assert info.value.status == 429
    assert info.value.inference_id == "throttled-1"
    assert invoker.statistics().rejected == 1


async def test_ambiguous_reset_is_retried_and_counted(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    # The endpoint enqueues the request, then drops the connection: the client cannot know.
    await stack_env.set_faults({"accept_then_reset": {"next": 1}}, endpoint=endpoint.name)
    async with AsyncInvoker(endpoint.name, retry=FAST, watcher=None) as invoker:
        job = await invoker.invoke(b"{}")
    stats = await stack_env.stats(endpoint.name)
    # At-least-once execution: the same inference id was accepted twice, and we said so.
    assert stats["accepted_by_id"][job.inference_id] == 2
    assert invoker.statistics().ambiguous_retries == 1


async def test_ambiguous_reset_not_retried_when_policy_forbids(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    await stack_env.set_faults({"reset": {"next": 1}}, endpoint=endpoint.name)
    policy = RetryPolicy(max_attempts=5, base_delay=0.001, retry_ambiguous=False)
    async with AsyncInvoker(endpoint.name, retry=policy, watcher=None) as invoker:
        job = await invoker.submit(b"{}")
        with pytest.raises(InvocationError) as info:
            await job.accepted()
    assert info.value.code == "ConnectionError"
    assert "may have been received" in str(info.value)
    assert invoker.statistics().ambiguous_retries == 0
    assert (await stack_env.stats(endpoint.name))["accepted"] == 0


async def _burst(invoker: AsyncInvoker, count: int) -> None:
    """The README's way: a loop of awaited submissions, then wait for every answer."""
    for _ in range(count):
        await invoker.submit(b"{}")
    await invoker.drain()


async def test_throttling_lowers_concurrency_aimd(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    await stack_env.reset()
    ceiling = 32
    limits = Limits(max_concurrent_invocations=ceiling)
    policy = RetryPolicy(max_attempts=50, base_delay=0.001, max_delay=0.02)
    async with AsyncInvoker(endpoint.name, limits=limits, retry=policy, watcher=None) as invoker:
        # Unthrottled, a burst with slow answers fills the whole window.
        await stack_env.set_faults({"latency": 0.05}, endpoint=endpoint.name)
        await _burst(invoker, 3 * ceiling)
        unthrottled_peak = (await stack_env.stats())["peak_concurrent_http"]
        # Under heavy throttling the limit backs off multiplicatively...
        await stack_env.set_faults(
            {"latency": 0.05, "throttle": 0.5, "seed": 3}, endpoint=endpoint.name
        )
        await _burst(invoker, 3 * ceiling)
        lowered = invoker.statistics().concurrency_limit
        assert lowered < ceiling // 2
        # ... and the server sees it: a fresh burst's peak stays under the lowered limit.
        await stack_env.reset()
        await stack_env.set_faults({"latency": 0.05}, endpoint=endpoint.name)
        await _burst(invoker, 3 * ceiling)
        throttled_peak = (await stack_env.stats())["peak_concurrent_http"]
        # ... and recovers additively once throttling stops.
        recovered = invoker.statistics().concurrency_limit
    assert unthrottled_peak == ceiling
    assert throttled_peak < ceiling
    assert lowered < recovered <= ceiling
