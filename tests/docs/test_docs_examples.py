"""The runnable examples of ``examples/``, run against the local stack as a user would run them.

Each example takes its endpoint from ``ENDPOINT`` (and its notification queue from ``QUEUE_URL``)
and the rest from the standard ``AWS_*`` variables that ``aiosagemaker local`` prints: the tests
set exactly those, then run the example's own entry point. The documentation includes these files
(``literalinclude``), so a page's code and what these tests run are the same text.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import uuid
from pathlib import Path
from types import ModuleType

import boto3
import httpx
import pytest

from aiosagemaker.local import EndpointInfo, LocalStack

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` afresh (it reads the environment when it runs)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pydantic look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example_env(
    stack_env: LocalStack, endpoint: EndpointInfo, monkeypatch: pytest.MonkeyPatch
) -> EndpointInfo:
    """The environment of the tutorial: the stack's ``AWS_*`` variables, ENDPOINT and QUEUE_URL."""
    assert endpoint.queue_url is not None
    monkeypatch.setenv("ENDPOINT", endpoint.name)
    monkeypatch.setenv("QUEUE_URL", endpoint.queue_url)
    return endpoint


async def test_first_result(example_env: EndpointInfo, capsys: pytest.CaptureFixture[str]) -> None:
    await load_example("first_result").main()
    out = capsys.readouterr().out
    assert "inference id:" in out
    assert f"output will be at: {example_env.output_path}" in out
    # The local stack's echo model answers with the request itself.
    assert json.loads(out.split("output: ", 1)[1]) == {"inputs": "hello"}


async def test_first_result_with_s3_polling(
    stack_env: LocalStack,
    quiet_endpoint: EndpointInfo,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ENDPOINT", quiet_endpoint.name)
    monkeypatch.delenv("QUEUE_URL", raising=False)
    await load_example("first_result").main()
    assert '"hello"' in capsys.readouterr().out


async def test_million_inputs_streams_every_input_once(
    example_env: EndpointInfo, local_stack: LocalStack
) -> None:
    outcomes = await load_example("million_inputs").main(100)
    assert outcomes == {"completed": 100}
    stats = await local_stack.stats()
    assert stats["endpoints"][example_env.name]["accepted"] == 100


async def test_fastapi_service(example_env: EndpointInfo) -> None:
    app = load_example("fastapi_service").app
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client,
    ):
        answers = await asyncio.gather(
            *(client.post("/predict", json={"inputs": f"request {i}"}) for i in range(20))
        )
        assert [a.status_code for a in answers] == [200] * 20
        assert [a.json() for a in answers] == [{"inputs": f"request {i}"} for i in range(20)]

        created = await client.post("/jobs", json={"inputs": "later"})
        assert created.status_code == 202
        assert created.json()["output_location"].startswith(example_env.output_path)

        too_large = await client.post("/predict", json={"inputs": "x" * 130_000})
        assert too_large.status_code == 422  # over 128,000 bytes and no staging: nothing sent

        stats = (await client.get("/stats")).json()
        assert stats["accepted"] == 21 and stats["in_flight"] == 0


async def test_batch_s3_to_s3_runs_then_resumes(
    example_env: EndpointInfo, local_stack: LocalStack
) -> None:
    bucket = local_stack.info.bucket
    prefix = f"docs-batch-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3")
    for part in range(2):
        lines = [json.dumps({"id": f"{part}-{i}", "body": f"text {part}-{i}"}) for i in range(25)]
        s3.put_object(
            Bucket=bucket, Key=f"{prefix}/inputs/{part}.jsonl", Body="\n".join(lines) + "\n"
        )
    example = load_example("batch_s3_to_s3")
    source, target = f"s3://{bucket}/{prefix}/inputs/", f"s3://{bucket}/{prefix}/results/"

    stats = await example.run_batch(source, target)
    assert (stats.inputs, stats.completed, stats.failed + stats.errors) == (50, 50, 0)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/results/part-")
    records = [
        json.loads(line)
        for item in listed["Contents"]
        for line in s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().splitlines()
    ]
    assert sorted(r["id"] for r in records) == sorted(
        f"{p}-{i}" for p in range(2) for i in range(25)
    )
    assert {r["output"] for r in records} == {f"text {p}-{i}" for p in range(2) for i in range(25)}

    # The same command again: the journal in S3 says everything is done; nothing is sent.
    again = await example.run_batch(source, target)
    assert (again.already_done, again.submitted) == (50, 0)


def test_load_test_thresholds(
    example_env: EndpointInfo,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = load_example("load_test")
    report = asyncio.run(example.load_test(rate=20, duration=1, payload=b'{"inputs": "x"}'))
    assert report["due"] == report["completed"] == 20
    assert all(v["ok"] for v in example.check(report, example.DEFAULT_THRESHOLDS))
    (impossible,) = example.check(report, ["submit.p99<1us"])
    assert not impossible["ok"]

    # As a CI gate, on the same report (no second run): the exit status says whether every
    # threshold held.
    async def same_report(rate: float, duration: float, payload: bytes) -> dict[str, object]:
        assert (rate, duration) == (20.0, 1.0)
        return report

    monkeypatch.setattr(example, "load_test", same_report)
    assert example.main(["--rate", "20", "--duration", "1"]) == 0
    assert example.main(["--rate", "20", "--duration", "1", "--threshold", "e2e.p99<1us"]) == 1
    out = capsys.readouterr().out
    assert "PASS errors<1%" in out and "FAIL e2e.p99<1us" in out
