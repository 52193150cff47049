"""Transient S3 GetObject faults, injected by moto's own process in front of its WSGI app.

S3, SNS and SQS share moto's port, so :class:`S3FaultMiddleware` picks out GetObject alone: a
``GET`` whose SigV4 credential scope names ``s3`` (the ``Authorization`` header's, or a presigned
URL's ``X-Amz-Credential``) and whose path-style path ``/bucket/key`` has a key, with no query
parameter but GetObject's own (a subresource such as ``?acl``, ``?tagging`` or ``?uploadId`` is
another operation). ListObjects (no key), HEAD, and every SNS or SQS call go through untouched.

Two faults, each a :class:`~._faults.Trigger` (a fraction, ``{"rate": r}`` or ``{"next": n}``),
drawn from a generator seeded by the plan's ``seed``; tried in this order, at most one a request::

    {"seed": 7,
     "s3_get_reset": 0.01,           # drop the connection unanswered (an RST, not a FIN)
     "s3_get_error": {"next": 3}}    # 500 InternalError, then 503 SlowDown, alternately

A trigger's ``seconds``, which the shared grammar allows, means nothing here. A plan is global or
per bucket; a GetObject uses its bucket's plan when one is set (even an empty one: no faults
there), else the global one. The control route needs the bearer token the parent made and handed
over in :data:`CONTROL_TOKEN_ENV` (no token given, no control: every call is refused with 401)::

    POST /_aiosagemaker/s3-faults   {"global": {...} | null, "buckets": {"name": {...}}}
                                    replaces every plan ({} clears them); answers as GET does
    GET  /_aiosagemaker/s3-faults   {"global": ..., "buckets": ...,
                                     "injected": {"s3_get_error": n, "s3_get_reset": n}}

The counts are of faults injected since the process started (a new plan does not reset them).
No valid bucket name starts with ``_``, so the route cannot shadow a bucket.
"""

from __future__ import annotations

import hmac
import random
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import orjson

from ._faults import S3_FAULTS, Trigger, first_to_fire

if TYPE_CHECKING:
    from collections.abc import Iterable
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "CONTROL_PATH",
    "CONTROL_TOKEN_ENV",
    "ResetConnection",
    "S3FaultMiddleware",
    "S3FaultPlan",
    "get_object_bucket",
    "reset_connection",
]

CONTROL_PATH = "/_aiosagemaker/s3-faults"
#: the environment variable through which the parent gives moto's process the control token
CONTROL_TOKEN_ENV = "AIOSAGEMAKER_MOTO_CONTROL_TOKEN"

# (status, code, message) of the two error answers, as S3 words them; a plan alternates them.
_ERRORS = (
    (
        "500 Internal Server Error",
        "InternalError",
        "We encountered an internal error. Please try again.",
    ),
    ("503 Slow Down", "SlowDown", "Please reduce your request rate."),
)
# GetObject's own query parameters; any other names a subresource, so another operation.
_GET_OBJECT_PARAMS = frozenset({"versionId", "partNumber", "x-id"})
_GET_OBJECT_PREFIXES = ("response-", "x-amz-")


class ResetConnection(ConnectionError):
    """Raised by the middleware to drop the connection: the server's request handler catches it
    (werkzeug hands a ``ConnectionError`` to ``connection_dropped`` and writes nothing) and calls
    :func:`reset_connection`."""


def reset_connection(sock: socket.socket) -> None:
    """Close ``sock`` so that the peer gets an RST: SO_LINGER on with a zero timeout discards the
    unsent data and resets instead of the orderly FIN. The close takes effect when the request
    handler's file objects on the socket close, which it does next."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@dataclass(slots=True)
class S3FaultPlan:
    """One scope's GetObject faults; its triggers keep their own countdowns."""

    seed: int | None = None
    triggers: dict[str, Trigger] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    #: error answers given so far, to alternate 500 and 503
    errors: int = 0

    @classmethod
    def parse(cls, spec: Any) -> S3FaultPlan:
        """:raises ValueError: ``spec`` is not a plan of these faults."""
        if not isinstance(spec, dict):
            raise ValueError(f"a plan must be an object, got {spec!r}")
        unknown = set(spec) - {"seed", *S3_FAULTS}
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {list(S3_FAULTS)}")
        seed = spec.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError("seed must be an integer")
        triggers = {name: Trigger.parse(name, spec[name]) for name in S3_FAULTS if name in spec}
        return cls(seed=seed, triggers=triggers, rng=random.Random(seed))

    def draw(self) -> str | None:
        """The fault for the next GetObject in this scope, if any (consumes ``next`` counts)."""
        return first_to_fire(self.triggers, S3_FAULTS, self.rng)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: t.to_json() for name, t in self.triggers.items()}
        if self.seed is not None:
            out["seed"] = self.seed
        return out


def get_object_bucket(environ: WSGIEnvironment) -> str | None:
    """The bucket of a path-style S3 GetObject request; ``None`` for any other request."""
    if environ.get("REQUEST_METHOD") != "GET":
        return None
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    credential: str = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in credential:
        credential = credential.split("Credential=", 1)[1].split(",", 1)[0]
    else:
        credential = (query.get("X-Amz-Credential") or [""])[0]
    # <key id>/<date>/<region>/<service>/aws4_request
    scope = credential.strip().split("/")
    if len(scope) != 5 or scope[3] != "s3":
        return None
    path: str = environ.get("PATH_INFO", "")
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket or not key:
        return None
    for name in query:
        if name not in _GET_OBJECT_PARAMS and not name.lower().startswith(_GET_OBJECT_PREFIXES):
            return None
    return bucket


class S3FaultMiddleware:
    """moto's WSGI app behind GetObject faults and their control route (thread-safe: the
    server answers each request in its own thread)."""

    def __init__(self, app: WSGIApplication, token: str | None) -> None:
        self._app = app
        # No token, no control: nothing the route is shown can match.
        self._token = f"Bearer {token}".encode() if token else None
        self._lock = threading.Lock()
        self._global: S3FaultPlan | None = None
        self._buckets: dict[str, S3FaultPlan] = {}
        self._injected = dict.fromkeys(S3_FAULTS, 0)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == CONTROL_PATH:
            return self._control(environ, start_response)
        bucket = get_object_bucket(environ)
        drawn = None if bucket is None else self._draw(bucket)
        if drawn is None:
            return self._app(environ, start_response)
        fault, errors = drawn
        if fault == "s3_get_reset":
            raise ResetConnection(fault)
        status, code, message = _ERRORS[errors % len(_ERRORS)]
        request_id = f"{random.getrandbits(64):016X}"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<Resource>{escape(environ.get('PATH_INFO', ''))}</Resource>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers = [
            ("Content-Type", "application/xml"),
            ("Content-Length", str(len(body))),
            ("x-amz-request-id", request_id),
        ]
        start_response(status, headers)
        return [body]

    def _draw(self, bucket: str) -> tuple[str, int] | None:
        """The fault for a GetObject in ``bucket`` and the plan's error answers before it."""
        with self._lock:
            plan = self._buckets.get(bucket, self._global)
            fault = None if plan is None else plan.draw()
            if plan is None or fault is None:
                return None
            self._injected[fault] += 1
            errors = plan.errors
            if fault == "s3_get_error":
                plan.errors += 1
            return fault, errors

    # -- control -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The plans in force and the faults injected so far, as the control route answers."""
        with self._lock:
            return {
                "global": None if self._global is None else self._global.to_json(),
                "buckets": {name: plan.to_json() for name, plan in self._buckets.items()},
                "injected": dict(self._injected),
            }

    def set_plans(self, spec: Any) -> None:
        """Replace every plan by those of ``spec`` (all parsed first: a bad one changes nothing).

        :raises ValueError: ``spec`` is malformed.
        """
        if not isinstance(spec, dict):
            raise ValueError("expected an object")
        unknown = set(spec) - {"global", "buckets"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}; known: ['buckets', 'global']")
        given = spec.get("global")
        global_plan = None if given is None else S3FaultPlan.parse(given)
        buckets = spec.get("buckets") or {}
        if not isinstance(buckets, dict):
            raise ValueError("buckets: expected an object of bucket name to plan")
        plans = {
            str(name): S3FaultPlan.parse(plan) for name, plan in buckets.items() if plan is not None
        }
        with self._lock:
            self._global = global_plan
            self._buckets = plans

    def _control(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1")
        if self._token is None or not hmac.compare_digest(given, self._token):
            return _json(start_response, "401 Unauthorized", {"error": "bearer token required"})
        method = environ.get("REQUEST_METHOD")
        if method == "GET":
            return _json(start_response, "200 OK", self.state())
        if method != "POST":
            return _json(start_response, "405 Method Not Allowed", {"error": "GET or POST"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            self.set_plans(orjson.loads(environ["wsgi.input"].read(length) or b"{}"))
        except ValueError as exc:  # orjson.JSONDecodeError is one
            return _json(start_response, "400 Bad Request", {"error": str(exc)})
        return _json(start_response, "200 OK", self.state())


def _json(start_response: StartResponse, status: str, data: dict[str, Any]) -> list[bytes]:
    body = orjson.dumps(data)
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
