"""The documented ways to send many requests fan out, memory stays bounded, closing is safe.

Each test drives the public entry points a user calls (``map()``, ``as_completed()``, the README's
loop of awaited ``submit()`` calls) against the local endpoint with latency added to every answer,
and reads how many requests the *server* saw at once (``peak_concurrent_http``).
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from aiosagemaker import (
    AsyncInvoker,
    InvokerClosedError,
    InvokerState,
    Limits,
    S3Polling,
)
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

CONCURRENCY = 16
LATENCY = 0.2  # seconds added to every 202: one at a time would take COUNT * LATENCY
COUNT = 4 * CONCURRENCY


@pytest.fixture
def endpoint(quiet_endpoint: EndpointInfo) -> EndpointInfo:
    """This module's tests read no notifications (no watcher, or S3 polling): a fresh endpoint
    without them spares the stack a topic pair and a queue, and a publish per result."""
    return quiet_endpoint


async def _slow_endpoint(stack: LocalStack, endpoint: EndpointInfo, latency: float) -> None:
    await stack.reset()  # the peak is counted server-wide
    await stack.set_faults({"latency": latency}, endpoint=endpoint.name)


async def _peak(stack: LocalStack) -> int:
    return int((await stack.stats())["peak_concurrent_http"])


def _limits(**more: int) -> Limits:
    return Limits(max_concurrent_invocations=CONCURRENCY, **more)


async def test_map_reaches_the_concurrency_limit(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    await _slow_endpoint(stack_env, endpoint, LATENCY)
    async with AsyncInvoker(
        endpoint.name, limits=_limits(), watcher=S3Polling(interval=0.05)
    ) as invoker:
        results = [r async for r in invoker.map({"n": i} for i in range(COUNT))]
    assert [r.body for r in results] == [f'{{"n":{i}}}'.encode() for i in range(COUNT)]  # type: ignore[union-attr]
    assert await _peak(stack_env) == CONCURRENCY


async def test_readme_loop_and_as_completed_reach_the_concurrency_limit(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    await _slow_endpoint(stack_env, endpoint, LATENCY)
    async with AsyncInvoker(
        endpoint.name, limits=_limits(), watcher=S3Polling(interval=0.05)
    ) as invoker:
        jobs = [await invoker.submit({"n": i}) for i in range(COUNT)]
        results = [r async for r in invoker.as_completed(jobs)]
    assert sorted(r.body for r in results) == sorted(  # type: ignore[union-attr,type-var]
        f'{{"n":{i}}}'.encode() for i in range(COUNT)
    )
    assert await _peak(stack_env) == CONCURRENCY


async def test_invoke_waits_for_each_answer(stack_env: LocalStack, endpoint: EndpointInfo) -> None:
    """The one-call way to the 202 sends one request at a time, as documented."""
    await _slow_endpoint(stack_env, endpoint, 0.05)
    async with AsyncInvoker(endpoint.name, limits=_limits(), watcher=None) as invoker:
        for _ in range(3):
            job = await invoker.invoke(b"{}")
            assert job.output_location is not None and job.attempts == 1
    assert await _peak(stack_env) == 1


async def test_payloads_are_pulled_only_when_there_is_room(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    """A huge max_pending and a slow consumer: map() pulls and encodes payloads only about twice
    the in-flight limit ahead of the endpoint's answers, so memory does not grow with max_pending
    times the payload size."""
    await _slow_endpoint(stack_env, endpoint, 0.1)
    size, count = 128_000, 200
    ahead: list[int] = []
    async with AsyncInvoker(
        endpoint.name,
        limits=Limits(max_concurrent_invocations=8, max_pending=20_000),
        watcher=S3Polling(interval=0.05, fetch=False),
    ) as invoker:

        def payloads() -> Iterator[bytes]:
            for i in range(count):
                answered = invoker.statistics().accepted + invoker.statistics().rejected
                ahead.append(i - answered)
                yield bytes([i % 256]) * size

        tracemalloc.start()
        try:
            seen = 0
            async for _ in invoker.map(payloads(), ordered=False):
                seen += 1
                await asyncio.sleep(0.002)  # a slow consumer
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert seen == count
    # Pulled ahead of the answers: the send queue (2 x 8) and the one payload waiting for it.
    assert max(ahead) <= 2 * 8 + 1
    # Every payload held at once would be 25.6 MB; the send queue holds 2 MB of them.
    assert peak < 12_000_000, peak


def _established_connections(port: int) -> int:
    """TCP connections from this machine to ``port`` that are open (Linux's /proc/net/tcp)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01":  # 01: ESTABLISHED
                count += 1
    return count


async def test_aclose_cancelled_midway_still_releases_everything(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    await _slow_endpoint(stack_env, endpoint, 2.0)
    port = urlsplit(stack_env.info.sagemaker_runtime_url).port
    assert port is not None
    before = asyncio.all_tasks()
    invoker = AsyncInvoker(endpoint.name, limits=Limits(max_concurrent_invocations=4))
    await invoker.open()
    # 4 in flight and 4 waiting to be sent: the send queue holds twice the in-flight limit.
    jobs = [await invoker.submit({"n": i}) for i in range(8)]
    while invoker.statistics().in_flight < 4:
        await asyncio.sleep(0.01)
    assert _established_connections(port) == 4
    closing = asyncio.create_task(invoker.aclose())
    while invoker.state is not InvokerState.CLOSING:
        await asyncio.sleep(0.01)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert invoker.state is InvokerState.CLOSED
    for job in jobs:
        with pytest.raises(InvokerClosedError):
            await job.accepted()
        with pytest.raises(InvokerClosedError):
            await job.result()
    stats = invoker.statistics()
    assert (stats.in_flight, stats.pending, stats.rejected) == (0, 0, 8)
    assert asyncio.all_tasks() - before == set()
    assert _established_connections(port) == 0
    await invoker.aclose()  # a second call is a no-op
    # The server's handlers sleep out their latency: let them finish before the next test counts.
    while (await stack_env.stats())["in_flight_http"]:
        await asyncio.sleep(0.05)


async def test_aclose_twice_at_once_sends_what_was_admitted(
    stack_env: LocalStack, endpoint: EndpointInfo
) -> None:
    await _slow_endpoint(stack_env, endpoint, 0.1)
    invoker = AsyncInvoker(endpoint.name, limits=_limits(), watcher=None)
    await invoker.open()
    jobs = [await invoker.submit({"n": i}) for i in range(COUNT)]
    await asyncio.gather(invoker.aclose(), invoker.aclose())
    assert invoker.state is InvokerState.CLOSED
    # submit() promised to send them: closing sent every admitted request first.
    answers = [await job.accepted() for job in jobs]
    assert all(answer.output_location for answer in answers)
    assert (await stack_env.stats(endpoint.name))["accepted"] == COUNT
