"""OUTPUT of a Ray job, as the batch job writes it: a JSON Lines file (written to a temporary
file, fsynced and renamed into place once complete), or parts (locally or under ``s3://``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING, Any

import orjson

from aiosagemaker.batch._parts import LocalParts, S3Parts, encode_part, part_name

if TYPE_CHECKING:
    from pathlib import Path

    from aiosagemaker.batch import BatchOptions
    from aiosagemaker.batch._parts import PartStore
    from aiosagemaker.batch._s3 import S3Objects

__all__ = ["JobOutput"]


class JobOutput:
    """OUTPUT as the batch job writes it: a JSON Lines file, or parts (local or ``s3://``)."""

    def __init__(self, options: BatchOptions, s3: S3Objects | None) -> None:
        self._options = options
        self._target = options.target()
        self._parts: PartStore | None = None
        self._file: Any = None
        self._temporary: Path | None = None
        self._buffer: list[dict[str, Any]] = []
        self._k = 0
        t = self._target
        if t.kind == "parts":
            if t.s3 is not None:
                assert s3 is not None
                self._parts = S3Parts(s3, t.s3)
            else:
                assert t.path is not None
                self._parts = LocalParts(t.path, fsync=options.fsync)

    async def exists(self) -> bool:
        if self._parts is not None:
            return bool(await self._parts.names())
        assert self._target.path is not None
        return self._target.path.exists()

    async def start(self, *, resuming: bool) -> None:
        """Delete old parts (a rerun's, or ``--overwrite``); open the temporary file."""
        if self._parts is not None:
            for name in await self._parts.names():
                await self._parts.delete(name)
            return
        path = self._target.path
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = path.with_name(f".{path.name}.{os.getpid()}.ray.tmp")
        self._file = await asyncio.to_thread(open, self._temporary, "wb")

    async def write(self, records: list[dict[str, Any]]) -> None:
        if self._parts is None:
            data = b"".join(orjson.dumps(r) + b"\n" for r in records)
            await asyncio.to_thread(self._file.write, data)
            return
        self._buffer.extend(records)
        while len(self._buffer) >= self._options.part_records:
            await self._write_part(self._buffer[: self._options.part_records])
            del self._buffer[: self._options.part_records]

    async def _write_part(self, records: list[dict[str, Any]]) -> None:
        assert self._parts is not None
        fmt = self._target.fmt
        data = await asyncio.to_thread(encode_part, records, fmt)
        await self._parts.write(part_name(self._k, fmt), data)
        self._k += 1

    async def finish(self, *, complete: bool) -> None:
        """Write what is left; put a complete JSON Lines OUTPUT in place (fsynced, renamed)."""
        if self._parts is not None:
            if self._buffer:
                await self._write_part(self._buffer)
                self._buffer.clear()
            return
        if not complete:
            return
        file, self._file = self._file, None
        assert self._temporary is not None and self._target.path is not None

        def close() -> None:
            file.flush()
            if self._options.fsync:
                os.fsync(file.fileno())
            file.close()
            os.replace(self._temporary, self._target.path)  # type: ignore[arg-type]

        await asyncio.to_thread(close)
        self._temporary = None

    async def discard(self) -> None:
        """Remove an incomplete JSON Lines OUTPUT (the journal stays for a rerun)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                self._temporary.unlink()
            self._temporary = None
