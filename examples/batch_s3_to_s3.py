"""A resumable batch job from an S3 prefix of JSON Lines files to an S3 prefix of result parts.

    ENDPOINT=my-endpoint python batch_s3_to_s3.py s3://my-bucket/inputs/ s3://my-bucket/results/

The same job as ``aiosagemaker batch ENDPOINT s3://.../inputs/ -o s3://.../results/``, from Python.
Run it again after a crash (or Ctrl-C) and it resumes from its journal in
``s3://.../results/_journal/``: nothing journaled as accepted is sent again, and every input ends
up in exactly one committed part.
"""

from __future__ import annotations

import asyncio
import os
import sys

from aiosagemaker.batch import BatchJob, BatchOptions, BatchStats


async def run_batch(input_uri: str, output_uri: str) -> BatchStats:
    queue_url = os.environ.get("QUEUE_URL")
    options = BatchOptions(
        endpoint=os.environ["ENDPOINT"],
        input=input_uri,
        output=output_uri,
        watcher="sqs" if queue_url else "s3",
        queue_url=queue_url,
        concurrency=64,
        part_records=10_000,
    )
    job = BatchJob(options, progress=False, log_interval=0)
    stats = await job.run()
    print(
        f"inputs={stats.inputs} already_done={stats.already_done} completed={stats.completed} "
        f"failed={stats.failed} invalid={stats.invalid} errors={stats.errors}"
    )
    return stats


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: batch_s3_to_s3.py s3://bucket/inputs/ s3://bucket/results/")
    final = asyncio.run(run_batch(sys.argv[1], sys.argv[2]))
    sys.exit(1 if final.failed or final.invalid or final.errors else 0)
