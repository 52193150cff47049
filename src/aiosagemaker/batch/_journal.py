"""The batch job's journal: an append-only JSON Lines file that makes a job resumable.

One JSON object per line, each with a type ``t``::

    {"t":"job","v":1,"job_id":"3f9c2a7d1b04","endpoint":"my-ep","input":"/data/in.jsonl",
     "shard":null,"ordered":true,"created":1732550000.0}                      first line, once
    {"t":"intent","n":17,"id":"3f9c2a7d1b04-17"}                  written (and flushed) before sending
    {"t":"accepted","n":17,"id":"3f9c2a7d1b04-17","out":"s3://...","fail":"s3://...","at":1732550001.2}
    {"t":"result","n":17,"rec":{...the OUTPUT record...}}
    {"t":"mark","n":4096}        unordered jobs: every input with n <= 4096 is in OUTPUT
    {"t":"resume","at":1732550100.0}                                 each rerun of the job

``n`` is the input's 1-based position, ``id`` its inference id (``<job_id>-<n>``: deterministic,
so a rerun sends a request again under the same id).

Appends are batched (group commit): records accumulate in memory and one ``write`` plus one
``fsync`` in a worker thread puts everything appended so far on disk; :meth:`Journal.commit` waits
for that. A crash can tear only the last line, which :func:`scan_journal` ignores and the next run
truncates before appending.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

__all__ = [
    "Journal",
    "JournalEntry",
    "JournalHeader",
    "ResumeState",
    "scan_complete_lines",
    "scan_journal",
]

logger = logging.getLogger("aiosagemaker")

JOURNAL_VERSION = 1
_MARK_PREFIX = b'{"t":"mark"'
_READ_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class JournalHeader:
    """The first line: which job this journal belongs to."""

    job_id: str
    endpoint: str
    input: str
    shard: str | None
    ordered: bool
    created: float

    def to_json(self) -> dict[str, Any]:
        return {
            "t": "job",
            "v": JOURNAL_VERSION,
            "job_id": self.job_id,
            "endpoint": self.endpoint,
            "input": self.input,
            "shard": self.shard,
            "ordered": self.ordered,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JournalHeader:
        if data.get("t") != "job" or data.get("v") != JOURNAL_VERSION:
            raise ValueError("not an aiosagemaker batch journal (bad first line)")
        return cls(
            job_id=str(data["job_id"]),
            endpoint=str(data["endpoint"]),
            input=str(data["input"]),
            shard=data.get("shard"),
            ordered=bool(data.get("ordered", True)),
            created=float(data.get("created", 0.0)),
        )


@dataclass(slots=True)
class JournalEntry:
    """What the journal says about one input not yet in OUTPUT."""

    inference_id: str
    #: "intent" (sent, no acceptance recorded), "accepted" or "result"
    state: str
    output_location: str | None = None
    failure_location: str | None = None
    accepted_at: float | None = None
    record: dict[str, Any] | None = None


@dataclass(slots=True)
class ResumeState:
    """Everything a rerun needs, in memory bounded by the inputs in flight at the crash."""

    header: JournalHeader
    #: the journal's length up to its last complete line (a torn tail is cut off there)
    good_length: int
    #: every input with ``n <= watermark`` is already in OUTPUT
    watermark: int = 0
    #: inputs past the watermark already in OUTPUT
    done: set[int] = field(default_factory=set)
    #: inputs past the watermark, not in OUTPUT, that the journal knows about
    entries: dict[int, JournalEntry] = field(default_factory=dict)
    #: results already in OUTPUT (its complete lines)
    output_records: int = 0
    #: OUTPUT's length up to its last complete line
    output_good_length: int = 0
    resumes: int = 0

    def is_done(self, n: int) -> bool:
        if n <= self.watermark:
            return True
        if n in self.done:
            self.done.discard(n)
            return True
        return False

    @property
    def intents_without_acceptance(self) -> int:
        """Requests sent at the crash with no acceptance recorded: they may run twice."""
        return sum(1 for e in self.entries.values() if e.state == "intent")


def scan_complete_lines(path: Path) -> Iterator[tuple[bytes, int]]:
    """Yield ``(line, end_offset)`` for each newline-terminated line; a torn tail is skipped."""
    with open(path, "rb") as f:
        offset = 0
        rest = b""
        while block := f.read(_READ_BLOCK):
            data = rest + block
            start = 0
            while (end := data.find(b"\n", start)) != -1:
                offset += end + 1 - start
                yield data[start:end], offset
                start = end + 1
            rest = data[start:]


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def read_header(path: Path) -> JournalHeader:
    """The header of an existing journal; ``ValueError`` if it has none."""
    for line, _ in scan_complete_lines(path):
        data = _parse(line)
        if data is None:
            break
        return JournalHeader.from_json(data)
    raise ValueError(f"{path} is not an aiosagemaker batch journal (no header line)")


def scan_journal(
    journal: Path, output: Path, *, ordered: bool, output_n: Callable[[bytes], int | None]
) -> ResumeState:
    """Read a journal and its OUTPUT into a :class:`ResumeState` (three streaming passes).

    1. the journal's header, its last ``mark`` and where its last complete line ends;
    2. OUTPUT: which inputs are already there (an ordered OUTPUT is a prefix of the input, so its
       last ``n`` is the watermark; else the ones past the mark are kept in a set);
    3. the journal again: the intents, acceptances and results of inputs past the watermark that
       are not in OUTPUT.
    """
    header = read_header(journal)
    good_length = 0
    mark = 0
    resumes = 0
    for line, end in scan_complete_lines(journal):
        good_length = end
        if line.startswith(_MARK_PREFIX):
            data = _parse(line)
            if data is not None:
                mark = max(mark, int(data["n"]))
        elif line.startswith(b'{"t":"resume"'):
            resumes += 1
    state = ResumeState(header=header, good_length=good_length, watermark=mark, resumes=resumes)
    if output.exists():
        last = 0
        for line, end in scan_complete_lines(output):
            n = output_n(line)
            if n is None:
                # A record we cannot read is not ours to rewrite: stop trusting OUTPUT here.
                logger.warning("OUTPUT %s has an unreadable line at byte %d", output, end)
                break
            state.output_good_length = end
            state.output_records += 1
            if ordered:
                last = max(last, n)
            elif n > mark:
                state.done.add(n)
        if ordered:
            state.watermark = max(state.watermark, last)
            state.done.clear()
    watermark = state.watermark
    entries = state.entries
    for line, _ in scan_complete_lines(journal):
        data = _parse(line)
        if data is None:
            logger.warning("skipping an unreadable line in journal %s", journal)
            continue
        kind = data.get("t")
        if kind not in ("intent", "accepted", "result"):
            continue
        n = int(data["n"])
        if n <= watermark or n in state.done:
            continue
        entry = entries.get(n)
        if kind == "intent":
            if entry is None:
                entries[n] = JournalEntry(inference_id=data["id"], state="intent")
            elif entry.state == "intent":
                entry.inference_id = data["id"]
        elif kind == "accepted":
            if entry is None or entry.state != "result":
                entries[n] = JournalEntry(
                    inference_id=data["id"],
                    state="accepted",
                    output_location=data.get("out"),
                    failure_location=data.get("fail"),
                    accepted_at=data.get("at"),
                )
        else:
            record = data["rec"]
            entries[n] = JournalEntry(
                inference_id=record.get("inference_id") or "", state="result", record=record
            )
    return state


class Journal:
    """Appends records to the journal with group commit. Use as ``async with``.

    :param path: the journal file; created if missing.
    :param truncate_to: cut the file to this length first (a torn tail from a crash).
    :param fsync: make each commit durable across a power loss, not only a process crash.
    """

    def __init__(self, path: Path, *, truncate_to: int | None = None, fsync: bool = True) -> None:
        self.path = path
        self._truncate_to = truncate_to
        self._fsync = fsync
        self._fd: int | None = None
        self._buffer: list[bytes] = []
        self._appended = 0
        self._written = 0
        self._lock = asyncio.Lock()
        self.commits = 0

    async def __aenter__(self) -> Journal:
        self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if self._truncate_to is not None:
            os.ftruncate(fd, self._truncate_to)
        self._fd = fd

    def append(self, record: dict[str, Any]) -> None:
        """Queue one record; it is on disk after the next :meth:`commit` returns."""
        self._buffer.append(orjson.dumps(record) + b"\n")
        self._appended += 1

    @property
    def uncommitted(self) -> int:
        return self._appended - self._written

    async def commit(self) -> None:
        """Wait until every record appended so far is written (and fsynced)."""
        target = self._appended
        if self._written >= target:
            return
        async with self._lock:
            if self._written >= target:
                return
            data, self._buffer = b"".join(self._buffer), []
            upto = self._appended
            write = asyncio.ensure_future(asyncio.to_thread(self._write, data))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # The thread writes on regardless: hold the lock until it is done, so that two
                # writes never run at once, then let the cancellation through.
                await asyncio.wait([write])
                if not write.cancelled() and write.exception() is None:
                    self._written = upto
                raise
            self._written = upto
            self.commits += 1

    def _write(self, data: bytes) -> None:
        fd = self._fd
        if fd is None:
            raise RuntimeError("journal is not open")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if self._fsync:
            os.fsync(fd)

    async def aclose(self) -> None:
        """Write what is left (synchronously: a cancellation cannot lose it), then close."""
        async with self._lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            self._fd = fd
            try:
                data, self._buffer = b"".join(self._buffer), []
                if data:
                    self._write(data)
                self._written = self._appended
            finally:
                self._fd = None
                os.close(fd)
