"""Memory stays flat in the input's size: it is bounded by --max-pending, not by the line count.

Peak RSS of the ``aiosagemaker batch`` process (``os.wait4``'s resource usage of that one child)
is measured at two input sizes; a per-input leak would show as growth with the input. The full
sizes of the issue (5,000 and 20,000 lines) run under ``make test-scale``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from app_helpers import read_records, write_lines

from aiosagemaker.local import EndpointInfo

pytestmark = pytest.mark.usefixtures("stack_env")


def _peak_rss_kib(endpoint: str, lines: int, tmp_path: Path) -> int:
    source = write_lines(
        tmp_path / f"in{lines}.jsonl", [{"i": i, "text": "w" * 200} for i in range(lines)]
    )
    output = tmp_path / f"out{lines}.jsonl"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "aiosagemaker.cli", "batch", endpoint, str(source),
            "-o", str(output), "--concurrency", "32", "--max-pending", "256",
            "--poll-interval", "0.05", "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    assert process.returncode == 0, stderr.decode()
    assert len(read_records(output)) == lines
    return int(usage.ru_maxrss)  # KiB on Linux


def _assert_flat(endpoint: str, small: int, large: int, tmp_path: Path) -> None:
    low = _peak_rss_kib(endpoint, small, tmp_path)
    high = _peak_rss_kib(endpoint, large, tmp_path)
    print(f"peak RSS: {small:,} lines {low / 1024:.1f} MiB, {large:,} lines {high / 1024:.1f} MiB")
    assert high < low * 1.5, (low, high)


def test_memory_flat_in_input_size(quiet_endpoint: EndpointInfo, tmp_path: Path) -> None:
    _assert_flat(quiet_endpoint.name, 400, 1_600, tmp_path)


@pytest.mark.scale
@pytest.mark.timeout(900)
def test_memory_flat_5k_vs_20k(quiet_endpoint: EndpointInfo, tmp_path: Path) -> None:
    _assert_flat(quiet_endpoint.name, 5_000, 20_000, tmp_path)
