"""How a run starts: the journal locked, then a new job or the resumption of the one it holds.

**One run per journal.** :func:`lock_run` takes an exclusive ``flock`` on the journal (creating an
empty one if there is none) before anything reads it, and holds it for the whole run: a second
run of the job, on this machine or another sharing the file, is refused at once (exit 2) instead
of sending the same inputs and writing the same OUTPUT. The kernel drops the lock when the run's
process ends, however it ends (``kill -9`` included), so a crash never leaves a stale lock.

**The same input.** A journal maps its records to inputs by position, so a resumed job must read
the input it started with. The header records the input's fingerprint
(:meth:`~._inputs.InputSource.fingerprint`); a resumption compares it with the input's now and
refuses a changed input (exit 2), naming what changed. A stream (stdin, a pipe) has nothing to
check: it resumes with a warning, as does a journal written before fingerprints were recorded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import TYPE_CHECKING

from ._errors import BatchUsageError
from ._inputs import input_changes
from ._journal import (
    JournalFormatError,
    JournalHeader,
    ResumeState,
    lock_exclusive,
    lock_holder,
    read_header,
    scan_journal,
)
from ._records import record_n
from ._s3_journal import journal_prefix, load_s3_journal

if TYPE_CHECKING:
    from pathlib import Path

    from ._inputs import InputSource
    from ._options import BatchOptions
    from ._s3 import S3Objects

__all__ = [
    "RunLock",
    "check_same_job",
    "lock_run",
    "new_header",
    "start_or_resume",
    "start_or_resume_s3",
]

logger = logging.getLogger("aiosagemaker")


class RunLock:
    """The journal's lock, held by one run; :meth:`release` it when the run ends."""

    def __init__(self, path: Path, fd: int, *, created: bool) -> None:
        self.path = path
        self._fd: int | None = fd
        self._created = created

    def release(self) -> None:
        """Unlock (blocking). A journal the lock created and nothing wrote to is removed, so that
        a run refused before it began leaves no empty journal behind."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._created and os.fstat(fd).st_size == 0:
                # Still locked: a run that opened this file meanwhile sees it is gone (lock_run).
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def lock_run(options: BatchOptions) -> RunLock:
    """Lock the job's journal for this run (blocking; created empty if missing).

    :raises BatchUsageError: another run holds it, or it cannot be opened.
    """
    path = options.journal_path
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                created = True
            except FileExistsError:
                fd = os.open(path, os.O_RDWR)
                created = False
        except FileNotFoundError:
            continue  # removed between the two opens: try again
        except OSError as exc:
            raise BatchUsageError(f"cannot open the journal {path}: {exc.strerror}") from None
        try:
            locked = lock_exclusive(fd, path)
            if not locked:
                holder = lock_holder(fd)
                by = f" (process {holder})" if holder is not None else ""
                raise BatchUsageError(
                    f"journal {path} is in use by another run of this job{by}: two runs would "
                    "send the same inputs and write the same OUTPUT; wait for that run to end, "
                    "or stop it, then run this command again"
                )
            # A run that gave up may have removed the file between our open and our lock: the
            # lock must be on the file that is there now.
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(fd), current):
                return RunLock(path, fd, created=created)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def start_or_resume(
    options: BatchOptions, source: InputSource
) -> tuple[JournalHeader, ResumeState | None]:
    """The job's header, and what the local journal and OUTPUT say is done (``None`` for a new
    job).

    Blocking (it reads the journal and OUTPUT through, and fingerprints the input): run it in a
    worker thread, with the journal locked (:func:`lock_run`).

    :param source: the input, whose identity and fingerprint a journal must match to be resumed.
    :raises BatchUsageError: a journal that is not one, is damaged, or belongs to another job; an
        input changed since the job started; an OUTPUT in the way of a new job (without
        ``overwrite``).
    """
    o = options
    target = o.target()
    journal = target.journal
    assert journal is not None
    if journal.exists() and journal.stat().st_size > 0:
        try:
            header = read_header(journal)
        except JournalFormatError as exc:
            raise BatchUsageError(_damaged(exc, o)) from None
        except ValueError as exc:
            raise BatchUsageError(f"journal {journal}: {exc}") from None
        check_same_job(header, o, source, str(journal))
        output = target.path if target.kind == "file" else None
        try:
            state = scan_journal(journal, output, ordered=o.ordered, output_n=record_n)
        except JournalFormatError as exc:
            raise BatchUsageError(_damaged(exc, o)) from None
        return header, state
    path = target.path
    if (
        target.kind == "file"
        and path is not None
        and path.exists()
        and path.stat().st_size > 0
        and not o.overwrite
    ):
        raise BatchUsageError(
            f"OUTPUT {path} exists and there is no journal {journal} to resume from; "
            "remove it or pass --overwrite"
        )
    return new_header(o, source), None


async def start_or_resume_s3(
    options: BatchOptions, source: InputSource, s3: S3Objects
) -> tuple[JournalHeader, ResumeState | None, list[bytes], int]:
    """:func:`start_or_resume` for a journal in S3 (locked with :class:`S3RunLock`): also the
    journal's lines and the next chunk number, for the run's :class:`S3Journal`.

    :raises BatchUsageError: as :func:`start_or_resume`.
    """
    target = options.target()
    assert target.s3 is not None
    prefix = journal_prefix(target.s3)
    try:
        loaded = await load_s3_journal(s3, prefix)
    except JournalFormatError as exc:
        raise BatchUsageError(_damaged(exc, options)) from None
    except ValueError as exc:
        raise BatchUsageError(f"journal {prefix}: {exc}") from None
    if loaded is None:
        header = await asyncio.to_thread(new_header, options, source)
        return header, None, [], 0
    state, lines, next_seq = loaded
    await asyncio.to_thread(check_same_job, state.header, options, source, str(prefix))
    return state.header, state, lines, next_seq


def new_header(options: BatchOptions, source: InputSource) -> JournalHeader:
    """The header of a new job (blocking: it fingerprints the input)."""
    o = options
    return JournalHeader(
        job_id=uuid.uuid4().hex[:12],
        endpoint=o.endpoint,
        input=source.identity,
        shard=None if o.shard is None else str(o.shard),
        ordered=o.ordered,
        created=time.time(),
        input_check=_fingerprint(source, None),
        output=o.target().spec,
    )


def check_same_job(
    header: JournalHeader, options: BatchOptions, source: InputSource, where: str
) -> None:
    """Refuse to resume a journal of another job, or against a changed input (blocking).

    :raises BatchUsageError: another endpoint, input, shard, order or OUTPUT; a changed input.
    """
    o = options
    expected: dict[str, object] = {
        "endpoint": o.endpoint,
        "input": source.identity,
        "shard": None if o.shard is None else str(o.shard),
        "ordered": o.ordered,
    }
    target = o.target()
    # An ordered JSON Lines OUTPUT says by itself what it holds, and every record in it was
    # journaled first: such a job may resume into another file (the first one's disk is full).
    # Marks and parts name records in the OUTPUT they were written to: those must not move.
    # (Journals written before OUTPUT was recorded are not checked.)
    if header.output is not None and (target.kind == "parts" or not o.ordered):
        expected["output"] = target.spec
    for name, value in expected.items():
        if getattr(header, name) != value:
            raise BatchUsageError(
                f"journal {where} belongs to another job ({name} "
                f"{getattr(header, name)!r}, not {value!r}); pass another --journal, "
                "or remove it and OUTPUT to start over"
            )
    _check_same_input(header, source, o, where)


def _check_same_input(
    header: JournalHeader, source: InputSource, options: BatchOptions, journal: str
) -> None:
    """Refuse an input that is not the one the job started with (see the module's docstring)."""
    recorded = header.input_check
    if recorded is None:
        logger.warning(
            "journal %s does not record the input's size, time and checksum (it was written by "
            "an earlier version): resuming without checking that %s is unchanged",
            journal,
            options.input,
        )
        return
    if recorded.get("kind") == "stream":
        logger.warning(
            "resuming from a stream (%s): nothing can check that it gives the same inputs, in "
            "the same order, as the run that started the job; records are matched to inputs by "
            "position",
            "stdin" if options.input == "-" else options.input,
        )
        return
    hashed = recorded.get("hashed_bytes")
    current = _fingerprint(source, hashed if isinstance(hashed, int) else None)
    changes = input_changes(recorded, current, options.input)
    if changes:
        raise BatchUsageError(
            f"input {options.input} changed since the job started ({'; '.join(changes)}): "
            "the journal and OUTPUT match records to inputs by position, so resuming would mix "
            f"two inputs; restore it, or start over (remove {journal} and {options.output})"
        )


def _fingerprint(source: InputSource, hashed_bytes: int | None) -> dict[str, object]:
    try:
        return source.fingerprint(hashed_bytes=hashed_bytes)
    except OSError as exc:
        raise BatchUsageError(f"cannot read the input: {exc}") from None


def _damaged(exc: JournalFormatError, options: BatchOptions) -> str:
    return (
        f"{exc}; this program does not write such a line, so the journal cannot be trusted to "
        "say what is done: restore the journal, or start over (remove it and "
        f"{options.output})"
    )
