"""Writing records to OUTPUT: in input order (or as they finish), behind a bounded window.

.. code-block:: python

    writer = OutputWriter(path, ordered=True, window=256, journal=journal, stats=stats)
    writer.open()
    # the producer, per input:  await writer.reserve(); writer.add(n, task)   ... writer.finish()
    await writer.run()          # writes each task's record; ends after the last one
    writer.checkpoint()         # now and then: flush OUTPUT, journal the watermark (unordered)
    writer.close()

**The window.** An input holds one of ``window`` slots from just before its task starts until its
record is written (or skipped), so that memory does not depend on the input's size even when an
ordered job waits behind a slow input.

**Order.** Ordered, records are written in input order, and nothing past an input whose task
ended without a record (an interrupted run) is written: OUTPUT stays a prefix of the input, which
is how a rerun knows what is done. Unordered, each record is written as its task finishes.

**The watermark** (unordered jobs): the highest ``n`` such that every input up to it is in OUTPUT,
journaled as a ``mark`` so that a rerun needs to remember only the records past it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from typing import IO, TYPE_CHECKING, Any, TypeAlias

import orjson

from ._records import mark_entry

if TYPE_CHECKING:
    from pathlib import Path

    from ._journal import Journal
    from ._summary import BatchStats

__all__ = ["OutputWriter", "RecordTask"]

#: One input's task: its OUTPUT record, or ``None`` when it ended without one (interrupted).
RecordTask: TypeAlias = "asyncio.Task[dict[str, Any] | None]"
#: ``(n, task)`` for each input, then ``None`` once the producer has added the last one.
_Queue: TypeAlias = "asyncio.Queue[tuple[int, RecordTask] | None]"


class OutputWriter:
    """Writes each input's record to OUTPUT, in order or as finished, and keeps the watermark.

    :param path: OUTPUT.
    :param keep_bytes: resume: keep OUTPUT's first ``keep_bytes`` (its complete lines) and append;
        ``None``: a new OUTPUT.
    :param window: inputs started and not yet written, at most.
    :param journal: where the watermark goes (unordered jobs).
    :param stats: counts ``written``.
    """

    def __init__(
        self,
        path: Path,
        *,
        ordered: bool,
        window: int,
        journal: Journal,
        stats: BatchStats,
        keep_bytes: int | None = None,
    ) -> None:
        self.path = path
        self.ordered = ordered
        self._keep_bytes = keep_bytes
        self._journal = journal
        self._stats = stats
        self._window = asyncio.Semaphore(window)
        self._queue: _Queue = asyncio.Queue()
        self._out: IO[bytes] | None = None
        self._added = 0
        # For the watermark: inputs added and not yet written, in input order; those written out
        # of order; the highest input the producer has passed (added, or already in OUTPUT).
        self._started_order: collections.deque[int] = collections.deque()
        self._written_set: set[int] = set()
        self._passed_upto = 0
        self._last_mark = 0

    def open(self) -> None:
        """Open OUTPUT: new (truncated) or, on a resume, cut back to its last complete line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._keep_bytes is None:
            self._out = open(self.path, "wb")  # noqa: SIM115 - closed by close()
            return
        with open(self.path, "ab") as f:
            f.truncate(self._keep_bytes)
        self._out = open(self.path, "ab")  # noqa: SIM115 - closed by close()

    # --- the producer's side ---------------------------------------------------------------------

    async def reserve(self) -> None:
        """Wait for a slot in the window: call before starting an input's task."""
        await self._window.acquire()

    def add(self, n: int, task: RecordTask) -> None:
        """Hand over input ``n``'s task (its slot reserved); its record is written when due."""
        self._added += 1
        self._started_order.append(n)
        self._passed_upto = n
        if self.ordered:
            self._queue.put_nowait((n, task))
        else:
            task.add_done_callback(functools.partial(_enqueue, self._queue, n))

    def already_written(self, n: int) -> None:
        """Input ``n`` was in OUTPUT before this run (a resume): nothing to write."""
        self._passed_upto = n

    def finish(self) -> None:
        """No more inputs: :meth:`run` ends once every task added so far is consumed."""
        self._queue.put_nowait(None)

    # --- writing ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Write the records as they become due, until :meth:`finish` and the last task."""
        finished = False
        gap = False
        consumed = 0
        while not (finished and consumed >= self._added):
            got = await self._queue.get()
            if got is None:
                finished = True
                continue
            n, task = got
            if self.ordered and not task.done():
                await asyncio.wait([task])
            consumed += 1
            self._window.release()
            record = None if task.cancelled() else task.result()
            if record is None:
                gap = True
                continue
            if self.ordered and gap:
                # Input order: nothing past an unfinished input is written (it is journaled).
                continue
            self._write(n, record)

    def _write(self, n: int, record: dict[str, Any]) -> None:
        assert self._out is not None
        self._out.write(orjson.dumps(record) + b"\n")
        self._stats.written += 1
        self._written_set.add(n)

    def watermark(self) -> int:
        """The highest ``n`` such that every input up to it is in OUTPUT (or not this shard's)."""
        order, written = self._started_order, self._written_set
        while order and order[0] in written:
            written.discard(order.popleft())
        return order[0] - 1 if order else self._passed_upto

    def checkpoint(self) -> None:
        """Flush OUTPUT, then (unordered) journal the watermark; the caller commits the journal.

        OUTPUT first: a mark must never claim a record that is still in a buffer.
        """
        if self._out is None:
            return
        self._out.flush()
        mark = self.watermark()
        if not self.ordered and mark > self._last_mark:
            self._journal.append(mark_entry(mark))
            self._last_mark = mark

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def _enqueue(queue: _Queue, n: int, task: RecordTask) -> None:
    queue.put_nowait((n, task))
