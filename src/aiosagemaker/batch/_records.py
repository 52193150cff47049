"""The shapes of what a batch job writes: OUTPUT records and the journal's records.

OUTPUT has one JSON object per input, in input order (or as they finish, with ``--unordered``)::

    {"n": 17, "id": "doc-17", "inference_id": "3f9c2a7d1b04-17", "status": "completed",
     "output_location": "s3://...", "content_type": "application/json", "output": {...},
     "failure_reason": null,
     "timings": {"submitted": 1732550001.1, "accepted": 1732550001.2,
                 "completed": 1732550002.0, "latency_ms": 912.4}}

``status`` is one of :data:`Status`. ``output`` is the output itself when it is small text or
JSON (else ``null``: read it at ``output_location``). ``timings`` (wall-clock seconds, to the
millisecond) is there for every input that was sent; ``latency_ms`` runs from submission to the
result in hand, ``null`` for a job an earlier run submitted.

The journal's records (``intent``, ``accepted``, ``result``, ``mark``, ``part``, ``resume``) are described
with the file in :mod:`._journal`; they are made here, and only here.

Pure functions: nothing here does I/O or counts anything.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

import orjson

if TYPE_CHECKING:
    from aiosagemaker import InferenceJob, JobTimings

    from ._inputs import InputItem

__all__ = [
    "Status",
    "accepted_entry",
    "inline_output",
    "intent_entry",
    "mark_entry",
    "output_record",
    "part_entry",
    "record_n",
    "result_entry",
    "resume_entry",
]

#: completed: the output is there; failed: the inference ran and failed; invalid: the input could
#: not be sent (no inference id); error: sent and refused, timed out, or unreadable
Status = Literal["completed", "failed", "invalid", "error"]


def _epoch(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --- OUTPUT ------------------------------------------------------------------------------------


def output_record(
    item: InputItem,
    *,
    status: Status,
    inference_id: str | None = None,
    output_location: str | None = None,
    content_type: str | None = None,
    output: Any = None,
    reason: str | None = None,
    timings: JobTimings | None = None,
) -> dict[str, Any]:
    """The OUTPUT record of one input."""
    record: dict[str, Any] = {
        "n": item.n,
        "id": item.input_id,
        "inference_id": inference_id,
        "status": status,
        "output_location": output_location,
        "content_type": content_type,
        "output": output,
        "failure_reason": reason,
    }
    if timings is not None:
        record["timings"] = _timings(timings)
    return record


def _timings(timings: JobTimings) -> dict[str, Any]:
    end = timings.fetched or timings.completed
    latency_ms = None
    if end is not None and timings.submitted is not None:
        latency_ms = round((end - timings.submitted) * 1000, 1)
    return {
        "submitted": _epoch(timings.submitted),
        "accepted": _epoch(timings.accepted),
        "completed": _epoch(timings.completed),
        "latency_ms": latency_ms,
    }


def inline_output(body: bytes | None, content_type: str | None, limit: int) -> Any:
    """The output itself when at most ``limit`` bytes: parsed JSON, or text; else ``None``."""
    if body is None or len(body) > limit:
        return None
    if content_type and "json" in content_type:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def record_n(line: bytes) -> int | None:
    """The input number ``n`` of one OUTPUT line; ``None`` for a line that is not a record."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    n = value.get("n") if isinstance(value, dict) else None
    return n if isinstance(n, int) else None


# --- the journal -------------------------------------------------------------------------------


def intent_entry(n: int, inference_id: str) -> dict[str, Any]:
    """Input ``n`` is about to be sent (on disk before it is)."""
    return {"t": "intent", "n": n, "id": inference_id}


def accepted_entry(n: int, job: InferenceJob) -> dict[str, Any]:
    """The endpoint accepted input ``n``: where its result will be, and when it was accepted."""
    return {
        "t": "accepted",
        "n": n,
        "id": job.inference_id,
        "out": job.output_location,
        "fail": job.failure_location,
        "at": _epoch(job.timings.accepted),
    }


def result_entry(record: dict[str, Any]) -> dict[str, Any]:
    """Input ``n``'s OUTPUT record, journaled before it reaches OUTPUT."""
    return {"t": "result", "n": record["n"], "rec": record}


def mark_entry(n: int) -> dict[str, Any]:
    """Unordered jobs: every input up to ``n`` is in OUTPUT."""
    return {"t": "mark", "n": n}


def part_entry(k: int, name: str, ns: list[int]) -> dict[str, Any]:
    """Part ``k`` of OUTPUT (``name``) is written whole and holds the records of inputs ``ns``,
    journaled as runs ``[first, last]`` of consecutive inputs."""
    ranges: list[list[int]] = []
    for n in sorted(ns):
        if ranges and ranges[-1][1] == n - 1:
            ranges[-1][1] = n
        else:
            ranges.append([n, n])
    return {"t": "part", "k": k, "name": name, "ranges": ranges, "records": len(ns)}


def resume_entry() -> dict[str, Any]:
    """A rerun of the job starts."""
    return {"t": "resume", "at": _epoch(time.time())}
