"""``python -m aiosagemaker.local`` (and ``aiosagemaker local``): run the local stack until stopped.

Starts moto's server (S3, SNS, SQS, and SageMaker's control plane) in a child process and the
SageMaker async runtime endpoint in this one, both on 127.0.0.1; creates the bucket, topics, queues
and subscriptions, and registers each endpoint with the control plane (its endpoint config's
``AsyncInferenceConfig`` names its output and failure paths and topics); prints the
environment a client needs (``export`` lines) and, as ``#`` comments so that the output can still be
``eval``-ed, each endpoint's output and failure paths and notification queue, then the control URL;
writes ``--info-file`` (atomically, once everything is bound) and serves until SIGINT or SIGTERM
(or, with ``--watch-stdin``, until stdin closes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ._aws import AwsClients
from ._endpoint import EndpointConfig
from ._faults import FaultPlan
from ._moto import start_moto, stop_moto
from ._server import LocalServer

if TYPE_CHECKING:
    from ._info import EndpointInfo

__all__ = ["add_arguments", "endpoint_lines", "main", "run"]

DEFAULT_ENDPOINT = "local-endpoint"
DEFAULT_REGION = "us-east-1"
DEFAULT_BUCKET = "aiosagemaker-local"
# Fixed, obviously fake credentials: the stack only ever listens on loopback.
DEFAULT_ACCESS_KEY = "AKIALOCALSTACK000001"
DEFAULT_SECRET_KEY = "local-stack-secret-access-key"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the local stack's options to ``parser``."""
    parser.add_argument("--port", type=int, default=0, help="endpoint port (0: a free one)")
    parser.add_argument("--moto-port", type=int, default=0, help="moto port (0: a free one)")
    parser.add_argument(
        "--model", default="echo", help="echo | sleep:<seconds> | failing | module:function"
    )
    parser.add_argument(
        "--allow-model",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="a code model the control route may create endpoints with (repeatable); "
        "without it, only --model's own and the built-ins (echo, sleep:<s>, failing)",
    )
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--max-concurrency", type=int, default=4, help="per instance")
    parser.add_argument(
        "--endpoint",
        action="append",
        dest="endpoints",
        metavar="NAME",
        help=f"an endpoint to create (repeatable; default {DEFAULT_ENDPOINT})",
    )
    parser.add_argument("--info-file", type=Path, help="write the stack's JSON info here")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply model latency, request TTLs and invocation timeouts by this",
    )
    parser.add_argument("--no-notifications", action="store_true", help="no SNS topics or queues")
    parser.add_argument(
        "--include-response", action="store_true", help="embed outputs in notifications"
    )
    parser.add_argument(
        "--raw-delivery", action="store_true", help="SQS gets raw notifications, no SNS envelope"
    )
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--bucket", default=DEFAULT_BUCKET)
    faults = parser.add_argument_group("faults (fractions of requests, drawn with --fault-seed)")
    faults.add_argument("--throttle", type=float, default=0.0, help="429 ThrottlingException")
    faults.add_argument("--internal-error", type=float, default=0.0, help="500 InternalFailure")
    faults.add_argument("--unavailable", type=float, default=0.0, help="503 ServiceUnavailable")
    faults.add_argument("--reset", type=float, default=0.0, help="drop the connection unanswered")
    faults.add_argument(
        "--accept-then-reset", type=float, default=0.0, help="enqueue, then drop the connection"
    )
    faults.add_argument("--latency", type=float, default=0.0, help="seconds added to each answer")
    faults.add_argument("--notification-drop", type=float, default=0.0)
    faults.add_argument("--notification-duplicate", type=float, default=0.0)
    faults.add_argument(
        "--notification-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay every notification by this long",
    )
    faults.add_argument("--fault-seed", type=int, default=None)
    faults.add_argument(
        "--faults",
        type=_json_object,
        default={},
        metavar="JSON",
        help="a whole fault plan (every fault, schedules included: see the local stack's "
        "_faults module), as a JSON object or @file; the flags above override its keys",
    )
    parser.add_argument("--watch-stdin", action="store_true", help=argparse.SUPPRESS)


def _json_object(text: str) -> dict[str, Any]:
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    try:
        FaultPlan.parse(value)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _fault_spec(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = dict(args.faults)
    for name in (
        "throttle",
        "internal_error",
        "unavailable",
        "reset",
        "accept_then_reset",
        "notification_drop",
        "notification_duplicate",
    ):
        value = getattr(args, name)
        if value:
            spec[name] = value
    if args.latency:
        spec["latency"] = args.latency
    if args.notification_delay:
        spec["notification_delay"] = {"rate": 1.0, "seconds": args.notification_delay}
    if spec and args.fault_seed is not None:
        spec["seed"] = args.fault_seed
    return spec


def endpoint_lines(endpoint: EndpointInfo) -> list[str]:
    """What a client needs to find one endpoint's results, as shell comments."""
    queue = endpoint.queue_url or "none (--no-notifications)"
    return [
        f"# endpoint {endpoint.name}",
        f"#   output:  {endpoint.output_path}",
        f"#   failure: {endpoint.failure_path}",
        f"#   queue:   {queue}",
    ]


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while await reader.read(65536):
            pass
    finally:
        transport.close()


async def run(args: argparse.Namespace) -> int:
    """Run the stack until SIGINT/SIGTERM; return the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    defaults = {
        "model": args.model,
        "instances": args.instances,
        "max_concurrency": args.max_concurrency,
        "notifications": not args.no_notifications,
        "include_response": args.include_response,
        "raw_delivery": args.raw_delivery,
    }
    configs = [EndpointConfig(name=n, **defaults) for n in args.endpoints or [DEFAULT_ENDPOINT]]
    faults = _fault_spec(args)
    moto = await start_moto(args.moto_port)
    moto_url = moto.url
    try:
        async with (
            AwsClients(
                moto_url,
                region=args.region,
                access_key=DEFAULT_ACCESS_KEY,
                secret_key=DEFAULT_SECRET_KEY,
            ) as aws,
            asyncio.TaskGroup() as tg,
        ):
            server = LocalServer(
                aws=aws,
                task_group=tg,
                region=args.region,
                access_key=DEFAULT_ACCESS_KEY,
                secret_key=DEFAULT_SECRET_KEY,
                bucket=args.bucket,
                moto_url=moto_url,
                moto=moto,
                time_scale=args.time_scale,
                endpoint_defaults=defaults,
                allowed_models=args.allow_model,
            )
            watcher: asyncio.Task[None] | None = None
            try:
                await aws.create_bucket(args.bucket)
                for config in configs:
                    await server.add_endpoint(config)
                if faults:
                    server.set_global_faults(FaultPlan.parse(faults))
                    await server.sync_s3_faults()
                await server.start(port=args.port)
                info = server.stack_info()
                for key, value in info.env().items():
                    print(f"export {key}={value}")
                # The control routes' bearer token (also the info file's control_token).
                print(f"export AIOSAGEMAKER_LOCAL_CONTROL_TOKEN={info.control_token}")
                for endpoint in info.endpoints:
                    print("\n".join(endpoint_lines(endpoint)))
                print(f"# control: {info.control_url}/_local/stats", flush=True)
                if args.info_file is not None:
                    _write_atomically(args.info_file, orjson.dumps(info.to_json()))
                if args.watch_stdin:
                    watcher = tg.create_task(_until_stdin_closes())
                    watcher.add_done_callback(lambda _: stop.set())
                await stop.wait()
            finally:
                if watcher is not None:
                    watcher.cancel()
                await server.stop()
    finally:
        await stop_moto(moto)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aiosagemaker.local", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # the stack works on asyncio's own loop, only slower
        return asyncio.run(run(args))
    return uvloop.run(run(args))
