"""The load-benchmark harness behind ``aiosagemaker bench``: open-loop schedules, latency from each
request's due time (no coordinated omission), HDR histograms, k6-style thresholds.

The application layer: it uses only the client library's public API (``aiosagemaker``).
"""

from __future__ import annotations

from ._histogram import Latency as Latency
from ._plot import PlotUnavailableError as PlotUnavailableError
from ._plot import plot_run as plot_run
from ._runner import LATE_AFTER as LATE_AFTER
from ._runner import LoadPlan as LoadPlan
from ._runner import LoadRun as LoadRun
from ._runner import RunResult as RunResult
from ._runner import report_of as report_of
from ._runner import result_from_report as result_from_report
from ._schedule import Stage as Stage
from ._schedule import arrival_times as arrival_times
from ._schedule import parse_duration as parse_duration
from ._schedule import parse_stages as parse_stages
from ._thresholds import Threshold as Threshold
from ._thresholds import parse_threshold as parse_threshold

__all__ = [
    "LATE_AFTER",
    "Latency",
    "LoadPlan",
    "LoadRun",
    "PlotUnavailableError",
    "RunResult",
    "Stage",
    "Threshold",
    "arrival_times",
    "parse_duration",
    "parse_stages",
    "parse_threshold",
    "plot_run",
    "report_of",
    "result_from_report",
]
