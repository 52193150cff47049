"""Client CPU of the full ``submit()`` path against stock aiobotocore, on one core.

A stub runtime endpoint (a raw asyncio HTTP/1.1 server in a child process, pinned to the other
core when there is one) answers every ``InvokeEndpointAsync`` at once with a 202, its output
location and inference id, so the client's own CPU is what is measured. The client process is
pinned to one core. Modes, interleaved over ``--rounds`` so that a noisy machine hits them alike:

- ``submit``: the README's loop, ``jobs = [await invoker.submit(p) ...]`` then ``await
  job.accepted()`` for each, ``watcher=None`` (submit-only);
- ``submit-tracked``: the same with an ``S3Polling`` watcher tracking every job (the tracker's
  registration and the job's future included; its one poll an hour never fires here);
- ``aiobotocore``: ``invoke_endpoint_async(Body=...)`` from ``--concurrency`` workers on one client;
- ``aiohttp``: a bare, unsigned ``session.post()`` of the same body from as many workers: the
  floor an HTTP client library sets, for what the rest costs.

All with ``--concurrency`` (100) requests in flight and ``--payload-bytes`` (1,000) payloads.
Reported: requests per CPU second (``time.process_time`` of this process) and the ratio to
aiobotocore's, per round and as the median.

    python benchmarks/submit_cpu.py --requests 20000 --rounds 3 --out benchmarks/results/submit_cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from _common import add_loop_option, loop_factory, loop_name, machine, write_json
from _stub import interleaved_rounds, ratios_to, start_stub, submit_loop
from aiosagemaker import AsyncInvoker, Limits, S3Polling

MODES = ("submit", "submit-tracked", "aiobotocore", "aiohttp")


# --- the modes ------------------------------------------------------------------------------


async def _workers(count: int, concurrency: int, one: Any) -> None:
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            next_index += 1
            await one()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    payload = b'{"inputs": "' + b"x" * (args.payload_bytes - 14) + b'"}'
    assert len(payload) == args.payload_bytes
    limits = Limits(max_concurrent_invocations=args.concurrency, max_pending=10 * args.requests)
    session = get_session()
    config = AioConfig(
        max_pool_connections=args.concurrency, retries={"total_max_attempts": 1, "mode": "standard"}
    )
    url = os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] + "/endpoints/stub/async-invocations"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as bare,
        session.create_client("sagemaker-runtime", config=config) as runtime,
        AsyncInvoker("stub", limits=limits, watcher=None) as plain,
        AsyncInvoker("stub", limits=limits, watcher=S3Polling(interval=3600)) as tracked,
    ):

        async def boto(count: int) -> None:
            async def one() -> None:
                await runtime.invoke_endpoint_async(
                    EndpointName="stub", Body=payload, ContentType="application/json"
                )

            await _workers(count, args.concurrency, one)

        async def plain_post(count: int) -> None:
            async def one() -> None:
                async with bare.post(url, data=payload) as response:
                    await response.read()

            await _workers(count, args.concurrency, one)

        ways = {
            "submit": submit_loop(plain, payload),
            "submit-tracked": submit_loop(tracked, payload),
            "aiobotocore": boto,
            "aiohttp": plain_post,
        }
        if args.profile:
            import cProfile
            import pstats

            await ways[args.profile](500)
            profiler = cProfile.Profile()
            profiler.enable()
            await ways[args.profile](args.requests)
            profiler.disable()
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(35)
            stats.sort_stats("cumulative").print_stats(40)
            raise SystemExit(0)
        measured = await interleaved_rounds(ways, requests=args.requests, rounds=args.rounds)
    results = ratios_to(measured, "aiobotocore", digits=2)
    return {
        "benchmark": "submit_cpu",
        "machine": machine(),
        "settings": vars(args),
        "loop": loop_name(loop_factory(args.loop)),
        "results": results,
    }


def table(results: dict[str, Any]) -> str:
    lines = [f"{'mode':<16} {'req/CPU-s':>10} {'µs/req':>8} {'vs aiobotocore':>15}  per round"]
    for mode, r in results.items():
        lines.append(
            f"{mode:<16} {r['requests_per_cpu_s_median']:>10.0f} "
            f"{r['cpu_us_per_request_median']:>8.0f} {r['vs_aiobotocore_median']:>14.2f}x  "
            f"{r['vs_aiobotocore_per_round']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--payload-bytes", type=int, default=1000)
    add_loop_option(parser)
    parser.add_argument("--profile", choices=MODES, help="profile one mode's run instead")
    parser.add_argument("--out")
    args = parser.parse_args()
    stub = start_stub(services=("SAGEMAKER_RUNTIME", "S3"))
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        report = runner.run(main(args))
    stub.terminate()
    print(table(report["results"]))
    write_json(args.out, report)
