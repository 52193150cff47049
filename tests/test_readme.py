"""The README's quick start, run as a user would: copied from README.md, pointed at the local stack.

Only the three names a user replaces are substituted (endpoint, bucket, queue URL); the test fails
if the README stops containing them, so the example and this test cannot drift apart. With latency
added to every answer, the server must see the example's 64 requests in flight at once.

``make test`` also shortens the example's loop from 1,000 payloads to 200 (three times its 64 in
flight: the fan-out, the results and the printed total are the same code at any count); the
example exactly as written, 1,000 payloads, runs under ``make test-scale``.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from aiosagemaker.local import EndpointInfo, LocalStack

README = Path(__file__).parent.parent / "README.md"


def _quick_start() -> str:
    text = README.read_text()
    section = text[text.index("## Submit 1,000 payloads") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


#: how many payloads the README's example submits, as written.
README_PAYLOADS = 1_000


def _pointed_at(code: str, endpoint: EndpointInfo, bucket: str, payloads: int) -> str:
    for placeholder, value in (
        ('"my-async-endpoint"', repr(endpoint.name)),
        ('"s3://my-bucket/inputs/"', repr(f"s3://{bucket}/inputs/")),
        ('"https://sqs.../my-endpoint-notifications"', repr(endpoint.queue_url)),
        (f"range({README_PAYLOADS:_})", f"range({payloads:_})"),  # as written at 1,000
    ):
        assert placeholder in code, f"the README's example no longer has {placeholder}"
        code = code.replace(placeholder, value)
    return code


@pytest.mark.parametrize(
    "payloads", [200, pytest.param(README_PAYLOADS, marks=pytest.mark.scale, id="as-written")]
)
def test_readme_quick_start_fans_out(
    local_stack: LocalStack,
    endpoint: EndpointInfo,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    payloads: int,
) -> None:
    for name, value in local_stack.env().items():
        monkeypatch.setenv(name, value)
    code = _pointed_at(_quick_start(), endpoint, local_stack.info.bucket, payloads)

    async def slow_front_door() -> None:
        await local_stack.reset()
        await local_stack.set_faults({"latency": 0.05}, endpoint=endpoint.name)

    asyncio.run(slow_front_door())
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})  # runs asyncio.run(main())
    stats = asyncio.run(local_stack.stats())
    assert stats["endpoints"][endpoint.name]["accepted"] == payloads
    assert stats["peak_concurrent_http"] == 64
    printed = capsys.readouterr().out
    assert re.fullmatch(r"\d+ bytes of output\n", printed), printed
