"""The ``aiosagemaker`` command: ``local``, ``invoke``, ``batch`` and ``demo``.

Exit status (every command):

====  =====================================================================================
0     success: every input completed
1     the command ran, and some inputs (or the one request) failed, were invalid or errored
2     usage: bad arguments, an unreadable input, a journal of another job, in use by another
      run or damaged, an input changed since the job started, OUTPUT in the way
3     AWS or configuration: no credentials or region, endpoint unreachable or not found;
      OUTPUT or the journal cannot be written (a full disk): a rerun resumes
130   interrupted (Ctrl-C / SIGTERM); a batch job says how to resume
====  =====================================================================================

Errors are one line on stderr (``aiosagemaker: error: ...``); ``--debug`` shows the traceback and
turns on our own debug logs (logger ``aiosagemaker``), which never carry payloads, credentials or
CustomAttributes. botocore's and aiobotocore's debug logs carry all three (request headers and
bodies), so only ``--debug-aws`` turns them on.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import mimetypes
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from aiosagemaker import __version__

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

    from aiosagemaker import PayloadTooLargeError
    from aiosagemaker.batch import Shard

from ._common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CliError,
    run_async,
)
from ._run_batch import resume_hint, run_batch_job, run_ray_batch_job

__all__ = ["main"]

logger = logging.getLogger("aiosagemaker")


# botocore's and aiobotocore's loggers: at DEBUG they log every request's headers (Authorization
# included) and body, so they are turned on by --debug-aws only, never inherited from the root.
_AWS_LOGGERS = ("botocore", "aiobotocore")


# --- the parser ------------------------------------------------------------------------------


def _aws_options(*, endpoint_url: bool = True) -> argparse.ArgumentParser:
    """The AWS and debug options of the commands that call AWS (``--endpoint-url``: those that
    invoke the runtime)."""
    parent = argparse.ArgumentParser(add_help=False)
    aws = parent.add_argument_group(
        "AWS", "also taken from the standard AWS_* environment variables and config files"
    )
    aws.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    aws.add_argument("--profile", help="named profile from the AWS config files (AWS_PROFILE)")
    if endpoint_url:
        aws.add_argument(
            "--endpoint-url",
            help="SageMaker runtime endpoint URL (default: AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME); "
            "S3 and SQS follow AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_SQS",
        )
    _debug_options(parent)
    return parent


def _debug_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks and aiosagemaker's debug logs (no payloads or credentials)",
    )
    parser.add_argument(
        "--debug-aws",
        action="store_true",
        help="as --debug, plus botocore's and aiobotocore's debug output, which logs request "
        "headers and bodies, credentials and payloads included: do not share it as it is",
    )


T = TypeVar("T", int, float)


def _number(parse: Callable[[str], T], minimum: T, what: str) -> Callable[[str], T]:
    """An argparse ``type`` that parses a number and refuses one below ``minimum``."""

    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return convert


_positive_int = _number(int, 1, "a positive integer")
_non_negative_float = _number(float, 0.0, "a number >= 0")
_positive_float = _number(float, 0.001, "a number >= 0.001")


def _shard(text: str) -> Shard:
    from aiosagemaker.batch import Shard

    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _watcher_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--watcher",
        choices=("s3", "sqs"),
        default="s3",
        help="how results are found: polling the S3 output prefix (default) or the SQS queue "
        "subscribed to the endpoint's notification topics",
    )
    parser.add_argument("--queue-url", help="the SQS queue for --watcher sqs")
    parser.add_argument(
        "--poll-interval",
        type=_non_negative_float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between S3 listings while results are pending (default 1)",
    )
    parser.add_argument(
        "--staging",
        metavar="S3_URI",
        help="s3://bucket/prefix/ where payloads over 128,000 bytes are uploaded "
        "(without it they are refused)",
    )
    parser.add_argument(
        "--staging-kms-key",
        metavar="KEY",
        help="encrypt staged payloads with this KMS key (SSE-KMS; default: the bucket's own "
        "encryption, SSE-S3 unless it says otherwise)",
    )
    parser.add_argument(
        "--expected-bucket-owner",
        metavar="ACCOUNT",
        help="the AWS account that must own every bucket this command reads or writes "
        "(sent as ExpectedBucketOwner on every S3 call)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Amazon SageMaker Asynchronous Inference from asyncio: one request, "
        "batch jobs, and a local stack to run them against.",
        epilog="exit status: 0 ok, 1 some inputs failed, 2 usage or bad input, "
        "3 AWS/configuration error, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    aws = _aws_options()

    local = commands.add_parser(
        "local",
        add_help=False,
        help="run a local SageMaker async endpoint with S3/SNS/SQS (see `local --help`)",
    )
    local.add_argument("local_args", nargs=argparse.REMAINDER)

    invoke = commands.add_parser(
        "invoke",
        parents=[aws],
        help="send one request (and, with --wait, print its output)",
        description="Send one InvokeEndpointAsync request. Prints the inference id and the "
        "output/failure locations as JSON, or with --wait the output itself.",
    )
    invoke.add_argument("endpoint", metavar="ENDPOINT")
    # Body and InputLocation are mutually exclusive in the API: argparse refuses both (exit 2).
    source = invoke.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data",
        "-d",
        help="the payload (sent as Body, or staged with --staging when over 128,000 bytes): "
        "literal text/JSON, @FILE to read a file, or @- for stdin",
    )
    source.add_argument(
        "--input-location",
        metavar="URI",
        help="InputLocation: an s3:// or https:// input already in place, sent instead of --data",
    )
    invoke.add_argument(
        "--content-type",
        help="ContentType (default with --data: application/json for JSON data, else guessed "
        "from the file name, else application/octet-stream)",
    )
    invoke.add_argument("--accept", help="Accept: the content type wanted from the model")
    invoke.add_argument("--inference-id", help="InferenceId (default: a random UUID)")
    invoke.add_argument(
        "--custom-attributes",
        metavar="TEXT",
        help="CustomAttributes passed to the model (up to 1024 ASCII characters; never logged)",
    )
    invoke.add_argument(
        "--request-ttl",
        type=int,
        metavar="SECONDS",
        help="RequestTTLSeconds: how long the request may wait in the endpoint's queue "
        "(60-21600; default 21600)",
    )
    invoke.add_argument(
        "--invocation-timeout",
        type=int,
        metavar="SECONDS",
        help="InvocationTimeoutSeconds: how long the model may take (1-3600; default 900)",
    )
    invoke.add_argument(
        "--output-path-extension",
        metavar="PATH",
        help="S3OutputPathExtension: a path added to the endpoint's S3 output path",
    )
    invoke.add_argument(
        "--filename", help="Filename: the name of the output object (up to 32 characters)"
    )
    invoke.add_argument("--wait", action="store_true", help="wait for the result and print it")
    invoke.add_argument(
        "--output", "-o", type=Path, help="with --wait: write the output here, not stdout"
    )
    invoke.add_argument(
        "--timeout",
        type=_non_negative_float,
        help="with --wait: seconds to wait (default: the request's TTL plus invocation timeout)",
    )
    _watcher_options(invoke)
    invoke.set_defaults(poll_interval=0.2)

    batch = commands.add_parser(
        "batch",
        parents=[aws],
        help="run every input of a file through an endpoint (resumable)",
        description="Send every input and write one JSON Lines record per input to OUTPUT. "
        "Resumable: rerun the same command after a crash, kill or Ctrl-C.",
    )
    batch.add_argument("endpoint", metavar="ENDPOINT")
    batch.add_argument(
        "input",
        metavar="INPUT",
        help="a JSON Lines file (.gz too), a Parquet file, a directory of files, - for stdin, or "
        "s3://bucket/key-or-prefix (its objects in key order)",
    )
    batch.add_argument(
        "-o",
        "--output",
        required=True,
        help="where the records go: a JSON Lines file; a .parquet directory of parts; or "
        "s3://bucket/prefix/ (numbered part objects, the journal in PREFIX/_journal/)",
    )
    batch.add_argument(
        "--output-format",
        choices=("jsonl", "parquet"),
        help="the records' format (default: parquet for a .parquet OUTPUT, else jsonl)",
    )
    batch.add_argument(
        "--part-records",
        type=_positive_int,
        default=50_000,
        metavar="N",
        help="parts (Parquet, s3://): records per part, at most (default 50000)",
    )
    batch.add_argument(
        "--part-seconds",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="parts: write a part once its first record is this old (default 60)",
    )
    batch.add_argument(
        "--payload-column",
        default="body",
        metavar="NAME",
        help="Parquet inputs: the column sent as the payload (default body)",
    )
    batch.add_argument(
        "--id-column",
        metavar="NAME",
        help="Parquet inputs: the column holding each input's id (default: its row number)",
    )
    batch.add_argument(
        "--concurrency",
        type=_positive_int,
        default=256,
        help="InvokeEndpointAsync calls in flight (default 256)",
    )
    batch.add_argument(
        "--max-pending",
        type=_positive_int,
        default=10_000,
        help="inputs started and not yet written (bounds memory; default 10000)",
    )
    _watcher_options(batch)
    batch.add_argument(
        "--content-type",
        help="content type of inputs that do not give one (default: application/json for "
        "JSON lines; guessed from the name for files in a directory)",
    )
    batch.add_argument("--journal", type=Path, help="the job's journal (default: OUTPUT.journal)")
    batch.add_argument(
        "--shard",
        type=_shard,
        metavar="i/N",
        help="process only the inputs whose id hashes to i modulo N (0 <= i < N)",
    )
    batch.add_argument(
        "--unordered",
        action="store_true",
        help="write results as they finish, not in input order",
    )
    batch.add_argument(
        "--inline-output-bytes",
        type=int,
        default=16_384,
        metavar="BYTES",
        help="copy outputs up to this size that are text or JSON into the record (default 16384)",
    )
    batch.add_argument(
        "--grace",
        type=_non_negative_float,
        default=30.0,
        metavar="SECONDS",
        help="on Ctrl-C, how long to wait for results of requests already sent (default 30)",
    )
    batch.add_argument("--request-ttl", type=int, metavar="SECONDS", help="RequestTTLSeconds")
    batch.add_argument(
        "--invocation-timeout", type=int, metavar="SECONDS", help="InvocationTimeoutSeconds"
    )
    batch.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new job although OUTPUT exists and has no journal",
    )
    batch.add_argument(
        "--no-fsync",
        action="store_true",
        help="do not fsync the journal (survives a process crash, not a power loss)",
    )
    batch.add_argument(
        "--no-progress", action="store_true", help="no progress bar or progress lines"
    )
    batch.add_argument(
        "--log-interval",
        type=_non_negative_float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between progress lines when stderr is not a terminal (default 5)",
    )
    batch.add_argument(
        "--summary-json", type=Path, metavar="PATH", help="also write the summary here as JSON"
    )
    batch.add_argument(
        "--ray",
        action="store_true",
        help="run the job on a Ray cluster, a local one by default (needs aiosagemaker[ray])",
    )
    batch.add_argument(
        "--ray-address", metavar="ADDR", help="with --ray: the Ray cluster to connect to"
    )
    batch.add_argument(
        "--actors",
        type=_positive_int,
        default=2,
        metavar="N",
        help="with --ray: actors, each with its own invoker; --concurrency and --max-pending "
        "are split across them (default 2)",
    )

    from ._bench import add_bench_parser

    add_bench_parser(commands, aws)

    from ._notifications import add_notifications_parser

    add_notifications_parser(commands, _aws_options(endpoint_url=False))

    demo = commands.add_parser(
        "demo",
        help="the main job on the embedded local stack: a batch with the SQS watcher",
        description="Start the local stack, run a batch of generated inputs (a few of them over "
        "the inline limit, staged to S3) with the SQS watcher, print the summary and check "
        "that every result came back exactly once.",
    )
    demo.add_argument("-n", type=_positive_int, default=5000, help="inputs (default 5000)")
    demo.add_argument(
        "--latency",
        type=_non_negative_float,
        default=0.05,
        metavar="SECONDS",
        help="the model's latency (default 0.05)",
    )
    demo.add_argument("--instances", type=_positive_int, default=4, help="default 4")
    demo.add_argument(
        "--max-concurrency", type=_positive_int, default=16, help="per instance (default 16)"
    )
    demo.add_argument("--concurrency", type=_positive_int, default=64, help="default 64")
    demo.add_argument(
        "--max-pending", type=_positive_int, default=512, help="the batch window (default 512)"
    )
    demo.add_argument(
        "--workdir", type=Path, default=Path(".demo"), help="inputs and results (default .demo)"
    )
    _debug_options(demo)
    return parser


# --- commands --------------------------------------------------------------------------------


def _run_local(argv: Sequence[str]) -> int:
    try:
        from aiosagemaker.local import add_arguments, run
    except ImportError as exc:
        raise CliError(
            f"the local stack needs moto's server: pip install 'aiosagemaker[local]' ({exc})",
            EXIT_CONFIG,
        ) from None
    parser = argparse.ArgumentParser(
        prog=f"{PROG} local",
        description="Run a local SageMaker async endpoint, with S3, SNS and SQS on moto's "
        "server, until Ctrl-C; print the environment a client needs.",
    )
    add_arguments(parser)
    local_args = parser.parse_args(argv)
    return asyncio.run(run(local_args))


def _read_data(data: str, content_type: str | None) -> tuple[bytes, str]:
    if data.startswith("@"):
        name = data[1:]
        try:
            body = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            raise CliError(
                f"cannot read --data {data}: {exc.strerror or exc}", EXIT_USAGE
            ) from None
        guessed = None if name == "-" else mimetypes.guess_type(name)[0]
        if content_type is None and guessed is None:
            guessed = "application/json" if _is_json(body) else "application/octet-stream"
        return body, content_type or guessed or "application/octet-stream"
    body = data.encode("utf-8", "surrogateescape")
    return body, content_type or ("application/json" if _is_json(body) else "text/plain")


def _payload_too_large(exc: PayloadTooLargeError) -> str:
    # The library's message names its own API (staging=S3Staging(...)); here it is a flag.
    return (
        f"payload is {exc.size:,} bytes, over the {exc.limit:,}-byte inline limit: pass "
        "--staging s3://bucket/prefix/ to upload it to S3 and send its location instead"
    )


def _is_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


async def _invoke(args: argparse.Namespace) -> int:
    from aiosagemaker import (
        AsyncInferenceError,
        AsyncInvoker,
        InferenceFailedError,
        InvalidRequestError,
        InvocationError,
        PayloadTooLargeError,
        ResultTimeoutError,
        S3Polling,
        S3Staging,
        SqsNotifications,
        Watcher,
    )
    from aiosagemaker.batch import is_config_error

    body: bytes | None = None
    content_type = args.content_type
    if args.data is not None:
        body, content_type = _read_data(args.data, args.content_type)
    watcher: Watcher | None = None
    if args.wait:
        if args.watcher == "sqs":
            if not args.queue_url:
                raise CliError("--watcher sqs needs --queue-url", EXIT_USAGE)
            watcher = SqsNotifications(
                queue_url=args.queue_url, expected_bucket_owner=args.expected_bucket_owner
            )
        else:
            watcher = S3Polling(
                interval=args.poll_interval, expected_bucket_owner=args.expected_bucket_owner
            )
    try:
        invoker = AsyncInvoker(
            args.endpoint,
            watcher=watcher,
            staging=S3Staging(
                args.staging,
                expected_bucket_owner=args.expected_bucket_owner,
                kms_key_id=args.staging_kms_key,
            )
            if args.staging
            else None,
            region_name=args.region,
            endpoint_url=args.endpoint_url,
            profile=args.profile,
        )
    except (InvalidRequestError, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    await _open_or_config_error(invoker.open())
    try:
        if body is not None:
            logger.debug(
                "sending a %d-byte %s payload to %s", len(body), content_type, args.endpoint
            )
        else:
            logger.debug("sending input %s to %s", args.input_location, args.endpoint)
        try:
            # submit() returns once the job is admitted and sends it in the background: the
            # endpoint's answer (the 202, or why it refused) comes from accepted().
            job = await invoker.submit(
                body,
                input_location=args.input_location,
                content_type=content_type,
                accept=args.accept,
                inference_id=args.inference_id,
                custom_attributes=args.custom_attributes,
                request_ttl=args.request_ttl,
                invocation_timeout=args.invocation_timeout,
                output_path_extension=args.output_path_extension,
                filename=args.filename,
            )
            accepted = await job.accepted()
        except PayloadTooLargeError as exc:
            raise CliError(_payload_too_large(exc), EXIT_USAGE) from None
        except InvalidRequestError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
        except AsyncInferenceError as exc:
            config = isinstance(exc, InvocationError) and is_config_error(exc)
            raise CliError(str(exc), EXIT_CONFIG if config else EXIT_FAILED) from None
        logger.debug(
            "inference %s accepted after %d attempt(s); output %s",
            accepted.inference_id,
            accepted.attempts,
            accepted.output_location,
        )
        if not args.wait:
            # The job holds the 202's locations once accepted() has returned.
            sys.stdout.buffer.write(orjson.dumps(job.record(), option=orjson.OPT_INDENT_2) + b"\n")
            return EXIT_OK
        try:
            result = await job.result(timeout=args.timeout)
        except InferenceFailedError as exc:
            raise CliError(str(exc), EXIT_FAILED) from None
        except ResultTimeoutError as exc:
            raise CliError(
                f"{exc}; the output will be at {job.output_location}", EXIT_FAILED
            ) from None
        except AsyncInferenceError as exc:
            raise CliError(str(exc), EXIT_FAILED) from None
        output = result.body or b""
        if args.output is not None:
            args.output.write_bytes(output)
            print(f"wrote {len(output):,} bytes to {args.output}", file=sys.stderr)
        else:
            sys.stdout.buffer.write(output)
            if output and not output.endswith(b"\n") and sys.stdout.isatty():
                sys.stdout.buffer.write(b"\n")
            sys.stdout.flush()
        return EXIT_OK
    finally:
        await invoker.aclose()


async def _open_or_config_error(opening: Coroutine[Any, Any, None]) -> None:
    from aiosagemaker import AsyncInferenceError

    try:
        await opening
    except (AsyncInferenceError, OSError) as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    except Exception as exc:  # botocore: no region, unknown profile, bad endpoint URL ...
        raise CliError(f"{type(exc).__name__}: {exc}", EXIT_CONFIG) from None


async def _batch(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from rich.console import Console

    from aiosagemaker.batch import BatchJob, BatchOptions, BatchUsageError

    console = Console(stderr=True)
    options = BatchOptions(
        endpoint=args.endpoint,
        input=args.input,
        output=args.output,
        journal=args.journal,
        concurrency=args.concurrency,
        max_pending=args.max_pending,
        watcher=args.watcher,
        queue_url=args.queue_url,
        poll_interval=args.poll_interval,
        staging=args.staging,
        staging_kms_key=args.staging_kms_key,
        expected_bucket_owner=args.expected_bucket_owner,
        output_format=args.output_format,
        part_records=args.part_records,
        part_seconds=args.part_seconds,
        payload_column=args.payload_column,
        id_column=args.id_column,
        content_type=args.content_type,
        shard=args.shard,
        ordered=not args.unordered,
        inline_output_bytes=args.inline_output_bytes,
        grace=args.grace,
        request_ttl=args.request_ttl,
        invocation_timeout=args.invocation_timeout,
        overwrite=args.overwrite,
        fsync=not args.no_fsync,
        region=args.region,
        profile=args.profile,
        endpoint_url=args.endpoint_url,
    )
    if args.ray:
        return await run_ray_batch_job(
            options,
            console,
            actors=args.actors,
            address=args.ray_address,
            progress=False if args.no_progress else None,
            log_interval=0.0 if args.no_progress else args.log_interval,
            summary_json=args.summary_json,
            resume_hint=resume_hint(argv),
        )
    try:
        job = BatchJob(
            options,
            console=console,
            progress=False if args.no_progress else None,
            log_interval=0.0 if args.no_progress else args.log_interval,
        )
    except BatchUsageError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return await run_batch_job(
        job, console, summary_json=args.summary_json, resume_hint=resume_hint(argv)
    )


async def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return await run_demo(
        args.n,
        latency=args.latency,
        instances=args.instances,
        max_concurrency=args.max_concurrency,
        concurrency=args.concurrency,
        max_pending=args.max_pending,
        workdir=args.workdir,
    )


# --- entry point -----------------------------------------------------------------------------


class _StderrHandler(logging.Handler):
    """Writes each record to ``sys.stderr`` as it is *then*: rich's live progress bar swaps it for
    a proxy that prints lines above the bar, where a handler bound at start would tear the bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def _configure_logging(*, debug: bool, debug_aws: bool) -> None:
    """Warnings by default; our own debug logs with ``debug``; AWS wire logs with ``debug_aws``."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    # A no-op when the root already has handlers (an application that calls main(), pytest).
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    # Our warnings are for the user (an unreadable journal line, duplicate input ids ...).
    logging.getLogger("aiosagemaker").setLevel(logging.DEBUG if debug else logging.WARNING)
    for name in _AWS_LOGGERS:
        # Set, not inherited: a root logger at DEBUG would otherwise let the wire logs through.
        logging.getLogger(name).setLevel(logging.DEBUG if debug_aws else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aiosagemaker`` command; return its exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["local"]:
        # The local stack's own parser takes the rest (argparse's REMAINDER would not take --help).
        try:
            return _run_local(words[1:])
        except SystemExit as exc:
            return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
        except CliError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return exc.status
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    parser = build_parser()
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    debug_aws = bool(getattr(args, "debug_aws", False))
    debug = debug_aws or getattr(args, "debug", False) or bool(os.environ.get("AIOSAGEMAKER_DEBUG"))
    _configure_logging(debug=debug, debug_aws=debug_aws)
    try:
        if args.command == "invoke":
            return run_async(_invoke(args))
        if args.command == "batch":
            return run_async(_batch(args, argv))
        if args.command == "bench":
            from ._bench import run_bench

            return run_async(run_bench(args))
        if args.command == "demo":
            return run_async(_demo(args))
        if args.command == "notifications":
            from ._notifications import run_notifications

            return run_async(run_notifications(args))
        raise AssertionError(args.command)
    except CliError as exc:
        if debug and exc.__context__ is not None:
            # CliError is raised "from None" to keep the line short; --debug shows what was behind.
            traceback.print_exception(exc.__context__)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        print(
            f"{PROG}: error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
