"""``--debug`` is our own logs and tracebacks; AWS wire logs (secrets and all) need ``--debug-aws``."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from app_helpers import FAST_POLL, aws_lines, cli

from aiosagemaker.cli import main
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

PAYLOAD = '{"secret": "PAYLOAD-7f3a"}'
ATTRIBUTES = "ATTRIBUTE-9c1e"


def _sensitive(stack: LocalStack) -> list[str]:
    return [
        "PAYLOAD-7f3a",
        ATTRIBUTES,
        stack.info.aws_secret_access_key,
        stack.info.aws_access_key_id,
        "Authorization",
    ]


def _invoke(endpoint: EndpointInfo, *extra: str) -> list[str]:
    # --wait: S3 polling makes botocore calls (ListObjectsV2, GetObject) for its logs to show.
    return [
        "invoke", endpoint.name, "--data", PAYLOAD, "--custom-attributes", ATTRIBUTES,
        "--wait", *FAST_POLL, *extra,
    ]  # fmt: skip


def test_debug_logs_ours_and_no_aws_wire_lines(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo
) -> None:
    result = cli(*_invoke(quiet_endpoint, "--debug"))
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout) == orjson.loads(PAYLOAD)
    assert "DEBUG aiosagemaker: sending a 26-byte application/json payload" in result.stderr
    assert "accepted after 1 attempt(s)" in result.stderr
    assert aws_lines(result.stderr) == []
    for secret in _sensitive(stack_env):
        assert secret not in result.stderr


def test_debug_aws_turns_on_botocore_wire_logs(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo
) -> None:
    result = cli(*_invoke(quiet_endpoint, "--debug-aws"))
    assert result.returncode == 0, result.stderr
    wire = aws_lines(result.stderr)
    assert any(line.startswith("DEBUG botocore") for line in wire), result.stderr[-2000:]
    # What --debug-aws's help warns of: signed request headers are in these logs.
    assert any("Authorization" in line for line in wire)
    # --debug-aws includes --debug.
    assert "DEBUG aiosagemaker: sending" in result.stderr


def test_a_root_logger_at_debug_does_not_let_aws_wire_logs_through(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo
) -> None:
    # An application that configured logging at DEBUG before calling main(): botocore's loggers
    # would inherit DEBUG from the root unless the command sets them itself.
    script = (
        "import logging, sys; logging.basicConfig(level=logging.DEBUG); "
        "from aiosagemaker.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    embedded = subprocess.run(
        [sys.executable, "-c", script, *_invoke(quiet_endpoint, "--debug")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert embedded.returncode == 0, embedded.stderr
    assert "DEBUG:aiosagemaker:sending" in embedded.stderr  # the application's own format
    assert aws_lines(embedded.stderr) == []
    for secret in _sensitive(stack_env):
        assert secret not in embedded.stderr


def test_debug_shows_the_traceback_behind_an_error() -> None:
    plain = cli("invoke", "no-such-endpoint", "--data", "x")
    assert plain.returncode == 3
    assert plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("aiosagemaker: error: ") and "not found" in plain.stderr
    debug = cli("invoke", "no-such-endpoint", "--data", "x", "--debug")
    assert debug.returncode == 3
    assert debug.stderr.startswith("DEBUG aiosagemaker: sending")
    assert "Traceback (most recent call last)" in debug.stderr
    assert "InvocationError" in debug.stderr
    last = debug.stderr.splitlines()[-1]
    assert last.startswith("aiosagemaker: error: ") and "not found" in last


def test_no_debug_no_debug_lines(quiet_endpoint: EndpointInfo) -> None:
    result = cli(*_invoke(quiet_endpoint))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_help_says_what_debug_aws_logs(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("invoke", "batch", "demo"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "--debug-aws" in text
        assert "logs request headers and bodies, credentials and payloads included" in text
