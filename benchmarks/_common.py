"""Shared by the benchmarks: the machine's description, percentiles, JSON output."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson


def machine() -> dict[str, Any]:
    """What the figures were measured on (these machines are shared and noisy)."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))


def short_path(filename: str) -> str:
    """A profiled function's file, short: from the package on (site-packages or src), or
    ``stdlib:`` and the module's path."""
    for marker in ("site-packages/", "/src/"):
        at = filename.find(marker)
        if at >= 0:
            return filename[at + len(marker) :]
    at = filename.find("/lib/python3")
    if at >= 0:
        return "stdlib:" + filename[filename.find("/", at + 1) + 1 :]
    return filename


def add_loop_option(parser: Any) -> None:
    """``--loop``: as the commands choose it, uvloop when installed (``auto``), else asyncio's."""
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="the client's event loop; auto: uvloop when installed, as the CLI (default)",
    )


def loop_factory(choice: str) -> Any:
    """The event loop factory for ``--loop`` (``None``: asyncio's default loop)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("--loop uvloop: uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def loop_name(factory: Any) -> str:
    return "asyncio" if factory is None else "uvloop"


@asynccontextmanager
async def stack_with_model(
    model: str, *, instances: int, max_concurrency: int
) -> AsyncIterator[Any]:
    """The local stack, its endpoint processes able to import ``model`` (``module:function``)
    from this folder, and this process's AWS environment pointed at it."""
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    from aiosagemaker.local import open_local_stack

    async with open_local_stack(
        model="echo",
        instances=instances,
        max_concurrency=max_concurrency,
        # the control route creates each run's endpoint with this model
        extra_args=["--allow-model", model],
    ) as stack:
        os.environ.update(stack.env())
        yield stack
