"""The library's logger, and the fields every one of its records carries.

Records of the ``aiosagemaker`` logger carry ``endpoint`` and ``inference_id`` as attributes, for
JSON log handlers to index: a call site about a job passes them (``extra=``); the filter below
gives every other record both, as ``None``, so that a handler's format never meets a record
without them. Never a payload, ``CustomAttributes`` or a credential.
"""

from __future__ import annotations

import logging
from typing import Final

__all__ = ["FIELDS", "field_id", "logger"]

#: the attributes every record of the library's logger has
FIELDS: Final = ("endpoint", "inference_id")

logger = logging.getLogger("aiosagemaker")


class _DefaultFields(logging.Filter):
    """Set the fields a record was not given to ``None`` (a logger's filter sees only the records
    made by that logger: every module of the package logs through this one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        for name in FIELDS:
            fields.setdefault(name, None)
        return True


if not any(isinstance(f, _DefaultFields) for f in logger.filters):
    logger.addFilter(_DefaultFields())


def field_id(value: object) -> str | None:
    """An inference id as a record's ``inference_id`` field: as it is (a job's own, or a
    message's when printable), cut to 64 characters; escaped when a message's holds control
    characters. ``None`` when there is none."""
    if not isinstance(value, str):
        return None
    value = value[:64]
    return value if value.isprintable() else repr(value)[1:-1]
