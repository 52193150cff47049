"""Latency histograms: HDR histograms (``hdrhistogram``), recorded in microseconds, mergeable.

An HDR histogram keeps every sample to 3 significant digits in constant memory, so a run of
millions of requests reports exact-enough p99.9 and max, and the histograms of several processes
add up to the histogram of all their samples (:meth:`Latency.merge`, over :meth:`Latency.encode`).
"""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = ["Latency"]

# 1 µs to 24 h at 3 significant digits: any latency an async endpoint can have (its TTL is 6 h).
_LOWEST_US = 1
_HIGHEST_US = 24 * 3600 * 1_000_000
_DIGITS = 3
_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


class Latency:
    """One latency distribution."""

    def __init__(self) -> None:
        self._histogram = HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)

    @property
    def count(self) -> int:
        return int(self._histogram.get_total_count())

    def record(self, seconds: float) -> None:
        """Record one latency (clamped to the histogram's range)."""
        micros = min(max(int(seconds * 1_000_000), _LOWEST_US), _HIGHEST_US)
        self._histogram.record_value(micros)

    def percentile_ms(self, percentile: float) -> float | None:
        if not self.count:
            return None
        return float(self._histogram.get_value_at_percentile(percentile)) / 1000

    def merge(self, other: Latency) -> None:
        """Add ``other``'s samples (exact: HDR histograms merge bucket by bucket)."""
        self._histogram.add(other._histogram)

    def encode(self) -> bytes:
        """The histogram in HdrHistogram's own text form (compressed, base64), for another
        process."""
        encoded: bytes = self._histogram.encode()
        return encoded

    @classmethod
    def decode(cls, data: bytes) -> Latency:
        latency = cls()
        latency._histogram = HdrHistogram.decode(data)
        return latency

    def summary(self) -> dict[str, Any]:
        """``p50``, ``p90``, ``p99``, ``p999``, ``max``, ``mean`` (ms) and ``count``."""
        out: dict[str, Any] = {name: self.percentile_ms(p) for name, p in _PERCENTILES.items()}
        if self.count:
            out["max"] = float(self._histogram.get_max_value()) / 1000
            out["mean"] = round(float(self._histogram.get_mean_value()) / 1000, 3)
        else:
            out["max"] = out["mean"] = None
        out["count"] = self.count
        return out
