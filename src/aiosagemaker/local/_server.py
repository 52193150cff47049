"""The local endpoint's HTTP front door: the runtime wire protocol plus ``/_local/*`` control routes.

``POST /endpoints/{name}/async-invocations`` does, in order: read the body; verify SigV4 (403);
apply the endpoint's (else the global) fault plan; look up the endpoint and validate the request
with the shared rules of :mod:`aiosagemaker._core._request` (400 ``ValidationError``); enqueue;
answer 202 ``{"InferenceId"}`` with the output and failure locations in headers. Every answer
carries ``x-amzn-RequestId``; errors carry ``x-amzn-ErrorType`` and ``{"message"}`` as rest-json
does.

Control routes (JSON; ``Authorization: Bearer <control_token>``; loopback host names only)::

    GET  /_local/info                     the stack info (as the info file)
    GET  /_local/stats[?endpoint=NAME]    counters; see ``stats_json``
    POST /_local/reset                    zero the counters and clear every fault plan
    GET  /_local/faults                   {"global": plan | null, "endpoints": {name: plan}}
    POST /_local/faults                   set a plan (see ``_faults``); "endpoint": NAME scopes it
    POST /_local/restart                  {"seconds": S}: restart the endpoints, down S seconds
    POST /_local/pause-aws                {"seconds": S}: stop moto's server for S seconds
    GET  /_local/endpoints                [endpoint info, ...]
    POST /_local/endpoints                create: {"name"?, "model"?, "instances"?, ...} -> info
    DELETE /_local/endpoints/{name}       stop it and delete its queue and topics

Every endpoint is also registered with moto's SageMaker control plane (see ``_control_plane``),
so that ``DescribeEndpoint`` and ``DescribeEndpointConfig`` at the info's ``sagemaker_url``
describe it.

A restart is the endpoint process's crash and return, kept inside this process so that what the
service keeps across one (the requests it accepted; moto's buckets, topics and queues) is kept
here too: the listener closes and every open connection is reset at once, the workers stop (what
they were running is queued again), and after the downtime the same port is bound again and the
workers start. Moto's own restart would wipe its state, so it is paused instead (SIGSTOP), which
is what a client sees of an S3, SNS or SQS outage: connections that hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
import struct
import uuid
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from aiohttp import web

from .._core._request import (
    FAILURE_LOCATION_HEADER,
    HEADER,
    OUTPUT_LOCATION_HEADER,
    AsyncRequest,
    S3Uri,
    check_endpoint_name,
)
from .._exceptions import InvalidRequestError
from ._control_plane import async_inference_config, deregister_endpoint, register_endpoint
from ._endpoint import EndpointConfig, LocalEndpoint
from ._errors import ServiceError, validation_error
from ._faults import FaultPlan, Schedule
from ._info import StackInfo
from ._models import load_model
from ._sigv4 import SigV4Verifier
from ._stats import ServerStats

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection

    from ._aws import AwsClients

__all__ = ["LocalServer", "MotoControl"]

logger = logging.getLogger("aiosagemaker")

ACCOUNT_ID = "123456789012"
_H_CONTENT_TYPE = HEADER["content_type"]
_H_ACCEPT = HEADER["accept"]
_H_CUSTOM = HEADER["custom_attributes"]
_H_ID = HEADER["inference_id"]
_H_INPUT = HEADER["input_location"]
_H_EXT = HEADER["output_path_extension"]
_H_FILENAME = HEADER["filename"]
_H_TTL = HEADER["request_ttl"]
_H_TIMEOUT = HEADER["invocation_timeout"]
_LINGER_RESET = struct.pack("ii", 1, 0)
_ANSWER_FAULT_ERRORS = {
    "throttle": ServiceError(429, "ThrottlingException", "Rate exceeded"),
    "internal_error": ServiceError(
        500, "InternalFailure", "An internal failure occurred. Try your request again."
    ),
    "unavailable": ServiceError(
        503, "ServiceUnavailable", "The service is unavailable. Try your request again later."
    ),
}


class MotoControl(Protocol):
    """What the server does to moto's process: pause it, and set its GetObject faults."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    async def set_s3_faults(self, spec: dict[str, Any]) -> dict[str, Any]: ...

    async def s3_faults(self) -> dict[str, Any]: ...


def endpoint_bucket(stack_bucket: str, endpoint_name: str) -> str:
    """The bucket of one endpoint's outputs and failures: ``<stack bucket>-<endpoint>``, valid."""
    name = f"{stack_bucket}-{endpoint_name.lower()}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(endpoint_name.encode()).hexdigest()[:12]
    return f"{name[:50]}-{digest}"


class _RequestIds:
    """Request ids shaped like UUIDs: a random per-process prefix and a counter (cheaper)."""

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._next = 0

    def __call__(self) -> str:
        self._next += 1
        return f"{self._prefix}{self._next & 0xFFFFFFFFFFFF:012x}"


def _int_header(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise validation_error(f"{name} must be an integer, got {value!r}") from None


class LocalServer:
    """Endpoints, faults and counters behind one aiohttp application."""

    def __init__(
        self,
        *,
        aws: AwsClients,
        task_group: asyncio.TaskGroup,
        region: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        moto_url: str,
        time_scale: float = 1.0,
        endpoint_defaults: dict[str, Any] | None = None,
        allowed_models: Collection[str] = (),
        moto: MotoControl | None = None,
    ) -> None:
        self.aws = aws
        self.region = region
        self.bucket = bucket
        self.moto_url = moto_url
        self.time_scale = time_scale
        self.stats = ServerStats()
        self.endpoints: dict[str, LocalEndpoint] = {}
        self.global_faults: FaultPlan | None = None
        self.endpoint_faults: dict[str, FaultPlan] = {}
        self.url = ""
        self._access_key = access_key
        self._secret_key = secret_key
        self._defaults = endpoint_defaults or {}
        # Code-running models (module:function) come only from the command line: the control
        # route may name the stack's own model or one listed with --allow-model, nothing else.
        self._allowed_models = frozenset(
            {*allowed_models, str(self._defaults.get("model", "echo"))}
        )
        #: the bearer token every /_local/ control request must carry (published in the info file)
        self.control_token = secrets.token_urlsafe(32)
        self._tg = task_group
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._verifier = SigV4Verifier({access_key: secret_key}, region=region)
        self._runner: web.ServerRunner | None = None
        self._routes: dict[
            tuple[str, str], Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
        ] = {}
        self._request_id = _RequestIds()
        self._listener: asyncio.Server | None = None
        self._address = ("127.0.0.1", 0)
        self._moto = moto
        # True from a restart's crash to its return: requests still being read are dropped.
        self._down = False
        self._moto_paused = False
        self._schedule_tasks: list[asyncio.Task[None]] = []
        # moto's process counts the GetObject faults since it started; a reset subtracts these.
        self._s3_injected_at_reset: dict[str, int] = {}

    # -- endpoints ---------------------------------------------------------------------------

    async def add_endpoint(self, config: EndpointConfig) -> LocalEndpoint:
        if config.name in self.endpoints:
            raise ValueError(f"endpoint {config.name!r} exists")
        model = load_model(config.model, time_scale=self.time_scale)
        resources = await self.aws.create_endpoint_resources(
            config.name, notifications=config.notifications, raw_delivery=config.raw_delivery
        )
        # A bucket per endpoint: moto lists by scanning and sorting a whole bucket, so one shared
        # bucket would make every listing pay for every other endpoint's outputs.
        bucket = endpoint_bucket(self.bucket, config.name)
        root = S3Uri(bucket, f"{config.name}/")
        output_path, failure_path = root.join("output/"), root.join("failure/")
        # The bucket, and what SageMaker's DescribeEndpoint / DescribeEndpointConfig would say of
        # the endpoint, at once: every endpoint a test creates pays for both.
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.aws.create_bucket(bucket))
            tg.create_task(
                register_endpoint(
                    self.aws.sagemaker,
                    config.name,
                    instances=config.instances,
                    async_config=async_inference_config(
                        output_path=output_path,
                        failure_path=failure_path,
                        resources=resources,
                        include_response=config.include_response,
                        max_concurrency=config.max_concurrency,
                    ),
                )
            )
        endpoint = LocalEndpoint(
            config,
            model=model,
            aws=self.aws,
            resources=resources,
            output_path=output_path,
            failure_path=failure_path,
            region=self.region,
            time_scale=self.time_scale,
            faults=self.faults_for,
        )
        self.endpoints[config.name] = endpoint
        self._tasks[config.name] = self._tg.create_task(endpoint.run())
        await endpoint.send_test_notifications()
        return endpoint

    async def remove_endpoint(self, name: str) -> None:
        endpoint = self.endpoints.pop(name)
        self.endpoint_faults.pop(name, None)
        task = self._tasks.pop(name)
        task.cancel()
        await asyncio.wait([task])
        async with asyncio.TaskGroup() as tg:
            tg.create_task(deregister_endpoint(self.aws.sagemaker, name))
            tg.create_task(self.aws.delete_endpoint_resources(endpoint.resources))

    def faults_for(self, name: str) -> FaultPlan | None:
        return self.endpoint_faults.get(name) or self.global_faults

    def stack_info(self) -> StackInfo:
        return StackInfo(
            region=self.region,
            aws_access_key_id=self._access_key,
            aws_secret_access_key=self._secret_key,
            sagemaker_runtime_url=self.url,
            sagemaker_url=self.moto_url,
            s3_url=self.moto_url,
            sns_url=self.moto_url,
            sqs_url=self.moto_url,
            control_url=self.url,
            control_token=self.control_token,
            bucket=self.bucket,
            endpoints=tuple(e.info() for e in self.endpoints.values()),
        )

    # -- stack-wide faults -------------------------------------------------------------------

    async def restart(self, down: float) -> bool:
        """Crash the endpoints' front door and workers, and bring them back after ``down``
        seconds on the same port; ``False`` (and nothing done) if one is under way."""
        if self._down or self._runner is None:
            return False
        self._down = True
        self.stats.faults_injected["endpoint_restart"] += 1
        try:
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.close()
            handler = self._runner.server
            if handler is not None:
                for connection in handler.connections:
                    if connection.transport is not None:
                        connection.transport.abort()
            for endpoint in list(self.endpoints.values()):
                await endpoint.stop_workers()
            await asyncio.sleep(down)
            await self._listen()
            for endpoint in self.endpoints.values():
                endpoint.start_workers()
        finally:
            self._down = False
        return True

    async def pause_aws(self, seconds: float) -> bool:
        """Stop moto's process for ``seconds``; ``False`` if paused already or not ours."""
        if self._moto is None or self._moto_paused:
            return False
        self.stats.faults_injected["aws_pause"] += 1
        self._moto_paused = True
        self._moto.pause()
        try:
            await asyncio.sleep(seconds)
        finally:
            self._moto.resume()
            self._moto_paused = False
        return True

    def _schedule(self, plan: FaultPlan | None) -> None:
        """Run the global plan's stack-wide faults on its seeded schedule (and stop the last's)."""
        for task in self._schedule_tasks:
            task.cancel()
        self._schedule_tasks = []
        if plan is None:
            return
        actions = {"endpoint_restart": self.restart, "aws_pause": self.pause_aws}
        for name, schedule in plan.schedules.items():
            self._schedule_tasks.append(
                self._tg.create_task(self._repeat(schedule, plan, actions[name]))
            )

    @staticmethod
    async def _repeat(
        schedule: Schedule, plan: FaultPlan, action: Callable[[float], Awaitable[bool]]
    ) -> None:
        while True:
            await asyncio.sleep(schedule.next_delay(plan.rng))
            await action(schedule.seconds)

    async def sync_s3_faults(self) -> None:
        """Give moto's process the GetObject faults of every plan in force."""
        if self._moto is None:
            return
        # An endpoint's plan replaces the global one for its bucket, as for every other fault.
        buckets = {
            endpoint_bucket(self.bucket, name): plan.s3_spec() or {}
            for name, plan in self.endpoint_faults.items()
        }
        global_spec = None if self.global_faults is None else self.global_faults.s3_spec()
        await self._moto.set_s3_faults({"global": global_spec, "buckets": buckets})

    def set_global_faults(self, plan: FaultPlan | None) -> None:
        """Put ``plan`` in force for every endpoint without one (``None``: no faults)."""
        self.global_faults = plan
        self._schedule(plan)

    # -- serving -----------------------------------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        # aiohttp's low-level server with our own dispatch: the router and application layers
        # cost more CPU per request than everything the accept path does itself.
        path = request.path
        method = request.method
        if not _is_loopback_host(request.host):
            # A page in a browser reaching the stack through DNS rebinding sends its own host
            # name: nothing here answers a name that is not loopback.
            raise web.HTTPForbidden(text="the local stack answers loopback host names only")
        if path.startswith("/endpoints/") and path.endswith("/async-invocations"):
            if method != "POST":
                raise web.HTTPMethodNotAllowed(method, ["POST"])
            return await self._invoke(request, path[11:-18])
        if path.startswith("/_local/"):
            self._check_control_token(request)
        if path.startswith("/_local/endpoints/") and method == "DELETE":
            return await self._delete_endpoint(path[18:])
        route = self._routes.get((method, path))
        if route is None:
            raise web.HTTPNotFound()
        return await route(request)

    def _check_control_token(self, request: web.BaseRequest) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.encode(), self.control_token.encode()
        ):
            raise web.HTTPUnauthorized(
                text="control routes need 'Authorization: Bearer <control_token>' "
                "(the info file's control_token)"
            )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind and serve; return the port."""
        self._routes = {
            ("GET", "/_local/info"): self._get_info,
            ("GET", "/_local/stats"): self._get_stats,
            ("POST", "/_local/reset"): self._post_reset,
            ("GET", "/_local/faults"): self._get_faults,
            ("POST", "/_local/faults"): self._post_faults,
            ("POST", "/_local/restart"): self._post_restart,
            ("POST", "/_local/pause-aws"): self._post_pause_aws,
            ("GET", "/_local/endpoints"): self._get_endpoints,
            ("POST", "/_local/endpoints"): self._post_endpoints,
        }
        runner = web.ServerRunner(web.Server(self._dispatch), handle_signals=False)
        await runner.setup()
        handler = runner.server
        assert handler is not None
        stats = self.stats

        def protocol_factory() -> asyncio.Protocol:
            # Called once per accepted connection: this is where connections are counted.
            stats.connections_opened += 1
            return handler()

        self._protocol_factory = protocol_factory
        self._runner = runner
        self._address = (host, port)
        bound = await self._listen()
        self._address = (host, bound)
        self.url = f"http://{host}:{bound}"
        return bound

    async def _listen(self) -> int:
        """Bind the address (the same port again after a restart) and accept connections."""
        sock = socket.create_server(self._address, backlog=4096)
        self._listener = await asyncio.get_running_loop().create_server(
            self._protocol_factory, sock=sock
        )
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        self._schedule(None)
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()))
        self._tasks.clear()

    # -- the runtime API ---------------------------------------------------------------------

    def _error(self, exc: ServiceError) -> web.Response:
        return web.Response(
            status=exc.status,
            body=orjson.dumps({"message": exc.message}),
            headers={
                "x-amzn-RequestId": self._request_id(),
                "x-amzn-ErrorType": exc.code,
                "Content-Type": "application/json",
            },
        )

    async def _invoke(self, request: web.BaseRequest, name: str) -> web.StreamResponse:
        stats = self.stats
        stats.requests += 1
        stats.in_flight_http += 1
        if stats.in_flight_http > stats.peak_concurrent_http:
            stats.peak_concurrent_http = stats.in_flight_http
        try:
            return await self._accept(request, name)
        except ServiceError as exc:
            stats.rejected[exc.code] += 1
            return self._error(exc)
        finally:
            stats.in_flight_http -= 1

    async def _accept(self, request: web.BaseRequest, name: str) -> web.StreamResponse:
        body = await request.read()
        if self._down:
            # Read while the process "crashed": it never answers, and never enqueues.
            return _reset(request)
        headers = request.headers
        self._verifier.verify(request.method, request.raw_path, headers, body)
        plan = self.faults_for(name)
        fault = None
        if plan is not None:
            if plan.latency:
                await asyncio.sleep(plan.latency)
            fault = plan.answer_fault()
            if fault is not None:
                self.stats.faults_injected[fault] += 1
                if fault == "reset":
                    return _reset(request)
                error = _ANSWER_FAULT_ERRORS.get(fault)
                if error is not None:
                    raise error
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            try:
                check_endpoint_name(name)
            except InvalidRequestError as exc:
                raise validation_error(exc.message) from None
            raise validation_error(f"Endpoint {name} of account {ACCOUNT_ID} not found.")
        req = AsyncRequest(
            # An empty payload is no Body: botocore sends none when only InputLocation is set.
            body=body or None,
            input_location=headers.get(_H_INPUT),
            content_type=headers.get(_H_CONTENT_TYPE),
            accept=headers.get(_H_ACCEPT),
            custom_attributes=headers.get(_H_CUSTOM),
            inference_id=headers.get(_H_ID),
            output_path_extension=headers.get(_H_EXT),
            filename=headers.get(_H_FILENAME),
            request_ttl=_int_header(headers.get(_H_TTL), "RequestTTLSeconds"),
            invocation_timeout=_int_header(headers.get(_H_TIMEOUT), "InvocationTimeoutSeconds"),
        )
        try:
            req.validate()
        except InvalidRequestError as exc:
            raise validation_error(exc.message) from None
        inference_id = req.inference_id or str(uuid.uuid4())
        job = endpoint.accept(req, inference_id, asyncio.get_running_loop().time())
        self.stats.accepted += 1
        if fault == "accept_then_reset" or self._down:
            return _reset(request)
        return web.Response(
            status=202,
            body=orjson.dumps({"InferenceId": inference_id}),
            headers={
                "x-amzn-RequestId": self._request_id(),
                OUTPUT_LOCATION_HEADER: str(job.output),
                FAILURE_LOCATION_HEADER: str(job.failure),
                "Content-Type": "application/json",
            },
        )

    # -- control routes ----------------------------------------------------------------------

    async def _get_info(self, request: web.BaseRequest) -> web.Response:
        return _json(self.stack_info().to_json())

    def stats_json(self, endpoint: str | None = None) -> dict[str, Any]:
        """Counters: global ones plus a section per endpoint (or only ``endpoint``'s)."""
        if endpoint is not None:
            ep = self.endpoints.get(endpoint)
            if ep is None:
                raise web.HTTPNotFound(text=f"no endpoint {endpoint!r}")
            return ep.stats.to_json(ep.queue.qsize())
        s = self.stats
        sections = {n: e.stats.to_json(e.queue.qsize()) for n, e in self.endpoints.items()}
        by_id: dict[str, int] = {}
        for section in sections.values():
            for key, count in section["accepted_by_id"].items():
                by_id[key] = by_id.get(key, 0) + count
        faults = s.faults_injected.copy()
        for ep in self.endpoints.values():
            faults.update(ep.stats.faults_injected)
        return {
            "requests": s.requests,
            "accepted": s.accepted,
            "rejected": dict(s.rejected),
            "faults_injected": dict(faults),
            "completed": sum(x["completed"] for x in sections.values()),
            "failed": sum(x["failed"] for x in sections.values()),
            "queue_depth": sum(x["queue_depth"] for x in sections.values()),
            "in_flight_http": s.in_flight_http,
            "peak_concurrent_http": s.peak_concurrent_http,
            "connections_opened": s.connections_opened,
            "reruns": sum(x["reruns"] for x in sections.values()),
            "accepted_by_id": by_id,
            "model_faults_by_id": {
                key: kind
                for x in sections.values()
                for key, kind in x["model_faults_by_id"].items()
            },
            "endpoints": sections,
        }

    async def _get_stats(self, request: web.BaseRequest) -> web.Response:
        stats = self.stats_json(request.query.get("endpoint"))
        if self._moto is not None and "endpoints" in stats:
            # GetObject faults are counted in moto's process, where they happen.
            injected = await self._s3_injected()
            stats["faults_injected"].update({k: v for k, v in injected.items() if v})
        return _json(stats)

    async def _s3_injected(self) -> dict[str, int]:
        assert self._moto is not None
        injected: dict[str, int] = (await self._moto.s3_faults()).get("injected", {})
        return {k: v - self._s3_injected_at_reset.get(k, 0) for k, v in injected.items()}

    async def _post_reset(self, request: web.BaseRequest) -> web.Response:
        if self._moto is not None:
            self._s3_injected_at_reset = (await self._moto.s3_faults()).get("injected", {})
        self.stats.reset()
        for endpoint in self.endpoints.values():
            endpoint.stats.reset()
        self.set_global_faults(None)
        self.endpoint_faults.clear()
        await self.sync_s3_faults()
        return _json({"reset": True})

    def faults_json(self) -> dict[str, Any]:
        return {
            "global": None if self.global_faults is None else self.global_faults.to_json(),
            "endpoints": {n: p.to_json() for n, p in self.endpoint_faults.items()},
        }

    async def _get_faults(self, request: web.BaseRequest) -> web.Response:
        return _json(self.faults_json())

    async def _post_faults(self, request: web.BaseRequest) -> web.Response:
        spec = await _read_json(request)
        endpoint = spec.get("endpoint")
        try:
            plan = FaultPlan.parse(spec)
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        if endpoint is None:
            self.set_global_faults(None if plan.empty else plan)
        elif plan.empty:
            self.endpoint_faults.pop(endpoint, None)
        else:
            self.endpoint_faults[endpoint] = plan
        await self.sync_s3_faults()
        return _json(self.faults_json())

    async def _post_restart(self, request: web.BaseRequest) -> web.StreamResponse:
        seconds = _seconds(await _read_json(request))
        # Answered first: the restart resets every open connection, this one included.
        response = _json({"restarting": seconds})
        await response.prepare(request)
        await response.write_eof()
        self._tg.create_task(self.restart(seconds))
        return response

    async def _post_pause_aws(self, request: web.BaseRequest) -> web.Response:
        seconds = _seconds(await _read_json(request))
        if self._moto is None:
            raise web.HTTPConflict(text="moto's server is not this stack's to pause")
        self._tg.create_task(self.pause_aws(seconds))
        return _json({"pausing": seconds})

    async def _get_endpoints(self, request: web.BaseRequest) -> web.Response:
        return _json([e.info().to_json() for e in self.endpoints.values()])

    async def _post_endpoints(self, request: web.BaseRequest) -> web.Response:
        spec = await _read_json(request)
        spec.setdefault("name", f"local-{uuid.uuid4().hex[:12]}")
        model = spec.get("model")
        if isinstance(model, str) and _runs_code(model) and model not in self._allowed_models:
            raise web.HTTPForbidden(
                text=f"model {model!r} runs code: start the stack with --model or --allow-model "
                "to use it; the control route takes only echo, sleep:<seconds>, failing"
            )
        try:
            config = EndpointConfig.from_json(spec, **self._defaults)
            endpoint = await self.add_endpoint(config)
        except (ValueError, TypeError, InvalidRequestError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return _json(endpoint.info().to_json())

    async def _delete_endpoint(self, name: str) -> web.Response:
        if name not in self.endpoints:
            raise web.HTTPNotFound(text=f"no endpoint {name!r}")
        await self.remove_endpoint(name)
        return _json({"deleted": name})


def _is_loopback_host(host: str) -> bool:
    """Whether an HTTP Host header names this machine by a loopback name or address (port aside):
    ``localhost``, ``127.0.0.0/8``, ``[::1]``."""
    name = host.lower()
    if name.startswith("["):  # an IPv6 literal, perhaps with a port
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _seconds(spec: dict[str, Any]) -> float:
    seconds = spec.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 600:
        raise web.HTTPBadRequest(text='expected {"seconds": S}, 0 <= S <= 600')
    return float(seconds)


def _runs_code(model: str) -> bool:
    """Whether a model spec names code to import (``module:function``), not a built-in."""
    return ":" in model and not model.startswith("sleep:")


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


async def _read_json(request: web.BaseRequest) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"bad JSON: {exc}") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return data


def _reset(request: web.BaseRequest) -> web.StreamResponse:
    """Drop the connection with a TCP RST and answer nothing."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()
    # aiohttp finds the transport closed and writes nothing.
    return web.Response(status=500)
