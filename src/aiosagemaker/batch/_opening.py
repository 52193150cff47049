"""Opening a job's S3 client and INPUT, with the job's error classes: what the batch job and the
Ray job do the same way before either runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import BatchConfigError, BatchUsageError
from ._s3 import S3Error, open_s3

if TYPE_CHECKING:
    from aiosagemaker import AwsContext

    from ._inputs import InputSource
    from ._options import BatchOptions
    from ._s3 import S3Objects

__all__ = ["open_job_s3", "open_job_source"]


async def open_job_s3(options: BatchOptions) -> tuple[AwsContext, S3Objects]:
    """The job's S3 client (``aclose()`` the context when done).

    :raises BatchConfigError: botocore's refusal (no region, an unknown profile ...).
    """
    try:
        return await open_s3(
            region=options.region,
            profile=options.profile,
            expected_bucket_owner=options.expected_bucket_owner,
        )
    except Exception as exc:  # noqa: BLE001 - botocore's many kinds, all configuration
        raise BatchConfigError(f"{type(exc).__name__}: {exc}") from None


async def open_job_source(source: InputSource, s3: S3Objects | None) -> None:
    """Open INPUT (an ``s3://`` one lists its objects with ``s3``).

    :raises BatchConfigError: S3 refused (a rerun may succeed).
    :raises BatchUsageError: INPUT is not readable as what it claims to be.
    """
    try:
        await source.open(s3)
    except S3Error as exc:
        raise BatchConfigError(f"cannot read the input: {exc}") from None
    except (ValueError, OSError) as exc:
        raise BatchUsageError(f"cannot read the input: {exc}") from None
