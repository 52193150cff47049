"""OUTPUT as parts and the journal in S3, piece by piece: part records in the journal, the S3
journal's chunks and snapshots, its run lease, the part writer on a local directory, and the S3
settings (``ExpectedBucketOwner``, SSE-KMS) of the job's own S3 calls. S3 is the local stack's
moto over loopback."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from app_helpers import read_journal

from aiosagemaker import S3Uri
from aiosagemaker.batch import (
    BatchConfigError,
    BatchJob,
    BatchOptions,
    BatchStats,
    BatchUsageError,
    _parts,
    _s3_journal,
)
from aiosagemaker.batch._journal import (
    Journal,
    JournalFormatError,
    JournalHeader,
    PartInfo,
    ResumeState,
    scan_journal,
    scan_journal_chunks,
)
from aiosagemaker.batch._parts import LocalParts, PartWriter, S3Parts, encode_part, part_name
from aiosagemaker.batch._records import part_entry, resume_entry
from aiosagemaker.batch._s3 import S3Error, S3Objects, open_s3
from aiosagemaker.batch._s3_journal import (
    S3Journal,
    S3RunLock,
    journal_prefix,
    load_s3_journal,
)
from aiosagemaker.local import LocalStack

OWNER = "123456789012"

# --- helpers ---------------------------------------------------------------------------------


def _header() -> JournalHeader:
    return JournalHeader(
        job_id="j", endpoint="e", input="i", shard=None, ordered=False, created=0.0
    )


def _lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def _no_output_n(line: bytes) -> int | None:
    return None


def _intent(n: int) -> dict[str, Any]:
    return {"t": "intent", "n": n, "id": f"j-{n}"}


def _accepted(n: int) -> dict[str, Any]:
    return {
        "t": "accepted",
        "n": n,
        "id": f"j-{n}",
        "out": f"s3://b/out/{n}",
        "fail": f"s3://b/fail/{n}",
        "at": 1.5,
    }


def _result(n: int) -> dict[str, Any]:
    return {"t": "result", "n": n, "rec": _record(n)}


def _record(n: int) -> dict[str, Any]:
    """An OUTPUT record as the job makes it."""
    return {
        "n": n,
        "id": f"doc-{n}",
        "inference_id": f"j-{n}",
        "status": "completed",
        "output_location": f"s3://b/out/{n}.out",
        "content_type": "application/json",
        "output": {"v": n, "text": "é" * (n % 3)},
        "failure_reason": None,
        "timings": {"submitted": 1.0, "accepted": 1.25, "completed": 2.5, "latency_ms": 1500.0},
    }


def _same_state(got: ResumeState, want: ResumeState) -> None:
    assert got.header == want.header
    assert got.watermark == want.watermark
    assert got.done == want.done
    assert got.entries == want.entries
    assert got.parts == want.parts
    assert got.output_records == want.output_records
    assert got.resumes == want.resumes


# --- part records in the journal -------------------------------------------------------------


def test_part_entry_compresses_inputs_to_runs() -> None:
    assert part_entry(0, "part-00000.jsonl", [1, 2, 3, 4]) == {
        "t": "part",
        "k": 0,
        "name": "part-00000.jsonl",
        "ranges": [[1, 4]],
        "records": 4,
    }
    scattered = part_entry(7, "part-00007.parquet", [10, 3, 4, 1, 5, 12, 11, 8])
    assert scattered["ranges"] == [[1, 1], [3, 5], [8, 8], [10, 12]]
    assert scattered["records"] == 8
    assert part_entry(2, "part-00002.jsonl", [9])["ranges"] == [[9, 9]]
    # The runs say exactly which inputs the part holds.
    info = PartInfo(7, "part-00007.parquet", scattered["ranges"])
    assert info.records == 8
    held = {n for first, last in info.ranges for n in range(first, last + 1)}
    assert held == {10, 3, 4, 1, 5, 12, 11, 8}


BAD_PARTS = [
    ({"k": -1}, '"k"'),
    ({"k": True}, '"k"'),
    ({"k": "1"}, '"k"'),
    ({"k": None}, '"k"'),
    ({"name": ""}, '"name"'),
    ({"name": "dir/part-00000.jsonl"}, '"name"'),
    ({"name": 5}, '"name"'),
    ({"ranges": [[3, 2]]}, '"ranges"'),
    ({"ranges": [[0, 1]]}, '"ranges"'),
    ({"ranges": [[1]]}, '"ranges"'),
    ({"ranges": [[1, 2, 3]]}, '"ranges"'),
    ({"ranges": [[1, 2.0]]}, '"ranges"'),
    ({"ranges": [[True, 2]]}, '"ranges"'),
    ({"ranges": "1-3"}, '"ranges"'),
    ({"ranges": None}, '"ranges"'),
]


@pytest.mark.parametrize(("change", "field"), BAD_PARTS)
def test_a_bad_part_record_is_a_format_error_at_its_line(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    path = tmp_path / "j.journal"
    bad = {**part_entry(0, "part-00000.jsonl", [1, 2]), **change}
    path.write_bytes(_lines([_header().to_json(), _intent(1), _intent(2), bad, _intent(3)]))
    with pytest.raises(JournalFormatError) as caught:
        scan_journal(path, None, ordered=False, output_n=_no_output_n)
    assert caught.value.line == 4
    assert field in caught.value.problem and '"part"' in caught.value.problem
    # The same line with its keys in another order is caught all the same (a full check).
    other_order = {key: bad[key] for key in reversed(bad)}
    path.write_bytes(_lines([_header().to_json(), _intent(1), other_order]))
    with pytest.raises(JournalFormatError) as caught:
        scan_journal(path, None, ordered=False, output_n=_no_output_n)
    assert caught.value.line == 3


def test_committed_parts_make_their_inputs_done_the_last_record_of_a_part_wins(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.journal"
    records: list[dict[str, Any]] = [_header().to_json()]
    records += [_intent(n) for n in range(1, 9)]
    records += [_result(n) for n in range(1, 8)]
    records += [
        part_entry(0, "part-00000.jsonl", [1, 2, 4]),
        # part 0 written again after a failed commit: this record is the one that holds
        part_entry(0, "part-00000.jsonl", [1, 2, 3]),
        part_entry(1, "part-00001.jsonl", [5, 7]),
        {"t": "mark", "n": 2},
    ]
    path.write_bytes(_lines(records))
    state = scan_journal(path, None, ordered=False, output_n=_no_output_n)
    assert state.parts == [
        PartInfo(0, "part-00000.jsonl", [[1, 3]]),
        PartInfo(1, "part-00001.jsonl", [[5, 5], [7, 7]]),
    ]
    assert state.watermark == 2
    assert state.done == {3, 5, 7}
    assert state.output_records == 5
    # 4 was in the superseded record only, 6 in no part, 8 has no result: not done
    assert set(state.entries) == {4, 6, 8}
    assert state.entries[4].state == "result" and state.entries[4].record == _record(4)
    assert state.entries[8].state == "intent"
    # The same lines as S3 chunks, split anywhere between lines, say the same.
    body = _lines(records)
    cut = body.index(b"\n", len(body) // 2) + 1
    _same_state(scan_journal_chunks([body[:cut], body[cut:]], "s3://b/_journal/"), state)
    assert [n for n in range(1, 9) if state.is_done(n)] == [1, 2, 3, 5, 7]


# --- S3 --------------------------------------------------------------------------------------


@pytest.fixture
async def s3(stack_env: LocalStack) -> AsyncIterator[S3Objects]:
    """S3 calls to the local stack's moto, as the job makes them."""
    aws, objects = await open_s3(region=None, profile=None)
    try:
        yield objects
    finally:
        await aws.aclose()


@pytest.fixture
async def bucket(s3: S3Objects) -> str:
    name = f"parts-{uuid.uuid4().hex}"
    await s3.client.create_bucket(Bucket=name)
    return name


async def _names(s3: S3Objects, prefix: S3Uri) -> list[str]:
    return [info.uri.key.removeprefix(prefix.key) for info in await s3.list(prefix)]


class FlakyPuts(S3Objects):
    """S3 calls whose next ``fail`` PUTs fail for good (as after S3's own retries); with
    ``lost``, after the object was written (its answer lost on the way back)."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.fail = 0
        self.lost = False

    async def put(self, uri: S3Uri, body: bytes, **kwargs: Any) -> str:
        if self.fail:
            self.fail -= 1
            if self.lost:
                await super().put(uri, body, **kwargs)
            raise S3Error(
                f"S3 put of {uri} failed: ConnectionError", code="ConnectionError", uri=uri
            )
        return await super().put(uri, body, **kwargs)


async def test_s3_journal_chunks_then_a_snapshot_after_a_part(s3: S3Objects, bucket: str) -> None:
    prefix = journal_prefix(S3Uri(bucket, "out/"))
    assert prefix == S3Uri(bucket, "out/_journal/")
    assert await load_s3_journal(s3, prefix) is None
    journal = S3Journal(s3, prefix)
    batches: list[list[dict[str, Any]]] = [
        [_header().to_json()],
        [_intent(n) for n in range(1, 5)],
        [*(_accepted(n) for n in range(1, 5)), *(_result(n) for n in range(1, 4))],
    ]
    for batch in batches:
        for record in batch:
            journal.append(record)
        assert journal.uncommitted == len(batch)
        await asyncio.gather(*(journal.commit() for _ in range(5)))  # one PUT for all
        assert journal.uncommitted == 0
    assert journal.commits == 3
    chunks = [f"{seq:010d}.jsonl" for seq in range(3)]
    assert await _names(s3, prefix) == chunks
    bodies = [await s3.get(prefix.join(name)) for name in chunks]
    assert bodies == [_lines(batch) for batch in batches]

    # A committed part: the next commit is a snapshot of what is not in a committed part.
    part = part_entry(0, "part-00000.jsonl", [1, 2])
    mark = {"t": "mark", "n": 2}
    journal.append(part)
    journal.append(mark)
    await journal.aclose()  # commits, then waits for the clean-up of the older chunks
    snapshot = "0000000003.snapshot.jsonl"
    assert await _names(s3, prefix) == [snapshot]
    assert await s3.get(prefix.join(snapshot)) == _lines(
        [
            _header().to_json(),
            part,
            mark,
            _result(3),  # its result says all: its intent and acceptance are left out
            _intent(4),
            _accepted(4),
        ]
    )
    full = scan_journal_chunks([*bodies, _lines([part, mark])], "full")
    loaded = await load_s3_journal(s3, prefix)
    assert loaded is not None
    state, lines, next_seq = loaded
    _same_state(state, full)
    assert set(state.entries) == {3, 4} and state.done == set() and state.watermark == 2
    assert next_seq == 4

    # A rerun replays what it read, so its first snapshot says all again.
    rerun = S3Journal(s3, prefix, next_seq=next_seq)
    rerun.replay(lines)
    resumed = resume_entry()
    late = [resumed, _result(4)]
    for record in late:
        rerun.append(record)
    await rerun.commit()
    assert await _names(s3, prefix) == [snapshot, "0000000004.jsonl"]
    loaded = await load_s3_journal(s3, prefix)
    assert loaded is not None
    _same_state(loaded[0], scan_journal_chunks([*bodies, _lines([part, mark, *late])], "full"))
    assert loaded[2] == 5
    last_part = part_entry(1, "part-00001.jsonl", [3, 4])
    rerun.append(last_part)
    await rerun.aclose()
    assert await _names(s3, prefix) == ["0000000005.snapshot.jsonl"]
    assert await s3.get(prefix.join("0000000005.snapshot.jsonl")) == _lines(
        [_header().to_json(), resumed, part, last_part, mark]
    )
    loaded = await load_s3_journal(s3, prefix)
    assert loaded is not None
    state, _, next_seq = loaded
    _same_state(
        state, scan_journal_chunks([*bodies, _lines([part, mark, *late, last_part])], "full")
    )
    assert (state.watermark, state.done, state.entries, state.resumes) == (2, {3, 4}, {}, 1)
    assert next_seq == 6


async def test_s3_journal_snapshots_every_so_many_chunks(
    s3: S3Objects, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_s3_journal, "SNAPSHOT_EVERY", 2)
    prefix = journal_prefix(S3Uri(bucket, "out/"))
    lease = S3RunLock(s3, prefix)  # beside the chunks, and not one of them
    await lease.acquire()
    journal = S3Journal(s3, prefix)
    appended: list[dict[str, Any]] = []

    async def commit(*records: dict[str, Any]) -> None:
        for record in records:
            journal.append(record)
            appended.append(record)
        await journal.commit()

    await commit(_header().to_json())
    await commit(_intent(1))
    assert await _names(s3, prefix) == ["0000000000.jsonl", "0000000001.jsonl", "lock.json"]
    await commit(_intent(2), _accepted(1))
    await journal.aclose()
    assert await _names(s3, prefix) == ["0000000002.snapshot.jsonl", "lock.json"]
    assert await s3.get(prefix.join("0000000002.snapshot.jsonl")) == _lines(
        [_header().to_json(), _intent(1), _accepted(1), _intent(2)]
    )
    await commit(_result(1))
    await commit(_accepted(2))
    await commit(_intent(3))
    await journal.aclose()
    assert await _names(s3, prefix) == ["0000000005.snapshot.jsonl", "lock.json"]
    await lease.release()
    loaded = await load_s3_journal(s3, prefix)
    assert loaded is not None
    _same_state(loaded[0], scan_journal_chunks([_lines(appended)], "full"))
    assert set(loaded[0].entries) == {1, 2, 3} and loaded[2] == 6


async def test_s3_journal_failed_put_keeps_its_lines_for_the_same_chunk(
    s3: S3Objects, bucket: str
) -> None:
    flaky = FlakyPuts(s3.client)
    prefix = journal_prefix(S3Uri(bucket, "out/"))
    journal = S3Journal(flaky, prefix)
    journal.append(_header().to_json())
    await journal.commit()
    flaky.fail = 1
    journal.append(_intent(1))
    with pytest.raises(S3Error):
        await journal.commit()
    assert journal.uncommitted == 1 and journal.commits == 1
    assert await _names(s3, prefix) == ["0000000000.jsonl"]
    journal.append(_intent(2))
    await journal.commit()
    assert journal.uncommitted == 0
    assert await _names(s3, prefix) == ["0000000000.jsonl", "0000000001.jsonl"]
    assert await s3.get(prefix.join("0000000001.jsonl")) == _lines([_intent(1), _intent(2)])
    # A PUT that succeeded with its answer lost: the retry overwrites it, same lines and more.
    flaky.fail, flaky.lost = 1, True
    journal.append(_intent(3))
    with pytest.raises(S3Error):
        await journal.commit()
    assert await s3.get(prefix.join("0000000002.jsonl")) == _lines([_intent(3)])
    journal.append(_intent(4))
    await journal.commit()
    assert await s3.get(prefix.join("0000000002.jsonl")) == _lines([_intent(3), _intent(4)])
    flaky.lost = False

    # A snapshot that fails is a snapshot again, under the same number.
    part = part_entry(0, "part-00000.jsonl", [1])
    journal.append(_result(1))
    journal.append(part)
    flaky.fail = 1
    with pytest.raises(S3Error):
        await journal.commit()
    journal.append(_result(2))
    await journal.aclose()
    assert await _names(s3, prefix) == ["0000000003.snapshot.jsonl"]
    assert await s3.get(prefix.join("0000000003.snapshot.jsonl")) == _lines(
        [_header().to_json(), part, _result(2), _intent(3), _intent(4)]
    )
    loaded = await load_s3_journal(s3, prefix)
    assert loaded is not None and loaded[2] == 4
    assert loaded[0].done == {1} and set(loaded[0].entries) == {2, 3, 4}

    # A journal whose bucket is not there: refused at once, nothing lost.
    missing = S3Journal(s3, journal_prefix(S3Uri(f"no-such-{uuid.uuid4().hex}", "out/")))
    missing.append(_header().to_json())
    with pytest.raises(S3Error) as caught:
        await missing.commit()
    assert caught.value.code == "NoSuchBucket" and missing.uncommitted == 1


# --- the lease -------------------------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()  # reaped: no process has this id any more
    return child.pid


async def _write_lease(s3: S3Objects, prefix: S3Uri, **held: Any) -> None:
    await s3.put(prefix.join("lock.json"), orjson.dumps({"token": "theirs", **held}))


async def _lease(s3: S3Objects, prefix: S3Uri) -> dict[str, Any]:
    held: dict[str, Any] = orjson.loads(await s3.get(prefix.join("lock.json")))
    return held


async def test_s3_run_lock_one_run_at_a_time(s3: S3Objects, bucket: str) -> None:
    prefix = journal_prefix(S3Uri(bucket, "out/"))
    first = S3RunLock(s3, prefix)
    await first.acquire()
    held = await _lease(s3, prefix)
    assert (held["host"], held["pid"]) == (socket.gethostname(), os.getpid())
    assert held["expires"] > time.time() + _s3_journal.LEASE_SECONDS / 2
    second = S3RunLock(s3, prefix)
    with pytest.raises(BatchUsageError) as caught:
        await second.acquire()
    assert f"host {socket.gethostname()}, process {os.getpid()}" in str(caught.value)
    assert await _lease(s3, prefix) == held  # left alone
    await first.release()
    assert await s3.head(prefix.join("lock.json")) is None
    third = S3RunLock(s3, prefix)
    await third.acquire()
    assert (await _lease(s3, prefix))["token"] != held["token"]
    await third.release()


async def test_s3_run_lock_takes_over_a_dead_or_expired_lease(s3: S3Objects, bucket: str) -> None:
    prefix = journal_prefix(S3Uri(bucket, "out/"))
    # This host, a process that is gone, the lease not yet expired: taken over at once.
    await _write_lease(
        s3, prefix, host=socket.gethostname(), pid=_dead_pid(), expires=time.time() + 600
    )
    lock = S3RunLock(s3, prefix)
    await lock.acquire()
    held = await _lease(s3, prefix)
    assert (held["host"], held["pid"]) == (socket.gethostname(), os.getpid())
    assert held["token"] != "theirs"
    await lock.release()

    # Another host's lease that expired: taken over.
    await _write_lease(s3, prefix, host="elsewhere.invalid", pid=4242, expires=time.time() - 5)
    lock = S3RunLock(s3, prefix)
    await lock.acquire()
    assert (await _lease(s3, prefix))["pid"] == os.getpid()
    await lock.release()

    # Another host's live lease: refused, whatever its process id means here.
    await _write_lease(
        s3, prefix, host="elsewhere.invalid", pid=_dead_pid(), expires=time.time() + 600
    )
    before = await _lease(s3, prefix)
    with pytest.raises(BatchUsageError) as caught:
        await S3RunLock(s3, prefix).acquire()
    assert f"host elsewhere.invalid, process {before['pid']}" in str(caught.value)
    assert await _lease(s3, prefix) == before


async def test_s3_run_lock_renews_its_lease(
    s3: S3Objects, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_s3_journal, "LEASE_SECONDS", 0.3)  # renewed every 0.1 s
    prefix = journal_prefix(S3Uri(bucket, "out/"))
    lock = S3RunLock(s3, prefix)
    await lock.acquire()
    try:
        first = await s3.head(prefix.join("lock.json"))
        assert first is not None
        deadline = time.monotonic() + 10
        while (now := await s3.head(prefix.join("lock.json"))) == first:
            assert time.monotonic() < deadline, "the lease was never renewed"
            await asyncio.sleep(0.02)
        assert now is not None and now.etag != first.etag
        assert lock.lost is None
    finally:
        await lock.release()
    assert await s3.head(prefix.join("lock.json")) is None


async def test_s3_run_lock_that_lost_its_lease_leaves_the_new_holder_alone(
    s3: S3Objects, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose lease expired (stalled past it) and was taken over by another run: its next
    renewal fails and says so, and releasing must not delete the other run's lease, or a third
    run could start beside the second."""
    monkeypatch.setattr(_s3_journal, "LEASE_SECONDS", 0.3)  # renewed every 0.1 s
    prefix = journal_prefix(S3Uri(bucket, "out/"))
    told: list[str] = []
    lock = S3RunLock(s3, prefix, on_lost=told.append)
    await lock.acquire()
    try:
        # Another run took the lease over (as after this one's lease expired).
        await _write_lease(s3, prefix, host="elsewhere.invalid", pid=1, expires=time.time() + 600)
        theirs = await _lease(s3, prefix)
        deadline = time.monotonic() + 10
        while lock.lost is None:
            assert time.monotonic() < deadline, "the lost lease went unnoticed"
            await asyncio.sleep(0.02)
        assert "lost the lease" in lock.lost
        assert told == [lock.lost]
    finally:
        await lock.release()
    assert await s3.head(prefix.join("lock.json")) is not None, "released another run's lease"
    assert await _lease(s3, prefix) == theirs
    with pytest.raises(BatchUsageError):
        await S3RunLock(s3, prefix).acquire()


# --- the part writer -------------------------------------------------------------------------


async def _value(record: dict[str, Any] | None) -> dict[str, Any] | None:
    return record


async def _gated(record: dict[str, Any], gate: asyncio.Event) -> dict[str, Any] | None:
    await gate.wait()
    return record


async def _produce(
    writer: PartWriter, records: list[dict[str, Any]], *, held: frozenset[int] = frozenset()
) -> None:
    """The producer's side, as the job drives it: a slot, a task, hand it over; then finish.
    The inputs in ``held`` finish only once every input has been handed over."""
    gate = asyncio.Event()
    for record in records:
        await writer.reserve()
        task: asyncio.Task[dict[str, Any] | None]
        if record["n"] in held:
            task = asyncio.create_task(_gated(record, gate))
        else:
            task = asyncio.create_task(_value(record))
            await task  # finished before it is handed over
        writer.add(record["n"], task)
    gate.set()
    writer.finish()


def _read_part(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        for row in rows:
            row["output"] = None if row["output"] is None else orjson.loads(row["output"])
        return rows
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _writer(
    store: Any, journal: Journal, stats: BatchStats, errors: list[BaseException], **kwargs: Any
) -> PartWriter:
    options: dict[str, Any] = {"fmt": "jsonl", "ordered": True, "window": 16, **kwargs}
    return PartWriter(store, journal=journal, stats=stats, on_error=errors.append, **options)


@pytest.mark.parametrize(
    ("fmt", "ordered", "held"),
    [("parquet", True, frozenset()), ("jsonl", False, frozenset({2, 5}))],
)
async def test_part_writer_writes_whole_parts_each_named_by_the_journal(
    tmp_path: Path, fmt: str, ordered: bool, held: frozenset[int]
) -> None:
    out = tmp_path / "out"
    records = [_record(n) for n in range(1, 10)]
    stats, errors = BatchStats(), list[BaseException]()
    async with Journal(tmp_path / "j.journal", fsync=False) as journal:
        journal.append(_header().to_json())
        await journal.commit()
        writer = _writer(
            LocalParts(out, fsync=False),
            journal,
            stats,
            errors,
            fmt=fmt,
            ordered=ordered,
            part_records=3,
        )
        await writer.start(overwrite=False)
        await asyncio.gather(writer.run(), _produce(writer, records, held=held))
        await writer.aclose()
        assert journal.uncommitted == 0  # each part's record committed before it counts
    assert errors == [] and writer.error is None
    assert writer.parts_written == 3 and stats.written == 9
    assert writer.watermark() == 9
    parts = [r for r in read_journal(tmp_path / "j.journal") if r["t"] == "part"]
    names = [part_name(k, fmt) for k in range(3)]
    assert [p["name"] for p in parts] == names and [p["k"] for p in parts] == [0, 1, 2]
    assert sorted(p.name for p in out.iterdir()) == names  # no hidden temporary file left
    seen: list[int] = []
    by_n = {r["n"]: r for r in records}
    for part in parts:
        rows = _read_part(out / part["name"])
        assert 1 <= len(rows) <= 3 and part["records"] == len(rows)
        ns = [row["n"] for row in rows]
        assert part["ranges"] == part_entry(0, "", ns)["ranges"]
        assert rows == [by_n[n] for n in ns]
        seen += ns
    assert sorted(seen) == list(range(1, 10))  # each record in exactly one part
    if ordered:
        assert [p["ranges"] for p in parts] == [[[1, 3]], [[4, 6]], [[7, 9]]]
    else:  # as they finished: 2 and 5 last
        assert [p["ranges"] for p in parts] == [
            [[1, 1], [3, 4]],
            [[6, 8]],
            [[2, 2], [5, 5], [9, 9]],
        ]
    state = scan_journal(tmp_path / "j.journal", None, ordered=ordered, output_n=_no_output_n)
    assert [p.name for p in state.parts] == names
    assert state.done == set(range(1, 10)) and state.output_records == 9


async def test_part_writer_that_cannot_write_gives_up_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_parts, "_RETRY_DELAYS", (0.001, 0.001))
    in_the_way = tmp_path / "out"
    in_the_way.write_bytes(b"a file where the parts' directory should be")
    stats, errors = BatchStats(), list[BaseException]()
    async with Journal(tmp_path / "j.journal", fsync=False) as journal:
        journal.append(_header().to_json())
        writer = _writer(
            LocalParts(in_the_way, fsync=False), journal, stats, errors, part_records=2
        )
        records = [_record(n) for n in range(1, 6)]
        await asyncio.gather(writer.run(), _produce(writer, records))
        assert await writer.flush(final=True) is False
        await writer.aclose()
    assert len(errors) == 1 and isinstance(errors[0], BatchConfigError)
    assert "cannot write part part-00000.jsonl" in str(errors[0])
    assert "next run writes them" in str(errors[0])
    assert isinstance(writer.error, OSError)
    assert writer.parts_written == 0 and stats.written == 0
    assert [r for r in read_journal(tmp_path / "j.journal") if r["t"] == "part"] == []
    assert writer.watermark() == 0
    assert in_the_way.read_bytes() == b"a file where the parts' directory should be"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.journal", "out"]


class FlakyParts(LocalParts):
    """A local directory whose first ``failures`` writes fail."""

    def __init__(self, directory: Path, failures: int) -> None:
        super().__init__(directory, fsync=False)
        self.failures = failures
        self.writes: list[str] = []

    async def write(self, name: str, data: bytes) -> None:
        self.writes.append(name)
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EIO, "injected I/O error")
        await super().write(name, data)


async def test_part_writer_retries_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_parts, "_RETRY_DELAYS", (0.001, 0.001, 0.001))
    store = FlakyParts(tmp_path / "out", failures=2)
    stats, errors = BatchStats(), list[BaseException]()
    async with Journal(tmp_path / "j.journal", fsync=False) as journal:
        journal.append(_header().to_json())
        writer = _writer(store, journal, stats, errors, part_records=3)
        await asyncio.gather(writer.run(), _produce(writer, [_record(n) for n in (1, 2, 3)]))
        await writer.aclose()
    assert errors == [] and writer.error is None
    assert store.writes == ["part-00000.jsonl"] * 3
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["part-00000.jsonl"]
    parts = [r for r in read_journal(tmp_path / "j.journal") if r["t"] == "part"]
    assert parts == [part_entry(0, "part-00000.jsonl", [1, 2, 3])]
    assert writer.parts_written == 1 and stats.written == 3


class FailingCommits(Journal):
    """A journal whose next ``fail`` commits fail (a full disk), keeping their lines."""

    fail = 0

    async def commit(self) -> None:
        if self.fail and self.uncommitted:
            self.fail -= 1
            raise OSError(errno.ENOSPC, "injected: no space left on device")
        await super().commit()


async def test_part_writer_whose_part_cannot_be_committed_gives_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stats, errors = BatchStats(), list[BaseException]()
    journal = FailingCommits(tmp_path / "j.journal", fsync=False)
    async with journal:
        journal.append(_header().to_json())
        await journal.commit()
        journal.fail = 1
        writer = _writer(LocalParts(out, fsync=False), journal, stats, errors, part_records=2)
        await asyncio.gather(writer.run(), _produce(writer, [_record(n) for n in (1, 2, 3)]))
        await writer.aclose()
    assert len(errors) == 1 and isinstance(errors[0], BatchConfigError)
    assert "cannot commit part part-00000.jsonl to the journal" in str(errors[0])
    assert isinstance(writer.error, OSError) and writer.error.errno == errno.ENOSPC
    # Not counted as written, nor past the watermark; nothing more written after it.
    assert writer.parts_written == 0 and stats.written == 0 and writer.watermark() == 0
    assert [p.name for p in out.iterdir()] == ["part-00000.jsonl"]
    # The journal kept the line and wrote it on closing: the part and its record agree.
    parts = [r for r in read_journal(tmp_path / "j.journal") if r["t"] == "part"]
    assert parts == [part_entry(0, "part-00000.jsonl", [1, 2])]
    assert _read_part(out / "part-00000.jsonl") == [_record(1), _record(2)]


async def test_a_resume_with_no_committed_part_deletes_the_crash_leftover(
    tmp_path: Path,
) -> None:
    """Killed between writing the first part and committing it: the journal holds the results
    and no part record, OUTPUT a part no record names. The resume (its writer made as the job
    makes it) must delete that part and write the records again (the promise of ``_parts``),
    not refuse as if there were no journal."""
    out = tmp_path / "out.parquet"
    out.mkdir()
    (out / "part-00000.parquet").write_bytes(encode_part([_record(1), _record(2)], "parquet"))
    journal_path = tmp_path / "out.parquet.journal"
    header = JournalHeader(
        job_id="j", endpoint="e", input="i", shard=None, ordered=True, created=0.0
    )
    journal_path.write_bytes(
        _lines([header.to_json(), _intent(1), _intent(2), _result(1), _result(2)])
    )
    state = scan_journal(journal_path, None, ordered=True, output_n=_no_output_n)
    assert state.parts == [] and set(state.entries) == {1, 2}
    job = BatchJob(BatchOptions(endpoint="e", input=str(tmp_path / "in.jsonl"), output=out))
    job.resume = state
    async with Journal(journal_path, truncate_to=state.good_length, fsync=False) as journal:
        writer = job._make_writer(journal)
        assert isinstance(writer, PartWriter)
        await writer.start(overwrite=job.options.overwrite)  # as BatchJob._run calls it
    assert list(out.iterdir()) == []


async def test_part_writer_start_refuses_or_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in ("part-00000.jsonl", "part-00001.jsonl", "part-00002.parquet", "part-00003"):
        (out / name).write_bytes(b"{}\n")
    others = ["_SUCCESS", "notes.txt", "part-final.jsonl", "partial-00001.jsonl"]
    for name in others:
        (out / name).write_bytes(b"keep")
    stats, errors = BatchStats(), list[BaseException]()
    async with Journal(tmp_path / "j.journal", fsync=False) as journal:
        # A new job over an OUTPUT that holds parts: refused, nothing deleted.
        writer = _writer(LocalParts(out, fsync=False), journal, stats, errors)
        with pytest.raises(BatchUsageError) as caught:
            await writer.start(overwrite=False)
        assert "4 part(s)" in str(caught.value) and "--overwrite" in str(caught.value)
        assert len(list(out.iterdir())) == 8
        # A resume: only the part-* files the journal does not name go.
        writer = _writer(
            LocalParts(out, fsync=False),
            journal,
            stats,
            errors,
            committed=["part-00000.jsonl"],
            next_part=1,
            resuming=True,
        )
        await writer.start(overwrite=False)
        assert sorted(p.name for p in out.iterdir()) == sorted(["part-00000.jsonl", *others])
        # A new job with overwrite: every part goes, the rest stays.
        writer = _writer(LocalParts(out, fsync=False), journal, stats, errors)
        await writer.start(overwrite=True)
        assert sorted(p.name for p in out.iterdir()) == sorted(others)
    assert errors == []


# --- S3 settings of the job's own calls ------------------------------------------------------


class HeaderRecorder:
    """Each S3 request's operation and headers, as sent."""

    def __init__(self, s3: S3Objects) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        s3.client.meta.events.register("before-send.s3.*", self)

    def __call__(self, request: Any, event_name: str, **_: Any) -> None:
        headers = {k.lower(): _text(v) for k, v in request.headers.items()}
        self.sent.append((event_name.rsplit(".", 1)[-1], headers))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def test_s3_objects_send_the_expected_bucket_owner_on_every_call(
    s3: S3Objects, bucket: str
) -> None:
    recorder = HeaderRecorder(s3)
    owned = S3Objects(s3.client, expected_bucket_owner=OWNER)
    uri = S3Uri(bucket, "o/a.jsonl")
    etag = await owned.put(uri, b'{"a": 1}\n', content_type="application/x-ndjson")
    assert [info.uri for info in await owned.list(S3Uri(bucket, "o/"))] == [uri]
    assert await owned.get(uri) == b'{"a": 1}\n'
    assert b"".join([c async for c in owned.chunks(uri, if_match=etag)]) == b'{"a": 1}\n'
    head = await owned.head(uri)
    assert head is not None and head.etag == etag and head.size == 9
    assert await owned.head(S3Uri(bucket, "o/missing")) is None
    await owned.put(uri, b"again", if_match=etag)
    await owned.delete(uri)
    assert await owned.head(uri) is None
    operations = [operation for operation, _ in recorder.sent]
    assert operations == [
        "PutObject",
        "ListObjectsV2",
        "GetObject",
        "GetObject",
        "HeadObject",
        "HeadObject",
        "PutObject",
        "DeleteObject",
        "HeadObject",
    ]
    assert all(h.get("x-amz-expected-bucket-owner") == OWNER for _, h in recorder.sent)
    assert owned.calls == {"put": 2, "list": 1, "get": 2, "head": 3, "delete": 1}
    # Without an owner, no such header.
    recorder.sent.clear()
    await s3.put(uri, b"x")
    await s3.list(S3Uri(bucket, "o/"))
    assert all("x-amz-expected-bucket-owner" not in h for _, h in recorder.sent)


async def test_s3_objects_put_with_a_kms_key(s3: S3Objects, bucket: str) -> None:
    recorder = HeaderRecorder(s3)
    key = "alias/my-key"
    encrypted = S3Objects(s3.client, kms_key_id=key)
    uri = S3Uri(bucket, "out/part-00000.jsonl")
    await S3Parts(encrypted, S3Uri(bucket, "out/")).write("part-00000.jsonl", b"{}\n")
    ((operation, headers),) = recorder.sent
    assert operation == "PutObject"
    assert headers["x-amz-server-side-encryption"] == "aws:kms"
    assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == key
    head = await s3.client.head_object(Bucket=bucket, Key=uri.key)
    assert head["ServerSideEncryption"] == "aws:kms"
    # AWS answers with the key's ARN (an alias resolved); moto with the id as it was sent.
    assert head["SSEKMSKeyId"] == key or head["SSEKMSKeyId"].startswith("arn:aws:kms:")
    assert await encrypted.get(uri) == b"{}\n"
    # Without a key: no encryption headers, the bucket's default.
    recorder.sent.clear()
    plain = S3Uri(bucket, "out/part-00001.jsonl")
    await s3.put(plain, b"{}\n")
    ((_, headers),) = recorder.sent
    assert not any(h.startswith("x-amz-server-side-encryption") for h in headers)
    head = await s3.client.head_object(Bucket=bucket, Key=plain.key)
    assert head.get("ServerSideEncryption") in (None, "AES256")
    assert "SSEKMSKeyId" not in head
