"""Running a batch job as a command: signals, the summary, the exit status (``batch``, ``demo``,
``batch --ray``)."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from ._common import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, CliError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from aiosagemaker.batch import BatchOptions, BatchStats

__all__ = ["resume_hint", "run_batch_job", "run_ray_batch_job"]


class _Job(Protocol):
    """A batch job run by the command: a ``BatchJob``, or a ``RayBatchJob``."""

    options: BatchOptions
    stats: BatchStats

    @property
    def interrupted(self) -> bool: ...

    def request_stop(self, reason: str = ...) -> None: ...

    async def run(self) -> BatchStats: ...


async def run_ray_batch_job(
    options: BatchOptions,
    console: Any,
    *,
    actors: int,
    address: str | None,
    progress: bool | None,
    log_interval: float,
    summary_json: Path | None,
    resume_hint: str,
) -> int:
    """``aiosagemaker batch --ray``: the job on a Ray cluster (``aiosagemaker.ray``, imported
    only here; a missing Ray says how to install the extra, exit 2)."""
    from aiosagemaker.batch import BatchUsageError
    from aiosagemaker.ray import RayBatchJob

    try:
        job = RayBatchJob(
            options,
            actors=actors,
            address=address,
            console=console,
            progress=progress,
            log_interval=log_interval,
        )
    except BatchUsageError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return await run_batch_job(job, console, summary_json=summary_json, resume_hint=resume_hint)


async def run_batch_job(
    job: _Job,
    console: Any,
    *,
    summary_json: Path | None,
    resume_hint: str,
    title: str = "batch summary",
) -> int:
    from aiosagemaker.batch import BatchConfigError, BatchUsageError

    def on_signal() -> None:
        if not job.interrupted:
            console.print(
                f"stopping: no new requests; waiting up to {job.options.grace:g} s for results "
                "already sent (Ctrl-C again to stop now)",
                highlight=False,
            )
        job.request_stop()

    remove = _install_stop_handlers(on_signal)
    try:
        stats = await job.run()
    except BatchUsageError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except BatchConfigError as exc:
        raise CliError(
            f"{exc} ({job.stats.written:,} results written; fix the problem and rerun: "
            f"{resume_hint})",
            EXIT_CONFIG,
        ) from None
    finally:
        remove()
    stats.render(console, title=title)
    if summary_json is not None:
        data = orjson.dumps(stats.to_json(), option=orjson.OPT_INDENT_2)
        await asyncio.to_thread(summary_json.write_bytes, data)
    if job.interrupted:
        console.print(
            f"interrupted: {stats.written:,} results written to {job.options.output}; "
            f"resume with: {resume_hint}",
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED
    if stats.failed or stats.invalid or stats.errors:
        return EXIT_FAILED
    return EXIT_OK


def _install_stop_handlers(stop: Callable[[], None]) -> Callable[[], None]:
    """Call ``stop`` on SIGINT/SIGTERM; return a function that removes the handlers."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop)
            installed.append(sig)
        # Not the main thread (asyncio: RuntimeError; uvloop: ValueError), or not Unix.
        except (NotImplementedError, RuntimeError, ValueError):
            pass

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return remove


def resume_hint(argv: Sequence[str] | None) -> str:
    words = list(sys.argv[1:] if argv is None else argv)
    return " ".join([PROG, *(_quote(w) for w in words)])


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)
