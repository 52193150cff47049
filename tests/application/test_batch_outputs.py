"""OUTPUT where users keep it: Parquet parts on local disk, JSON Lines or Parquet parts in S3 with
the journal beside them, each resumable after ``kill -9`` (on another machine, for S3) with every
input's record in exactly one committed part.

Every run is the ``aiosagemaker batch`` command in a child process against the local stack; S3 is
read back with boto3 over loopback.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import orjson
import pyarrow.parquet as pq
import pytest
from app_helpers import cli, cli_process, read_journal, wait_for, write_lines

from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")


def _s3() -> Any:
    return boto3.client("s3")


def _bucket_of(endpoint: EndpointInfo) -> str:
    return endpoint.output_path.removeprefix("s3://").split("/", 1)[0]


def _start(*args: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aiosagemaker.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
    )


def _objects(bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = _s3()
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            try:
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            except s3.exceptions.NoSuchKey:
                continue  # a journal chunk deleted after a snapshot, between LIST and GET
            found[item["Key"][len(prefix) :]] = body
    return found


def _parse_part(name: str, data: bytes) -> list[dict[str, Any]]:
    if name.endswith(".parquet"):
        return list(pq.read_table(io.BytesIO(data)).to_pylist())
    return [orjson.loads(line) for line in data.splitlines()]


def _s3_journal_records(objects: dict[str, bytes]) -> list[dict[str, Any]]:
    """The journal's records from its newest snapshot on (what a resume reads)."""
    chunks = sorted(k for k in objects if k.startswith("_journal/") and k.endswith(".jsonl"))
    snapshots = [k for k in chunks if k.endswith(".snapshot.jsonl")]
    if snapshots:
        chunks = [k for k in chunks if k >= snapshots[-1]]
    return [orjson.loads(line) for k in chunks for line in objects[k].splitlines() if line]


def _committed(records: list[dict[str, Any]]) -> dict[str, set[int]]:
    parts: dict[str, set[int]] = {}
    for r in records:
        if r["t"] == "part":
            parts[r["name"]] = {n for a, b in r["ranges"] for n in range(a, b + 1)}
    return parts


def _check_parts(parts: dict[str, bytes], journal: list[dict[str, Any]], n: int) -> None:
    """Only committed parts, each holding exactly the inputs its journal record names, and every
    input's record in exactly one of them."""
    committed = _committed(journal)
    assert set(parts) == set(committed), "a part the journal does not name is left"
    seen: list[int] = []
    for name, data in parts.items():
        records = _parse_part(name, data)
        assert {r["n"] for r in records} == committed[name]
        assert len(records) == len(committed[name])
        assert all(r["status"] == "completed" for r in records)
        seen += [r["n"] for r in records]
    assert sorted(seen) == list(range(1, n + 1))


def _args(endpoint: str, source: str, output: str, *extra: str) -> list[str]:
    return [
        "batch", endpoint, source, "-o", output, "--concurrency", "16", "--max-pending", "100",
        "--poll-interval", "0.05", "--no-progress", *extra,
    ]  # fmt: skip


async def test_parquet_in_parquet_out(quiet_endpoint: EndpointInfo, tmp_path: Path) -> None:
    import pyarrow as pa

    n = 120
    source = tmp_path / "in.parquet"
    pq.write_table(
        pa.table({"key": [f"doc-{i}" for i in range(n)], "body": [{"i": i} for i in range(n)]}),
        source,
    )
    output = tmp_path / "out.parquet"
    done = cli(
        *_args(quiet_endpoint.name, str(source), str(output), "--id-column", "key"),
        "--part-records",
        "50",
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in output.iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    table = pq.read_table(output)  # the directory reads as one table
    rows = sorted(table.to_pylist(), key=lambda r: r["n"])
    assert [r["n"] for r in rows] == list(range(1, n + 1))
    assert [r["id"] for r in rows] == [f"doc-{i}" for i in range(n)]
    assert orjson.loads(rows[7]["output"]) == {"i": 7}  # the echo model's output, as JSON text
    assert all(r["timings"]["latency_ms"] is not None for r in rows)
    journal = read_journal(Path(f"{output}.journal"))
    assert [r["records"] for r in journal if r["t"] == "part"] == [50, 50, 20]


async def test_s3_in_s3_out_with_owner(quiet_endpoint: EndpointInfo, tmp_path: Path) -> None:
    bucket, n = _bucket_of(quiet_endpoint), 90
    s3 = _s3()
    prefix = f"jobs/{uuid.uuid4().hex[:8]}"
    for k in range(3):
        lines = b"".join(orjson.dumps({"i": 30 * k + i}) + b"\n" for i in range(30))
        s3.put_object(Bucket=bucket, Key=f"{prefix}/in/{k}.jsonl", Body=lines)
    output = f"s3://{bucket}/{prefix}/out/"
    done = cli(
        *_args(quiet_endpoint.name, f"s3://{bucket}/{prefix}/in/", output),
        "--part-records",
        "40",
        "--expected-bucket-owner",
        "123456789012",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    objects = _objects(bucket, f"{prefix}/out/")
    parts = {k: v for k, v in objects.items() if k.startswith("part-")}
    assert sorted(parts) == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    _check_parts(parts, _s3_journal_records(objects), n)
    records = [r for name, data in parts.items() for r in _parse_part(name, data)]
    assert sorted(r["output"]["i"] for r in records) == list(range(n))
    # The run released its lease; nothing but parts and the journal is there; nothing local.
    assert not any(k.startswith("_journal/lock") for k in objects)
    assert set(objects) - set(parts) <= {k for k in objects if k.startswith("_journal/")}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["local-parquet", "s3-jsonl", "s3-parquet-new-machine"])
async def test_sigkill_then_resume_parts(
    local_stack: LocalStack, tmp_path: Path, kind: str
) -> None:
    """Killed with parts committed and jobs accepted and unfinished; resumed (for S3, from a
    fresh working directory: the journal and parts in S3 are all it has); every record in exactly
    one committed part, and nothing journaled as accepted sent twice."""
    n = 200
    endpoint = await local_stack.create_endpoint(
        # 1 s per request (time runs 100x fast): 200 inputs take about 13 s at 16 in flight,
        # longer than a poll of the journal below takes on a loaded machine (at 0.5 s a request,
        # the job once ended between two polls, and the kill found it done).
        f"parts-kill-{kind}-{uuid.uuid4().hex[:6]}",
        model="sleep:100",
        notifications=False,
    )
    bucket = _bucket_of(endpoint)
    prefix = f"jobs/{uuid.uuid4().hex[:8]}"
    lines = b"".join(orjson.dumps({"i": i}) + b"\n" for i in range(n))
    if kind == "local-parquet":
        source = str(write_lines(tmp_path / "in.jsonl", [{"i": i} for i in range(n)]))
        output = str(tmp_path / "out.parquet")
    else:
        _s3().put_object(Bucket=bucket, Key=f"{prefix}/in.jsonl", Body=lines)
        source = f"s3://{bucket}/{prefix}/in.jsonl"
        output = f"s3://{bucket}/{prefix}/out/"
    extra = ["--part-records", "25", "--unordered"]
    if kind == "s3-parquet-new-machine":
        extra += ["--output-format", "parquet"]
    args = _args(endpoint.name, source, output, *extra)
    first, second = tmp_path / "machine-1", tmp_path / "machine-2"
    first.mkdir()
    second.mkdir()

    def journal(*, while_written: bool = False) -> list[dict[str, Any]]:
        if kind == "local-parquet":
            path = Path(f"{output}.journal")
            return read_journal(path, while_written=while_written) if path.exists() else []
        chunks = _objects(bucket, f"{prefix}/out/_journal/")
        return _s3_journal_records({f"_journal/{k}": v for k, v in chunks.items()})

    def parts_committed() -> int:
        return sum(1 for r in journal(while_written=True) if r["t"] == "part")

    process = _start(*args, cwd=first)
    try:
        # Two parts (50 records) committed: 16 requests are in flight, accepted and unfinished.
        wait_for(lambda: parts_committed() >= 2, timeout=90, what="two committed parts")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    before_records = journal()
    accepted_ids = {r["id"] for r in before_records if r["t"] == "accepted"}
    in_parts = {n for ns in _committed(before_records).values() for n in ns}
    assert 0 < len(in_parts) < n, "the kill did not land mid-job"
    # Accepted and not in a committed part: collected on the resume, never sent again.
    assert {r["n"] for r in before_records if r["t"] == "accepted"} - in_parts
    before = (await local_stack.stats(endpoint.name))["accepted_by_id"]
    if kind != "local-parquet":
        # A leftover the crash could have made: a part written and never committed.
        _s3().put_object(Bucket=bucket, Key=f"{prefix}/out/part-00099.jsonl", Body=b"{}\n")

    resumed = cli(*args, cwd=second if kind != "local-parquet" else first)
    assert resumed.returncode == 0, resumed.stderr
    if kind == "local-parquet":
        parts = {p.name: p.read_bytes() for p in Path(output).iterdir()}
        final = read_journal(Path(f"{output}.journal"))
    else:
        objects = _objects(bucket, f"{prefix}/out/")
        parts = {k: v for k, v in objects.items() if k.startswith("part-")}
        final = _s3_journal_records(objects)
        assert list(second.iterdir()) == [], "the resume wrote to local disk"
    _check_parts(parts, final, n)
    after = (await local_stack.stats(endpoint.name))["accepted_by_id"]
    assert all(after[i] == before[i] == 1 for i in accepted_ids)
    assert len(after) == n and all(count in (1, 2) for count in after.values())
    await local_stack.delete_endpoint(endpoint.name)


async def test_s3_job_refuses_a_second_run_and_old_parts(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    endpoint = await local_stack.create_endpoint(
        # 5 s per request: the first run is still running when the second starts.
        f"parts-lock-{uuid.uuid4().hex[:6]}",
        model="sleep:500",
        notifications=False,
    )
    bucket, prefix = _bucket_of(endpoint), f"jobs/{uuid.uuid4().hex[:8]}"
    source = write_lines(tmp_path / "in.jsonl", [{"i": i} for i in range(200)])
    output = f"s3://{bucket}/{prefix}/out/"
    args = _args(endpoint.name, str(source), output, "--grace", "0")
    process = _start(*args, cwd=tmp_path)
    try:
        wait_for(
            lambda: (
                any(k.startswith("0") for k in _objects(bucket, f"{prefix}/out/_journal/"))
                or process.poll() is not None
            ),
            timeout=60,
            what="the first run's journal",
        )
        second = cli(*args, cwd=tmp_path)
        assert second.returncode == 2, second.stderr
        assert "in use by another run" in second.stderr
        assert f"process {process.pid}" in second.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    # A new job into a prefix holding parts, with no journal: refused without --overwrite.
    other = f"s3://{bucket}/{prefix}/other/"
    _s3().put_object(Bucket=bucket, Key=f"{prefix}/other/part-00000.jsonl", Body=b"{}\n")
    refused = cli(*_args(endpoint.name, str(source), other), cwd=tmp_path)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr, refused.stderr
    await local_stack.delete_endpoint(endpoint.name)


def test_parquet_without_pyarrow_says_how_to_install(tmp_path: Path) -> None:
    # A pyarrow that cannot be imported (a stand-in module raising ImportError on the path).
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "pyarrow.py").write_text("raise ImportError('no pyarrow here')\n")
    source = write_lines(tmp_path / "in.jsonl", [{"i": 1}])
    # A child process: the stand-in must shadow pyarrow from the interpreter's start.
    done = cli_process(
        "batch", "ep", str(source), "-o", str(tmp_path / "out.parquet"),
        env={"PYTHONPATH": os.pathsep.join([str(stub), os.environ.get("PYTHONPATH", "")])},
    )  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'aiosagemaker[parquet]'" in done.stderr


async def test_a_changed_s3_input_is_refused_on_resume(
    quiet_endpoint: EndpointInfo, tmp_path: Path
) -> None:
    bucket, prefix = _bucket_of(quiet_endpoint), f"jobs/{uuid.uuid4().hex[:8]}"
    s3 = _s3()
    for k in range(2):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/in/{k}.jsonl", Body=b'{"a":1}\n{"a":2}\n')
    args = _args(quiet_endpoint.name, f"s3://{bucket}/{prefix}/in/", f"s3://{bucket}/{prefix}/o/")
    assert cli(*args, cwd=tmp_path).returncode == 0
    s3.put_object(Bucket=bucket, Key=f"{prefix}/in/1.jsonl", Body=b'{"a":3}\n{"a":4}\n')
    rerun = cli(*args, cwd=tmp_path)
    assert rerun.returncode == 2, rerun.stderr
    assert "changed since the job started" in rerun.stderr
    assert "an object was replaced, modified or renamed" in rerun.stderr
    assert f"s3://{bucket}/{prefix}/o/_journal/" in rerun.stderr
