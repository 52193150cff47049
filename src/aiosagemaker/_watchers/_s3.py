"""``S3Polling``: find results by listing the output and failure prefixes from a watermark.

Never one HEAD per pending job per poll. The watcher names each run's outputs so that they can be
found by listing (:meth:`S3Polling.placement`: a prefix of its own per watcher instance and a
filename that sorts by submission order), then, per poll, lists each directory that holds pending
outputs or failures once, from just below the lowest key still pending there, and feeds the
tracker only the objects that belong to pending jobs (the base then GETs each body once).

It always works from the locations returned for each job, never from a guess, so it works
without placement too (a caller's own ``Filename``/``S3OutputPathExtension``, or outputs named by
inference id, which do not sort by submission). What each listing costs is measured (a 1% sample
of the keys listed is remembered), and when listing from the lowest pending
key would cost more pages than HEADing a few of the lowest keys (a straggler with thousands of
finished outputs above it, a handful of jobs in a huge shared prefix, keys that sort far below the
rest), those few are HEADed instead, at most ``max_heads`` per directory per poll.

Errors (classified in :mod:`._errors`): throttling, 5xx and connection errors are retried by the
next poll and counted. A bucket that does not exist, or a listing denied (no ``s3:ListBucket``),
fails the pending jobs whose output or failure directory is affected, with a :class:`WatcherError`
naming the permission, once a second poll gives the same answer: a watcher that cannot list cannot
do its job, and quietly HEADing every pending key instead is the cost this design exists to avoid.
A straggler HEAD that answers 403 (S3's answer for a key not written yet without
``s3:ListBucket``) never fails a job: it is explained once and the job keeps waiting.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._core._events import Completed, Failed
from .._core._request import parse_s3_uri
from .._core._tracker import Tracker
from .._logs import logger
from ._base import Watcher
from ._errors import ErrorKind, Streak, classify

if TYPE_CHECKING:
    from .._core._events import Expected, ExpectResult, Outcome
    from ._errors import Verdict

__all__ = ["S3Polling"]


#: ``ListObjectsV2`` returns at most this many keys a page (the service maximum and default).
_PAGE = 1000
#: HEADs of straggling keys per directory per poll, by default: enough for the odd slow job,
#: small enough that a poll never degenerates into the naive one-HEAD-per-job loop.
DEFAULT_MAX_HEADS = 16
#: the cost model keeps every this-many-th listed key (1% of a listing's keys in memory).
_SAMPLE = 100
#: directories without pending jobs whose samples are kept (a next job there costs no survey).
_IDLE_DIRECTORIES = 256
#: directories listed at once in one poll.
_LIST_CONCURRENCY = 8
#: listing errors true of the whole bucket: every job with a directory in it fails.
_BUCKET_WIDE = frozenset({"NoSuchBucket", "AllAccessDisabled", "InvalidBucketName"})


@dataclass(frozen=True, slots=True)
class _Entry:
    """What is awaited at one location: a pending job's output, its failure object, or both (a
    failure path that is also the output path). One of three shared values, never one per job."""

    output: bool = False
    failure: bool = False


_OUTPUT = _Entry(output=True)
_FAILURE = _Entry(failure=True)
_BOTH = _Entry(output=True, failure=True)


@dataclass(slots=True)
class _Directory:
    """One bucket and key prefix (up to the last ``/``) holding pending outputs or failures.

    ``entries`` are keyed by the jobs' own location strings (``s3://bucket/key``, as the 202 named
    them), not by keys cut from them: a pending job costs a directory one dict entry and no string
    of its own. Within a directory, locations sort as their keys do (they share ``s3://bucket/``),
    and :meth:`key` cuts the key out of one where a key is needed (a listing's start, a HEAD).

    ``sample`` holds every :data:`_SAMPLE`-th key the listings saw (those at or above the lowest
    pending key): how many objects a listing from any key would return, give or take a sample,
    the cost model of :meth:`S3Polling._split`.
    """

    bucket: str
    prefix: str
    entries: dict[str, _Entry] = field(default_factory=dict)
    sample: list[str] = field(default_factory=list)
    #: repeated permanent errors of this directory's listings
    streak: Streak = field(default_factory=Streak)

    def key(self, location: str) -> str:
        """The key of ``location``, one of this directory's (``s3://<bucket>/<key>``)."""
        return location[len(self.bucket) + 6 :]

    def above(self, key: str) -> int:
        """About how many objects sort at or above ``key`` (as last listed)."""
        return (len(self.sample) - bisect.bisect_left(self.sample, key)) * _SAMPLE


class S3Polling(Watcher):
    """Resolve jobs by listing their output and failure prefixes: the default watcher.

    Each poll lists every directory that holds pending outputs or failures once (following every
    page), starting just below the lowest key still pending there. Outputs submitted through an
    invoker are placed under a prefix of this watcher's own (``aiosm-<run id>``) and named by a
    zero-padded submission counter, so a listing returns this run's newest results and little else.
    Nothing is listed while nothing is pending.

    .. code-block:: python

        async with AsyncInvoker("my-endpoint", watcher=S3Polling(interval=0.5)) as invoker:
            result = await (await invoker.submit(b"..."))

    **Output names.** By default the invoker asks for ``<output path>/aiosm-<run id>/
    000000000042.out`` (the ``S3OutputPathExtension`` and ``Filename`` request fields, only when the
    caller set neither). ``name_outputs=False`` keeps AWS's layout, ``<output path>/<inference
    id>.out``, for tools that expect it. The cost: inference ids (uuid4) do not sort by submission
    and the output path is shared with every run that wrote there, so the lowest pending key lies
    anywhere in it and each poll lists most of it: about ``N / 1000`` ListObjectsV2 calls a poll
    for ``N`` objects under the output path (old outputs included, until a lifecycle rule removes
    them), where named outputs cost one call per directory a poll whatever lies beside them. While
    at most ``max_heads`` jobs are pending it HEADs them instead (one call per job per poll).
    Measured on the local stack (1,000 jobs at once, 1 s polls): named outputs, 2.0 ListObjectsV2
    calls a poll (output and failure directory), with or without 5,000 older objects beside them;
    AWS's names, 1.8 in an empty output path and 5.75 beside 5,000 older objects.

    .. code-block:: python

        S3Polling(name_outputs=False)  # outputs at <output path>/<inference id>.out

    **Errors.** Throttling, 5xx and connection errors are retried by the next poll and counted in
    :meth:`statistics`. A bucket that does not exist fails its pending jobs with
    :class:`WatcherError` once two polls in a row say so; so does a listing denied, for the
    directory denied (``s3:ListBucket`` can be granted for some prefixes only), naming the
    permission to grant.

    :param interval: seconds between polls while jobs are pending (``0`` polls back to back).
    :param max_heads: at most this many HEADs per directory per poll, for straggling keys that
        would make a listing expensive; ``0`` only lists.
    :param name_outputs: name outputs so that they sort by submission (``False``: keep AWS's
        ``<inference id>.out``, at the cost above).
    :param run_id: this watcher's prefix is ``aiosm-<run_id>`` (a random one when ``None``).
    :param kwargs: the :class:`Watcher` options (``fetch``, ``expected_bucket_owner``, ...).

    .. versionadded:: 0.1
    """

    kind = "s3-poll"

    def __init__(
        self,
        *,
        interval: float = 1.0,
        max_heads: int = DEFAULT_MAX_HEADS,
        name_outputs: bool = True,
        run_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, not {interval!r}")
        if max_heads < 0:
            raise ValueError(f"max_heads must be >= 0, not {max_heads!r}")
        run_id = uuid.uuid4().hex[:16] if run_id is None else run_id
        prefix = f"aiosm-{run_id}"
        # The S3OutputPathExtension pattern and length (InvokeEndpointAsync API reference).
        if len(prefix) > 512 or not all(
            c.isascii() and (c.isalnum() or c in "!_.*'()/-") for c in prefix
        ):
            raise ValueError(f"run_id {run_id!r} is not valid in an S3OutputPathExtension")
        super().__init__(**kwargs)
        self.interval = interval
        self.max_heads = max_heads
        self.run_prefix = prefix
        self.name_outputs = name_outputs
        self._submitted = 0
        #: by ``s3://<bucket>/<prefix>``, the part of a location up to its last ``/``
        self._directories: dict[str, _Directory] = {}
        self._work = asyncio.Event()
        #: polls made.
        self.polls = 0

    def _new_tracker(self, hold_seconds: float) -> Tracker:
        # Its events are listings and HEADs: each names a location, never an inference id.
        return Tracker(hold_seconds=hold_seconds, match_ids=False)

    def placement(self) -> dict[str, str]:
        """This run's prefix, and a filename that sorts by submission order.

        ``000000000042.out``: twelve digits sort correctly up to a trillion submissions (the
        ``Filename`` field allows 32 characters, one dot, an alphanumeric first character).
        """
        if not self.name_outputs:
            return {}
        self._submitted += 1
        return {
            "output_path_extension": self.run_prefix,
            "filename": f"{self._submitted:012d}.out",
        }

    def _on_tracked(self, expected: Expected, result: ExpectResult) -> None:
        if result.outcome is not None:
            return  # settled from the hold at once: nothing to look for
        for location, role in (
            (expected.output_location, _OUTPUT),
            (expected.failure_location, _FAILURE),
        ):
            if location is None:
                continue
            entries = self._directory_of(location).entries
            entry = entries.get(location)
            entries[location] = role if entry is None or entry is role else _BOTH
        self._work.set()

    def _directory_of(self, location: str) -> _Directory:
        """The directory of ``location`` (a valid ``s3://`` URI: :meth:`track` checked it)."""
        name = _directory_name(location)
        directory = self._directories.get(name)
        if directory is None:
            target = parse_s3_uri(location, field="location")
            prefix = target.key[: target.key.rfind("/") + 1]
            directory = self._directories[name] = _Directory(target.bucket, prefix)
        return directory

    # --- polling ----------------------------------------------------------------------------------

    async def _watch(self) -> None:
        limit = asyncio.Semaphore(_LIST_CONCURRENCY)
        loop = asyncio.get_running_loop()
        while True:
            if not any(directory.entries for directory in self._directories.values()):
                # Nothing pending: no polling until the next track().
                self._work.clear()
                await self._work.wait()
                continue
            started = loop.time()
            await self.poll_once(limit)
            # Polls start every `interval` (a slow listing eats into the wait, not on top of
            # it); interval 0 still yields, so settling and fetching tasks run between polls.
            await asyncio.sleep(max(0.0, started + self.interval - loop.time()))

    async def poll_once(self, limit: asyncio.Semaphore | None = None) -> None:
        """Look once in every directory with pending jobs (the watch loop calls this)."""
        self.polls += 1
        limit = limit or asyncio.Semaphore(_LIST_CONCURRENCY)
        idle: list[str] = []
        async with asyncio.TaskGroup() as task_group:
            for name, directory in list(self._directories.items()):
                if not self._start_poll(task_group, directory, limit):
                    idle.append(name)
        # Forget the oldest idle directories past the limit (dicts keep insertion order).
        for name in idle[: max(0, len(idle) - _IDLE_DIRECTORIES)]:
            del self._directories[name]

    def _start_poll(
        self, task_group: asyncio.TaskGroup, directory: _Directory, limit: asyncio.Semaphore
    ) -> bool:
        """Start looking in ``directory``, in a task of ``task_group``; ``False`` when nothing
        there is pending. (Not inline in :meth:`poll_once`: its frame, which waits for every
        directory's task, would hold the last directory's list of pending locations.)"""
        live = self._live(directory)
        if not live:
            return False
        task_group.create_task(self._poll_directory(directory, live, limit))
        return True

    def _live(self, directory: _Directory) -> list[str]:
        """The lowest of the directory's locations still pending, sorted (as their keys sort):
        as many as one poll can use (``max_heads`` to HEAD, and one to list from); drop the
        settled ones met on the way and the sampled keys below the lowest pending one (they can
        no longer cost a listing anything).

        Not a scan of every entry: :meth:`_found` drops a location as its object settles it, so
        what is left are pending jobs and the few settled otherwise (expired, cancelled); those
        are swept out here once one of them is among the lowest, and cost a poll nothing before.
        """
        entries = directory.entries
        # The lowest keys, picked in C (heapq.nsmallest over the dict's keys).
        live = heapq.nsmallest(self.max_heads + 1, entries)
        if not all(self._still_pending(location, entries[location]) for location in live):
            # Some were settled by other means: sweep them all out once, then pick again.
            for location in [
                x for x, entry in entries.items() if not self._still_pending(x, entry)
            ]:
                del entries[location]
            live = heapq.nsmallest(self.max_heads + 1, entries)
        if live:
            del directory.sample[: bisect.bisect_left(directory.sample, directory.key(live[0]))]
        return live

    def _still_pending(self, location: str, entry: _Entry) -> bool:
        return (entry.output and self._tracker.has_pending_output(location)) or (
            entry.failure and self._tracker.has_pending_failure(location)
        )

    def _split(self, directory: _Directory, live: list[str]) -> int:
        """How many of the lowest pending keys to HEAD (the rest are found by one listing).

        Minimises ``heads + pages`` where ``pages`` is what listing from the first key not HEADed
        cost last time (at least one call); ``len(live)`` (no listing at all) is a candidate when
        every key fits in the HEAD budget.
        """
        limit = min(self.max_heads, len(live))
        if limit == 0:
            return 0
        best, best_cost = 0, _pages(directory.above(live[0]))
        for i in range(1, limit + 1):
            cost = i + (_pages(directory.above(live[i])) if i < len(live) else 0)
            if cost < best_cost:
                best, best_cost = i, cost
        return best

    async def _poll_directory(
        self, directory: _Directory, live: list[str], limit: asyncio.Semaphore
    ) -> None:
        """Look in ``directory`` once: HEAD the lowest of the ``live`` locations (sorted) that
        :meth:`_split` picks, list from the first of the others."""
        # The split looks at no more than the max_heads + 1 lowest keys (and the same answer
        # comes from those as from all: see _split), so only they are cut from their locations.
        keys = [directory.key(location) for location in live[: self.max_heads + 1]]
        split = self._split(directory, keys)
        calls = [self._head(directory, location) for location in live[:split]]
        if split < len(live):
            calls.append(self._list(directory, keys[split]))
        del live, keys  # nothing per job is held while the calls wait
        async with limit:
            await asyncio.gather(*calls)

    async def _list(self, directory: _Directory, first: str) -> None:
        """List ``directory`` from just below the key ``first``, every page; feed what is
        pending."""
        # StartAfter is exclusive: the key less its last character sorts just below it.
        start_after = first[:-1]
        args: dict[str, Any] = {"Bucket": directory.bucket, "Prefix": directory.prefix}
        if len(start_after) > len(directory.prefix):
            args["StartAfter"] = start_after
        args.update(self._owner_args())
        listed: list[str] = []
        root = f"s3://{directory.bucket}/"
        entries = directory.entries
        while True:
            self._counters.s3_list_calls += 1
            try:
                page = await self._s3_reads.list_objects_v2(**args)
            except Exception as exc:  # noqa: BLE001 - classified: retried, or the jobs fail
                self._list_failed(directory, exc)
                return  # keep the old gap counts: this listing is incomplete
            self._list_worked(directory)
            for item in page.get("Contents", ()):
                key = item["Key"]
                listed.append(key)
                location = root + key
                entry = entries.get(location)
                if entry is not None:
                    self._found(directory, location, entry)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
            args["ContinuationToken"] = token
        # Sample what this listing saw (listing order is key order); keep the older sample of
        # the keys below where it started (the HEADed stragglers' neighbourhood).
        sample = directory.sample
        directory.sample = sample[: bisect.bisect_left(sample, first)] + listed[::_SAMPLE]

    async def _head(self, directory: _Directory, location: str) -> None:
        if location not in directory.entries:
            return
        key = directory.key(location)
        if await self._object_exists(directory.bucket, key, waiting="it keeps waiting"):
            entry = directory.entries.get(location)
            if entry is not None:
                self._found(directory, location, entry)

    def _found(self, directory: _Directory, location: str, entry: _Entry) -> None:
        """An object exists at ``location``: feed it for the jobs still waiting on it there
        (``entry`` says as what they may be: an output, a failure, or both)."""
        settled: list[Outcome] = []
        if entry.output and self._is_pending_output(location):
            settled += self._feed(Completed(output_location=location)).outcomes
        if entry.failure and self._is_pending_failure(location):
            settled += self._feed(Failed(failure_location=location)).outcomes
        if not self._still_pending(location, entry):
            directory.entries.pop(location, None)
        # The settled jobs' other location (a failure path beside a found output, or the
        # reverse) is no longer looked for either: no later poll visits what is settled.
        for outcome in settled:
            for other in (outcome.job.output_location, outcome.job.failure_location):
                if other is not None and other != location:
                    self._forget(other)

    def _forget(self, location: str) -> None:
        """Drop ``location`` from its directory unless another pending job still waits there."""
        directory = self._directories.get(_directory_name(location))
        if directory is not None:
            entry = directory.entries.get(location)
            if entry is not None and not self._still_pending(location, entry):
                del directory.entries[location]

    # --- errors -----------------------------------------------------------------------------------

    def _list_worked(self, directory: _Directory) -> None:
        directory.streak.clear()

    def _list_failed(self, directory: _Directory, exc: Exception) -> None:
        where = f"s3://{directory.bucket}/{directory.prefix}"
        verdict = classify("ListObjectsV2", exc, where)
        if verdict.kind is not ErrorKind.PERMANENT:
            self._transient("ListObjectsV2", where, exc)
            return
        self._counters.permanent_errors += 1
        if not directory.streak.record(verdict.code, self.polls):
            logger.info(
                "ListObjectsV2 on %s answered %s; believed if it repeats",
                where,
                verdict.code,
                extra=self._log_fields(),
            )
        else:
            bucket_wide = verdict.code in _BUCKET_WIDE
            directories = [
                d
                for d in self._directories.values()
                if d is directory or (bucket_wide and d.bucket == directory.bucket)
            ]
            self._give_up_directories(directories, verdict, where, exc)

    def _give_up_directories(
        self, directories: list[_Directory], verdict: Verdict, where: str, exc: Exception
    ) -> None:
        """Fail every pending job whose output or failure is expected in ``directories``."""
        jobs: dict[int, Expected] = {}
        for directory in directories:
            for location, entry in directory.entries.items():
                if entry.output:
                    jobs.update((j.key, j) for j in self._tracker.pending_by_output(location))
                if entry.failure:
                    jobs.update((j.key, j) for j in self._tracker.pending_by_failure(location))
        message = f"S3Polling cannot list {where} ({verdict.code}): {verdict.advice}"
        failed = self._give_up(jobs.values(), verdict, message, exc)
        if failed:
            logger.warning("%s; failed %d pending jobs", message, failed, extra=self._log_fields())


def _directory_name(location: str) -> str:
    """``s3://<bucket>/<prefix>``: ``location`` up to its last ``/``, the key of its directory."""
    cut = location.rfind("/") + 1
    # "s3://bucket" alone (an empty key) has no "/" past the scheme's.
    return location[:cut] if cut > len("s3://") else location + "/"


def _pages(objects: int) -> int:
    """ListObjectsV2 calls to list ``objects`` keys (an empty listing is still one call)."""
    return max(1, -(-objects // _PAGE))
