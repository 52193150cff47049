"""Models for ``module:function`` tests, loaded by the local endpoint's process."""

from __future__ import annotations


def upper(body: bytes, content_type: str | None) -> bytes:
    """A sync model: the local endpoint runs it in a worker thread."""
    return body.upper()
