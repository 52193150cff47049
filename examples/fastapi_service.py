"""A FastAPI service that submits a request per call and answers from the watcher.

    ENDPOINT=my-endpoint QUEUE_URL=... uvicorn fastapi_service:app --port 8000
    curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"inputs": "hi"}'

One invoker for the whole process, opened and closed by the app's lifespan: its connection pool,
limits and watcher are shared by every request. ``POST /predict`` waits for the output (up to
``RESULT_TIMEOUT`` seconds); ``POST /jobs`` answers at once with the 202's inference id and
locations, for clients that come back later (the output lands in S3 either way).
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Request, Response

from aiosagemaker import (
    AdmissionTimeoutError,
    AsyncInvoker,
    InferenceFailedError,
    InvalidRequestError,
    InvocationError,
    Limits,
    ResultTimeoutError,
    S3Polling,
    SqsNotifications,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

RESULT_TIMEOUT = float(os.environ.get("RESULT_TIMEOUT", "60"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    queue_url = os.environ.get("QUEUE_URL")
    async with AsyncInvoker(
        os.environ["ENDPOINT"],
        # A full service sheds load (503) after 1 s instead of queueing requests without bound.
        limits=Limits(max_concurrent_invocations=64, max_pending=5_000, admission_timeout=1.0),
        watcher=SqsNotifications(queue_url=queue_url) if queue_url else S3Polling(),
    ) as invoker:
        app.state.invoker = invoker
        yield
        # Leaving: what was admitted is sent, the watcher stops; unresolved jobs fail with
        # InvokerClosedError (their callers get a 500).


app = FastAPI(lifespan=lifespan)


def _invoker(request: Request) -> AsyncInvoker:
    invoker: AsyncInvoker = request.app.state.invoker
    return invoker


@app.post("/predict")
async def predict(request: Request, payload: Annotated[Any, Body()]) -> Response:
    """Submit the JSON body and answer with the model's output."""
    try:
        job = await _invoker(request).submit(payload)
        result = await job.result(timeout=RESULT_TIMEOUT)
    except InvalidRequestError as exc:  # too large, a bad field: nothing was sent
        raise HTTPException(422, str(exc)) from exc
    except AdmissionTimeoutError as exc:
        raise HTTPException(503, "busy, retry later", headers={"Retry-After": "1"}) from exc
    except InferenceFailedError as exc:  # the model ran and failed
        raise HTTPException(502, f"inference failed: {exc.reason}") from exc
    except InvocationError as exc:  # the endpoint refused the request
        raise HTTPException(502, f"endpoint error {exc.code}") from exc
    except ResultTimeoutError as exc:  # still queued in the endpoint: the output comes later
        raise HTTPException(504, f"no result yet for {exc.inference_id}") from exc
    return Response(result.body or b"", media_type=result.content_type or "application/json")


@app.post("/jobs", status_code=202)
async def create_job(request: Request, payload: Annotated[Any, Body()]) -> dict[str, Any]:
    """Submit the JSON body and answer with where its output will be, without waiting for it."""
    try:
        job = await _invoker(request).submit(payload)
        accepted = await job.accepted()
    except InvalidRequestError as exc:
        raise HTTPException(422, str(exc)) from exc
    except AdmissionTimeoutError as exc:
        raise HTTPException(503, "busy, retry later", headers={"Retry-After": "1"}) from exc
    except InvocationError as exc:
        raise HTTPException(502, f"endpoint error {exc.code}") from exc
    return {
        "inference_id": accepted.inference_id,
        "output_location": accepted.output_location,
        "failure_location": accepted.failure_location,
    }


@app.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    """The invoker's counters: jobs in flight, pending, accepted, throttled."""
    s = _invoker(request).statistics()
    return {
        "in_flight": s.in_flight,
        "pending": s.pending,
        "concurrency_limit": s.concurrency_limit,
        "submitted": s.submitted,
        "accepted": s.accepted,
        "resolved": s.resolved,
        "failed": s.failed,
        "throttled": s.throttled,
    }
