"""What a batch job is asked to do: :class:`BatchOptions`, the arguments of ``aiosagemaker batch``,
and where it writes (:class:`OutputTarget`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from aiosagemaker import InvalidRequestError, S3Uri, parse_s3_uri

from ._errors import BatchUsageError
from ._input_parquet import ParquetUnavailableError, require_pyarrow
from ._inputs import open_input_source
from ._parts import DEFAULT_PART_BYTES, DEFAULT_PART_RECORDS, DEFAULT_PART_SECONDS

if TYPE_CHECKING:
    from ._input_base import InputSource
    from ._inputs import Shard

__all__ = ["DEFAULT_INLINE_OUTPUT_BYTES", "BatchOptions", "OutputTarget"]

_PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True, slots=True)
class OutputTarget:
    """Where OUTPUT goes, and its journal.

    - a local JSON Lines file (``kind`` ``file``), appended to, its journal ``OUTPUT.journal``;
    - parts (``kind`` ``parts``, :mod:`._parts`) in a local directory (``-o results.parquet``)
      with the journal ``OUTPUT.journal`` beside it, or under an ``s3://`` prefix with the journal
      in ``PREFIX/_journal/`` (unless ``--journal`` names a local file).
    """

    kind: Literal["file", "parts"]
    fmt: Literal["jsonl", "parquet"]
    #: the local file or directory; ``None`` for S3
    path: Path | None
    #: the S3 prefix (ending in ``/``); ``None`` for a local OUTPUT
    s3: S3Uri | None
    #: the local journal; ``None``: the journal is in S3 beside the parts
    journal: Path | None

    @property
    def spec(self) -> str:
        """What the journal's header records: the absolute path, or the ``s3://`` URI."""
        if self.s3 is not None:
            return str(self.s3)
        assert self.path is not None
        return str(self.path.resolve())


#: Outputs up to this size that are UTF-8 text (or JSON) are copied into the OUTPUT record: small
#: enough that a record stays one cheap line, big enough for most classifier and embedding outputs.
DEFAULT_INLINE_OUTPUT_BYTES = 16_384


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchOptions:
    """What ``aiosagemaker batch`` takes; see ``aiosagemaker batch --help``."""

    endpoint: str
    input: str
    #: a JSON Lines file, a ``.parquet`` directory of parts, or an ``s3://`` prefix of parts
    output: Path | str
    #: ``jsonl`` or ``parquet``; ``None``: from OUTPUT's name (``.parquet``/``.pq``: Parquet)
    output_format: str | None = None
    part_records: int = DEFAULT_PART_RECORDS
    part_bytes: int = DEFAULT_PART_BYTES
    part_seconds: float = DEFAULT_PART_SECONDS
    #: Parquet inputs: the column sent as the payload, and the one giving each input's id
    payload_column: str = "body"
    id_column: str | None = None
    #: the account that must own every bucket the job reads or writes (``ExpectedBucketOwner``)
    expected_bucket_owner: str | None = None
    #: staged payloads are encrypted with this KMS key (SSE-KMS); else the bucket's default
    staging_kms_key: str | None = None
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
        """The local journal (for a job whose journal is in S3: see :meth:`target`)."""
        return self.journal if self.journal is not None else Path(f"{self.output}.journal")

    def open_input(self) -> InputSource:
        """INPUT, as these options name it (see :func:`~aiosagemaker.batch._inputs.open_input_source`).

        :raises BatchUsageError: a path that does not exist, a form or column that is not usable.
        """
        try:
            return open_input_source(
                self.input,
                default_content_type=self.content_type,
                payload_column=self.payload_column,
                id_column=self.id_column,
            )
        except (FileNotFoundError, ValueError, InvalidRequestError) as exc:
            raise BatchUsageError(str(exc)) from None

    def target(self) -> OutputTarget:
        """Where OUTPUT and the journal go.

        :raises BatchUsageError: an invalid ``s3://`` URI or output format.
        """
        fmt = self.output_format
        if fmt not in (None, "jsonl", "parquet"):
            raise BatchUsageError(f"--output-format must be jsonl or parquet, not {fmt!r}")
        text = str(self.output)
        if text.startswith("s3://"):
            try:
                uri = parse_s3_uri(text if text.endswith("/") else text + "/", field="OUTPUT")
            except InvalidRequestError as exc:
                raise BatchUsageError(str(exc)) from None
            return OutputTarget(
                kind="parts",
                fmt="parquet" if fmt == "parquet" else "jsonl",
                path=None,
                s3=uri,
                journal=self.journal,
            )
        path = Path(self.output)
        if fmt is None:
            fmt = "parquet" if path.suffix.lower() in _PARQUET_SUFFIXES else "jsonl"
        if fmt == "parquet":
            return OutputTarget(
                kind="parts", fmt="parquet", path=path, s3=None, journal=self.journal_path
            )
        return OutputTarget(kind="file", fmt="jsonl", path=path, s3=None, journal=self.journal_path)

    def check(self) -> None:
        """Refuse options no run could use.

        :raises BatchUsageError: a limit below 1, an unknown watcher, SQS without a queue, an
            invalid OUTPUT, Parquet without pyarrow.
        """
        if self.concurrency < 1 or self.max_pending < 1:
            raise BatchUsageError("--concurrency and --max-pending must be at least 1")
        if self.watcher not in ("s3", "sqs"):
            raise BatchUsageError(f"--watcher must be s3 or sqs, not {self.watcher!r}")
        if self.watcher == "sqs" and not self.queue_url:
            raise BatchUsageError("--watcher sqs needs --queue-url")
        if self.part_records < 1 or self.part_bytes < 1 or self.part_seconds <= 0:
            raise BatchUsageError("--part-records and --part-seconds must be above 0")
        if self.target().fmt == "parquet":
            try:
                require_pyarrow()
            except ParquetUnavailableError as exc:
                raise BatchUsageError(str(exc)) from None
