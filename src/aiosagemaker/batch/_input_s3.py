"""S3 inputs: ``s3://bucket/key`` (one object) or ``s3://bucket/prefix/`` (every object below it).

:meth:`S3Source.open` lists the input once: a URI without a trailing slash that names an object
is that object alone; else it is a prefix (``s3://b/data`` is ``s3://b/data/``), whose objects are
read in key order (S3's, UTF-8 binary order), leaving out folder markers (keys ending in ``/``)
and every object whose name, or any folder of it below the prefix, starts with ``_`` or ``.``
(``_SUCCESS``, ``_journal/``, ``.crc`` files: what Spark and Arrow datasets leave out). That
listing is what the job reads and what the fingerprint hashes (key, size and ETag of each object),
so :meth:`~._input_base.InputSource.fingerprint` does no network I/O, and a rerun tells whether an
object was added, removed or replaced since the job started.

Each object is read by the end of its key: ``.parquet`` or ``.pq`` as Parquet
(:mod:`._input_parquet`), ``.gz`` as gzip JSON Lines, anything else as JSON Lines; ``n`` numbers
the inputs across objects, one after the other, as if they were one file. Every S3 call goes
through :class:`~._s3.S3Objects` (``ExpectedBucketOwner``, retries, clear errors).

Memory does not grow with an object: JSON Lines are streamed in chunks (:meth:`S3Objects.chunks`)
and split into lines as they come, a gzip object is decompressed as it comes (every member, as
``cat a.gz b.gz`` makes, in a worker thread, at most a block of text per trip, so a highly
compressed object cannot swell); a Parquet object, which is read from its footer, is first
streamed to a temporary file (disk, not memory, holds it while it is read).
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import zlib
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from aiosagemaker import InvalidRequestError, S3Uri, parse_s3_uri

from ._input_base import BLOCK_BYTES, InputError, InputItem, InputSource, parse_line
from ._input_parquet import (
    PARQUET_SUFFIXES,
    ParquetColumns,
    open_parquet,
    parquet_items,
    require_pyarrow,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

    from ._s3 import ObjectInfo, S3Objects

__all__ = ["S3Source", "is_listed_input", "list_inputs", "open_s3_source", "parse_input_uri"]

_CHUNK_BYTES = 1 << 20


def parse_input_uri(spec: str) -> S3Uri:
    """``s3://bucket/key-or-prefix``, parsed; :class:`~._input_base.InputError` if it is not."""
    try:
        return parse_s3_uri(spec, field="input")
    except InvalidRequestError as exc:
        raise InputError(str(exc)) from None


def is_listed_input(relative: str) -> bool:
    """Whether an object, by its key below the prefix, is an input: not a folder marker, and no
    part of its name starts with ``_`` or ``.``."""
    if not relative or relative.endswith("/"):
        return False
    return not any(part.startswith(("_", ".")) for part in relative.split("/"))


async def list_inputs(s3: S3Objects, uri: S3Uri) -> list[ObjectInfo]:
    """The objects an ``s3://`` input names (see the module's docstring), in key order.

    :raises InputError: there is no input object there.
    :raises S3Error: S3 refused (no such bucket, access denied ...).
    """
    if uri.key and not uri.key.endswith("/"):
        info = await s3.head(uri)
        if info is not None:
            return [info]
        prefix = S3Uri(uri.bucket, uri.key + "/")
    else:
        prefix = uri
    listed = await s3.list(prefix)
    found = sorted(
        (o for o in listed if is_listed_input(o.uri.key[len(prefix.key) :])),
        key=lambda o: o.uri.key,
    )
    if not found:
        skipped = len(listed)
        raise InputError(
            f"no input objects under {prefix}"
            + (
                f" ({skipped} object(s) left out: folder markers, names starting with _ or .)"
                if skipped
                else ""
            )
        )
    return found


class S3Source(InputSource):
    """An ``s3://`` input: one object, or every object under a prefix (module docstring).

    :param chunk_size: bytes per streamed read of an object.
    """

    uses_s3 = True

    def __init__(
        self,
        uri: S3Uri,
        *,
        columns: ParquetColumns,
        default_content_type: str | None,
        chunk_size: int = _CHUNK_BYTES,
    ) -> None:
        super().__init__(str(uri), default_content_type=default_content_type)
        self.uri = uri
        self._columns = columns
        self._chunk_size = chunk_size
        self._s3: S3Objects | None = None
        self._objects: list[ObjectInfo] | None = None

    @property
    def objects(self) -> list[ObjectInfo]:
        """The objects read, as listed by :meth:`open`."""
        if self._objects is None:
            raise RuntimeError(f"S3 input {self.identity}: call open() first")
        return self._objects

    async def open(self, s3: S3Objects | None) -> None:
        """List the input's objects (again, if opened before).

        :raises TypeError: ``s3`` is ``None``.
        :raises InputError: no input object there.
        :raises ParquetUnavailableError: a Parquet object, and no pyarrow.
        :raises S3Error: S3 refused the listing.
        """
        if s3 is None:
            raise TypeError(f"the S3 input {self.identity} needs an S3Objects to open()")
        objects = await list_inputs(s3, self.uri)
        if any(_is_parquet(o.uri.key) for o in objects):
            require_pyarrow()
        self._s3, self._objects = s3, objects

    async def aclose(self) -> None:
        self._s3 = None

    def fingerprint(self, *, hashed_bytes: int | None = None) -> dict[str, Any]:
        digest = hashlib.sha256()
        total = 0
        for o in self.objects:
            digest.update(f"{o.uri.key}\t{o.size}\t{o.etag}\n".encode("utf-8", "surrogatepass"))
            total += o.size
        return {
            "kind": "s3",
            "objects": len(self.objects),
            "bytes": total,
            "sha256": digest.hexdigest(),
        }

    async def items(self) -> AsyncIterator[InputItem]:
        objects, s3 = self.objects, self._s3
        if s3 is None:
            raise RuntimeError(f"S3 input {self.identity} is closed")
        n = 1
        for info in objects:
            key = info.uri.key.lower()
            if key.endswith(PARQUET_SUFFIXES):
                reader = self._parquet_items(s3, info, n)
            else:
                reader = self._lines_items(s3, info, n, gzip=key.endswith(".gz"))
            # aclosing: a reader left part way (the job stopped) lets go of its GET at once.
            async with aclosing(reader):
                async for item in reader:
                    yield item
                    n = item.n + 1

    def _chunks(self, s3: S3Objects, info: ObjectInfo) -> AsyncGenerator[bytes, None]:
        # Closed at once by its reader if left part way (the job stopped): its GET's connection
        # goes back to the pool then. Only the listed version is read (a replaced object fails).
        return s3.chunks(info.uri, size=self._chunk_size, if_match=info.etag or None)

    async def _lines_items(
        self, s3: S3Objects, info: ObjectInfo, first_n: int, *, gzip: bool
    ) -> AsyncGenerator[InputItem, None]:
        lines = _LineSplitter()
        gunzip = _Gunzip() if gzip else None
        n = first_n
        chunks = self._chunks(s3, info)
        async with aclosing(chunks):
            async for chunk in chunks:
                if gunzip is None:
                    for line in lines.push(chunk):
                        yield parse_line(line, n, self.default_content_type)
                        n += 1
                    continue
                gunzip.feed(chunk)
                while text := await _gunzip_read(gunzip, info.uri):
                    for line in lines.push(text):
                        yield parse_line(line, n, self.default_content_type)
                        n += 1
        if gunzip is not None and not gunzip.complete:
            raise InputError(
                f"input {info.uri} ends in the middle of a gzip stream (a truncated file?)"
            )
        last = lines.end()
        if last is not None:
            yield parse_line(last, n, self.default_content_type)

    async def _parquet_items(
        self, s3: S3Objects, info: ObjectInfo, first_n: int
    ) -> AsyncGenerator[InputItem, None]:
        spool = await asyncio.to_thread(tempfile.TemporaryFile)
        try:
            chunks = self._chunks(s3, info)
            async with aclosing(chunks):
                async for chunk in chunks:
                    await asyncio.to_thread(spool.write, chunk)
            await asyncio.to_thread(spool.seek, 0)
            parquet_file = await asyncio.to_thread(
                open_parquet, spool, str(info.uri), self._columns
            )
            rows = parquet_items(
                parquet_file, str(info.uri), self._columns, first_n, self.default_content_type
            )
            try:
                async with aclosing(rows):
                    async for item in rows:
                        yield item
            finally:
                parquet_file.close()
        finally:
            spool.close()


def _is_parquet(key: str) -> bool:
    return key.lower().endswith(PARQUET_SUFFIXES)


async def _gunzip_read(gunzip: _Gunzip, uri: S3Uri) -> bytes:
    try:
        return await asyncio.to_thread(gunzip.read, BLOCK_BYTES)
    except zlib.error as exc:
        raise InputError(f"input {uri} is not valid gzip: {exc}") from None


class _LineSplitter:
    """Bytes in, complete lines out (without their ``\\n``), as a file's ``readline`` gives them;
    a line split over many pieces is joined once, not once per piece."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def push(self, data: bytes) -> list[bytes]:
        if b"\n" not in data:
            if data:
                self._parts.append(data)
            return []
        lines = data.split(b"\n")
        if self._parts:
            self._parts.append(lines[0])
            lines[0] = b"".join(self._parts)
        last = lines.pop()
        self._parts = [last] if last else []
        return lines

    def end(self) -> bytes | None:
        """The last line, when the input does not end with a newline."""
        if not self._parts:
            return None
        last = b"".join(self._parts)
        self._parts = []
        return last


class _Gunzip:
    """Incremental gunzip: compressed chunks in (:meth:`feed`), text out in pieces of at most
    ``limit`` bytes (:meth:`read`), across every member of a multi-member file, skipping the zero
    padding gzip allows after a member."""

    def __init__(self) -> None:
        self._decoder = zlib.decompressobj(wbits=31)
        self._pending = b""  # compressed bytes the decoder has not taken yet
        self._started = False  # whether the current member has had any input
        self._full = False  # the last decompress filled its limit: it may hold more output

    def feed(self, data: bytes) -> None:
        self._pending += data

    @property
    def complete(self) -> bool:
        """Whether the input so far ends at the end of a member (or is empty)."""
        return not self._started or (self._decoder.eof and not self._pending.strip(b"\0"))

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of text; ``b""`` when it needs more input (blocking: CPU)."""
        out: list[bytes] = []
        size = 0
        while size < limit:
            decoder = self._decoder
            if decoder.eof:
                rest = self._pending.lstrip(b"\0")
                if not rest:
                    self._pending = b""
                    break
                decoder = self._decoder = zlib.decompressobj(wbits=31)
                self._pending, self._started, self._full = rest, False, False
            elif not self._pending and not self._full:
                break
            want = limit - size
            if self._pending:
                self._started = True
            piece = decoder.decompress(self._pending, want)
            self._full = len(piece) == want
            self._pending = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
            if piece:
                out.append(piece)
                size += len(piece)
        return b"".join(out)


def open_s3_source(
    spec: str, *, columns: ParquetColumns, default_content_type: str | None
) -> S3Source:
    """An ``s3://`` input, not yet listed (:meth:`S3Source.open`).

    :raises InputError: ``spec`` is not an ``s3://bucket/key`` URI.
    """
    return S3Source(
        parse_input_uri(spec), columns=columns, default_content_type=default_content_type
    )
