"""Fault injection: which requests, invocations and notifications to break, and when to break the
whole stack, decided exactly or at random from one seed.

A fault plan is a JSON object; each per-event fault is given either as a fraction (``0.1``, or
``{"rate": 0.1}``), drawn from a generator seeded by the plan's ``seed``, or as a count
(``{"next": 5}``: exactly the next five eligible events). Plans are global or per endpoint; an
event uses its endpoint's plan when one is set, else the global one. ::

    {"seed": 1,
     "throttle": {"next": 5},          # 429 ThrottlingException
     "internal_error": 0.1,            # 500 InternalFailure
     "unavailable": 0.1,               # 503 ServiceUnavailable
     "reset": 0.0,                     # read the request, then drop the connection (not enqueued)
     "accept_then_reset": 0.0,         # enqueue the request, then drop the connection
     "latency": 0.05,                  # seconds added before every answer
     "model_error": 0.01,              # the model raises: a failure object, an error notification
     "model_hang": 0.01,               # the model hangs past the invocation timeout
     "output_late": {"rate": 0.1, "seconds": 0.5},  # notify first, write the output later
     "notification_drop": 0.0,         # do not publish the notification
     "notification_duplicate": 0.0,    # publish it twice
     "notification_delay": {"rate": 1.0, "seconds": 0.5},
     "notification_reorder": {"rate": 0.3, "seconds": 1.0},  # held back 0..seconds, at random
     "s3_get_error": 0.05,             # GetObject answered 500 InternalError / 503 SlowDown
     "s3_get_reset": 0.01,             # GetObject's connection dropped unanswered
     "endpoint_restart": {"every": 20, "seconds": 1},  # global plan only: see below
     "aws_pause": {"every": 30, "seconds": 2}}

At most one answer fault applies to a request, tried in the order reset, accept_then_reset,
throttle, internal_error, unavailable; at most one model fault to an inference id, decided the
first time the id runs and kept if it runs again (a request accepted twice, or re-run after a
restart, ends the same way).

The two stack-wide faults are scheduled, not drawn per event, and only in the global plan: about
every ``every`` seconds (jittered by the plan's generator, so a seed gives the same schedule)
``endpoint_restart`` restarts the endpoint's front door and workers (down for ``seconds``) and
``aws_pause`` stops moto's server (S3, SNS, SQS) with SIGSTOP for ``seconds``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ANSWER_FAULTS",
    "MODEL_FAULTS",
    "S3_FAULTS",
    "SCHEDULED_FAULTS",
    "FaultPlan",
    "Schedule",
    "Trigger",
    "first_to_fire",
]

ANSWER_FAULTS = ("reset", "accept_then_reset", "throttle", "internal_error", "unavailable")
MODEL_FAULTS = ("model_error", "model_hang")
OUTPUT_FAULTS = ("output_late",)
NOTIFICATION_FAULTS = (
    "notification_drop",
    "notification_duplicate",
    "notification_delay",
    "notification_reorder",
)
#: applied by moto's process to GetObject (see ``_s3_faults``), tried in this order
S3_FAULTS = ("s3_get_reset", "s3_get_error")
SCHEDULED_FAULTS = ("endpoint_restart", "aws_pause")
_TRIGGERED = (*ANSWER_FAULTS, *MODEL_FAULTS, *OUTPUT_FAULTS, *NOTIFICATION_FAULTS, *S3_FAULTS)
_KNOWN = {"seed", "latency", "endpoint", *_TRIGGERED, *SCHEDULED_FAULTS}


@dataclass(slots=True)
class Trigger:
    """When one fault fires: the next ``remaining`` times, or with probability ``rate``."""

    rate: float = 0.0
    remaining: int | None = None
    seconds: float = 0.0

    @classmethod
    def parse(cls, name: str, value: Any) -> Trigger:
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected a fraction or an object")
        if isinstance(value, int | float):
            value = {"rate": value}
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected a fraction or an object, got {value!r}")
        unknown = set(value) - {"rate", "next", "seconds"}
        if unknown:
            raise ValueError(f"{name}: unknown keys {sorted(unknown)}")
        rate = float(value.get("rate", 0.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name}: rate must be in [0, 1]")
        nxt = value.get("next")
        if nxt is not None and (not isinstance(nxt, int) or isinstance(nxt, bool) or nxt < 0):
            raise ValueError(f"{name}: next must be an integer >= 0")
        seconds = float(value.get("seconds", 0.0))
        if seconds < 0:
            raise ValueError(f"{name}: seconds must be >= 0")
        return cls(rate=rate, remaining=nxt, seconds=seconds)

    def fire(self, rng: random.Random) -> bool:
        if self.remaining is not None:
            if self.remaining > 0:
                self.remaining -= 1
                return True
            return False
        return self.rate > 0.0 and rng.random() < self.rate

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.remaining is not None:
            out["next"] = self.remaining
        else:
            out["rate"] = self.rate
        if self.seconds:
            out["seconds"] = self.seconds
        return out


def first_to_fire(
    triggers: dict[str, Trigger], names: tuple[str, ...], rng: random.Random
) -> str | None:
    """The first of ``names`` whose trigger fires (at most one fault per event), if any."""
    for name in names:
        trigger = triggers.get(name)
        if trigger is not None and trigger.fire(rng):
            return name
    return None


@dataclass(frozen=True, slots=True)
class Schedule:
    """A stack-wide fault about every ``every`` seconds, lasting ``seconds`` each time."""

    every: float
    seconds: float

    @classmethod
    def parse(cls, name: str, value: Any) -> Schedule:
        if not isinstance(value, dict) or set(value) - {"every", "seconds"}:
            raise ValueError(f'{name}: expected {{"every": seconds, "seconds": duration}}')
        every = float(value.get("every", 0.0))
        seconds = float(value.get("seconds", 0.0))
        if every <= 0 or seconds < 0:
            raise ValueError(f"{name}: every must be > 0 and seconds >= 0")
        return cls(every, seconds)

    def next_delay(self, rng: random.Random) -> float:
        """Seconds to the next occurrence: ``every``, jittered by half either way."""
        return self.every * rng.uniform(0.5, 1.5)

    def to_json(self) -> dict[str, Any]:
        return {"every": self.every, "seconds": self.seconds}


@dataclass(slots=True)
class FaultPlan:
    """One scope's faults, parsed from JSON; triggers keep their own countdowns."""

    seed: int | None = None
    latency: float = 0.0
    triggers: dict[str, Trigger] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> FaultPlan:
        unknown = set(spec) - _KNOWN
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {sorted(_KNOWN)}")
        seed = spec.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError("seed must be an integer")
        latency = float(spec.get("latency", 0.0))
        if latency < 0:
            raise ValueError("latency must be >= 0")
        triggers = {name: Trigger.parse(name, spec[name]) for name in _TRIGGERED if name in spec}
        schedules = {
            name: Schedule.parse(name, spec[name]) for name in SCHEDULED_FAULTS if name in spec
        }
        if schedules and spec.get("endpoint") is not None:
            raise ValueError(f"{sorted(schedules)}: stack-wide faults belong in the global plan")
        return cls(
            seed=seed,
            latency=latency,
            triggers=triggers,
            schedules=schedules,
            rng=random.Random(seed),
        )

    @property
    def empty(self) -> bool:
        return not (self.triggers or self.schedules or self.latency)

    def answer_fault(self) -> str | None:
        """The answer fault for the next request, if any (consumes ``next`` counts)."""
        return first_to_fire(self.triggers, ANSWER_FAULTS, self.rng)

    def model_fault(self) -> str | None:
        """The model fault for an inference id's first run, if any."""
        return first_to_fire(self.triggers, MODEL_FAULTS, self.rng)

    def fault(self, name: str) -> Trigger | None:
        """``name``'s trigger if it fires for this event (a notification, an output)."""
        trigger = self.triggers.get(name)
        if trigger is not None and trigger.fire(self.rng):
            return trigger
        return None

    def s3_spec(self) -> dict[str, Any] | None:
        """The part moto's process applies (GetObject faults), as JSON; ``None`` if none.

        It gets its own generator, seeded from this plan's seed, so its draws do not shift the
        endpoint's (the two processes draw independently).
        """
        spec: dict[str, Any] = {n: t.to_json() for n, t in self.triggers.items() if n in S3_FAULTS}
        if not spec:
            return None
        if self.seed is not None:
            spec["seed"] = self.seed
        return spec

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: t.to_json() for name, t in self.triggers.items()}
        out.update((name, s.to_json()) for name, s in self.schedules.items())
        if self.seed is not None:
            out["seed"] = self.seed
        if self.latency:
            out["latency"] = self.latency
        return out
