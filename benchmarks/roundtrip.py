"""Client CPU per completed round trip (submit, 202, result in hand): aiosagemaker vs plain aiobotocore.

What it measures: the CPU this process (the client) spends per job that goes all the way round:
the request is sent, the endpoint answers 202, the output is found and read back. Everything runs
against the local stack: its endpoint server and moto's S3/SNS/SQS run in child processes (checked
at start: the stack's processes are listed, and none is this one), so their CPU is not counted;
it is reported apart, read from ``/proc``, for context.

Each mode runs an unmeasured warm-up batch, then a batch of ``--small`` jobs (N1) and one of
``--large`` jobs (N2), each batch in a fresh endpoint and a fresh client (``AsyncInvoker`` opened
and closed inside the measured window). Client CPU of a batch is ``resource.getrusage(RUSAGE_SELF)``
user + sys around it, and the figure is::

    CPU per job = (cpu(N2) - cpu(N1)) / (N2 - N1)

so what a batch pays once (opening clients, the watcher starting, closing) cancels. Costs that
grow with the batch's wall time (polls, long polls) are part of the figure, as they are in use.
So is SqsNotifications' reconciliation: a job still waiting ``reconcile_after`` (30 s) after its
202 is looked up in S3 (a HEAD, and a GET when found before its notification). All jobs are
submitted at once and the local endpoint works through them at 30-70/s, so the large batch's
jobs wait longer and reconciliation lands in the per-job figure; ``--reconcile-after 600``
takes it out (the ``roundtrip_reconcile600`` run).

Modes, all through the public API (the README's submit loop: ``jobs = [await invoker.submit(p)
...]`` then ``await job.result()`` for each; ``--api map`` uses ``invoker.map()`` instead):

- ``s3``: the default watcher, ``S3Polling(interval=--interval)``.
- ``sqs``: ``SqsNotifications`` on the endpoint's notification queue (``notifications=True``);
  each output is then read with one S3 GET.
- ``sqs-embedded``: the endpoint includes the response in its notifications
  (``create_endpoint(include_response=True)``, the local stack's ``IncludeInferenceResponseIn``),
  and the watcher is given a verifier that accepts every SNS envelope: the local stack does not
  sign its envelopes, and the library uses an embedded body only from a *signed* notification (an
  unsigned one is settled from S3 with a GET), so this stand-in is what lets the embedded bodies be
  used; it stands for ``SnsSignatureVerifier`` minus its RSA check (cached certificate).
- ``sqs-embedded-unverified`` (not in the default set): the same endpoint, no verifier; the
  library then reads every output from S3 anyway (the README's trust rule).
- ``naive``: the baseline, plain aiobotocore: ``sagemaker-runtime.invoke_endpoint_async(Body=...)``
  with the same in-flight bound (``--concurrency``), then per job a HEAD of its output location
  every ``--interval`` s and one GET once it is there. Ratios are against this mode.

Payloads are ~``--payload-bytes`` of JSON (unique per job), the model is ``echo``; every result is
checked against its payload. Reported per mode: CPU ms per job, its ratio to naive, wall time and
results/s of the large batch, AWS calls per result (SQS calls for the SQS modes).

    .venv/bin/python benchmarks/roundtrip.py --out benchmarks/results/roundtrip.json
    .venv/bin/python benchmarks/roundtrip.py --loop asyncio --out benchmarks/results/roundtrip_asyncio.json
    .venv/bin/python benchmarks/roundtrip.py --profile s3    # -> results/roundtrip_profile_s3.txt
    .venv/bin/python benchmarks/roundtrip.py --profile sqs   # -> results/roundtrip_profile_sqs.txt
    .venv/bin/python benchmarks/roundtrip.py --modes sqs,sqs-embedded,naive --reconcile-after 600 \
        --out benchmarks/results/roundtrip_reconcile600.json

To measure one commit while the work tree changes, import a snapshot of it (the local stack's
child processes then import the same copy): ``git archive HEAD src | tar -x -C /tmp/snap`` and
``PYTHONPATH=/tmp/snap/src`` before the command; ``code`` in the JSON says which was measured.

``--profile MODE`` runs only that mode (a small unprofiled warm-up, then the large batch under
cProfile, this process only) and writes pstats text, by own time and by cumulative time (top 40),
plus own time summed by source file, to ``benchmarks/results/roundtrip_profile_<mode>.txt``, and
the raw profile beside it (``.prof``, for ``python -m pstats``: who calls what).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from _common import (
    add_loop_option,
    loop_factory,
    loop_name,
    machine,
    percentile,
    short_path,
    write_json,
)
from aiosagemaker import AsyncInvoker, Limits, S3Polling, SqsNotifications
from aiosagemaker.local import LocalStack, open_local_stack

MODES = ("s3", "sqs", "sqs-embedded", "naive")
ALL_MODES = (*MODES, "sqs-embedded-unverified")
RESULTS = Path(__file__).resolve().parent / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- what ran --------------------------------------------------------------------------------------


def code_version() -> dict[str, Any]:
    """Which aiosagemaker was imported: its path, and the git commit and local changes there
    (or the ``COMMIT`` file of a snapshot made with ``git archive``)."""
    import subprocess

    import aiosagemaker

    src = Path(aiosagemaker.__file__).resolve().parents[1]
    info: dict[str, Any] = {"path": str(src), "version": aiosagemaker.__version__}
    marker = src.parent / "COMMIT"
    if marker.exists():
        info["snapshot_of"] = marker.read_text().strip()
        return info
    try:
        info["commit"] = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        info["local_changes"] = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")[:-1]
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


# --- processes -----------------------------------------------------------------------------------


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_rusage_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces; split after its closing parenthesis.
    return raw[raw.rfind(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (from /proc)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                children[int(fields[1])].append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def processes_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (utime, stime of /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


# --- the modes -----------------------------------------------------------------------------------


class AcceptAllEnvelopes:
    """A stand-in for ``SnsSignatureVerifier``: takes every SNS envelope as signed.

    The local stack's SNS (moto) does not sign with a certificate the real verifier would fetch,
    so without this the library, rightly, reads every embedded output from S3 again.
    """

    async def verify(self, envelope: Mapping[str, Any]) -> None:
        return None


def make_payloads(n: int, size: int, batch: str) -> list[bytes]:
    pad = "x" * max(0, size - 48)
    return [orjson.dumps({"batch": batch, "i": i, "pad": pad}) for i in range(n)]


async def library_batch(
    stack: LocalStack, mode: str, payloads: list[bytes], args: argparse.Namespace, profiler: Any
) -> dict[str, Any]:
    n = len(payloads)
    endpoint = await stack.create_endpoint(
        notifications=mode != "s3", include_response=mode.startswith("sqs-embedded")
    )
    watcher: S3Polling | SqsNotifications
    if mode == "s3":
        watcher = S3Polling(interval=args.interval)
    else:
        assert endpoint.queue_url is not None
        watcher = SqsNotifications(
            queue_url=endpoint.queue_url,
            receivers=args.receivers,
            verifier=AcceptAllEnvelopes() if mode == "sqs-embedded" else None,
            **({} if args.reconcile_after is None else {"reconcile_after": args.reconcile_after}),
        )
    limits = Limits(max_concurrent_invocations=args.concurrency, max_pending=max(n, 1))
    stack_pids = descendants(os.getpid())
    bad = 0
    timings: list[Any] = []
    try:
        stack0, cpu0, wall0 = processes_cpu(stack_pids), _self_cpu(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        async with AsyncInvoker(endpoint.name, limits=limits, watcher=watcher) as invoker:
            if args.api == "map":
                index = 0
                async for result in invoker.map(
                    payloads, ordered=True, content_type="application/json"
                ):
                    assert not isinstance(result, BaseException)
                    bad += result.body != payloads[index]
                    timings.append(result.timings)
                    index += 1
                done = index
            else:
                jobs = [await invoker.submit(p, content_type="application/json") for p in payloads]
                for job, payload in zip(jobs, payloads, strict=True):
                    result = await job.result()
                    bad += result.body != payload
                    timings.append(result.timings)
                done = len(jobs)
        if profiler is not None:
            profiler.disable()
        cpu, wall = _self_cpu() - cpu0, time.perf_counter() - wall0
        stack_cpu = processes_cpu(stack_pids) - stack0
    finally:
        await stack.delete_endpoint(endpoint.name)
    stats = watcher.statistics()
    settled = max(1, stats.resolved + stats.failed)
    e2e = [(t.fetched or t.completed) - t.submitted for t in timings]
    lags = [t.completed - t.service_completed for t in timings if t.service_completed]
    return {
        "jobs": n,
        "results": done,
        "mismatched": bad,
        "cpu_s": cpu,
        "wall_s": wall,
        "stack_cpu_s": stack_cpu,
        "sqs_receive_calls": stats.sqs_receive_calls,
        "sqs_delete_calls": stats.sqs_delete_calls,
        "s3_list_calls": stats.s3_list_calls,
        "s3_head_calls": stats.s3_head_calls,
        "s3_get_calls": stats.s3_get_calls,
        "inline_bodies": stats.inline_bodies,
        "aws_calls": stats.aws_calls,
        "sqs_calls_per_result": (stats.sqs_receive_calls + stats.sqs_delete_calls) / settled,
        "aws_calls_per_result": stats.aws_calls / settled,
        "resolved": stats.resolved,
        "failed": stats.failed,
        "duplicates": stats.duplicates,
        "hint_notifications": stats.hint_notifications,
        "reconciled": getattr(watcher, "reconciled", None),
        **_spread("e2e", e2e),
        **_spread("notification_lag", lags),
    }


def _spread(name: str, values: list[float]) -> dict[str, float | None]:
    """p50, p99 and max of ``values`` (seconds), or ``None`` when there are none."""
    ordered = sorted(values)
    return {
        f"{name}_p50_s": percentile(ordered, 50) if ordered else None,
        f"{name}_p99_s": percentile(ordered, 99) if ordered else None,
        f"{name}_max_s": ordered[-1] if ordered else None,
    }


async def naive_batch(
    stack: LocalStack, payloads: list[bytes], args: argparse.Namespace, profiler: Any
) -> dict[str, Any]:
    """Plain aiobotocore: bounded invoke_endpoint_async, then HEAD every --interval s, then GET."""
    n = len(payloads)
    endpoint = await stack.create_endpoint(notifications=False)
    stack_pids = descendants(os.getpid())
    counts = {"invoke": 0, "head": 0, "get": 0}
    e2e: list[float] = []
    bad = 0
    try:
        stack0, cpu0, wall0 = processes_cpu(stack_pids), _self_cpu(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        session = get_session()
        config = AioConfig(max_pool_connections=args.concurrency)
        invoking = asyncio.Semaphore(args.concurrency)
        reading = asyncio.Semaphore(args.concurrency)
        async with (
            session.create_client("sagemaker-runtime", config=config) as runtime,
            session.create_client("s3", config=config) as s3,
        ):

            async def one(payload: bytes) -> bool:
                submitted = time.time()
                async with invoking:
                    counts["invoke"] += 1
                    answer = await runtime.invoke_endpoint_async(
                        EndpointName=endpoint.name, Body=payload, ContentType="application/json"
                    )
                bucket, _, key = answer["OutputLocation"].removeprefix("s3://").partition("/")
                while True:
                    await asyncio.sleep(args.interval)
                    async with reading:
                        counts["head"] += 1
                        try:
                            await s3.head_object(Bucket=bucket, Key=key)
                        except ClientError as exc:
                            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                                continue
                            raise
                        counts["get"] += 1
                        response = await s3.get_object(Bucket=bucket, Key=key)
                        async with response["Body"] as stream:
                            body = await stream.read()
                    e2e.append(time.time() - submitted)
                    return body == payload

            outcomes = await asyncio.gather(*(one(p) for p in payloads))
            bad = outcomes.count(False)
        if profiler is not None:
            profiler.disable()
        cpu, wall = _self_cpu() - cpu0, time.perf_counter() - wall0
        stack_cpu = processes_cpu(stack_pids) - stack0
    finally:
        await stack.delete_endpoint(endpoint.name)
    return {
        "jobs": n,
        "results": len(outcomes),
        "mismatched": bad,
        "cpu_s": cpu,
        "wall_s": wall,
        "stack_cpu_s": stack_cpu,
        "s3_head_calls": counts["head"],
        "s3_get_calls": counts["get"],
        "aws_calls": counts["head"] + counts["get"],
        "sqs_calls_per_result": None,
        "aws_calls_per_result": (counts["head"] + counts["get"]) / max(1, n),
        **_spread("e2e", e2e),
    }


async def batch(
    stack: LocalStack,
    mode: str,
    n: int,
    label: str,
    args: argparse.Namespace,
    profiler: Any = None,
) -> dict[str, Any]:
    payloads = make_payloads(n, args.payload_bytes, f"{mode}-{label}")
    if mode == "naive":
        row = await naive_batch(stack, payloads, args, profiler)
    else:
        row = await library_batch(stack, mode, payloads, args, profiler)
    row["mode"], row["batch"] = mode, label
    print(
        f"  {mode:24} {label:7} n={n:<5} cpu {row['cpu_s']:7.2f} s  wall {row['wall_s']:6.1f} s  "
        f"stack cpu {row['stack_cpu_s']:6.1f} s  calls/result {row['aws_calls_per_result']:.3f}",
        file=sys.stderr,
        flush=True,
    )
    if row["results"] != n or row["mismatched"]:
        raise RuntimeError(f"{mode} {label}: {row['results']}/{n} results, {row['mismatched']} bad")
    return row


def summarize(mode: str, small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    extra = large["jobs"] - small["jobs"]
    return {
        "mode": mode,
        "cpu_ms_per_job": (large["cpu_s"] - small["cpu_s"]) / extra * 1e3,
        "stack_cpu_ms_per_job": (large["stack_cpu_s"] - small["stack_cpu_s"]) / extra * 1e3,
        "cpu_ms_per_job_large_batch_whole": large["cpu_s"] / large["jobs"] * 1e3,
        "wall_s_large": large["wall_s"],
        "results_per_s_large": large["jobs"] / large["wall_s"],
        "wall_s_small": small["wall_s"],
        "sqs_calls_per_result": large["sqs_calls_per_result"],
        "aws_calls_per_result": large["aws_calls_per_result"],
        "s3_get_per_result": large["s3_get_calls"] / large["jobs"],
        "s3_head_per_result": large["s3_head_calls"] / large["jobs"],
        "reconciled_large": large.get("reconciled"),
        "e2e_p50_s_large": large["e2e_p50_s"],
        "e2e_p99_s_large": large["e2e_p99_s"],
        "notification_lag_p50_s_large": large.get("notification_lag_p50_s"),
        "notification_lag_p99_s_large": large.get("notification_lag_p99_s"),
    }


# --- runs ----------------------------------------------------------------------------------------


def _stack(args: argparse.Namespace) -> LocalStack:
    return open_local_stack(
        model="echo",
        instances=args.instances,
        max_concurrency=args.max_concurrency,
        notifications=False,
    )


def _check_processes(stack: LocalStack) -> dict[str, Any]:
    me = os.getpid()
    pids = descendants(me)
    if not pids or me in pids:
        raise RuntimeError("the local stack is not running in child processes")
    listed = {pid: _cmdline(pid) for pid in pids}
    print(f"client pid {me}; local stack processes: {listed}", file=sys.stderr, flush=True)
    return {"client_pid": me, "stack_processes": {str(k): v for k, v in listed.items()}}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    modes = args.modes.split(",")
    load_at_start = os.getloadavg()  # the machine is shared: other work shows here
    async with _stack(args) as stack:
        os.environ.update(stack.env())
        processes = _check_processes(stack)
        children_cpu0 = _children_rusage_cpu()
        raw, rows = [], []
        for mode in modes:
            await batch(stack, mode, args.warmup, "warm-up", args)
            small = await batch(stack, mode, args.small, "small", args)
            large = await batch(stack, mode, args.large, "large", args)
            raw += [small, large]
            rows.append(summarize(mode, small, large))
        # The stack's children are not reaped while it runs: RUSAGE_CHILDREN stays where it was.
        processes["rusage_children_cpu_s_during_runs"] = _children_rusage_cpu() - children_cpu0
    base = next((r for r in rows if r["mode"] == "naive"), None)
    for row in rows:
        row["cpu_ratio_to_naive"] = row["cpu_ms_per_job"] / base["cpu_ms_per_job"] if base else None
        row["throughput_ratio_to_naive"] = (
            row["results_per_s_large"] / base["results_per_s_large"] if base else None
        )
    return {
        "benchmark": "roundtrip",
        "machine": machine(),
        "loop": _loop_name(args),
        "code": code_version(),
        "settings": vars(args),
        "processes": processes,
        "loadavg_at_start": load_at_start,
        "loadavg_at_end": os.getloadavg(),
        "results": rows,
        "batches": raw,
    }


async def profile(args: argparse.Namespace) -> dict[str, Any]:
    mode = args.profile
    # A CPU profile: time.process_time, so waiting in epoll (idle) is not counted as time.
    profiler = cProfile.Profile(time.process_time)
    async with _stack(args) as stack:
        os.environ.update(stack.env())
        processes = _check_processes(stack)
        await batch(stack, mode, args.warmup, "warm-up", args)
        row = await batch(stack, mode, args.large, "large", args, profiler=profiler)
    path = RESULTS / f"roundtrip_profile_{mode}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"roundtrip --profile {mode}: the large batch ({args.large} jobs) under cProfile, "
        f"client process only, loop {_loop_name(args)}, api {args.api}\n"
        f"cpu {row['cpu_s']:.2f} s (profiled: inflated), wall {row['wall_s']:.1f} s, "
        f"{row['cpu_s'] / row['jobs'] * 1e3:.2f} ms/job profiled\n"
        f"machine {machine()}\n"
        f"code {code_version()}\n"
    )
    path.write_text(header + _dump(profiler))
    # The raw profile too, for pstats' callers and callees views (python -m pstats FILE).
    profiler.dump_stats(path.with_suffix(".prof"))
    print(f"wrote {path} and {path.with_suffix('.prof').name}", file=sys.stderr)
    return {"mode": mode, "batch": row, "processes": processes, "profile": str(path)}


def _dump(profiler: cProfile.Profile) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    out.write(f"\ntotal own (CPU) time of profiled functions: {total:.3f} s\n")
    out.write("\n==== own time summed by source file (top 40) ====\n")
    by_file: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for (filename, _, _), (_, calls, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = "<built-in (C) functions>" if filename == "~" else short_path(filename)
        by_file[key][0] += tottime
        by_file[key][1] += calls
    for name, (tottime, calls) in sorted(by_file.items(), key=lambda kv: -kv[1][0])[:40]:
        out.write(
            f"{tottime:9.3f} s {100 * tottime / total:5.1f}% {int(calls):>10} calls  {name}\n"
        )
    out.write("\n==== by own time (tottime), top 40 ====\n")
    stats.sort_stats("tottime").print_stats(40)
    out.write("\n==== by cumulative time, top 40 ====\n")
    stats.sort_stats("cumulative").print_stats(40)
    out.write("\n==== callers of the top 15 by own time ====\n")
    stats.sort_stats("tottime").print_callers(15)
    return out.getvalue()


def _loop_name(args: argparse.Namespace) -> str:
    return loop_name(loop_factory(args.loop))


def table(report: dict[str, Any]) -> str:
    head = (
        f"{'mode':24} {'cpu ms/job':>10} {'vs naive':>8} {'wall s':>7} {'results/s':>9} "
        f"{'sqs calls/res':>13} {'aws calls/res':>13} {'GET/res':>7} {'HEAD/res':>8} "
        f"{'e2e p50/p99 s':>13} {'stack ms/job':>12}"
    )
    lines = [
        f"loop {report['loop']}, machine {report['machine']}",
        f"code {report['code']}",
        f"load average at start {report['loadavg_at_start']}, at end {report['loadavg_at_end']}",
        head,
        "-" * len(head),
    ]
    for r in report["results"]:
        sqs = "-" if r["sqs_calls_per_result"] is None else f"{r['sqs_calls_per_result']:.3f}"
        ratio = "-" if r["cpu_ratio_to_naive"] is None else f"{r['cpu_ratio_to_naive']:.2f}x"
        lines.append(
            f"{r['mode']:24} {r['cpu_ms_per_job']:10.3f} {ratio:>8} {r['wall_s_large']:7.1f} "
            f"{r['results_per_s_large']:9.1f} {sqs:>13} {r['aws_calls_per_result']:13.3f} "
            f"{r['s3_get_per_result']:7.3f} {r['s3_head_per_result']:8.3f} "
            f"{r['e2e_p50_s_large']:6.1f}/{r['e2e_p99_s_large']:<6.1f} "
            f"{r['stack_cpu_ms_per_job']:12.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="N1, jobs in the small batch")
    parser.add_argument("--large", type=int, default=4000, help="N2, jobs in the large batch")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured jobs first, per mode")
    parser.add_argument("--modes", default=",".join(MODES), help=f"of {','.join(ALL_MODES)}")
    parser.add_argument("--interval", type=float, default=1.0, help="S3 and naive poll interval")
    parser.add_argument("--concurrency", type=int, default=64, help="invocations in flight")
    parser.add_argument("--receivers", type=int, default=4, help="SqsNotifications receivers")
    parser.add_argument(
        "--reconcile-after",
        type=float,
        default=None,
        help="SqsNotifications(reconcile_after=...); the library's default (30 s) when not given",
    )
    parser.add_argument("--payload-bytes", type=int, default=1024)
    parser.add_argument("--api", choices=("submit", "map"), default="submit")
    parser.add_argument("--instances", type=int, default=4, help="local endpoint instances")
    parser.add_argument("--max-concurrency", type=int, default=16, help="per instance")
    add_loop_option(parser)
    parser.add_argument("--profile", choices=ALL_MODES, help="profile this mode's large batch")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    if args.large <= args.small and not args.profile:
        parser.error("--large must exceed --small")
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        if args.profile:
            report = runner.run(profile(args))
            print(orjson.dumps(report["batch"], option=orjson.OPT_INDENT_2).decode())
            return
        report = runner.run(run(args))
    print(table(report))
    write_json(args.out, report)


if __name__ == "__main__":
    main()
