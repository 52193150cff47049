"""Collecting the results of inputs an earlier run sent and the endpoint accepted before a crash.

Such an input is never sent again: its journaled output and failure locations are watched by an S3
polling watcher of its own, whatever watcher this run uses for new requests (their notifications
may have gone to the process that died), until the deadline the invoker would have given it,
counted from its journaled acceptance time.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiosagemaker import AwsContext, S3Polling, job_deadline

from ._errors import BatchConfigError

if TYPE_CHECKING:
    from aiosagemaker import InferenceJob

    from ._journal import JournalEntry, ResumeState
    from ._options import BatchOptions

__all__ = ["Recovery", "open_recovery"]


async def open_recovery(options: BatchOptions, resume: ResumeState) -> Recovery | None:
    """The recovery of a resumed job, opened; ``None`` when it has no accepted input to collect.

    :raises BatchConfigError: the watcher could not be opened (credentials, region, profile).
    """
    if not any(entry.state == "accepted" for entry in resume.entries.values()):
        return None
    recovery = Recovery(options)
    await recovery.open()
    return recovery


class Recovery:
    """Tracks the accepted inputs of an earlier run by their journaled locations.

    :param options: the job's region, profile, poll interval, TTL and invocation timeout.
    """

    def __init__(self, options: BatchOptions) -> None:
        self._options = options
        self._aws = AwsContext(region_name=options.region, profile=options.profile)
        # Reads no more of an output than the record may hold, as the run's own watcher (_connect).
        self._watcher = S3Polling(
            interval=options.poll_interval,
            max_output_bytes=max(0, options.inline_output_bytes),
            expected_bucket_owner=options.expected_bucket_owner,
        )

    async def open(self) -> None:
        try:
            await self._watcher.open(self._aws)
        except Exception as exc:  # botocore: no region, unknown profile, bad endpoint URL ...
            await self.aclose()
            raise BatchConfigError(f"{type(exc).__name__}: {exc}") from None

    def collect(self, entry: JournalEntry) -> InferenceJob:
        """Start watching for the result of one accepted input; return its job to await."""
        o = self._options
        # A journal written before acceptance times were recorded: count from now.
        accepted_at = entry.accepted_at or time.time()
        job = self._watcher.track(
            entry.inference_id,
            entry.output_location,
            entry.failure_location,
            deadline=job_deadline(
                accepted_at, request_ttl=o.request_ttl, invocation_timeout=o.invocation_timeout
            ),
        )
        job.timings.accepted = entry.accepted_at
        return job

    async def aclose(self) -> None:
        """Stop watching (jobs still pending fail as closed); release the AWS clients."""
        try:
            await self._watcher.aclose()
        finally:
            await self._aws.aclose()
