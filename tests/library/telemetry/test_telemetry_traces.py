"""Spans from OpenTelemetry's in-memory exporter after runs against the local stack: a CLIENT span
per invoke attempt under the caller's span at ``submit()``, and a short span per collected result
linked back to it."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from otel_helpers import Otel

from aiosagemaker import AsyncInvoker, InferenceFailedError, RetryPolicy, S3Polling
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

FAST = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.01)
INVOKE = "SageMaker Runtime.InvokeEndpointAsync"


async def test_attempt_spans_are_children_of_the_submitters_span(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo, otel: Otel
) -> None:
    await stack_env.set_faults({"throttle": {"next": 1}}, endpoint=quiet_endpoint.name)
    tracer = otel.tracer_provider.get_tracer("a-service")
    # Opened inside a span: the senders run in the invoker's own tasks, and a job submitted
    # outside any span must not inherit the context open() was called in.
    with tracer.start_as_current_span("startup"):
        invoker = AsyncInvoker(
            quiet_endpoint.name,
            retry=FAST,
            watcher=S3Polling(interval=0.02),
            tracer_provider=otel.tracer_provider,
        )
        await invoker.open()
    try:
        with tracer.start_as_current_span("handle-request") as handler:
            traced = [await invoker.submit({"secret-payload": n}) for n in range(2)]
        untraced = await invoker.submit({"secret-payload": 2})
        await asyncio.gather(*(job.result() for job in [*traced, untraced]))
    finally:
        await invoker.aclose()

    attempts = otel.finished(INVOKE)
    by_id: dict[str, list] = {}
    for span in attempts:
        by_id.setdefault(span.attributes["aiosagemaker.inference_id"], []).append(span)
    assert sorted(len(spans) for spans in by_id.values()) == [1, 1, 2]  # one throttled retry
    parent = handler.get_span_context()
    for job in traced:
        for span in by_id[job.inference_id]:
            assert span.parent is not None and span.parent.span_id == parent.span_id
            assert span.context.trace_id == parent.trace_id
    for span in by_id[untraced.inference_id]:
        assert span.parent is None  # its own trace: not startup's, not the handler's
    for span in attempts:
        assert span.kind is SpanKind.CLIENT
        attributes = dict(span.attributes)
        assert attributes["rpc.system"] == "aws-api"
        assert attributes["rpc.service"] == "SageMaker Runtime"
        assert attributes["rpc.method"] == "InvokeEndpointAsync"
        assert attributes["aiosagemaker.endpoint"] == quiet_endpoint.name
        assert attributes["aws.request_id"]
        assert "secret-payload" not in repr(attributes)
    throttled = [s for s in attempts if s.status.status_code is StatusCode.ERROR]
    assert len(throttled) == 1
    assert throttled[0].attributes["error.type"] == "ThrottlingException"
    assert throttled[0].attributes["http.response.status_code"] == 429
    assert throttled[0].attributes["aiosagemaker.attempt"] == 1

    # One short span per collected result: a root, linked to the submitter's span and to the
    # accepted attempt.
    results = {
        s.attributes["aiosagemaker.inference_id"]: s for s in otel.finished("aiosagemaker.result")
    }
    assert set(results) == {job.inference_id for job in [*traced, untraced]}
    for job in [*traced, untraced]:
        span = results[job.inference_id]
        assert span.parent is None
        assert span.attributes["aiosagemaker.outcome"] == "completed"
        accepted = next(
            s for s in by_id[job.inference_id] if s.status.status_code is not StatusCode.ERROR
        )
        linked = {link.context.span_id for link in span.links}
        expected = {accepted.context.span_id}
        if job in traced:
            expected.add(parent.span_id)
        assert linked == expected
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time
        # Short: from the outcome known to the output read, not the job's life.
        assert span.start_time >= accepted.end_time


async def test_failed_attempts_and_results_are_error_spans(
    stack_env: LocalStack, otel: Otel
) -> None:
    failing = await stack_env.create_endpoint(model="failing", notifications=False)
    try:
        async with AsyncInvoker(
            failing.name,
            watcher=S3Polling(interval=0.02),
            tracer_provider=otel.tracer_provider,
        ) as invoker:
            job = await invoker.submit(b"{}")
            with pytest.raises(InferenceFailedError):
                await job.result()
    finally:
        await stack_env.delete_endpoint(failing.name)
    (result,) = otel.finished("aiosagemaker.result")
    assert result.status.status_code is StatusCode.ERROR
    assert result.attributes["aiosagemaker.outcome"] == "failed"
    assert result.attributes["error.type"] == "InferenceFailedError"
