"""Progress of a batch job: a rich progress bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from ._summary import BatchStats

__all__ = ["ProgressReporter"]

logger = logging.getLogger("aiosagemaker")


class ProgressReporter:
    """Shows a :class:`BatchStats` while a job runs; :meth:`run` until cancelled.

    :param console: where to draw (stderr for the CLI).
    :param interval: seconds between plain log lines when not on a terminal (``0``: none).
    :param bar: draw the bar (defaults to whether ``console`` is a terminal).
    """

    def __init__(
        self,
        stats: BatchStats,
        console: Console,
        *,
        interval: float = 5.0,
        bar: bool | None = None,
        description: str = "batch",
    ) -> None:
        self.stats = stats
        self.console = console
        self.interval = interval
        self.bar = console.is_terminal if bar is None else bar
        self.description = description
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    async def run(self) -> None:
        """Refresh until cancelled; the last refresh happens on the way out.

        A display that fails is logged and dropped: it never stops the job it shows.
        """
        try:
            if self.bar:
                await self._run_bar()
            elif self.interval > 0:
                await self._run_lines()
        except Exception:
            logger.exception("the progress display failed; the job goes on without it")

    async def _run_bar(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("sent {task.fields[sent]:,} · ok {task.fields[ok]:,}"),
            TextColumn("· [red]failed {task.fields[bad]:,}"),
            TextColumn("· {task.fields[rate]:,.0f}/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            refresh_per_second=8,
        )
        self._progress = progress
        self._task = progress.add_task(
            self.description, total=self.stats.total_hint, **self._fields()
        )
        with progress:
            try:
                while True:
                    self._refresh()
                    await asyncio.sleep(0.125)
            finally:
                self._refresh()

    def _fields(self) -> dict[str, Any]:
        s = self.stats
        elapsed = s.elapsed
        return {
            "sent": s.submitted,
            "ok": s.completed,
            "bad": s.failed + s.invalid + s.errors,
            "rate": s.results / elapsed if elapsed > 0 else 0.0,
        }

    def _refresh(self) -> None:
        if self._progress is None or self._task is None:
            return
        s = self.stats
        self._progress.update(
            self._task,
            completed=s.results + s.already_done,
            total=s.total_hint,
            **self._fields(),
        )

    async def _run_lines(self) -> None:
        last = time.monotonic()
        try:
            while True:
                await asyncio.sleep(self.interval)
                last = time.monotonic()
                self._line()
        finally:
            if time.monotonic() - last > 0.5:
                self._line()

    def _line(self) -> None:
        s = self.stats
        f = self._fields()
        total = f" of {s.total_hint:,}" if s.total_hint else ""
        self.console.print(
            f"{self.description}: {s.results + s.already_done:,}{total} done, "
            f"sent {s.submitted:,}, ok {s.completed:,}, failed {int(f['bad']):,}, "
            f"{f['rate']:,.0f}/s, {s.elapsed:,.0f} s",
            highlight=False,
            soft_wrap=True,
        )
