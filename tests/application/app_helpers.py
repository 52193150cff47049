"""Helpers for the batch job and CLI tests: input and output files, the command run as a shell would."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from aiosagemaker.cli import main


def write_lines(path: Path, lines: list[Any]) -> Path:
    """Write JSON values (or raw ``bytes`` lines) as JSON Lines."""
    with open(path, "wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n")
    return path


def read_records(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f]


def read_journal(path: Path, *, while_written: bool = False) -> list[dict[str, Any]]:
    """The journal's complete lines (a torn tail is left out).

    :param while_written: a running job is appending to it: a read can see one of its writes half
        done (the file already longer, the new bytes not all there yet), so a line that is not
        JSON is skipped; it is whole by the next read. Otherwise such a line is an error.
    """
    out = []
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                continue
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                if not while_written:
                    raise
    return out


def count_journaled(journal: Path, kind: str, *, while_written: bool = False) -> int:
    """How many records of type ``kind`` the journal holds (0 before it exists)."""
    if not journal.exists():
        return 0
    return sum(1 for r in read_journal(journal, while_written=while_written) if r["t"] == kind)


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    input: str | None = None,  # noqa: A002 (subprocess.run's name)
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the ``aiosagemaker`` command as a shell would, in this process: the same ``main()``, on
    its own event loop, with ``env`` added to the environment, ``input`` as stdin and the command's
    stdout, stderr and logging setup its own while it runs.

    A child process would cost about a second of imports, more under coverage; tests whose point
    is the process itself (killed, interrupted, a second run beside it) use :func:`cli_process`.
    Called from a coroutine, it runs in a thread of its own and blocks the caller's loop until
    the command is done, as ``subprocess.run`` did.
    """
    if not _in_a_coroutine():
        return _cli_here(args, env, input, cwd)
    done: list[subprocess.CompletedProcess[str]] = []
    thread = threading.Thread(target=lambda: done.append(_cli_here(args, env, input, cwd)))
    thread.start()
    thread.join()
    return done[0]


def _in_a_coroutine() -> bool:
    # (A function of its own: called inside the except, the command's errors would all have
    # this RuntimeError as their context, and --debug would print it.)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _cli_here(
    args: tuple[str, ...], env: dict[str, str] | None, input: str | None, cwd: Path | None
) -> subprocess.CompletedProcess[str]:
    stdout, stderr = _text_stream(b""), _text_stream(b"")
    stdin = _text_stream((input or "").encode())
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    # main() configures logging as in a fresh process (a handler on the root writing to stderr,
    # levels of its own), which it leaves alone when the root has handlers: pytest's are set
    # aside meanwhile, and everything is put back after.
    root = logging.getLogger()
    saved_handlers, saved_root_level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in _CLI_LOGGERS}
    os.environ.update(env or {})
    if cwd is not None:
        os.chdir(cwd)
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    root.handlers = []
    try:
        returncode = main(list(args))
    except SystemExit as exc:
        returncode = exc.code if isinstance(exc.code, int) else 1
    except Exception:  # as Python exits on an uncaught exception (--debug re-raises)
        traceback.print_exc()
        returncode = 1
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        root.handlers, root.level = saved_handlers, saved_root_level
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(
        ["aiosagemaker", *args], returncode, _read_back(stdout), _read_back(stderr)
    )


#: The loggers whose levels main() sets.
_CLI_LOGGERS = ("aiosagemaker", "botocore", "aiobotocore")


def _text_stream(data: bytes) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", write_through=True)


def _read_back(stream: io.TextIOWrapper) -> str:
    stream.flush()
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue().decode("utf-8", errors="replace")


def cli_process(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the ``aiosagemaker`` command in a child process (the environment is inherited)."""
    return subprocess.run(
        [sys.executable, "-m", "aiosagemaker.cli", *args],
        capture_output=True,
        text=True,
        timeout=kwargs.pop("timeout", 120),
        env={**os.environ, **kwargs.pop("env", {})},
        **kwargs,
    )


def wait_for(condition: Callable[[], bool], *, timeout: float = 60.0, what: str = "") -> None:
    """Poll ``condition`` until it holds (no fixed sleeps: a short poll with a deadline)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


# S3 polling at 20 Hz: a result is found within a few milliseconds of being written.
FAST_POLL = ("--poll-interval", "0.05")


def aws_lines(stderr: str) -> list[str]:
    """The lines botocore's or aiobotocore's loggers wrote."""
    return [line for line in stderr.splitlines() if "botocore" in line]
