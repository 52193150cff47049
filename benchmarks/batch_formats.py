"""The batch job's throughput and client CPU for the same inputs in JSON Lines, Parquet and on S3.

Runs the public command, ``python -m aiosagemaker.cli batch ...``, as a child process (exactly
what users run), against the local stack (endpoint server and moto's S3 each in a process of
their own) with the ``echo`` model, so the client's own cost dominates. Every case sends the same
N inputs, each payload a JSON object ``{"i": i, "text": "..."}`` of ~200 bytes:

1. ``jsonl``: a local JSON Lines file in, a local JSON Lines file out (the baseline);
2. ``parquet``: a local Parquet file in, its ``body`` column a *struct* ``<i: int64, text:
   string>`` (sent as its JSON, ``application/json``, the same bytes as the JSON Lines line), out
   to ``-o out.parquet`` (a directory of parts);
3. ``s3-jsonl``: the JSON Lines file as an ``s3://`` object in, ``-o s3://bucket/prefix/`` out;
4. ``s3-parquet``: the Parquet file as an ``s3://`` object in, ``-o s3://bucket/prefix/
   --output-format parquet`` out.

Every run: a fresh endpoint (``notifications=False``) and fresh output locations, ``--watcher s3
--poll-interval 0.05 --concurrency 256 --no-progress``. Measured per run, for the child alone
(``os.wait4``): wall seconds, CPU seconds (user + sys), results/s, CPU ms per result, max RSS.
A run counts only if it verifies: exit status 0 and exactly N records read back from OUTPUT (JSON
Lines lines; ``pyarrow.parquet.read_table`` of the directory; the ``part-*`` objects under the S3
prefix), all ``completed``, with N distinct ``n``; anything else fails the benchmark.

The cases run ``--repeat`` times, interleaved (round-robin, each round starting one case later),
after an unmeasured warm-up round. Reported: the median of each figure, and the ratio of each
case's median to the ``jsonl`` median of the same invocation (these machines are shared and
noisy: the ratios are the claim); the per-round ratios are in the JSON.

    python benchmarks/batch_formats.py --n 20000 --repeat 3 --out benchmarks/results/batch_formats.json

``--cprofile DIR`` then runs each case once more under ``python -m cProfile -o DIR/<case>.prof``
(not measured) and prints its top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from _common import machine, write_json
from aiosagemaker import parse_s3_uri
from aiosagemaker.local import LocalStack, open_local_stack

CASES = ("jsonl", "parquet", "s3-jsonl", "s3-parquet")
BASELINE = "jsonl"
_WORDS = (
    "async inference endpoint payload result batch journal parquet column struct record "
    "bucket prefix object latency throughput request response model output input client "
    "server watcher polling listing part commit resume shard queue topic notification"
).split()


# --- inputs ----------------------------------------------------------------------------------


def _payloads(n: int, text_chars: int) -> list[dict[str, Any]]:
    """N payloads ``{"i": i, "text": ...}``: varied words, each text exactly ``text_chars``."""
    rng = random.Random(20240601)
    out = []
    for i in range(n):
        words: list[str] = []
        size = 0
        while size < text_chars:
            word = rng.choice(_WORDS)
            words.append(word)
            size += len(word) + 1
        out.append({"i": i, "text": " ".join(words)[:text_chars]})
    return out


def _write_inputs(directory: Path, payloads: list[dict[str, Any]]) -> tuple[Path, Path]:
    jsonl = directory / "inputs.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in payloads))
    body_type = pa.struct([("i", pa.int64()), ("text", pa.string())])
    parquet = directory / "inputs.parquet"
    pq.write_table(pa.table({"body": pa.array(payloads, type=body_type)}), parquet)
    return jsonl, parquet


# --- S3 --------------------------------------------------------------------------------------


def _delete_prefix(s3: Any, bucket: str, prefix: str) -> int:
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
    return deleted


def _s3_parts(s3: Any, bucket: str, prefix: str) -> list[tuple[str, bytes]]:
    parts = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix + "part-"
    ):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            parts.append((obj["Key"], body))
    return sorted(parts)


# --- verification ----------------------------------------------------------------------------


def _check(records: list[tuple[int, str]], n: int, where: str) -> None:
    """``records``: (n, status) per record read back. Raises unless exactly N, all completed."""
    if len(records) != n:
        raise SystemExit(f"FAILED: {where}: {len(records)} records, expected {n}")
    statuses: dict[str, int] = {}
    for _, status in records:
        statuses[status] = statuses.get(status, 0) + 1
    if statuses != {"completed": n}:
        raise SystemExit(f"FAILED: {where}: statuses {statuses}, expected {n} completed")
    if len({number for number, _ in records}) != n:
        raise SystemExit(f"FAILED: {where}: duplicate n among {n} records")


def _jsonl_records(data: bytes) -> list[tuple[int, str]]:
    out = []
    for line in data.splitlines():
        if line.strip():
            record = orjson.loads(line)
            out.append((record["n"], record["status"]))
    return out


def _table_records(table: pa.Table) -> list[tuple[int, str]]:
    return list(zip(table.column("n").to_pylist(), table.column("status").to_pylist(), strict=True))


def _verify(case: str, output: str, n: int, s3: Any) -> int:
    if case == "jsonl":
        records = _jsonl_records(Path(output).read_bytes())
    elif case == "parquet":
        records = _table_records(pq.read_table(output))
    else:
        uri = parse_s3_uri(output, field="output")
        parts = _s3_parts(s3, uri.bucket, uri.key)
        if not parts:
            raise SystemExit(f"FAILED: {output}: no part-* objects")
        records = []
        for _, body in parts:
            if case == "s3-jsonl":
                records += _jsonl_records(body)
            else:
                records += _table_records(pq.read_table(io.BytesIO(body)))
    _check(records, n, output)
    return len(records)


# --- one run ---------------------------------------------------------------------------------


def _command(
    case: str, endpoint: str, inputs: dict[str, str], output: str, args: argparse.Namespace
) -> list[str]:
    command = [
        "-m",
        "aiosagemaker.cli",
        "batch",
        endpoint,
        inputs["parquet" if "parquet" in case else "jsonl"],
        "-o",
        output,
        "--watcher",
        "s3",
        "--poll-interval",
        repr(args.poll_interval),
        "--concurrency",
        str(args.concurrency),
        "--no-progress",
    ]
    if case == "s3-parquet":
        command += ["--output-format", "parquet"]
    return command


def _spawn(argv: list[str], log: Path) -> dict[str, Any]:
    """Run ``argv`` to the end; wall time and the child's own rusage (``wait4``)."""
    with log.open("wb") as sink:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen quiet
    return {
        "exit": child.returncode,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "max_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
    }


async def _one_run(
    stack: LocalStack,
    case: str,
    n: int,
    inputs: dict[str, str],
    workdir: Path,
    s3: Any,
    bucket: str,
    args: argparse.Namespace,
    *,
    profile: Path | None = None,
) -> dict[str, Any]:
    run_id = f"{case}-{uuid.uuid4().hex[:8]}"
    endpoint = await stack.create_endpoint(
        f"bf-{run_id}",
        model="echo",
        instances=args.instances,
        max_concurrency=args.max_concurrency,
        notifications=False,
    )
    rundir = workdir / run_id
    rundir.mkdir()
    if case == "jsonl":
        output = str(rundir / "out.jsonl")
    elif case == "parquet":
        output = str(rundir / "out.parquet")
    else:
        output = f"s3://{bucket}/batch-formats/{workdir.name}/{run_id}/out/"
    command = _command(case, endpoint.name, inputs, output, args)
    if profile is not None:
        command = ["-m", "cProfile", "-o", str(profile), *command]
    argv = [sys.executable, *command]
    log = rundir / "batch.log"
    run = await asyncio.to_thread(_spawn, argv, log)
    if run["exit"] != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"FAILED: {case}: exit {run['exit']}\n{' '.join(argv)}\n{tail}")
    records = await asyncio.to_thread(_verify, case, output, n, s3)
    await stack.delete_endpoint(endpoint.name)
    # Keep moto small (its listings scan the bucket): drop this run's outputs.
    out_uri = parse_s3_uri(endpoint.output_path, field="output")
    await asyncio.to_thread(_delete_prefix, s3, out_uri.bucket, out_uri.key.rstrip("/") + "/")
    if endpoint.failure_path != endpoint.output_path:
        fail_uri = parse_s3_uri(endpoint.failure_path, field="failure")
        await asyncio.to_thread(_delete_prefix, s3, fail_uri.bucket, fail_uri.key.rstrip("/") + "/")
    if output.startswith("s3://"):
        await asyncio.to_thread(_delete_prefix, s3, bucket, output[len(f"s3://{bucket}/") :])
    if not args.keep:
        shutil.rmtree(rundir)
    return {
        "case": case,
        "command": " ".join(["python", *command]),
        "records": records,
        **run,
        "results_per_s": records / run["wall_s"],
        "cpu_ms_per_result": run["cpu_s"] / records * 1e3,
    }


# --- the benchmark ---------------------------------------------------------------------------

_FIGURES = ("wall_s", "cpu_s", "results_per_s", "cpu_ms_per_result", "max_rss_mib")


def _summarise(runs: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    by_case = {case: [r for r in runs if r["case"] == case] for case in CASES}
    medians = {
        case: {f: statistics.median(r[f] for r in rs) for f in _FIGURES}
        for case, rs in by_case.items()
    }
    base = medians[BASELINE]
    ratios = {case: {f: m[f] / base[f] for f in _FIGURES} for case, m in medians.items()}
    per_round = {
        case: [{f: rs[k][f] / by_case[BASELINE][k][f] for f in _FIGURES} for k in range(repeat)]
        for case, rs in by_case.items()
    }
    return {"medians": medians, "ratios_of_medians": ratios, "per_round_ratios": per_round}


def _print_table(summary: dict[str, Any], n: int, repeat: int) -> None:
    print(f"\n{n:,} inputs per run, median of {repeat} run(s) per case; x = ratio to {BASELINE}")
    header = (
        f"{'case':11} {'wall s':>7} {'results/s':>10} {'CPU s':>7} {'CPU ms/res':>11} "
        f"{'RSS MiB':>8} | {'wall x':>7} {'res/s x':>8} {'CPU/res x':>9} {'RSS x':>6}"
    )
    print(header)
    print("-" * len(header))
    for case in CASES:
        m, r = summary["medians"][case], summary["ratios_of_medians"][case]
        print(
            f"{case:11} {m['wall_s']:7.2f} {m['results_per_s']:10.0f} {m['cpu_s']:7.2f} "
            f"{m['cpu_ms_per_result']:11.3f} {m['max_rss_mib']:8.1f} | "
            f"{r['wall_s']:7.2f} {r['results_per_s']:8.2f} {r['cpu_ms_per_result']:9.2f} "
            f"{r['max_rss_mib']:6.2f}"
        )


def _print_profile(path: Path, top: int) -> None:
    print(f"\n--- {path.name}: top {top} by own time (tottime) ---")
    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)
    print(f"--- {path.name}: top {top} by cumulative time ---")
    stats.sort_stats("cumulative").print_stats(top)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="batch-formats-", dir=args.workdir))
    payloads = _payloads(args.n, args.text_chars)
    jsonl, parquet = _write_inputs(workdir, payloads)
    payload_bytes = statistics.mean(len(orjson.dumps(p)) for p in payloads)
    input_bytes = {"jsonl": jsonl.stat().st_size, "parquet": parquet.stat().st_size}
    async with open_local_stack(
        model="echo",
        instances=args.instances,
        max_concurrency=args.max_concurrency,
        notifications=False,
    ) as stack:
        os.environ.update(stack.env())  # for boto3 here and for the children
        s3 = boto3.client("s3")
        bucket = stack.info.bucket
        key = f"batch-formats/{workdir.name}/inputs"
        s3.upload_file(str(jsonl), bucket, f"{key}/inputs.jsonl")
        s3.upload_file(str(parquet), bucket, f"{key}/inputs.parquet")
        inputs = {"jsonl": str(jsonl), "parquet": str(parquet)}
        s3_inputs = {
            "jsonl": f"s3://{bucket}/{key}/inputs.jsonl",
            "parquet": f"s3://{bucket}/{key}/inputs.parquet",
        }

        def inputs_of(case: str) -> dict[str, str]:
            return s3_inputs if case.startswith("s3-") else inputs

        if args.warmup:
            small = min(args.n, 500)
            warm_dir = workdir / "warmup"
            warm_dir.mkdir()
            wj, wp = _write_inputs(warm_dir, payloads[:small])
            s3.upload_file(str(wj), bucket, f"{key}/warmup/inputs.jsonl")
            s3.upload_file(str(wp), bucket, f"{key}/warmup/inputs.parquet")
            warm_local = {"jsonl": str(wj), "parquet": str(wp)}
            warm_s3 = {
                "jsonl": f"s3://{bucket}/{key}/warmup/inputs.jsonl",
                "parquet": f"s3://{bucket}/{key}/warmup/inputs.parquet",
            }
            for case in CASES:
                warm = warm_s3 if case.startswith("s3-") else warm_local
                run = await _one_run(stack, case, small, warm, workdir, s3, bucket, args)
                print(f"warm-up {case:11} {small} records in {run['wall_s']:.2f} s", flush=True)

        runs: list[dict[str, Any]] = []
        for round_no in range(args.repeat):
            order = CASES[round_no % len(CASES) :] + CASES[: round_no % len(CASES)]
            for case in order:
                run = await _one_run(
                    stack, case, args.n, inputs_of(case), workdir, s3, bucket, args
                )
                run["round"] = round_no
                runs.append(run)
                print(
                    f"round {round_no} {case:11} {run['records']} records verified: "
                    f"{run['wall_s']:.2f} s wall, {run['results_per_s']:.0f}/s, "
                    f"{run['cpu_s']:.2f} s CPU ({run['cpu_ms_per_result']:.3f} ms/result), "
                    f"RSS {run['max_rss_mib']:.0f} MiB",
                    flush=True,
                )

        profiles = {}
        if args.cprofile:
            Path(args.cprofile).mkdir(parents=True, exist_ok=True)
            for case in args.cprofile_cases or CASES:
                path = Path(args.cprofile).resolve() / f"{case}.prof"
                run = await _one_run(
                    stack, case, args.n, inputs_of(case), workdir, s3, bucket, args, profile=path
                )
                profiles[case] = {"path": str(path), "wall_s": run["wall_s"], "cpu_s": run["cpu_s"]}
                print(f"profiled {case}: {run['wall_s']:.2f} s wall under cProfile -> {path}")
        await asyncio.to_thread(_delete_prefix, s3, bucket, f"batch-formats/{workdir.name}/")

    if not args.keep:
        shutil.rmtree(workdir)
    runs.sort(key=lambda r: (r["round"], CASES.index(r["case"])))
    return {
        "benchmark": "batch_formats",
        "machine": machine(),
        "settings": {
            **vars(args),
            "payload_bytes_mean": payload_bytes,
            "input_bytes": input_bytes,
            "parquet_body_column": "struct<i: int64, text: string> (sent as its JSON)",
            "commands": {
                case: next(r["command"] for r in runs if r["case"] == case) for case in CASES
            },
        },
        "runs": runs,
        "summary": _summarise(runs, args.repeat),
        "profiles": profiles,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="inputs per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case, interleaved")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--text-chars", type=int, default=175, help="payloads ~text + 25 bytes")
    parser.add_argument("--instances", type=int, default=4, help="endpoint instances")
    parser.add_argument("--max-concurrency", type=int, default=16, help="per instance")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument("--workdir", help="where inputs and local outputs go (default: /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the local files")
    parser.add_argument("--cprofile", metavar="DIR", help="then profile one run of each case")
    parser.add_argument("--cprofile-cases", nargs="*", choices=CASES)
    parser.add_argument("--cprofile-top", type=int, default=25)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    report = asyncio.run(_main(args))
    _print_table(report["summary"], args.n, args.repeat)
    for case, command in report["settings"]["commands"].items():
        print(f"{case:11} {command}")
    for profile in report["profiles"].values():
        _print_profile(Path(profile["path"]), args.cprofile_top)
    write_json(args.out, report)


if __name__ == "__main__":
    main()
