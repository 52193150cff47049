"""``aiosagemaker demo``: the main job, end to end, on the embedded local stack.

Starts the local stack (a model with a realistic latency on a few instances), writes N generated
inputs (inline payloads, plus a few over the 128,000-byte inline limit that are staged to S3),
runs them as a batch job with the SQS watcher, prints the summary, and checks that every result
came back exactly once: one record per input, unique input ids, and on the server each inference
id accepted exactly once. Then stops the stack.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["run_demo", "write_demo_inputs"]

#: over-limit payloads in a demo: a few, to show staging without dominating the run
_MAX_BIG = 5
_BIG_SIZE = 130_000
_ENDPOINT = "demo-endpoint"


def write_demo_inputs(path: Path, n: int) -> int:
    """Write ``n`` JSON Lines inputs to ``path``; return how many are over the inline limit."""
    big = min(n, _MAX_BIG, max(1, n // 1000))
    every = max(1, n // big)
    placed = 0
    with open(path, "wb") as f:
        for i in range(1, n + 1):
            value: Any
            if placed < big and i % every == 0:
                placed += 1
                value = {"id": f"big-{i}", "body": "x" * _BIG_SIZE, "content_type": "text/plain"}
            elif i % 2 == 0:
                value = {"id": f"req-{i:07d}", "body": {"inputs": f"sentence number {i}"}}
            else:
                value = {"inputs": f"sentence number {i}", "parameters": {"max_new_tokens": 16}}
            f.write(orjson.dumps(value) + b"\n")
    return placed


def _prepare_workdir(workdir: Path, n: int) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("results.jsonl", "results.jsonl.journal"):
        (workdir / stale).unlink(missing_ok=True)
    return write_demo_inputs(workdir / "inputs.jsonl", n)


def _read_records(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for line in f:
            yield orjson.loads(line)


async def run_demo(
    n: int,
    *,
    latency: float = 0.05,
    instances: int = 4,
    max_concurrency: int = 16,
    concurrency: int = 64,
    max_pending: int = 512,
    workdir: Path = Path(".demo"),
    console: Console | None = None,
) -> int:
    """Run the demo; return the exit status (0 when every check passed)."""
    from aiosagemaker.batch import BatchJob, BatchOptions
    from aiosagemaker.local import open_local_stack

    from ._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, aws_environment
    from ._run_batch import run_batch_job

    console = console or Console(stderr=False)
    inputs, output = workdir / "inputs.jsonl", workdir / "results.jsonl"
    journal = workdir / "results.jsonl.journal"
    big = await asyncio.to_thread(_prepare_workdir, workdir, n)
    console.print(
        f"[bold]aiosagemaker demo[/]: {n:,} inputs ({big} over the 128,000-byte inline limit, "
        f"staged to S3) in {inputs}",
        highlight=False,
    )
    console.print(
        f"starting the local stack: model sleep:{latency:g} on {instances} instances x "
        f"{max_concurrency} concurrent invocations ...",
        highlight=False,
    )
    started = time.monotonic()
    async with open_local_stack(
        model=f"sleep:{latency:g}",
        instances=instances,
        max_concurrency=max_concurrency,
        endpoints=(_ENDPOINT,),
        # Outputs ride in the notifications (as SageMaker's can, up to 128 KB): no GET per result.
        include_response=True,
        # Raw delivery (an SNS subscription option): smaller messages, cheaper for moto's SQS.
        raw_delivery=True,
    ) as stack:
        info = stack.info
        endpoint = info.endpoint(_ENDPOINT)
        console.print(
            f"local stack up in {time.monotonic() - started:.1f} s: runtime "
            f"{info.sagemaker_runtime_url}, S3/SNS/SQS {info.s3_url}",
            highlight=False,
        )
        options = BatchOptions(
            endpoint=endpoint.name,
            input=str(inputs),
            output=output,
            journal=journal,
            concurrency=concurrency,
            # moto's SQS scans the whole queue on every call: a window of a few hundred jobs keeps
            # the queue shallow, which is what keeps it fast (1,000+ and it slows to a crawl).
            max_pending=max_pending,
            watcher="sqs",
            queue_url=endpoint.queue_url,
            staging=f"s3://{info.bucket}/demo-staging/",
        )
        with aws_environment(stack.env()):
            job = BatchJob(options, console=Console(stderr=True))
            status = await run_batch_job(
                job,
                console,
                summary_json=None,
                resume_hint="aiosagemaker demo (a new run: the demo's local stack is gone)",
                title=f"demo: {n:,} inputs, SQS watcher",
            )
        if status not in (EXIT_OK, EXIT_FAILED):
            return status if status != EXIT_INTERRUPTED else EXIT_INTERRUPTED
        server = await stack.stats(endpoint.name)
        ok = _check(console, output, n, big, server, job.stats.staged)
    console.print(
        f"stack stopped; total {time.monotonic() - started:.1f} s; results in {output}",
        highlight=False,
    )
    return EXIT_OK if ok and status == EXIT_OK else EXIT_FAILED


def _check(
    console: Console, output: Path, n: int, big: int, server: dict[str, Any], staged: int
) -> bool:
    """Every result exactly once: records, ids, statuses, and the server's accept counts."""
    records = 0
    ids: set[str] = set()
    inference_ids: list[str] = []
    not_completed = 0
    for record in _read_records(output):
        records += 1
        ids.add(record["id"])
        if record["inference_id"]:
            inference_ids.append(record["inference_id"])
        if record["status"] != "completed":
            not_completed += 1
    accepted_by_id: dict[str, int] = server.get("accepted_by_id", {})
    repeats = sum(1 for count in accepted_by_id.values() if count != 1)
    ours = sum(1 for i in inference_ids if accepted_by_id.get(i) == 1)
    checks = [
        (records == n, f"{records:,} records in OUTPUT for {n:,} inputs"),
        (len(ids) == records, f"{len(ids):,} unique input ids"),
        (not_completed == 0, f"{records - not_completed:,} completed, {not_completed:,} not"),
        (
            len(inference_ids) == n and len(set(inference_ids)) == n,
            f"{len(set(inference_ids)):,} unique inference ids",
        ),
        (
            ours == n and repeats == 0 and len(accepted_by_id) == n,
            f"server accepted {len(accepted_by_id):,} inference ids, each exactly once "
            f"({repeats} accepted more than once)",
        ),
        (staged == big, f"{staged} payloads staged to S3 ({big} over the inline limit)"),
    ]
    console.print("[bold]exactly-once check[/]")
    for passed, text in checks:
        mark = "[green]✓[/]" if passed else "[red]✗[/]"
        console.print(f"  {mark} {text}", highlight=False)
    ok = all(passed for passed, _ in checks)
    console.print(
        "[bold green]every result came back exactly once[/]" if ok else "[bold red]check failed[/]"
    )
    return ok
