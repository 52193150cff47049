"""Rows in, records out: the columns of the Dataset ``AsyncInference`` maps, and back.

A row becomes an :class:`~aiosagemaker.batch._inputs.InputItem`; its OUTPUT record (the batch
job's record format, :mod:`aiosagemaker.batch._records`) becomes the result columns below, and the
driver turns them back into the same record. Pure functions (pyarrow, imported on use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["RESULT_COLUMNS", "record_of_row", "result_columns"]

#: The columns ``AsyncInference`` adds to each row, in this order.
RESULT_COLUMNS = (
    "inference_id",
    "status",
    "output_location",
    "output_content_type",
    "output",
    "failure_reason",
    "timings",
    "resent",
    "recovered",
)


def _types() -> dict[str, pa.DataType]:
    import pyarrow as pa

    return {
        "inference_id": pa.string(),
        "status": pa.string(),
        "output_location": pa.string(),
        "output_content_type": pa.string(),
        # JSON text: outputs differ in shape from one row to the next (as in Parquet parts)
        "output": pa.string(),
        "failure_reason": pa.string(),
        "timings": pa.struct(
            [
                ("submitted", pa.float64()),
                ("accepted", pa.float64()),
                ("completed", pa.float64()),
                ("latency_ms", pa.float64()),
            ]
        ),
        "resent": pa.bool_(),
        "recovered": pa.bool_(),
    }


def result_columns(
    records: list[dict[str, Any]], resent: list[bool], recovered: list[bool]
) -> dict[str, pa.Array]:
    """The result columns of a batch, from its records (in row order).

    :param resent: per row, sent again by a retried task although an earlier try may have sent
        it (it may have run twice).
    :param recovered: per row, accepted by an earlier try and collected, not sent again.
    """
    import pyarrow as pa

    types = _types()
    values: dict[str, list[Any]] = {
        "inference_id": [r.get("inference_id") for r in records],
        "status": [r.get("status") for r in records],
        "output_location": [r.get("output_location") for r in records],
        "output_content_type": [r.get("content_type") for r in records],
        "output": [
            None if r.get("output") is None else orjson.dumps(r["output"]).decode() for r in records
        ],
        "failure_reason": [r.get("failure_reason") for r in records],
        "timings": [r.get("timings") for r in records],
        "resent": resent,
        "recovered": recovered,
    }
    return {name: pa.array(values[name], types[name]) for name in RESULT_COLUMNS}


def record_of_row(row: dict[str, Any], *, id_column: str = "id") -> dict[str, Any]:
    """The batch job's OUTPUT record of one result row (as ``output_record`` makes it)."""
    output = row.get("output")
    record: dict[str, Any] = {
        "n": row["n"],
        "id": row.get(id_column),
        "inference_id": row.get("inference_id"),
        "status": row.get("status"),
        "output_location": row.get("output_location"),
        "content_type": row.get("output_content_type"),
        "output": None if output is None else orjson.loads(output),
        "failure_reason": row.get("failure_reason"),
    }
    timings = row.get("timings")
    if timings is not None:
        record["timings"] = timings
    return record
