"""Resumability: a batch killed with SIGKILL (or stopped with Ctrl-C) and run again.

Checked on the server's per-inference-id accept counts: nothing whose acceptance was journaled is
sent again, and every input ends with exactly one record in OUTPUT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from app_helpers import cli, count_journaled, read_journal, read_records, wait_for, write_lines

from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")


def _start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aiosagemaker.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _crash_state(journal: Path, output: Path) -> tuple[set[str], set[int], set[int]]:
    """(inference ids journaled as accepted, inputs in OUTPUT, inputs with an intent only)."""
    done = {r["n"] for r in read_records(output)} if output.exists() else set()
    accepted: set[str] = set()
    state: dict[int, str] = {}
    for record in read_journal(journal):
        kind = record["t"]
        if kind == "accepted":
            accepted.add(record["id"])
        if kind in ("intent", "accepted", "result"):
            n = record["n"]
            if kind == "intent" and state.get(n) in ("accepted", "result"):
                continue
            state[n] = kind
    intent_only = {n for n, kind in state.items() if kind == "intent" and n not in done}
    return accepted, done, intent_only


def _batch_args(endpoint: str, source: Path, output: Path, summary: Path) -> list[str]:
    return [
        "batch", endpoint, str(source), "-o", str(output), "--concurrency", "16",
        "--max-pending", "100", "--poll-interval", "0.05", "--no-progress",
        "--summary-json", str(summary),
    ]  # fmt: skip


def _check_exactly_once(output: Path, n: int) -> list[dict[str, Any]]:
    records = read_records(output)
    assert sorted(r["n"] for r in records) == list(range(1, n + 1))
    assert all(r["status"] == "completed" for r in records)
    return records


# Killed once 30% of the inputs are accepted, past the first window of 100 (--max-pending): the
# crash state (unfinished, with accepted jobs to recover: both asserted) is the same whatever the
# input's length. 400 lines show what 1,000 (ordered) and 600 (unordered) do; those run under
# make test-scale.
@pytest.mark.parametrize(
    ("ordered", "n"),
    [
        pytest.param(True, 400, id="ordered"),
        pytest.param(False, 400, id="unordered"),
        pytest.param(True, 1000, id="ordered-1000", marks=pytest.mark.scale),
        pytest.param(False, 600, id="unordered-600", marks=pytest.mark.scale),
    ],
)
async def test_sigkill_then_resume(
    stack_env: LocalStack, local_stack: LocalStack, tmp_path: Path, ordered: bool, n: int
) -> None:
    # A slow model leaves requests accepted and unfinished at the moment of the kill.
    endpoint: EndpointInfo = await local_stack.create_endpoint(
        f"resume-kill-{'o' if ordered else 'u'}-{n}", model="sleep:2", notifications=False
    )
    source = write_lines(tmp_path / "in.jsonl", [{"i": i} for i in range(n)])
    output, journal, summary = (
        tmp_path / "out.jsonl",
        tmp_path / "out.jsonl.journal",
        tmp_path / "s.json",
    )
    args = _batch_args(endpoint.name, source, output, summary)
    if not ordered:
        args.append("--unordered")
    process = _start(*args)
    try:
        wait_for(
            lambda: count_journaled(journal, "accepted", while_written=True) >= n * 0.3,
            timeout=90,
            what="acceptances",
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    accepted, done, intent_only = _crash_state(journal, output)
    assert len(done) < n, "the job finished before it was killed"
    before = (await local_stack.stats(endpoint.name))["accepted_by_id"]

    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    records = _check_exactly_once(output, n)
    if ordered:
        assert [r["n"] for r in records] == list(range(1, n + 1))
    after = (await local_stack.stats(endpoint.name))["accepted_by_id"]
    # Nothing journaled as accepted was sent again.
    assert all(after[i] == before[i] == 1 for i in accepted)
    # Only requests with an intent and no acceptance at the crash may have been sent twice.
    twice = {i for i, count in after.items() if count > 1}
    assert twice <= {f"{records[0]['inference_id'].rsplit('-', 1)[0]}-{k}" for k in intent_only}
    assert all(count in (1, 2) for count in after.values())
    assert len(after) == n
    stats = orjson.loads(summary.read_bytes())
    assert stats["resubmitted_after_crash"] == len(intent_only)
    assert stats["possibly_duplicated"] >= len(intent_only)
    assert stats["already_done"] == len(done)
    assert stats["recovered_tracked"] + stats["recovered_results"] > 0
    # Every accepted-but-unwritten job came back through the journal, none was re-sent.
    assert (
        stats["submitted"]
        == n - len(done) - stats["recovered_tracked"] - stats["recovered_results"]
    )
    await local_stack.delete_endpoint(endpoint.name)


async def test_ctrl_c_stops_and_says_how_to_resume(
    stack_env: LocalStack, local_stack: LocalStack, tmp_path: Path
) -> None:
    endpoint = await local_stack.create_endpoint("resume-int", model="sleep:2", notifications=False)
    n = 400
    source = write_lines(tmp_path / "in.jsonl", [{"i": i} for i in range(n)])
    output, journal, summary = (
        tmp_path / "out.jsonl",
        tmp_path / "out.jsonl.journal",
        tmp_path / "s.json",
    )
    args = _batch_args(endpoint.name, source, output, summary)
    process = _start(*args, "--grace", "10")
    try:
        wait_for(
            lambda: count_journaled(journal, "accepted", while_written=True) >= 50,
            timeout=60,
            what="50 acceptances",
        )
        os.kill(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert b"resume with: aiosagemaker batch" in stderr
    accepted, done, intent_only = _crash_state(journal, output)
    assert len(done) < n
    # A graceful stop waits for what it sent: no request is left without its acceptance.
    assert not intent_only
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    _check_exactly_once(output, n)
    after = (await local_stack.stats(endpoint.name))["accepted_by_id"]
    assert len(after) == n and set(after.values()) == {1}
    await local_stack.delete_endpoint(endpoint.name)
