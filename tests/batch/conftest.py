"""Fixtures for the batch job and CLI tests: the local stack's environment and small helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from aiosagemaker.local import EndpointInfo, LocalStack


@pytest.fixture
def batch_env(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    """Point every AWS client made in the test (and its subprocesses) at the local stack."""
    for name, value in local_stack.env().items():
        monkeypatch.setenv(name, value)
    yield local_stack


def write_lines(path: Path, lines: list[Any]) -> Path:
    """Write JSON values (or raw ``bytes`` lines) as JSON Lines."""
    with open(path, "wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n")
    return path


def read_records(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f]


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The journal's complete lines (a torn tail is left out)."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                out.append(orjson.loads(line))
    return out


def cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the ``aiosagemaker`` command in a child process (the environment is inherited)."""
    return subprocess.run(
        [sys.executable, "-m", "aiosagemaker._cli", *args],
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


@pytest.fixture
async def quiet_endpoint(local_stack: LocalStack) -> AsyncIterator[EndpointInfo]:
    """A fresh echo endpoint without notifications, for the S3 polling watcher.

    Nothing would drain its queue, and moto's SQS (and so SNS publishing) slows as a queue deepens.
    """
    info = await local_stack.create_endpoint(f"q-{uuid.uuid4().hex[:20]}", notifications=False)
    yield info
    await local_stack.delete_endpoint(info.name)
