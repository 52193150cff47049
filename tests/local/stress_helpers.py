"""Runs of many jobs through the public API against a local stack under faults, and the ledger
that checks them against the server's own counts."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiosagemaker import (
    AsyncInvoker,
    InferenceFailedError,
    InferenceResult,
    Limits,
    RetryPolicy,
    SqsNotifications,
)
from aiosagemaker.local import EndpointInfo, LocalStack

# Outages of a second or two (a restart, a paused moto) outlast the default five attempts; a user
# expecting them allows more, as these runs do.
OUTAGE_RETRIES = RetryPolicy(max_attempts=12, base_delay=0.05, max_delay=1.0)


def payload(i: int) -> bytes:
    return b'{"n": %d}' % i


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Run:
    """What one run saw, client side and server side."""

    count: int
    outcomes: list[InferenceResult | BaseException]
    accepted: list[Any]
    client: Any
    watcher: Any
    server: dict[str, Any]
    leaked_tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    fds_before: int = 0
    fds_after: int = 0
    rss_growth: int = 0

    @property
    def failed_ids(self) -> set[str]:
        return {
            o.inference_id
            for o in self.outcomes
            if isinstance(o, InferenceFailedError) and o.inference_id is not None
        }

    @property
    def duplicates(self) -> int:
        """Requests the endpoint accepted more than once (AWS does not deduplicate ids)."""
        return sum(n - 1 for n in self.server["accepted_by_id"].values() if n > 1)

    def check(self) -> None:
        """Every job resolved exactly once with the right outcome; duplicates only where the
        client counted an ambiguous retry; nothing leaked."""
        assert len(self.outcomes) == self.count
        faulted: dict[str, str] = self.server["model_faults_by_id"]
        ids = [a.inference_id for a in self.accepted]
        assert len(set(ids)) == self.count  # one id per job
        for i, (outcome, accepted) in enumerate(zip(self.outcomes, self.accepted, strict=True)):
            kind = faulted.get(accepted.inference_id)
            if kind is None:
                assert isinstance(outcome, InferenceResult), (i, outcome)
                assert outcome.inference_id == accepted.inference_id
                assert outcome.body == payload(i), (i, outcome.body)
            else:
                assert isinstance(outcome, InferenceFailedError), (i, kind, outcome)
                assert outcome.inference_id == accepted.inference_id
                expected = "timed out" if kind == "model_hang" else "injected model error"
                assert expected in str(outcome), (kind, str(outcome))
        by_id: dict[str, int] = self.server["accepted_by_id"]
        assert set(by_id) == set(ids)  # the endpoint ran nothing it was not sent
        for accepted in self.accepted:
            # A request ran twice only where its job counted an ambiguous retry.
            assert by_id[accepted.inference_id] - 1 <= accepted.ambiguous_retries, accepted
        assert self.duplicates <= self.client.ambiguous_retries
        assert self.client.ambiguous_retries == sum(a.ambiguous_retries for a in self.accepted)
        assert self.watcher.pending == 0
        assert not self.leaked_tasks
        assert self.fds_after <= self.fds_before
        # Bounded memory: the run's jobs and results are dropped with it; what stays is far from
        # the payloads, results and notifications that went through (well under 100 KB per job).
        assert self.rss_growth < 64 * 1024 * 1024 + 16 * 1024 * self.count


async def run_jobs(
    stack: LocalStack,
    endpoint: EndpointInfo,
    count: int,
    *,
    faults: dict[str, Any] | None = None,
    during: Callable[[], Awaitable[None]] | None = None,
    concurrency: int = 32,
    **fields: Any,
) -> Run:
    """Submit ``count`` jobs as the README does (``submit`` in a loop, then await each), under
    ``faults`` (the global plan: stack-wide faults need it), with ``during`` running alongside."""
    await stack.reset()
    if faults:
        await stack.set_faults(faults)
    await asyncio.sleep(0)
    tasks_before = asyncio.all_tasks()
    fds_before = open_fds()
    rss_before = rss_bytes()
    watcher = SqsNotifications(
        queue_url=endpoint.queue_url or "", reconcile_after=5.0, wait_time_seconds=1
    )
    side = asyncio.create_task(during()) if during is not None else None
    try:
        async with AsyncInvoker(
            endpoint.name,
            limits=Limits(max_concurrent_invocations=concurrency, max_pending=count),
            retry=OUTAGE_RETRIES,
            watcher=watcher,
        ) as invoker:
            jobs = [await invoker.submit(payload(i), **fields) for i in range(count)]
            outcomes: list[InferenceResult | BaseException] = []
            for job in jobs:
                try:
                    outcomes.append(await job.result(timeout=120))
                except InferenceFailedError as exc:
                    outcomes.append(exc)
            accepted = [await job.accepted() for job in jobs]
            client = invoker.statistics()
            watched = watcher.statistics()
        if side is not None:
            await side
    finally:
        if side is not None and not side.done():
            side.cancel()
        await stack.set_faults({})
    del jobs, invoker
    await asyncio.sleep(0.05)  # closed connections' callbacks run
    leaked = [t for t in asyncio.all_tasks() - tasks_before if not t.done()]
    leaked = [t for t in leaked if t is not asyncio.current_task()]
    return Run(
        count=count,
        outcomes=outcomes,
        accepted=accepted,
        client=client,
        watcher=watched,
        server=await stack.stats(endpoint.name) | {"global": await stack.stats()},
        leaked_tasks=leaked,
        fds_before=fds_before,
        fds_after=open_fds(),
        rss_growth=rss_bytes() - rss_before,
    )


def fresh_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"
