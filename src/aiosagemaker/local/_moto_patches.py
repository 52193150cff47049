"""Targeted speed-ups of moto's server, applied only in the local stack's own moto process.

moto 5.2's SQS ``send_message`` (and so every SNS-to-SQS delivery) reads ``queue.attributes`` to
learn one flag, ``ContentBasedDeduplication``; that property recomputes every attribute, counting
the queue's messages with several clock reads each, so a send costs O(queue depth): ~4 ms at 300
messages, seconds at a few thousand. Here ``attributes`` answers that one flag directly and computes
the rest, unchanged, only when something else is asked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["apply"]

_FLAG = "ContentBasedDeduplication"


class _LazyAttributes(Mapping[str, Any]):
    __slots__ = ("_compute", "_full", "_queue")

    def __init__(self, queue: Any, compute: Any) -> None:
        self._queue = queue
        self._compute = compute
        self._full: dict[str, Any] | None = None

    def _all(self) -> dict[str, Any]:
        if self._full is None:
            self._full = self._compute(self._queue)
        return self._full

    def get(self, key: str, default: Any = None) -> Any:
        if key == _FLAG and self._full is None:
            # The original lists the flag only for FIFO queues, as a lower-case string.
            if not self._queue.fifo_queue:
                return default
            return str(bool(self._queue.content_based_deduplication)).lower()
        return self._all().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def apply() -> None:
    """Patch moto's SQS ``Queue.attributes`` (once per process)."""
    from moto.sqs.models import Queue

    original = Queue.__dict__["attributes"]
    if isinstance(original, _LazyProperty):
        return
    Queue.attributes = _LazyProperty(original)  # type: ignore[method-assign,assignment]


class _LazyProperty(property):
    def __init__(self, original: property) -> None:
        compute = original.fget
        super().__init__(lambda queue: _LazyAttributes(queue, compute), original.fset)
