"""How a run starts: a new job, or the resumption of the job whose journal is already there."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from ._errors import BatchUsageError
from ._journal import JournalHeader, ResumeState, read_header, scan_journal
from ._records import record_n

if TYPE_CHECKING:
    from ._options import BatchOptions

__all__ = ["start_or_resume"]


def start_or_resume(
    options: BatchOptions, input_identity: str
) -> tuple[JournalHeader, ResumeState | None]:
    """The job's header, and what the journal and OUTPUT say is done (``None`` for a new job).

    Blocking (it reads the journal and OUTPUT through): run it in a worker thread.

    :param input_identity: the input source's identity, which a journal must name to be resumed.
    :raises BatchUsageError: a journal that is not one, or belongs to another job; an OUTPUT in the
        way of a new job (without ``overwrite``).
    """
    o = options
    journal = o.journal_path
    shard = None if o.shard is None else str(o.shard)
    if journal.exists() and journal.stat().st_size > 0:
        try:
            header = read_header(journal)
        except (ValueError, KeyError) as exc:
            raise BatchUsageError(f"journal {journal}: {exc}") from None
        expected = {
            "endpoint": o.endpoint,
            "input": input_identity,
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
        return header, scan_journal(journal, o.output, ordered=o.ordered, output_n=record_n)
    if o.output.exists() and o.output.stat().st_size > 0 and not o.overwrite:
        raise BatchUsageError(
            f"OUTPUT {o.output} exists and there is no journal {journal} to resume from; "
            "remove it or pass --overwrite"
        )
    header = JournalHeader(
        job_id=uuid.uuid4().hex[:12],
        endpoint=o.endpoint,
        input=input_identity,
        shard=shard,
        ordered=o.ordered,
        created=time.time(),
    )
    return header, None
