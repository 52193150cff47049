"""Run the real ``aiosagemaker`` command in a child process, as a user's shell would."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

# S3 polling at 20 Hz: a result is found within a few milliseconds of being written.
FAST_POLL = ("--poll-interval", "0.05")


def run_cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``python -m aiosagemaker._cli ARGS`` with the test's environment (plus ``env=``)."""
    return subprocess.run(
        [sys.executable, "-m", "aiosagemaker._cli", *args],
        capture_output=True,
        text=True,
        timeout=kwargs.pop("timeout", 60),
        env={**os.environ, **kwargs.pop("env", {})},
        **kwargs,
    )


def aws_lines(stderr: str) -> list[str]:
    """The lines botocore's or aiobotocore's loggers wrote."""
    return [line for line in stderr.splitlines() if "botocore" in line]
