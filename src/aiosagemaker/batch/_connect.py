"""The invoker a batch run sends through, built from its options and opened.

Its limits are the job's only request limits: ``max_pending`` admitted, ``concurrency`` in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiosagemaker import (
    AsyncInferenceError,
    AsyncInvoker,
    InvalidRequestError,
    Limits,
    S3Polling,
    S3Staging,
    SqsNotifications,
)

from ._errors import BatchConfigError, BatchUsageError

if TYPE_CHECKING:
    from aiosagemaker import Watcher

    from ._options import BatchOptions

__all__ = ["open_invoker"]


async def open_invoker(options: BatchOptions, *, run_id: str | None = None) -> AsyncInvoker:
    """An open invoker for the job's endpoint, watcher and staging location.

    :param run_id: the S3 polling watcher's own output path extension (``aiosm-<run_id>``), so
        that several invokers of one job (Ray actors) each watch only their own results; by
        default a fresh one.

    :raises BatchUsageError: an option the library refuses (an endpoint name, a staging URI).
    :raises BatchConfigError: AWS trouble while opening (credentials, region, profile, endpoint URL).
    """
    o = options
    try:
        invoker = AsyncInvoker(
            o.endpoint,
            limits=Limits(max_concurrent_invocations=o.concurrency, max_pending=o.max_pending),
            staging=S3Staging(
                o.staging,
                expected_bucket_owner=o.expected_bucket_owner,
                kms_key_id=o.staging_kms_key,
            )
            if o.staging
            else None,
            watcher=_watcher(o, run_id),
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


def _watcher(options: BatchOptions, run_id: str | None) -> Watcher:
    # The job reads no more of an output than it may copy into the record: a larger one is
    # recorded by its location (OutputTooLargeError), never fetched to be thrown away.
    max_output_bytes = max(0, options.inline_output_bytes)
    if options.watcher == "sqs":
        assert options.queue_url is not None  # BatchOptions.check()
        return SqsNotifications(
            queue_url=options.queue_url,
            max_output_bytes=max_output_bytes,
            expected_bucket_owner=options.expected_bucket_owner,
        )
    return S3Polling(
        interval=options.poll_interval,
        run_id=run_id,
        max_output_bytes=max_output_bytes,
        expected_bucket_owner=options.expected_bucket_owner,
    )
