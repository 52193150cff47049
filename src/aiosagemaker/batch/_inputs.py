"""Read a batch job's inputs as a stream: JSON Lines (plain or gzip), Parquet, a directory of
files, stdin, or S3 objects.

Each input becomes one :class:`InputItem`, numbered ``n`` from 1 in input order (the line number of
a JSON Lines input, the row number of a Parquet one, the position in the sorted listing of a
directory). :func:`open_input_source` picks the source by the input's name:

- ``-``: JSON Lines from stdin;
- a directory: every regular, non-hidden file directly in it, one input each, in sorted order;
- a file ending in ``.parquet`` or ``.pq``: one input per row (:mod:`._input_parquet`);
- a file ending in ``.gz``: gzip JSON Lines (every member of a multi-member file), decompressed
  as it is read;
- any other file: JSON Lines;
- ``s3://bucket/key``: one object, or every object under a prefix, each read by its own name as
  above (:mod:`._input_s3`).

A JSON Lines line is an envelope (``body`` or ``body_base64``, optional ``content_type`` and
``id``) or a payload sent as it is (:func:`parse_line`, :mod:`._input_base`). Bad lines and rows
become items with an ``error`` and no body, so the batch reports them in place without stopping.
Reading is done in blocks in a worker thread, so neither a large file nor a slow pipe blocks the
event loop, and memory stays bounded by one block.

An input that cannot be read as its name says (a missing Parquet column, a bad ``s3://`` URI, a
prefix with no objects, corrupt gzip) raises :class:`InputError`, when it is opened if that can
be told then, else when the bad part is read.

Two inputs with the same id are both sent, and OUTPUT gets two records with that id (told apart
by ``n``); :class:`DuplicateIds` counts such inputs and names the first few in one warning.

A journal maps its records to inputs by ``n`` alone, so a rerun must read the same inputs in the
same order: :meth:`InputSource.fingerprint` is what the journal records to check that on a rerun
(:func:`input_changes`).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import mimetypes
import os
import shlex
import stat
import sys
import time
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._input_base import (
    BINARY_CONTENT_TYPE,
    BLOCK_BYTES,
    BLOCK_LINES,
    JSON_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    WHOLE_HASH_LIMIT,
    InputError,
    InputItem,
    InputSource,
    file_fingerprint,
    parse_line,
)
from ._input_parquet import (
    PARQUET_SUFFIXES,
    ParquetColumns,
    ParquetUnavailableError,
    open_parquet_source,
)
from ._input_s3 import open_s3_source

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = [
    "BINARY_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "DuplicateIds",
    "InputError",
    "InputItem",
    "InputSource",
    "ParquetUnavailableError",
    "Shard",
    "input_changes",
    "open_input_source",
    "parse_line",
]

logger = logging.getLogger("aiosagemaker")


@dataclass(frozen=True, slots=True)
class Shard:
    """``i/N``: this process handles the inputs whose id hashes to ``i`` modulo ``N``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``"i/N"`` with ``0 <= i < N``; raise ``ValueError`` otherwise."""
        index, sep, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            raise ValueError(f"--shard must be i/N (e.g. 0/4), not {text!r}") from None
        if not sep or shard.count < 1 or not 0 <= shard.index < shard.count:
            raise ValueError(f"--shard must be i/N with 0 <= i < N, not {text!r}")
        return shard

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def __contains__(self, input_id: object) -> bool:
        if not isinstance(input_id, str):
            return False
        return shard_of(input_id, self.count) == self.index


def shard_of(input_id: str, count: int) -> int:
    """The shard (``0 <= s < count``) of an input id: a stable hash, the same on every machine."""
    digest = hashlib.blake2b(input_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


class DuplicateIds:
    """Spots inputs whose id an earlier input already had, in memory that stays small.

    .. code-block:: python

        duplicates = DuplicateIds()
        for item in items:
            duplicates.add(item.input_id)   # True if an earlier input had this id
        duplicates.warn()                   # one warning naming the first few, if any

    It keeps an 8-byte hash of each distinct id, not the id, in an open-addressing table of
    ``array('Q')`` slots kept at most 3/4 full (doubled when it gets there): 11 to 21 bytes per
    distinct id, so 11-21 MB per million inputs (measured 16.8 MB at one million), and briefly
    1.5 times that while the table doubles. A Python ``set`` of the same hashes costs about 70 MB
    per million (an int object and a set slot each); the ids themselves would cost more again.
    CPU: about 3.5 µs per input (a BLAKE2b hash and a probe), 3.6 s per million.

    A hash names an id, so two different ids are taken for one with probability about
    ``n**2 / 2**65`` (3e-6 for ten million ids); the only effect would be one duplicate too many
    in the count and the warning, since the check changes nothing about what is sent or written.

    :param examples: how many distinct duplicate ids the warning names.
    """

    # 1024 slots (8 KiB) to start: nothing to speak of for a small job, few doublings for a big one.
    _INITIAL_SLOTS = 1024

    def __init__(self, *, examples: int = 5) -> None:
        self._slots = array("Q", [0]) * self._INITIAL_SLOTS
        self._mask = self._INITIAL_SLOTS - 1
        self._used = 0
        self._examples = examples
        self._unnamed = False
        self._warned = False
        #: inputs whose id an earlier input had (an id seen three times counts two)
        self.count = 0
        #: the first few duplicate ids, each once, in the order their repeats were read
        self.examples: list[str] = []

    def __repr__(self) -> str:
        return f"<DuplicateIds [{self._used:,} ids, {self.count:,} duplicates]>"

    @property
    def nbytes(self) -> int:
        """Bytes the table of hashes takes: the part that grows with the input."""
        return len(self._slots) * self._slots.itemsize

    def add(self, input_id: str) -> bool:
        """Remember ``input_id``; return whether an earlier input had it (and count it if so)."""
        # A hash of its own (``person``), not shard_of's: every id of one shard has the same
        # shard_of hash modulo N, which would crowd the table's slots.
        digest = hashlib.blake2b(
            input_id.encode("utf-8", "surrogatepass"), digest_size=8, person=b"aiosm-dup"
        ).digest()
        value = int.from_bytes(digest, "little") or 1  # 0 marks an empty slot
        slots, mask = self._slots, self._mask
        i = value & mask
        while True:
            current = slots[i]
            if current == 0:
                break
            if current == value:
                self._duplicate(input_id)
                return True
            i = (i + 1) & mask
        slots[i] = value
        self._used += 1
        if self._used * 4 > len(slots) * 3:
            self._grow()
        return False

    def _duplicate(self, input_id: str) -> None:
        self.count += 1
        if input_id in self.examples:
            return
        if len(self.examples) < self._examples:
            self.examples.append(input_id)
        else:
            self._unnamed = True

    def _grow(self) -> None:
        old = self._slots
        size = 2 * len(old)
        slots = array("Q", [0]) * size
        mask = size - 1
        for value in old:
            if value:
                i = value & mask
                while slots[i]:
                    i = (i + 1) & mask
                slots[i] = value
        self._slots, self._mask = slots, mask

    def warn(self) -> None:
        """Log one warning naming the first few duplicate ids, if there were any; once only."""
        if not self.count or self._warned:
            return
        self._warned = True
        # Ids are the user's labels, not payloads; a long one is cut so the line stays a line.
        named = ", ".join(repr(i if len(i) <= 64 else i[:61] + "...") for i in self.examples)
        logger.warning(
            "%d input(s) reuse the id of an earlier input (%s%s): each input still gets its own "
            'record, so OUTPUT has more than one record with each of these ids (see "n")',
            self.count,
            named,
            ", ..." if self._unnamed else "",
        )


class _LinesSource(InputSource):
    """JSON Lines from stdin or a file; a file whose name ends in ``.gz`` is gzip, decompressed
    as it is read (in the worker thread, with the reading)."""

    def __init__(self, stream: IO[bytes] | None, path: Path | None, **kwargs: Any) -> None:
        super().__init__(str(path.resolve()) if path else "-", **kwargs)
        self._stream = stream
        self._path = path
        self._gzip = path is not None and path.name.lower().endswith(".gz")

    def fingerprint(self, *, hashed_bytes: int | None = None) -> dict[str, Any]:
        if self._path is None or not stat.S_ISREG(os.stat(self._path).st_mode):
            # stdin, a named pipe, a device: reading it would consume it (opening a pipe, wait)
            return {"kind": "stream"}
        return file_fingerprint(self._path, hashed_bytes)

    def count(self) -> int | None:
        if self._path is None or self._gzip:
            return None  # gzip: counting would decompress the whole file once more
        lines = 0
        last = b"\n"
        with open(self._path, "rb") as f:
            while block := f.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
        return lines + (last != b"\n")

    def _open(self) -> IO[bytes] | gzip.GzipFile:
        assert self._path is not None
        if self._gzip:
            return gzip.open(self._path, "rb")
        return open(self._path, "rb")

    async def items(self) -> AsyncIterator[InputItem]:
        stream: IO[bytes] | gzip.GzipFile | None = self._stream
        owned = stream is None
        if stream is None:
            stream = await asyncio.to_thread(self._open)
        try:
            n = 0
            while True:
                try:
                    block = await asyncio.to_thread(_read_block, stream)
                except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                    if not self._gzip:
                        raise
                    raise InputError(f"input {self._path} is not valid gzip: {exc}") from None
                if not block:
                    return
                for line in block:
                    n += 1
                    yield parse_line(line, n, self.default_content_type)
        finally:
            if owned:
                stream.close()


def _read_block(stream: IO[bytes] | gzip.GzipFile) -> list[bytes]:
    lines: list[bytes] = []
    size = 0
    while len(lines) < BLOCK_LINES and size < BLOCK_BYTES:
        line = stream.readline()
        if not line:
            break
        size += len(line)
        lines.append(line[:-1] if line.endswith(b"\n") else line)
    return lines


class _DirectorySource(InputSource):
    """Every regular, non-hidden file directly in a directory, in sorted order, one input each."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(str(path.resolve()), **kwargs)
        self._path = path

    def _names(self) -> list[str]:
        with os.scandir(self._path) as entries:
            return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_file())

    def count(self) -> int | None:
        return len(self._names())

    def fingerprint(self, *, hashed_bytes: int | None = None) -> dict[str, Any]:
        digest = hashlib.sha256()
        names = self._names()
        for name in names:
            try:
                st = os.stat(self._path / name)
            except OSError:
                digest.update(b"?")  # unreadable now: its input is an error record
                continue
            entry = f"{len(name)}:{name}:{st.st_size}:{st.st_mtime_ns}\n"
            digest.update(entry.encode("utf-8", "surrogateescape"))
        return {"kind": "directory", "files": len(names), "sha256": digest.hexdigest()}

    async def items(self) -> AsyncIterator[InputItem]:
        names = await asyncio.to_thread(self._names)
        for start in range(0, len(names), BLOCK_LINES):
            chunk = names[start : start + BLOCK_LINES]
            bodies = await asyncio.to_thread(_read_files, self._path, chunk)
            for offset, (name, body) in enumerate(zip(chunk, bodies, strict=True)):
                n = start + offset + 1
                if isinstance(body, str):
                    yield InputItem(n, name, error=body)
                else:
                    content_type = (
                        self.default_content_type
                        or mimetypes.guess_type(name)[0]
                        or BINARY_CONTENT_TYPE
                    )
                    yield InputItem(n, name, body=body, content_type=content_type)


def _read_files(directory: Path, names: list[str]) -> list[bytes | str]:
    out: list[bytes | str] = []
    for name in names:
        try:
            out.append((directory / name).read_bytes())
        except OSError as exc:
            out.append(f"cannot read {name}: {exc.strerror or exc}")
    return out


def input_changes(recorded: dict[str, Any], current: dict[str, Any], path: str) -> list[str]:
    """How the input differs from the one a journal recorded; ``[]`` when it is the same.

    A file checksummed whole is the same when its size and checksum are: a new modification time
    alone (``touch``, a copy) does not count. A larger file is checked by its size, its first MiB
    and its modification time, which then must match too. A directory is checked by its files'
    names, sizes and times, an S3 input by its objects' keys, sizes and ETags (a rewrite of an
    object with the same bytes gets the same ETag unless it was a multipart upload).

    :param recorded: the journal's fingerprint; ``current``: the input's now, made with the
        recorded ``hashed_bytes`` (:meth:`InputSource.fingerprint`).
    :param path: the input, for the command that restores a modification time.
    """
    kind, now = recorded.get("kind"), current.get("kind")
    if kind != now:
        return [f"it was a {kind}, it is now a {now}"]
    if kind == "directory":
        if recorded.get("files") != current.get("files"):
            return [f"it had {recorded.get('files')} files, it has {current.get('files')}"]
        if recorded.get("sha256") != current.get("sha256"):
            return ["a file was replaced, renamed, resized or modified"]
        return []
    if kind == "s3":
        return _s3_changes(recorded, current)
    if kind != "file":
        return []
    changes = []
    size, new_size = recorded.get("size"), current.get("size")
    hashed = recorded.get("hashed_bytes")
    same_head = recorded.get("sha256") == current.get("sha256")
    whole = isinstance(size, int) and hashed == size
    if size != new_size:
        changes.append(f"size {_count(size)} -> {_count(new_size)} bytes")
        if whole and same_head and isinstance(size, int) and isinstance(new_size, int):
            if new_size > size:  # the whole old file is the start of the new one
                changes.append(f"{new_size - size:,} bytes added at the end")
    if not same_head:
        what = "the whole file" if whole else f"its first {_count(hashed)} bytes"
        changes.append(f"content changed (SHA-256 of {what})")
    if not changes and not whole and recorded.get("mtime_ns") != current.get("mtime_ns"):
        then, now_ns = recorded.get("mtime_ns"), current.get("mtime_ns")
        changes.append(
            f"modified at {_local_time(now_ns)}, not {_local_time(then)}: its size and first "
            f"{_count(hashed)} bytes are unchanged, but a file over "
            f"{WHOLE_HASH_LIMIT >> 20} MiB is not checksummed whole; if its content is the "
            f"same, restore its time with touch -d @{_seconds(then)} {shlex.quote(path)}"
        )
    return changes


def _s3_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    then, now = recorded.get("objects"), current.get("objects")
    size, new_size = recorded.get("bytes"), current.get("bytes")
    resized = ""
    if isinstance(size, int) and isinstance(new_size, int) and size != new_size:
        resized = f"; {size:,} -> {new_size:,} bytes in all"
    if then != now:
        return [f"it had {_count(then)} objects, it has {_count(now)}{resized}"]
    if recorded.get("sha256") != current.get("sha256"):
        return [
            "an object was replaced, modified or renamed (the keys, sizes or ETags of its "
            f"{_count(now)} objects differ{resized})"
        ]
    return []


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else repr(value)


def _local_time(ns: object) -> str:
    if not isinstance(ns, int):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9)) + f".{ns % 10**9:09d}"


def _seconds(ns: object) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}" if isinstance(ns, int) else "?"


def open_input_source(
    spec: str,
    *,
    default_content_type: str | None = None,
    payload_column: str = "body",
    id_column: str | None = None,
) -> InputSource:
    """``-`` (stdin), a directory, a JSON Lines file (``.gz``: gzip), a Parquet file (``.parquet``
    or ``.pq``), or ``s3://bucket/key-or-prefix`` (listed by :meth:`InputSource.open`).

    Blocking, briefly: it looks at the path, and reads a Parquet file's footer to check its
    columns (not the objects of an S3 input: those are looked at by ``open``).

    :param default_content_type: the content type of every input, not the one its kind implies.
    :param payload_column: the column of a Parquet input that holds the payload.
    :param id_column: the column of a Parquet input that holds the input's id; ``None``: the row
        number. Both are ignored by the other kinds of input (those of an S3 input excepted).
    :raises FileNotFoundError: ``spec`` names nothing.
    :raises InputError: a bad ``s3://`` URI, a Parquet file that is not one or lacks a column.
    :raises ParquetUnavailableError: a Parquet file, and pyarrow is not installed (an
        :class:`InputError` too).
    """
    columns = ParquetColumns(payload_column, id_column)
    if spec == "-":
        return _LinesSource(sys.stdin.buffer, None, default_content_type=default_content_type)
    if spec.startswith("s3://"):
        return open_s3_source(spec, columns=columns, default_content_type=default_content_type)
    path = Path(spec)
    if path.is_dir():
        return _DirectorySource(path, default_content_type=default_content_type)
    if not path.exists():
        raise FileNotFoundError(f"input {spec!r} does not exist")
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        return open_parquet_source(path, columns=columns, default_content_type=default_content_type)
    return _LinesSource(None, path, default_content_type=default_content_type)
