"""``aiosagemaker local`` prints the environment and, per endpoint, where its results go."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from aiosagemaker.local import EndpointInfo, StackInfo
from aiosagemaker.local._main import endpoint_lines


def test_prints_each_endpoints_paths_and_queue(tmp_path: Path) -> None:
    info_file = tmp_path / "info.json"
    log = tmp_path / "stderr.log"
    with open(log, "wb") as errors:
        stack = subprocess.Popen(
            [
                sys.executable, "-m", "aiosagemaker.cli", "local",
                "--endpoint", "first", "--endpoint", "second",
                "--info-file", str(info_file), "--watch-stdin",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )  # fmt: skip
        assert stack.stdin is not None and stack.stdout is not None
        try:
            lines: list[str] = []
            # The control line is the last one, flushed once every endpoint exists.
            while not lines or not lines[-1].startswith("# control: "):
                line = stack.stdout.readline()
                assert line, f"the stack exited early:\n{log.read_text()}"
                lines.append(line.decode().rstrip("\n"))
        finally:
            stack.stdin.close()  # --watch-stdin: stop
            assert stack.wait(timeout=30) == 0, log.read_text()
            stack.stdout.close()
    info = StackInfo.from_json(orjson.loads(info_file.read_bytes()))
    # The environment lines are as before, and the output stays something a shell can eval.
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export ")
    )
    # The control routes' token is printed with the environment, and is the info file's.
    assert exports.pop("AIOSAGEMAKER_LOCAL_CONTROL_TOKEN") == info.control_token
    assert len(info.control_token) >= 32
    assert exports == info.env()
    assert all(line.startswith(("export ", "# ")) for line in lines)
    assert lines[-1] == f"# control: {info.control_url}/_local/stats"
    assert [e.name for e in info.endpoints] == ["first", "second"]
    for endpoint in info.endpoints:
        assert endpoint.output_path.startswith("s3://") and endpoint.queue_url
        block = [
            f"# endpoint {endpoint.name}",
            f"#   output:  {endpoint.output_path}",
            f"#   failure: {endpoint.failure_path}",
            f"#   queue:   {endpoint.queue_url}",
        ]
        start = lines.index(block[0])
        assert lines[start : start + 4] == block


def test_an_endpoint_without_notifications_says_so() -> None:
    endpoint = EndpointInfo(
        name="quiet",
        output_path="s3://bucket/quiet/output/",
        failure_path="s3://bucket/quiet/failure/",
        success_topic_arn=None,
        error_topic_arn=None,
        queue_url=None,
    )
    assert endpoint_lines(endpoint)[-1] == "#   queue:   none (--no-notifications)"
