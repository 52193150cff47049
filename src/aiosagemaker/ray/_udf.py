"""``AsyncInference``: the callable class Ray Data's ``map_batches`` runs on an actor pool.

Ray Data runs a class whose ``__call__`` is an async generator on an event loop of its own in each
actor (a thread it starts once per actor), so each actor opens one
:class:`~aiosagemaker.AsyncInvoker` on its first batch and keeps it, with the background flush of
its journal, on that loop for its life.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from aiosagemaker.batch import BatchOptions, BatchStats
from aiosagemaker.batch._connect import open_invoker
from aiosagemaker.batch._input_base import JSON_CONTENT_TYPE, InputItem
from aiosagemaker.batch._journal import JournalEntry
from aiosagemaker.batch._options import DEFAULT_INLINE_OUTPUT_BYTES
from aiosagemaker.batch._processor import InputProcessor, inference_id_of
from aiosagemaker.batch._records import output_record
from aiosagemaker.batch._recovery import Recovery

from ._columns import result_columns
from ._journal import ActorJournal, BatchJournal, batch_key
from ._store import open_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import pyarrow as pa

    from aiosagemaker import AsyncInvoker

    from ._store import JournalStore

__all__ = ["DEFAULT_FLUSH_INTERVAL", "AsyncInference"]

logger = logging.getLogger("aiosagemaker")

# Seconds a shutting-down actor waits for its invoker to close.
_CLOSE_TIMEOUT = 10.0

#: Acceptances are journaled at least this often: only the inputs accepted since the last flush
#: can run twice when an actor dies. Each flush is one small PUT per batch in flight.
DEFAULT_FLUSH_INTERVAL = 2.0


class AsyncInference:
    """Sends each row of a Ray Dataset to a SageMaker async endpoint and adds its result columns.

    For :meth:`ray.data.Dataset.map_batches` on an actor pool. Each actor owns one
    :class:`~aiosagemaker.AsyncInvoker` (its limits are per actor: the job's add up to
    ``actors x concurrency``, see :func:`split_limits`) and an S3 polling watcher under an output
    path extension of its own, so actors never take one another's results. A batch's rows are
    submitted concurrently; the batch is yielded once every row has its result.

    .. code-block:: python

        ds = ray.data.read_parquet("s3://bucket/inputs/")   # columns n (int), id, body
        results = ds.map_batches(
            AsyncInference,
            fn_constructor_kwargs={"endpoint": "my-async-endpoint", "job_id": "job-42",
                                   "journal": "s3://bucket/results/_journal/ray/",
                                   "concurrency": 128},
            batch_format="pyarrow", batch_size=256,
            compute=ray.data.ActorPoolStrategy(size=4),   # 4 actors, each its own invoker
        )

    The rows come out with their input columns (less the payload) and: ``inference_id``,
    ``status`` (``completed``, ``failed``, ``invalid`` or ``error``), ``output_location``,
    ``output_content_type``, ``output`` (small text or JSON outputs, as JSON text),
    ``failure_reason``, ``timings`` (``submitted``, ``accepted``, ``completed``, ``latency_ms``),
    ``resent`` (sent again by a retried task: it may have run twice) and ``recovered`` (accepted
    by an earlier try and collected, not sent again). An error in a row becomes that row's
    ``status`` and ``failure_reason``: ``__call__`` never raises for it, which would fail the
    Dataset.

    **Exactly-once results with Ray's retries.** The inference id of a row is
    ``<job_id>-<n>``; acceptances are journaled under ``journal`` at least every
    ``flush_interval`` seconds and at the end of each batch. When an actor dies, Ray restarts it
    and retries its task; the retry collects the rows journaled as accepted from their locations
    and sends the others again, counting them (``resent``): only the rows accepted since the
    last flush can have run twice.

    :param endpoint: the endpoint's name.
    :param job_id: the job's id, the same on every try (it names the inference ids).
    :param journal: the job's journal: an ``s3://`` prefix, or a local directory for a cluster
        on one machine.
    :param concurrency: requests in flight per actor (``max_concurrent_invocations``).
    :param max_pending: requests submitted and not yet resolved, per actor.
    :param key_column: the column of each row's number ``n``: an integer unique in the job.
    :param payload_column: the column sent as the request body (bytes or text; other values are
        sent as JSON).
    :param id_column: the column of each row's id (``None``: the row number).
    :param content_type_column: a column of per-row content types (``None``: ``content_type``).
    :param error_column: a column saying why a row cannot be sent (the row becomes ``invalid``).
    :param content_type: the content type of rows without one of their own.
    :param flush_interval: seconds between two journal flushes (at most 5).
    :param poll_interval: seconds between two S3 listings of the results.
    :param staging: an ``s3://`` prefix for payloads over the 128,000-byte inline limit.
    :param request_ttl: ``RequestTTLSeconds`` of each request: how long it may wait in the
        endpoint's queue (``None``: the endpoint's default).
    :param invocation_timeout: ``InvocationTimeoutSeconds`` of each request: how long the model
        may take (``None``: the endpoint's default).
    :param inline_output_bytes: outputs up to this size that are text or JSON go in ``output``.
    :param region: the AWS region (``None``: the actor's ``AWS_REGION`` / ``AWS_DEFAULT_REGION``
        or configuration).
    :param profile: a named profile of the actor's AWS config files.
    :param endpoint_url: the SageMaker runtime's URL (``None``:
        ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, then the region's); S3 follows
        ``AWS_ENDPOINT_URL_S3``.
    :param expected_bucket_owner: the account that must own every bucket the actor reads or
        writes (sent as ``ExpectedBucketOwner``).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        endpoint: str,
        *,
        job_id: str,
        journal: str,
        concurrency: int = 64,
        max_pending: int = 10_000,
        key_column: str = "n",
        payload_column: str = "body",
        id_column: str | None = "id",
        content_type_column: str | None = None,
        error_column: str | None = None,
        content_type: str | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        poll_interval: float = 1.0,
        staging: str | None = None,
        request_ttl: int | None = None,
        invocation_timeout: int | None = None,
        inline_output_bytes: int = DEFAULT_INLINE_OUTPUT_BYTES,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        expected_bucket_owner: str | None = None,
    ) -> None:
        if not 0 < flush_interval <= 5:
            raise ValueError(f"flush_interval must be above 0 and at most 5, not {flush_interval}")
        self._options = BatchOptions(
            endpoint=endpoint,
            input="ray",
            output="ray",
            concurrency=concurrency,
            max_pending=max_pending,
            poll_interval=poll_interval,
            staging=staging,
            request_ttl=request_ttl,
            invocation_timeout=invocation_timeout,
            inline_output_bytes=inline_output_bytes,
            region=region,
            profile=profile,
            endpoint_url=endpoint_url,
            expected_bucket_owner=expected_bucket_owner,
            content_type=content_type,
        )
        if concurrency < 1 or max_pending < 1:
            raise ValueError("concurrency and max_pending must be at least 1")
        self._job_id = job_id
        self._journal_spec = journal
        self._flush_interval = flush_interval
        self._key = key_column
        self._payload = payload_column
        self._id = id_column
        self._content_type = content_type_column
        self._error = error_column
        self._token = uuid.uuid4().hex[:12]
        self._opening = asyncio.Lock()
        self._store: JournalStore | None = None
        self._journal: ActorJournal | None = None
        self._invoker: AsyncInvoker | None = None
        self._recovery: Recovery | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: this actor's counts (its invoker's, and rows resent or recovered)
        self.stats = BatchStats()

    def __repr__(self) -> str:
        return f"<AsyncInference [{self._options.endpoint} | job {self._job_id} | {self._token}]>"

    async def __call__(self, batch: pa.Table | dict[str, Any]) -> AsyncIterator[pa.Table]:
        """Send the batch's rows; yield them, with their result columns, as one table."""
        import pyarrow as pa

        table = batch if isinstance(batch, pa.Table) else pa.table(batch)
        rows = table.to_pylist()
        items = [self._item(row) for row in rows]
        resent = [False] * len(items)
        recovered = [False] * len(items)
        if not items:
            records: list[dict[str, Any]] = []
        else:
            try:
                records = await self._process(items, resent, recovered)
            except Exception as exc:  # the journal or AWS: every row says so, none is sent
                reason = f"{type(exc).__name__}: {exc}"
                records = [self._error_record(item, reason) for item in items]
        if self._payload in table.column_names:
            table = table.drop_columns([self._payload])
        for name, column in result_columns(records, resent, recovered).items():
            if name in table.column_names:
                table = table.drop_columns([name])
            table = table.append_column(name, column)
        yield table

    async def _process(
        self, items: list[InputItem], resent: list[bool], recovered: list[bool]
    ) -> list[dict[str, Any]]:
        invoker, journal = await self._open()
        key = batch_key([item.n for item in items])
        entries: dict[int, JournalEntry] = {}
        retried = await journal.started_before(key)
        if retried:
            entries = await journal.accepted_in(key)
            if entries:
                await self._open_recovery()
        else:
            await journal.mark_started(key, [item.n for item in items])
        batch_journal = BatchJournal(journal, key)

        async def one(i: int, item: InputItem) -> dict[str, Any]:
            entry = entries.get(item.n)
            if entry is None and retried and item.error is None:
                # An earlier try may have sent it after its last flush: sent again, counted.
                inference_id = inference_id_of(self._job_id, item.n)
                entry = JournalEntry(inference_id=inference_id, state="intent")
                resent[i] = True
            recovered[i] = entry is not None and entry.state == "accepted"
            return await self._row(item, entry, invoker, batch_journal)

        try:
            records = list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))
        finally:
            try:
                await journal.flush(key)
            except OSError as exc:
                logger.warning("cannot write to the job's journal %s: %s", journal.store.where, exc)
        self.stats.take_invoker_counts(invoker.statistics())
        return records

    async def _row(
        self,
        item: InputItem,
        entry: JournalEntry | None,
        invoker: AsyncInvoker,
        journal: BatchJournal,
    ) -> dict[str, Any]:
        failures: list[BaseException] = []
        processor = InputProcessor(
            self._options,
            job_id=self._job_id,
            journal=journal,
            invoker=invoker,
            recovery=self._recovery,
            stats=self.stats,
            stopping=lambda: False,
            fail_run=failures.append,
        )
        try:
            record = await processor.process(item, entry)
        except Exception as exc:  # never out of __call__: it would fail the whole Dataset
            logger.debug("input %d failed: %s", item.n, type(exc).__name__)
            record, failures = None, [exc]
        if record is None:
            reason = str(failures[0]) if failures else "no result"
            return self._error_record(item, reason)
        return record

    def _error_record(self, item: InputItem, reason: str) -> dict[str, Any]:
        if item.error is not None:
            return output_record(item, status="invalid", reason=item.error)
        inference_id = inference_id_of(self._job_id, item.n)
        return output_record(item, status="error", inference_id=inference_id, reason=reason)

    def _item(self, row: dict[str, Any]) -> InputItem:
        n = int(row[self._key])
        input_id = row.get(self._id) if self._id is not None else None
        content_type = row.get(self._content_type) if self._content_type is not None else None
        error = row.get(self._error) if self._error is not None else None
        item = InputItem(
            n=n,
            input_id=str(n) if input_id is None else str(input_id),
            content_type=content_type or self._options.content_type,
            error=error,
        )
        if error is not None:
            return item
        body = row.get(self._payload)
        if isinstance(body, bytes):
            item.body = body
        elif isinstance(body, str):
            item.body = body.encode()
        elif body is None:
            item.error = f"no {self._payload!r} value to send"
        else:
            item.body = orjson.dumps(body)
            item.content_type = item.content_type or JSON_CONTENT_TYPE
        return item

    async def _open(self) -> tuple[AsyncInvoker, ActorJournal]:
        """This actor's invoker and journal, opened on its first batch."""
        async with self._opening:
            if self._invoker is not None and self._journal is not None:
                return self._invoker, self._journal
            o = self._options
            self._loop = asyncio.get_running_loop()
            if self._store is None:
                self._store = await open_store(
                    self._journal_spec,
                    region=o.region,
                    profile=o.profile,
                    expected_bucket_owner=o.expected_bucket_owner,
                )
            journal = ActorJournal(
                self._store, token=self._token, flush_interval=self._flush_interval
            )
            await journal.register()
            self._invoker = await _open_invoker(o, run_id=f"{self._job_id}-{self._token}")
            self._journal = journal
            self._flusher = asyncio.ensure_future(journal.run())
            return self._invoker, journal

    async def _open_recovery(self) -> None:
        async with self._opening:
            if self._recovery is None:
                recovery = Recovery(self._options)
                await recovery.open()
                self._recovery = recovery

    def __del__(self) -> None:
        # Ray Data drops its instance when the actor pool shuts down gracefully, from another
        # thread than the actor's event loop: close there (a killed actor never gets here, which
        # the journal is for).
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout=_CLOSE_TIMEOUT)

    async def aclose(self) -> None:
        """Flush the journal, close the invoker (results not yet collected fail as closed).

        Ray Data calls it through ``__del__`` when the pool shuts down; call it yourself outside
        Ray.
        """
        self._loop = None
        if self._flusher is not None:
            self._flusher.cancel()
        try:
            if self._journal is not None:
                await self._journal.flush()
        finally:
            try:
                if self._recovery is not None:
                    await self._recovery.aclose()
            finally:
                try:
                    if self._invoker is not None:
                        await self._invoker.aclose()
                finally:
                    if self._store is not None:
                        await self._store.aclose()


async def _open_invoker(options: BatchOptions, *, run_id: str) -> AsyncInvoker:
    """The batch job's invoker; its errors as ``OSError`` (they become every row's reason)."""
    from aiosagemaker.batch import BatchConfigError, BatchUsageError

    try:
        return await open_invoker(options, run_id=run_id)
    except (BatchConfigError, BatchUsageError) as exc:
        raise OSError(str(exc)) from None
