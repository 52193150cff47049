"""Parquet inputs: one input per row, its payload from one column, its id from another (optional).

pyarrow is imported only when a Parquet input is read (the ``parquet`` extra); without it,
:class:`ParquetUnavailableError` says what to install. The file is read with
``ParquetFile.iter_batches`` (512 rows, only the columns used), one batch per trip to a worker
thread, so memory stays bounded by a batch and the event loop never waits on decoding.

Each row's payload is sent by its value's type: bytes (a ``binary`` column) as they are, as
``application/octet-stream``; a string as UTF-8, as ``text/plain``; anything else (a struct, a
list, a number, a boolean) as its JSON, as ``application/json``. The job's ``--content-type``
replaces these defaults. The input's id is the ``id_column``'s value (a non-empty string or an
integer), else the row number (``n``, as a JSON Lines line number). A row whose payload is null, or
cannot be written as JSON (a decimal, bytes inside a struct), or whose id is null, empty or of
another type, becomes an item with an ``error``, reported in place, as a bad JSON Lines line is.

A column that is not there, or a file that is not Parquet, is an :class:`~._input_base.InputError`
naming the columns the file has; :func:`open_parquet_source` checks that before anything is read.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import orjson

from ._input_base import (
    BINARY_CONTENT_TYPE,
    BLOCK_LINES,
    JSON_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    InputError,
    InputItem,
    InputSource,
    file_fingerprint,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Iterator
    from pathlib import Path

__all__ = [
    "PARQUET_SUFFIXES",
    "ParquetColumns",
    "ParquetSource",
    "ParquetUnavailableError",
    "open_parquet",
    "open_parquet_source",
    "parquet_items",
    "require_pyarrow",
]

#: file name endings read as Parquet (lower case)
PARQUET_SUFFIXES = (".parquet", ".pq")


class ParquetUnavailableError(InputError):
    """A Parquet input, and pyarrow is not installed: ``pip install 'aiosagemaker[parquet]'``."""


@dataclass(frozen=True, slots=True)
class ParquetColumns:
    """Which columns of a Parquet input hold the payload and the id (``None``: the row number)."""

    payload: str = "body"
    id: str | None = None

    def names(self) -> list[str]:
        return [self.payload] if self.id in (None, self.payload) else [self.payload, self.id]


def _parquet() -> Any:
    """``pyarrow.parquet``, imported now; :class:`ParquetUnavailableError` without pyarrow."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ParquetUnavailableError(
            f"reading Parquet inputs needs pyarrow ({exc}): pip install 'aiosagemaker[parquet]'"
        ) from None
    return pq


def require_pyarrow() -> None:
    """Import pyarrow now: :class:`ParquetUnavailableError` if it is not installed."""
    _parquet()


def _arrow_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowException, OSError, ValueError)


def open_parquet(source: str | IO[bytes], name: str, columns: ParquetColumns) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` with ``columns`` (blocking: reads the footer).

    :param source: a path, or a seekable binary file (which stays the caller's to close).
    :param name: the input, for messages.
    :raises InputError: not a Parquet file, or a column is not there (the message names the
        columns the file has).
    """
    pq = _parquet()
    try:
        parquet_file = pq.ParquetFile(source)
    except _arrow_errors() as exc:
        raise InputError(f"{name} is not a readable Parquet file: {exc}") from None
    have = list(parquet_file.schema_arrow.names)
    missing = [c for c in columns.names() if c not in have]
    if missing:
        parquet_file.close()
        role = "payload" if missing[0] == columns.payload else "id"
        raise InputError(
            f"Parquet input {name} has no column {missing[0]!r} (the {role} column); "
            f"its columns are: {', '.join(repr(c) for c in have) or 'none'}"
        )
    return parquet_file


async def parquet_items(
    parquet_file: Any,
    name: str,
    columns: ParquetColumns,
    first_n: int,
    default_content_type: str | None,
) -> AsyncGenerator[InputItem, None]:
    """The rows of an open ``ParquetFile`` as items numbered from ``first_n``, one batch of
    rows per trip to a worker thread."""
    batches = parquet_file.iter_batches(batch_size=BLOCK_LINES, columns=columns.names())
    n = first_n
    while True:
        items = await asyncio.to_thread(
            _next_items, batches, name, columns, n, default_content_type
        )
        if items is None:
            return
        for item in items:
            yield item
        n += len(items)


def _next_items(
    batches: Iterator[Any],
    name: str,
    columns: ParquetColumns,
    first_n: int,
    default_content_type: str | None,
) -> list[InputItem] | None:
    try:
        batch = next(batches, None)
    except _arrow_errors() as exc:
        raise InputError(f"cannot read Parquet input {name}: {exc}") from None
    if batch is None:
        return None
    payloads: list[Any] = batch.column(columns.payload).to_pylist()
    ids: list[Any] | None = None if columns.id is None else batch.column(columns.id).to_pylist()
    items = []
    for i, value in enumerate(payloads):
        n = first_n + i
        input_id, id_error = (str(n), None) if ids is None else _input_id(ids[i], n, columns)
        if id_error is not None:
            items.append(InputItem(n, input_id, error=id_error))
        else:
            items.append(_item(value, n, input_id, columns, default_content_type))
    return items


def _input_id(value: Any, n: int, columns: ParquetColumns) -> tuple[str, str | None]:
    if isinstance(value, str) and value:
        return value, None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    if value is None or value == "":
        what = "null" if value is None else "empty"
        return str(n), f"the id (column {columns.id!r}) is {what}"
    return str(n), (
        f"the id (column {columns.id!r}) must be a non-empty string or integer, "
        f"not {type(value).__name__}"
    )


def _item(
    value: Any, n: int, input_id: str, columns: ParquetColumns, default_content_type: str | None
) -> InputItem:
    if value is None:
        return InputItem(n, input_id, error=f"the payload (column {columns.payload!r}) is null")
    if isinstance(value, bytes):
        return InputItem(
            n, input_id, body=value, content_type=default_content_type or BINARY_CONTENT_TYPE
        )
    if isinstance(value, str):
        return InputItem(
            n,
            input_id,
            body=value.encode("utf-8", "surrogatepass"),
            content_type=default_content_type or TEXT_CONTENT_TYPE,
        )
    try:
        body = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        return InputItem(
            n,
            input_id,
            error=f"the payload (column {columns.payload!r}) cannot be written as JSON: {exc}",
        )
    return InputItem(n, input_id, body=body, content_type=default_content_type or JSON_CONTENT_TYPE)


class ParquetSource(InputSource):
    """A local Parquet file, one input per row (:func:`open_parquet_source`)."""

    def __init__(
        self, path: Path, *, columns: ParquetColumns, default_content_type: str | None
    ) -> None:
        super().__init__(str(path.resolve()), default_content_type=default_content_type)
        self._path = path
        self._columns = columns

    def count(self) -> int | None:
        # The footer's row count: no data is read.
        rows: int = _parquet().read_metadata(self._path).num_rows
        return rows

    def fingerprint(self, *, hashed_bytes: int | None = None) -> dict[str, Any]:
        return file_fingerprint(self._path, hashed_bytes)

    async def items(self) -> AsyncIterator[InputItem]:
        parquet_file = await asyncio.to_thread(
            open_parquet, str(self._path), self.identity, self._columns
        )
        rows = parquet_items(
            parquet_file, self.identity, self._columns, 1, self.default_content_type
        )
        try:
            async with aclosing(rows):
                async for item in rows:
                    yield item
        finally:
            parquet_file.close()


def open_parquet_source(
    path: Path, *, columns: ParquetColumns, default_content_type: str | None
) -> ParquetSource:
    """A local Parquet input, its columns checked (blocking: reads the footer).

    :raises ParquetUnavailableError: pyarrow is not installed.
    :raises InputError: not a Parquet file, or a column is not there.
    """
    open_parquet(str(path), str(path), columns).close()
    return ParquetSource(path, columns=columns, default_content_type=default_content_type)
