"""The batch job's journal: an append-only JSON Lines file that makes a job resumable.

One JSON object per line, each with a type ``t``::

    {"t":"job","v":1,"job_id":"3f9c2a7d1b04","endpoint":"my-ep","input":"/data/in.jsonl",
     "shard":null,"ordered":true,"created":1732550000.0,
     "input_check":{"kind":"file","size":81920,"mtime_ns":1732549000123456789,
                    "sha256":"9f86d0...","hashed_bytes":81920}}           first line, once
    {"t":"intent","n":17,"id":"3f9c2a7d1b04-17"}                  written (and flushed) before sending
    {"t":"accepted","n":17,"id":"3f9c2a7d1b04-17","out":"s3://...","fail":"s3://...","at":1732550001.2}
    {"t":"result","n":17,"rec":{...the OUTPUT record...}}
    {"t":"mark","n":4096}        unordered jobs: every input with n <= 4096 is in OUTPUT
    {"t":"part","k":3,"name":"part-00003.parquet","ranges":[[1,50],[52,60]],"records":59}
                                 a part object (OUTPUT of parts) written whole, with its inputs
    {"t":"resume","at":1732550100.0}                                 each rerun of the job

``n`` is the input's 1-based position, ``id`` its inference id (``<job_id>-<n>``: deterministic,
so a rerun sends a request again under the same id). ``input_check`` is the input's fingerprint
(:meth:`~._inputs.InputSource.fingerprint`); a journal written before it existed has none, and is
still version 1 (the field is optional: an older release resumes a newer journal, unchecked).
``output`` (optional too) is the ``-o`` the job writes to; a resumption to another refuses.

OUTPUT is a JSON Lines file, or a set of *part objects* (a local directory or an ``s3://`` prefix,
see :mod:`._parts`): those named by a ``part`` record are committed, and hold the records of the
inputs in its ``ranges``; any other part is left over from a crash and is not OUTPUT.

Appends are batched (group commit): records accumulate in memory and one ``write`` plus one
``fsync`` in a worker thread puts everything appended so far on disk; :meth:`Journal.commit` waits
for that. A failed write keeps what it did not write, in order, for the next one: a line is never
dropped nor torn in the middle of the file. A crash can tear only the last line, which
:func:`scan_journal` ignores and the next run truncates before appending; any other line that is
JSON of the wrong shape makes the journal unreadable (:class:`JournalFormatError`), since a
journal that cannot be read whole cannot say what is done.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

__all__ = [
    "Journal",
    "JournalEntry",
    "JournalFormatError",
    "JournalHeader",
    "JournalWriter",
    "PartInfo",
    "ResumeState",
    "chunk_lines",
    "fsync_directory",
    "lock_exclusive",
    "lock_holder",
    "open_append",
    "read_header",
    "scan_complete_lines",
    "scan_journal",
    "scan_journal_chunks",
]

logger = logging.getLogger("aiosagemaker")

JOURNAL_VERSION = 1
_MARK_PREFIX = b'{"t":"mark"'
_PART_PREFIX = b'{"t":"part"'
_READ_BLOCK = 1 << 20


class JournalFormatError(ValueError):
    """A complete line of the journal that is not what this program writes there.

    :param line: its 1-based line number.
    """

    def __init__(self, path: Path | str, line: int, problem: str) -> None:
        super().__init__(f"journal {path}, line {line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True)
class JournalHeader:
    """The first line: which job this journal belongs to."""

    job_id: str
    endpoint: str
    input: str
    shard: str | None
    ordered: bool
    created: float
    #: the input's fingerprint when the job started; ``None`` in journals written before it was
    input_check: dict[str, Any] | None = None
    #: the job's ``-o`` (a resolved path or an ``s3://`` URI); ``None`` in older journals
    output: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {
            "t": "job",
            "v": JOURNAL_VERSION,
            "job_id": self.job_id,
            "endpoint": self.endpoint,
            "input": self.input,
            "shard": self.shard,
            "ordered": self.ordered,
            "created": self.created,
        }
        if self.input_check is not None:
            data["input_check"] = self.input_check
        if self.output is not None:
            data["output"] = self.output
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JournalHeader:
        """:raises ValueError: not a header of this version, or a field of the wrong type."""
        if data.get("t") != "job" or data.get("v") != JOURNAL_VERSION:
            raise ValueError("not an aiosagemaker batch journal (bad first line)")
        for name, types in _HEADER_FIELDS.items():
            if not isinstance(data.get(name), types):
                raise ValueError(f"header field {name!r} is {_shown(data.get(name))}")
        return cls(
            job_id=data["job_id"],
            endpoint=data["endpoint"],
            input=data["input"],
            shard=data.get("shard"),
            ordered=bool(data.get("ordered", True)),
            created=float(data.get("created") or 0.0),
            input_check=data.get("input_check"),
            output=data.get("output"),
        )


_NUMBER = (int, float)
_HEADER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "job_id": str,
    "endpoint": str,
    "input": str,
    "shard": (str, type(None)),
    "ordered": (bool, type(None)),
    "created": (*_NUMBER, type(None)),
    "input_check": (dict, type(None)),
    "output": (str, type(None)),
}


def _shown(value: object) -> str:
    text = "missing" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_optional_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _is_optional_time(value: object) -> bool:
    return value is None or (isinstance(value, _NUMBER) and not isinstance(value, bool))


def _entry_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with one journal record (not the header); ``None`` when nothing is."""
    kind = data.get("t")
    if kind == "job":
        return "a second header line"
    if kind not in ("intent", "accepted", "result", "mark", "resume", "part"):
        return f"unknown record type {_shown(kind)}"
    if kind == "part":
        return _part_problem(data)
    a = f'an "{kind}" record' if kind in ("intent", "accepted") else f'a "{kind}" record'
    if kind == "resume":
        at = data.get("at")
        return None if _is_optional_time(at) else f'"at" of {a} is {_shown(at)}'
    if "n" not in data:
        return f'{a} without "n"'
    n = data["n"]
    if not _is_int(n) or n < (0 if kind == "mark" else 1):
        return f'"n" of {a} is {_shown(n)}, not an input number'
    if kind in ("intent", "accepted") and not (isinstance(data.get("id"), str) and data["id"]):
        return f'{a} without its inference id "id"'
    if kind == "accepted":
        for key in ("out", "fail"):
            if not _is_optional_str(data.get(key)):
                return f'"{key}" of {a} is {_shown(data.get(key))}'
        if not _is_optional_time(data.get("at")):
            return f'"at" of {a} is {_shown(data.get("at"))}'
    if kind == "result":
        record = data.get("rec")
        if not isinstance(record, dict):
            return f'{a} without its OUTPUT record "rec" ({_shown(record)})'
        if record.get("n") != n:
            return f"{a} for input {n} holds the record of input {_shown(record.get('n'))}"
        if not _is_optional_str(record.get("inference_id")):
            return f'"inference_id" of {a} is {_shown(record.get("inference_id"))}'
    return None


def _part_problem(data: dict[str, Any]) -> str | None:
    k, name, ranges = data.get("k"), data.get("name"), data.get("ranges")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        return f'"k" of a "part" record is {_shown(k)}, not a part number'
    if not isinstance(name, str) or not name or "/" in name:
        return f'"name" of a "part" record is {_shown(name)}'
    if not isinstance(ranges, list) or not all(
        isinstance(r, list)
        and len(r) == 2
        and _is_int(r[0])
        and _is_int(r[1])
        and 1 <= r[0] <= r[1]
        for r in ranges
    ):
        return f'"ranges" of a "part" record is {_shown(ranges)}, not a list of [first, last]'
    return None


@dataclass(frozen=True, slots=True)
class PartInfo:
    """A committed part object of OUTPUT."""

    k: int
    name: str
    ranges: list[list[int]]

    @property
    def records(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)


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
    #: OUTPUT of parts: the committed ones, in the order they were committed
    parts: list[PartInfo] = field(default_factory=list)

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


def _parse(line: bytes) -> Any:
    """The line's JSON value; ``_UNREADABLE`` when it is not JSON."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return _UNREADABLE


_UNREADABLE = object()


def read_header(path: Path) -> JournalHeader:
    """The header of an existing journal.

    :raises JournalFormatError: its first line is not a header of this version.
    :raises ValueError: it has no complete first line that is JSON.
    """
    return _header_of(scan_complete_lines(path), path)


def _header_of(lines: Iterable[tuple[bytes, int]], where: Path | str) -> JournalHeader:
    for line, _ in lines:
        data = _parse(line)
        if not isinstance(data, dict):
            break
        try:
            return JournalHeader.from_json(data)
        except ValueError as exc:
            raise JournalFormatError(where, 1, str(exc)) from None
    raise ValueError(f"{where} is not an aiosagemaker batch journal (no header line)")


def chunk_lines(chunks: list[bytes]) -> Iterator[tuple[bytes, int]]:
    """``(line, end_offset)`` for each line of a journal kept as whole chunks (S3 objects, each
    a run of complete lines), offsets counted across them."""
    offset = 0
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            yield chunk[start:end], offset + end + 1
            start = end + 1
        offset += len(chunk)


def scan_journal(
    journal: Path,
    output: Path | None,
    *,
    ordered: bool,
    output_n: Callable[[bytes], int | None],
) -> ResumeState:
    """Read a journal file and its OUTPUT into a :class:`ResumeState` (three streaming passes).

    1. the journal's header, its last ``mark``, its ``part`` records and where its last complete
       line ends;
    2. OUTPUT: which inputs are already there. A JSON Lines file: an ordered OUTPUT is a prefix of
       the input, so its last ``n`` is the watermark; else the ones past the mark are kept in a
       set. OUTPUT of parts (``output`` is ``None``): the inputs of the committed parts;
    3. the journal again: the intents, acceptances and results of inputs past the watermark that
       are not in OUTPUT; every line is checked.

    A complete line that is not JSON (what a power loss can leave in the last lines written) is
    skipped with a warning, as its input's state then falls back to an earlier record of it.

    :raises JournalFormatError: a complete line that is JSON but not a journal record.
    """
    return _scan(
        lambda: scan_complete_lines(journal),
        journal,
        output,
        ordered=ordered,
        output_n=output_n,
    )


def scan_journal_chunks(chunks: list[bytes], where: str) -> ResumeState:
    """:func:`scan_journal` for a journal kept as chunks (in S3) whose OUTPUT is parts."""
    return _scan(lambda: chunk_lines(chunks), where, None, ordered=False, output_n=None)


def _scan(
    lines: Callable[[], Iterable[tuple[bytes, int]]],
    where: Path | str,
    output: Path | None,
    *,
    ordered: bool,
    output_n: Callable[[bytes], int | None] | None,
) -> ResumeState:
    header = _header_of(lines(), where)
    good_length = 0
    mark = 0
    resumes = 0
    parts: dict[int, PartInfo] = {}
    for number, (line, end) in enumerate(lines(), 1):
        good_length = end
        if line.startswith((_MARK_PREFIX, _PART_PREFIX)):
            data = _parse(line)
            if isinstance(data, dict):
                problem = _entry_problem(data)
                if problem is not None:
                    raise JournalFormatError(where, number, problem)
                if data["t"] == "mark":
                    mark = max(mark, data["n"])
                else:  # a part written again after a failed commit: the last record is it
                    parts[data["k"]] = PartInfo(data["k"], data["name"], data["ranges"])
        elif line.startswith(b'{"t":"resume"'):
            resumes += 1
    state = ResumeState(header=header, good_length=good_length, watermark=mark, resumes=resumes)
    state.parts = [parts[k] for k in sorted(parts)]
    if output is None:
        for part in state.parts:
            state.output_records += part.records
            for first, last in part.ranges:
                state.done.update(range(max(first, mark + 1), last + 1))
    elif output.is_file():  # not a device or a pipe (``-o /dev/stdout``): nothing to resume
        assert output_n is not None
        last_n = 0
        for line, end in scan_complete_lines(output):
            n = output_n(line)
            if n is None:
                # A record we cannot read is not ours to rewrite: stop trusting OUTPUT here.
                logger.warning("OUTPUT %s has an unreadable line at byte %d", output, end)
                break
            state.output_good_length = end
            state.output_records += 1
            if ordered:
                last_n = max(last_n, n)
            elif n > mark:
                state.done.add(n)
        if ordered:
            state.watermark = max(state.watermark, last_n)
            state.done.clear()
    _scan_entries(lines(), where, state)
    return state


def _scan_entries(
    lines: Iterable[tuple[bytes, int]], journal: Path | str, state: ResumeState
) -> None:
    """Pass 3 of :func:`scan_journal`: check every line; keep what is known past the watermark."""
    watermark = state.watermark
    entries = state.entries
    for number, (line, _) in enumerate(lines, 1):
        data = _parse(line)
        if data is _UNREADABLE:
            logger.warning("skipping line %d of journal %s: not JSON", number, journal)
            continue
        if number == 1:
            continue  # the header, read already
        if not isinstance(data, dict):
            raise JournalFormatError(journal, number, f"not a journal record: {_shown(data)}")
        problem = _entry_problem(data)
        if problem is not None:
            raise JournalFormatError(journal, number, problem)
        kind = data["t"]
        if kind not in ("intent", "accepted", "result"):
            continue
        n = data["n"]
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


def open_append(path: Path) -> tuple[int, bool]:
    """Open ``path`` for appending, creating it (and its directory) if missing; return the file
    descriptor and whether this call created the file (its directory entry then needs an fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
        return os.open(path, flags), False


def fsync_directory(path: Path) -> None:
    """Make a new entry of directory ``path`` durable (blocking; a no-op where not supported)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def lock_exclusive(fd: int, path: Path) -> bool:
    """Take an exclusive ``flock`` on ``fd``'s file without waiting; ``False`` if another holds it.

    The lock lasts until ``fd`` is closed; the kernel drops it when its process ends, ``kill -9``
    included. On a file system without locks (some FUSE and old network mounts) it warns and
    returns ``True``: the run goes on, unprotected.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
            raise
        logger.warning(
            "cannot lock %s (%s): nothing stops another run of this job from using it at the "
            "same time",
            path,
            exc.strerror,
        )
    return True


def lock_holder(fd: int) -> int | None:
    """The process holding the ``flock`` on ``fd``'s file, from ``/proc/locks``; ``None`` when
    that cannot be told (not Linux, another machine, another PID namespace)."""
    try:
        st = os.fstat(fd)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a process waiting for it has "->".
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        parts = line.split()
        if "FLOCK" in parts and "->" not in parts and wanted in parts:
            pid = parts[parts.index(wanted) - 1]
            return int(pid) if pid.isdigit() and pid != "0" else None
    return None


def _write_fully(fd: int, data: bytes, *, sync: bool) -> tuple[int, OSError | None]:
    """Write ``data`` (then fsync): the bytes written, and the error that stopped it, if any."""
    done = 0
    view = memoryview(data)
    try:
        while done < len(data):
            done += os.write(fd, view[done:])
        if sync:
            os.fsync(fd)
    except OSError as exc:
        return done, exc
    return done, None


class JournalWriter(Protocol):
    """What a run appends to: a :class:`Journal` file, or an ``S3Journal`` (:mod:`._s3_journal`)."""

    #: where it is, for messages
    @property
    def path(self) -> Path | str: ...

    @property
    def uncommitted(self) -> int: ...

    def open(self) -> None: ...

    def append(self, record: dict[str, Any]) -> None: ...

    async def commit(self) -> None: ...

    async def aclose(self) -> None: ...


class Journal:
    """Appends records to the journal with group commit. Use as ``async with``.

    :param path: the journal file; created if missing.
    :param truncate_to: cut the file to this length first (a torn tail from a crash); ``0`` for a
        new job.
    :param fsync: make each commit durable across a power loss, not only a process crash (and a
        new journal's directory entry, once).
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
        await asyncio.to_thread(self.open)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def open(self) -> None:
        """Open (or create) the file for appending (blocking)."""
        fd, created = open_append(self.path)
        try:
            if self._truncate_to is not None:
                os.ftruncate(fd, self._truncate_to)
            if self._fsync and (created or self._truncate_to == 0):
                # A new journal: its directory entry must survive a power loss as its lines will.
                fsync_directory(self.path.parent)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def append(self, record: dict[str, Any]) -> None:
        """Queue one record; it is on disk after the next :meth:`commit` returns."""
        self._buffer.append(orjson.dumps(record) + b"\n")
        self._appended += 1

    @property
    def uncommitted(self) -> int:
        return self._appended - self._written

    async def commit(self) -> None:
        """Wait until every record appended so far is written (and fsynced).

        :raises OSError: the write failed; what it did not write stays queued, first, for the
            next commit (so a retry neither loses nor tears a line).
        """
        target = self._appended
        if self._written >= target:
            return
        async with self._lock:
            if self._written >= target:
                return
            fd = self._fd
            if fd is None:
                raise RuntimeError("journal is not open")
            data, self._buffer = b"".join(self._buffer), []
            upto = self._appended
            write = asyncio.ensure_future(
                asyncio.to_thread(_write_fully, fd, data, sync=self._fsync)
            )
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # The thread writes on regardless: hold the lock until it is done, so that two
                # writes never run at once, then let the cancellation through.
                await asyncio.wait([write])
                if not write.cancelled():
                    self._settle(data, upto, *write.result())
                raise
            error = self._settle(data, upto, *write.result())
            if error is not None:
                raise error
            self.commits += 1

    def _settle(self, data: bytes, upto: int, done: int, error: OSError | None) -> OSError | None:
        if done < len(data):
            self._buffer.insert(0, data[done:])
        else:  # every byte written (an fsync may still have failed: the error says so)
            self._written = upto
        return error

    async def aclose(self) -> None:
        """Write what is left and close, in a worker thread that finishes (and closes the file)
        even if this is cancelled.

        :raises OSError: the last write failed (the file is closed all the same).
        """
        async with self._lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            data, self._buffer = b"".join(self._buffer), []
            done, error = await asyncio.shield(
                asyncio.to_thread(_write_and_close, fd, data, sync=self._fsync and bool(data))
            )
            if done < len(data):
                self._buffer = [data[done:]]
            else:
                self._written = self._appended
            if error is not None:
                raise error


def _write_and_close(fd: int, data: bytes, *, sync: bool) -> tuple[int, OSError | None]:
    try:
        return _write_fully(fd, data, sync=sync)
    finally:
        os.close(fd)
