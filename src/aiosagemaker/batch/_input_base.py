"""What every kind of batch input shares: the item, the line parser, the source's interface.

A module of its own so that each kind of source (:mod:`._input_parquet`, :mod:`._input_s3`, the
JSON Lines, directory and stdin ones of :mod:`._inputs`) builds on it, and :mod:`._inputs`, which
picks the source for an input, imports those modules without an import cycle. :mod:`._inputs`
re-exports every public name here: import them from there.

A JSON Lines line is parsed as (:func:`parse_line`):

- an **envelope** when it is a JSON object with a ``body`` or ``body_base64`` key. ``body`` is sent
  as UTF-8 text when it is a string (``text/plain`` unless ``content_type`` says otherwise) and as
  JSON otherwise (``application/json``); ``body_base64`` is decoded and sent as bytes
  (``application/octet-stream``). Optional keys: ``content_type`` (a string) and ``id`` (a string or
  an integer, the input's id in the output; else the line number);
- else a **payload**: any other JSON value, sent as it is written on the line, as
  ``application/json`` (or the job's ``--content-type``).

Bad lines (empty, not JSON, a malformed envelope) become items with an ``error`` and no body, so
the batch reports them in place without stopping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from ._s3 import S3Objects

__all__ = [
    "BINARY_CONTENT_TYPE",
    "BLOCK_BYTES",
    "BLOCK_LINES",
    "HEAD_BYTES",
    "JSON_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "WHOLE_HASH_LIMIT",
    "InputError",
    "InputItem",
    "InputSource",
    "file_fingerprint",
    "parse_line",
]

JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain"
BINARY_CONTENT_TYPE = "application/octet-stream"

# Lines or files read per trip to the worker thread, and a byte cap per trip: big enough to make
# the thread hop cheap, small enough that memory does not depend on the input's size.
BLOCK_LINES = 512
BLOCK_BYTES = 4 * 1024 * 1024
_ENVELOPE_KEYS = frozenset({"body", "body_base64", "content_type", "id"})

# The fingerprint of a file (see InputSource.fingerprint): a SHA-256 of the whole file up to this
# size, else of its first HEAD_BYTES. 64 MiB hash in 0.05 s here (hashlib, from the page cache:
# nothing next to opening the AWS clients); past that the cost grows with the file, on every start
# and rerun, while size, time and first MiB still catch an append, a truncation or a rewrite by
# any usual tool.
WHOLE_HASH_LIMIT = 64 << 20
HEAD_BYTES = 1 << 20


class InputError(OSError, ValueError):
    """The input cannot be read as what it says it is: a bad ``s3://`` URI, a prefix with no
    objects, a Parquet file without the payload or id column, a corrupt gzip or Parquet file.

    Both an ``OSError`` (the batch job reports one met while reading as *cannot read the input*)
    and a ``ValueError`` (a bad argument, when :func:`~._inputs.open_input_source` raises it), as
    :class:`io.UnsupportedOperation` is.
    """


@dataclass(slots=True)
class InputItem:
    """One input: its position, its id, and what to send (or why it cannot be sent)."""

    #: 1-based position in the input (the line number of a JSON Lines input)
    n: int
    #: the envelope's ``id``, else the line number, else the file's path relative to the directory
    input_id: str
    body: bytes | None = None
    content_type: str | None = None
    #: why this input is invalid; ``None`` when it can be sent
    error: str | None = None


def parse_line(line: bytes, n: int, default_content_type: str | None) -> InputItem:
    """Turn one JSON Lines line (without its newline) into an :class:`InputItem`."""
    text = line.strip()
    if not text:
        return InputItem(n, str(n), error="empty line")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return InputItem(n, str(n), error=f"invalid JSON: {exc}")
    if isinstance(value, dict) and ("body" in value or "body_base64" in value):
        return _envelope(value, n, default_content_type)
    return InputItem(n, str(n), body=text, content_type=default_content_type or JSON_CONTENT_TYPE)


def _envelope(value: dict[str, Any], n: int, default_content_type: str | None) -> InputItem:
    input_id = str(n)
    raw_id = value.get("id")
    if raw_id is not None:
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or raw_id == "":
            return InputItem(
                n, input_id, error="envelope 'id' must be a non-empty string or integer"
            )
        input_id = str(raw_id)
    unknown = set(value) - _ENVELOPE_KEYS
    if unknown:
        return InputItem(
            n, input_id, error=f"unknown envelope key(s): {', '.join(sorted(unknown))}"
        )
    content_type = value.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        return InputItem(n, input_id, error="envelope 'content_type' must be a string")
    if "body" in value and "body_base64" in value:
        return InputItem(n, input_id, error="envelope has both 'body' and 'body_base64'")
    if "body_base64" in value:
        encoded = value["body_base64"]
        if not isinstance(encoded, str):
            return InputItem(n, input_id, error="envelope 'body_base64' must be a string")
        try:
            body = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            return InputItem(n, input_id, error=f"envelope 'body_base64' is not base64: {exc}")
        default = default_content_type or BINARY_CONTENT_TYPE
    elif isinstance(value["body"], str):
        body = value["body"].encode("utf-8", "surrogatepass")
        default = default_content_type or TEXT_CONTENT_TYPE
    else:
        body = orjson.dumps(value["body"])
        default = default_content_type or JSON_CONTENT_TYPE
    return InputItem(n, input_id, body=body, content_type=content_type or default)


class InputSource:
    """Where the inputs come from; iterate with ``async for item in source.items()``.

    .. code-block:: python

        source = open_input_source(spec)
        await source.open(s3 if source.uses_s3 else None)   # an s3:// input lists its objects
        try:
            source.fingerprint()                             # blocking, but no network I/O
            async for item in source.items(): ...
        finally:
            await source.aclose()

    :param identity: what a journal records to recognise the same input on a rerun: the absolute
        path of a file or directory, ``-`` for stdin, the ``s3://bucket/key`` URI of an S3 input.
    """

    #: whether :meth:`open` needs an :class:`~._s3.S3Objects` (an ``s3://`` input)
    uses_s3: bool = False

    def __init__(self, identity: str, *, default_content_type: str | None) -> None:
        self.identity = identity
        self.default_content_type = default_content_type

    async def open(self, s3: S3Objects | None) -> None:
        """Get ready to be read: an S3 input lists its objects here (and keeps the listing, which
        :meth:`fingerprint` and :meth:`items` then use). Nothing to do for a local input.

        :param s3: the job's S3 calls; required when :attr:`uses_s3`, else ignored.
        """

    async def aclose(self) -> None:
        """Let go of what :meth:`open` took (nothing for a local input)."""

    def count(self) -> int | None:
        """How many inputs there are, when cheap to know (for the progress bar's ETA)."""
        return None

    def items(self) -> AsyncIterator[InputItem]:
        raise NotImplementedError

    def fingerprint(self, *, hashed_bytes: int | None = None) -> dict[str, Any]:
        """What a journal records to tell, on a rerun, whether the input changed (blocking; no
        network I/O).

        - a file (JSON Lines, gzip JSON Lines, Parquet): ``{"kind": "file", "size", "mtime_ns",
          "sha256", "hashed_bytes"}``, the SHA-256 of its first ``hashed_bytes`` bytes (as they
          are on disk, compressed or not): the whole file up to 64 MiB, else the first MiB;
        - a directory: ``{"kind": "directory", "files", "sha256"}``, the SHA-256 of the names,
          sizes and modification times of its files (their contents are not read);
        - an S3 input: ``{"kind": "s3", "objects", "bytes", "sha256"}``, from the listing taken
          by :meth:`open`: the SHA-256 of ``key\\tsize\\tetag\\n`` for each object, in order;
        - stdin, a pipe or any other non-regular file: ``{"kind": "stream"}``, nothing to check.

        :param hashed_bytes: hash this many bytes (what an earlier fingerprint hashed), not the
            default, so that two fingerprints compare (files only).
        """
        return {"kind": "stream"}


def file_fingerprint(path: Path, hashed_bytes: int | None) -> dict[str, Any]:
    """The ``"file"`` fingerprint of a regular file (:meth:`InputSource.fingerprint`)."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if hashed_bytes is None:
            hashed_bytes = st.st_size if st.st_size <= WHOLE_HASH_LIMIT else HEAD_BYTES
        digest = hashlib.sha256()
        left = hashed_bytes
        while left > 0 and (block := f.read(min(left, 1 << 20))):
            digest.update(block)
            left -= len(block)
    return {
        "kind": "file",
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": digest.hexdigest(),
        "hashed_bytes": hashed_bytes,
    }
