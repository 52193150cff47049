"""Where a Ray job keeps its journal: small named objects under an ``s3://`` prefix, or files in a
local directory (a cluster on this machine only).

Every actor writes objects of its own (named by its token), never one another's: S3 needs no
append and no lock for that. Names use ``/`` as a separator in both kinds of store.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from aiosagemaker import parse_s3_uri
from aiosagemaker.batch._s3 import open_s3

if TYPE_CHECKING:
    from aiosagemaker import AwsContext, S3Uri
    from aiosagemaker.batch._s3 import S3Objects

__all__ = ["JournalStore", "LocalStore", "S3Store", "open_store"]


class JournalStore(Protocol):
    """Named objects under one prefix."""

    #: the prefix or directory, for messages
    where: str

    async def put(self, name: str, data: bytes) -> None: ...

    async def get(self, name: str) -> bytes | None:
        """The object's bytes; ``None`` when there is none."""
        ...

    async def exists(self, name: str) -> bool: ...

    async def names(self, prefix: str = "") -> list[str]:
        """The names under ``prefix`` (relative to the store), sorted."""
        ...

    async def delete_all(self) -> None: ...

    async def aclose(self) -> None: ...


class S3Store:
    """A journal under an ``s3://`` prefix.

    :param aws: closed with the store (``None``: the caller owns it).
    """

    def __init__(self, s3: S3Objects, prefix: S3Uri, *, aws: AwsContext | None = None) -> None:
        self._s3 = s3
        self._prefix = prefix
        self._aws = aws
        self.where = str(prefix)

    async def put(self, name: str, data: bytes) -> None:
        await self._s3.put(self._prefix.join(name), data)

    async def get(self, name: str) -> bytes | None:
        uri = self._prefix.join(name)
        if await self._s3.head(uri) is None:
            return None
        return await self._s3.get(uri)

    async def exists(self, name: str) -> bool:
        return await self._s3.head(self._prefix.join(name)) is not None

    async def names(self, prefix: str = "") -> list[str]:
        start = len(self._prefix.key)
        listed = await self._s3.list(self._prefix.join(prefix))
        return sorted(info.uri.key[start:] for info in listed)

    async def delete_all(self) -> None:
        for name in await self.names():
            await self._s3.delete(self._prefix.join(name))

    async def aclose(self) -> None:
        if self._aws is not None:
            await self._aws.aclose()


class LocalStore:
    """A journal in a local directory: each object a file, written whole (temporary file, then
    renamed into place)."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self.where = str(directory)

    def _put(self, name: str, data: bytes) -> None:
        path = self._dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)

    async def put(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, name, data)

    def _get(self, name: str) -> bytes | None:
        try:
            return (self._dir / name).read_bytes()
        except FileNotFoundError:
            return None

    async def get(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self._get, name)

    async def exists(self, name: str) -> bool:
        return await asyncio.to_thread((self._dir / name).is_file)

    def _names(self, prefix: str) -> list[str]:
        if not self._dir.is_dir():
            return []
        found = (
            path.relative_to(self._dir).as_posix()
            for path in self._dir.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        )
        return sorted(name for name in found if name.startswith(prefix))

    async def names(self, prefix: str = "") -> list[str]:
        return await asyncio.to_thread(self._names, prefix)

    def _delete_all(self) -> None:
        for name in self._names(""):
            (self._dir / name).unlink(missing_ok=True)
        for directory in sorted(self._dir.rglob("*"), reverse=True):
            if directory.is_dir():
                directory.rmdir()
        if self._dir.is_dir():
            self._dir.rmdir()

    async def delete_all(self) -> None:
        await asyncio.to_thread(self._delete_all)

    async def aclose(self) -> None:
        """Nothing to close."""


async def open_store(
    spec: str,
    *,
    region: str | None = None,
    profile: str | None = None,
    expected_bucket_owner: str | None = None,
) -> JournalStore:
    """The store named by ``spec``: an ``s3://`` prefix, or a local directory.

    :raises S3Error: the S3 client could not be made.
    :raises aiosagemaker.InvalidRequestError: an invalid ``s3://`` URI.
    """
    if not spec.startswith("s3://"):
        return LocalStore(Path(spec))
    prefix = parse_s3_uri(spec if spec.endswith("/") else spec + "/", field="journal")
    aws, s3 = await open_s3(
        region=region, profile=profile, expected_bucket_owner=expected_bucket_owner
    )
    return S3Store(s3, prefix, aws=aws)
