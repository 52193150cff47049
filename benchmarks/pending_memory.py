"""Client memory per pending job: RSS and Python allocations of jobs accepted but not resolved.

Through the public API, against the local stack (endpoint server and moto in child processes): an
endpoint whose model sleeps far longer than the run (``sleep:3600``), so every job is accepted
(202) and tracked by the watcher but none resolves; the default ``S3Polling`` watcher keeps polling
meanwhile, as it would in use. The caller holds the jobs in a list, as the README's submit loop
does; payloads (``--payload-bytes``, unique per job) are made on the fly and not kept by the caller.

Two phases, each with a fresh endpoint and invoker (tracemalloc's own bookkeeping would inflate
RSS, so it is on only in the second):

1. RSS: warm-up jobs first (pools, connections, first-time allocations), ``gc.collect()``, RSS
   (``/proc/self/status`` VmRSS); then ``--jobs`` more, wait until each is accepted,
   ``gc.collect()``, RSS again. Reported: the difference per pending job, in KiB.
2. tracemalloc: the same (``--traced-jobs`` jobs, ``--jobs`` by default), with
   ``tracemalloc.start(--frames)`` after the warm-up; a snapshot before and after, compared by
   line (the top ``--top`` sites), by file, and by traceback for the largest few.

    .venv/bin/python benchmarks/pending_memory.py --out benchmarks/results/roundtrip_pending_memory.json

(the text report goes to ``benchmarks/results/roundtrip_pending_memory.txt``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson

from _common import machine, short_path, write_json
from aiosagemaker import AsyncInvoker, InferenceJob, Limits, S3Polling
from aiosagemaker.local import LocalStack, open_local_stack
from roundtrip import code_version

RESULTS = Path(__file__).resolve().parent / "results"


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


_T0 = time.perf_counter()


def _say(what: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f} s] {what}", file=sys.stderr, flush=True)


def payload(i: int, size: int) -> bytes:
    head = b'{"i": %d, "pad": "' % i
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


async def submit_all(
    invoker: AsyncInvoker, start: int, count: int, size: int, jobs: list[InferenceJob]
) -> None:
    for i in range(start, start + count):
        jobs.append(await invoker.submit(payload(i, size), content_type="application/json"))
    # Accepted (202 in hand, locations known, tracked by the watcher): pending, not resolved.
    await asyncio.gather(*(job.accepted() for job in jobs[-count:]))


async def phase(stack: LocalStack, args: argparse.Namespace, traced: bool) -> dict[str, Any]:
    n = args.traced_jobs if traced else args.jobs
    endpoint = await stack.create_endpoint(model="sleep:3600", notifications=False)
    limits = Limits(max_concurrent_invocations=args.concurrency, max_pending=n + args.warmup)
    watcher = S3Polling(interval=args.interval)
    jobs: list[InferenceJob] = []
    out: dict[str, Any] = {"traced": traced, "jobs": n}
    try:
        async with AsyncInvoker(endpoint.name, limits=limits, watcher=watcher) as invoker:
            _say(f"phase {'tracemalloc' if traced else 'rss'}: warm-up")
            await submit_all(invoker, 0, args.warmup, args.payload_bytes, jobs)
            await asyncio.sleep(args.interval * 2)  # a few polls, so their buffers exist too
            if traced:
                tracemalloc.start(args.frames)
            gc.collect()
            before_rss = rss_bytes()
            before = tracemalloc.take_snapshot() if traced else None
            _say(f"submitting {n}")
            started = time.perf_counter()
            await submit_all(invoker, args.warmup, n, args.payload_bytes, jobs)
            out["submit_and_accept_s"] = time.perf_counter() - started
            _say("accepted; letting the watcher poll")
            await asyncio.sleep(args.interval * 2)
            gc.collect()
            after_rss = rss_bytes()
            after = tracemalloc.take_snapshot() if traced else None
            _say("measured")
            stats = watcher.statistics()
            istats = invoker.statistics()
            out.update(
                pending_in_watcher=stats.pending,
                resolved=stats.resolved,
                s3_list_calls=stats.s3_list_calls,
                invoker_accepted=istats.accepted,
                rss_before_mib=before_rss / 2**20,
                rss_after_mib=after_rss / 2**20,
                rss_kib_per_pending_job=(after_rss - before_rss) / n / 1024,
            )
            if traced:
                assert before is not None and after is not None
                _say("comparing snapshots")
                out.update(_traced(before, after, n, args.top))
                tracemalloc.stop()
            _say("closing the invoker")
            if stats.pending != n + args.warmup or stats.resolved:
                raise RuntimeError(f"expected every job pending, got {stats}")
            # Leaving the block fails the pending jobs with InvokerClosedError (retrieved below).
    finally:
        _say("deleting the endpoint")
        await stack.delete_endpoint(endpoint.name)
    _say("done")
    for job in jobs:
        if job.done():
            try:
                await job.result()
            except Exception:  # noqa: BLE001, S110 - InvokerClosedError, expected
                pass
    return out


def _traced(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top_n: int
) -> dict[str, Any]:
    filters = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<unknown>"),
    ]
    before, after = before.filter_traces(filters), after.filter_traces(filters)
    by_line = after.compare_to(before, "lineno")
    total = sum(d.size_diff for d in by_line)
    top = [
        {
            "site": f"{short_path(d.traceback[0].filename)}:{d.traceback[0].lineno}",
            "kib": d.size_diff / 1024,
            "bytes_per_job": d.size_diff / n,
            "count_diff": d.count_diff,
            "per_job": d.count_diff / n,
        }
        for d in by_line[:top_n]
    ]
    by_file = after.compare_to(before, "filename")
    files = [
        {"file": short_path(d.traceback[0].filename), "bytes_per_job": d.size_diff / n}
        for d in by_file[:15]
    ]
    by_trace = after.compare_to(before, "traceback")
    traces = []
    for d in by_trace[:8]:
        frames = [
            f"{short_path(f.filename)}:{f.lineno}"
            for f in d.traceback
            if "asyncio" not in f.filename and "benchmarks/" not in f.filename
        ][-6:]
        traces.append({"bytes_per_job": d.size_diff / n, "frames": frames})
    return {
        "traced_bytes_per_pending_job": total / n,
        "top_sites_by_line": top,
        "top_files": files,
        "top_tracebacks": traces,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with open_local_stack(
        model="echo", instances=1, max_concurrency=4, notifications=False
    ) as stack:
        os.environ.update(stack.env())
        untraced = await phase(stack, args, traced=False)
        print(orjson.dumps(untraced).decode(), file=sys.stderr, flush=True)
        traced = await phase(stack, args, traced=True)
    return {
        "benchmark": "pending_memory",
        "machine": machine(),
        "code": code_version(),
        "settings": vars(args),
        "loadavg_at_end": os.getloadavg(),
        "rss": untraced,
        "tracemalloc": traced,
    }


def text(report: dict[str, Any]) -> str:
    rss, tm = report["rss"], report["tracemalloc"]
    lines = [
        f"pending_memory: {rss['jobs']} jobs pending (accepted, not resolved; "
        f"{tm['jobs']} in the tracemalloc phase), "
        f"{report['settings']['payload_bytes']}-byte payloads; machine {report['machine']}",
        f"code {report['code']}",
        f"RSS {rss['rss_before_mib']:.1f} -> {rss['rss_after_mib']:.1f} MiB: "
        f"{rss['rss_kib_per_pending_job']:.2f} KiB per pending job (untraced phase)",
        f"  (traced phase, RSS includes tracemalloc's own overhead: "
        f"{tm['rss_kib_per_pending_job']:.2f} KiB per job)",
        f"tracemalloc: {tm['traced_bytes_per_pending_job']:.0f} bytes per pending job "
        f"(Python allocations, net)",
        "",
        f"top {len(tm['top_sites_by_line'])} allocation sites by line (net growth):",
        f"{'bytes/job':>10} {'blocks/job':>10} {'KiB':>9}  site",
    ]
    for s in tm["top_sites_by_line"]:
        lines.append(
            f"{s['bytes_per_job']:10.1f} {s['per_job']:10.2f} {s['kib']:9.1f}  {s['site']}"
        )
    lines += ["", "by file:"]
    for f in tm["top_files"]:
        lines.append(f"{f['bytes_per_job']:10.1f}  {f['file']}")
    lines += ["", "largest tracebacks (innermost last):"]
    for t in tm["top_tracebacks"]:
        lines.append(f"{t['bytes_per_job']:10.1f}  " + " <- ".join(reversed(t["frames"])))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--payload-bytes", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--interval", type=float, default=1.0, help="S3Polling interval")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--traced-jobs", type=int, default=None, help="jobs in the tracemalloc phase (--jobs)"
    )
    parser.add_argument("--frames", type=int, default=4, help="tracemalloc frames kept")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    if args.traced_jobs is None:
        args.traced_jobs = args.jobs
    report = asyncio.run(run(args))
    report_text = text(report)
    print(report_text)
    write_json(args.out, report)
    if args.out:
        Path(args.out).with_suffix(".txt").write_text(report_text + "\n")


if __name__ == "__main__":
    main()
