"""Writing records to OUTPUT: in input order (or as they finish), behind a bounded window.

.. code-block:: python

    writer = OutputWriter(path, ordered=True, window=256, journal=journal, stats=stats)
    writer.open()               # blocking: run it in a worker thread
    # the producer, per input:  await writer.reserve(); writer.add(n, task)   ... writer.finish()
    await writer.run()          # writes each task's record; ends after the last one
    await writer.flush(sync=True); writer.checkpoint()   # now and then: the caller commits
    await writer.aclose()

**The window.** An input holds one of ``window`` slots from just before its task starts until its
record is written (or skipped), so that memory does not depend on the input's size even when an
ordered job waits behind a slow input.

**Order.** Ordered, records are written in input order, and nothing past an input whose task
ended without a record (an interrupted run) is written: OUTPUT stays a prefix of the input, which
is how a rerun knows what is done. Unordered, each record is written as its task finishes.

**Writes.** Records are buffered in memory and written by a worker thread, one ``write`` per
batch (when a megabyte is buffered, and at each :meth:`flush`), so neither a big buffer nor a slow
disk stalls the event loop. A write that fails (a full disk) keeps, in order, what it did not
write, and is retried with backoff; after the last try the writer gives up: it writes nothing
more and reports the error through ``on_error``. Nothing is lost: every record it held was
journaled as a *result* before it got here (or comes from the input alone, as an invalid line's),
so a rerun writes it; a torn last line is cut off by the rerun.

**The watermark** (unordered jobs): the highest ``n`` such that every input up to it is in OUTPUT,
journaled as a ``mark`` so that a rerun needs to remember only the records past it. It counts only
records written *and fsynced* (with ``fsync``): the journal never claims a record that a power
loss could take out of OUTPUT.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import stat
import time
from typing import TYPE_CHECKING, Any, TypeAlias

import orjson

from ._errors import BatchConfigError, BatchUsageError
from ._journal import fsync_directory, lock_exclusive, lock_holder, open_append
from ._records import mark_entry

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ._journal import JournalWriter
    from ._summary import BatchStats

__all__ = ["OutputWriter", "RecordTask"]

logger = logging.getLogger("aiosagemaker")

#: One input's task: its OUTPUT record, or ``None`` when it ended without one (interrupted).
RecordTask: TypeAlias = "asyncio.Task[dict[str, Any] | None]"
#: ``(n, task)`` for each input, then ``None`` once the producer has added the last one.
_Queue: TypeAlias = "asyncio.Queue[tuple[int, RecordTask] | None]"

# Records buffered before run() writes them without waiting for the next flush().
_FLUSH_BYTES = 1 << 20
# Seconds between the tries of a failed write (ENOSPC, EIO ...): about 4 s in all, then give up.
_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)
# The one call that writes OUTPUT (a test replaces it to fill the disk).
_write = os.write


class RecordWriter:
    """What every OUTPUT shares: the window, the order of records and the watermark.

    A subclass stores the records (:meth:`_add_record`, :meth:`flush`) and tells the base which
    inputs are durably in OUTPUT (:meth:`_durable`).

    :param window: inputs started and not yet written, at most.
    :param journal: where the watermark goes.
    :param stats: counts ``written``.
    :param on_error: called once, with a :class:`BatchConfigError`, when OUTPUT cannot be written.
    """

    #: journal the watermark of an ordered job too (its OUTPUT does not tell it by itself)
    marks_ordered = False

    def __init__(
        self,
        *,
        ordered: bool,
        window: int,
        journal: JournalWriter,
        stats: BatchStats,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.ordered = ordered
        self._journal = journal
        self._stats = stats
        self._on_error = on_error
        self._window = asyncio.Semaphore(window)
        self._queue: _Queue = asyncio.Queue()
        self._added = 0
        #: why OUTPUT cannot be written; once set, nothing more is written to it
        self.error: OSError | None = None
        # For the watermark: inputs added and not yet written, in input order; those written out
        # of order; the highest input the producer has passed (added, or already in OUTPUT).
        self._started_order: collections.deque[int] = collections.deque()
        self._written_set: set[int] = set()
        self._passed_upto = 0
        self._last_mark = 0

    def open(self) -> None:
        """Open OUTPUT (blocking)."""

    async def start(self, *, overwrite: bool) -> None:
        """Once the journal has its first line: make OUTPUT ready (parts: clear a crash's
        leftovers). Nothing to do for a file, which :meth:`open` readied."""

    def close(self) -> None:
        """Release OUTPUT as it is (what is buffered is not written: see :meth:`aclose`)."""

    async def flush(self, *, sync: bool = False, final: bool = False) -> bool:
        """Write what is due; ``False`` once OUTPUT cannot be written."""
        raise NotImplementedError

    def _add_record(self, n: int, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def _due(self) -> bool:
        """Whether enough is buffered to write without waiting for the next :meth:`flush`."""
        return False

    def _durable(self, ns: list[int]) -> None:
        """Inputs ``ns`` are in OUTPUT for good: the watermark may pass them."""
        self._written_set.update(ns)

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
        """Write the records as they become due, until :meth:`finish` and the last task; then
        write and fsync what is buffered."""
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
            self._add_record(n, record)
            if self._due():
                await self.flush()
        await self.flush(sync=True, final=True)

    def watermark(self) -> int:
        """The highest ``n`` such that every input up to it is in OUTPUT (or not this shard's),
        counting only records written and, with ``fsync``, fsynced."""
        order, written = self._started_order, self._written_set
        while order and order[0] in written:
            written.discard(order.popleft())
        return order[0] - 1 if order else self._passed_upto

    def checkpoint(self) -> None:
        """Unordered: journal the watermark if it rose; the caller commits the journal.

        No I/O: the watermark counts the records a :meth:`flush` with ``sync`` put on disk, so
        call that first for it to include the latest ones.
        """
        mark = self.watermark()
        if (self.marks_ordered or not self.ordered) and mark > self._last_mark:
            self._journal.append(mark_entry(mark))
            self._last_mark = mark

    async def aclose(self) -> None:
        """Write and fsync what is buffered (unless OUTPUT failed), then close it."""
        try:
            await self.flush(sync=True, final=True)
        finally:
            self.close()


class OutputWriter(RecordWriter):
    """Writes each input's record to a JSON Lines OUTPUT file, in order or as finished.

    :param path: OUTPUT.
    :param keep_bytes: resume: keep OUTPUT's first ``keep_bytes`` (its complete lines) and append;
        ``None``: a new OUTPUT.
    :param fsync: :meth:`flush` with ``sync`` fsyncs OUTPUT (a regular file), and a new OUTPUT's
        directory is fsynced once; without it, marks count records once written.
    :param kwargs: the :class:`RecordWriter`'s.
    """

    def __init__(
        self,
        path: Path,
        *,
        keep_bytes: int | None = None,
        fsync: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = path
        self._keep_bytes = keep_bytes
        self._fsync = fsync
        self._fd: int | None = None
        self._regular = False
        # Records not written yet: their bytes, and each one's (n, end offset in those bytes).
        self._buffer = bytearray()
        self._ends: list[tuple[int, int]] = []
        # Written and not fsynced yet (with fsync): not in a mark until they are.
        self._unsynced: list[int] = []
        self._io = asyncio.Lock()
        self._inflight: asyncio.Future[tuple[int, OSError | None]] | None = None

    def open(self) -> None:
        """Open OUTPUT (blocking): new (emptied) or, on a resume, cut back to its last complete
        line; locked (a regular file) for as long as it is open.

        :raises BatchUsageError: another run holds OUTPUT, or a resume into a non-regular file.
        """
        fd, created = open_append(self.path)
        try:
            self._regular = stat.S_ISREG(os.fstat(fd).st_mode)
            if self._regular:
                # Not truncated before it is locked: it may be another run's OUTPUT.
                if not lock_exclusive(fd, self.path):
                    holder = lock_holder(fd)
                    by = f" (process {holder})" if holder is not None else ""
                    raise BatchUsageError(
                        f"OUTPUT {self.path} is in use by another run{by}: pass another -o, or "
                        "wait for that run to end"
                    )
                os.ftruncate(fd, self._keep_bytes or 0)
                if created and self._fsync:
                    fsync_directory(self.path.parent)
            elif self._keep_bytes:
                raise BatchUsageError(f"cannot resume into OUTPUT {self.path}: not a regular file")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _add_record(self, n: int, record: dict[str, Any]) -> None:
        if self.error is not None:
            return  # OUTPUT cannot be written: the record is in the journal for the next run
        self._buffer += orjson.dumps(record)
        self._buffer += b"\n"
        self._ends.append((n, len(self._buffer)))

    def _due(self) -> bool:
        return len(self._buffer) >= _FLUSH_BYTES

    async def flush(self, *, sync: bool = False, final: bool = False) -> bool:
        """Write the buffered records to OUTPUT in a worker thread, retrying a failed write with
        backoff; with ``sync`` (and ``fsync``), fsync OUTPUT too.

        :returns: ``False`` once OUTPUT cannot be written (:attr:`error`; ``on_error`` was
            called), without trying again.
        """
        async with self._io:
            if self.error is not None or self._fd is None:
                return self.error is None
            started = time.monotonic()
            sync = sync and self._fsync and self._regular
            tries = 0
            for delay in (*_RETRY_DELAYS, None):
                tries += 1
                error, fsync_failed = await self._write_buffered(sync=sync)
                if error is None:
                    return True
                if delay is None or fsync_failed:
                    # A failed fsync is not retried: the kernel may have dropped the pages it
                    # could not write, and a second fsync would then say all is well.
                    break
                logger.warning(
                    "cannot write OUTPUT %s (%s); trying again in %g s",
                    self.path,
                    error.strerror or error,
                    delay,
                )
                await asyncio.sleep(delay)
            assert error is not None
            self._give_up(error, tries, time.monotonic() - started, fsync_failed=fsync_failed)
            return False

    async def _write_buffered(self, *, sync: bool) -> tuple[OSError | None, bool]:
        """One try: (the error, whether it was the fsync's). Keeps, first, what was not written."""
        fd = self._fd
        assert fd is not None
        data, ends = self._buffer, self._ends
        self._buffer, self._ends = bytearray(), []
        sync = sync and bool(data or self._unsynced)
        if not data and not sync:
            return None, False
        write = asyncio.ensure_future(asyncio.to_thread(_write_out, fd, data, sync=sync))
        self._inflight = write
        try:
            done, error = await asyncio.shield(write)
        except asyncio.CancelledError:
            # The thread writes on regardless: account for what it wrote, then stop.
            await asyncio.wait([write])
            if not write.cancelled():
                self._settle(data, ends, *write.result(), synced=False)
            raise
        return error, self._settle(data, ends, done, error, synced=sync)

    def _settle(
        self,
        data: bytearray,
        ends: list[tuple[int, int]],
        done: int,
        error: OSError | None,
        *,
        synced: bool,
    ) -> bool:
        """Count what a try wrote, keep what it did not; return whether its fsync failed."""
        count = 0
        while count < len(ends) and ends[count][1] <= done:
            count += 1
        written = [n for n, _ in ends[:count]]
        self._stats.written += count
        if done < len(data):
            rest = data[done:]
            moved = [(n, end - done) for n, end in ends[count:]]
            self._ends = moved + [(n, end + len(rest)) for n, end in self._ends]
            self._buffer = rest + self._buffer
        fsync_failed = error is not None and done == len(data) and synced
        if not self._fsync or not self._regular:
            self._durable(written)
        elif synced and error is None:
            self._durable(self._unsynced)
            self._durable(written)
            self._unsynced.clear()
        else:
            self._unsynced.extend(written)
        return fsync_failed

    def _give_up(self, error: OSError, tries: int, seconds: float, *, fsync_failed: bool) -> None:
        self.error = error
        what = "fsync" if fsync_failed else "write"
        tried = "" if fsync_failed else f" ({tries} tries over {seconds:.1f} s)"
        message = (
            f"cannot {what} OUTPUT {self.path}: {error.strerror or error}{tried}; the "
            f"{len(self._ends):,} results not written are in the journal, and the next run "
            "writes them"
        )
        logger.debug("giving up on OUTPUT %s", self.path, exc_info=error)
        if self._on_error is not None:
            self._on_error(BatchConfigError(message))

    def close(self) -> None:
        """Close OUTPUT as it is (what is buffered is not written: see :meth:`aclose`)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            # A cancelled flush's thread still writes: close once it is done, not under it.
            inflight.add_done_callback(lambda _: os.close(fd))
        else:
            os.close(fd)


def _write_out(fd: int, data: bytearray, *, sync: bool) -> tuple[int, OSError | None]:
    """Write ``data`` (then fsync): the bytes written, and the error that stopped it, if any."""
    done = 0
    try:
        while done < len(data):
            # A copy of the rest only after a short write (rare on a file): no view of ``data``
            # outlives the call, whatever holds on to the error.
            done += _write(fd, data[done:] if done else data)
        if sync:
            os.fsync(fd)
    except OSError as exc:
        return done, exc
    return done, None


def _enqueue(queue: _Queue, n: int, task: RecordTask) -> None:
    queue.put_nowait((n, task))
