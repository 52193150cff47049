"""The batch job end to end against the local stack: thousands of lines, both watchers, staging."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from app_helpers import read_records, write_lines
from rich.console import Console

from aiosagemaker.batch._job import BatchJob, BatchOptions
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")


def _quiet() -> Console:
    return Console(stderr=True, quiet=True)


def _inputs(n: int) -> list[object]:
    lines: list[object] = []
    for i in range(1, n + 1):
        if i % 3 == 0:
            lines.append({"id": f"env-{i}", "body": {"x": i}})
        elif i % 3 == 1:
            lines.append({"x": i})
        else:
            lines.append({"id": i * 10, "body_base64": base64.b64encode(f"b{i}".encode()).decode()})
    return lines


async def test_thousands_of_lines_ordered_s3(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo, tmp_path: Path
) -> None:
    endpoint = quiet_endpoint
    n = 2000
    source = write_lines(tmp_path / "in.jsonl", _inputs(n))
    out = tmp_path / "out.jsonl"
    job = BatchJob(
        BatchOptions(
            endpoint=endpoint.name,
            input=str(source),
            output=out,
            concurrency=64,
            max_pending=500,
            poll_interval=0.05,
        ),
        console=_quiet(),
    )
    stats = await job.run()
    records = read_records(out)
    assert [r["n"] for r in records] == list(range(1, n + 1))  # input order, one each
    assert all(r["status"] == "completed" for r in records), records[:3]
    assert stats.completed == n and stats.written == n and stats.possibly_duplicated == 0
    by_n = {r["n"]: r for r in records}
    assert by_n[1]["output"] == {"x": 1} and by_n[1]["id"] == "1"
    assert by_n[1]["content_type"] == "application/json"
    assert by_n[3]["output"] == {"x": 3} and by_n[3]["id"] == "env-3"
    assert by_n[2]["output"] == "b2" and by_n[2]["id"] == "20"
    assert by_n[5]["timings"]["latency_ms"] >= 0
    server = await stack_env.stats(endpoint.name)
    ids = [r["inference_id"] for r in records]
    assert len(set(ids)) == n
    assert all(server["accepted_by_id"][i] == 1 for i in ids)
    assert server["accepted"] == n
    assert stats.percentile_ms(50) is not None


async def test_unordered_with_sqs_and_staging(
    stack_env: LocalStack, endpoint: EndpointInfo, tmp_path: Path
) -> None:
    big = "z" * 130_000
    lines: list[object] = [{"id": f"i{i}", "body": f"text {i}"} for i in range(300)]
    lines[7] = {"id": "big", "body": big}
    source = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    stats = await BatchJob(
        BatchOptions(
            endpoint=endpoint.name,
            input=str(source),
            output=out,
            watcher="sqs",
            queue_url=endpoint.queue_url,
            staging=f"s3://{stack_env.info.bucket}/batch-staging/",
            ordered=False,
            concurrency=32,
        ),
        console=_quiet(),
    ).run()
    records = read_records(out)
    assert sorted(r["n"] for r in records) == list(range(1, 301))
    assert all(r["status"] == "completed" for r in records)
    by_id = {r["id"]: r for r in records}
    assert by_id["i3"]["output"] == "text 3" and by_id["i3"]["content_type"] == "text/plain"
    # Over the inline-output size: the record points at the output instead of copying it.
    assert by_id["big"]["output"] is None and by_id["big"]["output_location"].startswith("s3://")
    assert stats.staged == 1


async def test_directory_input(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo, tmp_path: Path
) -> None:
    endpoint = quiet_endpoint
    folder = tmp_path / "inputs"
    folder.mkdir()
    for i in range(5):
        (folder / f"doc{i}.json").write_bytes(orjson.dumps({"doc": i}))
    (folder / "note.txt").write_text("plain words")
    (folder / ".hidden").write_text("skipped")
    out = tmp_path / "out.jsonl"
    stats = await BatchJob(
        BatchOptions(endpoint=endpoint.name, input=str(folder), output=out, poll_interval=0.05),
        console=_quiet(),
    ).run()
    records = read_records(out)
    assert [r["id"] for r in records] == [*(f"doc{i}.json" for i in range(5)), "note.txt"]
    assert records[0]["output"] == {"doc": 0}
    assert records[-1]["output"] == "plain words" and records[-1]["content_type"] == "text/plain"
    assert stats.completed == 6
