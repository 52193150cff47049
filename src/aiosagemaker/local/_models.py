"""Models the local endpoint runs: a callable ``(body, content_type) -> bytes``, sync or async.

Built-ins, named by a spec string:

- ``echo``: the input, unchanged.
- ``sleep:<seconds>``: the input, after a delay (times the stack's ``time_scale``).
- ``failing``: always raises, so every request fails.
- ``module:function``: any importable callable; a sync one runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, cast

__all__ = ["ModelFn", "ModelRunner", "load_model"]

ModelFn = Callable[[bytes, "str | None"], "bytes | Awaitable[bytes]"]


class ModelFailure(RuntimeError):
    """What the ``failing`` built-in raises."""


class ModelRunner:
    """Call a model and always get bytes back, awaiting or threading as its kind needs."""

    def __init__(self, spec: str, fn: ModelFn, *, is_async: bool) -> None:
        self.spec = spec
        self._fn = fn
        self._is_async = is_async

    def __repr__(self) -> str:
        return f"<ModelRunner {self.spec!r}>"

    async def __call__(self, body: bytes, content_type: str | None) -> bytes:
        result: Any
        if self._is_async:
            result = self._fn(body, content_type)
        else:
            result = await asyncio.to_thread(self._fn, body, content_type)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, str):
            return result.encode("utf-8")
        if not isinstance(result, bytes | bytearray | memoryview):
            raise TypeError(f"model {self.spec!r} returned {type(result).__name__}, not bytes")
        return bytes(result)


def load_model(spec: str, *, time_scale: float = 1.0) -> ModelRunner:
    """Build the :class:`ModelRunner` named by ``spec``; raise ``ValueError`` if it names nothing."""
    if spec == "echo":

        async def echo(body: bytes, content_type: str | None) -> bytes:
            return body

        return ModelRunner(spec, echo, is_async=True)
    if spec.startswith("sleep:"):
        try:
            delay = float(spec[6:]) * time_scale
        except ValueError:
            raise ValueError(f"bad model spec {spec!r}: sleep:<seconds>") from None
        if delay < 0:
            raise ValueError(f"bad model spec {spec!r}: the delay must be >= 0")

        async def sleep(body: bytes, content_type: str | None) -> bytes:
            await asyncio.sleep(delay)
            return body

        return ModelRunner(spec, sleep, is_async=True)
    if spec == "failing":

        async def failing(body: bytes, content_type: str | None) -> bytes:
            raise ModelFailure("the 'failing' model always fails")

        return ModelRunner(spec, failing, is_async=True)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"unknown model {spec!r}: echo, sleep:<s>, failing or module:function")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load model {spec!r}: {exc}") from exc
    if not callable(fn):
        raise ValueError(f"model {spec!r} is not callable")
    return ModelRunner(spec, cast(ModelFn, fn), is_async=inspect.iscoroutinefunction(fn))
