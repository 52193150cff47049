"""The background sends run on a few long-lived senders, not on a task per job.

Against ``StubRuntime`` (invoker_stubs.py), which holds each request until the test lets it go, so
the test sees what is queued, what is being sent, and what a close does to each.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from invoker_stubs import Post, Reply, StubRuntime, accepted

from aiosagemaker import (
    AdmissionTimeoutError,
    AsyncInferenceError,
    AsyncInvoker,
    InvokerClosedError,
    InvokerState,
    Limits,
)

ENDPOINT = "stub-endpoint"
SENDER = "aiosagemaker-sender"

pytestmark = pytest.mark.usefixtures("stub_credentials")


@pytest.fixture
def stub_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and a region for signing; the stub never checks the signature."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTUBSTUBSTUBSTUB")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stub-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


class Gate:
    """A responder that holds every request until ``open`` is set, then answers 202."""

    def __init__(self, *, opened: bool = False) -> None:
        self.open = asyncio.Event()
        if opened:
            self.open.set()

    async def __call__(self, post: Post) -> Reply:
        await self.open.wait()
        return accepted(post)


def invoker_for(stub: StubRuntime, concurrency: int, **limits: Any) -> AsyncInvoker:
    return AsyncInvoker(
        ENDPOINT,
        endpoint_url=stub.url,
        watcher=None,
        limits=Limits(max_concurrent_invocations=concurrency, **limits),
    )


def senders() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task.get_name() == SENDER}


def _stub_task(task: asyncio.Task[Any]) -> bool:
    """One of the stub server's connection handlers (they end on their own)."""
    return task.get_coro().__qualname__.startswith("StubRuntime.")  # type: ignore[union-attr]


async def until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_sender_per_invocation_slot_not_a_task_per_job() -> None:
    gate = Gate()
    async with StubRuntime(gate) as stub:
        async with invoker_for(stub, 4) as invoker:
            assert senders() == set()  # started on demand
            # 4 sent and held, 4 queued: the send queue holds twice the in-flight limit.
            jobs = [await invoker.submit(b"{}") for _ in range(8)]
            await until(lambda: stub.in_flight == 4)
            assert len(senders()) == 4
            stats = invoker.statistics()
            assert (stats.in_flight, stats.send_queue.borrowed, stats.pending) == (4, 8, 8)
            gate.open.set()
            jobs += [await invoker.submit(b"{}") for _ in range(200)]
            for job in jobs:
                assert (await job.accepted()).output_location
            assert len(senders()) == 4  # the same few, whatever the number of jobs
            assert invoker.statistics().send_queue.borrowed == 0
        assert senders() == set()  # ended with the invoker
    assert stub.peak == 4
    assert len({post.inference_id for post in stub.posts}) == len(jobs) == 208


async def test_before_send_hooks_run_concurrently_up_to_the_limit() -> None:
    running = peak = 0
    release = asyncio.Event()

    async def hook() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await release.wait()
        finally:
            running -= 1

    async with StubRuntime(Gate(opened=True)) as stub, invoker_for(stub, 4) as invoker:
        jobs = [await invoker.submit(b"{}", before_send=hook) for _ in range(8)]
        await until(lambda: running == 4)
        await asyncio.sleep(0.05)
        assert (peak, running, len(stub.posts)) == (4, 4, 0)  # hooks first, nothing sent yet
        release.set()
        for job in jobs:
            await job.accepted()
    assert peak == 4 and len(stub.posts) == 8


async def test_a_hook_error_fails_its_job_and_the_sender_goes_on() -> None:
    async def broken() -> None:
        raise ValueError("journal is full")

    async def cancelled() -> None:
        raise asyncio.CancelledError  # the hook's own, not a cancellation of the sender

    async with StubRuntime(Gate(opened=True)) as stub, invoker_for(stub, 1) as invoker:
        first = await invoker.submit(b"1", before_send=broken)
        second = await invoker.submit(b"2", before_send=cancelled)
        third = await invoker.submit(b"3")
        with pytest.raises(AsyncInferenceError, match="not sent: ValueError") as info:
            await first.accepted()
        assert isinstance(info.value.__cause__, ValueError)
        assert info.value.inference_id == first.inference_id
        with pytest.raises(InvokerClosedError):
            await second.accepted()
        await third.accepted()  # the one sender outlived both
        assert len(senders()) == 1
        stats = invoker.statistics()
    assert (stats.submitted, stats.accepted, stats.rejected, stats.pending) == (3, 1, 2, 0)
    assert [post.body for post in stub.posts] == [b"3"]


async def test_close_sends_the_queued_jobs_and_drain_waits_for_them() -> None:
    async def slow(post: Post) -> Reply:
        await asyncio.sleep(0.02)
        return accepted(post)

    async with StubRuntime(slow) as stub:
        invoker = invoker_for(stub, 2)
        await invoker.open()
        jobs = [await invoker.submit({"n": n}) for n in range(4)]
        await invoker.drain()
        assert all(job.done() for job in jobs)
        more = [await invoker.submit({"n": n}) for n in range(4, 8)]
        await invoker.aclose()  # two sent, two queued: all eight go out
        assert invoker.state is InvokerState.CLOSED
        for job in jobs + more:
            await job.accepted()
    assert len(stub.posts) == 8
    assert senders() == set()


async def test_cancelled_close_fails_queued_and_in_flight_jobs() -> None:
    hooks_run = 0

    async def hook() -> None:
        nonlocal hooks_run
        hooks_run += 1

    before = asyncio.all_tasks()
    async with StubRuntime(Gate()) as stub:  # never answers
        invoker = invoker_for(stub, 2)
        await invoker.open()
        jobs = [await invoker.submit(b"{}", before_send=hook) for _ in range(4)]
        await until(lambda: stub.in_flight == 2)
        closing = asyncio.create_task(invoker.aclose())
        await until(lambda: invoker.state is InvokerState.CLOSING)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        assert invoker.state is InvokerState.CLOSED
        messages = []
        for job in jobs:
            assert job.done()
            with pytest.raises(InvokerClosedError) as info:
                await job.accepted()
            messages.append(str(info.value))
        stats = invoker.statistics()
        assert (stats.in_flight, stats.pending, stats.rejected, stats.accepted) == (0, 0, 4, 0)
        assert stats.send_queue.borrowed == 0
        assert {t for t in asyncio.all_tasks() - before if not _stub_task(t)} == set()
    # Two were on the wire (they may have been received); two never left the queue.
    assert sum("may or may not have been received" in m for m in messages) == 2
    assert sum("before the request was sent" in m for m in messages) == 2
    assert hooks_run == 2 and len(stub.posts) == 2


async def test_a_hook_that_swallows_the_cancellation_does_not_hold_up_a_cancelled_close() -> None:
    in_hook = asyncio.Event()

    async def stubborn() -> None:
        in_hook.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # swallowed: the sender must stop all the same

    async with StubRuntime(Gate()) as stub:
        invoker = invoker_for(stub, 1)
        await invoker.open()
        jobs = [await invoker.submit(b"{}", before_send=stubborn) for _ in range(2)]
        await in_hook.wait()
        closing = asyncio.create_task(invoker.aclose())
        await until(lambda: invoker.state is InvokerState.CLOSING)
        closing.cancel()
        async with asyncio.timeout(5):
            with pytest.raises(asyncio.CancelledError):
                await closing
        assert invoker.state is InvokerState.CLOSED
        for job in jobs:
            with pytest.raises(InvokerClosedError):
                await job.accepted()
        assert senders() == set()
    assert stub.posts == []


async def test_a_full_send_queue_waits_for_room_within_the_admission_timeout() -> None:
    gate = Gate()
    async with StubRuntime(gate) as stub:
        # One in flight and one queued fill a send queue of 2.
        async with invoker_for(stub, 1, admission_timeout=0.1) as invoker:
            jobs = [await invoker.submit(b"{}") for _ in range(2)]
            with pytest.raises(AdmissionTimeoutError) as info:
                await invoker.submit(b"{}", inference_id="timed-out")
            assert info.value.inference_id == "timed-out"
            stats = invoker.statistics()
            assert (stats.submitted, stats.pending, stats.send_queue.borrowed) == (2, 2, 2)
            gate.open.set()
            for job in jobs:
                await job.accepted()
        gate.open.clear()
        async with invoker_for(stub, 1) as invoker:  # admission_timeout=None: waits for room
            jobs = [await invoker.submit(b"{}") for _ in range(2)]
            waiting = asyncio.create_task(invoker.submit(b"{}"))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            assert invoker.statistics().send_queue.waiting == 1
            gate.open.set()
            jobs.append(await waiting)
            for job in jobs:
                await job.accepted()
    assert len(stub.posts) == 2 + 3


async def test_generated_inference_ids_are_uuid4() -> None:
    async with StubRuntime(Gate(opened=True)) as stub, invoker_for(stub, 4) as invoker:
        jobs = [await invoker.submit(b"{}") for _ in range(50)]
        for job in jobs:
            await job.accepted()
    ids = [job.inference_id for job in jobs]
    assert len(set(ids)) == 50
    for inference_id in ids:
        parsed = uuid.UUID(inference_id)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == inference_id
    assert sorted(post.inference_id or "" for post in stub.posts) == sorted(ids)
