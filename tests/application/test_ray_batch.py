"""The batch job on Ray Data (``aiosagemaker.ray``, ``aiosagemaker batch --ray``), against the local
stack over loopback HTTP, on a Ray cluster the tests start on 127.0.0.1.

One cluster for the module (starting Ray costs seconds); each test has its own endpoint.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from app_helpers import cli_process, read_records, write_lines
from ray_helpers import kill, start_ray

from aiosagemaker.batch import BatchJob, BatchOptions
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = [
    pytest.mark.usefixtures("stack_env"),
    # Ray's own modules warn about their dependencies' deprecations on import.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

FAST_POLL = 0.05


@pytest.fixture(scope="module")
def ray_cluster(local_stack: LocalStack) -> Iterator[str]:
    yield from start_ray(local_stack)


def _inputs(count: int) -> list[dict[str, Any]]:
    return [{"id": f"doc-{i}", "body": {"x": i}} for i in range(1, count + 1)]


def _options(endpoint: EndpointInfo, source: Path | str, output: Path | str, **kw: Any) -> Any:
    return BatchOptions(
        endpoint=endpoint.name,
        input=str(source),
        output=output,
        poll_interval=FAST_POLL,
        **kw,
    )


async def _run_ray(options: BatchOptions, **kw: Any) -> Any:
    from aiosagemaker.ray import RayBatchJob

    job = RayBatchJob(options, progress=False, log_interval=0, **kw)
    stats = await job.run()
    return job, stats


async def _accepted_by_id(stack: LocalStack, endpoint: EndpointInfo) -> dict[str, int]:
    section = await stack.stats(endpoint.name)
    by_id: dict[str, int] = section["accepted_by_id"]
    return by_id


def _strip(record: dict[str, Any]) -> dict[str, Any]:
    """A record less what differs from one run to the next (ids, locations, times)."""
    return {
        k: v for k, v in record.items() if k not in ("inference_id", "output_location", "timings")
    }


@pytest.mark.scale  # a Ray cluster: about 2 minutes here (make test-scale)
async def test_jsonl_across_two_actors_every_row_once(
    ray_cluster: str, local_stack: LocalStack, quiet_endpoint: EndpointInfo, tmp_path: Path
) -> None:
    count = 2000
    source = write_lines(tmp_path / "in.jsonl", [*_inputs(count - 1), b"not json"])
    output = tmp_path / "out.jsonl"

    job, stats = await _run_ray(_options(quiet_endpoint, source, output, concurrency=64), actors=2)

    records = read_records(output)
    assert [r["n"] for r in records] == list(range(1, count + 1))  # in input order, each once
    assert [r["output"] for r in records[:-1]] == [{"x": i} for i in range(1, count)]
    assert {r["status"] for r in records[:-1]} == {"completed"}
    assert records[-1]["status"] == "invalid" and records[-1]["inference_id"] is None
    assert stats.completed == count - 1 and stats.invalid == 1 and stats.written == count
    assert stats.possibly_duplicated == 0 and stats.recovered_tracked == 0
    # The server ran each input exactly once, under the job's deterministic inference ids.
    by_id = await _accepted_by_id(local_stack, quiet_endpoint)
    assert by_id == {f"{job.job_id}-{n}": 1 for n in range(1, count)}
    # Results came back through two actors, each watching its own output path extension.
    prefixes = {r["output_location"].rsplit("/", 2)[-2] for r in records[:-1]}
    assert len(prefixes) == 2 and all(p.startswith(f"aiosm-{job.job_id}-") for p in prefixes)
    # The journal is gone once OUTPUT is complete.
    assert not (tmp_path / "out.jsonl.ray-journal").exists()

    # The same records as the single-process job (on the first 100 inputs and the bad line).
    head = write_lines(tmp_path / "head.jsonl", [*_inputs(100), b"not json"])
    single = tmp_path / "single.jsonl"
    await BatchJob(_options(quiet_endpoint, head, single), progress=False, log_interval=0).run()
    expected = read_records(single)
    expected[-1].update(n=count, id=str(count))  # the bad line's number in the long input
    assert [_strip(r) for r in expected] == [_strip(r) for r in [*records[:100], records[-1]]]
    assert [list(r) for r in expected] == [list(r) for r in [*records[:100], records[-1]]]


@pytest.mark.scale  # a driver process of its own: Ray's start-up again (make test-scale)
async def test_cli_parquet_from_s3_to_s3_parts(
    ray_cluster: str, local_stack: LocalStack, quiet_endpoint: EndpointInfo, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    count = 300
    s3 = _s3_client(local_stack)
    bucket, run = local_stack.info.bucket, uuid.uuid4().hex[:8]
    _put_parquet(s3, bucket, f"ray-{run}/in/data.parquet", count)
    summary = tmp_path / "summary.json"
    # The command connects to the tests' cluster as a driver of its own.
    result = cli_process(
        "batch", "--ray", "--ray-address", ray_cluster, "--actors", "2",
        quiet_endpoint.name, f"s3://{bucket}/ray-{run}/in/", "-o", f"s3://{bucket}/ray-{run}/out/",
        "--output-format", "parquet", "--content-type", "application/json", "--id-column", "id",
        "--part-records", "200", "--concurrency", "32", "--poll-interval", str(FAST_POLL),
        "--no-progress", "--summary-json", str(summary),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stats = orjson.loads(summary.read_bytes())

    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"ray-{run}/out/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []))
    # Two parts and nothing else: the journal under _journal/ray/ is deleted at the end.
    assert keys == [f"ray-{run}/out/part-0000{k}.parquet" for k in range(2)]
    rows: list[dict[str, Any]] = []
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        rows.extend(pq.read_table(io.BytesIO(body)).to_pylist())
    assert [r["n"] for r in rows] == list(range(1, count + 1))
    assert [r["id"] for r in rows] == [f"row-{i}" for i in range(count)]
    assert [orjson.loads(r["output"]) for r in rows] == [{"y": i} for i in range(count)]
    assert {r["status"] for r in rows} == {"completed"}
    assert stats["completed"] == count
    by_id = await _accepted_by_id(local_stack, quiet_endpoint)
    job_id = rows[0]["inference_id"].rsplit("-", 1)[0]
    assert by_id == {f"{job_id}-{n}": 1 for n in range(1, count + 1)}
    s3.close()


@pytest.mark.scale  # a Ray cluster: about 2 minutes here (make test-scale)
async def test_a_killed_actor_still_gives_every_row_once(
    ray_cluster: str, local_stack: LocalStack
) -> None:
    # Parquet in from s3://, JSON Lines parts out to s3:// (so the journal is in S3 too). The
    # model takes 0.5 s (sleep:50 at the stack's time scale), the journal flushes every 0.2 s:
    # an actor dies with acceptances journaled and requests in flight.
    endpoint = await local_stack.create_endpoint(
        f"r-{uuid.uuid4().hex[:20]}", model="sleep:50", notifications=False
    )
    s3 = _s3_client(local_stack)
    try:
        count = 160
        bucket, run = local_stack.info.bucket, uuid.uuid4().hex[:8]
        _put_parquet(s3, bucket, f"kill-{run}/in/data.parquet", count)
        options = _options(
            endpoint,
            f"s3://{bucket}/kill-{run}/in/",
            f"s3://{bucket}/kill-{run}/out/",
            concurrency=32,
            id_column="id",
            content_type="application/json",
        )
        from aiosagemaker.ray import RayBatchJob

        job = RayBatchJob(options, actors=2, progress=False, log_interval=0, flush_interval=0.2)
        running = asyncio.ensure_future(job.run())
        journal = f"kill-{run}/out/_journal/ray/"
        while not (pids := _actor_pids_with_acceptances(s3, bucket, journal)):
            assert not running.done(), running
            await asyncio.sleep(0.02)
        kill(pids[0])
        stats = await running

        records = _read_s3_jsonl(s3, bucket, f"kill-{run}/out/")
        assert [r["n"] for r in records] == list(range(1, count + 1))
        assert {r["status"] for r in records} == {"completed"}
        assert [r["output"] for r in records] == [{"y": i} for i in range(count)]
        # The retried task collected what the dead actor had journaled as accepted ...
        assert stats.recovered_tracked > 0
        # ... and only the rows it counted may have run twice on the server.
        by_id = await _accepted_by_id(local_stack, endpoint)
        assert set(by_id) == {f"{job.job_id}-{n}" for n in range(1, count + 1)}
        ran_twice = sum(c - 1 for c in by_id.values())
        assert ran_twice <= stats.resubmitted_after_crash == stats.possibly_duplicated
        # Nothing left of the journal once OUTPUT is complete.
        assert s3.list_objects_v2(Bucket=bucket, Prefix=journal)["KeyCount"] == 0
    finally:
        s3.close()
        await local_stack.delete_endpoint(endpoint.name)


def _s3_client(stack: LocalStack) -> Any:
    import boto3

    info = stack.info
    return boto3.client(
        "s3",
        endpoint_url=info.s3_url,
        region_name=info.region,
        aws_access_key_id=info.aws_access_key_id,
        aws_secret_access_key=info.aws_secret_access_key,
    )


def _put_parquet(s3: Any, bucket: str, key: str, count: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": [f"row-{i}" for i in range(count)],
            "body": [orjson.dumps({"y": i}) for i in range(count)],
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())


def _read_s3_jsonl(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    records = []
    for key in sorted(o["Key"] for o in listed if "/part-" in o["Key"]):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        records.extend(orjson.loads(line) for line in body.splitlines())
    return records


def _actor_pids_with_acceptances(s3: Any, bucket: str, journal: str) -> list[int]:
    """The processes of the actors that have journaled acceptances (``actors/<token>.json``)."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=journal).get("Contents", [])
    keys = [o["Key"][len(journal) :] for o in listed]
    tokens = {k.rsplit("/", 1)[-1].rsplit("-", 1)[0] for k in keys if k.startswith("accepted/")}
    pids = []
    for token in sorted(tokens):
        if f"actors/{token}.json" in keys:
            body = s3.get_object(Bucket=bucket, Key=f"{journal}actors/{token}.json")["Body"]
            pids.append(int(orjson.loads(body.read())["pid"]))
    return pids


def test_cli_without_ray_says_how_to_install_it(
    quiet_endpoint: EndpointInfo, tmp_path: Path
) -> None:
    # A `ray` that cannot be imported, ahead of the real one on the path.
    fake = tmp_path / "no-ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    source = write_lines(tmp_path / "in.jsonl", _inputs(3))
    result = cli_process(
        "batch", "--ray", quiet_endpoint.name, str(source), "-o", str(tmp_path / "out.jsonl"),
        env={"PYTHONPATH": str(fake.parent)},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "pip install 'aiosagemaker[ray]'" in result.stderr
    assert not (tmp_path / "out.jsonl").exists()
