"""Pass/fail criteria of a run, k6-style: ``--threshold 'submit.p99<50ms'`` sets the exit status.

A threshold is ``METRIC OP VALUE``:

- ``submit.STAT``, ``e2e.STAT``, ``service.STAT``, ``lag.STAT``, ``fetch.STAT``: a latency (the
  service time, notification lag and output fetch need a watcher), STAT one of
  ``p50 p90 p99 p999 max mean``, VALUE a duration (``50ms``, ``2s``, ``800us``; a bare number is
  milliseconds);
- ``errors``, ``dropped``, ``unfinished``, ``late``: a count, or a share of the requests due with
  ``%`` (``errors<0.1%``);
- ``achieved_rate``: requests per second, VALUE a number or ``F*target`` (``>=0.98*target``).

OP is one of ``< <= > >=``. A latency that was not measured (``e2e`` without a watcher) fails its
threshold: a gate that cannot be checked does not pass.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Threshold", "parse_threshold"]

_FORM = re.compile(r"^\s*([a-z_][a-z0-9_]*)(?:\.([a-z0-9]+))?\s*(<=|>=|<|>)\s*(.+?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_STATS = ("p50", "p90", "p99", "p999", "max", "mean")
_COUNTS = ("errors", "dropped", "unfinished", "late")
_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "": 1.0}
_REPORT_KEYS = {
    "submit": "submit_latency_ms",
    "e2e": "end_to_end_latency_ms",
    "service": "service_time_ms",
    "lag": "notification_lag_ms",
    "fetch": "output_fetch_ms",
}


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed threshold; :meth:`check` it against a report."""

    text: str
    metric: str
    stat: str | None
    op: str
    value: float
    #: the value is a share of the requests due (``%``), or a multiple of the target rate
    relative: str | None = None

    def check(self, report: dict[str, Any]) -> dict[str, Any]:
        """``{"threshold", "value", "limit", "ok"}`` for this run."""
        actual = self._actual(report)
        limit = self._limit(report)
        ok = actual is not None and limit is not None and _OPS[self.op](actual, limit)
        return {"threshold": self.text, "value": actual, "limit": limit, "ok": ok}

    def _actual(self, report: dict[str, Any]) -> float | None:
        if self.metric in _REPORT_KEYS:
            latencies = report.get(_REPORT_KEYS[self.metric])
            value = latencies.get(self.stat) if isinstance(latencies, dict) else None
            return None if value is None else float(value)
        if self.metric == "achieved_rate":
            return float(report["achieved_rate"])
        if self.metric == "errors":
            return float(sum(report["errors"].values()))
        return float(report[self.metric])

    def _limit(self, report: dict[str, Any]) -> float | None:
        if self.relative == "%":
            return self.value / 100 * float(report["due"])
        if self.relative == "target":
            target = report.get("target_rate")
            return None if target is None else self.value * float(target)
        return self.value


def parse_threshold(text: str) -> Threshold:
    """:raises ValueError: not a threshold this module knows (the message says which forms are)."""
    match = _FORM.match(text)
    if not match:
        raise ValueError(f"not a threshold: {text!r} (e.g. 'submit.p99<50ms', 'errors<0.1%')")
    metric, stat, op, raw = match.groups()
    if metric in _REPORT_KEYS:
        if stat not in _STATS:
            raise ValueError(f"{text!r}: {metric} takes one of {', '.join(_STATS)}")
        unit_match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(us|ms|s|m)?", raw)
        if not unit_match:
            raise ValueError(f"{text!r}: {raw!r} is not a duration (e.g. 50ms, 2s)")
        value = float(unit_match.group(1)) * _TIME_UNITS[unit_match.group(2) or ""]
        return Threshold(text.strip(), metric, stat, op, value)
    if stat is not None:
        raise ValueError(f"{text!r}: {metric} has no .{stat}")
    if metric in _COUNTS:
        if raw.endswith("%"):
            return Threshold(text.strip(), metric, None, op, _number(raw[:-1], text), "%")
        return Threshold(text.strip(), metric, None, op, _number(raw, text))
    if metric == "achieved_rate":
        factor, star, name = raw.partition("*")
        if star:
            if name.strip() != "target":
                raise ValueError(f"{text!r}: write F*target (e.g. 0.98*target)")
            return Threshold(text.strip(), metric, None, op, _number(factor, text), "target")
        return Threshold(text.strip(), metric, None, op, _number(raw, text))
    known = ", ".join([*(f"{m}.STAT" for m in _REPORT_KEYS), *_COUNTS, "achieved_rate"])
    raise ValueError(f"{text!r}: unknown metric {metric!r} (one of {known})")


def _number(raw: str, text: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{text!r}: {raw!r} is not a number") from None
