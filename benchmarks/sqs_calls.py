"""SQS calls per result of ``SqsNotifications`` with results arriving at a steady rate.

Starts the local stack (the endpoint server and moto's S3/SNS/SQS, in child processes), creates an
endpoint with notifications, and submits ``--jobs`` requests at a steady ``--rate`` per second
through the public API (``AsyncInvoker(endpoint, watcher=SqsNotifications(queue_url=...))``, the
watcher's defaults), so that results reach the queue at about that rate rather than all at once.
Repeats the whole run ``--runs`` times (a fresh endpoint and queue each), and reports per run:

- ReceiveMessage and DeleteMessageBatch calls and SQS calls per result (``watcher.statistics()``;
  the clients retry nothing by themselves, so these are the calls that reached SQS);
- notifications per receive and per delete call (results plus duplicates, over the calls);
- ``calls_per_result`` as ``statistics()`` reports it (every AWS call, the GET of each output too);
- the lag of each result: the time the watcher settled it minus the time the model produced it (the
  model stamps its output), p50 / p99 / max.

    python benchmarks/sqs_calls.py --rate 150 --jobs 2000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from _common import machine, percentile, stack_with_model, write_json

MODEL = "sqs_calls:stamp"  # this module, imported by the local endpoint's child process


async def stamp(body: bytes, content_type: str | None) -> bytes:
    """The benchmark's model: the input, then ``|`` and the time the output was produced."""
    return body + b"|" + repr(time.time()).encode()


async def run_once(stack: Any, args: argparse.Namespace) -> dict[str, Any]:
    from aiosagemaker import AsyncInvoker, Limits, SqsNotifications

    endpoint = await stack.create_endpoint(model=MODEL, notifications=True)
    # The watcher's defaults: a user tunes nothing. (--no-fetch leaves the outputs unread, so
    # that moto, which the whole stack shares, has one GET a result less to serve.)
    watcher = SqsNotifications(queue_url=endpoint.queue_url, fetch=not args.no_fetch)
    limits = Limits(max_concurrent_invocations=64, max_pending=args.jobs)
    jobs = []
    started = time.monotonic()
    try:
        async with AsyncInvoker(endpoint.name, limits=limits, watcher=watcher) as invoker:
            for i in range(args.jobs):
                # A steady rate: the i-th request is due at i / rate, however long submits take.
                delay = started + i / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                jobs.append(await invoker.submit(b'{"n": %d}' % i))
            submitted = time.monotonic() - started
            results = await asyncio.gather(*(job.result(timeout=600) for job in jobs))
    finally:
        await stack.delete_endpoint(endpoint.name)
    elapsed = time.monotonic() - started
    lags = []
    produced_at = []
    for result in results:
        timings = result.timings
        assert timings.completed is not None
        if result.body is not None:
            produced = float(result.body.rsplit(b"|", 1)[1])
        elif timings.service_completed is not None:
            # Not fetched: the notification's eventTime (the stack's clock, the same machine).
            produced = timings.service_completed
        else:
            continue  # settled by reconciliation (no notification): no time to start from
        produced_at.append(produced)
        lags.append(max(0.0, timings.completed - produced))
    lags.sort()
    produced_at.sort()
    span = produced_at[-1] - produced_at[0]
    stats = watcher.statistics()
    settled = stats.resolved + stats.failed
    notifications = settled + stats.duplicates
    sqs_calls = stats.sqs_receive_calls + stats.sqs_delete_calls
    return {
        "jobs": args.jobs,
        "rate": args.rate,
        "submit_rate": round(args.jobs / submitted, 1),
        "seconds": round(elapsed, 2),
        # how fast results were produced (so reached the queue), from the model's stamps
        "result_rate": round((len(produced_at) - 1) / span, 1) if span > 0 else None,
        "resolved": settled,
        "duplicates": stats.duplicates,
        "receive_calls": stats.sqs_receive_calls,
        "delete_calls": stats.sqs_delete_calls,
        "sqs_calls_per_result": round(sqs_calls / settled, 4),
        "calls_per_result": round(stats.calls_per_result, 4),
        "messages_per_receive": round(notifications / max(1, stats.sqs_receive_calls), 2),
        "messages_per_delete": round(notifications / max(1, stats.sqs_delete_calls), 2),
        "transient_errors": stats.transient_errors,
        "reconciled": watcher.reconciled,
        "lag_p50": round(percentile(lags, 50), 3),
        "lag_p99": round(percentile(lags, 99), 3),
        "lag_max": round(lags[-1], 3),
        "lag_mean": round(statistics.fmean(lags), 3),
    }


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    async with stack_with_model(
        MODEL, instances=args.instances, max_concurrency=args.max_concurrency
    ) as stack:
        for _ in range(args.runs):
            row = await run_once(stack, args)
            rows.append(row)
            print(_line(row), file=sys.stderr, flush=True)
    return rows


def _line(r: dict[str, Any]) -> str:
    return (
        f"jobs {r['jobs']} at {r['submit_rate']}/s (results {r['result_rate']}/s, "
        f"{r['seconds']}s): receives {r['receive_calls']}, deletes "
        f"{r['delete_calls']}, SQS calls/result {r['sqs_calls_per_result']:.3f} (all AWS "
        f"{r['calls_per_result']:.3f}), messages/receive {r['messages_per_receive']}, "
        f"messages/delete {r['messages_per_delete']}, lag p50 {r['lag_p50']:.3f}s p99 "
        f"{r['lag_p99']:.3f}s max {r['lag_max']:.3f}s, transient errors {r['transient_errors']}, "
        f"reconciled {r['reconciled']}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=150.0, help="requests submitted per second")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--max-concurrency", type=int, default=8)
    parser.add_argument("--no-fetch", action="store_true", help="SqsNotifications(fetch=False)")
    parser.add_argument("--out", help="write the rows and the machine as JSON here")
    arguments = parser.parse_args()
    result_rows = asyncio.run(main(arguments))
    for row in result_rows:
        print(_line(row))
    write_json(arguments.out, {"machine": machine(), "results": result_rows})
