"""The batch job end to end against the local stack: many lines (thousands under make test-scale),
both watchers, staging."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiobotocore.session import get_session
from app_helpers import read_records, write_lines
from rich.console import Console

from aiosagemaker import S3Polling
from aiosagemaker.batch import BatchJob, BatchOptions, BatchStats
from aiosagemaker.batch import _connect as batch_connect
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")


def _quiet() -> Console:
    return Console(stderr=True, quiet=True)


def _check_timings(
    records: list[dict[str, Any]], stats: BatchStats, started: float, finished: float
) -> None:
    """Every record's timings are real: ordered milestones inside the run, and a latency that
    spans them and agrees with the job's histogram."""
    # Epochs are written to the millisecond, latencies to a tenth of one: allow their rounding.
    slack = 0.001
    latencies = []
    for record in records:
        t = record["timings"]
        submitted, accepted, completed = t["submitted"], t["accepted"], t["completed"]
        assert started - slack <= submitted <= accepted <= completed <= finished + slack, t
        latency = t["latency_ms"]
        # From submission to the output read: at least to the result's arrival, within the run.
        assert (completed - submitted) * 1000 - 1.1 <= latency <= (finished - started) * 1000, t
        latencies.append(latency)
    # The summary's histogram holds the same latencies, to 3 significant digits: each percentile
    # is the record latency of that rank (HDR's rank, rounded up to its bucket's top).
    latencies.sort()
    assert latencies[0] > 0
    assert stats.latency.get_total_count() == len(latencies)
    for p in (50, 90, 99, 100):
        expected = latencies[max(1, int(p / 100 * len(latencies) + 0.5)) - 1]
        value = stats.percentile_ms(p)
        assert value is not None and expected - 0.1 <= value <= expected * 1.002 + 0.1, (p, value)


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


# The window (--max-pending) fills and drains four times over either way, with 64 requests in
# flight: 500 lines prove the order, the one record per line and the once-only acceptance that
# 2,000 do. The 2,000-line run runs under make test-scale.
@pytest.mark.parametrize(
    ("n", "max_pending"), [(500, 125), pytest.param(2000, 500, marks=pytest.mark.scale)]
)
async def test_many_lines_ordered_s3(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo, tmp_path: Path, n: int, max_pending: int
) -> None:
    endpoint = quiet_endpoint
    source = write_lines(tmp_path / "in.jsonl", _inputs(n))
    out = tmp_path / "out.jsonl"
    job = BatchJob(
        BatchOptions(
            endpoint=endpoint.name,
            input=str(source),
            output=out,
            concurrency=64,
            max_pending=max_pending,
            poll_interval=0.05,
        ),
        console=_quiet(),
    )
    started = time.time()
    stats = await job.run()
    finished = time.time()
    records = read_records(out)
    assert [r["n"] for r in records] == list(range(1, n + 1))  # input order, one each
    assert all(r["status"] == "completed" for r in records), records[:3]
    assert stats.completed == n and stats.written == n and stats.possibly_duplicated == 0
    by_n = {r["n"]: r for r in records}
    assert by_n[1]["output"] == {"x": 1} and by_n[1]["id"] == "1"
    assert by_n[1]["content_type"] == "application/json"
    assert by_n[3]["output"] == {"x": 3} and by_n[3]["id"] == "env-3"
    assert by_n[2]["output"] == "b2" and by_n[2]["id"] == "20"
    _check_timings(records, stats, started, finished)
    server = await stack_env.stats(endpoint.name)
    ids = [r["inference_id"] for r in records]
    assert len(set(ids)) == n
    assert all(server["accepted_by_id"][i] == 1 for i in ids)
    assert server["accepted"] == n


async def test_unordered_with_sqs_and_staging(
    stack_env: LocalStack, endpoint: EndpointInfo, tmp_path: Path
) -> None:
    big = "z" * 130_000
    lines: list[object] = [{"id": f"i{i}", "body": f"text {i}"} for i in range(300)]
    lines[7] = {"id": "big", "body": big}
    source = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    started = time.time()
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
    finished = time.time()
    records = read_records(out)
    assert sorted(r["n"] for r in records) == list(range(1, 301))
    assert all(r["status"] == "completed" for r in records)
    _check_timings(records, stats, started, finished)
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


async def test_outputs_over_the_inline_size_are_recorded_by_location_unread(
    stack_env: LocalStack,
    quiet_endpoint: EndpointInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The job reads no more of an output than it copies into the record (#10): its watcher's
    # max_output_bytes is --inline-output-bytes, and a larger output is "completed" by location.
    watchers: list[S3Polling] = []

    def spy(**options: Any) -> S3Polling:
        watcher = S3Polling(**options)
        watchers.append(watcher)
        return watcher

    monkeypatch.setattr(batch_connect, "S3Polling", spy)
    big = "b" * 100_000
    lines: list[object] = [{"id": "small", "body": "s" * 10}, {"id": "big", "body": big}]
    source = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    stats = await BatchJob(
        BatchOptions(
            endpoint=quiet_endpoint.name,
            input=str(source),
            output=out,
            poll_interval=0.05,
            inline_output_bytes=1000,
        ),
        console=_quiet(),
    ).run()
    by_id = {r["id"]: r for r in read_records(out)}
    assert by_id["small"]["status"] == "completed" and by_id["small"]["output"] == "s" * 10
    record = by_id["big"]
    assert record["status"] == "completed" and record["failure_reason"] is None
    assert record["output"] is None and record["content_type"] == "text/plain"
    assert record["output_location"].startswith("s3://")
    assert record["timings"]["latency_ms"] > 0
    assert stats.completed == 2
    [watcher] = watchers
    assert watcher.max_output_bytes == 1000
    watched = watcher.statistics()
    # Only the small output's 10 bytes were read: the big one was left unread in S3 (it is there).
    assert watched.outputs_too_large == 1 and watched.bytes_read == 10
    bucket, _, key = record["output_location"].removeprefix("s3://").partition("/")
    async with get_session().create_client("s3") as s3:
        stored = await s3.head_object(Bucket=bucket, Key=key)
    assert stored["ContentLength"] == len(big)
