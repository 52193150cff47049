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
import os
import re
import shlex
import sys
import uuid
from pathlib import Path
from types import ModuleType

import boto3
import httpx
import pytest
import uvicorn
from blocks import commands, docs_block, free_port, run_command, run_example, substituted
from uvicorn.main import main as uvicorn_command

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


def test_million_inputs_streams_every_input_once(
    example_env: EndpointInfo,
    local_stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The page's line, a million inputs shortened to a hundred.
    block = docs_block(
        "how-to/million-inputs.md",
        "Send a million inputs",
        "python examples/million_inputs.py 1000000",
    )
    (line,) = commands(block, "python examples/million_inputs.py")
    assert run_example(monkeypatch, line, ("1000000", "100")) == 0
    # Every input once, each completed, nothing retried.
    assert capsys.readouterr().out == "Counter({'completed': 100}) retried=0 throttled=0\n"
    stats = asyncio.run(local_stack.stats())
    assert stats["endpoints"][example_env.name]["accepted"] == 100


async def test_fastapi_service(example_env: EndpointInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    # The page's lines: uvicorn serves the app from examples/ (in this process, on a free port
    # instead of 8000, with the options its command line parses to), then the page's curl.
    block = docs_block(
        "how-to/fastapi.md",
        "Run in a FastAPI service",
        "cd examples && uvicorn fastapi_service:app --port 8000",
    )
    serve, curl = commands(block, "cd examples && uvicorn fastapi_service:app", "curl")
    port = free_port()
    cd, command = substituted(serve, ("--port 8000", f"--port {port}")).split(" && ")
    assert shlex.split(cd) == ["cd", "examples"]
    monkeypatch.chdir(EXAMPLES)
    options = dict(uvicorn_command.make_context("uvicorn", shlex.split(command)[1:]).params)
    # What `uvicorn` does with them (uvicorn.main.main, then uvicorn.run), but for its logging
    # config, which would reconfigure this process's logging; one process, nothing reloaded.
    monkeypatch.syspath_prepend(os.path.abspath(options.pop("app_dir")))
    assert not options["reload"] and options["workers"] is None, command
    options.update(
        log_config=None,
        log_level=options["log_level"] or "warning",
        headers=[header.split(":", 1) for header in options["headers"]],
        **{k: options[k] or None for k in ("reload_dirs", "reload_includes", "reload_excludes")},
    )
    server = uvicorn.Server(uvicorn.Config(**options))
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not serving.done(), serving.result()
                await asyncio.sleep(0.01)
        assert sys.modules["fastapi_service"].__file__ == str(EXAMPLES / "fastapi_service.py")

        argv = shlex.split(substituted(curl, ("localhost:8000", f"localhost:{port}")))
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err
        assert json.loads(out) == {"inputs": "hello"}  # the local model echoes

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
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
            assert stats["accepted"] == 22 and stats["in_flight"] == 0
    finally:
        server.should_exit = True
        await serving
        sys.modules.pop("fastapi_service", None)


def test_batch_s3_to_s3_runs_then_resumes(
    example_env: EndpointInfo,
    local_stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = local_stack.info.bucket
    prefix = f"docs-batch-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3")
    for part in range(2):
        lines = [json.dumps({"id": f"{part}-{i}", "body": f"text {part}-{i}"}) for i in range(25)]
        s3.put_object(
            Bucket=bucket, Key=f"{prefix}/inputs/{part}.jsonl", Body="\n".join(lines) + "\n"
        )
    source, target = f"s3://{bucket}/{prefix}/inputs/", f"s3://{bucket}/{prefix}/results/"

    # The page's command line, its bucket this test's.
    block = docs_block(
        "how-to/resume-batch.md",
        "From S3 to S3, on any machine",
        'aiosagemaker batch "$ENDPOINT" s3://my-bucket/inputs/ -o s3://my-bucket/results/',
    )
    (line,) = commands(block, "aiosagemaker batch")
    ran = run_command(
        capsys,
        line,
        ('"$ENDPOINT"', example_env.name),
        ("s3://my-bucket/", f"s3://{bucket}/{prefix}/"),
    )
    assert ran.status == 0, ran.out + ran.err  # every input completed
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

    # "The same job from Python": the example, run again, finds everything done in the
    # command's journal in S3, and sends nothing.
    again = asyncio.run(load_example("batch_s3_to_s3").run_batch(source, target))
    assert (again.inputs, again.already_done, again.submitted) == (50, 50, 0)
    assert (again.failed, again.invalid, again.errors) == (0, 0, 0)


def test_load_test_thresholds(
    example_env: EndpointInfo,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    block = docs_block(
        "how-to/load-test.md",
        "From Python",
        "python examples/load_test.py --rate 50 --duration 60 --threshold 'e2e.p99<5s'",
    )
    (line,) = commands(block, "python examples/load_test.py")
    # The page's run, a minute shortened to a second: its threshold holds, the exit status is 0.
    assert run_example(monkeypatch, line, ("--duration 60", "--duration 1")) == 0
    verdict, summary = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"PASS e2e\.p99<5s [\d.]+", verdict), verdict
    match = re.fullmatch(r"achieved ([\d.]+) req/s; e2e p99 ([\d.]+) ms", summary)
    assert match and float(match.group(1)) > 0 and 0 < float(match.group(2)) < 5000, summary

    # As a CI gate: the example's default thresholds hold, every request finished, and one
    # threshold that fails makes the exit status 1 (one more run, of a second at 20/s).
    example = load_example("load_test")
    thresholds = [*example.DEFAULT_THRESHOLDS, "unfinished<1", "submit.p99<1us"]
    argv = ["--rate", "20", "--duration", "1"]
    assert example.main([*argv, *(f"--threshold={t}" for t in thresholds)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out[:-1]] == [
        *(["PASS", t] for t in thresholds[:-1]),
        ["FAIL", "submit.p99<1us"],
    ], out
