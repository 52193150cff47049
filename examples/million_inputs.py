"""Stream many inputs through an endpoint with bounded memory, counting outcomes as they come.

    ENDPOINT=my-endpoint QUEUE_URL=... python million_inputs.py 1000000

``map()`` pulls the next input only when there is room (``max_pending``), keeps up to
``max_concurrent_invocations`` requests in flight, and yields each result once.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from typing import TYPE_CHECKING

from aiosagemaker import AsyncInvoker, Limits, S3Polling, SqsNotifications

if TYPE_CHECKING:
    from collections.abc import Iterator


def inputs(count: int) -> Iterator[dict[str, str]]:
    """Generated here; read them from a file or a database cursor just the same."""
    for i in range(count):
        yield {"inputs": f"item {i}"}


async def main(count: int) -> Counter[str]:
    queue_url = os.environ.get("QUEUE_URL")
    outcomes: Counter[str] = Counter()
    async with AsyncInvoker(
        os.environ["ENDPOINT"],
        limits=Limits(max_concurrent_invocations=128, max_pending=20_000),
        watcher=SqsNotifications(queue_url=queue_url) if queue_url else S3Polling(),
    ) as invoker:
        async for outcome in invoker.map(inputs(count), ordered=False, return_exceptions=True):
            if isinstance(outcome, BaseException):
                outcomes[type(outcome).__name__] += 1  # one input's error; the others go on
            else:
                outcomes["completed"] += 1
        stats = invoker.statistics()
        print(f"{outcomes} retried={stats.retried} throttled={stats.throttled}")
    return outcomes


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000))
