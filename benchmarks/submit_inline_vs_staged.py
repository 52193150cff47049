"""Submission throughput: inline Body vs S3-staged InputLocation, aiosagemaker vs plain aiobotocore.

All four ways of submitting the same payload run in one process against the same local stack
(the endpoint and moto each in a process of their own), interleaved over several rounds, so the
ratios compare like with like on a shared, noisy machine:

- ``aiosagemaker-inline``: ``AsyncInvoker.invoke(payload)`` (one signed POST, waited for)
- ``aiosagemaker-staged``: S3 PUT, then ``AsyncInvoker.invoke(input_location=...)``
- ``aiobotocore-inline``: ``client.invoke_endpoint_async(Body=payload)``
- ``aiobotocore-staged``: ``s3.put_object`` then ``invoke_endpoint_async(InputLocation=...)``,
  the code every user wrote before inline payloads

Reported per mode: requests/s, client CPU µs per request (``time.process_time``), submit latency
p50/p99; ratios against ``aiobotocore-inline``. ``python benchmarks/submit_inline_vs_staged.py
--requests 4000 --concurrency 64 --out benchmarks/results/submit.json``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from _common import machine, percentile, write_json
from aiosagemaker import AsyncInvoker, Limits
from aiosagemaker.local import open_local_stack

MODES = ("aiosagemaker-inline", "aiosagemaker-staged", "aiobotocore-inline", "aiobotocore-staged")


async def _drive(
    count: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> dict[str, float]:
    latencies: list[float] = []
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            await one(index)
            latencies.append(time.perf_counter() - started)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    latencies.sort()
    return {
        "requests": count,
        "wall_s": wall,
        "cpu_s": cpu,
        "requests_per_s": count / wall,
        "cpu_us_per_request": cpu / count * 1e6,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    payload = os.urandom(args.payload_bytes // 2).hex().encode()
    async with open_local_stack(
        model="echo", instances=4, max_concurrency=16, notifications=False
    ) as stack:
        os.environ.update(stack.env())
        endpoint = stack.endpoint.name
        bucket = stack.info.bucket
        session = get_session()
        config = AioConfig(max_pool_connections=args.concurrency, retries={"total_max_attempts": 1})
        async with (
            session.create_client("sagemaker-runtime", config=config) as runtime,
            session.create_client("s3", config=config) as s3,
            AsyncInvoker(
                endpoint,
                limits=Limits(max_concurrent_invocations=args.concurrency),
                watcher=None,
            ) as invoker,
        ):

            async def stage() -> str:
                key = f"bench-inputs/{uuid.uuid4().hex}"
                await s3.put_object(Bucket=bucket, Key=key, Body=payload)
                return f"s3://{bucket}/{key}"

            # invoke(): submit() and wait for the 202, the same unit of work as one
            # invoke_endpoint_async call (a plain submit() returns before the answer).
            async def ours_inline(_: int) -> None:
                await invoker.invoke(payload, content_type="application/json")

            async def ours_staged(_: int) -> None:
                await invoker.invoke(input_location=await stage(), content_type="application/json")

            async def boto_inline(_: int) -> None:
                await runtime.invoke_endpoint_async(
                    EndpointName=endpoint, Body=payload, ContentType="application/json"
                )

            async def boto_staged(_: int) -> None:
                await runtime.invoke_endpoint_async(
                    EndpointName=endpoint,
                    InputLocation=await stage(),
                    ContentType="application/json",
                )

            ways = dict(
                zip(MODES, (ours_inline, ours_staged, boto_inline, boto_staged), strict=True)
            )
            # Warm up pools, credentials and the server's paths.
            for one in ways.values():
                await _drive(50, min(16, args.concurrency), one)
            per_round = max(1, args.requests // args.rounds)
            rounds: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
            for _ in range(args.rounds):
                for mode, one in ways.items():
                    count = per_round if "staged" not in mode else max(1, per_round // 4)
                    rounds[mode].append(await _drive(count, args.concurrency, one))
    results = {mode: _combine(samples) for mode, samples in rounds.items()}
    base = results["aiobotocore-inline"]
    for figures in results.values():
        figures["cpu_efficiency_vs_aiobotocore_inline"] = (
            base["cpu_us_per_request"] / figures["cpu_us_per_request"]
        )
        figures["throughput_vs_aiobotocore_inline"] = (
            figures["requests_per_s"] / base["requests_per_s"]
        )
    return {
        "benchmark": "submit_inline_vs_staged",
        "machine": machine(),
        "settings": vars(args),
        "results": results,
    }


def _combine(samples: list[dict[str, float]]) -> dict[str, float]:
    requests = sum(s["requests"] for s in samples)
    wall = sum(s["wall_s"] for s in samples)
    cpu = sum(s["cpu_s"] for s in samples)
    return {
        "requests": requests,
        "requests_per_s": requests / wall,
        "cpu_us_per_request": cpu / requests * 1e6,
        # The median round's percentiles: rounds are the same size, so this is a fair summary.
        "p50_ms": sorted(s["p50_ms"] for s in samples)[len(samples) // 2],
        "p99_ms": sorted(s["p99_ms"] for s in samples)[len(samples) // 2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4_000, help="inline requests per mode")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--payload-bytes", type=int, default=4_096)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    write_json(args.out, report)
    print(f"machine: {report['machine']}")
    print(
        f"{'mode':22} {'req/s':>9} {'cpu µs/req':>11} {'p50 ms':>8} {'p99 ms':>8} {'cpu eff.':>9}"
    )
    for mode, r in report["results"].items():
        print(
            f"{mode:22} {r['requests_per_s']:9.0f} {r['cpu_us_per_request']:11.0f} "
            f"{r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['cpu_efficiency_vs_aiobotocore_inline']:8.2f}x"
        )


if __name__ == "__main__":
    main()
