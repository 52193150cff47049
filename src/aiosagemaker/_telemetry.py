"""OpenTelemetry metrics and traces of the invokers: optional, imported lazily, free when off.

Nothing here imports ``opentelemetry`` at import time. An invoker asks :func:`open_telemetry`
when it opens; without the package (the ``otel`` extra), or with no tracer or meter provider
configured (given, or set globally before the invoker opens), it gets ``None`` and its hot path
pays one ``is None`` test per step.

**Metrics** read what the invoker counts already: the counters are *observable* (asynchronous),
their callbacks read each open invoker's :meth:`AsyncInvoker.statistics` when a reader collects,
so they cost nothing per request and always equal the statistics (a closed invoker's last counts
stay in the totals). Only the latency histograms are recorded as requests go: one record per 202,
one per outcome of a tracked job (submit-only, the 202 is the outcome). Names and units follow
OpenTelemetry's conventions (UCUM units, durations in seconds, ``error.type``); there is no
convention for these quantities, so they live under ``aiosagemaker.``. Attributes are the
endpoint's name, the outcome and the error code: never a payload, an inference id (unbounded
cardinality) or a credential.

**Traces** follow the conventions for AWS SDK calls: one CLIENT span per HTTP attempt of
``InvokeEndpointAsync`` (``SageMaker Runtime.InvokeEndpointAsync``, ``rpc.system`` = ``aws-api``,
``rpc.service``, ``rpc.method``, ``aws.request_id``), whose parent is the caller's context at
``submit()`` (senders run in the invoker's own tasks, so the job carries it), and one short span
when the result is collected, linked to that context and to the accepted attempt. A job can wait
for hours: no span stays open for its life.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ._version import __version__

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, Histogram, MeterProvider, Observation
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

__all__ = [
    "ENDPOINT",
    "ERROR_TYPE",
    "INVOKE_SPAN",
    "OUTCOME",
    "RESULT_SPAN",
    "JobTrace",
    "Readings",
    "Telemetry",
    "Tracing",
    "open_telemetry",
]

#: The instrumentation scope's name (the tracer's and the meter's).
SCOPE: Final = "aiosagemaker"

# https://opentelemetry.io/docs/specs/semconv/cloud-providers/aws-sdk/ : the span name is
# ``Service.Operation``; rpc.service is the SDK's service id (botocore's ``service_id``, which
# the botocore instrumentation reports too).
RPC_SYSTEM: Final = "aws-api"
RPC_SERVICE: Final = "SageMaker Runtime"
RPC_METHOD: Final = "InvokeEndpointAsync"
INVOKE_SPAN: Final = f"{RPC_SERVICE}.{RPC_METHOD}"
#: the short span of a collected result (an outcome known, its output read)
RESULT_SPAN: Final = "aiosagemaker.result"

#: attribute: the endpoint's name (metrics and spans)
ENDPOINT: Final = "aiosagemaker.endpoint"
#: attribute: ``completed``, ``failed`` (the inference failed, or its result could not be had)
#: or ``rejected`` (the request was refused or never sent)
OUTCOME: Final = "aiosagemaker.outcome"
#: attribute: the error's AWS code (``ThrottlingException``, ``HTTP503``) or its class name
ERROR_TYPE: Final = "error.type"
#: span attribute only (never a metric's: one value per request)
INFERENCE_ID: Final = "aiosagemaker.inference_id"
#: span attribute: the HTTP attempt, 1 for the first
ATTEMPT: Final = "aiosagemaker.attempt"

# Durations in seconds (https://opentelemetry.io/docs/specs/semconv/general/metrics/): a 202
# takes milliseconds to seconds (retries and backoff included); a result minutes to hours (the
# endpoint's queue, then the inference: up to 6 h of TTL plus 1 h of invocation).
_SUBMIT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_RESULT_BUCKETS: Final = (
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 25200,
)  # fmt: skip

# The observable counters: name, unit, description, and what each reads of the readings.
_SUBMITTED: Final = "aiosagemaker.invoker.submitted"
_ACCEPTED: Final = "aiosagemaker.invoker.accepted"
_RETRIES: Final = "aiosagemaker.invoker.retries"
_THROTTLES: Final = "aiosagemaker.invoker.throttles"
_AMBIGUOUS: Final = "aiosagemaker.invoker.ambiguous_retries"
_RESULTS: Final = "aiosagemaker.invoker.results"
_REFUSED: Final = "aiosagemaker.watcher.refused_notifications"
_COUNTERS: Final = (
    (_SUBMITTED, "{request}", "Requests admitted by submit()."),
    (_ACCEPTED, "{request}", "Requests the endpoint accepted (HTTP 202)."),
    (_RETRIES, "{attempt}", "InvokeEndpointAsync attempts sent again after a failure."),
    (_THROTTLES, "{response}", "Throttled answers (HTTP 429, ThrottlingException)."),
    (_AMBIGUOUS, "{attempt}", "Retries after a failure that left it unknown whether the endpoint got the request (it may run twice)."),
    (_RESULTS, "{job}", "Jobs with an outcome, by outcome (completed, failed, rejected) and error.type."),
    (_REFUSED, "{notification}", "Notifications about a pending job refused by a trust rule."),
)  # fmt: skip
_GAUGES: Final = (
    ("aiosagemaker.invoker.in_flight", "{request}", "HTTP calls to InvokeEndpointAsync under way.", "in_flight"),
    ("aiosagemaker.invoker.pending", "{job}", "Jobs submitted and not yet resolved (max_pending admits them).", "pending"),
    ("aiosagemaker.invoker.concurrency_limit", "{request}", "The in-flight limit now in force (lowered under throttling by AIMD).", "concurrency_limit"),
)  # fmt: skip

_Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class Readings:
    """What one invoker has counted, as its metrics report it (read at collection time)."""

    endpoint: str
    submitted: int = 0
    accepted: int = 0
    retried: int = 0
    throttled: int = 0
    ambiguous_retries: int = 0
    resolved: int = 0
    #: failed and rejected jobs by error code: they add up to the statistics' ``failed`` and
    #: ``rejected``
    failed: Mapping[str, int] = field(default_factory=dict)
    rejected: Mapping[str, int] = field(default_factory=dict)
    #: notifications about this endpoint's jobs refused by its watcher
    refused_notifications: int = 0
    in_flight: int = 0
    pending: int = 0
    concurrency_limit: int = 0

    def counts(self) -> dict[_Key, int]:
        """The observable counters' values, by (instrument, attributes)."""
        base = ((ENDPOINT, self.endpoint),)
        counts = {
            (_SUBMITTED, base): self.submitted,
            (_ACCEPTED, base): self.accepted,
            (_RETRIES, base): self.retried,
            (_THROTTLES, base): self.throttled,
            (_AMBIGUOUS, base): self.ambiguous_retries,
            (_RESULTS, (*base, (OUTCOME, "completed"))): self.resolved,
            (_REFUSED, base): self.refused_notifications,
        }
        for outcome, by_code in (("failed", self.failed), ("rejected", self.rejected)):
            for code, count in by_code.items():
                counts[(_RESULTS, (*base, (OUTCOME, outcome), (ERROR_TYPE, code)))] = count
        return counts


#: how an open invoker is read: its :class:`Readings` now
Source = Callable[[], Readings]


def error_type(error: BaseException | None) -> str:
    """``error.type`` of an outcome's error: its AWS code, else its class name."""
    if error is None:
        return "_OTHER"
    code = getattr(error, "code", None)
    return code if isinstance(code, str) and code else type(error).__name__


class _Meters:
    """The instruments of one meter provider, registered once for every invoker that reports
    to it (a second registration of an observable instrument would drop its callback), and the
    invokers they read."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter(SCOPE, __version__)
        self.live: dict[int, Source] = {}
        # Closed invokers' last counts: the counters never go back.
        self.retired: dict[_Key, int] = {}
        for name, unit, description in _COUNTERS:
            meter.create_observable_counter(
                name, [self._counter(name)], unit=unit, description=description
            )
        for name, unit, description, reading in _GAUGES:
            meter.create_observable_gauge(
                name, [self._gauge(reading)], unit=unit, description=description
            )
        self.submit_duration: Histogram = meter.create_histogram(
            "aiosagemaker.invoker.submit.duration",
            unit="s",
            description="From submit() to the endpoint's 202 (admission, queueing, retries).",
            explicit_bucket_boundaries_advisory=_SUBMIT_BUCKETS,
        )
        self.result_duration: Histogram = meter.create_histogram(
            "aiosagemaker.invoker.result.duration",
            unit="s",
            description="From submit() to the job's outcome: end-to-end latency, by outcome.",
            explicit_bucket_boundaries_advisory=_RESULT_BUCKETS,
        )

    def retire(self, key: int) -> None:
        """An invoker closed: keep its counts, stop reading it."""
        source = self.live.pop(key, None)
        if source is None:
            return
        for item, count in source().counts().items():
            self.retired[item] = self.retired.get(item, 0) + count

    def _counter(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            from opentelemetry.metrics import Observation

            totals = {key: count for key, count in self.retired.items() if key[0] == name}
            for source in list(self.live.values()):
                for key, count in source().counts().items():
                    if key[0] == name:
                        totals[key] = totals.get(key, 0) + count
            return [Observation(count, dict(key[1])) for key, count in totals.items()]

        return observe

    def _gauge(self, reading: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            from opentelemetry.metrics import Observation

            # Several invokers of one endpoint in a process: their sum (what the endpoint sees).
            totals: dict[str, int] = {}
            for source in list(self.live.values()):
                readings = source()
                value: int = getattr(readings, reading)
                totals[readings.endpoint] = totals.get(readings.endpoint, 0) + value
            return [Observation(value, {ENDPOINT: name}) for name, value in totals.items()]

        return observe


# One _Meters per meter provider (the instruments are the provider's, not an invoker's).
_METERS: weakref.WeakKeyDictionary[MeterProvider, _Meters] = weakref.WeakKeyDictionary()


def _meters_for(provider: MeterProvider) -> _Meters:
    meters = _METERS.get(provider)
    if meters is None:
        meters = _METERS[provider] = _Meters(provider)
    return meters


@dataclass(slots=True)
class JobTrace:
    """What a job carries for its spans (only when tracing is on): the caller's context at
    ``submit()``, and the span context of the attempt the endpoint accepted."""

    parent: Context
    accepted: SpanContext | None = None


class Tracing:
    """The spans of one invoker's requests."""

    __slots__ = ("_attributes", "_tracer", "endpoint")

    def __init__(self, tracer: Tracer, endpoint: str) -> None:
        self._tracer = tracer
        self.endpoint = endpoint
        self._attributes: dict[str, str] = {
            "rpc.system": RPC_SYSTEM,
            "rpc.service": RPC_SERVICE,
            "rpc.method": RPC_METHOD,
            ENDPOINT: endpoint,
        }

    @staticmethod
    def capture() -> JobTrace:
        """The caller's context, for a job being submitted."""
        from opentelemetry import context

        return JobTrace(context.get_current())

    def start_attempt(self, trace: JobTrace, inference_id: str, attempt: int) -> Span:
        """A CLIENT span for one HTTP attempt, a child of the submitter's context."""
        from opentelemetry.trace import SpanKind

        return self._tracer.start_span(
            INVOKE_SPAN,
            context=trace.parent,
            kind=SpanKind.CLIENT,
            attributes={**self._attributes, INFERENCE_ID: inference_id, ATTEMPT: attempt},
        )

    @staticmethod
    def end_attempt(
        span: Span,
        trace: JobTrace,
        *,
        request_id: str | None,
        error: BaseException | None,
        status: int | None = None,
    ) -> None:
        """End an attempt's span: accepted (recorded on the job's trace for the result span's
        link), or failed with ``error``."""
        from opentelemetry.trace import Status, StatusCode

        if request_id:
            span.set_attribute("aws.request_id", request_id)
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if error is None:
            trace.accepted = span.get_span_context()
        else:
            span.set_attribute(ERROR_TYPE, error_type(error))
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()

    def result(
        self,
        trace: JobTrace,
        inference_id: str,
        *,
        started: float | None,
        error: BaseException | None,
    ) -> None:
        """The short span of a collected result: from when the outcome was known (``started``,
        wall-clock) to now (its output read), linked to the submitter's span and to the
        accepted attempt; a root span of its own trace (the job may be hours old)."""
        from opentelemetry import trace as api
        from opentelemetry.context import Context
        from opentelemetry.trace import Link, SpanKind, Status, StatusCode

        links = [
            Link(context)
            for context in (api.get_current_span(trace.parent).get_span_context(), trace.accepted)
            if context is not None and context.is_valid
        ]
        attributes: dict[str, str] = {
            ENDPOINT: self.endpoint,
            INFERENCE_ID: inference_id,
            OUTCOME: "completed" if error is None else "failed",
        }
        if error is not None:
            attributes[ERROR_TYPE] = error_type(error)
        now = time.time_ns()
        start = now if started is None else min(now, int(started * 1e9))
        span = self._tracer.start_span(
            RESULT_SPAN,
            context=Context(),  # a root: never the context of whatever resolved the future
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
            start_time=start,
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end(end_time=now)


@dataclass(slots=True)
class Telemetry:
    """One invoker's instrumentation: its tracing, its meters, its failures by code."""

    endpoint: str
    tracing: Tracing | None
    meters: _Meters | None
    #: failed and rejected jobs by error code (the statistics count them, not by code)
    failed: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    #: the histograms' attributes of a 202 and of a completed job: made once, not per record
    accepted_attributes: dict[str, str] = field(init=False)
    completed_attributes: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.accepted_attributes = {ENDPOINT: self.endpoint}
        self.completed_attributes = {ENDPOINT: self.endpoint, OUTCOME: "completed"}

    def outcome_attributes(self, error: BaseException | None) -> dict[str, str]:
        """The end-to-end histogram's attributes of a job that completed or failed."""
        if error is None:
            return self.completed_attributes
        return {ENDPOINT: self.endpoint, OUTCOME: "failed", ERROR_TYPE: error_type(error)}

    def count_failed(self, error: BaseException | None) -> None:
        code = error_type(error)
        self.failed[code] = self.failed.get(code, 0) + 1

    def count_rejected(self, error: BaseException | None) -> None:
        code = error_type(error)
        self.rejected[code] = self.rejected.get(code, 0) + 1

    def watch(self, key: int, source: Source) -> None:
        """Report ``source``'s readings (until :meth:`close`)."""
        if self.meters is not None:
            self.meters.live[key] = source

    def close(self, key: int) -> None:
        if self.meters is not None:
            self.meters.retire(key)


def open_telemetry(
    endpoint: str,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> Telemetry | None:
    """The instrumentation of an invoker opening now, or ``None`` (off: no package, or nothing
    configured).

    A provider given is used; else the global one, if an application has set it by now.

    :raises ImportError: a provider was given, but ``opentelemetry-api`` is not installed.
    """
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        if tracer_provider is not None or meter_provider is not None:
            raise ImportError(
                "tracer_provider and meter_provider need OpenTelemetry: "
                "pip install 'aiosagemaker[otel]'"
            ) from None
        return None
    tracing: Tracing | None = None
    tracers = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if not isinstance(tracers, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        tracing = Tracing(tracers.get_tracer(SCOPE, __version__), endpoint)
    meters: _Meters | None = None
    providers = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    if _is_configured(providers):
        meters = _meters_for(providers)
    if tracing is None and meters is None:
        return None
    return Telemetry(endpoint, tracing, meters)


def _is_configured(provider: Any) -> bool:
    """Whether a meter provider records anything: not the API's no-op, nor its proxy (what
    ``get_meter_provider()`` returns until an application sets one; its type is private)."""
    from opentelemetry.metrics import NoOpMeterProvider

    return not isinstance(provider, NoOpMeterProvider) and type(provider).__name__ != (
        "_ProxyMeterProvider"
    )
