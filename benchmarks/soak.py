"""A soak: a seeded mix of faults for a given time, through the public API, counting losses.

Loopback only: it starts its own local stack (nothing else is touched), sets a global fault
plan (every kind the local stack injects, stack-wide restarts and moto pauses included) and
streams payloads through ``invoker.map(..., ordered=False, return_exceptions=True)`` with an
``SqsNotifications`` watcher until ``--duration`` seconds have passed, then lets the last jobs
resolve. Reported, and checked:

- load held: results per second, overall and per ``--window`` (min, median);
- faults injected, by kind (the stack's own counts);
- jobs lost: inputs that never came back as a result or an error (must be 0);
- wrong outcomes: a result that is not its input's echo, an error on a job the endpoint did not
  fail, a success on one it did (must be 0);
- duplicates: requests the endpoint accepted more than once (AWS does not deduplicate ids) and the
  client's count of ambiguous retries (each may have run a request twice): duplicates must not
  exceed it; the difference is retries whose first attempt never reached the endpoint's queue;
- peak memory of this process, and its sockets and the server's open HTTP requests at the end.

``python benchmarks/soak.py --duration 600 --out benchmarks/results/soak.json``
Exits 1 if a job was lost, an outcome was wrong, or duplicates exceed the counted ambiguous
retries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from _common import machine, write_json
from aiosagemaker import (
    AsyncInvoker,
    InferenceFailedError,
    InferenceResult,
    Limits,
    RetryPolicy,
    SqsNotifications,
)
from aiosagemaker.local import open_local_stack

# 100x fast: the model's sleep:5 is 50 ms, an InvocationTimeoutSeconds of 100 is 1 s.
TIME_SCALE = 0.01
MODEL = "sleep:5"
INVOCATION_TIMEOUT = 100

MIX: dict[str, Any] = {
    "throttle": 0.02,
    "internal_error": 0.005,
    "unavailable": 0.01,
    "reset": 0.003,
    "accept_then_reset": 0.003,
    "model_error": 0.004,
    "model_hang": 0.002,
    "output_late": {"rate": 0.05, "seconds": 0.3},
    "notification_drop": 0.003,
    "notification_duplicate": 0.01,
    "notification_reorder": {"rate": 0.1, "seconds": 0.5},
    "s3_get_error": 0.01,
    "s3_get_reset": 0.002,
    "endpoint_restart": {"every": 45.0, "seconds": 0.5},
    "aws_pause": {"every": 60.0, "seconds": 1.0},
}


def sockets_open() -> int:
    fd_dir = "/proc/self/fd"
    count = 0
    for name in os.listdir(fd_dir):
        try:
            count += os.readlink(f"{fd_dir}/{name}").startswith("socket:")
        except OSError:
            pass
    return count


async def payloads(until: float, sent: list[int]) -> AsyncIterator[bytes]:
    i = 0
    while time.monotonic() < until:
        sent[0] = i + 1
        yield b'{"n": %d}' % i
        i += 1


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    plan = {"seed": args.seed, **MIX}
    with open_local_stack(
        model=MODEL,
        instances=args.instances,
        max_concurrency=8,
        time_scale=TIME_SCALE,
        endpoints=("soak-warm",),
    ) as stack:
        os.environ.update(stack.env())
        endpoint = await stack.create_endpoint(f"soak-{uuid.uuid4().hex[:8]}")
        await stack.reset()
        await stack.set_faults(plan)
        sockets_before = sockets_open()
        sent = [0]
        seen: dict[int, str] = {}
        failed: dict[str, str] = {}
        wrong: list[str] = []
        stamps: list[float] = []
        watcher = SqsNotifications(queue_url=endpoint.queue_url or "", reconcile_after=5.0)
        start = time.monotonic()
        async with AsyncInvoker(
            endpoint.name,
            limits=Limits(max_concurrent_invocations=args.concurrency, max_pending=args.pending),
            retry=RetryPolicy(max_attempts=12, base_delay=0.05, max_delay=1.0),
            watcher=watcher,
        ) as invoker:
            async for outcome in invoker.map(
                payloads(start + args.duration, sent),
                ordered=False,
                return_exceptions=True,
                invocation_timeout=INVOCATION_TIMEOUT,
            ):
                stamps.append(time.monotonic() - start)
                if isinstance(outcome, InferenceResult):
                    n = int(orjson.loads(outcome.body or b"{}").get("n", -1))
                    if n < 0 or n in seen:
                        wrong.append(f"result {outcome.inference_id}: n={n} again or missing")
                    seen[n] = outcome.inference_id
                elif isinstance(outcome, InferenceFailedError) and outcome.inference_id:
                    failed[outcome.inference_id] = str(outcome)
                else:
                    wrong.append(f"unexpected {type(outcome).__name__}: {outcome}")
            client = invoker.statistics()
        wall = time.monotonic() - start
        await stack.set_faults({})  # stops the schedules before the last counts
        server = await stack.stats()
        section = server["endpoints"][endpoint.name]
        faulted: dict[str, str] = section["model_faults_by_id"]
        for inference_id in seen.values():
            if inference_id in faulted:
                wrong.append(f"{inference_id}: succeeded, but the endpoint failed it")
        for inference_id in failed:
            if inference_id not in faulted:
                wrong.append(f"{inference_id}: failed, but the endpoint did not fail it")
        duplicates = sum(n - 1 for n in section["accepted_by_id"].values() if n > 1)
        windows = [
            sum(1 for s in stamps if k * args.window <= s < (k + 1) * args.window) / args.window
            for k in range(max(1, int(args.duration // args.window)))
        ]
        await stack.delete_endpoint(endpoint.name)
        return {
            "duration_s": args.duration,
            "wall_s": round(wall, 1),
            "seed": args.seed,
            "plan": plan,
            "jobs": sent[0],
            "results": len(seen),
            "errors": len(failed),
            "lost": sent[0] - len(seen) - len(failed),
            "wrong_outcomes": len(wrong),
            "wrong_examples": wrong[:5],
            "results_per_s": round((len(seen) + len(failed)) / wall, 1),
            "per_window_results_per_s": {
                "window_s": args.window,
                "min": round(min(windows), 1),
                "median": round(statistics.median(windows), 1),
            },
            "faults_injected": server["faults_injected"],
            "endpoint_reruns_after_restarts": section["reruns"],
            "duplicates": duplicates,
            "ambiguous_retries": client.ambiguous_retries,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "sockets_before": sockets_before,
            "sockets_after": sockets_open(),
            "server_open_http_requests_after": server["in_flight_http"],
            "machine": machine(),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of submitting")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pending", type=int, default=500)
    parser.add_argument("--instances", type=int, default=4, help="per endpoint, 8 workers each")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per load window")
    parser.add_argument("--out")
    args = parser.parse_args()
    report = asyncio.run(soak(args))
    write_json(args.out, report)
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    ok = (
        report["lost"] == 0
        and report["wrong_outcomes"] == 0
        and report["duplicates"] <= report["ambiguous_retries"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
