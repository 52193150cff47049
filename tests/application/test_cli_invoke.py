"""``aiosagemaker invoke``: every request field, Body xor InputLocation, staging, the 202 first."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from app_helpers import FAST_POLL, cli

from aiosagemaker.cli import main
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")


def _big_payload(tmp_path: Path) -> Path:
    path = tmp_path / "big.json"
    path.write_bytes(orjson.dumps({"text": "x" * 128_000}))
    return path


def test_too_large_payload_suggests_the_staging_flag(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo, tmp_path: Path
) -> None:
    payload = _big_payload(tmp_path)
    refused = cli("invoke", quiet_endpoint.name, "--data", f"@{payload}")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    size = len(payload.read_bytes())
    assert f"{size:,} bytes, over the 128,000-byte inline limit" in refused.stderr
    assert "--staging s3://bucket/prefix/" in refused.stderr
    assert "S3Staging" not in refused.stderr and "staging=" not in refused.stderr
    # With the flag it suggests, the same payload goes through S3 and comes back.
    staged = cli(
        "invoke", quiet_endpoint.name, "--data", f"@{payload}", "--wait", *FAST_POLL,
        "--staging", f"s3://{stack_env.info.bucket}/staging-{uuid.uuid4().hex[:8]}/",
    )  # fmt: skip
    assert staged.returncode == 0, staged.stderr
    assert staged.stdout.encode() == payload.read_bytes()


async def test_data_and_input_location_together_are_a_usage_error(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo
) -> None:
    both = cli(
        "invoke", quiet_endpoint.name, "--data", "x",
        "--input-location", f"s3://{stack_env.info.bucket}/in.json",
    )  # fmt: skip
    assert both.returncode == 2
    assert "--input-location: not allowed with argument --data" in both.stderr
    neither = cli("invoke", quiet_endpoint.name)
    assert neither.returncode == 2
    assert "one of the arguments --data/-d --input-location is required" in neither.stderr
    # Refused before anything was sent.
    stats = await stack_env.stats(quiet_endpoint.name)
    assert stats["accepted"] == 0, stats


def test_input_location(stack_env: LocalStack, quiet_endpoint: EndpointInfo) -> None:
    key = f"inputs/{uuid.uuid4().hex}.json"
    s3 = boto3.client("s3", endpoint_url=stack_env.info.s3_url, region_name=stack_env.info.region)
    try:
        s3.put_object(Bucket=stack_env.info.bucket, Key=key, Body=b'{"from": "s3"}')
    finally:
        s3.close()
    result = cli(
        "invoke", quiet_endpoint.name, "--input-location", f"s3://{stack_env.info.bucket}/{key}",
        "--content-type", "application/json", "--wait", *FAST_POLL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout) == {"from": "s3"}


async def test_invocation_timeout_reaches_the_endpoint(stack_env: LocalStack) -> None:
    # The stack runs 100x fast: the model takes 5 s (50 ms), the request allows it 1 s (10 ms).
    endpoint = await stack_env.create_endpoint(model="sleep:5", notifications=False)
    try:
        result = cli(
            "invoke", endpoint.name, "--data", "{}", "--invocation-timeout", "1",
            "--wait", *FAST_POLL,
        )  # fmt: skip
    finally:
        await stack_env.delete_endpoint(endpoint.name)
    assert result.returncode == 1
    assert "InvocationTimeoutSeconds (1 seconds)" in result.stderr


def test_output_placement_fields_reach_the_endpoint(quiet_endpoint: EndpointInfo) -> None:
    run = uuid.uuid4().hex[:8]
    result = cli(
        "invoke", quiet_endpoint.name, "--data", '{"a": 1}',
        "--output-path-extension", f"runs/{run}", "--filename", "answer.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = orjson.loads(result.stdout)
    # Printed after the 202: the locations the endpoint answered with, not placeholders.
    assert answer["output_location"] == f"{quiet_endpoint.output_path}runs/{run}/answer.json"
    assert answer["failure_location"].startswith(quiet_endpoint.failure_path)


def test_out_of_range_fields_are_usage_errors(
    quiet_endpoint: EndpointInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    # In this process (main()), as the checks are the client's own: nothing reaches the endpoint.
    for flag, value, message in (
        ("--request-ttl", "59", "RequestTTLSeconds must be an integer from 60 to 21600"),
        ("--invocation-timeout", "3601", "InvocationTimeoutSeconds must be an integer from 1"),
        ("--custom-attributes", "é", "CustomAttributes does not match"),
        ("--filename", "a.b.c", "Filename does not match"),
    ):
        assert main(["invoke", quiet_endpoint.name, "--data", "x", flag, value]) == 2, flag
        stderr = capsys.readouterr().err
        assert message in stderr
        if flag == "--custom-attributes":
            # Sensitive in the service model: its value is not echoed.
            assert value not in stderr


# --- the wire: what the command sends, field by field ----------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Answers every POST as the runtime endpoint does (202) and keeps what it received."""

    received: list[tuple[str, dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append((self.path, dict(self.headers.items()), body))
        inference_id = self.headers.get("X-Amzn-SageMaker-Inference-Id") or "generated"
        answer = orjson.dumps({"InferenceId": inference_id})
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("X-Amzn-SageMaker-OutputLocation", f"s3://out/{inference_id}.out")
        self.send_header("X-Amzn-SageMaker-FailureLocation", f"s3://out/{inference_id}.err")
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    """A loopback HTTP server standing in for the runtime endpoint, to read the raw request.

    The local stack checks these fields but does not echo them (CustomAttributes and the TTL
    leave no trace in an output), so this is where their names and values are checked.
    """
    received: list[tuple[str, dict[str, str], bytes]] = []
    handler = type("Handler", (_Recorder,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_every_request_field_goes_on_the_wire(
    recorder: tuple[str, list[tuple[str, dict[str, str], bytes]]],
) -> None:
    url, received = recorder
    common = (
        "--endpoint-url", url, "--accept", "text/csv", "--inference-id", "req-1",
        "--custom-attributes", "trace=abc", "--request-ttl", "120",
        "--invocation-timeout", "30", "--output-path-extension", "runs/7", "--filename", "r.out",
    )  # fmt: skip
    inline = cli("invoke", "my-endpoint", "--data", '{"a": 1}', *common)
    assert inline.returncode == 0, inline.stderr
    staged = cli(
        "invoke", "my-endpoint", "--input-location", "s3://bucket/in.csv",
        "--content-type", "text/csv", *common,
    )  # fmt: skip
    assert staged.returncode == 0, staged.stderr
    assert [path for path, _, _ in received] == ["/endpoints/my-endpoint/async-invocations"] * 2
    expected = {
        "X-Amzn-SageMaker-Accept": "text/csv",
        "X-Amzn-SageMaker-Inference-Id": "req-1",
        "X-Amzn-SageMaker-Custom-Attributes": "trace=abc",
        "X-Amzn-SageMaker-RequestTTLSeconds": "120",
        "X-Amzn-SageMaker-InvocationTimeoutSeconds": "30",
        "X-Amzn-SageMaker-S3OutputPathExtension": "runs/7",
        "X-Amzn-SageMaker-Filename": "r.out",
    }
    (_, first, first_body), (_, second, second_body) = received
    for headers in (first, second):
        assert {k: headers.get(k) for k in expected} == expected
        assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert first_body == b'{"a": 1}'
    assert first["X-Amzn-SageMaker-Content-Type"] == "application/json"
    assert "X-Amzn-SageMaker-InputLocation" not in first
    assert second_body == b""
    assert second["X-Amzn-SageMaker-InputLocation"] == "s3://bucket/in.csv"
    assert second["X-Amzn-SageMaker-Content-Type"] == "text/csv"
    # What the command printed is the endpoint's answer.
    assert orjson.loads(inline.stdout)["output_location"] == "s3://out/req-1.out"
    assert orjson.loads(staged.stdout)["failure_location"] == "s3://out/req-1.err"
