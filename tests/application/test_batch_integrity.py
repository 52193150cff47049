"""The journal cannot lie: one run per journal, a resume only against the input the job started
with, no damaged line taken for a record, and no record lost to an OUTPUT that cannot be written.

Real runs of the command (or of ``BatchJob``) against the local stack; the server's per-inference-id
accept counts show what was sent, and how often.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from app_helpers import cli, count_journaled, read_journal, read_records, wait_for, write_lines
from rich.console import Console

from aiosagemaker.batch import BatchConfigError, BatchJob, BatchOptions, BatchUsageError
from aiosagemaker.batch import _writer as batch_writer
from aiosagemaker.batch._inputs import input_changes, open_input_source
from aiosagemaker.cli import main
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

FAST = ("--poll-interval", "0.05", "--no-progress")


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING")]


async def _accepts(local_stack: LocalStack, endpoint: str) -> dict[str, int]:
    counts: dict[str, int] = (await local_stack.stats(endpoint))["accepted_by_id"]
    return counts


def _exactly_once(output: Path, n: int) -> list[dict[str, Any]]:
    records = read_records(output)
    assert sorted(r["n"] for r in records) == list(range(1, n + 1))
    assert all(r["status"] == "completed" for r in records), records
    return records


async def test_a_second_run_is_refused_while_the_first_runs(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    # 6 s per input: the first run is still waiting for its results when the second one starts.
    endpoint = await local_stack.create_endpoint(
        f"lock-{uuid.uuid4().hex[:12]}", model="sleep:600", notifications=False
    )
    n = 16
    source = write_lines(tmp_path / "in.jsonl", [{"i": i} for i in range(n)])
    output, journal = tmp_path / "out.jsonl", tmp_path / "out.jsonl.journal"
    args = ["batch", endpoint.name, str(source), "-o", str(output), "--concurrency", "16", *FAST]
    first = subprocess.Popen(
        [sys.executable, "-m", "aiosagemaker.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: count_journaled(journal, "accepted", while_written=True) == n,
            timeout=30,
            what="16 acceptances",
        )
        # The second run, through the API in this process (to be quick about it).
        second = _job(endpoint.name, source, output, ordered=True)
        with pytest.raises(BatchUsageError) as refused:
            await second.run()
        assert first.poll() is None, "the first run ended before the second was refused"
        message = str(refused.value)
        assert message.startswith(f"journal {journal} is in use by another run of this job")
        assert f"(process {first.pid})" in message
        assert second.stats.submitted == 0
        # It neither read nor wrote the journal: no resumption was recorded.
        assert count_journaled(journal, "resume", while_written=True) == 0
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # The kernel dropped the lock with the killed process: the job resumes.
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    _exactly_once(output, n)
    # Each input sent once: not by the refused run, not again by the resumption.
    accepts = await _accepts(local_stack, endpoint.name)
    assert len(accepts) == n and set(accepts.values()) == {1}
    await local_stack.delete_endpoint(endpoint.name)


def test_a_changed_input_is_refused_on_resume(
    quiet_endpoint: EndpointInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_lines(tmp_path / "in.jsonl", [{"i": i} for i in range(6)])
    output = tmp_path / "out.jsonl"
    args = ["batch", quiet_endpoint.name, str(source), "-o", str(output), *FAST]
    assert (done := cli(*args)).returncode == 0, done.stderr
    header = read_journal(tmp_path / "out.jsonl.journal")[0]
    original, stat = source.read_bytes(), source.stat()
    assert header["input_check"] == {
        "kind": "file",
        "size": len(original),
        "mtime_ns": stat.st_mtime_ns,
        "sha256": header["input_check"]["sha256"],
        "hashed_bytes": len(original),
    }
    records = read_records(output)

    with open(source, "ab") as f:  # a line appended
        f.write(b'{"i":6}\n')
    capsys.readouterr()
    assert main(args) == 2
    changed = f"input {source} changed since the job started"
    appended = capsys.readouterr().err
    assert f"{changed} (size 48 -> 56 bytes; 8 bytes added at the end)" in appended

    # The same size, another line, its modification time put back.
    source.write_bytes(original.replace(b'{"i":3}', b'{"i":7}'))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert main(args) == 2
    rewritten = capsys.readouterr().err
    assert f"{changed} (content changed (SHA-256 of the whole file))" in rewritten

    # The same bytes with a new time (a copy, a touch): the same input; the job is done.
    source.write_bytes(original)
    assert source.stat().st_mtime_ns != stat.st_mtime_ns
    same = cli(*args)
    assert same.returncode == 0, same.stderr
    assert not _warnings(same.stderr)
    assert read_records(output) == records


def test_a_large_input_is_checked_by_size_head_and_time(tmp_path: Path) -> None:
    """Over 64 MiB, a file's first MiB is checksummed, not the rest: a new modification time
    then counts as a change, and the message says how to put the old one back."""
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as f:
        f.truncate(65 << 20)  # sparse: nothing is written, and only 1 MiB is read
    source = open_input_source(str(big))
    recorded = source.fingerprint()
    assert recorded["hashed_bytes"] == 1 << 20 and recorded["size"] == 65 << 20
    then = recorded["mtime_ns"]
    os.utime(big, ns=(then, then + 10**9))
    changes = input_changes(recorded, source.fingerprint(hashed_bytes=1 << 20), str(big))
    assert len(changes) == 1 and "not checksummed whole" in changes[0]
    seconds = f"{then // 10**9}.{then % 10**9:09d}"
    assert changes[0].endswith(f"restore its time with touch -d @{seconds} {big}")
    os.utime(big, ns=(then, then))
    assert input_changes(recorded, source.fingerprint(hashed_bytes=1 << 20), str(big)) == []


def test_a_directory_is_checked_by_its_file_names_sizes_and_times(tmp_path: Path) -> None:
    directory = tmp_path / "inputs"
    directory.mkdir()
    for name in ("a.txt", "b.txt"):
        (directory / name).write_text(name)
    source = open_input_source(str(directory))
    recorded = source.fingerprint()
    assert recorded["kind"] == "directory" and recorded["files"] == 2
    assert input_changes(recorded, source.fingerprint(), str(directory)) == []
    (directory / "0.txt").write_text("first now: every input after it moves one place")
    assert input_changes(recorded, source.fingerprint(), str(directory)) == [
        "it had 2 files, it has 3"
    ]
    (directory / "0.txt").unlink()
    b = directory / "b.txt"
    then = b.stat().st_mtime_ns
    b.write_text("B.TXT")  # the same size; its time moves on (explicitly: clocks are coarse)
    os.utime(b, ns=(then, then + 10**9))
    assert input_changes(recorded, source.fingerprint(), str(directory)) == [
        "a file was replaced, renamed, resized or modified"
    ]


def test_unchecked_inputs_resume_with_a_warning(
    quiet_endpoint: EndpointInfo, tmp_path: Path
) -> None:
    # A journal written before inputs were fingerprinted: resumed, with a warning.
    source = write_lines(tmp_path / "in.jsonl", [{"i": i} for i in range(3)])
    output, journal = tmp_path / "out.jsonl", tmp_path / "out.jsonl.journal"
    args = ["batch", quiet_endpoint.name, str(source), "-o", str(output), *FAST]
    assert (done := cli(*args)).returncode == 0, done.stderr
    lines = journal.read_bytes().splitlines(keepends=True)
    header = orjson.loads(lines[0])
    del header["input_check"]
    journal.write_bytes(orjson.dumps(header) + b"\n" + b"".join(lines[1:]))
    old = cli(*args)
    assert old.returncode == 0, old.stderr
    assert _warnings(old.stderr) == [
        f"WARNING aiosagemaker: journal {journal} does not record the input's size, time and "
        "checksum (it was written by an earlier version): resuming without checking that "
        f"{source} is unchanged"
    ]
    # stdin: nothing to check, so a resumption says so.
    piped = tmp_path / "piped.jsonl"
    data = "".join(f'{{"i": {i}}}\n' for i in range(3))
    first = cli("batch", quiet_endpoint.name, "-", "-o", str(piped), *FAST, input=data)
    assert first.returncode == 0 and not _warnings(first.stderr), first.stderr
    again = cli("batch", quiet_endpoint.name, "-", "-o", str(piped), *FAST, input=data)
    assert again.returncode == 0, again.stderr
    assert len(warnings := _warnings(again.stderr)) == 1
    assert "resuming from a stream (stdin): nothing can check" in warnings[0]
    assert len(read_records(piped)) == 3


async def test_a_torn_journal_resumes(
    local_stack: LocalStack, quiet_endpoint: EndpointInfo, tmp_path: Path
) -> None:
    n = 8
    source = write_lines(tmp_path / "in.jsonl", [{"i": i} for i in range(n)])
    output, journal = tmp_path / "out.jsonl", tmp_path / "out.jsonl.journal"
    args = ["batch", quiet_endpoint.name, str(source), "-o", str(output), *FAST]
    assert (done := cli(*args)).returncode == 0, done.stderr
    # What a crash in the middle of two appends leaves: OUTPUT with 3 records and a half, the
    # journal with its last line cut.
    lines = output.read_bytes().splitlines(keepends=True)
    output.write_bytes(b"".join(lines[:3]) + lines[3][:20])
    data = journal.read_bytes()
    assert data.endswith(b"\n")
    whole = data.rindex(b"\n", 0, len(data) - 1) + 1
    journal.write_bytes(data[: whole + 15])
    resumed = cli(*args, "--summary-json", str(tmp_path / "summary.json"))
    assert resumed.returncode == 0, resumed.stderr
    records = _exactly_once(output, n)
    assert [r["n"] for r in records] == list(range(1, n + 1))
    # The torn line was cut off before the resumption was appended: every line is whole.
    entries = read_journal(journal)
    assert journal.read_bytes().startswith(data[:whole])
    assert journal.read_bytes().count(b"\n") == len(entries)
    assert entries[data[:whole].count(b"\n")]["t"] == "resume"
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["already_done"] == 3 and summary["submitted"] == 0
    accepts = await _accepts(local_stack, quiet_endpoint.name)
    assert len(accepts) == n and set(accepts.values()) == {1}


_DAMAGES: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("result", lambda r: r.pop("rec"), 'a "result" record without its OUTPUT record "rec"'),
    ("intent", lambda r: r.update(n="3"), """"n" of an "intent" record is '3', not an input"""),
    ("accepted", lambda r: r.update(t="acepted"), "unknown record type 'acepted'"),
]


def test_a_malformed_journal_line_is_refused(
    quiet_endpoint: EndpointInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A complete line that is JSON of the wrong shape is refused (exit 2) with its number,
    the journal left as it is; a torn last line is not (see test_a_torn_journal_resumes)."""
    source = write_lines(tmp_path / "in.jsonl", [{"i": i} for i in range(4)])
    output, journal = tmp_path / "out.jsonl", tmp_path / "out.jsonl.journal"
    args = ["batch", quiet_endpoint.name, str(source), "-o", str(output), *FAST]
    assert (done := cli(*args)).returncode == 0, done.stderr
    good = journal.read_bytes().splitlines(keepends=True)
    for kind, damage, problem in _DAMAGES:
        lines = list(good)
        # The first line of that kind: not the last line, which a crash may tear.
        number = next(i for i, line in enumerate(lines, 1) if orjson.loads(line)["t"] == kind)
        assert number < len(lines)
        record = orjson.loads(lines[number - 1])
        damage(record)
        lines[number - 1] = orjson.dumps(record) + b"\n"
        journal.write_bytes(damaged := b"".join(lines))
        capsys.readouterr()
        assert main(args) == 2
        refused = capsys.readouterr().err
        assert f"journal {journal}, line {number}: {problem}" in refused
        assert refused.count("\n") == 1 and "Traceback" not in refused
        assert journal.read_bytes() == damaged  # left as it was


async def test_a_full_disk_loses_no_record(
    local_stack: LocalStack, quiet_endpoint: EndpointInfo, tmp_path: Path
) -> None:
    """OUTPUT on a full disk (/dev/full: every write fails with ENOSPC): the run retries, then
    stops (exit 3) with the results in the journal; a rerun with room writes each of them once,
    sending nothing again."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    n = 6
    source = write_lines(tmp_path / "in.jsonl", [{"i": i} for i in range(n)])
    journal, output, summary = tmp_path / "job.journal", tmp_path / "out.jsonl", tmp_path / "s.json"
    args = ["batch", quiet_endpoint.name, str(source), "--journal", str(journal), *FAST]
    full = cli(*args, "-o", "/dev/full")
    assert full.returncode == 3, full.stderr
    assert "Traceback" not in full.stderr
    assert re.search(
        r"error: cannot write OUTPUT /dev/full: No space left on device \(5 tries over [\d.]+ s\); "
        r"the \d+ results not written are in the journal, and the next run writes them",
        full.stderr,
    ), full.stderr
    assert len(re.findall(r"WARNING .*cannot write OUTPUT /dev/full", full.stderr)) == 4
    assert count_journaled(journal, "result") == n

    resumed = cli(*args, "-o", str(output), "--summary-json", str(summary))
    assert resumed.returncode == 0, resumed.stderr
    records = _exactly_once(output, n)
    assert [r["n"] for r in records] == list(range(1, n + 1))
    assert orjson.loads(summary.read_bytes())["recovered_results"] == n
    accepts = await _accepts(local_stack, quiet_endpoint.name)
    assert len(accepts) == n and set(accepts.values()) == {1}


def _job(
    endpoint: str, source: Path, output: Path, *, concurrency: int = 8, ordered: bool = False
) -> BatchJob:
    options = BatchOptions(
        endpoint=endpoint,
        input=str(source),
        output=output,
        ordered=ordered,
        concurrency=concurrency,
        poll_interval=0.05,
        grace=5.0,
    )
    return BatchJob(options, console=Console(stderr=True, quiet=True), progress=False)


class _Disk:
    """Stands in for the writer's ``os.write``: ``full`` whole writes (and, with ``after``, whole
    writes until one matching it), then one short write of ``short`` bytes, then ENOSPC
    ``failures`` times (``None``: for ever), then whole writes."""

    def __init__(
        self,
        *,
        full: int,
        short: int,
        failures: int | None,
        after: re.Pattern[bytes] | None = None,
    ) -> None:
        self.full = full
        self.short = short
        self.failures = failures
        self.after = after

    def __call__(self, fd: int, data: bytes | bytearray) -> int:
        if self.after is not None:
            if self.after.search(data):
                self.after = None
            return os.write(fd, data)
        if self.full > 0:
            self.full -= 1
            return os.write(fd, data)
        if self.short > 0:
            written = os.write(fd, data[: self.short])
            self.short = 0
            return written
        if self.failures is None or self.failures > 0:
            if self.failures is not None:
                self.failures -= 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)


def _marks_hold(journal: Path, output: Path) -> int:
    """Every input up to each journaled mark has a complete record in OUTPUT; the last mark."""
    complete = set()
    with open(output, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                complete.add(orjson.loads(line)["n"])
    marks = [r["n"] for r in read_journal(journal) if r["t"] == "mark"]
    for mark in marks:
        assert set(range(1, mark + 1)) <= complete, (mark, sorted(complete))
    return max(marks, default=0)


async def test_a_full_disk_mid_line_then_a_resume(
    local_stack: LocalStack,
    quiet_endpoint: EndpointInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk fills in the middle of a line of an unordered job: the journal's marks claim only
    complete records, and a resume writes every other record once, sending nothing again."""
    n = 40
    source = write_lines(tmp_path / "in.jsonl", [{"i": i} for i in range(n)])
    output, journal = tmp_path / "out.jsonl", tmp_path / "out.jsonl.journal"
    # Records written (and marked) up to the one of the first input, then the disk fills in the
    # middle of a line. (An unordered job writes in completion order: the first write need not
    # hold the first input, and a mark needs every input up to it.)
    disk = _Disk(full=0, short=100, failures=None, after=re.compile(rb'"n":1[,}]'))
    with monkeypatch.context() as patch:
        patch.setattr(batch_writer, "_write", disk)
        patch.setattr(batch_writer, "_RETRY_DELAYS", (0.01, 0.01))
        with pytest.raises(BatchConfigError, match="No space left on device"):
            await _job(quiet_endpoint.name, source, output, concurrency=2).run()
    assert disk.short == 0 and not output.read_bytes().endswith(b"\n")
    assert _marks_hold(journal, output) > 0

    stats = await _job(quiet_endpoint.name, source, output).run()
    assert stats.written == n - stats.already_done
    _exactly_once(output, n)
    assert _marks_hold(journal, output) == n
    accepts = await _accepts(local_stack, quiet_endpoint.name)
    assert len(accepts) == n and set(accepts.values()) == {1}


async def test_a_failed_write_is_retried_without_loss(
    quiet_endpoint: EndpointInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short write then two ENOSPC, then room again: the run ends well, every record once."""
    n = 20
    source = write_lines(tmp_path / "in.jsonl", [{"i": i} for i in range(n)])
    output = tmp_path / "out.jsonl"
    disk = _Disk(full=0, short=500, failures=2)
    monkeypatch.setattr(batch_writer, "_write", disk)
    monkeypatch.setattr(batch_writer, "_RETRY_DELAYS", (0.01, 0.01, 0.01))
    stats = await _job(quiet_endpoint.name, source, output).run()
    assert disk.failures == 0 and stats.written == n and not stats.interrupted
    _exactly_once(output, n)
    assert output.read_bytes().count(b"\n") == n
