"""The batch job's counters, its latency histogram, and the summary printed at the end."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hdrh.histogram import HdrHistogram

from ._inputs import DuplicateIds

if TYPE_CHECKING:
    from rich.console import Console

    from aiosagemaker import InvokerStatistics

__all__ = ["BatchStats"]

# Latencies are recorded in microseconds, from 1 µs to one day, to 3 significant digits.
_HIST_LOWEST = 1
_HIST_HIGHEST = 86_400 * 1_000_000
_HIST_DIGITS = 3


def _histogram() -> HdrHistogram:
    return HdrHistogram(_HIST_LOWEST, _HIST_HIGHEST, _HIST_DIGITS)


@dataclass(slots=True)
class BatchStats:
    """What a batch run did. Latency is submit to result, over inputs submitted by this run."""

    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    #: inputs of this shard read so far
    inputs: int = 0
    #: inputs whose result was already in OUTPUT (a resumed job)
    already_done: int = 0
    submitted: int = 0
    accepted: int = 0
    completed: int = 0
    failed: int = 0
    invalid: int = 0
    errors: int = 0
    #: records appended to OUTPUT by this run
    written: int = 0
    #: results read back from the journal (finished before the crash, not yet in OUTPUT)
    recovered_results: int = 0
    #: jobs accepted before the crash and collected by this run, never sent again
    recovered_tracked: int = 0
    #: sent again because the crash left an intent without an acceptance: may have run twice
    resubmitted_after_crash: int = 0
    retries: int = 0
    throttled: int = 0
    ambiguous_retries: int = 0
    staged: int = 0
    #: ids of this shard's inputs, to count the inputs that reuse an earlier input's id
    duplicates: DuplicateIds = field(default_factory=DuplicateIds)
    total_hint: int | None = None
    interrupted: bool = False
    latency: HdrHistogram = field(default_factory=_histogram)

    @property
    def results(self) -> int:
        return self.completed + self.failed + self.invalid + self.errors

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def possibly_duplicated(self) -> int:
        """Requests this run may have made the endpoint run twice (AWS does not deduplicate)."""
        return self.resubmitted_after_crash + self.ambiguous_retries

    @property
    def duplicate_ids(self) -> int:
        """Inputs read whose id an earlier input had: OUTPUT has a record for each of them."""
        return self.duplicates.count

    def count_result(self, status: object) -> None:
        """Count one input's result by its OUTPUT record's ``status`` (anything else: an error)."""
        if status == "completed":
            self.completed += 1
        elif status == "failed":
            self.failed += 1
        elif status == "invalid":
            self.invalid += 1
        else:
            self.errors += 1

    def take_invoker_counts(self, invoker: InvokerStatistics) -> None:
        """Copy the invoker's request counters (retries, throttling, staging) into these."""
        self.retries = invoker.retried
        self.throttled = invoker.throttled
        self.ambiguous_retries = invoker.ambiguous_retries
        self.staged = invoker.staged

    def record_latency(self, seconds: float) -> None:
        self.latency.record_value(max(_HIST_LOWEST, min(_HIST_HIGHEST, int(seconds * 1e6))))

    def percentile_ms(self, p: float) -> float | None:
        if self.latency.get_total_count() == 0:
            return None
        return float(self.latency.get_value_at_percentile(p)) / 1000.0

    def to_json(self) -> dict[str, Any]:
        elapsed = self.elapsed
        return {
            "inputs": self.inputs,
            "already_done": self.already_done,
            "submitted": self.submitted,
            "accepted": self.accepted,
            "completed": self.completed,
            "failed": self.failed,
            "invalid": self.invalid,
            "errors": self.errors,
            "duplicate_ids": self.duplicate_ids,
            "written": self.written,
            "recovered_results": self.recovered_results,
            "recovered_tracked": self.recovered_tracked,
            "resubmitted_after_crash": self.resubmitted_after_crash,
            "possibly_duplicated": self.possibly_duplicated,
            "retries": self.retries,
            "throttled": self.throttled,
            "ambiguous_retries": self.ambiguous_retries,
            "staged": self.staged,
            "interrupted": self.interrupted,
            "elapsed_seconds": round(elapsed, 3),
            "throughput_per_second": round(self.results / elapsed, 1) if elapsed > 0 else None,
            "latency_ms": {
                "p50": self.percentile_ms(50),
                "p90": self.percentile_ms(90),
                "p99": self.percentile_ms(99),
                "max": self.percentile_ms(100),
            },
        }

    def lines(self) -> list[tuple[str, str]]:
        """The summary as (label, value) rows."""
        data = self.to_json()
        lat = data["latency_ms"]

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:,.1f} ms"

        rows = [
            ("results", f"{self.results:,} ({self.written:,} written to OUTPUT by this run)"),
            ("completed", f"{self.completed:,}"),
            ("failed", f"{self.failed:,}"),
            ("invalid inputs", f"{self.invalid:,}"),
            ("errors", f"{self.errors:,}"),
            ("duplicate ids", self._duplicates_line()),
            ("submitted / accepted", f"{self.submitted:,} / {self.accepted:,}"),
            ("staged to S3", f"{self.staged:,}"),
            ("elapsed", f"{data['elapsed_seconds']:,.1f} s"),
            ("throughput", f"{data['throughput_per_second'] or 0:,.1f} results/s"),
            ("latency p50 / p90 / p99", f"{ms(lat['p50'])} / {ms(lat['p90'])} / {ms(lat['p99'])}"),
            ("retries (throttled)", f"{self.retries:,} ({self.throttled:,})"),
            ("possibly duplicated", f"{self.possibly_duplicated:,}"),
        ]
        if self.already_done or self.recovered_results or self.recovered_tracked:
            rows.append(
                (
                    "resumed",
                    f"{self.already_done:,} already in OUTPUT, {self.recovered_results:,} "
                    f"from the journal, {self.recovered_tracked:,} collected without resending, "
                    f"{self.resubmitted_after_crash:,} resent",
                )
            )
        return rows

    def _duplicates_line(self) -> str:
        n = self.duplicate_ids
        if not n:
            return "0"
        return f"{n:,} (inputs that reuse an earlier input's id; OUTPUT has a record for each)"

    def render(self, console: Console, *, title: str = "batch summary") -> None:
        """Print the summary: a table on a terminal, ``label: value`` lines otherwise."""
        if console.is_terminal:
            from rich.table import Table

            table = Table(title=title, show_header=False, title_justify="left")
            table.add_column(style="bold")
            table.add_column()
            for label, value in self.lines():
                table.add_row(label, value)
            console.print(table)
        else:
            console.print(f"{title}:", highlight=False)
            for label, value in self.lines():
                console.print(f"  {label}: {value}", highlight=False, soft_wrap=True)
