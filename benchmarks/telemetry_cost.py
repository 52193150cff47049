"""Client CPU of ``submit()`` with OpenTelemetry instrumentation off and on, in the same run.

The stub runtime endpoint of ``submit_cpu.py`` (a child process, on the other core when there is
one) answers every ``InvokeEndpointAsync`` at once with a 202, so the client's own CPU is what is
measured; the client is pinned to one core. Modes, interleaved over ``--rounds`` so that a noisy
machine hits them alike, each the README's loop (``jobs = [await invoker.submit(p) ...]``, then
``await job.accepted()`` for each, submit-only):

- ``off``: no provider given and none set globally (the ``opentelemetry`` package is installed:
  this is the "no provider configured" case; without the package the invoker never imports it);
- ``metrics``: an SDK ``MeterProvider`` with an in-memory reader (collected once per round, after
  it: the counters are observable and cost nothing per request; the submit-latency and
  end-to-end histograms are recorded per job);
- ``traces``: an SDK ``TracerProvider`` with a ``BatchSpanProcessor`` and an exporter that drops
  what it is given (a CLIENT span per attempt, the caller's context carried by each job);
- ``both``: metrics and traces.

Reported: CPU microseconds per request (``time.process_time`` of this process) and the CPU a
request costs against ``off``, per round and as the median.

    python benchmarks/telemetry_cost.py --requests 20000 --rounds 5 --out benchmarks/results/telemetry_cost.json
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from _common import add_loop_option, loop_factory, loop_name, machine, write_json
from _stub import interleaved_rounds, ratios_to, start_stub, submit_loop
from aiosagemaker import AsyncInvoker, Limits


class _Drop(SpanExporter):
    """Takes every batch and keeps nothing: the cost of making spans, not of shipping them."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def main(args: argparse.Namespace) -> dict[str, Any]:
    payload = b'{"inputs": "' + b"x" * (args.payload_bytes - 14) + b'"}'
    limits = Limits(max_concurrent_invocations=args.concurrency, max_pending=10 * args.requests)
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    tracers = TracerProvider()
    tracers.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=4 * args.requests))
    providers: dict[str, dict[str, Any]] = {
        "off": {},
        "metrics": {"meter_provider": meters},
        "traces": {"tracer_provider": tracers},
        "both": {"meter_provider": meters, "tracer_provider": tracers},
    }
    invokers = {
        mode: AsyncInvoker("stub", limits=limits, watcher=None, **kwargs)
        for mode, kwargs in providers.items()
    }
    for invoker in invokers.values():
        await invoker.open()
    try:
        assert invokers["off"]._telemetry is None  # nothing configured: off

        ways = {mode: submit_loop(invoker, payload) for mode, invoker in invokers.items()}
        measured = await interleaved_rounds(
            ways,
            requests=args.requests,
            rounds=args.rounds,
            between=reader.get_metrics_data,  # a collection, between the measured runs
        )
        accepted = reader.get_metrics_data()
        assert accepted is not None
    finally:
        for invoker in invokers.values():
            await invoker.aclose()
        tracers.shutdown()
        meters.shutdown()
    results = ratios_to(measured, "off", digits=3)
    return {
        "benchmark": "telemetry_cost",
        "machine": machine(),
        "settings": vars(args),
        "loop": loop_name(loop_factory(args.loop)),
        "results": results,
    }


def table(results: dict[str, Any]) -> str:
    # Requests per CPU second against off's, as the CPU each request costs against off's.
    lines = [f"{'mode':<8} {'µs/req':>8} {'CPU vs off':>10}  per round"]
    for mode, r in results.items():
        lines.append(
            f"{mode:<8} {r['cpu_us_per_request_median']:>8.1f} {1 / r['vs_off_median']:>9.3f}x  "
            f"{[round(1 / x, 3) for x in r['vs_off_per_round']]}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="per mode and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--payload-bytes", type=int, default=1000)
    add_loop_option(parser)
    parser.add_argument("--out")
    args = parser.parse_args()
    stub = start_stub(services=("SAGEMAKER_RUNTIME",))
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        report = runner.run(main(args))
    stub.terminate()
    print(table(report["results"]))
    write_json(args.out, report)
