"""The README's service example (two endpoints, one queue, one watcher), run as a user would: copied
from README.md, pointed at the local stack, in a process of its own whose global OpenTelemetry
providers (set once per process) export to memory.

Only the names a user replaces are substituted (the two endpoints, the queue URL); the test fails
if the README stops containing them, so the example and this test cannot drift apart.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from aiosagemaker.local import EndpointInfo, LocalStack

README = Path(__file__).parents[3] / "README.md"
SECTION = "## In a service: metrics, traces, logs, one watcher for many endpoints"

# Global providers exporting to memory, set before the example runs; a summary printed after it.
PRELUDE = """
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_spans = InMemorySpanExporter()
_tracers = TracerProvider()
_tracers.add_span_processor(SimpleSpanProcessor(_spans))
trace.set_tracer_provider(_tracers)
_reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[_reader]))
"""
SUMMARY = """
import json as _json

_points = {}
for _resource in _reader.get_metrics_data().resource_metrics:
    for _scope in _resource.scope_metrics:
        for _metric in _scope.metrics:
            for _point in _metric.data.data_points:
                _key = _metric.name + " " + ",".join(sorted(map(str, _point.attributes.values())))
                _points[_key] = getattr(_point, "value", getattr(_point, "count", None))
_summary = {
    "spans": [
        {"name": s.name, "parent": s.parent.span_id if s.parent else None,
         "id": s.context.span_id, "links": [link.context.span_id for link in s.links]}
        for s in _spans.get_finished_spans()
    ],
    "metrics": _points,
}
print("SUMMARY " + _json.dumps(_summary))
"""


def _example() -> str:
    text = README.read_text()
    section = text[text.index(SECTION) :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


async def test_readme_service_example(
    local_stack: LocalStack, two_endpoints_one_queue: tuple[EndpointInfo, EndpointInfo]
) -> None:
    first, second = two_endpoints_one_queue
    code = _example()
    for placeholder, value in (
        ('"summarize-endpoint"', repr(first.name)),
        ('"embed-endpoint"', repr(second.name)),
        ('"https://sqs.../my-service-notifications"', repr(first.queue_url)),
    ):
        assert placeholder in code, f"the README's example no longer has {placeholder}"
        code = code.replace(placeholder, value)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(local_stack.env())
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + code + SUMMARY],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed, _, summary_line = done.stdout.rpartition("SUMMARY ")
    assert re.fullmatch(r"\d+ bytes of output\n", printed), printed
    summary = json.loads(summary_line)
    spans = summary["spans"]
    (handler,) = [s for s in spans if s["name"] == "handle-request"]
    attempts = [s for s in spans if s["name"] == "SageMaker Runtime.InvokeEndpointAsync"]
    assert len(attempts) == 2
    assert all(s["parent"] == handler["id"] for s in attempts)  # the submitter's span
    results = [s for s in spans if s["name"] == "aiosagemaker.result"]
    assert len(results) == 2
    assert all(s["parent"] is None and handler["id"] in s["links"] for s in results)
    metrics = summary["metrics"]
    for endpoint in (first, second):
        assert metrics[f"aiosagemaker.invoker.accepted {endpoint.name}"] == 1
        completed = ",".join(sorted(["completed", endpoint.name]))
        assert metrics[f"aiosagemaker.invoker.results {completed}"] == 1
