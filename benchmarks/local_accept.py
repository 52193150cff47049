"""How much server CPU the local endpoint's accept path costs per InvokeEndpointAsync request.

Starts the local stack (its own process) with an endpoint whose one worker sleeps for an hour, so
requests only queue: what is measured is the front door (read, SigV4 check, validation, enqueue,
202). This process is the client: it pre-signs requests with botocore's ``SigV4Auth`` and replays
them over keep-alive aiohttp connections. The server's CPU time comes from ``/proc/<pid>/stat``
before and after; capacity on one core = 1 / (server CPU seconds per request).

    python benchmarks/local_accept.py --requests 20000 --concurrency 64 --out results.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from typing import Any

import aiohttp
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from aiosagemaker.local import LocalStack, open_local_stack

# -- knobs -----------------------------------------------------------------------------------
REQUESTS = 20_000
WARMUP = 2_000
CONCURRENCY = 64
BODY_SIZE = 1_024
DISTINCT_REQUESTS = 500


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process, from /proc (no psutil)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    # Fields after the command: state is [0], utime is [11], stime is [12].
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def presign(stack: LocalStack, endpoint: str, count: int, body: bytes) -> list[dict[str, str]]:
    info = stack.info
    credentials = Credentials(info.aws_access_key_id, info.aws_secret_access_key)
    signer = SigV4Auth(credentials, "sagemaker", info.region)
    url = f"{info.sagemaker_runtime_url}/endpoints/{endpoint}/async-invocations"
    signed = []
    for i in range(count):
        request = AWSRequest(
            method="POST",
            url=url,
            data=body,
            headers={
                "Content-Type": "application/octet-stream",
                "X-Amzn-SageMaker-Content-Type": "application/json",
                "X-Amzn-SageMaker-Inference-Id": f"bench-{i}",
            },
        )
        signer.add_auth(request)
        signed.append(dict(request.headers.items()))
    return signed


async def drive(url: str, headers: list[dict[str, str]], body: bytes, total: int, conc: int) -> int:
    """Send ``total`` requests with ``conc`` in flight; return how many were not 202."""
    errors = 0
    next_index = 0
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors, next_index
            while next_index < total:
                i = next_index
                next_index += 1
                async with session.post(
                    url, data=body, headers=headers[i % len(headers)]
                ) as response:
                    await response.read()
                    if response.status != 202:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(conc)))
    return errors


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--body-size", type=int, default=BODY_SIZE)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    body = os.urandom(args.body_size // 2).hex().encode()[: args.body_size]
    async with open_local_stack(notifications=False, endpoints=("bench",)) as stack:
        endpoint = await stack.create_endpoint(
            "bench-accept", model="sleep:3600", instances=1, max_concurrency=1
        )
        url = f"{stack.info.sagemaker_runtime_url}/endpoints/{endpoint.name}/async-invocations"
        headers = presign(stack, endpoint.name, DISTINCT_REQUESTS, body)
        assert stack._process is not None
        pid = stack._process.pid
        await drive(url, headers, body, args.warmup, args.concurrency)
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        errors = await drive(url, headers, body, args.requests, args.concurrency)
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
        stats = await stack.stats(endpoint.name)

    cpu_per_request = cpu / args.requests
    result: dict[str, Any] = {
        "benchmark": "local_accept",
        "requests": args.requests,
        "concurrency": args.concurrency,
        "body_bytes": len(body),
        "errors": errors,
        "accepted": stats["accepted"] - args.warmup,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(args.requests / elapsed, 1),
        "server_cpu_seconds": round(cpu, 3),
        "server_cpu_us_per_request": round(cpu_per_request * 1e6, 1),
        "capacity_one_core_rps": round(1 / cpu_per_request, 1) if cpu_per_request else None,
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "processor": platform.processor() or platform.machine(),
            "nproc": len(os.sched_getaffinity(0)),
        },
    }
    print(
        f"{result['requests']} requests in {result['seconds']} s: "
        f"{result['requests_per_second']} req/s, server CPU "
        f"{result['server_cpu_us_per_request']} us/request -> capacity on one core "
        f"{result['capacity_one_core_rps']} req/s ({errors} errors; "
        f"{result['machine']['platform']}, nproc {result['machine']['nproc']})"
    )
    if args.out:
        with open(args.out, "wb") as f:
            f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
