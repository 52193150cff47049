"""The stub runtime endpoint of the submit benchmarks, and their interleaved, measured rounds.

The stub (a raw asyncio HTTP/1.1 server in a child process, pinned to the other core when there is
one) answers every ``InvokeEndpointAsync`` at once with a 202, its output location and inference
id, so the client's own CPU is what is measured; the client process is pinned to one core.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

#: a way to send ``count`` requests, measured as a whole
Run = Callable[[int], Awaitable[None]]


class _Stub(asyncio.Protocol):
    """HTTP/1.1 keep-alive: each request (headers, then Content-Length bytes) gets a 202."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            inference_id = "stub"
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                lower = name.strip().lower()
                if lower == "content-length":
                    length = int(value)
                elif lower == "x-amzn-sagemaker-inference-id":
                    inference_id = value.strip()
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            body = b'{"InferenceId":"%s","OutputLocation":"s3://stub/out/%s.out"}' % (
                inference_id.encode(),
                inference_id.encode(),
            )
            self.transport.write(
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                b"x-amzn-RequestId: stub\r\n"
                b"X-Amzn-SageMaker-OutputLocation: s3://stub/out/%s.out\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (inference_id.encode(), len(body), body)
            )


def _serve(port_queue: Any, core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Stub, "127.0.0.1", 0, backlog=1024)
        port_queue.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def start_stub(*, services: tuple[str, ...]) -> Any:
    """Start the stub in a process of its own on the second core, pin this process to the first,
    and point ``services`` (``AWS_ENDPOINT_URL_*`` suffixes) at it, with test credentials.
    Returns the process, to ``terminate()``."""
    cores = sorted(os.sched_getaffinity(0))
    queue: Any = multiprocessing.get_context("spawn").Queue()
    stub = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(queue, cores[1] if len(cores) > 1 else None), daemon=True
    )
    stub.start()
    port = queue.get(timeout=30)
    os.sched_setaffinity(0, {cores[0]})  # the client on one core
    os.environ.update({f"AWS_ENDPOINT_URL_{name}": f"http://127.0.0.1:{port}" for name in services})
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    return stub


def submit_loop(invoker: Any, payload: bytes) -> Run:
    """The README's loop: ``jobs = [await invoker.submit(p) ...]``, then ``await job.accepted()``
    for each."""

    async def run(count: int) -> None:
        jobs = [await invoker.submit(payload) for _ in range(count)]
        for job in jobs:
            await job.accepted()

    return run


async def measure(run: Run, count: int) -> dict[str, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await run(count)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"requests": count, "cpu_s": cpu, "wall_s": wall, "per_cpu_s": count / cpu}


async def interleaved_rounds(
    ways: Mapping[str, Run],
    *,
    requests: int,
    rounds: int,
    between: Callable[[], object] | None = None,
) -> dict[str, list[dict[str, float]]]:
    """Warm every way up, then measure each ``rounds`` times, the ways interleaved within a round
    so that a noisy machine hits them alike; ``between`` runs after each round."""
    for run in ways.values():  # warm up pools, credentials, caches
        await run(500)
    measured: dict[str, list[dict[str, float]]] = {mode: [] for mode in ways}
    for _ in range(rounds):
        for mode, run in ways.items():
            measured[mode].append(await measure(run, requests))
            print(mode, measured[mode][-1], file=sys.stderr, flush=True)
        if between is not None:
            between()
    return measured


def ratios_to(
    measured: Mapping[str, list[dict[str, float]]], baseline: str, *, digits: int
) -> dict[str, dict[str, Any]]:
    """Per way: the median CPU per request, and its requests per CPU second against
    ``baseline``'s, per round and as the median."""
    results: dict[str, dict[str, Any]] = {}
    for mode, runs in measured.items():
        ratios = [
            r["per_cpu_s"] / b["per_cpu_s"] for r, b in zip(runs, measured[baseline], strict=True)
        ]
        results[mode] = {
            "requests_per_cpu_s_median": statistics.median(r["per_cpu_s"] for r in runs),
            "cpu_us_per_request_median": statistics.median(
                r["cpu_s"] / r["requests"] * 1e6 for r in runs
            ),
            f"vs_{baseline}_per_round": [round(x, digits) for x in ratios],
            f"vs_{baseline}_median": round(statistics.median(ratios), digits),
            "rounds": runs,
        }
    return results
