"""One input's way to its OUTPUT record, each step journaled (see :mod:`._job` for the protocol).

By what the journal knows of the input (``entry``, on a resume):

- nothing, or an *intent* alone: send it under its deterministic inference id, journaling the
  intent just before the request goes out and the acceptance when the endpoint answers; then wait
  for the result (an intent alone: it was in flight at the crash, and may run twice);
- an *acceptance*: collect its result through the :class:`Recovery`, without sending it again;
- a *result*: the journaled record as it is.

Every outcome becomes a record (``status`` ``completed``, ``failed``, ``invalid`` or ``error``),
journaled as a *result* before the writer puts it in OUTPUT, except where the run is stopping
(``None``: the input is left to the next run) or cannot go on (the run is failed, ``None``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiosagemaker import (
    AsyncInferenceError,
    InferenceFailedError,
    InvalidRequestError,
    InvocationError,
    InvokerClosedError,
    OutputTooLargeError,
    PayloadTooLargeError,
    ResultTimeoutError,
    WatcherError,
)

from ._errors import is_config_error
from ._records import (
    accepted_entry,
    inline_output,
    intent_entry,
    output_record,
    result_entry,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiosagemaker import AsyncInvoker, InferenceJob, JobTimings

    from ._inputs import InputItem
    from ._journal import JournalEntry, JournalWriter
    from ._options import BatchOptions
    from ._records import Status
    from ._recovery import Recovery
    from ._summary import BatchStats

__all__ = ["InputProcessor", "inference_id_of"]


class _Stopped(Exception):
    """The run is stopping: a request about to be sent is not sent."""


def inference_id_of(job_id: str, n: int) -> str:
    """The inference id of input ``n`` of job ``job_id``: the same on every rerun."""
    return f"{job_id}-{n}"


class InputProcessor:
    """Takes inputs to their OUTPUT records for one run; :meth:`process` one input per task.

    :param stopping: whether the run is stopping (nothing more is sent).
    :param fail_run: stop the run with this error (exit 3, or 2 for a ``BatchUsageError``).
    """

    def __init__(
        self,
        options: BatchOptions,
        *,
        job_id: str,
        journal: JournalWriter,
        invoker: AsyncInvoker,
        recovery: Recovery | None,
        stats: BatchStats,
        stopping: Callable[[], bool],
        fail_run: Callable[[BaseException], None],
    ) -> None:
        self._options = options
        self._job_id = job_id
        self._journal = journal
        self._invoker = invoker
        self._recovery = recovery
        self._stats = stats
        self._stopping = stopping
        self._fail_run = fail_run

    async def process(self, item: InputItem, entry: JournalEntry | None) -> dict[str, Any] | None:
        """The input's OUTPUT record; ``None`` when the run stopped before its result."""
        if item.error is not None:
            return self._record(item, status="invalid", reason=item.error)
        if entry is not None and entry.state == "result":
            assert entry.record is not None
            self._stats.recovered_results += 1
            self._stats.count_result(entry.record.get("status"))
            return entry.record
        if entry is not None and entry.state == "accepted":
            assert self._recovery is not None  # opened for every resume with acceptances
            self._stats.recovered_tracked += 1
            return await self._collect(item, self._recovery.collect(entry), measure=False)
        return await self._send(item, resent=entry is not None)

    async def _send(self, item: InputItem, *, resent: bool) -> dict[str, Any] | None:
        """Send the input, journaling its intent and acceptance, and wait for its result.

        :param resent: an earlier run journaled its intent and no acceptance (it may run twice).
        """
        assert item.body is not None
        if self._stopping():
            return None
        o = self._options
        inference_id = inference_id_of(self._job_id, item.n)
        journal = self._journal

        async def journal_intent() -> None:
            # Runs in the invoker's send task, right before the request goes out.
            if self._stopping():
                raise _Stopped
            if resent:
                self._stats.resubmitted_after_crash += 1
            journal.append(intent_entry(item.n, inference_id))
            await journal.commit()
            self._stats.submitted += 1

        try:
            job = await self._invoker.submit(
                item.body,
                content_type=item.content_type,
                inference_id=inference_id,
                request_ttl=o.request_ttl,
                invocation_timeout=o.invocation_timeout,
                before_send=journal_intent,
            )
            await job.accepted()
        except PayloadTooLargeError as exc:
            # Refused by submit() before anything was journaled or sent. Decided by the input
            # alone, as an unreadable line is: not journaled. The library's message names its own
            # API (staging=S3Staging(...)); a batch job's user knows the flag.
            reason = (
                f"payload is {exc.size:,} bytes, over the {exc.limit:,}-byte inline limit, and "
                "no --staging location is set"
            )
            return self._record(item, status="invalid", reason=reason)
        except InvalidRequestError as exc:
            return self._journaled(self._record(item, status="invalid", reason=str(exc)))
        except InvocationError as exc:
            if is_config_error(exc):
                self._fail_run(exc)
                return None
            return self._journaled(
                self._record(item, status="error", inference_id=inference_id, reason=str(exc))
            )
        except AsyncInferenceError as exc:
            if isinstance(exc.__cause__, OSError):
                # journal_intent could not write the journal: nothing was sent, and the run
                # cannot go on (the invoker carries a before_send error as the cause).
                self._fail_run(exc.__cause__)
                return None
            if self._stopping() or isinstance(exc, InvokerClosedError):
                return None
            return self._journaled(
                self._record(item, status="error", inference_id=inference_id, reason=str(exc))
            )
        self._stats.accepted += 1
        journal.append(accepted_entry(item.n, job))
        return await self._collect(item, job, measure=True)

    async def _collect(
        self, item: InputItem, job: InferenceJob, *, measure: bool
    ) -> dict[str, Any] | None:
        """Wait for an accepted job's result and make its record.

        :param measure: count its latency (a job this run submitted).
        """
        fields: dict[str, Any] = {
            "inference_id": job.inference_id,
            "output_location": job.output_location,
            "timings": job.timings,
        }
        try:
            result = await job.result()
        except OutputTooLargeError as exc:
            # Over --inline-output-bytes (the watcher's max_output_bytes): it would not be copied
            # into the record, so it was not read. The inference succeeded: point at the output.
            if measure:
                self._measure(job.timings)
            record = self._record(
                item, status="completed", content_type=exc.content_type, output=None, **fields
            )
        except InferenceFailedError as exc:
            record = self._record(item, status="failed", reason=exc.reason, **fields)
        except InvokerClosedError:
            return None
        except WatcherError as exc:
            # The results cannot be read as configured (a permission, a missing bucket or queue):
            # stop (exit 3) with the acceptance journaled, so a rerun once it is fixed collects
            # the result without sending anything again.
            self._fail_run(exc)
            return None
        except ResultTimeoutError as exc:
            record = self._record(item, status="error", reason=str(exc), **fields)
        except AsyncInferenceError as exc:
            if self._stopping():
                return None
            record = self._record(item, status="error", reason=str(exc), **fields)
        else:
            if measure:
                self._measure(result.timings)
            output = inline_output(
                result.body, result.content_type, self._options.inline_output_bytes
            )
            record = self._record(
                item,
                status="completed",
                content_type=result.content_type,
                output=output,
                **fields,
            )
        return self._journaled(record)

    def _measure(self, timings: JobTimings) -> None:
        """Latency: from submission to the result in hand (its body read, where there is one)."""
        if timings.submitted is not None:
            end = timings.fetched or timings.completed or time.time()
            self._stats.record_latency(end - timings.submitted)

    def _record(self, item: InputItem, *, status: Status, **fields: Any) -> dict[str, Any]:
        self._stats.count_result(status)
        return output_record(item, status=status, **fields)

    def _journaled(self, record: dict[str, Any]) -> dict[str, Any]:
        self._journal.append(result_entry(record))
        return record
