"""The batch job on Ray (``aiosagemaker batch --ray``) against the single-process batch job, on the
same inputs: throughput with 1 and 2 actors, and the overhead per row that Ray adds.

Everything runs on this machine: the local stack (endpoint server and moto's S3, each in a
process of its own) with the ``echo`` model, so the client's own cost dominates; a local Ray
cluster started once (its start is reported apart: a cluster outlives jobs); the jobs in this
process, as ``aiosagemaker batch`` runs them. Every job sends the same N JSON Lines inputs (a
~100-byte JSON object each) and writes a JSON Lines OUTPUT, with ``--poll-interval 0.05
--concurrency C`` (the job's total: Ray splits it across the actors).

Reported per job: wall seconds from start to OUTPUT complete (for Ray this includes starting the
actor pool and reading the inputs into the Dataset) and results/s over it; the *processing
window* (first submission to last result, from the records' timings) and results/s over that
window, which leaves out the fixed start-up costs; and Ray's overhead per row: the difference with
the single-process job's wall time, divided by N. A run counts only if OUTPUT has N records, all
``completed``, in input order.

    python benchmarks/ray_batch.py --n 20000 --out benchmarks/results/ray_batch.json
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from _common import machine, write_json
from aiosagemaker.batch import BatchJob, BatchOptions
from aiosagemaker.local import LocalStack, open_local_stack


def _inputs(path: Path, n: int) -> None:
    with open(path, "wb") as f:
        for i in range(1, n + 1):
            f.write(orjson.dumps({"id": f"doc-{i}", "body": {"i": i, "text": "x" * 64}}) + b"\n")


def _verify(output: Path, n: int) -> tuple[float, float]:
    """Check OUTPUT; return its processing window (first submission, last result)."""
    records = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    if [r["n"] for r in records] != list(range(1, n + 1)):
        raise SystemExit(f"{output}: not every input once, in order")
    if any(r["status"] != "completed" for r in records):
        raise SystemExit(f"{output}: not all completed")
    first = min(r["timings"]["submitted"] for r in records)
    last = max(r["timings"]["completed"] for r in records)
    return first, last


async def _job(
    stack: LocalStack, workdir: Path, source: Path, n: int, concurrency: int, actors: int | None
) -> dict[str, Any]:
    endpoint = await stack.create_endpoint(notifications=False)
    output = workdir / f"out-{actors or 0}-{time.monotonic_ns()}.jsonl"
    options = BatchOptions(
        endpoint=endpoint.name,
        input=str(source),
        output=output,
        poll_interval=0.05,
        concurrency=concurrency,
        fsync=False,
    )
    started = time.perf_counter()
    if actors is None:
        await BatchJob(options, progress=False, log_interval=0).run()
    else:
        from aiosagemaker.ray import RayBatchJob

        await RayBatchJob(options, actors=actors, progress=False, log_interval=0).run()
    wall = time.perf_counter() - started
    first, last = _verify(output, n)
    await stack.delete_endpoint(endpoint.name)
    window = last - first
    return {
        "job": "single-process" if actors is None else f"ray, {actors} actor(s)",
        "wall_s": round(wall, 2),
        "results_per_s": round(n / wall, 1),
        "window_s": round(window, 2),
        "window_results_per_s": round(n / window, 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    with open_local_stack(model="echo", instances=4, max_concurrency=64) as stack:
        for name, value in stack.env().items():
            os.environ[name] = value
        started = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=args.ray_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        cluster_start = time.perf_counter() - started
        try:
            with tempfile.TemporaryDirectory(prefix="ray-batch-bench-") as tmp:
                workdir = Path(tmp)
                source = workdir / "in.jsonl"
                _inputs(source, args.n)
                jobs = []
                for _ in range(args.repeat):
                    for actors in (None, 1, 2):
                        result = await _job(
                            stack, workdir, source, args.n, args.concurrency, actors
                        )
                        print(result, file=sys.stderr, flush=True)
                        jobs.append(result)
        finally:
            ray.shutdown()
    single = [j for j in jobs if j["job"] == "single-process"]
    base = sorted(j["wall_s"] for j in single)[len(single) // 2]
    for j in jobs:
        j["overhead_ms_per_row_vs_single"] = round((j["wall_s"] - base) * 1000 / args.n, 3)
    return {
        "benchmark": "ray_batch",
        "machine": machine(),
        "n": args.n,
        "concurrency": args.concurrency,
        "ray_cluster_start_s": round(cluster_start, 2),
        "jobs": jobs,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="inputs per job (default 20000)")
    parser.add_argument(
        "--concurrency", type=int, default=256, help="the job's total concurrency (default 256)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the three jobs")
    parser.add_argument("--ray-cpus", type=int, default=2, help="the local cluster's CPUs")
    parser.add_argument("--out", help="write the figures here as JSON")
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    write_json(arguments.out, figures)
