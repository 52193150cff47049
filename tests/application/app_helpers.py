"""Helpers for the batch job and CLI tests: input and output files, the command in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson


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


def cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
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
