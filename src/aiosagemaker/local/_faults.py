"""Fault injection: which requests and notifications to break, decided exactly or at random.

A fault plan is a JSON object; each fault is given either as a fraction (``0.1``, or
``{"rate": 0.1}``), drawn from a generator seeded by the plan's ``seed``, or as a count
(``{"next": 5}``: exactly the next five eligible events). Plans are global or per endpoint; a
request uses its endpoint's plan when one is set, else the global one. ::

    {"seed": 1,
     "throttle": {"next": 5},          # 429 ThrottlingException
     "internal_error": 0.1,            # 500 InternalFailure
     "unavailable": 0.1,               # 503 ServiceUnavailable
     "reset": 0.0,                     # read the request, then drop the connection (not enqueued)
     "accept_then_reset": 0.0,         # enqueue the request, then drop the connection
     "latency": 0.05,                  # seconds added before every answer
     "notification_drop": 0.0,         # do not publish the notification
     "notification_duplicate": 0.0,    # publish it twice
     "notification_delay": {"rate": 1.0, "seconds": 0.5}}

At most one answer fault applies to a request, tried in the order reset, accept_then_reset,
throttle, internal_error, unavailable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ANSWER_FAULTS", "FaultPlan", "Trigger"]

ANSWER_FAULTS = ("reset", "accept_then_reset", "throttle", "internal_error", "unavailable")
NOTIFICATION_FAULTS = ("notification_drop", "notification_duplicate", "notification_delay")
_KNOWN = {"seed", "latency", "endpoint", *ANSWER_FAULTS, *NOTIFICATION_FAULTS}


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


@dataclass(slots=True)
class FaultPlan:
    """One scope's faults, parsed from JSON; triggers keep their own countdowns."""

    seed: int | None = None
    latency: float = 0.0
    triggers: dict[str, Trigger] = field(default_factory=dict)
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
        triggers = {
            name: Trigger.parse(name, spec[name])
            for name in (*ANSWER_FAULTS, *NOTIFICATION_FAULTS)
            if name in spec
        }
        return cls(seed=seed, latency=latency, triggers=triggers, rng=random.Random(seed))

    def answer_fault(self) -> str | None:
        """The answer fault for the next request, if any (consumes ``next`` counts)."""
        for name in ANSWER_FAULTS:
            trigger = self.triggers.get(name)
            if trigger is not None and trigger.fire(self.rng):
                return name
        return None

    def notification_fault(self, name: str) -> Trigger | None:
        trigger = self.triggers.get(name)
        if trigger is not None and trigger.fire(self.rng):
            return trigger
        return None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: t.to_json() for name, t in self.triggers.items()}
        if self.seed is not None:
            out["seed"] = self.seed
        if self.latency:
            out["latency"] = self.latency
        return out
