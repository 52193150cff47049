"""The ``aiosagemaker`` command: bad input lines, exit statuses, ``--shard``, ``invoke``,
duplicate input ids."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from app_helpers import cli, read_records, write_lines

from aiosagemaker.cli import main
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

FAST = ("--poll-interval", "0.05", "--no-progress")


def test_bad_lines_are_reported_in_place(quiet_endpoint: EndpointInfo, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_lines(
        source,
        [
            {"ok": 1},
            b"{not json",
            b"",
            {"id": "big", "body": "x" * 128_001},
            {"body": "a", "body_base64": "YQ=="},
            {"id": "b64", "body_base64": "not base64!"},
            b"   ",
            {"id": "envelope", "body": "fine", "extra": 1},
            {"id": "last", "body_base64": base64.b64encode(b"\x00\xffbinary").decode()},
        ],
    )
    output = tmp_path / "out.jsonl"
    result = cli("batch", quiet_endpoint.name, str(source), "-o", str(output), *FAST)
    assert result.returncode == 1, result.stderr
    records = read_records(output)
    assert [r["status"] for r in records] == [
        "completed", "invalid", "invalid", "invalid", "invalid", "invalid", "invalid",
        "invalid", "completed",
    ]  # fmt: skip
    reasons = [r["failure_reason"] or "" for r in records]
    assert "invalid JSON" in reasons[1]
    assert reasons[2] == "empty line" and reasons[6] == "empty line"
    assert "128,000-byte inline limit" in reasons[3] and records[3]["id"] == "big"
    assert "both" in reasons[4]
    assert "base64" in reasons[5]
    assert "unknown envelope key" in reasons[7]
    # Binary output is not copied into the record; its location is there.
    assert records[8]["output"] is None and records[8]["output_location"].startswith("s3://")
    assert all(r["inference_id"] is None for r in records if r["status"] == "invalid")
    assert "invalid inputs: 7" in result.stderr


def test_usage_errors_exit_2(quiet_endpoint: EndpointInfo, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [{"a": 1}])
    output = tmp_path / "out.jsonl"
    assert main(["batch", quiet_endpoint.name, str(source)]) == 2  # no -o
    assert (
        main(["batch", quiet_endpoint.name, str(source), "-o", str(output), "--shard", "3/2"]) == 2
    )
    missing = cli("batch", quiet_endpoint.name, str(tmp_path / "nope.jsonl"), "-o", str(output))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
    output.write_text("something\n")
    in_the_way = cli("batch", quiet_endpoint.name, str(source), "-o", str(output))
    assert in_the_way.returncode == 2 and "--overwrite" in in_the_way.stderr
    assert cli("batch", "bad_name!", str(source), "-o", str(tmp_path / "o2.jsonl")).returncode == 2
    done = cli("batch", quiet_endpoint.name, str(source), "-o", str(tmp_path / "o3.jsonl"), *FAST)
    assert done.returncode == 0, done.stderr
    other = cli("batch", "another-endpoint", str(source), "-o", str(tmp_path / "o3.jsonl"))
    assert other.returncode == 2 and "belongs to another job" in other.stderr


def test_aws_errors_exit_3(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [{"a": 1}, {"a": 2}])
    output = tmp_path / "out.jsonl"
    # Nothing listens on port 9 of loopback: the endpoint is unreachable.
    result = cli(
        "batch", "some-endpoint", str(source), "-o", str(output),
        "--endpoint-url", "http://127.0.0.1:9", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "could not connect" in result.stderr and "Traceback" not in result.stderr
    assert "rerun" in result.stderr
    # Nothing was written for the inputs: a rerun sends them.
    assert read_records(output) == []
    missing = cli("batch", "no-such-endpoint", str(source), "-o", str(tmp_path / "o.jsonl"), *FAST)
    assert missing.returncode == 3 and "not found" in missing.stderr


def test_failed_inferences_exit_1(local_stack: LocalStack, tmp_path: Path) -> None:
    import asyncio

    endpoint = asyncio.run(local_stack.create_endpoint(model="failing", notifications=False))
    source = write_lines(tmp_path / "in.jsonl", [{"a": 1}, {"a": 2}])
    output = tmp_path / "out.jsonl"
    result = cli("batch", endpoint.name, str(source), "-o", str(output), *FAST)
    assert result.returncode == 1, result.stderr
    records = read_records(output)
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert "always fails" in records[0]["failure_reason"]
    asyncio.run(local_stack.delete_endpoint(endpoint.name))


def test_shards_split_disjointly_and_completely(
    quiet_endpoint: EndpointInfo, tmp_path: Path
) -> None:
    n = 300
    source = write_lines(
        tmp_path / "in.jsonl", [{"id": f"k{i}", "body": {"i": i}} for i in range(n)]
    )
    seen: list[set[str]] = []
    for shard in range(3):
        output = tmp_path / f"out{shard}.jsonl"
        args = [
            "batch",
            quiet_endpoint.name,
            str(source),
            "-o",
            str(output),
            "--shard",
            f"{shard}/3",
        ]
        assert main([*args, *FAST]) == 0
        seen.append({r["id"] for r in read_records(output)})
    assert all(seen)  # each shard got some
    assert sum(len(s) for s in seen) == n
    assert set().union(*seen) == {f"k{i}" for i in range(n)}
    # The same shard of the same input is the same set on every machine and every run.
    again = tmp_path / "again.jsonl"
    assert (
        main(["batch", quiet_endpoint.name, str(source), "-o", str(again), "--shard", "1/3", *FAST])
        == 0
    )
    assert {r["id"] for r in read_records(again)} == seen[1]


def test_stdin_input(quiet_endpoint: EndpointInfo, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    data = b"".join(orjson.dumps({"i": i}) + b"\n" for i in range(20))
    result = cli("batch", quiet_endpoint.name, "-", "-o", str(output), *FAST, input=data.decode())
    assert result.returncode == 0, result.stderr
    assert [r["output"] for r in read_records(output)] == [{"i": i} for i in range(20)]


def test_invoke(quiet_endpoint: EndpointInfo, tmp_path: Path) -> None:
    waited = cli(
        "invoke", quiet_endpoint.name, "--data", '{"a": 1}', "--wait", "--poll-interval", "0.05"
    )
    assert waited.returncode == 0, waited.stderr
    assert orjson.loads(waited.stdout) == {"a": 1}
    sent = cli("invoke", quiet_endpoint.name, "--data", "hello", "--inference-id", "my-id-1")
    assert sent.returncode == 0, sent.stderr
    answer = orjson.loads(sent.stdout)
    assert answer["inference_id"] == "my-id-1"
    assert answer["output_location"].startswith("s3://") and answer["failure_location"]
    payload = tmp_path / "req.bin"
    payload.write_bytes(b"\x01\x02\x03")
    target = tmp_path / "res.bin"
    from_file = cli(
        "invoke", quiet_endpoint.name, "--data", f"@{payload}", "--wait", "-o", str(target),
        "--poll-interval", "0.05",
    )  # fmt: skip
    assert from_file.returncode == 0, from_file.stderr
    assert target.read_bytes() == b"\x01\x02\x03"
    too_big = tmp_path / "big.json"
    too_big.write_bytes(b'"' + b"x" * 128_000 + b'"')
    refused = cli("invoke", quiet_endpoint.name, "--data", f"@{too_big}")
    assert refused.returncode == 2 and "inline limit" in refused.stderr
    assert cli("invoke", quiet_endpoint.name, "--data", "@/no/such/file").returncode == 2


def test_duplicate_ids_are_reported(quiet_endpoint: EndpointInfo, tmp_path: Path) -> None:
    # Line 1's id is its line number, "1"; the envelope on line 6 names id 1 too.
    inputs = [
        {"x": 1},
        {"id": "a", "body": "first a"},
        {"id": "b", "body": "first b"},
        {"id": "a", "body": "second a"},
        {"id": "a", "body": "third a"},
        {"id": 1, "body": "another 1"},
        {"id": "c", "body": "only c"},
    ]
    source = write_lines(tmp_path / "in.jsonl", inputs)
    output = tmp_path / "out.jsonl"
    summary = tmp_path / "summary.json"
    args = ["batch", quiet_endpoint.name, str(source), "-o", str(output), *FAST]
    result = cli(*args, "--summary-json", str(summary))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert warnings == [
        "WARNING aiosagemaker: 3 input(s) reuse the id of an earlier input ('a', '1'): each input "
        "still gets its own record, so OUTPUT has more than one record with each of these ids "
        '(see "n")'
    ]
    assert "duplicate ids: 3 (inputs that reuse an earlier input's id" in result.stderr
    assert orjson.loads(summary.read_bytes())["duplicate_ids"] == 3
    # Every input still has its record, in the usual format.
    records = read_records(output)
    assert [(r["n"], r["id"], r["status"]) for r in records] == [
        (1, "1", "completed"), (2, "a", "completed"), (3, "b", "completed"),
        (4, "a", "completed"), (5, "a", "completed"), (6, "1", "completed"),
        (7, "c", "completed"),
    ]  # fmt: skip
    assert {tuple(sorted(r)) for r in records} == {
        (
            "content_type", "failure_reason", "id", "inference_id", "n", "output",
            "output_location", "status", "timings",
        )
    }  # fmt: skip
    # A rerun reads every input again (nothing is sent): it counts the same.
    again = cli(*args, "--summary-json", str(summary))
    assert again.returncode == 0, again.stderr
    assert orjson.loads(summary.read_bytes())["duplicate_ids"] == 3
    assert read_records(output) == records


def test_unreadable_results_stop_the_job_and_a_rerun_collects_them(
    local_stack: LocalStack, quiet_endpoint: EndpointInfo, tmp_path: Path
) -> None:
    """A watcher that cannot read its source (here: the queue does not exist) is not one input's
    error: the job stops with exit 3, writes nothing false, and a rerun with a working watcher
    collects the journaled acceptances without sending them again."""
    import asyncio

    source = write_lines(tmp_path / "in.jsonl", [{"a": i} for i in range(5)])
    output = tmp_path / "out.jsonl"
    queue = f"{local_stack.info.sqs_url}/123456789012/no-such-queue-{quiet_endpoint.name}"
    first = cli(
        "batch", quiet_endpoint.name, str(source), "-o", str(output),
        "--watcher", "sqs", "--queue-url", queue, *FAST,
    )  # fmt: skip
    assert first.returncode == 3, first.stderr
    assert "sqs:ReceiveMessage" in first.stderr or "does not exist" in first.stderr
    assert read_records(output) == []
    rerun = cli("batch", quiet_endpoint.name, str(source), "-o", str(output), *FAST)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(r["output"]["a"] for r in read_records(output)) == list(range(5))
    stats = asyncio.run(local_stack.stats(quiet_endpoint.name))
    assert stats["accepted"] == 5  # each input sent once, across both runs
