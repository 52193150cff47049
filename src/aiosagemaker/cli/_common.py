"""What every command shares: exit statuses, the one-line error, the local stack's environment."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

T = TypeVar("T")

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "CliError",
    "aws_environment",
    "run_async",
]

PROG = "aiosagemaker"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A one-line error and the exit status it maps to."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@contextlib.contextmanager
def aws_environment(env: dict[str, str]) -> Iterator[None]:
    """Point this process's AWS clients at the stack, and put the environment back afterwards."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[key]
        os.environ.update(saved)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (``aiosagemaker[uvloop]``), else asyncio's default.

    The loop is the application's choice, never the library's: the commands take uvloop for its
    cheaper I/O; ``AIOSAGEMAKER_EVENT_LOOP=asyncio`` keeps asyncio's own loop.
    """
    if os.environ.get("AIOSAGEMAKER_EVENT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_async(main: Coroutine[object, object, T]) -> T:
    """Run a command's coroutine to completion on the chosen event loop."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(main)
