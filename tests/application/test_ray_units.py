"""``aiosagemaker.ray`` without a Ray cluster: the limits helper, the columns, the journal, and a
retried batch's exactly-once rules, with ``AsyncInference`` called directly (as Ray's actor loop
calls it) against the local stack over loopback HTTP."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from aiosagemaker import Limits
from aiosagemaker.local import LocalStack
from aiosagemaker.ray import AsyncInference, split_limits
from aiosagemaker.ray._columns import record_of_row, result_columns
from aiosagemaker.ray._journal import ActorJournal, batch_key
from aiosagemaker.ray._store import LocalStore

SRC = Path(__file__).parents[2] / "src" / "aiosagemaker"


def test_split_limits_never_exceeds_the_total() -> None:
    per_actor = split_limits(Limits(max_concurrent_invocations=1000, max_pending=10_000), 3)
    assert per_actor.max_concurrent_invocations == 333 and per_actor.max_pending == 3333
    assert split_limits(Limits(max_concurrent_invocations=2), 4).max_concurrent_invocations == 1
    with pytest.raises(ValueError, match="at least 1"):
        split_limits(Limits(), 0)


def test_result_columns_give_back_the_batch_record() -> None:
    records: list[dict[str, Any]] = [
        {
            "n": 1, "id": "a", "inference_id": "j-1", "status": "completed",
            "output_location": "s3://b/o/1.out", "content_type": "application/json",
            "output": {"k": [1, 2]}, "failure_reason": None,
            "timings": {"submitted": 1.0, "accepted": 1.5, "completed": 2.0, "latency_ms": 1000.0},
        },
        {
            "n": 2, "id": "b", "inference_id": None, "status": "invalid",
            "output_location": None, "content_type": None, "output": None,
            "failure_reason": "not JSON",
        },
    ]  # fmt: skip
    columns = result_columns(records, [False, False], [True, False])
    table = pa.table({"n": [1, 2], "id": ["a", "b"], **columns})
    assert [record_of_row(row) for row in table.to_pylist()] == records
    assert table.column("recovered").to_pylist() == [True, False]


async def test_journal_keeps_acceptances_per_batch(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "journal")
    journal = ActorJournal(store, token="t1", flush_interval=1.0)
    key = batch_key([3, 1, 2])
    assert key == "000000000001-000000000003"
    assert not await journal.started_before(key)
    await journal.mark_started(key, [1, 2, 3])
    assert await journal.started_before(key)
    journal.append(key, {"t": "intent", "n": 1, "id": "j-1"})  # not kept
    for n in (1, 3):
        journal.append(
            key, {"t": "accepted", "n": n, "id": f"j-{n}", "out": f"s3://b/{n}", "fail": None}
        )
    assert await journal.accepted_in(key) == {}  # not flushed yet
    await journal.flush()
    entries = await journal.accepted_in(key)
    assert sorted(entries) == [1, 3] and entries[3].output_location == "s3://b/3"
    assert await store.names("accepted/") == [f"accepted/{key}/t1-000001.jsonl"]
    await store.delete_all()
    assert not (tmp_path / "journal").exists()


def test_nothing_else_in_the_package_imports_ray() -> None:
    importers = []
    for path in SRC.rglob("*.py"):
        if path.is_relative_to(SRC / "ray"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name == "ray" or name.startswith("ray.") for name in names):
                importers.append(str(path.relative_to(SRC)))
    assert importers == []


def _batch(count: int) -> pa.Table:
    return pa.table(
        {
            "n": list(range(1, count + 1)),
            "id": [f"doc-{n}" for n in range(1, count + 1)],
            "body": [orjson.dumps({"v": n}) for n in range(1, count + 1)],
        }
    )


async def _call(udf: AsyncInference, batch: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        async for table in udf(batch):
            rows.extend(table.to_pylist())
    finally:
        await udf.aclose()
    return rows


@pytest.mark.usefixtures("stack_env")
async def test_a_retried_batch_collects_what_was_accepted_and_counts_the_rest(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    endpoint = await local_stack.create_endpoint(f"u-{uuid.uuid4().hex[:20]}", notifications=False)
    try:
        kwargs: dict[str, Any] = {
            "job_id": "job7",
            "journal": str(tmp_path / "journal"),
            "concurrency": 8,
            "poll_interval": 0.05,
            "flush_interval": 0.5,
            "content_type": "application/json",
        }
        first = await _call(AsyncInference(endpoint.name, **kwargs), _batch(20))
        assert [r["status"] for r in first] == ["completed"] * 20
        assert [orjson.loads(r["output"]) for r in first] == [{"v": n} for n in range(1, 21)]
        assert "body" not in first[0] and not any(r["resent"] or r["recovered"] for r in first)

        # The first try's last flush is lost for inputs 16-20, as when an actor dies before it.
        accepted = tmp_path / "journal" / "accepted" / batch_key(range(1, 21))
        # (One chunk a flush: a slow machine can make more than one while the batch runs.)
        chunks = list(accepted.iterdir())
        assert chunks
        for chunk in chunks:
            lines = chunk.read_bytes().splitlines(keepends=True)
            chunk.write_bytes(b"".join(ln for ln in lines if orjson.loads(ln)["n"] <= 15))

        # The retry (a restarted actor: a new instance) gets the same batch.
        second = await _call(AsyncInference(endpoint.name, **kwargs), _batch(20))
        assert [r["status"] for r in second] == ["completed"] * 20
        assert [r["recovered"] for r in second] == [True] * 15 + [False] * 5
        assert [r["resent"] for r in second] == [False] * 15 + [True] * 5
        # Recovered rows are the first try's results, read from their journaled locations.
        assert [r["output_location"] for r in second[:15]] == [
            r["output_location"] for r in first[:15]
        ]
        by_id = (await local_stack.stats(endpoint.name))["accepted_by_id"]
        assert by_id == {f"job7-{n}": 1 if n <= 15 else 2 for n in range(1, 21)}
    finally:
        await local_stack.delete_endpoint(endpoint.name)


async def test_a_row_error_is_the_rows_columns_not_an_exception(tmp_path: Path) -> None:
    # No AWS to reach at all (the tests' environment has no credentials or region): every row
    # says why, none raises.
    udf = AsyncInference("nowhere", job_id="j", journal=str(tmp_path / "journal"))
    batch = pa.table({"n": [1, 2], "id": ["a", "b"], "body": [b"x", None]})
    rows = await _call(udf, batch)
    assert [r["status"] for r in rows] == ["error", "invalid"]
    assert rows[0]["failure_reason"] and rows[0]["inference_id"] == "j-1"
    assert rows[1]["failure_reason"] == "no 'body' value to send"
