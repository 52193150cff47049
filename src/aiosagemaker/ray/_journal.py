"""The acceptances of a Ray job, journaled by each actor under the job's journal prefix.

The layout (under the prefix: ``OUTPUT/_journal/ray/`` for an ``s3://`` OUTPUT)::

    job.json                                  the job's id, endpoint and input (the driver's)
    actors/<token>.json                       one per actor: its host and process
    started/<first>-<last>.json               a batch of inputs (numbers first..last) was started
    accepted/<first>-<last>/<token>-<seq>.jsonl   acceptances of that batch's inputs

A batch's *started* object is written before any of its inputs is sent. Acceptances (input
number, inference id, output and failure locations, when; the ``accepted`` records of the
single-process journal) are buffered per batch and written at least every ``flush_interval``
seconds, and at the end of each batch, one object per batch per flush.

A retried Ray task gets the same batches (Ray Data re-batches a task's input blocks the same way
on a retry) and finds its batch *started*: its inputs journaled as accepted are collected from
their locations, never sent again; the others are sent again and counted, since those accepted
since the last flush may have run twice (AWS does not deduplicate by inference id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

import orjson

from aiosagemaker.batch._journal import JournalEntry

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._store import JournalStore

__all__ = ["ActorJournal", "BatchJournal", "batch_key"]

logger = logging.getLogger("aiosagemaker")


def batch_key(ns: Sequence[int]) -> str:
    """The name of the batch of inputs ``ns`` (by its first and last input numbers)."""
    return f"{min(ns):012d}-{max(ns):012d}"


def _ranges(ns: Sequence[int]) -> list[list[int]]:
    ranges: list[list[int]] = []
    for n in sorted(ns):
        if ranges and ranges[-1][1] >= n - 1:
            ranges[-1][1] = n
        else:
            ranges.append([n, n])
    return ranges


class ActorJournal:
    """One actor's side of the journal: its acceptances, buffered and flushed.

    :param store: the job's journal.
    :param token: this actor's name in the journal (unique: a restarted actor gets a new one).
    :param flush_interval: seconds between two flushes of buffered acceptances.
    """

    def __init__(self, store: JournalStore, *, token: str, flush_interval: float) -> None:
        self.store = store
        self.token = token
        self.flush_interval = flush_interval
        self._pending: dict[str, list[bytes]] = {}
        self._seq = 0
        self._lock = asyncio.Lock()
        #: objects written (acceptances), for the tests and statistics
        self.flushes = 0

    async def register(self) -> None:
        """Say which process this actor is (for an operator reading the journal)."""
        body = orjson.dumps({"host": socket.gethostname(), "pid": os.getpid()})
        await self.store.put(f"actors/{self.token}.json", body)

    async def started_before(self, key: str) -> bool:
        """Whether batch ``key`` was started by an earlier try of its task."""
        return await self.store.exists(f"started/{key}.json")

    async def mark_started(self, key: str, ns: Sequence[int]) -> None:
        """Record that batch ``key`` (inputs ``ns``) is started; before any of it is sent."""
        await self.store.put(f"started/{key}.json", orjson.dumps({"ranges": _ranges(ns)}))

    async def accepted_in(self, key: str) -> dict[int, JournalEntry]:
        """The inputs of batch ``key`` that an earlier try journaled as accepted."""
        entries: dict[int, JournalEntry] = {}
        for name in await self.store.names(f"accepted/{key}/"):
            data = await self.store.get(name)
            for line in (data or b"").splitlines():
                record = _accepted(line)
                if record is not None:
                    entries[record[0]] = record[1]
        return entries

    def append(self, key: str, record: dict[str, Any]) -> None:
        """Buffer an ``accepted`` record of batch ``key`` (other records are not kept)."""
        if record.get("t") == "accepted":
            self._pending.setdefault(key, []).append(orjson.dumps(record) + b"\n")

    async def flush(self, key: str | None = None) -> None:
        """Write what is buffered (only batch ``key``'s, when given), one object per batch.

        A write that fails keeps its lines for the next flush.

        :raises OSError: a write failed (S3's own retries included).
        """
        async with self._lock:
            keys = [key] if key is not None else list(self._pending)
            for k in keys:
                lines = self._pending.pop(k, None)
                if not lines:
                    continue
                self._seq += 1
                name = f"accepted/{k}/{self.token}-{self._seq:06d}.jsonl"
                try:
                    await self.store.put(name, b"".join(lines))
                except BaseException:
                    self._pending.setdefault(k, [])[:0] = lines
                    raise
                self.flushes += 1

    async def run(self) -> None:
        """Flush every ``flush_interval`` seconds until cancelled; a failed flush is retried at the
        next one."""
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except OSError as exc:
                logger.warning("cannot write to the job's journal %s: %s", self.store.where, exc)


class BatchJournal:
    """The journal interface a batch's :class:`~aiosagemaker.batch._processor.InputProcessor`
    writes to: acceptances go to the actor's buffer under the batch's key; intents and results
    are not kept (a retried task collects accepted inputs from their locations)."""

    def __init__(self, journal: ActorJournal, key: str) -> None:
        self._journal = journal
        self._key = key
        self.path = journal.store.where
        self.uncommitted = 0

    def open(self) -> None:
        """Nothing to open."""

    def append(self, record: dict[str, Any]) -> None:
        self._journal.append(self._key, record)

    async def commit(self) -> None:
        """Nothing to wait for: acceptances are flushed on the actor's own schedule."""

    async def aclose(self) -> None:
        """Nothing to close."""


def _accepted(line: bytes) -> tuple[int, JournalEntry] | None:
    with contextlib.suppress(orjson.JSONDecodeError):
        record = orjson.loads(line)
        if isinstance(record, dict) and record.get("t") == "accepted":
            entry = JournalEntry(
                inference_id=str(record["id"]),
                state="accepted",
                output_location=record.get("out"),
                failure_location=record.get("fail"),
                accepted_at=record.get("at"),
            )
            return int(record["n"]), entry
    return None
