"""Run moto's server (S3, SNS and SQS in one process, so SNS delivers to SQS) as a child process.

The child (:mod:`._moto_child`) stops when its stdin closes, i.e. when this process exits. It
also injects GetObject faults (:mod:`._s3_faults`) behind a control route whose bearer token is
made here, per run, and handed over in the child's environment; :class:`MotoServer` calls that
route, and pauses and resumes the whole child (SIGSTOP, SIGCONT) for the stack's ``aws_pause``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from ._s3_faults import CONTROL_PATH, CONTROL_TOKEN_ENV

__all__ = ["MotoServer", "start_moto", "stop_moto"]

# A paused child answers the control route when resumed: the stack pauses it for seconds.
_CONTROL_TIMEOUT = 60.0


@dataclass(slots=True, eq=False)
class MotoServer:
    """The running child: its process, URL and control token."""

    process: asyncio.subprocess.Process
    url: str
    #: the bearer token of the child's control route (``Authorization: Bearer <token>``)
    token: str
    #: stopped by :meth:`pause` and not yet resumed
    paused: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def pause(self) -> None:
        """Stop the child (SIGSTOP): connections to it hang until :meth:`resume`."""
        if not self.paused and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """Let a paused child run again (SIGCONT); nothing if it is not paused."""
        if self.paused:
            self.paused = False
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)

    async def set_s3_faults(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Replace the child's GetObject fault plans (``{"global": plan | None, "buckets":
        {name: plan}}``; ``{}`` clears them); return its state as :meth:`s3_faults` does.

        :raises ValueError: the child refused ``spec`` (its message says why).
        """
        return await self._control("POST", spec)

    async def s3_faults(self) -> dict[str, Any]:
        """The child's plans and its counts of faults injected: ``{"global": ..., "buckets":
        ..., "injected": {"s3_get_error": n, "s3_get_reset": n}}`` (waits out a pause)."""
        return await self._control("GET", None)

    async def _control(self, method: str, spec: dict[str, Any] | None) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=_CONTROL_TIMEOUT)
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, self.url + CONTROL_PATH, json=spec, headers=headers) as answer,
        ):
            raw = await answer.read()
        try:
            body: dict[str, Any] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {"error": raw[:200].decode(errors="replace")}
        if answer.status == 400:
            raise ValueError(body.get("error", "refused"))
        if answer.status != 200:
            raise RuntimeError(f"moto's fault control answered {answer.status}: {body}")
        return body


async def start_moto(port: int = 0) -> MotoServer:
    """Start the child; return it once it listens."""
    token = secrets.token_urlsafe(32)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiosagemaker.local._moto_child",
        "--port",
        str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, CONTROL_TOKEN_ENV: token},
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    moto = MotoServer(process, f"http://127.0.0.1:{line.strip().decode()}", token)
    if not line.strip().isdigit():
        await stop_moto(moto)
        raise RuntimeError("moto server failed to start")
    return moto


async def stop_moto(moto: MotoServer) -> None:
    """Close the child's stdin (it exits); terminate it if it lingers. A paused child is resumed
    first, or it could not read the end of its stdin."""
    moto.resume()
    process = moto.process
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), timeout=10)
    except TimeoutError:
        process.kill()
        await process.wait()
