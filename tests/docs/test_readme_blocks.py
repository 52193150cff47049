"""Every fenced code block of README.md is run or checked by a test of ``make test``.

``COVERED_BY`` names, for each block (found by the heading above it and its first line, never by
line number), the test that runs or checks it; ``test_every_readme_block_is_covered`` fails on a
block it does not name (a new block cannot go untested), and on an entry that names a test that
does not exist or a block that is gone.

The tests here run the README's command lines as a user would, against the local stack, with only
the names a user replaces substituted (``my-endpoint``, ``URL``, ``s3://bucket/``) and the runs
that take a minute shortened; each substituted text must be in the block, so the block and the
test cannot drift apart (the pattern of ``tests/test_readme.py``). The commands run in this
process through ``aiosagemaker.cli.main`` (a child Python costs a second of imports); only
``aiosagemaker local``, which serves until stopped, runs as a child, and its output goes through
``eval`` in bash, as the README says it can. The block parser, the registry check and these
helpers are ``blocks.py``'s, shared with ``test_docs_blocks.py`` (the documentation site).

Where running a line would repeat another test or start a stack of its own for little more, it is
checked cheaply instead: the notifications lines are the ones ``test_notifications_setup.py``
runs against the stack (checked in its source), ``make demo`` and ``make test`` are what
``make -n`` shows, and ``aiosagemaker demo -n 5000`` parses to the defaults the README's section
describes (the demo itself runs, as written, under ``make test-scale``).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shlex
import struct
import subprocess
import tomllib
import uuid
import zlib
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from blocks import (
    BIN,
    ROOT,
    Block,
    check_registry,
    commands,
    export_pairs,
    free_port,
    notifications_lines_run,
    parse_blocks,
    run_command,
    start_stack,
    substituted,
)

from aiosagemaker.cli import main
from aiosagemaker.local import EndpointInfo, LocalStack

README = ROOT / "README.md"
HERE = "tests/docs/test_readme_blocks.py"


# --- the README's blocks ---------------------------------------------------------------------


def readme_blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the README, in order (``#`` lines inside a block are not headings)."""
    return parse_blocks(README.read_text() if text is None else text, "README.md")


def _t(function: str) -> str:
    return f"{HERE}::{function}"


#: Each block of the README (heading, first line) and the test or tests that run or check it.
COVERED_BY: dict[tuple[str, str], str | tuple[str, ...]] = {
    ("Two commands", "make demo   # creates .venv, installs, runs the main job on the embedded local stack"): _t("test_make_targets"),
    ("Install", "pip install aiosagemaker            # the client"): _t("test_pip_install_lines"),
    ("Submit 1,000 payloads, gather the results", "import asyncio"): "tests/test_readme.py::test_readme_quick_start_fans_out",
    ("Trust: what a notification can settle, and bounded reads", "{"): "tests/docs/test_docs_blocks.py::test_the_queue_policy_is_the_readmes",
    ("In a service: metrics, traces, logs, one watcher for many endpoints", "import asyncio"): "tests/library/telemetry/test_readme_service.py::test_readme_service_example",
    ("The local stack", ".venv/bin/aiosagemaker local --port 8080 --model sleep:0.05 --instances 2 --endpoint my-endpoint"): _t("test_local_stack_commands"),
    ("The local stack", "export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:8080"): _t("test_local_stack_commands"),
    ("The command line", """aiosagemaker invoke ENDPOINT --data '{"inputs": "hello"}' --wait      # one request, print the output"""): (
        _t("test_invoke_lines"),
        _t("test_batch_input_and_record_blocks"),
        _t("test_demo_line"),
        _t("test_local_stack_commands"),
    ),
    ("`aiosagemaker invoke`", """aiosagemaker invoke my-endpoint --data '{"a": 1}'                 # prints inference id + locations"""): _t("test_invoke_lines"),
    ("`aiosagemaker batch`", "aiosagemaker batch ENDPOINT INPUT -o OUTPUT [--concurrency 256] [--max-pending 10000]"): _t("test_batch_usage_blocks"),
    ("`aiosagemaker batch`", '{"inputs": "a payload, sent as this JSON"}'): _t("test_batch_input_and_record_blocks"),
    ("`aiosagemaker batch`", '{"n": 3, "id": "doc-7", "inference_id": "3f9c2a7d1b04-3", "status": "completed",'): _t("test_batch_input_and_record_blocks"),
    ("Past one machine: Ray", "pip install 'aiosagemaker[ray]'"): (
        _t("test_pip_install_lines"),
        _t("test_batch_usage_blocks"),
    ),
    ("Past one machine: Ray", "import ray"): (
        # as written, on a Ray cluster (make test-scale); its actors' work without one (make test)
        "tests/application/test_ray_readme.py::test_readme_ray_example",
        "tests/application/test_ray_readme.py::test_readme_ray_actor_kwargs",
    ),
    ("`aiosagemaker notifications`", "aiosagemaker notifications setup my-endpoint --dry-run      # print the plan, change nothing"): (
        "tests/application/test_notifications_setup.py::test_setup_wires_the_queue_to_the_endpoints_topics_and_teardown_undoes_it",
        _t("test_notifications_lines"),
    ),
    ("`aiosagemaker bench`", "aiosagemaker bench my-endpoint --rate 500 --duration 60s --threshold 'submit.p99<50ms'"): (
        _t("test_bench_lines"),
        _t("test_bench_local_line"),
    ),
}  # fmt: skip


def _block(heading: str, first_line: str) -> Block:
    """The README block a test runs; it must be in the registry."""
    assert (heading, first_line) in COVERED_BY, (heading, first_line)
    found = [b for b in readme_blocks() if b.key == (heading, first_line)]
    assert len(found) == 1, f"README.md has {len(found)} blocks under {heading!r} {first_line!r}"
    return found[0]


def test_every_readme_block_is_covered() -> None:
    check_registry("README", readme_blocks(), lambda b: b.key, COVERED_BY)


def test_the_block_parser() -> None:
    text = "\n".join(
        [
            "# Title",
            "## Part one",
            "```bash",
            "# a comment, not a heading",
            "echo 1",
            "```",
            "text",
            "### Part two",
            "````",
            "```json",
            "````",
            "```python",
            "x = 1",
            "```",
        ]
    )
    assert readme_blocks(text) == [
        Block(3, "bash", "# a comment, not a heading\necho 1", "Part one"),
        Block(9, "", "```json", "Part two"),
        Block(12, "python", "x = 1", "Part two"),
    ]
    # The README's own: every block's first line is code, and the headings are real ones.
    blocks = readme_blocks()
    assert len(blocks) >= 16
    headings = set(re.findall(r"^#{1,6} (.+)$", README.read_text(), re.MULTILINE))
    assert all(b.heading in headings and b.first_line for b in blocks)


# --- helpers ---------------------------------------------------------------------------------


def _png() -> bytes:
    """A 1x1 PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x80\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _s3(stack: LocalStack) -> Any:
    return boto3.client("s3", endpoint_url=stack.info.s3_url, region_name=stack.info.region)


def _object(stack: LocalStack, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3 = _s3(stack)
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    finally:
        s3.close()
    return body


# --- "Two commands", "Install" ---------------------------------------------------------------


def _make_dry_run(*args: str) -> list[str]:
    """The commands ``make`` would run, every target out of date (-B), nothing run (-n)."""
    # Not the make that runs this suite (make test): its MAKEFLAGS and MAKELEVEL would pass on
    # and add "Entering/Leaving directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_make_targets() -> None:
    block = _block(
        "Two commands",
        "make demo   # creates .venv, installs, runs the main job on the embedded local stack",
    )
    demo_line, test_line = commands(block, "make demo", "make test")
    assert "creates .venv, installs, runs the main job" in demo_line
    assert "creates .venv if needed, then lint, type check and the test suite" in test_line
    creates, installs = "-m venv .venv", "pip install --python .venv/bin/python --quiet -e '.[dev]'"

    demo = _make_dry_run("demo")
    assert any(creates in line for line in demo) and any(installs in line for line in demo)
    # The main job: the demo command, at the README's size; `make demo N=20000` runs more.
    assert demo[-1] == ".venv/bin/aiosagemaker demo -n 5000"
    assert _make_dry_run("demo", "N=20000")[-1] == ".venv/bin/aiosagemaker demo -n 20000"

    test = _make_dry_run("test")
    steps = [
        next(i for i, line in enumerate(test) if creates in line),
        next(i for i, line in enumerate(test) if line.startswith(".venv/bin/ruff check")),
        next(i for i, line in enumerate(test) if line.startswith(".venv/bin/mypy")),
        # "`make test` builds it too" (the documentation site)
        next(i for i, line in enumerate(test) if line.startswith(".venv/bin/sphinx-build -W")),
        next(i for i, line in enumerate(test) if line.startswith(".venv/bin/pytest")),
    ]
    assert steps == sorted(steps), test
    # "`make test` runs the suite in two processes" (Development)
    assert test[steps[-1]].startswith(".venv/bin/pytest -n 2 ")


#: what each extra's comment names, and the distribution the extra must require for it
EXTRAS = {
    "local": ("moto's server", "moto"),
    "parquet": ("pyarrow", "pyarrow"),
    "plot": ("matplotlib", "matplotlib"),
    "uvloop": ("uvloop", "uvloop"),
    "otel": ("opentelemetry-api", "opentelemetry-api"),
    "ray": ("Ray Data", "ray"),
}


def _check_pip_line(line: str, project: dict[str, Any]) -> str | None:
    """Check one ``pip install`` line against pyproject.toml; return the extra it installs."""
    words = shlex.split(line, comments=True)
    assert words[:2] == ["pip", "install"] and len(words) == 3, line
    match = re.fullmatch(r"([\w-]+)(?:\[([\w-]+)\])?", words[2])
    assert match and match.group(1) == project["name"], line
    extra = match.group(2)
    if extra is None:
        return None
    assert extra in EXTRAS, f"an extra this test does not know: {line}"
    named, distribution = EXTRAS[extra]
    _, _, comment = line.partition("#")
    assert not comment or named in comment, line
    requirements = project["optional-dependencies"][extra]
    required = {re.split(r"[^\w.-]", r, maxsplit=1)[0].lower() for r in requirements}
    assert distribution in required, (extra, requirements)
    return extra


def test_pip_install_lines() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    install = _block("Install", "pip install aiosagemaker            # the client")
    lines = commands(install, *["pip install"] * 7)
    assert [_check_pip_line(line, project) for line in lines] == [None, *EXTRAS]
    ray = _block("Past one machine: Ray", "pip install 'aiosagemaker[ray]'")
    assert _check_pip_line(commands(ray, "pip install", "aiosagemaker batch")[0], project) == (
        "ray"
    )


# --- "The local stack" -----------------------------------------------------------------------


def test_local_stack_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    command = _block(
        "The local stack",
        ".venv/bin/aiosagemaker local --port 8080 --model sleep:0.05 --instances 2 --endpoint my-endpoint",
    )
    exports = _block(
        "The local stack", "export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:8080"
    )
    (line,) = commands(command, ".venv/bin/aiosagemaker local")
    port = free_port()
    argv = shlex.split(
        substituted(
            line,
            (".venv/bin/aiosagemaker", str(BIN / "aiosagemaker")),
            ("--port 8080", f"--port {port}"),
        )
    )
    stack = start_stack(argv, tmp_path)
    try:
        printed = stack.printed()
        # The environment a client needs: the export block's names, in its order, with the
        # values it shows, and the control routes' token.
        shown = export_pairs(exports.code.replace("8080", str(port)).splitlines())
        exported = export_pairs(printed)
        token = exported.pop()
        assert token[0] == "AIOSAGEMAKER_LOCAL_CONTROL_TOKEN" and len(token[1]) >= 32
        assert [name for name, _ in exported] == [name for name, _ in shown]
        values = dict(exported)
        for name, value in shown:
            assert value == "..." or values[name] == value, (name, values[name])
        assert values["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] == f"http://127.0.0.1:{port}"
        # Then, as comments, each endpoint's name, output and failure paths and queue URL.
        comments = printed[len(exported) + 1 :]
        assert comments[0] == "# endpoint my-endpoint"
        assert re.fullmatch(r"#   output:  s3://\S+/", comments[1]), comments
        assert re.fullmatch(r"#   failure: s3://\S+/", comments[2]), comments
        assert re.fullmatch(r"#   queue:   http://127\.0\.0\.1:\d+/\S+", comments[3]), comments
        assert comments[4] == f"# control: http://127.0.0.1:{port}/_local/stats"

        # `eval "$(aiosagemaker local ...)"` still works: bash takes the whole output.
        evaluated = subprocess.run(
            ["bash", "-euc", 'eval "$1"; env', "bash", "\n".join(printed)],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": os.environ["PATH"]},
        )
        assert evaluated.returncode == 0, evaluated.stderr
        environment = dict(
            line.split("=", 1) for line in evaluated.stdout.splitlines() if "=" in line
        )
        assert {k: environment[k] for k in values} == values

        # Any AWS client then works against it unchanged: here the command, through that
        # environment alone.
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        ran = run_command(capsys, """aiosagemaker invoke my-endpoint --data '{"a": 1}' --wait""")
        assert ran.status == 0, ran.err
        assert orjson.loads(ran.out) == {"a": 1}
    finally:
        status = stack.stop()
    assert status == 0

    # The command line block's `aiosagemaker local --model sleep:0.05 --instances 4` is the
    # same command with fewer options (each stack costs seconds to start): its options are the
    # local stack's, with those values.
    from aiosagemaker.local import add_arguments

    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    listed = shlex.split(_listed_lines()[3], comments=True)
    assert listed[:2] == ["aiosagemaker", "local"]
    args = parser.parse_args(listed[2:])
    assert (args.model, args.instances, args.port, args.endpoints) == ("sleep:0.05", 4, 0, None)


# --- "The command line", "`aiosagemaker invoke`" ---------------------------------------------


def _listed_lines() -> list[str]:
    """The four lines of the block under "The command line"."""
    block = _block(
        "The command line",
        """aiosagemaker invoke ENDPOINT --data '{"inputs": "hello"}' --wait      # one request, print the output""",
    )
    return commands(
        block,
        "aiosagemaker invoke",
        "aiosagemaker batch",
        "aiosagemaker demo",
        "aiosagemaker local",
    )


def test_invoke_lines(
    stack_env: LocalStack,
    endpoint: EndpointInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert endpoint.queue_url is not None
    monkeypatch.chdir(tmp_path)  # the lines' files: request.json, image.png, out.bin
    name = ("my-endpoint", endpoint.name)

    # The command line: one request, print the output.
    ran = run_command(capsys, _listed_lines()[0], ("ENDPOINT", endpoint.name))
    assert ran.status == 0, ran.err
    assert orjson.loads(ran.out) == {"inputs": "hello"}

    block = _block(
        "`aiosagemaker invoke`",
        """aiosagemaker invoke my-endpoint --data '{"a": 1}'                 # prints inference id + locations""",
    )
    sent, waited, to_file, from_s3 = commands(block, *["aiosagemaker invoke my-endpoint"] * 4)

    # Prints the inference id and the locations (the endpoint's output path, AWS's layout).
    ran = run_command(capsys, sent, name)
    assert ran.status == 0, ran.err
    accepted = orjson.loads(ran.out)
    inference_id = accepted["inference_id"]
    assert inference_id and accepted["output_location"] == (
        f"{endpoint.output_path.rstrip('/')}/{inference_id}.out"
    )
    assert accepted["failure_location"].startswith(endpoint.failure_path.rstrip("/"))

    # Waits, prints the output (the local endpoint echoes its input).
    request = {"inputs": "from request.json", "parameters": {"n": 3}}
    (tmp_path / "request.json").write_bytes(orjson.dumps(request))
    ran = run_command(capsys, waited, name)
    assert ran.status == 0, ran.err
    assert orjson.loads(ran.out) == request

    # A binary file, its output written to out.bin, the result found through the SQS queue.
    image = _png()
    (tmp_path / "image.png").write_bytes(image)
    ran = run_command(capsys, to_file, name, ("URL", endpoint.queue_url))
    assert ran.status == 0, ran.err
    assert (tmp_path / "out.bin").read_bytes() == image
    assert ran.out == "" and f"wrote {len(image):,} bytes to out.bin" in ran.err

    # An input already in S3.
    key = f"readme-{uuid.uuid4().hex[:8]}/in.json"
    s3 = _s3(stack_env)
    try:
        s3.put_object(Bucket=stack_env.info.bucket, Key=key, Body=b'{"from": "s3"}')
    finally:
        s3.close()
    ran = run_command(
        capsys, from_s3, name, ("s3://bucket/in.json", f"s3://{stack_env.info.bucket}/{key}")
    )
    assert ran.status == 0, ran.err
    assert orjson.loads(ran.out) == {"from": "s3"}


# --- "`aiosagemaker batch`" ------------------------------------------------------------------


def test_batch_input_and_record_blocks(
    stack_env: LocalStack,
    quiet_endpoint: EndpointInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inputs = _block("`aiosagemaker batch`", '{"inputs": "a payload, sent as this JSON"}')
    record = _block(
        "`aiosagemaker batch`",
        '{"n": 3, "id": "doc-7", "inference_id": "3f9c2a7d1b04-3", "status": "completed",',
    )
    # The README's input lines as inputs.jsonl, the elided base64 a real PNG's (which begins
    # the same way), through the command line block's batch line.
    image = _png()
    encoded = base64.b64encode(image).decode()
    assert encoded.startswith("iVBORw0KGgo")
    lines = substituted(inputs.code, ("iVBORw0KGgo...", encoded)).splitlines()
    assert len(lines) == 3
    (tmp_path / "inputs.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    ran = run_command(capsys, _listed_lines()[1], ("ENDPOINT", quiet_endpoint.name))
    assert ran.status == 0, ran.err  # every input completed

    records = [
        orjson.loads(line) for line in (tmp_path / "results.jsonl").read_bytes().splitlines()
    ]
    # One record per input, in input order; `n` the line number, `id` the envelope's, else n.
    assert [r["n"] for r in records] == [1, 2, 3]
    # (an id is recorded as a string, the envelope's integer 8 too)
    assert [r["id"] for r in records] == ["1", "doc-7", "8"]
    assert [r["status"] for r in records] == ["completed"] * 3
    # A payload is sent exactly as written, as JSON; `body` a string is sent as text;
    # `body_base64` as the bytes it encodes, with the envelope's content type.
    assert [r["content_type"] for r in records] == ["application/json", "text/plain", "image/png"]
    assert records[0]["output"] == orjson.loads(lines[0])
    assert _object(stack_env, records[0]["output_location"]) == lines[0].encode()  # the echo
    assert records[1]["output"] == "some text"
    assert records[2]["output"] is None  # neither JSON nor text: only its location
    assert _object(stack_env, records[2]["output_location"]) == image
    for r in records:
        # `<job id>-<n>`, and outputs named in submission order under the run's own prefix.
        assert r["inference_id"].endswith(f"-{r['n']}")
        assert re.fullmatch(rf"s3://\S+/aiosm-[^/]+/{r['n']:012d}\.out", r["output_location"])
        assert r["failure_reason"] is None

    # The README's record has exactly the keys of a real one, and its timings the same keys.
    example = orjson.loads(record.code)
    real = records[1]
    assert example["id"] == real["id"] == "doc-7"
    assert set(example) == set(real)
    assert set(example["timings"]) == set(real["timings"])
    assert example["status"] == real["status"] and example["content_type"] == real["content_type"]
    assert example["inference_id"].endswith(f"-{example['n']}")
    assert example["output_location"].endswith(f"/{example['n']:012d}.out")
    timings = real["timings"]
    assert timings["submitted"] <= timings["accepted"] <= timings["completed"]
    assert timings["latency_ms"] > 0


def _batch_parser() -> Any:
    from aiosagemaker.cli._main import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.choices and "batch" in a.choices]
    return commands.choices["batch"]


#: flags of `aiosagemaker batch` the usage block leaves out, each documented elsewhere in the README
OMITTED_FROM_USAGE = {
    "--help", "--region", "--profile", "--endpoint-url", "--debug", "--debug-aws",
    "--ray", "--ray-address", "--actors",
}  # fmt: skip


def _check_usage(usage: str, parser: Any) -> set[str]:
    """Every flag the usage names exists, with the default and the choices it shows; return the
    long form of each."""
    actions = {flag: a for a in parser._actions for flag in a.option_strings}
    named = set()
    for flag, value in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)(?: ([^\s\[\]]+))?", usage):
        assert flag in actions, f"`aiosagemaker batch` has no {flag}"
        action = actions[flag]
        named.add(max(action.option_strings, key=len))
        if not value or value.isupper():  # a bare flag, or a placeholder: URL, PATH, S ...
            continue
        if "|" in value:
            assert set(value.split("|")) == set(action.choices), (flag, action.choices)
        elif re.fullmatch(r"\d+", value):
            assert action.default == float(value), (flag, action.default)
        elif re.fullmatch(r"[a-z]+", value):
            assert action.default == value, (flag, action.default)
        else:  # s3://bucket/prefix/, i/N
            assert value == action.metavar or action.metavar == "S3_URI", (flag, action.metavar)
    # ENDPOINT INPUT: the positionals, in their order.
    positionals = [a.metavar for a in parser._actions if not a.option_strings]
    assert positionals == ["ENDPOINT", "INPUT"] and "ENDPOINT INPUT -o OUTPUT" in usage
    return named


def test_batch_usage_blocks() -> None:
    parser = _batch_parser()
    usage = _block(
        "`aiosagemaker batch`",
        "aiosagemaker batch ENDPOINT INPUT -o OUTPUT [--concurrency 256] [--max-pending 10000]",
    )
    named = _check_usage(usage.code, parser)
    every = {max(a.option_strings, key=len) for a in parser._actions if a.option_strings}
    # What the block leaves out is documented elsewhere: the AWS and debug options under "The
    # command line", --ray and its options under "Past one machine: Ray".
    assert every - named == OMITTED_FROM_USAGE, sorted(every - named ^ OMITTED_FROM_USAGE)
    readme = README.read_text()
    for flag in OMITTED_FROM_USAGE - {"--help"}:
        assert f"`{flag}`" in readme, flag

    ray = _block("Past one machine: Ray", "pip install 'aiosagemaker[ray]'")
    (line,) = commands(ray, "pip install", "aiosagemaker batch --ray")[1:]
    assert _check_usage(line, parser) == {"--ray", "--ray-address", "--actors", "--output"}


# --- "`aiosagemaker demo`" -------------------------------------------------------------------


def _demo_section() -> str:
    readme = " ".join(README.read_text().split())
    start = readme.index("### `aiosagemaker demo` (`make demo`)")
    return readme[start : readme.index("## Benchmarks", start)]


def test_demo_line(capsys: pytest.CaptureFixture[str]) -> None:
    # The demo starts a local stack of its own (seconds): make test checks the line and what the
    # README says of it here, and test_make_targets that `make demo` runs it; the run itself is
    # test_demo_runs_as_written (make test-scale).
    line = _listed_lines()[2]
    assert line.endswith("# the main job, locally (make demo)")
    from aiosagemaker.cli._main import build_parser

    args = build_parser().parse_args(shlex.split(line, comments=True)[1:])
    defaults = build_parser().parse_args(["demo"])
    assert args == defaults, line  # `-n 5000` is the default: the line is `make demo`'s
    section = _demo_section()
    # "model latency `--latency 0.05` s on `--instances 4` with `--max-concurrency 16` each,
    # generates `-n 5000` inputs ... Inputs and results stay in `.demo/`"
    for flag, value in (
        ("--latency", args.latency),
        ("--instances", args.instances),
        ("--max-concurrency", args.max_concurrency),
        ("-n", args.n),
    ):
        assert f"`{flag} {value:g}`" in section, flag
    assert "stay in `.demo/`" in section and args.workdir == Path(".demo")
    assert main(["demo", "--help"]) == 0
    assert "with the SQS watcher" in " ".join(capsys.readouterr().out.split())


@pytest.mark.scale
def test_demo_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    ran = run_command(capsys, _listed_lines()[2])
    assert ran.status == 0, ran.out + ran.err
    out = " ".join(ran.out.split())  # rich wraps its lines at the console's width
    # What the README's section says: the stack, staged payloads, every result exactly once.
    assert "model sleep:0.05 on 4 instances x 16 concurrent invocations" in out
    assert "5 payloads staged to S3 (5 over the inline limit)" in out
    assert "each exactly once" in out and "every result came back exactly once" in out
    assert "stack stopped" in out
    # Inputs and results stay in .demo/.
    records = (tmp_path / ".demo" / "results.jsonl").read_bytes().splitlines()
    assert len((tmp_path / ".demo" / "inputs.jsonl").read_bytes().splitlines()) == 5000
    assert len(records) == 5000


# --- "`aiosagemaker notifications`" ----------------------------------------------------------


def test_notifications_lines() -> None:
    # test_notifications_setup.py runs these three lines against the local stack (and checks
    # the queues, policy, subscriptions and notifications they make): here, that it runs the
    # README's lines exactly, and that they mean what their comments say.
    block = _block(
        "`aiosagemaker notifications`",
        "aiosagemaker notifications setup my-endpoint --dry-run      # print the plan, change nothing",
    )
    lines = commands(
        block,
        "aiosagemaker notifications setup my-endpoint",
        "aiosagemaker notifications setup my-endpoint",
        "aiosagemaker notifications teardown my-endpoint",
    )
    parsed = notifications_lines_run(lines)
    assert parsed == [
        ("setup", "my-endpoint", True),
        ("setup", "my-endpoint", False),
        ("teardown", "my-endpoint", False),
    ]
    assert "change nothing" in lines[0] and "remove what setup made" in lines[2]


# --- "`aiosagemaker bench`" ------------------------------------------------------------------


def _bench_block() -> Block:
    return _block(
        "`aiosagemaker bench`",
        "aiosagemaker bench my-endpoint --rate 500 --duration 60s --threshold 'submit.p99<50ms'",
    )


def _bench_lines() -> list[str]:
    return commands(
        _bench_block(), *["aiosagemaker bench my-endpoint"] * 3, "aiosagemaker bench --local"
    )


#: the JSON report's fields, as the README lists them ("The JSON report is a contract")
REPORT_FIELDS = (
    "mode", "target_rate", "achieved_rate", "due", "sent", "late", "dropped", "accepted",
    "completed", "unfinished", "throttled", "errors", "submit_latency_ms",
    "end_to_end_latency_ms", "service_time_ms", "notification_lag_ms", "output_fetch_ms",
    "thresholds", "settings",
)  # fmt: skip
LATENCY_FIELDS = ("p50", "p90", "p99", "p999", "max", "mean", "count")


def _summary_counts(out: str) -> tuple[int, int]:
    match = re.search(r"^open loop: ([\d,]+) sent of ([\d,]+) due", out, re.MULTILINE)
    assert match, out
    sent, due = (int(g.replace(",", "")) for g in match.groups())
    return sent, due


def test_bench_lines(
    stack_env: LocalStack,
    endpoint: EndpointInfo,
    quiet_endpoint: EndpointInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Runs of a minute shortened to a second or less; where that would still be hundreds of
    # requests watched through SQS, or of 100 KB each, at a tenth or a fifth of the rate.
    assert endpoint.queue_url is not None
    monkeypatch.chdir(tmp_path)  # out.json, out.png
    threshold, staged_ramp, both, _ = _bench_lines()
    readme = " ".join(README.read_text().split())
    contract = readme[readme.index("The JSON report is a contract") :][:900]
    for field in (*REPORT_FIELDS, *LATENCY_FIELDS, "value", "limit", "ok", "versions", "machine"):
        assert f"`{field}`" in contract, field

    # A constant rate with a threshold: exit 0 when it holds, 1 when it fails.
    ran = run_command(capsys, threshold, ("my-endpoint", quiet_endpoint.name), ("60s", "0.2s"))
    verdict = re.search(r"^(ok  |FAIL) submit\.p99<50ms \(value ([\d.]+)\)$", ran.out, re.MULTILINE)
    assert verdict, ran.out + ran.err
    assert ran.status == (0 if verdict.group(1) == "ok  " else 1), ran.err
    assert _summary_counts(ran.out)[1] == 100  # 500/s for 0.2 s

    # Stages, watched through SQS, thresholds, the report and the plot.
    ran = run_command(
        capsys,
        staged_ramp,
        ("my-endpoint", endpoint.name),
        ("30s:100,60s:500,30s:0", "0.15s:10,0.3s:50,0.15s:0"),
        ("URL", endpoint.queue_url),
    )
    assert ran.status == 0, ran.out + ran.err  # e2e.p99<30s and errors<0.1% hold
    report = orjson.loads((tmp_path / "out.json").read_bytes())
    assert set(REPORT_FIELDS) <= set(report)
    assert report["mode"] == "open" and report["target_rate"] > 0
    assert report["sent"] == report["due"] == report["completed"] > 0
    assert report["unfinished"] == 0 and report["errors"] == {}
    for field in ("submit_latency_ms", "end_to_end_latency_ms", "service_time_ms"):
        assert set(LATENCY_FIELDS) <= set(report[field]), field
        assert report[field]["count"] == report["sent"], field
    assert [(v["threshold"], v["ok"]) for v in report["thresholds"]] == [
        ("e2e.p99<30s", True),
        ("errors<0.1%", True),
    ]
    assert all({"value", "limit"} <= set(v) for v in report["thresholds"])
    assert {"versions", "machine"} <= set(report["settings"])
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Inline Body against S3 upload + InputLocation, on the same schedule, and their ratios.
    staging = f"s3://{stack_env.info.bucket}/readme-bench-{uuid.uuid4().hex[:8]}/"
    ran = run_command(
        capsys,
        both,
        ("my-endpoint", quiet_endpoint.name),
        ("--rate 100 --duration 30s", "--rate 20 --duration 0.5s"),
        ("s3://bucket/bench/", staging),
    )
    assert ran.status == 0, ran.out + ran.err
    assert "-- S3 upload then InputLocation" in ran.out
    assert re.search(r"^S3 upload vs inline .*: submit_p50 [\d.]+x", ran.out, re.MULTILINE)
    assert [_summary_counts(part) for part in ran.out.split("-- S3 upload")] == [(10, 10)] * 2


def test_bench_local_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Against the embedded local stack (a stack of its own), 0.5 s instead of 20.
    monkeypatch.chdir(tmp_path)
    ran = run_command(capsys, _bench_lines()[3], ("--duration 20s", "--duration 0.5s"))
    assert ran.status == 0, ran.out + ran.err
    sent, due = _summary_counts(ran.out)
    assert due == 50 and 0 < sent <= due
    assert "(target 100.0/s)" in ran.out
