"""OUTPUT as numbered part objects, for outputs that cannot be appended to: Parquet, and S3.

``-o s3://bucket/prefix/`` (JSON Lines, or Parquet with ``--output-format parquet``) and ``-o
results.parquet`` (a local directory) write ``part-00000.jsonl`` (or ``.parquet``),
``part-00001...``: a Parquet dataset or a prefix of JSON Lines objects that Spark, Athena, DuckDB,
pandas and pyarrow read as one table.

**Each part is written whole, then committed.** A part holds up to ``part_records`` records (or
``part_bytes``, or what ``part_seconds`` gathered): S3 gets it in one PUT; a local directory gets a
hidden temporary file, fsynced, then renamed into place. Only then does the journal get a ``part``
record naming it and the inputs it holds, committed before the records count as written. So:

- a committed part (named by the journal) holds exactly its inputs' records, each input's record
  in exactly one committed part;
- a crash between the write and the commit leaves a part the journal does not name: the next run
  deletes it and writes its records again (they are journaled as *results*), so only committed
  parts are left under the prefix when a run ends.

While a run writes, a reader listing the prefix can see a part that a crash would make the next
run delete: read a job's output once its run has ended (exit 0 or 1).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from ._errors import BatchConfigError, BatchUsageError
from ._journal import fsync_directory
from ._records import part_entry
from ._writer import RecordWriter

if TYPE_CHECKING:
    from pathlib import Path

    from aiosagemaker import S3Uri

    from ._s3 import S3Objects

__all__ = [
    "DEFAULT_PART_BYTES",
    "DEFAULT_PART_RECORDS",
    "DEFAULT_PART_SECONDS",
    "LocalParts",
    "PartStore",
    "PartWriter",
    "S3Parts",
    "encode_part",
    "part_name",
]

logger = logging.getLogger("aiosagemaker")

#: A part is cut at this many records, at this many bytes of JSON, or this many seconds after
#: its first record: big enough for columnar reads and few S3 PUTs, small enough that a resume
#: holds no more than one part's records in memory and a crash redoes no more than one part.
DEFAULT_PART_RECORDS = 50_000
DEFAULT_PART_BYTES = 64 << 20
DEFAULT_PART_SECONDS = 60.0
# Seconds between the tries of a failed part write (S3's own calls retry too): then give up.
_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)
_PART_PREFIX = "part-"


def part_name(k: int, fmt: str) -> str:
    """The name of part ``k`` in format ``fmt`` (``jsonl`` or ``parquet``)."""
    return f"{_PART_PREFIX}{k:05d}.{fmt}"


def _part_number(name: str) -> int | None:
    stem = name.partition(".")[0]
    if not stem.startswith(_PART_PREFIX) or not stem[len(_PART_PREFIX) :].isdigit():
        return None
    return int(stem[len(_PART_PREFIX) :])


class PartStore(Protocol):
    """Where parts go: a local directory or an S3 prefix."""

    #: the location, for messages (a path or an ``s3://`` URI)
    where: str

    async def write(self, name: str, data: bytes) -> None: ...

    async def names(self) -> list[str]: ...

    async def delete(self, name: str) -> None: ...


class LocalParts:
    """Parts in a local directory: each written to a hidden temporary file, fsynced, renamed."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = directory
        self.where = str(directory)
        self._fsync = fsync

    async def write(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, name, data)

    def _write(self, name: str, data: bytes) -> None:
        created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        if created and self._fsync:
            fsync_directory(self.directory.parent)
        temporary = self.directory / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.directory / name)
        if self._fsync:
            fsync_directory(self.directory)

    async def names(self) -> list[str]:
        def listing() -> list[str]:
            if not self.directory.is_dir():
                return []
            return sorted(p.name for p in self.directory.iterdir())

        return await asyncio.to_thread(listing)

    async def delete(self, name: str) -> None:
        await asyncio.to_thread((self.directory / name).unlink, missing_ok=True)


class S3Parts:
    """Parts under an S3 prefix, each one PUT."""

    def __init__(self, s3: S3Objects, prefix: S3Uri) -> None:
        self._s3 = s3
        self._prefix = prefix
        self.where = str(prefix)

    async def write(self, name: str, data: bytes) -> None:
        content_type = "application/x-ndjson" if name.endswith(".jsonl") else None
        await self._s3.put(self._prefix.join(name), data, content_type=content_type)

    async def names(self) -> list[str]:
        listed = await self._s3.list(self._prefix.join(_PART_PREFIX))
        return [info.uri.key.rsplit("/", 1)[-1] for info in listed]

    async def delete(self, name: str) -> None:
        await self._s3.delete(self._prefix.join(name))


def encode_part(records: list[dict[str, Any]], fmt: str) -> bytes:
    """The bytes of a part (blocking: Parquet encoding is CPU work, run it in a thread).

    Parquet columns: ``n`` (int64), ``id``, ``inference_id``, ``status``, ``output_location``,
    ``content_type``, ``output`` (the output as JSON text: outputs differ in shape from one input
    to the next, so one typed column cannot hold them), ``failure_reason`` (strings), and
    ``timings`` (a struct of ``submitted``, ``accepted``, ``completed`` and ``latency_ms``).
    """
    if fmt == "jsonl":
        return b"".join(orjson.dumps(r) + b"\n" for r in records)
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "n": pa.array([r["n"] for r in records], pa.int64()),
        "id": pa.array([r.get("id") for r in records], pa.string()),
        "inference_id": pa.array([r.get("inference_id") for r in records], pa.string()),
        "status": pa.array([r.get("status") for r in records], pa.string()),
        "output_location": pa.array([r.get("output_location") for r in records], pa.string()),
        "content_type": pa.array([r.get("content_type") for r in records], pa.string()),
        "output": pa.array(
            [
                None if r.get("output") is None else orjson.dumps(r["output"]).decode()
                for r in records
            ],
            pa.string(),
        ),
        "failure_reason": pa.array([r.get("failure_reason") for r in records], pa.string()),
        "timings": pa.array([r.get("timings") for r in records], _timings_type()),
    }
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, compression="zstd")
    return sink.getvalue()


def _timings_type() -> Any:
    """The Parquet type of ``timings`` (built on use: pyarrow is optional)."""
    import pyarrow as pa

    return pa.struct(
        [
            ("submitted", pa.float64()),
            ("accepted", pa.float64()),
            ("completed", pa.float64()),
            ("latency_ms", pa.float64()),
        ]
    )


class PartWriter(RecordWriter):
    """Writes records to OUTPUT as part objects, each committed by the journal (see the module).

    :param store: where the parts go.
    :param fmt: ``jsonl`` or ``parquet``.
    :param committed: the parts the journal names (a resume); any other part there is deleted.
    :param resuming: a journal is resumed (perhaps with no part committed yet): parts there are
        a crash's leftovers, not another job's OUTPUT.
    :param kwargs: the :class:`RecordWriter`'s.
    """

    marks_ordered = True

    def __init__(
        self,
        store: PartStore,
        *,
        fmt: str,
        committed: list[str] | None = None,
        next_part: int = 0,
        resuming: bool = False,
        part_records: int = DEFAULT_PART_RECORDS,
        part_bytes: int = DEFAULT_PART_BYTES,
        part_seconds: float = DEFAULT_PART_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.fmt = fmt
        self.path = store.where
        self._committed = set(committed or ())
        self._resuming = resuming
        self._next = next_part
        self._part_records = part_records
        self._part_bytes = part_bytes
        self._part_seconds = part_seconds
        self._records: list[dict[str, Any]] = []
        self._bytes = 0
        self._started: float | None = None
        self._io = asyncio.Lock()
        #: parts this run committed
        self.parts_written = 0

    async def start(self, *, overwrite: bool) -> None:
        """Delete parts no journal record names (a crash's leftovers; a new job's old OUTPUT with
        ``overwrite``).

        :raises BatchUsageError: a new job, parts there, and no ``overwrite``.
        """
        stale = [
            name
            for name in await self.store.names()
            if _part_number(name) is not None and name not in self._committed
        ]
        if stale and not self._resuming and not overwrite:
            raise BatchUsageError(
                f"OUTPUT {self.store.where} already holds {len(stale)} part(s) and there is no "
                "journal to resume from; remove them or pass --overwrite"
            )
        for name in stale:
            logger.info("deleting %s/%s: no journal record names it", self.store.where, name)
            await self.store.delete(name)

    def _add_record(self, n: int, record: dict[str, Any]) -> None:
        if self.error is not None:
            return  # OUTPUT cannot be written: the record is in the journal for the next run
        if not self._records:
            self._started = time.monotonic()
        self._records.append(record)
        self._bytes += len(orjson.dumps(record))

    def _due(self) -> bool:
        return len(self._records) >= self._part_records or self._bytes >= self._part_bytes

    async def flush(self, *, sync: bool = False, final: bool = False) -> bool:
        """Write the part being filled if it is due (full, or old and ``sync``, or ``final``)."""
        async with self._io:
            if self.error is not None:
                return False
            if not self._records:
                return True
            aged = (
                sync
                and self._started is not None
                and time.monotonic() - self._started >= self._part_seconds
            )
            if not (final or aged or self._due()):
                return True
            return await self._write_part()

    async def _write_part(self) -> bool:
        records, self._records, self._bytes = self._records, [], 0
        ns = [r["n"] for r in records]
        name = part_name(self._next, self.fmt)
        started = time.monotonic()
        # Encoded once (Parquet is CPU work); only the write is tried again.
        data = await asyncio.to_thread(encode_part, records, self.fmt)
        for delay in (*_RETRY_DELAYS, None):
            try:
                await self.store.write(name, data)
                break
            except OSError as exc:  # S3Error too
                if delay is None:
                    self._records = records + self._records
                    self._give_up(name, exc, time.monotonic() - started)
                    return False
                logger.warning("cannot write %s/%s (%s); trying again", self.path, name, exc)
                await asyncio.sleep(delay)
        self._journal.append(part_entry(self._next, name, ns))
        try:
            await self._journal.commit()
        except OSError as exc:
            # The part is there, unnamed: the next run deletes it and writes its records again.
            self._records = records + self._records
            self._give_up(name, exc, time.monotonic() - started, journal=True)
            return False
        self._next += 1
        self.parts_written += 1
        self._stats.written += len(records)
        self._durable(ns)
        return True

    def _give_up(self, name: str, error: OSError, seconds: float, *, journal: bool = False) -> None:
        self.error = error
        what = f"commit part {name} to the journal" if journal else f"write part {name}"
        message = (
            f"cannot {what} of OUTPUT {self.path}: {error} (for {seconds:.1f} s); the "
            f"{len(self._records):,} results not in a committed part are in the journal, and "
            "the next run writes them"
        )
        if self._on_error is not None:
            self._on_error(BatchConfigError(message))
