"""Start the local stack in a child process and talk to its control routes.

::

    async with open_local_stack(model="echo", instances=2, max_concurrency=4) as stack:
        client = session.create_client(
            "sagemaker-runtime", endpoint_url=stack.info.sagemaker_runtime_url, ...
        )
        endpoint = await stack.create_endpoint(include_response=True)   # a fresh one
        await stack.set_faults({"throttle": {"next": 5}}, endpoint=endpoint.name)
        print(await stack.stats(endpoint.name))

The same object also works as a plain ``with`` block (a sync start), for session-scoped pytest
fixtures that must outlive any one event loop; the control helpers open a fresh HTTP session per
call, so they work from whichever loop awaits them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import aiohttp
import orjson

from ._info import EndpointInfo, StackInfo

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

__all__ = ["LocalStack", "open_local_stack"]

# How long a control call waits out the stack's own restart (a fault: down for seconds at most).
_CONTROL_PATIENCE = 30.0

# src/ (or site-packages/) holding the aiosagemaker package, so the child imports this very copy.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class LocalStack:
    """A running local stack (see :func:`open_local_stack`)."""

    def __init__(
        self, argv: Sequence[str], *, startup_timeout: float = 60.0, pythonpath: Sequence[str] = ()
    ) -> None:
        self._argv = list(argv)
        self._pythonpath = list(pythonpath)
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._tmpdir: str | None = None
        self._log: IO[bytes] | None = None
        self._info: StackInfo | None = None

    def __repr__(self) -> str:
        state = "running" if self._info is not None else "not started"
        url = self._info.sagemaker_runtime_url if self._info is not None else ""
        return f"<LocalStack [{state}] {url}>"

    @property
    def info(self) -> StackInfo:
        """URLs, credentials and endpoints; available once started."""
        if self._info is None:
            raise RuntimeError("the local stack is not running")
        return self._info

    @property
    def endpoint(self) -> EndpointInfo:
        """The first endpoint created at start."""
        return self.info.endpoints[0]

    def env(self) -> dict[str, str]:
        """The ``AWS_*`` environment variables a client needs to use this stack."""
        return self.info.env()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalStack:
        """Start the child process and block until its info file appears."""
        if self._process is not None:
            raise RuntimeError("already started")
        self._tmpdir = tempfile.mkdtemp(prefix="aiosagemaker-local-")
        info_file = Path(self._tmpdir) / "info.json"
        self._log = open(Path(self._tmpdir) / "stack.log", "wb")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (*self._pythonpath, _PACKAGE_ROOT, env.get("PYTHONPATH")) if p
        )
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiosagemaker.local",
                *self._argv,
                "--info-file",
                str(info_file),
                "--watch-stdin",
            ],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + self._startup_timeout
        try:
            while not info_file.exists():
                if self._process.poll() is not None:
                    raise RuntimeError(f"the local stack exited at start:\n{self._log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the local stack did not start:\n{self._log_tail()}")
                time.sleep(0.02)
            self._info = StackInfo.from_json(orjson.loads(info_file.read_bytes()))
        except BaseException:
            self.close()
            raise
        return self

    def _log_tail(self) -> str:
        if self._tmpdir is None:
            return ""
        try:
            return (Path(self._tmpdir) / "stack.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the child (and, through it, moto's server) and remove the temporary files."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        self._info = None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> LocalStack:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- control -----------------------------------------------------------------------------

    async def _control(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        url = f"{self.info.control_url}{path}"
        data = None if body is None else orjson.dumps(body)
        # The stack's own restarts (a fault) refuse connections for a moment, and reset those
        # open: a control call waits them out. A refused connection sent nothing, so anything
        # is tried again; a reset one only if it asked without changing anything (GET).
        deadline = time.monotonic() + _CONTROL_PATIENCE
        while True:
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.request(
                        method,
                        url,
                        data=data,
                        params=params,
                        headers={"Authorization": f"Bearer {self.info.control_token}"},
                    ) as response,
                ):
                    raw = await response.read()
            except aiohttp.ClientConnectorError:
                if time.monotonic() > deadline:
                    raise
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if method != "GET" or time.monotonic() > deadline:
                    raise
            else:
                if response.status >= 400:
                    raise RuntimeError(
                        f"{method} {path}: {response.status} {raw.decode(errors='replace')}"
                    )
                return orjson.loads(raw)
            await asyncio.sleep(0.05)

    async def set_faults(
        self,
        faults: Mapping[str, Any] | None = None,
        /,
        *,
        endpoint: str | None = None,
        **more: Any,
    ) -> dict[str, Any]:
        """Replace the fault plan of ``endpoint`` (or the global one); ``{}`` clears it.

        ``await stack.set_faults({"throttle": {"next": 5}}, endpoint=ep.name)`` or
        ``await stack.set_faults(internal_error=0.1, seed=7)``. Returns every plan in force.
        """
        spec = {**(faults or {}), **more}
        if endpoint is not None:
            spec["endpoint"] = endpoint
        result: dict[str, Any] = await self._control("POST", "/_local/faults", body=spec)
        return result

    async def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._control("GET", "/_local/faults")
        return result

    async def stats(self, endpoint: str | None = None) -> dict[str, Any]:
        """Counters: the whole server's, or one endpoint's when ``endpoint`` is given."""
        params = None if endpoint is None else {"endpoint": endpoint}
        result: dict[str, Any] = await self._control("GET", "/_local/stats", params=params)
        return result

    async def reset(self) -> None:
        """Zero every counter and clear every fault plan."""
        await self._control("POST", "/_local/reset")

    async def restart(self, seconds: float = 0.5, *, wait: bool = True) -> None:
        """Crash the endpoints' front door and workers and bring them back ``seconds`` later
        (accepted requests are kept; open connections are reset). With ``wait``, return once
        the stack answers again."""
        await self._control("POST", "/_local/restart", body={"seconds": seconds})
        if wait:
            await asyncio.sleep(seconds)
            await self._control("GET", "/_local/info")  # waits out the rest of the restart

    async def pause_aws(self, seconds: float) -> None:
        """Stop moto's server (S3, SNS, SQS) for ``seconds`` (SIGSTOP, then SIGCONT); returns at
        once."""
        await self._control("POST", "/_local/pause-aws", body={"seconds": seconds})

    async def create_endpoint(self, name: str | None = None, **options: Any) -> EndpointInfo:
        """Create an endpoint (fresh output prefix, topics and queue) and return its info.

        ``options``: ``model``, ``instances``, ``max_concurrency``, ``notifications``,
        ``include_response``, ``raw_delivery``; the stack's own settings are the defaults.
        """
        body = dict(options)
        if name is not None:
            body["name"] = name
        return EndpointInfo.from_json(await self._control("POST", "/_local/endpoints", body=body))

    async def delete_endpoint(self, name: str) -> None:
        """Stop an endpoint and delete its queue and topics (its S3 objects stay)."""
        await self._control("DELETE", f"/_local/endpoints/{name}")

    async def endpoints(self) -> list[EndpointInfo]:
        return [EndpointInfo.from_json(e) for e in await self._control("GET", "/_local/endpoints")]


def open_local_stack(
    *,
    model: str = "echo",
    instances: int = 1,
    max_concurrency: int = 4,
    endpoints: Sequence[str] = ("local-endpoint",),
    time_scale: float = 1.0,
    notifications: bool = True,
    include_response: bool = False,
    raw_delivery: bool = False,
    port: int = 0,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 60.0,
    pythonpath: Sequence[str] = (),
) -> LocalStack:
    """A local stack to run in a child process: ``async with open_local_stack() as stack:``.

    Starts on entering the block (``with`` works too) and stops, children included, on leaving.

    :param model: the endpoints' model: ``echo``, ``sleep:<seconds>``, ``failing``,
        ``module:function``.
    :param instances: simulated instances per endpoint.
    :param max_concurrency: concurrent invocations per instance.
    :param endpoints: the endpoints to create at start.
    :param time_scale: multiplies model latency, request TTLs and invocation timeouts.
    :param extra_args: more command-line flags (fault flags such as ``--throttle 0.1``).
    :param pythonpath: directories the stack's process imports ``module:function`` models from.
    :return: a :class:`LocalStack`, not yet started.
    """
    argv = [
        "--model",
        model,
        "--instances",
        str(instances),
        "--max-concurrency",
        str(max_concurrency),
        "--time-scale",
        repr(time_scale),
        "--port",
        str(port),
    ]
    for name in endpoints:
        argv += ["--endpoint", name]
    if not notifications:
        argv.append("--no-notifications")
    if include_response:
        argv.append("--include-response")
    if raw_delivery:
        argv.append("--raw-delivery")
    argv += list(extra_args)
    return LocalStack(argv, startup_timeout=startup_timeout, pythonpath=pythonpath)
