"""Send one payload to an async endpoint and print its output.

Run it against the local stack (see the tutorial), or a real endpoint:

    ENDPOINT=my-endpoint QUEUE_URL=https://sqs.../my-endpoint-notifications python first_result.py

Without ``QUEUE_URL`` the result is found by listing the endpoint's S3 output path.
"""

from __future__ import annotations

import asyncio
import os

from aiosagemaker import AsyncInvoker, S3Polling, SqsNotifications, Watcher


def watcher_from_env() -> Watcher:
    """SQS notifications when ``QUEUE_URL`` is set, else S3 polling (the default watcher)."""
    queue_url = os.environ.get("QUEUE_URL")
    return SqsNotifications(queue_url=queue_url) if queue_url else S3Polling()


async def main() -> None:
    async with AsyncInvoker(os.environ["ENDPOINT"], watcher=watcher_from_env()) as invoker:
        job = await invoker.submit({"inputs": "hello"})  # admitted: sent in the background
        accepted = await job.accepted()  # the endpoint's 202
        print("inference id:", accepted.inference_id)
        print("output will be at:", accepted.output_location)
        result = await job.result(timeout=60)  # the output, read from S3
        assert result.body is not None
        print("output:", result.body.decode())


if __name__ == "__main__":
    asyncio.run(main())
