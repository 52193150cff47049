"""Run moto's server (S3, SNS and SQS in one process, so SNS delivers to SQS) as a child process.

The child (:mod:`._moto_child`) stops when its stdin closes, i.e. when this process exits.
"""

from __future__ import annotations

import asyncio
import sys

__all__ = ["start_moto", "stop_moto"]


async def start_moto(port: int = 0) -> tuple[asyncio.subprocess.Process, str]:
    """Start the child; return it and its URL once it listens."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiosagemaker.local._moto_child",
        "--port",
        str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    if not line.strip().isdigit():
        await stop_moto(process)
        raise RuntimeError("moto server failed to start")
    return process, f"http://127.0.0.1:{int(line)}"


async def stop_moto(process: asyncio.subprocess.Process) -> None:
    """Close the child's stdin (it exits); terminate it if it lingers."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), timeout=10)
    except TimeoutError:
        process.kill()
        await process.wait()
