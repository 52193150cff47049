"""An open-loop load test with pass/fail thresholds, as a CI gate.

    ENDPOINT=my-endpoint QUEUE_URL=... python load_test.py --rate 50 --duration 30

Requests are due at a fixed rate whatever the endpoint does, and every latency runs from the
request's due time, so a stall shows in the latency of every request due during it. The exit
status is 0 when every threshold holds, 1 otherwise. ``aiosagemaker bench`` is the same harness
with more options (stages, several processes, plots); this is its core, from Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from aiosagemaker import (
    AsyncInvoker,
    InferenceJob,
    Limits,
    RetryPolicy,
    S3Polling,
    SqsNotifications,
)
from aiosagemaker.bench import LoadPlan, LoadRun, Stage, parse_threshold, report_of

DEFAULT_THRESHOLDS = ["submit.p99<500ms", "e2e.p99<30s", "errors<1%", "achieved_rate>=0.9*target"]


async def load_test(rate: float, duration: float, payload: bytes) -> dict[str, Any]:
    """Run the load and return its report (the JSON of ``aiosagemaker bench --report``)."""
    queue_url = os.environ.get("QUEUE_URL")
    plan = LoadPlan(
        stages=[Stage(duration, rate)],  # one stage at a constant rate
        start_rate=rate,
        duration=duration,
        max_in_flight=256,
        drain=30.0,
        watch=True,  # wait for every output: end-to-end latencies
    )
    async with AsyncInvoker(
        os.environ["ENDPOINT"],
        # Measure the endpoint, not the client's politeness: a fixed in-flight limit, no retries.
        limits=Limits(max_concurrent_invocations=plan.max_in_flight, adaptive=False),
        retry=RetryPolicy(max_attempts=1),
        watcher=SqsNotifications(queue_url=queue_url) if queue_url else S3Polling(interval=0.5),
    ) as invoker:

        async def submit() -> InferenceJob:
            return await invoker.submit(payload, content_type="application/json")

        result = await LoadRun(plan, submit).run()
    return report_of(result, plan, settings={"endpoint": os.environ["ENDPOINT"]})


def check(report: dict[str, Any], thresholds: list[str]) -> list[dict[str, Any]]:
    """Each threshold's verdict: ``{"threshold", "value", "limit", "ok"}``."""
    return [parse_threshold(text).check(report) for text in thresholds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--threshold", action="append", help="repeatable; e.g. 'e2e.p99<5s'")
    args = parser.parse_args(argv)
    payload = json.dumps({"inputs": "x" * 1000}).encode()
    report = asyncio.run(load_test(args.rate, args.duration, payload))
    verdicts = check(report, args.threshold or DEFAULT_THRESHOLDS)
    for verdict in verdicts:
        print(("PASS" if verdict["ok"] else "FAIL"), verdict["threshold"], verdict["value"])
    print(
        "achieved",
        report["achieved_rate"],
        "req/s; e2e p99",
        report["end_to_end_latency_ms"]["p99"],
        "ms",
    )
    return 0 if all(v["ok"] for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
