"""OpenTelemetry's SDK with in-memory exporters, read by the telemetry tests (a module of its own:
conftest modules are not importable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@dataclass
class Otel:
    tracer_provider: TracerProvider
    spans: InMemorySpanExporter
    meter_provider: MeterProvider
    reader: InMemoryMetricReader

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def points(self, name: str) -> list[Any]:
        """Every data point of the metric ``name`` now (collected on the spot)."""
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        if data is None:
            return out
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out

    def value(self, name: str, **attributes: str) -> int | float | None:
        """The value of the one point of ``name`` whose attributes include ``attributes``."""
        found = [
            p.value
            for p in self.points(name)
            if all(p.attributes.get(k) == v for k, v in attributes.items())
        ]
        assert len(found) <= 1, (name, attributes, found)
        return found[0] if found else None


def open_otel() -> Otel:
    """Providers of their own (never the global ones: a process sets those once)."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    return Otel(tracer_provider, spans, meter_provider, reader)
