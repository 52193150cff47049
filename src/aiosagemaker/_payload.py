"""Turn what the caller passes into the bytes and content type of one request."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import orjson

from ._exceptions import InvalidRequestError

__all__ = ["Payload", "encode_payload"]

JSON_CONTENT_TYPE = "application/json"


@runtime_checkable
class Readable(Protocol):
    def read(self) -> bytes | str: ...


#: bytes-like, str (UTF-8), a file-like object, or any JSON-serializable value.
Payload = bytes | bytearray | memoryview | str | Readable | Any


def encode_payload(payload: Payload, content_type: str | None) -> tuple[bytes, str | None]:
    """Return ``(body, content_type)``.

    bytes-like objects go as they are; ``str`` as UTF-8; a file-like object is read whole; anything
    else is serialized as JSON and, unless ``content_type`` says otherwise, sent as
    ``application/json``.

    :raises InvalidRequestError: the value is not JSON-serializable.
    """
    if isinstance(payload, bytes):
        return payload, content_type
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload), content_type
    if isinstance(payload, str):
        return payload.encode(), content_type
    if isinstance(payload, Readable) and not isinstance(payload, dict | list):
        data = payload.read()
        return (data.encode() if isinstance(data, str) else bytes(data)), content_type
    try:
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise InvalidRequestError(
            f"payload of type {type(payload).__name__} is not bytes, str, a file or "
            f"JSON-serializable: {exc}",
            field="Body",
        ) from exc
    return body, content_type or JSON_CONTENT_TYPE
