"""The batch job: a stream of inputs in, one JSON Lines record per input out; resumable.

.. code-block:: python

    stats = await BatchJob(BatchOptions(endpoint="my-ep", input="in.jsonl",
                                        output=Path("out.jsonl"))).run()

How it runs. A producer reads inputs in order and starts one task per input, holding at most
``max_pending`` of them at once (the writer's window: one slot per input between its start and
the moment its record is written, which ordered output needs), so memory does not depend on the
input's size. Each task (:mod:`._processor`) submits its input to the invoker, whose limits are
the only request limits (``max_pending`` admitted, ``concurrency`` in flight). Just before the
request goes out, the invoker awaits the task's hook that journals an *intent* (on disk before
anything is sent); the request carries the deterministic inference id ``<job id>-<n>``; the task
journals the *acceptance* with the output and failure locations, waits for the result, and
journals the *result* (the OUTPUT record, :mod:`._records`). The writer (:mod:`._writer`) appends
records to OUTPUT in input order (or as they finish, with ``ordered=False``).

How it resumes (see :mod:`._journal` for the file): on a rerun, OUTPUT tells which inputs already
have a record (ordered: a prefix; unordered: the journal's last ``mark`` plus the records past it),
and the journal tells, for every other input it knows, how far it got:

- a *result*: written to OUTPUT as journaled, nothing sent;
- an *acceptance*: never sent again; collected from the journaled output/failure locations
  (:mod:`._recovery`);
- an *intent* alone: sent again under the same inference id and counted as possibly duplicated
  (the crash hit while it was in flight; AWS does not deduplicate by inference id);
- nothing: sent as usual.

So every input gets exactly one record in OUTPUT; only requests whose intent was journaled and whose
acceptance was not can run twice: those the invoker was sending at the crash, at most its send
queue of twice ``concurrency``.

How it keeps the journal true (see :mod:`._start`, :mod:`._writer`): one run per journal (an
exclusive lock for the whole run: a second run is refused); a resumption only against the input the
job started with (its fingerprint is in the journal); OUTPUT fsynced before the journal says what
is in it; a failed OUTPUT write retried, then the run stopped with every record it had not written
still in the journal; a journal line of the wrong shape refused with its line number.

How it stops. :meth:`BatchJob.request_stop` (Ctrl-C, or an error no input can get past) stops
the producer and sends nothing more; tasks get ``grace`` seconds to collect the results of what
was sent, then are cancelled. Whatever ends without a record is left to the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from ._connect import open_invoker
from ._errors import BatchConfigError, BatchUsageError
from ._journal import Journal
from ._opening import open_job_s3, open_job_source
from ._parts import LocalParts, PartWriter, S3Parts
from ._processor import InputProcessor, inference_id_of
from ._progress import ProgressReporter
from ._records import resume_entry
from ._recovery import open_recovery
from ._s3 import S3Error
from ._s3_journal import S3Journal, S3RunLock, journal_prefix
from ._start import lock_run, start_or_resume, start_or_resume_s3
from ._summary import BatchStats
from ._writer import OutputWriter

if TYPE_CHECKING:
    from rich.console import Console

    from aiosagemaker import AsyncInvoker, AwsContext

    from ._inputs import InputSource
    from ._journal import JournalHeader, JournalWriter, ResumeState
    from ._options import BatchOptions
    from ._parts import PartStore
    from ._recovery import Recovery
    from ._s3 import S3Objects
    from ._start import RunLock
    from ._writer import RecordTask, RecordWriter

__all__ = ["BatchJob"]

logger = logging.getLogger("aiosagemaker")

# How often OUTPUT is written and fsynced, the watermark journaled (unordered jobs) and the journal
# committed.
_FLUSH_INTERVAL = 0.25


class BatchJob:
    """One run of a batch job (a first run or a resumption); :meth:`run` it once.

    :param console: where progress and warnings go (stderr by default).
    :param progress: draw a progress bar (by default: when ``console`` is a terminal).
    :param log_interval: seconds between plain progress lines when there is no bar (``0``: none).
    :raises BatchUsageError: options no run could use (see :meth:`BatchOptions.check`).
    """

    def __init__(
        self,
        options: BatchOptions,
        *,
        console: Console | None = None,
        progress: bool | None = None,
        log_interval: float = 5.0,
    ) -> None:
        options.check()
        self.options = options
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self._progress_bar = progress
        self._log_interval = log_interval
        self.stats = BatchStats()
        #: what the journal and OUTPUT said was done when this run started (``None``: a new job)
        self.resume: ResumeState | None = None
        self.job_id = ""
        self._header: JournalHeader | None = None
        self._stopping = False
        self._fatal: BaseException | None = None
        self._tasks: set[RecordTask] = set()
        self._producer: asyncio.Task[None] | None = None
        self._grace_task: asyncio.Task[None] | None = None
        self._journal: JournalWriter | None = None
        self._writer: RecordWriter | None = None
        self._aws: AwsContext | None = None
        self._s3: S3Objects | None = None
        self._invoker: AsyncInvoker | None = None
        self._recovery: Recovery | None = None

    # --- control -------------------------------------------------------------------------------

    @property
    def interrupted(self) -> bool:
        return self._stopping

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop submitting; wait up to ``grace`` seconds for results of what was sent.

        A second call stops waiting at once.

        :param reason: why, for the debug log.
        """
        if self._stopping:
            self._cancel_all()
            return
        logger.debug("stopping the batch job: %s", reason)
        self._stopping = True
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

    def _fail_run(self, exc: BaseException) -> None:
        """Stop the run because of ``exc``, which :meth:`run` raises at the end (the first one)."""
        if self._fatal is None:
            self._fatal = exc
            self.request_stop("fatal error")

    def inference_id(self, n: int) -> str:
        """The inference id of input ``n`` in this job: the same on every rerun."""
        return inference_id_of(self.job_id, n)

    # --- the run -------------------------------------------------------------------------------

    async def run(self) -> BatchStats:
        """Run (or resume) the job to the end; return its statistics.

        :raises BatchUsageError: bad input path, a journal of another job or in use by another run,
            a damaged journal, an input changed since the job started, an OUTPUT in the way.
        :raises BatchConfigError: AWS trouble that no input can get past (credentials, endpoint);
            OUTPUT or the journal cannot be written (a full disk): a rerun resumes.
        """
        o = self.options
        target = o.target()
        source = o.open_input()
        try:
            if source.uses_s3 or target.s3 is not None:
                self._aws, self._s3 = await open_job_s3(o)
            await open_job_source(source, self._s3)
            if target.journal is None:
                await self._run_s3_locked(source)
            else:
                await self._run_file_locked(source)
        finally:
            try:
                await source.aclose()
            finally:
                if self._aws is not None:
                    await self._aws.aclose()
        fatal = self._fatal
        if isinstance(fatal, BatchUsageError):
            raise fatal
        if isinstance(fatal, OSError) and self._journal is not None:
            # The processor's: an intent that could not be journaled (nothing was sent).
            raise _journal_error(self._journal, fatal)
        if fatal is not None:
            raise BatchConfigError(str(fatal))
        return self.stats

    async def _run_file_locked(self, source: InputSource) -> None:
        """A local journal: lock it (flock), read it, run."""
        o = self.options
        locking = asyncio.ensure_future(asyncio.to_thread(lock_run, o))
        try:
            lock = await asyncio.shield(locking)
        except asyncio.CancelledError:
            locking.add_done_callback(_release_when_locked)  # the thread may lock all the same
            raise
        try:
            header, self.resume = await asyncio.to_thread(start_or_resume, o, source)
            journal = Journal(
                lock.path,
                truncate_to=0 if self.resume is None else self.resume.good_length,
                fsync=o.fsync,
            )
            await self._run_started(source, header, journal)
        finally:
            await asyncio.shield(asyncio.to_thread(lock.release))

    async def _run_s3_locked(self, source: InputSource) -> None:
        """A journal in S3 beside the parts: take its lease, read it, run."""
        s3, target = self._s3, self.options.target()
        assert s3 is not None and target.s3 is not None
        prefix = journal_prefix(target.s3)
        lock = S3RunLock(s3, prefix, on_lost=lambda m: self._fail_run(BatchConfigError(m)))
        try:
            await lock.acquire()
        except S3Error as exc:
            raise BatchConfigError(f"cannot lock the job's journal: {exc}") from None
        try:
            try:
                header, self.resume, lines, next_seq = await start_or_resume_s3(
                    self.options, source, s3
                )
            except S3Error as exc:
                raise BatchConfigError(f"cannot read the job's journal: {exc}") from None
            journal = S3Journal(s3, prefix, next_seq=next_seq)
            journal.replay(lines)
            await self._run_started(source, header, journal)
        finally:
            await asyncio.shield(lock.release())

    async def _run_started(
        self, source: InputSource, header: JournalHeader, journal: JournalWriter
    ) -> None:
        o = self.options
        self._header, self.job_id = header, header.job_id
        total = None
        if self._show_bar():
            total = await asyncio.to_thread(source.count)
            if total is not None and o.shard is not None:
                total = round(total / o.shard.count)
        self.stats.total_hint = total
        try:
            await self._run(source, journal)
        finally:
            self._take_invoker_counts()
            self.stats.finished = time.monotonic()
            if self._grace_task is not None:
                self._grace_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._grace_task

    def _show_bar(self) -> bool:
        return self.console.is_terminal if self._progress_bar is None else self._progress_bar

    async def _run(self, source: InputSource, journal: JournalWriter) -> None:
        """Open OUTPUT, the journal, the invoker and the recovery; run the pipeline; close all."""
        o, resume = self.options, self.resume
        writer = self._make_writer(journal)
        self._writer, self._journal = writer, journal
        try:
            await asyncio.to_thread(writer.open)
            await asyncio.to_thread(journal.open)
            if resume is None:
                assert self._header is not None
                journal.append(self._header.to_json())
            else:
                journal.append(resume_entry())
            await journal.commit()
            await writer.start(overwrite=o.overwrite)
            self._invoker = await open_invoker(o)
            if resume is not None:
                self._recovery = await open_recovery(o, resume)
            processor = InputProcessor(
                o,
                job_id=self.job_id,
                journal=journal,
                invoker=self._invoker,
                recovery=self._recovery,
                stats=self.stats,
                stopping=lambda: self._stopping,
                fail_run=self._fail_run,
            )
            await self._pipeline(source, processor, writer)
        finally:
            await self._close()

    def _make_writer(self, journal: JournalWriter) -> RecordWriter:
        o, resume = self.options, self.resume
        target = o.target()
        common: dict[str, Any] = {
            "ordered": o.ordered,
            "window": o.max_pending,
            "journal": journal,
            "stats": self.stats,
            "on_error": self._fail_run,
        }
        if target.kind == "file":
            assert target.path is not None
            return OutputWriter(
                target.path,
                keep_bytes=None if resume is None else resume.output_good_length,
                fsync=o.fsync,
                **common,
            )
        store: PartStore
        if target.s3 is not None:
            assert self._s3 is not None
            store = S3Parts(self._s3, target.s3)
        else:
            assert target.path is not None
            store = LocalParts(target.path, fsync=o.fsync)
        parts = [] if resume is None else resume.parts
        return PartWriter(
            store,
            fmt=target.fmt,
            committed=[p.name for p in parts],
            next_part=max((p.k for p in parts), default=-1) + 1,
            resuming=resume is not None,
            part_records=o.part_records,
            part_bytes=o.part_bytes,
            part_seconds=o.part_seconds,
            **common,
        )

    async def _pipeline(
        self, source: InputSource, processor: InputProcessor, writer: RecordWriter
    ) -> None:
        reporter = ProgressReporter(
            self.stats, self.console, interval=self._log_interval, bar=self._show_bar()
        )
        async with asyncio.TaskGroup() as tg:
            progress = tg.create_task(reporter.run())
            checkpoints = tg.create_task(self._checkpoint_loop(writer))
            self._producer = tg.create_task(self._produce(source, tg, processor, writer))
            try:
                await writer.run()
            finally:
                progress.cancel()
                checkpoints.cancel()
                self._producer.cancel()

    async def _produce(
        self,
        source: InputSource,
        tg: asyncio.TaskGroup,
        processor: InputProcessor,
        writer: RecordWriter,
    ) -> None:
        """Read the inputs in order; start a task for each one not done yet, within the window."""
        o, resume = self.options, self.resume
        try:
            async for item in source.items():
                if o.shard is not None and item.input_id not in o.shard:
                    continue
                self.stats.inputs += 1
                self.stats.duplicates.add(item.input_id)  # before the resume skip: reruns agree
                if resume is not None and resume.is_done(item.n):
                    self.stats.already_done += 1
                    writer.already_written(item.n)
                    continue
                entry = resume.entries.pop(item.n, None) if resume is not None else None
                await writer.reserve()
                task = tg.create_task(processor.process(item, entry))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                writer.add(item.n, task)
        except OSError as exc:
            self._fail_run(BatchUsageError(f"cannot read the input: {exc}"))
        finally:
            self.stats.duplicates.warn()
            writer.finish()

    async def _checkpoint_loop(self, writer: RecordWriter) -> None:
        journal = self._journal
        assert journal is not None
        while True:
            await asyncio.sleep(_FLUSH_INTERVAL)
            # OUTPUT on disk first: a mark must never claim a record a power loss could take.
            await writer.flush(sync=True)
            writer.checkpoint()
            self._take_invoker_counts()
            try:
                await journal.commit()
            except OSError as exc:
                # What was not written stays queued: the close tries it once more.
                self._fail_run(_journal_error(journal, exc))
                return

    def _take_invoker_counts(self) -> None:
        if self._invoker is not None:
            self.stats.take_invoker_counts(self._invoker.statistics())

    async def _close(self) -> None:
        """Close everything :meth:`_run` opened; each step runs even if one before it failed."""
        writer, journal = self._writer, self._journal
        try:
            if writer is not None:
                # OUTPUT written and fsynced, then the last watermark, committed with the journal.
                await writer.flush(sync=True, final=True)
                writer.checkpoint()
        finally:
            try:
                try:
                    if self._recovery is not None:
                        await self._recovery.aclose()
                finally:
                    if self._invoker is not None:
                        self._take_invoker_counts()
                        await self._invoker.aclose()
            finally:
                try:
                    if journal is not None:
                        try:
                            await journal.aclose()
                        except OSError as exc:
                            self._fail_run(_journal_error(journal, exc))
                finally:
                    if writer is not None:
                        writer.close()


def _release_when_locked(locking: asyncio.Future[RunLock]) -> None:
    if not locking.cancelled() and locking.exception() is None:
        locking.result().release()


def _journal_error(journal: JournalWriter, exc: OSError) -> BatchConfigError:
    return BatchConfigError(
        f"cannot write the journal {journal.path}: {exc.strerror or exc}; what it holds is "
        "intact, and the next run resumes from it"
    )
