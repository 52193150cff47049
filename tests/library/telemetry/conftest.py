"""The telemetry tests' fixture: OpenTelemetry providers with in-memory exporters.

Providers are handed to each invoker (``tracer_provider=``, ``meter_provider=``), never set
globally: OpenTelemetry lets a process set its global providers once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from otel_helpers import Otel, open_otel


@pytest.fixture
def otel() -> Iterator[Otel]:
    otel = open_otel()
    yield otel
    otel.tracer_provider.shutdown()
    otel.meter_provider.shutdown()
