"""``--plot``: one PNG of a run, from its per-request records (``--raw``'s lines).

Three panels: each request's submit (and end-to-end) latency over the time it was due, where a
stall shows as a ridge; the latency percentile spectrum (p50 to p99.99, log scale), the shape
HdrHistogram's plots made familiar; and the achieved rate per second against the target.
matplotlib (the ``plot`` extra) is imported only here, with its file-only backend.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["PlotUnavailableError", "plot_run"]

_SPECTRUM = (50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99)


class PlotUnavailableError(ImportError):
    """matplotlib is not installed: ``pip install 'aiosagemaker[plot]'``."""


def plot_run(raw: Path, out: Path, *, title: str, target_rate: float | None) -> None:
    """Draw the run whose records are in ``raw`` to ``out`` (blocking).

    :raises PlotUnavailableError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailableError(
            "--plot needs matplotlib: pip install 'aiosagemaker[plot]'"
        ) from None
    records = [orjson.loads(line) for line in raw.read_bytes().splitlines() if line]
    due = [r["intended"] for r in records]
    start = min(due) if due else 0.0
    submit = [
        (r["intended"] - start, (r["accepted"] - r["intended"]) * 1000)
        for r in records
        if r["accepted"] is not None
    ]
    e2e = [
        (r["intended"] - start, (r["completed"] - r["intended"]) * 1000)
        for r in records
        if r["completed"] is not None
    ]
    figure, (over_time, spectrum, rate) = plt.subplots(3, 1, figsize=(10, 11))
    figure.suptitle(title)
    for name, points, marker in (("submit", submit, "."), ("end to end", e2e, "x")):
        if points:
            over_time.scatter(*zip(*points, strict=True), s=4, marker=marker, label=name)
    over_time.set_xlabel("due time (s from start)")
    over_time.set_ylabel("latency from due time (ms)")
    over_time.set_yscale("log")
    over_time.legend(loc="upper left")
    for name, points in (("submit", submit), ("end to end", e2e)):
        values = sorted(v for _, v in points)
        if values:
            xs = [1 / (1 - p / 100) for p in _SPECTRUM]
            ys = [
                values[min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1)]
                for p in _SPECTRUM
            ]
            spectrum.plot(xs, ys, marker="o", label=name)
    spectrum.set_xscale("log")
    spectrum.set_yscale("log")
    spectrum.set_xticks(
        [1 / (1 - p / 100) for p in _SPECTRUM], [f"p{p:g}" for p in _SPECTRUM], fontsize=8
    )
    spectrum.set_ylabel("latency (ms)")
    spectrum.legend(loc="upper left")
    sent = [r["sent"] - start for r in records if r["sent"] is not None]
    seconds = int(max(sent, default=0.0)) + 1
    per_second = [0] * seconds
    for t in sent:
        per_second[min(int(t), seconds - 1)] += 1
    rate.plot(range(seconds), per_second, drawstyle="steps-post", label="sent per second")
    if target_rate:
        rate.axhline(target_rate, linestyle="--", color="grey", label="target")
    rate.set_xlabel("time (s from start)")
    rate.set_ylabel("requests / s")
    rate.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
