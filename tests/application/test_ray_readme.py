"""The README's Ray example (section "Past one machine: Ray"), run as a user would: copied from
README.md at test time and pointed at the local stack.

Only the names a user replaces are substituted (the bucket, the endpoint; and, on this 2-core
machine, the actor count), each asserted present, so that the example and these tests cannot
drift apart. The example reads and writes ``s3://`` with Ray Data, which resolves the paths with
pyarrow's ``FileSystem.from_uri``: that honours ``AWS_ENDPOINT_URL_S3`` (apache/arrow#39160), so
the example reaches moto's S3 through the same variable as botocore, with no change.

- ``test_readme_ray_example`` runs the whole block on a Ray cluster started on 127.0.0.1 (about
  40 s of start-up here, and Ray clusters time out under pytest-xdist): ``make test-scale``.
- ``test_readme_ray_actor_kwargs`` needs no cluster: it builds ``AsyncInference`` from the
  example's own ``fn_constructor_kwargs`` and calls it as an actor would, on a batch of the
  example's size and columns.
"""

from __future__ import annotations

import ast
import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray_helpers import start_ray

from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = [
    pytest.mark.usefixtures("stack_env"),
    # Ray's own modules warn about their dependencies' deprecations on import.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

README = Path(__file__).parents[2] / "README.md"

#: what the example says its input has (and so what the tests' inputs have)
COLUMNS_COMMENT = "# columns n, id, body"
#: the columns AsyncInference adds to each row (the README lists them under "How.")
RESULT_COLUMNS = [
    "inference_id",
    "status",
    "output_location",
    "output_content_type",
    "output",
    "failure_reason",
    "timings",
    "resent",
    "recovered",
]


def _ray_example() -> str:
    text = README.read_text()
    section = text[text.index("### Past one machine: Ray") :]
    match = re.search(r"```python\n(import ray\n.*?)```", section, re.DOTALL)
    assert match is not None, "the README's Ray section has no Python block starting `import ray`"
    code = match.group(1)
    assert COLUMNS_COMMENT in code
    return code


def _pointed_at(code: str, *, bucket: str, endpoint: str, actors: int | None = None) -> str:
    """The example with the user's names replaced: ``bucket`` stands for ``my-bucket`` (a prefix
    of the stack's bucket), ``endpoint`` for ``my-async-endpoint``; ``actors`` for its 8."""
    replacements = [
        ("s3://my-bucket/", f"s3://{bucket}/"),
        ('"my-async-endpoint"', repr(endpoint)),
    ]
    if actors is not None:
        replacements += [
            (
                "max_concurrent_invocations=1024), 8)",
                f"max_concurrent_invocations=1024), {actors})",
            ),
            ("ray.data.ActorPoolStrategy(size=8)", f"ray.data.ActorPoolStrategy(size={actors})"),
        ]
    for placeholder, value in replacements:
        assert placeholder in code, f"the README's Ray example no longer has {placeholder}"
        code = code.replace(placeholder, value)
    return code


def _keyword(code: str, name: str) -> ast.expr:
    """The expression the example passes as ``name=`` to ``map_batches``."""
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "map_batches":
            for keyword in node.keywords:
                if keyword.arg == name:
                    return keyword.value
    raise AssertionError(f"the README's map_batches call has no {name}=")


def _compiled(expression: ast.expr) -> Any:
    return compile(ast.Expression(expression), str(README), "eval")


def _inputs(count: int) -> pa.Table:
    """The example's input: columns ``n`` (unique integers), ``id`` and ``body``."""
    return pa.table(
        {
            "n": list(range(1, count + 1)),
            "id": [f"doc-{n}" for n in range(1, count + 1)],
            "body": [orjson.dumps({"v": n}) for n in range(1, count + 1)],
        }
    )


def _s3(stack: LocalStack) -> Any:
    info = stack.info
    return boto3.client("s3", endpoint_url=info.s3_url, region_name=info.region)


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _check_rows(rows: list[dict[str, Any]], count: int) -> None:
    """One row per input, each completed with the echo endpoint's answer: its own body."""
    assert sorted(r["n"] for r in rows) == list(range(1, count + 1))
    assert {r["status"] for r in rows} == {"completed"}, {r["failure_reason"] for r in rows}
    for row in rows:
        assert row["id"] == f"doc-{row['n']}"
        assert row["inference_id"] == f"job-42-{row['n']}"  # the example's job_id
        # No content type in the example: the echoed body comes back as text (JSON text of it).
        assert orjson.loads(row["output"]) == orjson.dumps({"v": row["n"]}).decode()
        assert row["output_location"].startswith("s3://")
        assert not row["resent"] and not row["recovered"]


@pytest.fixture(scope="module")
def ray_cluster(local_stack: LocalStack) -> Iterator[str]:
    yield from start_ray(local_stack)


@pytest.mark.scale  # a Ray cluster: about 40 s of start-up here (make test-scale)
# Ray Data's hint that a small input (read as one block) cannot keep both actors busy: true, and
# no error, whatever the suite's warnings filter makes of it.
@pytest.mark.filterwarnings("ignore:The minimum number of concurrent actors:UserWarning")
def test_readme_ray_example(
    ray_cluster: str, local_stack: LocalStack, quiet_endpoint: EndpointInfo
) -> None:
    count, files = 400, 4  # a few of the example's batches of 128; files enough for 2 actors
    s3 = _s3(local_stack)
    bucket = f"{local_stack.info.bucket}/readme-ray-{uuid.uuid4().hex[:8]}"
    stack_bucket, prefix = bucket.split("/", 1)
    try:
        inputs, size = _inputs(count), count // files
        for i in range(files):
            sink = io.BytesIO()
            pq.write_table(inputs.slice(i * size, size), sink)
            key = f"{prefix}/inputs/part-{i}.parquet"
            s3.put_object(Bucket=stack_bucket, Key=key, Body=sink.getvalue())
        # 2 actors: the cluster has 4 CPUs, the machine 2; each actor takes one.
        code = _pointed_at(_ray_example(), bucket=bucket, endpoint=quiet_endpoint.name, actors=2)

        exec(compile(code, str(README), "exec"), {"__name__": "readme"})

        written = [
            k for k in _keys(s3, stack_bucket, f"{prefix}/results/") if k.endswith(".parquet")
        ]
        assert written and not any("/_journal/" in k for k in written)
        tables = [
            pq.read_table(io.BytesIO(s3.get_object(Bucket=stack_bucket, Key=k)["Body"].read()))
            for k in written
        ]
        rows = pa.concat_tables(tables).to_pylist()
        assert len(rows) == count
        assert list(rows[0]) == ["n", "id", *RESULT_COLUMNS]  # the payload is dropped
        _check_rows(rows, count)
        # The actors journaled under the example's journal prefix, in the same S3.
        assert _keys(s3, stack_bucket, f"{prefix}/results/_journal/ray/")
    finally:
        for key in _keys(s3, stack_bucket, f"{prefix}/"):
            s3.delete_object(Bucket=stack_bucket, Key=key)
        s3.close()


async def test_readme_ray_actor_kwargs(
    local_stack: LocalStack, quiet_endpoint: EndpointInfo
) -> None:
    from aiosagemaker.ray import AsyncInference

    bucket = f"{local_stack.info.bucket}/readme-udf-{uuid.uuid4().hex[:8]}"
    stack_bucket, prefix = bucket.split("/", 1)
    code = _pointed_at(_ray_example(), bucket=bucket, endpoint=quiet_endpoint.name)
    # The example's own statements up to the Dataset (its imports of aiosagemaker and the
    # per-actor limits), then its fn_constructor_kwargs and batch_size, evaluated as written.
    namespace: dict[str, Any] = {}
    for statement in ast.parse(code).body:
        names = {n.id for n in ast.walk(statement) if isinstance(n, ast.Name)}
        if isinstance(statement, ast.ImportFrom) or (
            isinstance(statement, ast.Assign) and not names & {"ray", "ds"}
        ):
            exec(compile(ast.Module([statement], []), str(README), "exec"), namespace)
    assert "per_actor" in namespace
    kwargs = eval(_compiled(_keyword(code, "fn_constructor_kwargs")), namespace)
    # A smaller batch than the example's (the suite's time): the same code at any size.
    rows_in = min(16, eval(_compiled(_keyword(code, "batch_size")), namespace))
    assert kwargs["journal"] == f"s3://{bucket}/results/_journal/ray/"

    # As an actor does: built with those kwargs, called on each batch on its event loop.
    udf = AsyncInference(**kwargs)
    rows: list[dict[str, Any]] = []
    try:
        async for table in udf(_inputs(rows_in)):
            assert table.column_names == ["n", "id", *RESULT_COLUMNS]
            rows.extend(table.to_pylist())
    finally:
        await udf.aclose()
    _check_rows(rows, rows_in)
    # The acceptances went to the example's journal, in the stack's S3.
    s3 = _s3(local_stack)
    try:
        journal = _keys(s3, stack_bucket, f"{prefix}/results/_journal/ray/")
        assert any("/accepted/" in k for k in journal), journal
        for key in _keys(s3, stack_bucket, f"{prefix}/"):
            s3.delete_object(Bucket=stack_bucket, Key=key)
    finally:
        s3.close()
