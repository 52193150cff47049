"""The aiosagemaker logger never carries payloads, CustomAttributes or credentials."""

from __future__ import annotations

import logging

import pytest

from aiosagemaker import AsyncInvoker, RetryPolicy
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")


async def test_no_secrets_in_logs(
    stack_env: LocalStack, endpoint: EndpointInfo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiosagemaker")
    await stack_env.set_faults({"throttle": {"next": 2}}, endpoint=endpoint.name)
    retry = RetryPolicy(base_delay=0.001, max_delay=0.01)
    async with AsyncInvoker(endpoint.name, retry=retry, watcher=None) as invoker:
        job = await invoker.submit(b"SECRET-PAYLOAD-123", custom_attributes="SECRET-ATTRIBUTE-456")
    assert job.attempts == 3
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "retrying" in logged  # the retries were logged...
    for secret in (
        "SECRET-PAYLOAD-123",
        "SECRET-ATTRIBUTE-456",
        stack_env.info.aws_secret_access_key,
        stack_env.info.aws_access_key_id,
    ):
        assert secret not in logged  # ...and nothing sensitive with them
        assert secret not in repr(invoker)
