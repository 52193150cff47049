"""When each request of an open-loop run is due: arrival times from a rate or ramping stages.

Open loop (k6's constant- and ramping-arrival-rate executors, wrk2, vegeta): requests are due at
times fixed in advance by the arrival rate, whatever the server does. Each one's latency is counted
from its due time, so a server (or client) that stalls cannot hide the wait of the requests that
queued up behind it (coordinated omission).

A run is a list of :class:`Stage` s: the rate moves linearly from where the last stage ended (or
``start_rate``) to each stage's ``target`` over its ``duration``; a constant rate is one stage
whose start and target are the same. The ``i``-th request (from 0) is due when the expected count
``∫ rate dt`` reaches ``i``: ``0, 1/R, 2/R, ...`` at a constant ``R``.

Pure functions: no clock, no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Stage", "arrival_times", "parse_duration", "parse_stages"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True, slots=True)
class Stage:
    """Ramp linearly to ``target`` requests per second over ``duration`` seconds."""

    duration: float
    target: float


def parse_duration(text: str) -> float:
    """``"30s"``, ``"2m"``, ``"500ms"``, ``"1h"`` or plain seconds; :class:`ValueError` else."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (e.g. 30s, 2m, 500ms)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_stages(text: str) -> list[Stage]:
    """``"30s:100,60s:500,30s:0"``: ramp to 100/s over 30 s, to 500/s over 60 s, to 0 over 30 s.

    :raises ValueError: a malformed stage, a negative rate or a zero total duration.
    """
    stages = []
    for part in text.split(","):
        duration, sep, target = part.partition(":")
        if not sep:
            raise ValueError(f"a stage is DURATION:RATE (e.g. 30s:100), not {part.strip()!r}")
        try:
            rate = float(target)
        except ValueError:
            raise ValueError(f"not a rate: {target!r} in stage {part.strip()!r}") from None
        if rate < 0 or not math.isfinite(rate):
            raise ValueError(f"a rate must be >= 0, not {target!r}")
        stages.append(Stage(parse_duration(duration), rate))
    if not stages or sum(s.duration for s in stages) <= 0:
        raise ValueError("--stages must last more than 0 s")
    return stages


def arrival_times(stages: list[Stage], *, start_rate: float = 0.0) -> Iterator[float]:
    """Each request's due time, in seconds from the start of the run, in order.

    :param start_rate: the rate at time 0 (the first stage ramps from it to its target).
    """
    begin = 0.0  # the current stage's start time
    count = 0.0  # the expected count at ``begin``
    i = 0  # the next request's index
    rate0 = start_rate
    for stage in stages:
        rate1, length = stage.target, stage.duration
        slope = (rate1 - rate0) / length if length > 0 else 0.0
        total = (rate0 + rate1) / 2 * length  # expected requests in this stage
        while i < count + total - 1e-9:
            need = i - count  # expected count to accumulate inside this stage
            if slope == 0.0:
                offset = need / rate0
            else:
                # rate0 * t + slope * t^2 / 2 = need
                offset = (-rate0 + math.sqrt(max(0.0, rate0 * rate0 + 2 * slope * need))) / slope
            yield begin + min(max(offset, 0.0), length)
            i += 1
        begin += length
        count += total
        rate0 = rate1
