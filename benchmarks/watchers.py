"""AWS calls per result and resolution lag: S3Polling vs SqsNotifications vs a naive HEAD poller.

Runs the local stack (a real endpoint server and moto's S3/SNS/SQS, in child processes), and for
each pending-job count and each watcher submits that many jobs at once through an
``AsyncInvoker`` and waits for every result. The model stamps each output with the wall-clock time
it was produced (the output is written to S3 right after), so the lag of a job is the time its
watcher settled it minus that stamp.

    python benchmarks/watchers.py --pending 1000 --pending 10000 --out benchmarks/results/watchers.json

Calls per result: for S3Polling the S3 calls beyond the one GET of each output (LIST + HEAD); for
SqsNotifications the SQS calls (ReceiveMessage + DeleteMessageBatch; reconciliation HEADs are
reported apart); for the naive poller its HEADs (one per pending job per poll).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from _common import stack_with_model

# --- knobs -----------------------------------------------------------------------------------
PENDING = [1000]
WATCHERS = ["s3-poll", "sqs", "naive"]
INTERVAL = 1.0  # S3Polling and the naive poller
RECEIVERS = 4
INSTANCES = 2
MAX_CONCURRENCY = 8
MODEL = "watchers:stamp"  # this module, imported by the local endpoint's child process


async def stamp(body: bytes, content_type: str | None) -> bytes:
    """The benchmark's model: the input, then ``|`` and the time the output was produced."""
    return body + b"|" + repr(time.time()).encode()


def _naive_class() -> Any:
    from botocore.exceptions import ClientError

    from aiosagemaker._core._events import Completed
    from aiosagemaker._core._request import parse_s3_uri
    from aiosagemaker._watchers._base import Watcher

    class NaiveHeadPoller(Watcher):
        """The baseline: one HEAD of every pending output per poll."""

        kind = "naive"

        def __init__(self, *, interval: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.interval = interval
            self._limit = asyncio.Semaphore(64)

        async def _watch(self) -> None:
            while True:
                pending = [job.output_location for job in self._pending() if job.output_location]
                await asyncio.gather(*(self._head(location) for location in pending))
                await asyncio.sleep(self.interval)

        async def _head(self, location: str) -> None:
            target = parse_s3_uri(location, field="location")
            async with self._limit:
                self._counters.s3_head_calls += 1
                try:
                    await self._s3_client.head_object(Bucket=target.bucket, Key=target.key)
                except ClientError:
                    return
            if self._is_pending_output(location):
                self._feed(Completed(output_location=location))

    return NaiveHeadPoller


def machine() -> dict[str, Any]:
    return {
        "node": platform.node(),
        "system": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "processor": platform.processor() or _cpu_model(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def run_one(
    stack: Any, kind: str, pending: int, interval: float, receivers: int = RECEIVERS
) -> dict[str, Any]:
    from aiosagemaker import AsyncInvoker, Limits, S3Polling, SqsNotifications

    endpoint = await stack.create_endpoint(model=MODEL, notifications=kind == "sqs")
    watcher: Any
    if kind == "s3-poll":
        watcher = S3Polling(interval=interval)
    elif kind == "sqs":
        watcher = SqsNotifications(queue_url=endpoint.queue_url, receivers=receivers)
    else:
        watcher = _naive_class()(interval=interval)
    limits = Limits(max_concurrent_invocations=64, max_pending=pending)
    started = time.monotonic()
    try:
        async with AsyncInvoker(endpoint.name, limits=limits, watcher=watcher) as invoker:
            jobs = await asyncio.gather(*(invoker.submit(b'{"n": %d}' % i) for i in range(pending)))
            results = await asyncio.gather(*(job.result(timeout=3600) for job in jobs))
    finally:
        await stack.delete_endpoint(endpoint.name)
    elapsed = time.monotonic() - started
    lags = []
    for result in results:
        produced = float((result.body or b"").rsplit(b"|", 1)[1])
        assert result.timings.completed is not None
        lags.append(max(0.0, result.timings.completed - produced))
    stats = watcher.statistics()
    resolved = stats.resolved + stats.failed
    if kind == "sqs":
        calls = stats.sqs_receive_calls + stats.sqs_delete_calls
    elif kind == "s3-poll":
        calls = stats.s3_list_calls + stats.s3_head_calls
    else:
        calls = stats.s3_head_calls
    return {
        "watcher": kind,
        "pending": pending,
        "resolved": resolved,
        "seconds": round(elapsed, 2),
        "calls_per_result": round(calls / resolved, 4),
        "s3_list_calls": stats.s3_list_calls,
        "s3_head_calls": stats.s3_head_calls,
        "s3_get_calls": stats.s3_get_calls,
        "sqs_receive_calls": stats.sqs_receive_calls,
        "sqs_delete_calls": stats.sqs_delete_calls,
        "lag_p50": round(_percentile(lags, 0.50), 3),
        "lag_p99": round(_percentile(lags, 0.99), 3),
        "lag_max": round(max(lags), 3),
        "lag_mean": round(statistics.fmean(lags), 3),
    }


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    async with stack_with_model(
        MODEL, instances=args.instances, max_concurrency=args.max_concurrency
    ) as stack:
        for pending in args.pending or PENDING:
            for kind in args.watchers.split(","):
                row = await run_one(stack, kind, pending, args.interval, args.receivers)
                rows.append(row)
                print(orjson.dumps(row).decode(), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    header = f"{'watcher':<8} {'pending':>7} {'calls/result':>12} {'lag p50':>8} {'lag p99':>8} {'seconds':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['watcher']:<8} {r['pending']:>7} {r['calls_per_result']:>12.4f} "
            f"{r['lag_p50']:>7.3f}s {r['lag_p99']:>7.3f}s {r['seconds']:>8.1f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, action="append", help="jobs at once (repeatable)")
    parser.add_argument("--watchers", default=",".join(WATCHERS))
    parser.add_argument("--interval", type=float, default=INTERVAL)
    parser.add_argument("--receivers", type=int, default=RECEIVERS)
    parser.add_argument("--instances", type=int, default=INSTANCES)
    parser.add_argument("--max-concurrency", type=int, default=MAX_CONCURRENCY)
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    result_rows = asyncio.run(main(arguments))
    report = {"machine": machine(), "interval": arguments.interval, "results": result_rows}
    print(f"machine: {report['machine']}")
    print(table(result_rows))
    if arguments.out is not None:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
