"""Counters the local endpoint keeps, served by ``GET /_local/stats``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EndpointStats", "ServerStats"]


@dataclass(slots=True)
class EndpointStats:
    """One endpoint's counts. ``accepted_by_id`` shows repeats: AWS does not deduplicate ids."""

    accepted: int = 0
    completed: int = 0
    failed: int = 0
    in_progress: int = 0
    notifications_published: int = 0
    notifications_dropped: int = 0
    notifications_duplicated: int = 0
    notifications_delayed: int = 0
    #: requests a restart interrupted, queued again to run again
    reruns: int = 0
    faults_injected: Counter[str] = field(default_factory=Counter)
    accepted_by_id: Counter[str] = field(default_factory=Counter)
    #: the ids a model fault was injected into, and which: their right outcome is a failure
    model_faults_by_id: dict[str, str] = field(default_factory=dict)

    def reset(self) -> None:
        in_progress = self.in_progress
        self.__init__()  # type: ignore[misc]
        self.in_progress = in_progress

    def to_json(self, queue_depth: int) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "completed": self.completed,
            "failed": self.failed,
            "queue_depth": queue_depth,
            "in_progress": self.in_progress,
            "notifications_published": self.notifications_published,
            "notifications_dropped": self.notifications_dropped,
            "notifications_duplicated": self.notifications_duplicated,
            "notifications_delayed": self.notifications_delayed,
            "reruns": self.reruns,
            "faults_injected": dict(self.faults_injected),
            "accepted_by_id": dict(self.accepted_by_id),
            "model_faults_by_id": dict(self.model_faults_by_id),
        }


@dataclass(slots=True)
class ServerStats:
    """The front door's counts, over all endpoints."""

    requests: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    in_flight_http: int = 0
    peak_concurrent_http: int = 0
    connections_opened: int = 0

    def reset(self) -> None:
        in_flight = self.in_flight_http
        self.__init__()  # type: ignore[misc]
        self.in_flight_http = in_flight
        self.peak_concurrent_http = in_flight
