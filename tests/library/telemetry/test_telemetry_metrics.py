"""Metrics from OpenTelemetry's in-memory reader after runs against the local stack: they agree
with the invokers' own ``statistics()``, and carry only low-cardinality attributes."""

from __future__ import annotations

import asyncio

import pytest
from otel_helpers import Otel

from aiosagemaker import AsyncInvoker, InferenceFailedError, Limits, RetryPolicy, S3Polling
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

FAST = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.01)
ENDPOINT = "aiosagemaker.endpoint"
ATTRIBUTES = {ENDPOINT, "aiosagemaker.outcome", "error.type"}


async def _refuse() -> None:
    raise RuntimeError("journal unavailable")


async def test_counters_histograms_and_gauges_match_statistics(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo, otel: Otel
) -> None:
    failing = await stack_env.create_endpoint(model="failing", notifications=False)
    # One ambiguous failure (accepted, then the connection dropped) and two throttles.
    await stack_env.set_faults(
        {"accept_then_reset": {"next": 1}, "throttle": {"next": 2}}, endpoint=quiet_endpoint.name
    )
    providers = {"meter_provider": otel.meter_provider, "tracer_provider": otel.tracer_provider}
    limits = Limits(max_concurrent_invocations=4)
    try:
        async with (
            AsyncInvoker(
                quiet_endpoint.name,
                limits=limits,
                retry=FAST,
                watcher=S3Polling(interval=0.02),
                **providers,
            ) as echo,
            AsyncInvoker(
                failing.name, retry=FAST, watcher=S3Polling(interval=0.02), **providers
            ) as fails,
        ):
            jobs = [await echo.submit({"n": n}) for n in range(8)]
            refused = await echo.submit({"n": "refused"}, before_send=_refuse)
            failed = [await fails.submit({"n": n}) for n in range(2)]
            results = await asyncio.gather(*(job.result() for job in jobs))
            assert [r.body for r in results] == [f'{{"n":{n}}}'.encode() for n in range(8)]
            with pytest.raises(Exception, match="journal unavailable"):
                await refused.result()
            for job in failed:
                with pytest.raises(InferenceFailedError):
                    await job.result()
            await echo.drain()
            await fails.drain()
            # Open: the gauges report each invoker, as its statistics do.
            for invoker in (echo, fails):
                stats = invoker.statistics()
                name = invoker.endpoint_name
                for gauge, value in (
                    ("in_flight", stats.in_flight),
                    ("pending", stats.pending),
                    ("concurrency_limit", stats.concurrency_limit),
                ):
                    assert otel.value(f"aiosagemaker.invoker.{gauge}", **{ENDPOINT: name}) == value
            assert (
                otel.value("aiosagemaker.invoker.concurrency_limit", **{ENDPOINT: failing.name})
                == 256
            )
    finally:
        await stack_env.delete_endpoint(failing.name)

    s = echo.statistics()
    assert (s.retried, s.throttled, s.ambiguous_retries) == (3, 2, 1)
    assert (s.submitted, s.accepted, s.resolved, s.failed, s.rejected) == (9, 8, 8, 0, 1)
    name = {ENDPOINT: quiet_endpoint.name}
    # Closed: the counters keep the invokers' last counts, equal to their statistics.
    for metric, value in (
        ("submitted", s.submitted),
        ("accepted", s.accepted),
        ("retries", s.retried),
        ("throttles", s.throttled),
        ("ambiguous_retries", s.ambiguous_retries),
    ):
        assert otel.value(f"aiosagemaker.invoker.{metric}", **name) == value, metric
    results = "aiosagemaker.invoker.results"
    outcome = "aiosagemaker.outcome"
    assert otel.value(results, **name, **{outcome: "completed"}) == s.resolved
    assert (
        otel.value(results, **name, **{outcome: "rejected", "error.type": "AsyncInferenceError"})
        == s.rejected
    )
    f = fails.statistics()
    assert (f.submitted, f.accepted, f.failed) == (2, 2, 2)
    failures = {ENDPOINT: failing.name, outcome: "failed", "error.type": "InferenceFailedError"}
    assert otel.value(results, **failures) == f.failed
    assert otel.value("aiosagemaker.invoker.submitted", **{ENDPOINT: failing.name}) == 2

    # Histograms: one submit latency per 202, one end-to-end latency per outcome after it.
    submit = [
        p for p in otel.points("aiosagemaker.invoker.submit.duration") if p.attributes == name
    ]
    assert [p.count for p in submit] == [s.accepted]
    end_to_end = {
        (p.attributes[ENDPOINT], p.attributes[outcome]): p.count
        for p in otel.points("aiosagemaker.invoker.result.duration")
    }
    assert end_to_end == {
        (quiet_endpoint.name, "completed"): s.resolved,
        (failing.name, "failed"): f.failed,
    }
    assert all(p.min >= 0 and p.max < 60 for p in submit)
    # Gauges report open invokers only.
    assert otel.points("aiosagemaker.invoker.pending") == []

    # Attributes: endpoint, outcome and error type only; never an inference id.
    ids = {job.inference_id for job in [*jobs, refused, *failed]}
    data = otel.reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "aiosagemaker"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    assert set(point.attributes) <= ATTRIBUTES, metric.name
                    assert not ids & {str(v) for v in point.attributes.values()}


async def test_a_second_invoker_of_an_endpoint_adds_to_its_counts(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo, otel: Otel
) -> None:
    # The instruments are the meter provider's: a second invoker reports through the same ones,
    # and its counts add to those of the first (closed) one instead of replacing them.
    for _ in range(2):
        async with AsyncInvoker(
            quiet_endpoint.name, watcher=None, meter_provider=otel.meter_provider
        ) as invoker:
            for n in range(3):
                await invoker.invoke({"n": n})
    assert otel.value("aiosagemaker.invoker.accepted", **{ENDPOINT: quiet_endpoint.name}) == 6
    # Submit-only: a 202 is the outcome.
    assert (
        otel.value(
            "aiosagemaker.invoker.results",
            **{ENDPOINT: quiet_endpoint.name, "aiosagemaker.outcome": "completed"},
        )
        == 6
    )
