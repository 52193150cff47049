"""What a batch job is asked to do: :class:`BatchOptions`, the arguments of ``aiosagemaker batch``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import BatchUsageError

if TYPE_CHECKING:
    from ._inputs import Shard

__all__ = ["DEFAULT_INLINE_OUTPUT_BYTES", "BatchOptions"]

#: Outputs up to this size that are UTF-8 text (or JSON) are copied into the OUTPUT record: small
#: enough that a record stays one cheap line, big enough for most classifier and embedding outputs.
DEFAULT_INLINE_OUTPUT_BYTES = 16_384


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchOptions:
    """What ``aiosagemaker batch`` takes; see ``aiosagemaker batch --help``."""

    endpoint: str
    input: str
    output: Path
    #: default: OUTPUT with ``.journal`` appended
    journal: Path | None = None
    concurrency: int = 256
    max_pending: int = 10_000
    #: "s3" or "sqs"
    watcher: str = "s3"
    queue_url: str | None = None
    poll_interval: float = 1.0
    staging: str | None = None
    content_type: str | None = None
    shard: Shard | None = None
    ordered: bool = True
    inline_output_bytes: int = DEFAULT_INLINE_OUTPUT_BYTES
    #: seconds an interrupted job waits for results of requests already sent
    grace: float = 30.0
    request_ttl: int | None = None
    invocation_timeout: int | None = None
    #: start over although OUTPUT exists without a journal
    overwrite: bool = False
    fsync: bool = True
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None

    @property
    def journal_path(self) -> Path:
        return self.journal if self.journal is not None else Path(f"{self.output}.journal")

    def check(self) -> None:
        """Refuse options no run could use.

        :raises BatchUsageError: a limit below 1, an unknown watcher, SQS without a queue.
        """
        if self.concurrency < 1 or self.max_pending < 1:
            raise BatchUsageError("--concurrency and --max-pending must be at least 1")
        if self.watcher not in ("s3", "sqs"):
            raise BatchUsageError(f"--watcher must be s3 or sqs, not {self.watcher!r}")
        if self.watcher == "sqs" and not self.queue_url:
            raise BatchUsageError("--watcher sqs needs --queue-url")
