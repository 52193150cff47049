"""The batch job: a stream of inputs in, one JSON Lines record per input out; resumable.

.. code-block:: python

    stats = await BatchJob(BatchOptions(endpoint="my-ep", input="in.jsonl",
                                        output=Path("out.jsonl"))).run()

How it runs. A producer reads inputs in order and starts one task per input, holding at most
``max_pending`` of them at once (a window: one slot per input between its start and the moment its
record is written, which ordered output needs), so memory does not depend on the input's size.
Each task submits its input to the invoker, whose limits are the only request limits
(``max_pending`` admitted, ``concurrency`` in flight). Just before the request goes out, the
invoker awaits the task's hook that journals an *intent* (on disk before anything is sent); the
request carries the deterministic inference id ``<job id>-<n>``; the task journals the
*acceptance* with the output and failure locations, waits for the result, and journals the
*result* (the OUTPUT record).
A writer appends records to OUTPUT in input order (or as they finish, with ``ordered=False``).

How it resumes (see :mod:`._journal` for the file): on a rerun, OUTPUT tells which inputs already
have a record (ordered: a prefix; unordered: the journal's last ``mark`` plus the records past it),
and the journal tells, for every other input it knows, how far it got:

- a *result*: written to OUTPUT as journaled, nothing sent;
- an *acceptance*: never sent again; collected from the journaled output/failure locations with
  an S3 polling watcher (its notifications may have gone to the process that died);
- an *intent* alone: sent again under the same inference id and counted as possibly duplicated
  (the crash hit while it was in flight; AWS does not deduplicate by inference id);
- nothing: sent as usual.

So every input gets exactly one record in OUTPUT; only requests whose intent was journaled and whose
acceptance was not can run twice: those the invoker was sending at the crash, at most its send
queue of twice ``concurrency``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from .._aws import AwsContext
from .._config import (
    DEFAULT_INVOCATION_TIMEOUT_SECONDS,
    DEFAULT_REQUEST_TTL_SECONDS,
    MAX_INLINE_BODY_BYTES,
    Limits,
)
from .._exceptions import (
    AsyncInferenceError,
    InferenceFailedError,
    InvalidRequestError,
    InvocationError,
    InvokerClosedError,
    ResultTimeoutError,
    WatcherError,
)
from .._invoker import DEFAULT_RESULT_GRACE, AsyncInvoker
from ._inputs import open_input_source
from ._journal import Journal, JournalEntry, JournalHeader, ResumeState, read_header, scan_journal
from ._progress import ProgressReporter
from ._summary import BatchStats

if TYPE_CHECKING:
    from rich.console import Console

    from .._results import InferenceJob, JobTimings
    from .._watchers import Watcher
    from ._inputs import InputItem, InputSource, Shard

__all__ = ["BatchConfigError", "BatchJob", "BatchOptions", "BatchUsageError", "is_config_error"]

logger = logging.getLogger("aiosagemaker")

#: Outputs up to this size that are UTF-8 text (or JSON) are copied into the OUTPUT record.
DEFAULT_INLINE_OUTPUT_BYTES = 16_384
# How often OUTPUT is flushed and, for unordered jobs, a watermark journaled.
_FLUSH_INTERVAL = 0.25
# AWS error codes that mean the credentials or the configuration are wrong, not this input.
_CONFIG_ERROR_CODES = frozenset(
    {
        "AccessDeniedException",
        "ExpiredTokenException",
        "IncompleteSignature",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)


class _Stopped(Exception):
    """The run is stopping: a request about to be sent is not sent."""


class BatchUsageError(Exception):
    """Bad arguments or input files: nothing was sent (exit status 2)."""


class BatchConfigError(Exception):
    """AWS or configuration trouble: credentials, an unreachable or missing endpoint (exit 3)."""


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


def _output_n(line: bytes) -> int | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    n = value.get("n") if isinstance(value, dict) else None
    return n if isinstance(n, int) else None


def _epoch(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class BatchJob:
    """One run of a batch job (a first run or a resumption); :meth:`run` it once."""

    def __init__(
        self,
        options: BatchOptions,
        *,
        console: Console | None = None,
        progress: bool | None = None,
        log_interval: float = 5.0,
    ) -> None:
        if options.concurrency < 1 or options.max_pending < 1:
            raise BatchUsageError("--concurrency and --max-pending must be at least 1")
        if options.watcher not in ("s3", "sqs"):
            raise BatchUsageError(f"--watcher must be s3 or sqs, not {options.watcher!r}")
        if options.watcher == "sqs" and not options.queue_url:
            raise BatchUsageError("--watcher sqs needs --queue-url")
        self.options = options
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self._progress_bar = progress
        self._log_interval = log_interval
        self.stats = BatchStats()
        self.resume: ResumeState | None = None
        self.job_id = ""
        self._stopping = False
        self._stop_reason: str | None = None
        self._fatal: BaseException | None = None
        self._window = asyncio.Semaphore(options.max_pending)
        self._tasks: set[asyncio.Task[dict[str, Any] | None]] = set()
        self._producer: asyncio.Task[None] | None = None
        self._grace_task: asyncio.Task[None] | None = None
        self._journal: Journal | None = None
        self._out: IO[bytes] | None = None
        self._invoker: AsyncInvoker | None = None
        self._recovery: Watcher | None = None
        self._recovery_aws: AwsContext | None = None
        # Unordered jobs: inputs started and not yet in OUTPUT, for the journal's watermark.
        self._started_order: collections.deque[int] = collections.deque()
        self._written_set: set[int] = set()
        self._produced_upto = 0
        self._tasks_started = 0
        self._last_mark = 0
        self._header: JournalHeader | None = None

    # --- control -------------------------------------------------------------------------------

    @property
    def interrupted(self) -> bool:
        return self._stopping

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop submitting; wait up to ``grace`` seconds for results of what was sent.

        A second call stops waiting at once.
        """
        if self._stopping:
            self._cancel_all()
            return
        self._stopping = True
        self._stop_reason = reason
        self.stats.interrupted = True
        if self._producer is not None:
            self._producer.cancel()
        if self._grace_task is None:
            self._grace_task = asyncio.ensure_future(self._grace_then_cancel())

    async def _grace_then_cancel(self) -> None:
        await asyncio.sleep(self.options.grace)
        self._cancel_all()

    def _cancel_all(self) -> None:
        if self._producer is not None:
            self._producer.cancel()
        for task in list(self._tasks):
            task.cancel()

    def _fail_fatally(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            self.request_stop("fatal error")

    # --- the run -------------------------------------------------------------------------------

    async def run(self) -> BatchStats:
        """Run (or resume) the job to the end; return its statistics.

        :raises BatchUsageError: bad input path, a journal of another job, an OUTPUT in the way.
        :raises BatchConfigError: AWS trouble that no input can get past (credentials, endpoint).
        """
        o = self.options
        try:
            source = open_input_source(o.input, default_content_type=o.content_type)
        except FileNotFoundError as exc:
            raise BatchUsageError(str(exc)) from None
        header = await asyncio.to_thread(self._prepare, source)
        self._header = header
        self.job_id = header.job_id
        total = None
        if self._show_bar():
            total = await asyncio.to_thread(source.count)
            if total is not None and o.shard is not None:
                total = round(total / o.shard.count)
        self.stats.total_hint = total
        try:
            await self._run(source)
        finally:
            self._update_from_invoker()
            self.stats.finished = time.monotonic()
            if self._grace_task is not None:
                self._grace_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._grace_task
        if isinstance(self._fatal, BatchUsageError):
            raise self._fatal
        if self._fatal is not None:
            raise BatchConfigError(str(self._fatal))
        return self.stats

    def _show_bar(self) -> bool:
        return self.console.is_terminal if self._progress_bar is None else self._progress_bar

    def _prepare(self, source: InputSource) -> JournalHeader:
        """Start a new job or load the journal of the one to resume."""
        o = self.options
        journal = o.journal_path
        shard = None if o.shard is None else str(o.shard)
        if journal.exists() and journal.stat().st_size > 0:
            try:
                header = read_header(journal)
            except (ValueError, KeyError) as exc:
                raise BatchUsageError(f"journal {journal}: {exc}") from None
            expected = {
                "endpoint": o.endpoint,
                "input": source.identity,
                "shard": shard,
                "ordered": o.ordered,
            }
            for name, value in expected.items():
                if getattr(header, name) != value:
                    raise BatchUsageError(
                        f"journal {journal} belongs to another job ({name} "
                        f"{getattr(header, name)!r}, not {value!r}); pass another --journal, "
                        "or remove it and OUTPUT to start over"
                    )
            self.resume = scan_journal(journal, o.output, ordered=o.ordered, output_n=_output_n)
            return header
        if o.output.exists() and o.output.stat().st_size > 0 and not o.overwrite:
            raise BatchUsageError(
                f"OUTPUT {o.output} exists and there is no journal {journal} to resume from; "
                "remove it or pass --overwrite"
            )
        return JournalHeader(
            job_id=uuid.uuid4().hex[:12],
            endpoint=o.endpoint,
            input=source.identity,
            shard=shard,
            ordered=o.ordered,
            created=time.time(),
        )

    def _make_watcher(self) -> Watcher:
        from .._watchers import S3Polling, SqsNotifications

        o = self.options
        if o.watcher == "sqs":
            assert o.queue_url is not None
            return SqsNotifications(queue_url=o.queue_url)
        return S3Polling(interval=o.poll_interval)

    async def _open_invoker(self) -> AsyncInvoker:
        from .._staging import S3Staging

        o = self.options
        try:
            staging = S3Staging(o.staging) if o.staging else None
            invoker = AsyncInvoker(
                o.endpoint,
                limits=Limits(max_concurrent_invocations=o.concurrency, max_pending=o.max_pending),
                staging=staging,
                watcher=self._make_watcher(),
                region_name=o.region,
                endpoint_url=o.endpoint_url,
                profile=o.profile,
            )
        except (InvalidRequestError, ValueError) as exc:
            raise BatchUsageError(str(exc)) from None
        try:
            await invoker.open()
        except (AsyncInferenceError, OSError) as exc:
            raise BatchConfigError(str(exc)) from None
        except Exception as exc:  # botocore: no region, unknown profile, bad endpoint URL ...
            raise BatchConfigError(f"{type(exc).__name__}: {exc}") from None
        return invoker

    async def _open_recovery(self) -> None:
        """An S3 polling watcher for jobs accepted by an earlier run and not yet resolved."""
        assert self.resume is not None
        if not any(e.state == "accepted" for e in self.resume.entries.values()):
            return
        from .._watchers import S3Polling

        o = self.options
        self._recovery_aws = AwsContext(region_name=o.region, profile=o.profile)
        self._recovery = S3Polling(interval=o.poll_interval)
        try:
            await self._recovery.open(self._recovery_aws)
        except Exception as exc:
            raise BatchConfigError(f"{type(exc).__name__}: {exc}") from None

    async def _run(self, source: InputSource) -> None:
        o = self.options
        resume = self.resume
        header_record: dict[str, Any] | None = None
        if resume is None:
            assert self._header is not None
            header_record = self._header.to_json()
            journal = Journal(o.journal_path, truncate_to=0, fsync=o.fsync)
        else:
            journal = Journal(o.journal_path, truncate_to=resume.good_length, fsync=o.fsync)
        self._out = self._open_output()
        self._journal = journal
        try:
            journal.open()
            if header_record is not None:
                journal.append(header_record)
            else:
                journal.append({"t": "resume", "at": round(time.time(), 3)})
            await journal.commit()
            self._invoker = await self._open_invoker()
            if resume is not None:
                await self._open_recovery()
            await self._pipeline(source)
        finally:
            await self._close()

    def _open_output(self) -> IO[bytes]:
        """OUTPUT, new (truncated) or, on a resume, cut back to its last complete line."""
        output = self.options.output
        output.parent.mkdir(parents=True, exist_ok=True)
        if self.resume is None:
            return open(output, "wb")  # noqa: SIM115 - closed by _close
        with open(output, "ab") as f:
            f.truncate(self.resume.output_good_length)
        return open(output, "ab")  # noqa: SIM115 - closed by _close

    async def _close(self) -> None:
        if self._out is not None:
            with contextlib.suppress(OSError):
                self._out.flush()
            self._write_mark()
        try:
            if self._recovery is not None:
                await self._recovery.aclose()
            if self._recovery_aws is not None:
                await self._recovery_aws.aclose()
            if self._invoker is not None:
                self._update_from_invoker()
                await self._invoker.aclose()
        finally:
            if self._journal is not None:
                await self._journal.aclose()
            if self._out is not None:
                self._out.close()
                self._out = None

    async def _pipeline(self, source: InputSource) -> None:
        queue: asyncio.Queue[tuple[int, asyncio.Task[dict[str, Any] | None]] | None] = (
            asyncio.Queue()
        )
        reporter = ProgressReporter(
            self.stats, self.console, interval=self._log_interval, bar=self._show_bar()
        )
        async with asyncio.TaskGroup() as tg:
            progress = tg.create_task(reporter.run())
            flusher = tg.create_task(self._flush_loop())
            self._producer = tg.create_task(self._produce(source, tg, queue))
            try:
                await self._write_loop(queue)
            finally:
                progress.cancel()
                flusher.cancel()
                self._producer.cancel()

    # --- producing -----------------------------------------------------------------------------

    async def _produce(
        self,
        source: InputSource,
        tg: asyncio.TaskGroup,
        queue: asyncio.Queue[tuple[int, asyncio.Task[dict[str, Any] | None]] | None],
    ) -> None:
        o = self.options
        resume = self.resume
        try:
            async for item in source.items():
                if o.shard is not None and item.input_id not in o.shard:
                    continue
                self.stats.inputs += 1
                self.stats.duplicates.add(item.input_id)  # before the resume skip: reruns agree
                if resume is not None and resume.is_done(item.n):
                    self.stats.already_done += 1
                    self._produced_upto = item.n
                    continue
                entry = resume.entries.pop(item.n, None) if resume is not None else None
                await self._window.acquire()
                task = tg.create_task(self._process(item, entry))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self._tasks_started += 1
                self._started_order.append(item.n)
                self._produced_upto = item.n
                if o.ordered:
                    queue.put_nowait((item.n, task))
                else:
                    task.add_done_callback(functools.partial(_enqueue, queue, item.n))
        except OSError as exc:
            self._fail_fatally(BatchUsageError(f"cannot read the input: {exc}"))
        finally:
            self.stats.duplicates.warn()
            # The writer stops once it has seen this and every task started before it.
            queue.put_nowait(None)

    # --- one input -----------------------------------------------------------------------------

    def inference_id(self, n: int) -> str:
        """The inference id of input ``n`` in this job: the same on every rerun."""
        return f"{self.job_id}-{n}"

    async def _process(self, item: InputItem, entry: JournalEntry | None) -> dict[str, Any] | None:
        """Take one input to its OUTPUT record; ``None`` when interrupted before its result."""
        o = self.options
        if item.error is not None:
            return self._record(item, status="invalid", reason=item.error)
        if entry is not None and entry.state == "result":
            assert entry.record is not None
            self.stats.recovered_results += 1
            self._count(entry.record.get("status"))
            return entry.record
        if entry is not None and entry.state == "accepted":
            return await self._recover(item, entry)
        assert item.body is not None
        if len(item.body) > MAX_INLINE_BODY_BYTES and not o.staging:
            return self._record(
                item,
                status="invalid",
                reason=f"payload is {len(item.body):,} bytes, over the "
                f"{MAX_INLINE_BODY_BYTES:,}-byte inline limit, and no --staging location is set",
            )
        inference_id = self.inference_id(item.n)
        journal = self._journal
        invoker = self._invoker
        assert journal is not None and invoker is not None
        if self._stopping:
            return None

        async def journal_intent() -> None:
            # Runs in the invoker's send task, right before the request goes out.
            if self._stopping:
                raise _Stopped
            if entry is not None:
                # Sent before the crash with no acceptance recorded: it may run twice.
                self.stats.resubmitted_after_crash += 1
            journal.append({"t": "intent", "n": item.n, "id": inference_id})
            await journal.commit()
            self.stats.submitted += 1

        try:
            job = await invoker.submit(
                item.body,
                content_type=item.content_type,
                inference_id=inference_id,
                request_ttl=o.request_ttl,
                invocation_timeout=o.invocation_timeout,
                before_send=journal_intent,
            )
            await job.accepted()
        except InvalidRequestError as exc:
            return self._journaled(self._record(item, status="invalid", reason=str(exc)))
        except InvocationError as exc:
            if is_config_error(exc):
                self._fail_fatally(exc)
                return None
            return self._journaled(
                self._record(item, status="error", inference_id=inference_id, reason=str(exc))
            )
        except AsyncInferenceError as exc:
            if isinstance(exc.__cause__, OSError):
                # The journal could not be written: nothing was sent, and the run cannot go on.
                self._fail_fatally(exc.__cause__)
                return None
            if self._stopping or isinstance(exc, InvokerClosedError):
                return None
            return self._journaled(
                self._record(item, status="error", inference_id=inference_id, reason=str(exc))
            )
        self.stats.accepted += 1
        journal.append(
            {
                "t": "accepted",
                "n": item.n,
                "id": job.inference_id,
                "out": job.output_location,
                "fail": job.failure_location,
                "at": _epoch(job.timings.accepted),
            }
        )
        return await self._collect(item, job, measure=True)

    async def _recover(self, item: InputItem, entry: JournalEntry) -> dict[str, Any] | None:
        """Collect the result of a job an earlier run had accepted, without sending it again."""
        assert self._recovery is not None
        o = self.options
        ttl = o.request_ttl or DEFAULT_REQUEST_TTL_SECONDS
        timeout = o.invocation_timeout or DEFAULT_INVOCATION_TIMEOUT_SECONDS
        accepted = entry.accepted_at or time.time()
        deadline = time.monotonic() + (
            accepted + ttl + timeout + DEFAULT_RESULT_GRACE - time.time()
        )
        self.stats.recovered_tracked += 1
        job = self._recovery.track(
            entry.inference_id, entry.output_location, entry.failure_location, deadline=deadline
        )
        job.timings.accepted = entry.accepted_at
        return await self._collect(item, job, measure=False)

    async def _collect(
        self, item: InputItem, job: InferenceJob, *, measure: bool
    ) -> dict[str, Any] | None:
        fields: dict[str, Any] = {
            "inference_id": job.inference_id,
            "output_location": job.output_location,
        }
        try:
            result = await job.result()
        except InferenceFailedError as exc:
            record = self._record(
                item, status="failed", reason=exc.reason, timings=job.timings, **fields
            )
        except InvokerClosedError:
            return None
        except WatcherError as exc:
            # The results cannot be read as configured (a permission, a missing bucket or queue):
            # stop (exit 3) with the acceptance journaled, so a rerun once it is fixed collects
            # the result without sending anything again.
            self._fail_fatally(exc)
            return None
        except ResultTimeoutError as exc:
            record = self._record(
                item, status="error", reason=str(exc), timings=job.timings, **fields
            )
        except AsyncInferenceError as exc:
            if self._stopping:
                return None
            record = self._record(
                item, status="error", reason=str(exc), timings=job.timings, **fields
            )
        else:
            timings = result.timings
            if measure and timings.submitted is not None:
                end = timings.fetched or timings.completed or time.time()
                self.stats.record_latency(end - timings.submitted)
            record = self._record(
                item,
                status="completed",
                content_type=result.content_type,
                output=self._inline_output(result.body, result.content_type),
                timings=timings,
                **fields,
            )
        return self._journaled(record)

    def _journaled(self, record: dict[str, Any]) -> dict[str, Any]:
        assert self._journal is not None
        self._journal.append({"t": "result", "n": record["n"], "rec": record})
        return record

    def _count(self, status: Any) -> None:
        s = self.stats
        if status == "completed":
            s.completed += 1
        elif status == "failed":
            s.failed += 1
        elif status == "invalid":
            s.invalid += 1
        else:
            s.errors += 1

    def _record(
        self,
        item: InputItem,
        *,
        status: str,
        inference_id: str | None = None,
        output_location: str | None = None,
        content_type: str | None = None,
        output: Any = None,
        reason: str | None = None,
        timings: JobTimings | None = None,
    ) -> dict[str, Any]:
        self._count(status)
        record: dict[str, Any] = {
            "n": item.n,
            "id": item.input_id,
            "inference_id": inference_id,
            "status": status,
            "output_location": output_location,
            "content_type": content_type,
            "output": output,
            "failure_reason": reason,
        }
        if timings is not None:
            end = timings.fetched or timings.completed
            record["timings"] = {
                "submitted": _epoch(timings.submitted),
                "accepted": _epoch(timings.accepted),
                "completed": _epoch(timings.completed),
                "latency_ms": None
                if end is None or timings.submitted is None
                else round((end - timings.submitted) * 1000, 1),
            }
        return record

    def _inline_output(self, body: bytes | None, content_type: str | None) -> Any:
        """The output itself when small: parsed JSON, or text; else ``None`` (see its location)."""
        if body is None or len(body) > self.options.inline_output_bytes:
            return None
        if content_type and "json" in content_type:
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError:
                pass
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return None

    # --- writing -------------------------------------------------------------------------------

    async def _write_loop(
        self, queue: asyncio.Queue[tuple[int, asyncio.Task[dict[str, Any] | None]] | None]
    ) -> None:
        ordered = self.options.ordered
        producer_done = False
        gap = False
        started = consumed = 0
        while True:
            if producer_done and consumed >= started:
                break
            got = await queue.get()
            if got is None:
                producer_done = True
                started = self._tasks_started
                continue
            n, task = got
            if ordered and not task.done():
                await asyncio.wait([task])
            consumed += 1
            self._window.release()
            record = None if task.cancelled() else task.result()
            if record is None:
                gap = True
                continue
            if ordered and gap:
                # Input order: nothing past an unfinished input is written (it is journaled).
                continue
            self._write(n, record)

    def _write(self, n: int, record: dict[str, Any]) -> None:
        assert self._out is not None
        self._out.write(orjson.dumps(record) + b"\n")
        self.stats.written += 1
        self._written_set.add(n)

    def _watermark(self) -> int:
        order, written = self._started_order, self._written_set
        while order and order[0] in written:
            written.discard(order.popleft())
        return order[0] - 1 if order else self._produced_upto

    def _write_mark(self) -> None:
        """Unordered jobs: journal that every input up to the watermark is in OUTPUT."""
        if self._journal is None or self._out is None:
            return
        mark = self._watermark()
        if not self.options.ordered and mark > self._last_mark:
            self._journal.append({"t": "mark", "n": mark})
            self._last_mark = mark

    async def _flush_loop(self) -> None:
        assert self._journal is not None and self._out is not None
        while True:
            await asyncio.sleep(_FLUSH_INTERVAL)
            # OUTPUT first: a mark must never claim a record that is still in a buffer.
            self._out.flush()
            self._write_mark()
            self._update_from_invoker()
            await self._journal.commit()

    def _update_from_invoker(self) -> None:
        if self._invoker is None:
            return
        s = self._invoker.statistics()
        self.stats.retries = s.retried
        self.stats.throttled = s.throttled
        self.stats.ambiguous_retries = s.ambiguous_retries
        self.stats.staged = s.staged


def _enqueue(
    queue: asyncio.Queue[tuple[int, asyncio.Task[dict[str, Any] | None]] | None],
    n: int,
    task: asyncio.Task[dict[str, Any] | None],
) -> None:
    queue.put_nowait((n, task))


def is_config_error(exc: InvocationError) -> bool:
    """An error no input can get past: stop the job (exit 3) rather than fail every input."""
    if exc.code in _CONFIG_ERROR_CODES or exc.status in (401, 403):
        return True
    if exc.code == "ConnectionError" and not exc.ambiguous:
        return True  # the endpoint could not be reached at all, after every retry
    message = exc.message.lower()
    return exc.code == "ValidationError" and "endpoint" in message and "not found" in message
