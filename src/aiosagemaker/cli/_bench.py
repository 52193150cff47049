"""``aiosagemaker bench``: a load test of an async endpoint, open loop, timed from each request's
due time (see :mod:`aiosagemaker.bench`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from ._common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, aws_environment

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from aiosagemaker import InferenceJob
    from aiosagemaker.bench import LoadPlan, RunResult, Threshold

__all__ = ["add_bench_parser", "run_bench"]

_LOCAL_ENDPOINT = "bench-endpoint"


def add_bench_parser(commands: Any, aws: argparse.ArgumentParser) -> None:
    bench = commands.add_parser(
        "bench",
        parents=[aws],
        help="load-test an endpoint: open loop, latency from each request's due time",
        description="Send requests on a schedule (--rate, --stages) or from closed-loop workers "
        "(--concurrency) and report submit and end-to-end latency percentiles. Latency runs from "
        "when each request was due, so a stall shows in every request scheduled during it.",
        epilog="exit status: 0 every --threshold held, 1 one failed, 2 usage, 3 AWS/configuration",
    )
    bench.add_argument("endpoint", metavar="ENDPOINT", nargs="?", help="(not with --local)")
    load = bench.add_mutually_exclusive_group(required=True)
    load.add_argument("--rate", type=float, help="open loop: requests per second")
    load.add_argument(
        "--stages",
        metavar="D:R,...",
        help="open loop: ramp linearly to each rate over each duration, e.g. 30s:100,60s:500,30s:0",
    )
    load.add_argument(
        "--concurrency", type=int, help="closed loop: workers, each sending when its last is done"
    )
    bench.add_argument(
        "--start-rate", type=float, default=0.0, help="--stages: the rate at time 0 (default 0)"
    )
    bench.add_argument("--duration", help="how long to send (30s, 2m); default: the stages'")
    bench.add_argument("--requests", type=int, help="send this many requests, at most")
    bench.add_argument(
        "--max-in-flight",
        type=int,
        default=1000,
        help="InvokeEndpointAsync calls in flight, at most (default 1000)",
    )
    bench.add_argument(
        "--max-lateness",
        default="1s",
        help="drop a request not started this long after its due time (default 1s)",
    )
    bench.add_argument(
        "--warmup", default="0s", help="leave requests due this early out of the histograms"
    )
    bench.add_argument(
        "--drain",
        default="30s",
        help="after the schedule, wait this long for outstanding results (default 30s); the "
        "rest are recorded at the drain's end and counted unfinished",
    )
    bench.add_argument("--payload", type=Path, help="send this file's bytes")
    bench.add_argument(
        "--payload-size", type=int, default=1024, help="else a JSON payload of this many bytes"
    )
    bench.add_argument("--content-type", default="application/json")
    bench.add_argument(
        "--mode",
        choices=("inline", "s3", "both"),
        default="inline",
        help="inline Body (default); or upload to --staging then send InputLocation (the "
        "upload counts in the submit latency); or both, one after the other on the same "
        "schedule and payload, and their ratios",
    )
    bench.add_argument(
        "--processes",
        type=int,
        default=1,
        help="load-generating processes (one saturates a core): the rate, concurrency and "
        "in-flight limit are split between them and their histograms merged exactly",
    )
    # A child of --processes: add the encoded histograms to the report, for the parent.
    bench.add_argument("--emit-histograms", action="store_true", help=argparse.SUPPRESS)
    bench.add_argument("--staging", metavar="S3_URI", help="--mode s3: where payloads go")
    bench.add_argument(
        "--watcher",
        choices=("s3", "sqs", "none"),
        default="none",
        help="wait for results (end-to-end latency): S3 polling, the SQS queue, or not (default)",
    )
    bench.add_argument("--queue-url", help="--watcher sqs: the queue")
    bench.add_argument(
        "--poll-interval", type=float, default=0.1, help="--watcher s3: seconds between listings"
    )
    bench.add_argument("--retries", type=int, default=0, help="retries per request (default 0)")
    bench.add_argument(
        "--adaptive", action="store_true", help="adapt concurrency to throttling (AIMD; off)"
    )
    bench.add_argument(
        "--threshold",
        action="append",
        default=[],
        help="a pass/fail criterion, repeatable: 'submit.p99<50ms', 'e2e.p999<30s', "
        "'errors<0.1%%', 'achieved_rate>=0.98*target'",
    )
    bench.add_argument("--report", type=Path, help="write the JSON report here")
    bench.add_argument("--raw", type=Path, help="write one JSON line per request here")
    bench.add_argument(
        "--plot",
        type=Path,
        help="draw latency over time, the percentile spectrum and the achieved rate to this PNG "
        "(needs the plot extra)",
    )
    bench.add_argument(
        "--local",
        action="store_true",
        help="start the embedded local stack and load-test an endpoint on it",
    )
    bench.add_argument(
        "--local-model", default="echo", help="--local: the model (default echo; e.g. sleep:0.5)"
    )
    bench.add_argument(
        "--local-instances", type=int, default=2, help="--local: instances (default 2)"
    )
    bench.add_argument(
        "--local-concurrency",
        type=int,
        default=64,
        help="--local: concurrent invocations per instance (default 64)",
    )
    bench.add_argument("--quiet", action="store_true", help="no live line")


def _plan(args: argparse.Namespace) -> tuple[LoadPlan, list[Threshold]]:
    from aiosagemaker.bench import LoadPlan, Stage, parse_duration, parse_stages, parse_threshold

    try:
        duration = None if args.duration is None else parse_duration(args.duration)
        stages = None
        if args.rate is not None:
            if args.rate <= 0:
                raise ValueError("--rate must be above 0")
            if duration is None and args.requests is None:
                raise ValueError("--rate needs --duration or --requests")
            span = duration if duration is not None else args.requests / args.rate + 1.0
            stages = [Stage(span, args.rate)]
            start_rate = args.rate
        elif args.stages is not None:
            stages = parse_stages(args.stages)
            start_rate = args.start_rate
        else:
            if args.concurrency < 1:
                raise ValueError("--concurrency must be at least 1")
            if duration is None and args.requests is None:
                raise ValueError("--concurrency needs --duration or --requests")
            start_rate = 0.0
        if args.max_in_flight < 1:
            raise ValueError("--max-in-flight must be at least 1")
        plan = LoadPlan(
            stages=stages,
            start_rate=start_rate,
            concurrency=args.concurrency,
            duration=duration,
            requests=args.requests,
            max_in_flight=args.max_in_flight,
            max_lateness=parse_duration(args.max_lateness),
            warmup=parse_duration(args.warmup),
            drain=parse_duration(args.drain),
            watch=args.watcher != "none",
        )
        thresholds = [parse_threshold(t) for t in args.threshold]
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if args.watcher == "sqs" and not args.queue_url and not args.local:
        raise CliError("--watcher sqs needs --queue-url", EXIT_USAGE)
    if args.mode != "inline" and not args.staging and not args.local:
        raise CliError(f"--mode {args.mode} needs --staging s3://bucket/prefix/", EXIT_USAGE)
    if args.processes < 1:
        raise CliError("--processes must be at least 1", EXIT_USAGE)
    if args.processes > 1 and args.watcher == "sqs":
        raise CliError(
            "--processes with --watcher sqs: the processes would take each other's "
            "notifications from the one queue; use --watcher s3 (each process polls for its "
            "own requests' outputs only)",
            EXIT_USAGE,
        )
    if (args.raw is not None or args.plot is not None) and (
        args.processes > 1 or args.mode == "both"
    ):
        raise CliError(
            "--raw and --plot take the requests of one run in one process: --processes 1, "
            "--mode inline or s3",
            EXIT_USAGE,
        )
    if not args.local and not args.endpoint:
        raise CliError("give ENDPOINT, or --local", EXIT_USAGE)
    return plan, thresholds


def _payload(args: argparse.Namespace) -> bytes:
    if args.payload is not None:
        path: Path = args.payload
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read --payload: {exc}", EXIT_USAGE) from None
    size = max(int(args.payload_size), 12)
    return b'{"pad":"' + b"x" * (size - 10) + b'"}'


async def run_bench(args: argparse.Namespace) -> int:
    plan, thresholds = _plan(args)
    payload = _payload(args)
    modes = ("inline", "s3") if args.mode == "both" else (args.mode,)
    reports: dict[str, dict[str, Any]] = {}
    async with _target(args) as (endpoint, staging, queue_url):
        for mode in modes:
            if args.processes > 1:
                reports[mode] = await _run_processes(args, plan, payload, mode, endpoint, staging)
            else:
                reports[mode] = await _run(args, plan, payload, endpoint, staging, queue_url, mode)
    report = reports[modes[0]]
    verdicts = [t.check(report) for t in thresholds]
    if len(modes) == 2:
        other = reports["s3"]
        verdicts += [{**t.check(other), "run": "s3"} for t in thresholds]
        report = {**report, "comparison": {"s3": other, "ratios": _ratios(report, other)}}
    report["thresholds"] = verdicts
    _print_summary(report)
    if len(modes) == 2:
        _print_summary(report["comparison"]["s3"], title="S3 upload then InputLocation")
        _print_ratios(report["comparison"]["ratios"])
    if args.report is not None:
        data = orjson.dumps(report, option=orjson.OPT_INDENT_2)
        await asyncio.to_thread(args.report.write_bytes, data)
    return EXIT_OK if all(v["ok"] for v in verdicts) else EXIT_FAILED


@contextlib.asynccontextmanager
async def _target(
    args: argparse.Namespace,
) -> AsyncIterator[tuple[str, str | None, str | None]]:
    """The endpoint, staging location and queue to use: the user's, or a local stack's."""
    if not args.local:
        yield args.endpoint, args.staging, args.queue_url
        return
    try:
        from aiosagemaker.local import open_local_stack
    except ImportError:
        raise CliError(
            "--local needs the local stack: pip install 'aiosagemaker[local]'", EXIT_USAGE
        ) from None
    async with open_local_stack(
        model=args.local_model,
        instances=args.local_instances,
        max_concurrency=args.local_concurrency,
        endpoints=(),
        raw_delivery=True,
        include_response=True,
    ) as stack:
        info = stack.info
        # Notifications only for the SQS watcher: nothing else drains the queue, and moto's SQS
        # (which the endpoint publishes to through SNS) slows as a queue deepens.
        endpoint = await stack.create_endpoint(_LOCAL_ENDPOINT, notifications=args.watcher == "sqs")
        with aws_environment(stack.env()):
            yield (
                endpoint.name,
                args.staging or f"s3://{info.bucket}/bench-staging/",
                args.queue_url or endpoint.queue_url,
            )


async def _run(
    args: argparse.Namespace,
    plan: LoadPlan,
    payload: bytes,
    endpoint: str,
    staging: str | None,
    queue_url: str | None,
    mode: str,
) -> dict[str, Any]:
    from aiosagemaker import (
        AsyncInferenceError,
        AsyncInvoker,
        AwsContext,
        InvalidRequestError,
        Limits,
        RetryPolicy,
        S3Polling,
        SqsNotifications,
        Watcher,
    )
    from aiosagemaker.bench import LoadRun, report_of

    watcher: Watcher | None = None
    if args.watcher == "s3":
        watcher = S3Polling(interval=args.poll_interval)
    elif args.watcher == "sqs":
        assert queue_url is not None  # _plan() refused --watcher sqs without a queue
        watcher = SqsNotifications(queue_url=queue_url)
    try:
        invoker = AsyncInvoker(
            endpoint,
            limits=Limits(
                max_concurrent_invocations=args.max_in_flight,
                max_pending=max(10_000, 4 * args.max_in_flight),
                adaptive=args.adaptive,
            ),
            retry=RetryPolicy(max_attempts=1 + max(0, args.retries)),
            watcher=watcher,
            region_name=args.region,
            endpoint_url=args.endpoint_url,
            profile=args.profile,
        )
    except (InvalidRequestError, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    aws = AwsContext(region_name=args.region, profile=args.profile)
    raw: IO[bytes] | None = None
    try:
        try:
            await invoker.open()
            submit = await _submitter(args, invoker, aws, payload, staging, mode)
        except (AsyncInferenceError, OSError) as exc:
            raise CliError(str(exc), EXIT_CONFIG) from None
        except CliError:
            raise
        except Exception as exc:  # botocore: no region, unknown profile, bad endpoint URL ...
            raise CliError(f"{type(exc).__name__}: {exc}", EXIT_CONFIG) from None
        raw_path = args.raw
        if raw_path is None and args.plot is not None:
            raw_path = args.plot.with_suffix(".raw.jsonl.tmp")
        if raw_path is not None:
            raw = open(raw_path, "wb")  # noqa: SIM115, ASYNC230 - buffered; closed below
        run = LoadRun(plan, submit, raw=raw, on_tick=None if args.quiet else _live_line)
        started = time.time()
        result = await run.run()
    finally:
        if raw is not None:
            raw.close()
        # What is still in flight was counted unfinished: close at once, not after the invoke
        # timeout of a hung endpoint (a cancelled close still releases everything).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(invoker.aclose(), timeout=1.0)
        await aws.aclose()
    settings = _settings(args, plan, payload, endpoint, started, mode)
    report = report_of(result, plan, settings, histograms=args.emit_histograms)
    if args.plot is not None:
        await _plot(args, raw_path, report)
    return report


async def _plot(args: argparse.Namespace, raw: Path, report: dict[str, Any]) -> None:
    from aiosagemaker.bench import PlotUnavailableError, plot_run

    title = (
        f"{report['settings']['endpoint']}: {report['mode']} loop, {report['sent']:,} requests, "
        f"{report['settings']['submission']}, {report['settings']['payload_bytes']:,} B"
    )
    try:
        await asyncio.to_thread(
            plot_run, raw, args.plot, title=title, target_rate=report["target_rate"]
        )
    except PlotUnavailableError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    finally:
        if args.raw is None:
            await asyncio.to_thread(raw.unlink, missing_ok=True)


async def _submitter(
    args: argparse.Namespace,
    invoker: Any,
    aws: Any,
    payload: bytes,
    staging: str | None,
    mode: str,
) -> Callable[[], Awaitable[InferenceJob]]:
    content_type = args.content_type
    if mode == "inline":

        def inline() -> Awaitable[InferenceJob]:
            result: Awaitable[InferenceJob] = invoker.submit(payload, content_type=content_type)
            return result

        return inline
    from aiosagemaker import parse_s3_uri

    assert staging is not None
    location = parse_s3_uri(staging if staging.endswith("/") else staging + "/", field="staging")
    s3 = await aws.client("s3", pool=max(32, args.max_in_flight))

    async def uploaded() -> InferenceJob:
        key = location.join(f"bench-{uuid.uuid4().hex}")
        await s3.put_object(Bucket=key.bucket, Key=key.key, Body=payload, ContentType=content_type)
        job: InferenceJob = await invoker.submit(input_location=str(key), content_type=content_type)
        return job

    return uploaded


def _settings(
    args: argparse.Namespace,
    plan: LoadPlan,
    payload: bytes,
    endpoint: str,
    started: float,
    mode: str,
) -> dict[str, Any]:
    from aiosagemaker import __version__

    return {
        "endpoint": endpoint,
        "local": bool(args.local),
        "submission": mode,
        "processes": args.processes,
        "watcher": args.watcher,
        "payload_bytes": len(payload),
        "rate": args.rate,
        "stages": args.stages,
        "concurrency": args.concurrency,
        "duration_s": plan.schedule_seconds,
        "requests": args.requests,
        "max_in_flight": plan.max_in_flight,
        "max_lateness_s": plan.max_lateness,
        "warmup_s": plan.warmup,
        "drain_s": plan.drain,
        "retries": args.retries,
        "adaptive": bool(args.adaptive),
        "started": started,
        "versions": {"aiosagemaker": __version__, "python": platform.python_version()},
        "machine": {
            "system": platform.system(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "node": platform.node(),
        },
    }


async def _run_processes(
    args: argparse.Namespace,
    plan: LoadPlan,
    payload: bytes,
    mode: str,
    endpoint: str,
    staging: str | None,
) -> dict[str, Any]:
    """Run the plan in ``--processes`` children, each a share of it, and merge their results
    exactly (counts add up, HDR histograms merge)."""
    import tempfile

    from aiosagemaker.bench import report_of, result_from_report

    share = args.processes
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="aiosagemaker-bench-") as workdir:
        reports = [Path(workdir) / f"report-{i}.json" for i in range(share)]
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "aiosagemaker.cli",
                "bench",
                *_child_args(args, mode, endpoint, staging, i, report),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            for i, report in enumerate(reports)
        ]
        outcomes = await asyncio.gather(*(child.communicate() for child in children))
        for child, (_, err) in zip(children, outcomes, strict=True):
            if child.returncode not in (EXIT_OK, EXIT_FAILED):
                raise CliError(
                    f"a load process failed (exit {child.returncode}): "
                    f"{err.decode(errors='replace').strip()[-2000:]}",
                    child.returncode or EXIT_CONFIG,
                )
        merged = None
        for path in reports:
            part = result_from_report(orjson.loads(path.read_bytes()))
            if merged is None:
                merged = part
            else:
                merged.merge(part)
    assert merged is not None
    settings = _settings(args, plan, payload, endpoint, started, mode)
    return report_of(merged, plan, settings)


def _child_args(
    args: argparse.Namespace,
    mode: str,
    endpoint: str,
    staging: str | None,
    index: int,
    report: Path,
) -> list[str]:
    """One child's share of the load: rates, workers, requests and in-flight limit split."""
    share = args.processes
    out = [endpoint, "--report", str(report), "--emit-histograms", "--quiet", "--mode", mode]
    if args.rate is not None:
        out += ["--rate", repr(args.rate / share)]
    elif args.stages is not None:
        from aiosagemaker.bench import parse_stages

        stages = ",".join(
            f"{s.duration!r}s:{s.target / share!r}" for s in parse_stages(args.stages)
        )
        out += ["--stages", stages, "--start-rate", repr(args.start_rate / share)]
    else:
        out += [
            "--concurrency",
            str(max(1, args.concurrency // share + (index < args.concurrency % share))),
        ]
    if args.duration is not None:
        out += ["--duration", args.duration]
    if args.requests is not None:
        out += ["--requests", str(args.requests // share + (index < args.requests % share))]
    out += ["--max-in-flight", str(max(1, args.max_in_flight // share))]
    out += ["--max-lateness", args.max_lateness, "--warmup", args.warmup, "--drain", args.drain]
    if args.payload is not None:
        out += ["--payload", str(args.payload)]
    out += ["--payload-size", str(args.payload_size), "--content-type", args.content_type]
    if staging is not None:
        out += ["--staging", staging]
    out += ["--watcher", args.watcher, "--poll-interval", repr(args.poll_interval)]
    out += ["--retries", str(args.retries)]
    if args.adaptive:
        out.append("--adaptive")
    for flag, value in (
        ("--region", args.region),
        ("--profile", args.profile),
        ("--endpoint-url", args.endpoint_url),
    ):
        if value:
            out += [flag, value]
    return out


_RATIO_KEYS = (
    ("submit_p50", "submit_latency_ms", "p50"),
    ("submit_p99", "submit_latency_ms", "p99"),
    ("e2e_p50", "end_to_end_latency_ms", "p50"),
    ("e2e_p99", "end_to_end_latency_ms", "p99"),
)


def _ratios(inline: dict[str, Any], s3: dict[str, Any]) -> dict[str, float | None]:
    """S3 upload over inline: > 1 where inline is faster (latencies) or higher (throughput)."""
    out: dict[str, float | None] = {}
    for name, key, stat in _RATIO_KEYS:
        a = (inline.get(key) or {}).get(stat)
        b = (s3.get(key) or {}).get(stat)
        out[name] = round(b / a, 3) if a and b is not None else None
    a, b = inline["achieved_rate"], s3["achieved_rate"]
    out["throughput_inline_over_s3"] = round(a / b, 3) if b else None
    return out


def _print_ratios(ratios: dict[str, float | None]) -> None:
    shown = ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items() if v is not None)
    print(f"S3 upload vs inline (S3 / inline latency; inline / S3 throughput): {shown}")


def _live_line(result: RunResult, elapsed: float, in_flight: int) -> None:
    p50 = result.submit.percentile_ms(50.0)
    p99 = result.submit.percentile_ms(99.0)
    rate = result.sent / elapsed if elapsed > 0 else 0.0
    errors = sum(result.errors.values())
    print(
        f"{elapsed:6.1f} s  sent {result.sent:,}  {rate:,.0f}/s  in flight {in_flight:,}  "
        f"submit p50 {_ms(p50)} p99 {_ms(p99)}  errors {errors:,}",
        file=sys.stderr,
        flush=True,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def _print_summary(report: dict[str, Any], *, title: str | None = None) -> None:
    out = sys.stdout
    if title is not None:
        print(f"-- {title}", file=out)
    target = report["target_rate"]
    print(
        f"{report['mode']} loop: {report['sent']:,} sent of {report['due']:,} due, "
        f"achieved {report['achieved_rate']:,.1f}/s"
        + (f" (target {target:,.1f}/s)" if target else " (closed loop: peak throughput)"),
        file=out,
    )
    print(
        f"late {report['late']:,}, dropped {report['dropped']:,}, unfinished "
        f"{report['unfinished']:,}, throttled {report['throttled']:,}, errors "
        f"{sum(report['errors'].values()):,} {report['errors'] or ''}",
        file=out,
    )
    for name, key in (
        ("submit", "submit_latency_ms"),
        ("end to end", "end_to_end_latency_ms"),
        ("service", "service_time_ms"),
        ("notified", "notification_lag_ms"),
        ("fetch", "output_fetch_ms"),
    ):
        lat = report[key]
        if lat is None:
            continue
        print(
            f"{name:>10}: p50 {_ms(lat['p50'])}  p90 {_ms(lat['p90'])}  p99 {_ms(lat['p99'])}  "
            f"p99.9 {_ms(lat['p999'])}  max {_ms(lat['max'])}  ({lat['count']:,})",
            file=out,
        )
    for verdict in report.get("thresholds", ()):
        mark = "ok  " if verdict["ok"] else "FAIL"
        run = f" [{verdict['run']}]" if "run" in verdict else ""
        print(f"{mark} {verdict['threshold']}{run} (value {verdict['value']})", file=out)
