"""The journal of a job whose OUTPUT is in S3: chunk objects beside the parts, no local disk.

S3 has no append, so each commit of the journal is one object, ``PREFIX/_journal/<seq>.jsonl``
(``seq`` zero-padded, so the listing is in commit order), holding the lines appended since the last
commit: the same records as a journal file (:mod:`._journal`), and the same group commit. A commit
whose PUT fails keeps its lines and retries them under the same ``seq``; a PUT that succeeded
although its answer was lost is overwritten by that retry with the same lines and more.

**Snapshots.** A journal of a million inputs would be tens of thousands of chunks, each one GET on
a resume. So after each committed part (and every :data:`SNAPSHOT_EVERY` chunks) the commit writes
a *snapshot* instead, ``<seq>.snapshot.jsonl``: the header, every ``part`` record, the last
``mark`` and the records of the inputs not yet in a committed part (at most the part being filled
and the inputs in flight), which says all that the chunks before it said. Older chunks are then
deleted (best effort: a resume starts from the newest snapshot and ignores anything older).

**One run at a time** (:class:`S3RunLock`): a lease object ``PREFIX/_journal/lock.json`` created
with ``If-None-Match: *`` and renewed with ``If-Match`` on its ETag, so two runs, on any machines,
cannot both hold it. A run that dies leaves the lease to expire (:data:`LEASE_SECONDS`); a rerun on
the same host whose holder process is gone takes it over at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from ._errors import BatchUsageError
from ._journal import scan_journal_chunks
from ._s3 import S3Error

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiosagemaker import S3Uri

    from ._journal import ResumeState
    from ._s3 import S3Objects

__all__ = [
    "LEASE_SECONDS",
    "S3Journal",
    "S3RunLock",
    "journal_prefix",
    "load_s3_journal",
]

logger = logging.getLogger("aiosagemaker")

#: Chunks between two snapshots when no part is committed meanwhile.
SNAPSHOT_EVERY = 500
#: A run's lease on an S3 journal lasts this long unless renewed (every third of it).
LEASE_SECONDS = 60.0
_GETS_IN_FLIGHT = 16


def journal_prefix(output: S3Uri) -> S3Uri:
    """Where the journal of a job writing parts to ``output`` lives."""
    return output.join("_journal/")


def _chunk_name(seq: int, *, snapshot: bool) -> str:
    return f"{seq:010d}.snapshot.jsonl" if snapshot else f"{seq:010d}.jsonl"


def _seq_of(name: str) -> tuple[int, bool] | None:
    stem, dot, rest = name.partition(".")
    if not dot or not stem.isdigit() or rest not in ("jsonl", "snapshot.jsonl"):
        return None
    return int(stem), rest == "snapshot.jsonl"


class _Live:
    """What a snapshot must say: the header, parts, last mark, and the records of inputs not yet
    in a committed part (the journal's lines about them, latest last)."""

    def __init__(self) -> None:
        self.header: bytes | None = None
        self.parts: dict[int, bytes] = {}
        self.mark: bytes | None = None
        self.resumes: list[bytes] = []
        self.inputs: dict[int, list[bytes]] = {}

    def add(self, record: dict[str, Any], line: bytes) -> bool:
        """Take one appended record; return whether it calls for a snapshot (a part)."""
        kind = record.get("t")
        if kind == "job":
            self.header = line
        elif kind == "resume":
            self.resumes.append(line)
        elif kind == "mark":
            self.mark = line
        elif kind == "part":
            self.parts[record["k"]] = line
            for first, last in record["ranges"]:
                for n in range(first, last + 1):
                    self.inputs.pop(n, None)
            return True
        else:
            n = record["n"]
            lines = self.inputs.setdefault(n, [])
            if kind == "result":
                lines.clear()  # the result says all: its intent and acceptance are history
            lines.append(line)
        return False

    def lines(self) -> bytes:
        assert self.header is not None
        out = [self.header, *self.resumes, *(self.parts[k] for k in sorted(self.parts))]
        if self.mark is not None:
            out.append(self.mark)
        for n in sorted(self.inputs):
            out.extend(self.inputs[n])
        return b"".join(out)


class S3Journal:
    """Appends records to the journal in S3 with group commit; the interface of
    :class:`~._journal.Journal`.

    :param prefix: the journal's prefix (:func:`journal_prefix`).
    :param next_seq: the first chunk number this run writes (after those a resume read).
    :param state: a resumed journal's lines, replayed so that the first snapshot says all.
    """

    def __init__(self, s3: S3Objects, prefix: S3Uri, *, next_seq: int = 0) -> None:
        self.s3 = s3
        self.prefix = prefix
        self.path = str(prefix)
        self._seq = next_seq
        self._live = _Live()
        self._buffer: list[bytes] = []
        self._snapshot_due = False
        self._since_snapshot = 0
        self._appended = 0
        self._written = 0
        self._lock = asyncio.Lock()
        self._cleanup: asyncio.Task[None] | None = None
        self.commits = 0

    def open(self) -> None:
        """Nothing to open (the interface of a journal file)."""

    def replay(self, lines: list[bytes]) -> None:
        """Take a resumed journal's lines into the live state (they are in S3 already)."""
        for line in lines:
            record = orjson.loads(line)
            if isinstance(record, dict):
                self._live.add(record, line + b"\n")

    def append(self, record: dict[str, Any]) -> None:
        """Queue one record; it is in S3 after the next :meth:`commit` returns."""
        line = orjson.dumps(record) + b"\n"
        self._buffer.append(line)
        self._appended += 1
        if self._live.add(record, line):
            self._snapshot_due = True

    @property
    def uncommitted(self) -> int:
        return self._appended - self._written

    async def commit(self) -> None:
        """Wait until every record appended so far is in S3.

        :raises S3Error: the PUT failed (after retries); the lines stay queued for the next try.
        """
        target = self._appended
        if self._written >= target:
            return
        async with self._lock:
            if self._written >= target:
                return
            upto = self._appended
            snapshot = self._snapshot_due or self._since_snapshot >= SNAPSHOT_EVERY
            data = self._live.lines() if snapshot else b"".join(self._buffer)
            taken = len(self._buffer)
            name = _chunk_name(self._seq, snapshot=snapshot)
            await self.s3.put(self.prefix.join(name), data, content_type="application/x-ndjson")
            del self._buffer[:taken]
            self._written = upto
            self.commits += 1
            if snapshot:
                self._snapshot_due = False
                self._since_snapshot = 0
                self._start_cleanup(self._seq)
            else:
                self._since_snapshot += 1
            self._seq += 1

    def _start_cleanup(self, snapshot_seq: int) -> None:
        if self._cleanup is not None and not self._cleanup.done():
            return  # the next snapshot's clean-up takes these too
        self._cleanup = asyncio.ensure_future(self._delete_before(snapshot_seq))

    async def _delete_before(self, snapshot_seq: int) -> None:
        try:
            for info in await self.s3.list(self.prefix):
                parsed = _seq_of(info.uri.key.rsplit("/", 1)[-1])
                if parsed is not None and parsed[0] < snapshot_seq:
                    await self.s3.delete(info.uri)
        except S3Error as exc:
            logger.debug("could not delete old journal chunks under %s: %s", self.prefix, exc)

    async def aclose(self) -> None:
        """Commit what is left; wait for the clean-up of old chunks."""
        try:
            await self.commit()
        finally:
            if self._cleanup is not None:
                await asyncio.shield(self._cleanup)


async def load_s3_journal(
    s3: S3Objects, prefix: S3Uri
) -> tuple[ResumeState, list[bytes], int] | None:
    """Read a journal in S3: its state, its lines (for :meth:`S3Journal.replay`) and the next
    chunk number; ``None`` when there is no journal there.

    :raises JournalFormatError: a line of the wrong shape (with its chunk's name).
    """
    chunks: dict[int, tuple[bool, S3Uri]] = {}
    for info in await s3.list(prefix):
        parsed = _seq_of(info.uri.key.rsplit("/", 1)[-1])
        if parsed is not None:
            seq, snapshot = parsed
            if snapshot or seq not in chunks:
                chunks[seq] = (snapshot, info.uri)
    if not chunks:
        return None
    snapshots = [seq for seq, (snapshot, _) in chunks.items() if snapshot]
    start = max(snapshots) if snapshots else min(chunks)
    wanted = [chunks[seq][1] for seq in sorted(chunks) if seq >= start]
    limit = asyncio.Semaphore(_GETS_IN_FLIGHT)

    async def get(uri: S3Uri) -> bytes:
        async with limit:
            return await s3.get(uri)

    bodies = await asyncio.gather(*(get(uri) for uri in wanted))
    state = await asyncio.to_thread(scan_journal_chunks, list(bodies), str(prefix))
    lines = [line for body in bodies for line in body.splitlines() if line]
    return state, lines, max(chunks) + 1


class S3RunLock:
    """A lease on an S3 journal: one run of the job at a time, on any machine.

    :param s3: the job's S3 calls.
    :param prefix: the journal's prefix.
    :param on_lost: called with a message if a renewal fails (another run may then take the
        lease): the run must stop.
    """

    def __init__(
        self, s3: S3Objects, prefix: S3Uri, *, on_lost: Callable[[str], None] | None = None
    ) -> None:
        self._s3 = s3
        self._on_lost = on_lost
        self._uri = prefix.join("lock.json")
        self._etag: str | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._token = uuid.uuid4().hex
        self.lost: str | None = None

    def _body(self) -> bytes:
        return orjson.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "token": self._token,
                "expires": time.time() + LEASE_SECONDS,
            }
        )

    async def acquire(self) -> None:
        """Take the lease, or refuse.

        :raises BatchUsageError: another run holds it (named, with when its lease expires).
        """
        try:
            self._etag = await self._s3.put(self._uri, self._body(), if_none_match=True)
        except S3Error as exc:
            if exc.code not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise
            await self._take_over_or_refuse()
        self._renewer = asyncio.ensure_future(self._renew())

    async def _take_over_or_refuse(self) -> None:
        info = await self._s3.head(self._uri)
        if info is None:  # released meanwhile
            self._etag = await self._s3.put(self._uri, self._body(), if_none_match=True)
            return
        held = orjson.loads(await self._s3.get(self._uri))
        now = time.time()
        expired = float(held.get("expires", 0)) < now
        gone = held.get("host") == socket.gethostname() and not _alive(held.get("pid"))
        if not (expired or gone):
            raise BatchUsageError(
                f"the job's journal {self._uri.bucket}/{self._uri.key} is in use by another run "
                f"(host {held.get('host')}, process {held.get('pid')}; its lease expires in "
                f"{max(0.0, float(held.get('expires', 0)) - now):.0f} s unless renewed): two runs "
                "would send the same inputs and write the same OUTPUT; wait for that run to end, "
                "or stop it, then run this command again"
            )
        try:
            self._etag = await self._s3.put(self._uri, self._body(), if_match=info.etag)
        except S3Error as exc:
            if exc.code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise BatchUsageError(
                    f"another run took the job's journal lease {self._uri} at the same time"
                ) from None
            raise

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                self._etag = await self._s3.put(self._uri, self._body(), if_match=self._etag)
            except S3Error as exc:
                self.lost = (
                    f"lost the lease on the job's journal {self._uri} ({exc}): another run may "
                    "take it, so this one stops; rerun the command to resume"
                )
                self._etag = None
                if self._on_lost is not None:
                    self._on_lost(self.lost)
                return

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        if self._etag is not None:
            try:
                await self._s3.delete(self._uri)
            except S3Error as exc:
                logger.warning("could not release %s (it expires by itself): %s", self._uri, exc)
            self._etag = None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
