"""The batch job's parts without I/O to AWS: input parsing, shards, the journal and its torn tail,
the writer's order and watermark, which errors stop a job."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from app_helpers import read_journal, read_records

from aiosagemaker import InvocationError
from aiosagemaker.batch import BatchStats, Shard, is_config_error
from aiosagemaker.batch._inputs import open_input_source, parse_line, shard_of
from aiosagemaker.batch._journal import Journal, JournalHeader, scan_journal
from aiosagemaker.batch._writer import OutputWriter


def test_payload_or_envelope() -> None:
    payload = parse_line(b'  {"inputs": "hi", "id": 7}  ', 3, None)
    assert payload.body == b'{"inputs": "hi", "id": 7}' and payload.input_id == "3"
    assert payload.content_type == "application/json"
    assert parse_line(b"[1, 2]", 1, "text/csv").content_type == "text/csv"
    text = parse_line(b'{"body": "hello", "id": "a"}', 1, None)
    assert (text.body, text.content_type, text.input_id) == (b"hello", "text/plain", "a")
    obj = parse_line(b'{"body": {"x": 1}, "content_type": "application/x-custom"}', 2, None)
    assert (obj.body, obj.content_type, obj.input_id) == (b'{"x":1}', "application/x-custom", "2")
    raw = parse_line(b'{"body_base64": "AAE=", "id": 12}', 5, None)
    assert (raw.body, raw.content_type, raw.input_id) == (
        b"\x00\x01",
        "application/octet-stream",
        "12",
    )
    for bad in (b"", b"  ", b"{", b'{"body": 1, "id": true}', b'{"body": 1, "id": [1]}'):
        item = parse_line(bad, 9, None)
        assert item.error and item.body is None and item.input_id == "9"


def test_shard_parse_and_stability() -> None:
    assert Shard.parse("1/4") == Shard(1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)
    ids = [f"id-{i}" for i in range(1000)]
    counts = [sum(1 for i in ids if i in Shard(s, 4)) for s in range(4)]
    assert sum(counts) == 1000 and min(counts) > 150
    # A fixed value: the hash must not change between versions or machines.
    assert shard_of("id-1", 1000) == shard_of("id-1", 1000) == 706


async def test_lines_in_blocks(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b"".join(orjson.dumps({"i": i}) + b"\n" for i in range(1500)) + b'{"last": 1}'
    )
    items = [item async for item in open_input_source(str(source)).items()]
    assert [i.n for i in items] == list(range(1, 1502))
    assert items[-1].body == b'{"last": 1}'
    assert open_input_source(str(source)).count() == 1501


def _header() -> JournalHeader:
    return JournalHeader(job_id="j", endpoint="e", input="i", shard=None, ordered=True, created=0.0)


def _output_n(line: bytes) -> int | None:
    return int(orjson.loads(line)["n"])


async def test_journal_group_commit_and_torn_tail(tmp_path: Path) -> None:
    path, output = tmp_path / "j.journal", tmp_path / "out.jsonl"
    async with Journal(path) as journal:
        journal.append(_header().to_json())
        for n in (1, 2, 3, 4):
            journal.append({"t": "intent", "n": n, "id": f"j-{n}"})
        await asyncio.gather(*(journal.commit() for _ in range(10)))
        assert journal.commits == 1 and journal.uncommitted == 0
        journal.append(
            {"t": "accepted", "n": 2, "id": "j-2", "out": "s3://b/o", "fail": "s3://b/f", "at": 1.0}
        )
        journal.append(
            {"t": "accepted", "n": 3, "id": "j-3", "out": "s3://b/o3", "fail": None, "at": 1.0}
        )
        journal.append(
            {"t": "result", "n": 3, "rec": {"n": 3, "inference_id": "j-3", "status": "completed"}}
        )
        journal.append(
            {"t": "result", "n": 1, "rec": {"n": 1, "inference_id": "j-1", "status": "completed"}}
        )
    # A crash in the middle of an append: a torn last line.
    with open(path, "ab") as f:
        f.write(b'{"t":"accepted","n":4,"id":"j-')
    output.write_bytes(b'{"n":1}\n{"n":')  # record 1 written, record 2 torn
    state = scan_journal(path, output, ordered=True, output_n=_output_n)
    assert state.watermark == 1 and state.output_records == 1
    assert state.output_good_length == len(b'{"n":1}\n')
    assert state.good_length == path.stat().st_size - len(b'{"t":"accepted","n":4,"id":"j-')
    assert set(state.entries) == {2, 3, 4}
    assert state.entries[2].state == "accepted" and state.entries[2].output_location == "s3://b/o"
    assert state.entries[3].state == "result"
    assert state.entries[4].state == "intent" and state.intents_without_acceptance == 1
    # Appending after the torn tail first cuts it off.
    async with Journal(path, truncate_to=state.good_length) as journal:
        journal.append({"t": "resume", "at": 2.0})
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and orjson.loads(lines[-2]) == {"t": "resume", "at": 2.0}


def test_unordered_marks(tmp_path: Path) -> None:
    path, output = tmp_path / "j.journal", tmp_path / "out.jsonl"
    records = [_header().to_json()]
    records += [{"t": "intent", "n": n, "id": f"j-{n}"} for n in range(1, 8)]
    records += [{"t": "mark", "n": 3}]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    output.write_bytes(b"".join(orjson.dumps({"n": n}) + b"\n" for n in (2, 1, 3, 6)))
    state = scan_journal(path, output, ordered=False, output_n=_output_n)
    assert state.watermark == 3 and state.done == {6}
    assert set(state.entries) == {4, 5, 7}
    assert [n for n in range(1, 8) if not state.is_done(n)] == [4, 5, 7]


async def _write_all(
    tmp_path: Path, *, ordered: bool, outcomes: dict[int, bool], finish_order: list[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], OutputWriter]:
    """Run inputs ``1..N`` through a writer with a window of 2; input ``n``'s task ends (with a
    record if ``outcomes[n]``, else interrupted) when its turn in ``finish_order`` comes."""
    journal = Journal(tmp_path / "j.journal", fsync=False)
    journal.open()
    stats = BatchStats()
    writer = OutputWriter(
        tmp_path / "out.jsonl", ordered=ordered, window=2, journal=journal, stats=stats
    )
    writer.open()
    release = {n: asyncio.Event() for n in outcomes}

    async def task(n: int) -> dict[str, Any] | None:
        await release[n].wait()
        return {"n": n} if outcomes[n] else None

    async def produce(tg: asyncio.TaskGroup) -> None:
        for n in outcomes:
            await writer.reserve()
            writer.add(n, tg.create_task(task(n)))
        writer.finish()

    async def finish() -> None:
        for n in finish_order:
            release[n].set()
            await asyncio.sleep(0)  # the writer takes each result before the next ends
            writer.checkpoint()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(produce(tg))
        tg.create_task(finish())
        await writer.run()
    writer.checkpoint()
    writer.close()
    await journal.aclose()
    assert stats.written == len(read_records(tmp_path / "out.jsonl"))
    return read_records(tmp_path / "out.jsonl"), read_journal(tmp_path / "j.journal"), writer


async def test_writer_keeps_input_order_and_stops_at_a_gap(tmp_path: Path) -> None:
    records, journal, _ = await _write_all(
        tmp_path,
        ordered=True,
        outcomes={1: True, 2: True, 3: False, 4: True, 5: True},
        finish_order=[2, 1, 4, 3, 5],
    )
    # Input order whatever the finishing order; nothing past the interrupted input 3.
    assert [r["n"] for r in records] == [1, 2]
    assert journal == []  # ordered: OUTPUT itself is the watermark, no marks


async def test_writer_unordered_writes_as_finished_and_marks_the_watermark(
    tmp_path: Path,
) -> None:
    records, journal, writer = await _write_all(
        tmp_path,
        ordered=False,
        outcomes={1: True, 2: True, 3: True, 4: False, 5: True},
        finish_order=[2, 1, 3, 5, 4],
    )
    assert [r["n"] for r in records] == [2, 1, 3, 5]
    # Marks only ever rise, and never past an input not in OUTPUT (4 was interrupted).
    marks = [r["n"] for r in journal if r["t"] == "mark"]
    assert marks == sorted(set(marks)) and marks[-1] == 3
    assert writer.watermark() == 3


def _invocation_error(code: str, message: str = "m", **kwargs: Any) -> InvocationError:
    return InvocationError(message, code=code, **kwargs)


def test_which_errors_stop_the_job() -> None:
    stop = [
        _invocation_error("UnrecognizedClientException", status=400),
        _invocation_error("HTTP403", status=403),
        _invocation_error("ConnectionError"),
        _invocation_error("ValidationError", "Endpoint my-ep of account 1 not found.", status=400),
    ]
    assert all(is_config_error(exc) for exc in stop)
    go_on = [
        _invocation_error("ConnectionError", ambiguous=True),
        _invocation_error("ThrottlingException", status=429),
        _invocation_error("ModelError", status=424),
        _invocation_error("ValidationError", "Inference id is too long.", status=400),
    ]
    assert not any(is_config_error(exc) for exc in go_on)
