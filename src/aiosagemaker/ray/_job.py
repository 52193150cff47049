"""``aiosagemaker batch --ray``: the batch job on a Ray cluster, with the same inputs, outputs and
record format as the single-process job.

How it runs. The driver (this process) reads the inputs as the batch job does (JSON Lines,
Parquet, directories, ``s3://``) into Arrow blocks of rows ``n``, ``id``, ``body``, put in Ray's
object store (which spills to disk) as they are cut, before the actors start; Ray Data maps
them with :class:`~._udf.AsyncInference` on a pool of ``actors`` actors, each with its own
invoker and an equal share of the job's limits (:func:`~._limits.split_limits`); the driver
writes the result rows as OUTPUT records, in input order unless ``--unordered``, to the same
targets as the batch job (a JSON Lines file, written to a temporary file and renamed into place
at the end; or parts, locally or under ``s3://``).

The journal (:mod:`._journal`) is beside OUTPUT: ``PREFIX/_journal/ray/`` for an ``s3://``
OUTPUT, else the directory ``OUTPUT.ray-journal`` (``--journal`` names another), which only
actors on this machine can write. It holds the job's id, so a rerun after the driver itself died
sends nothing journaled as accepted again; it is deleted once OUTPUT is complete.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from aiosagemaker import InvalidRequestError, Limits
from aiosagemaker.batch import BatchConfigError, BatchStats, BatchUsageError
from aiosagemaker.batch._opening import open_job_s3, open_job_source
from aiosagemaker.batch._progress import ProgressReporter
from aiosagemaker.batch._s3 import S3Error
from aiosagemaker.batch._s3_journal import journal_prefix

from ._columns import record_of_row
from ._errors import require_ray
from ._limits import split_limits
from ._output import JobOutput
from ._store import open_store
from ._udf import DEFAULT_FLUSH_INTERVAL, AsyncInference

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

    import pyarrow as pa
    from rich.console import Console

    from aiosagemaker import AwsContext
    from aiosagemaker.batch import BatchOptions
    from aiosagemaker.batch._inputs import InputSource
    from aiosagemaker.batch._s3 import S3Objects

    from ._store import JournalStore

__all__ = ["RayBatchJob", "forwarded_environment"]

logger = logging.getLogger("aiosagemaker")

# Variables the actors need to reach the same AWS endpoints as the driver. Credentials are not
# among them: on a cluster, the nodes have their own (an instance role); on a local cluster the
# actors inherit this process's environment anyway.
_FORWARDED = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED")
_FORWARDED_PREFIX = "AWS_ENDPOINT_URL"
# Rows per batch and per input block: a batch fills an actor's concurrency; a block is a few
# batches, so that the blocks spread across the actors.
_MAX_BATCH = 1024
_BATCHES_PER_BLOCK = 4


def forwarded_environment() -> dict[str, str]:
    """The environment variables passed to the actors (AWS endpoints and region, no secrets)."""
    return {
        k: v for k, v in os.environ.items() if k in _FORWARDED or k.startswith(_FORWARDED_PREFIX)
    }


class RayBatchJob:
    """One run of a batch job on Ray; :meth:`run` it once.

    .. code-block:: python

        stats = await RayBatchJob(BatchOptions(endpoint="my-ep", input="s3://b/in/",
                                               output="s3://b/out/"), actors=8).run()

    :param options: the batch job's options; ``concurrency`` and ``max_pending`` are the job's
        totals, split evenly across the actors.
    :param actors: the size of the actor pool.
    :param address: the Ray cluster to connect to (``None``: the one this process is connected
        to, else a new local one).
    :param flush_interval: seconds between two journal flushes in each actor (at most 5).
    :param num_cpus: CPUs Ray reserves for each actor.
    :raises BatchUsageError: options no run could use.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        options: BatchOptions,
        *,
        actors: int = 2,
        address: str | None = None,
        console: Console | None = None,
        progress: bool | None = None,
        log_interval: float = 5.0,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        num_cpus: float = 1.0,
    ) -> None:
        options.check()
        if actors < 1:
            raise BatchUsageError("--actors must be at least 1")
        if options.watcher != "s3":
            raise BatchUsageError(
                "--ray watches results with S3 polling, each actor under its own output path "
                "extension: with --watcher sqs the actors would take one another's notifications"
            )
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.options = options
        self.actors = actors
        self.address = address
        self.console = console
        self._bar = progress
        self._log_interval = log_interval
        self.flush_interval = flush_interval
        self.num_cpus = num_cpus
        self.stats = BatchStats()
        self.job_id = ""
        self._stop = threading.Event()
        self._aws: AwsContext | None = None
        self._s3: S3Objects | None = None
        self._results: asyncio.Queue[pa.Table | BaseException | None] | None = None

    @property
    def interrupted(self) -> bool:
        """Whether :meth:`request_stop` was called: the run stops taking results, and its
        journal stays for a rerun."""
        return self._stop.is_set()

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop: no more results are taken; the journal stays for a rerun."""
        logger.debug("stopping the batch job: %s", reason)
        self._stop.set()
        self.stats.interrupted = True
        if self._results is not None:
            self._results.put_nowait(None)  # the loop's thread: wake the writer

    # --- the run -------------------------------------------------------------------------------

    async def run(self) -> BatchStats:
        """Run the job on Ray to the end; return its statistics.

        :raises RayUnavailableError: Ray Data is not installed.
        :raises BatchUsageError: a bad input, an OUTPUT in the way.
        :raises BatchConfigError: AWS trouble no input can get past; OUTPUT cannot be written.
        """
        ray = require_ray()
        o = self.options
        target = o.target()
        source = o.open_input()
        try:
            if source.uses_s3 or target.s3 is not None:
                self._aws, self._s3 = await open_job_s3(o)
            await open_job_source(source, self._s3)
            store = await self._open_store()
            try:
                await self._run(ray, source, store)
            finally:
                await store.aclose()
        finally:
            try:
                await source.aclose()
            finally:
                self.stats.finished = time.monotonic()
                if self._aws is not None:
                    await self._aws.aclose()
        return self.stats

    def _journal_spec(self) -> str:
        o, target = self.options, self.options.target()
        if target.s3 is not None:
            return str(journal_prefix(target.s3).join("ray/"))
        if o.journal is not None:
            return str(o.journal.resolve())
        return str(Path(f"{o.output}.ray-journal").resolve())

    async def _open_store(self) -> JournalStore:
        o = self.options
        try:
            return await open_store(
                self._journal_spec(),
                region=o.region,
                profile=o.profile,
                expected_bucket_owner=o.expected_bucket_owner,
            )
        except InvalidRequestError as exc:
            raise BatchUsageError(str(exc)) from None
        except Exception as exc:
            raise BatchConfigError(f"{type(exc).__name__}: {exc}") from None

    async def _run(self, ray: ModuleType, source: InputSource, store: JournalStore) -> None:
        output = JobOutput(self.options, self._s3)
        started_ray = self._connect(ray)
        try:
            resuming = await self._start(store, output)
            await output.start(resuming=resuming)
            blocks = await self._read(ray, source)
            await self._execute(ray, blocks, output)
            await output.finish(complete=not self.interrupted)
            if not self.interrupted:
                await store.delete_all()
        except S3Error as exc:
            raise BatchConfigError(str(exc)) from None
        except OSError as exc:
            raise BatchConfigError(f"cannot write OUTPUT {self.options.output}: {exc}") from None
        finally:
            try:
                await output.discard()
            finally:
                if started_ray:
                    ray.shutdown()

    def _connect(self, ray: ModuleType) -> bool:
        """Connect to the cluster (or start a local one); return whether this run must shut it
        down. A process already connected (a notebook, a test) keeps its connection."""
        if ray.is_initialized():
            return False
        try:
            ray.init(
                address=self.address,
                include_dashboard=False,
                runtime_env={"env_vars": forwarded_environment()},
                logging_level=logging.WARNING,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BatchConfigError(f"cannot connect to the Ray cluster: {exc}") from None
        return True

    async def _start(self, store: JournalStore, output: JobOutput) -> bool:
        """Take the job's id from the journal (a rerun), or start a new job; return whether this
        is a rerun.

        :raises BatchUsageError: OUTPUT exists with no journal; the journal is another job's.
        """
        o = self.options
        found = await store.get("job.json")
        if found is not None:
            job = orjson.loads(found)
            if job.get("endpoint") != o.endpoint or job.get("input") != o.input:
                raise BatchUsageError(
                    f"the journal {store.where} is of another job (endpoint "
                    f"{job.get('endpoint')!r}, input {job.get('input')!r}); remove it or choose "
                    "another OUTPUT"
                )
            self.job_id = str(job["job_id"])
            return True
        if not o.overwrite and await output.exists():
            raise BatchUsageError(
                f"OUTPUT {o.output} exists and there is no journal {store.where} to resume from; "
                "remove it or pass --overwrite"
            )
        self.job_id = uuid.uuid4().hex[:12]
        job = {"job_id": self.job_id, "endpoint": o.endpoint, "input": o.input}
        await store.put("job.json", orjson.dumps(job))
        return False

    async def _read(self, ray: ModuleType, source: InputSource) -> list[Any]:
        """The inputs, as Arrow blocks of rows in Ray's object store (which spills to disk), not
        in this process: the driver reads them as the batch job does."""
        import pyarrow as pa

        o = self.options
        block = self._batch_size() * _BATCHES_PER_BLOCK
        blocks: list[Any] = []
        columns: dict[str, list[Any]] = {k: [] for k in _INPUT_TYPES}
        rows = 0

        def cut() -> None:
            types = _input_types()
            table = pa.table({k: pa.array(v, types[k]) for k, v in columns.items()})
            blocks.append(ray.put(table))
            for values in columns.values():
                values.clear()

        try:
            async for item in source.items():
                if o.shard is not None and item.input_id not in o.shard:
                    continue
                self.stats.duplicates.add(item.input_id)
                columns["n"].append(item.n)
                columns["id"].append(item.input_id)
                columns["body"].append(item.body)
                columns["input_content_type"].append(item.content_type)
                columns["input_error"].append(item.error)
                rows += 1
                if len(columns["n"]) >= block:
                    cut()
        except OSError as exc:
            raise BatchUsageError(f"cannot read the input: {exc}") from None
        finally:
            self.stats.duplicates.warn()
        if columns["n"] or not blocks:
            cut()
        self.stats.total_hint = rows
        return blocks

    def _batch_size(self) -> int:
        limits = Limits(max_concurrent_invocations=self.options.concurrency)
        return min(_MAX_BATCH, split_limits(limits, self.actors).max_concurrent_invocations)

    def _udf_kwargs(self) -> dict[str, Any]:
        o = self.options
        limits = split_limits(
            Limits(max_concurrent_invocations=o.concurrency, max_pending=o.max_pending),
            self.actors,
        )
        return {
            "endpoint": o.endpoint,
            "job_id": self.job_id,
            "journal": self._journal_spec(),
            "concurrency": limits.max_concurrent_invocations,
            "max_pending": limits.max_pending,
            "content_type_column": "input_content_type",
            "error_column": "input_error",
            "content_type": o.content_type,
            "flush_interval": self.flush_interval,
            "poll_interval": o.poll_interval,
            "staging": o.staging,
            "request_ttl": o.request_ttl,
            "invocation_timeout": o.invocation_timeout,
            "inline_output_bytes": o.inline_output_bytes,
            "region": o.region,
            "profile": o.profile,
            "endpoint_url": o.endpoint_url,
            "expected_bucket_owner": o.expected_bucket_owner,
        }

    async def _execute(self, ray: ModuleType, blocks: list[Any], output: JobOutput) -> None:
        """Run the Dataset; write its rows as they come (in input order unless unordered)."""
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = self.options.ordered
        dataset = ray.data.from_arrow_refs(blocks).map_batches(
            AsyncInference,
            fn_constructor_kwargs=self._udf_kwargs(),
            batch_format="pyarrow",
            batch_size=self._batch_size(),
            # Ray 2.51 deprecated `concurrency=` for the pool in favour of `compute=`.
            compute=ray.data.ActorPoolStrategy(size=self.actors),
            num_cpus=self.num_cpus,
        )
        del blocks
        await self._consume(dataset, output)

    async def _consume(self, dataset: Any, output: JobOutput) -> None:
        loop = asyncio.get_running_loop()
        results: asyncio.Queue[pa.Table | BaseException | None] = asyncio.Queue()
        self._results = results

        def pump() -> None:
            # Ray's iterator blocks: it runs in a thread of its own, which hands each table to the
            # loop. It is not joined: a stopping run leaves it to end with ray.shutdown() or at
            # its next table, rather than wait for the Dataset.
            try:
                batches: Iterator[pa.Table] = dataset.iter_batches(
                    batch_format="pyarrow", batch_size=None
                )
                for table in batches:
                    if self._stop.is_set():
                        return
                    loop.call_soon_threadsafe(results.put_nowait, table)
                loop.call_soon_threadsafe(results.put_nowait, None)
            except BaseException as exc:
                if not self._stop.is_set() and not loop.is_closed():
                    loop.call_soon_threadsafe(results.put_nowait, exc)

        reporter = ProgressReporter(
            self.stats,
            self.console,
            interval=self._log_interval,
            bar=self.console.is_terminal if self._bar is None else self._bar,
        )
        threading.Thread(target=pump, name="aiosagemaker-ray-results", daemon=True).start()
        async with asyncio.TaskGroup() as tg:
            progress = tg.create_task(reporter.run())
            try:
                while not self._stop.is_set():
                    got = await results.get()
                    if got is None:
                        break
                    if isinstance(got, BaseException):
                        raise BatchConfigError(f"the Ray Dataset failed: {got}") from got
                    await output.write([self._count(row) for row in got.to_pylist()])
            except BaseException:
                self._stop.set()
                raise
            finally:
                progress.cancel()

    def _count(self, row: dict[str, Any]) -> dict[str, Any]:
        s = self.stats
        s.inputs += 1
        s.written += 1
        s.count_result(row.get("status"))
        timings = row.get("timings") or {}
        if row.get("recovered"):
            s.recovered_tracked += 1
        elif timings.get("submitted") is not None:
            s.submitted += 1
            if timings.get("accepted") is not None:
                s.accepted += 1
            if timings.get("latency_ms") is not None:
                s.record_latency(timings["latency_ms"] / 1000)
        if row.get("resent"):
            s.resubmitted_after_crash += 1
        return record_of_row(row)


# The columns of the input blocks, and their Arrow types (built on use: pyarrow is optional).
_INPUT_TYPES = ("n", "id", "body", "input_content_type", "input_error")


def _input_types() -> dict[str, pa.DataType]:
    import pyarrow as pa

    return {
        "n": pa.int64(),
        "id": pa.string(),
        "body": pa.binary(),
        "input_content_type": pa.string(),
        "input_error": pa.string(),
    }
