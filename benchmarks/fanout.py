"""Fan-out through the public entry points: ``map()`` and the README's submit loop.

Against the local stack with ``--latency`` seconds added to every 202 answer (a slow front door,
as a far region is), one endpoint per run, both client paths as a user writes them:

- ``map``: ``async for result in invoker.map(payloads)``
- ``submit-loop``: ``jobs = [await invoker.submit(p) for p in payloads]`` then the results

Reported per path: results/s, the server's peak concurrent HTTP requests (what the library really
kept in flight) and client CPU per result. With 0.2 s of latency, one request at a time caps a
path at 5 requests/s; 64 in flight allow ~320.

``python benchmarks/fanout.py --requests 300 --concurrency 64 --latency 0.2``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

from _common import machine, write_json
from aiosagemaker import AsyncInvoker, Limits, S3Polling
from aiosagemaker.local import LocalStack, open_local_stack


async def _run(stack: LocalStack, path: str, args: argparse.Namespace) -> dict[str, Any]:
    endpoint = await stack.create_endpoint(f"fanout-{uuid.uuid4().hex[:8]}")
    await stack.reset()  # the server's peak concurrency is counted for the whole server
    await stack.set_faults(latency=args.latency, endpoint=endpoint.name)
    payloads = [{"i": i, "pad": "x" * args.payload_size} for i in range(args.requests)]
    limits = Limits(max_concurrent_invocations=args.concurrency, max_pending=args.max_pending)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = 0
    async with AsyncInvoker(
        endpoint.name, limits=limits, watcher=S3Polling(interval=0.1)
    ) as invoker:
        if path == "map":
            async for _ in invoker.map(payloads, ordered=False):
                results += 1
        else:
            jobs = [await invoker.submit(p) for p in payloads]
            for job in jobs:
                await job.result()
                results += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    stats = await stack.stats()
    await stack.delete_endpoint(endpoint.name)
    return {
        "path": path,
        "results": results,
        "wall_s": round(wall, 2),
        "results_per_s": round(results / wall, 1),
        "cpu_us_per_result": round(cpu / max(1, results) * 1e6),
        "server_peak_concurrent_http": stats["peak_concurrent_http"],
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    async with open_local_stack(instances=4, max_concurrency=64, time_scale=0.01) as stack:
        for key, value in stack.env().items():
            os.environ[key] = value
        runs = [await _run(stack, path, args) for path in ("map", "submit-loop")]
    return {"machine": machine(), "args": vars(args), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-pending", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds added to each 202")
    parser.add_argument("--payload-size", type=int, default=256)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    report = asyncio.run(_main(args))
    for run in report["runs"]:
        print(
            f"{run['path']:12} {run['results']} results in {run['wall_s']} s = "
            f"{run['results_per_s']}/s, server peak in flight {run['server_peak_concurrent_http']}, "
            f"{run['cpu_us_per_result']} us CPU/result"
        )
    write_json(args.out, report)


if __name__ == "__main__":
    main()
