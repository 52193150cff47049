"""Instrumentation off: without the package, or with no provider configured, nothing is made per
request (no trace carried by jobs, no span, no instrument)."""

from __future__ import annotations

import sys

import pytest
from opentelemetry import metrics, trace

from aiosagemaker import AsyncInvoker
from aiosagemaker._telemetry import open_telemetry
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")


async def test_no_provider_configured_costs_nothing_per_request(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo
) -> None:
    # No provider given, and none set globally (the API's proxies answer): off.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
    async with AsyncInvoker(quiet_endpoint.name, watcher=None) as invoker:
        job = await invoker.invoke(b"{}")
        assert invoker._telemetry is None
        assert invoker._transport is not None and invoker._transport.tracing is None
        assert job._trace is None
    assert invoker.statistics().accepted == 1


def test_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if the `otel` extra were not installed: every `import opentelemetry...` fails.
    for name in [m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    assert open_telemetry("an-endpoint") is None
    with pytest.raises(ImportError, match=r"aiosagemaker\[otel\]"):
        open_telemetry("an-endpoint", tracer_provider=object())  # type: ignore[arg-type]


def test_the_api_no_op_providers_are_off() -> None:
    assert (
        open_telemetry(
            "an-endpoint",
            tracer_provider=trace.NoOpTracerProvider(),
            meter_provider=metrics.NoOpMeterProvider(),
        )
        is None
    )
