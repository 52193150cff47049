"""Structured logs: the library's records carry ``endpoint`` and ``inference_id`` as attributes
(``extra=``), for JSON handlers to index, and never a payload, ``CustomAttributes`` or a secret."""

from __future__ import annotations

import logging

import pytest
from aiobotocore.session import get_session
from otel_helpers import Otel
from watcher_helpers import completed_notification, wait_until

from aiosagemaker import AsyncInvoker, InvokerClosedError, RetryPolicy, SqsNotifications
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

FAST = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.01)


async def test_records_carry_endpoint_and_inference_id(
    stack_env: LocalStack, endpoint: EndpointInfo, caplog: pytest.LogCaptureFixture, otel: Otel
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiosagemaker")
    assert endpoint.queue_url is not None
    await stack_env.set_faults({"throttle": {"next": 1}}, endpoint=endpoint.name)
    watcher = SqsNotifications(
        queue_url=endpoint.queue_url,
        wait_time_seconds=1,
        receive_linger=0.0,
        delete_linger=0.05,
        hold_seconds=0.2,
    )
    async with AsyncInvoker(
        endpoint.name, retry=FAST, watcher=watcher, meter_provider=otel.meter_provider
    ) as invoker:
        job = await invoker.submit(b"SECRET-PAYLOAD-123", custom_attributes="SECRET-ATTRIBUTE-456")
        assert (await job.result()).body == b"SECRET-PAYLOAD-123"  # after one throttled attempt
        # A job of this endpoint whose output will never be written: pending while forged
        # notifications come in.
        waiting = watcher.track(
            "waits-forever",
            f"{endpoint.output_path}waits-forever.out",
            f"{endpoint.failure_path}waits-forever.out",
            endpoint_name=endpoint.name,
        )
        async with get_session().create_client("sqs") as sqs:
            # Another location than the job's: refused. An id nobody tracks: held, dropped.
            for inference_id, location in (
                ("waits-forever", "s3://elsewhere/forged.out"),
                ("nobody-tracks-this", "s3://elsewhere/x.out"),
            ):
                await sqs.send_message(
                    QueueUrl=endpoint.queue_url,
                    MessageBody=completed_notification(inference_id, location),
                )
        await wait_until(
            lambda: watcher.statistics().refused_notifications == 1, what="the refusal"
        )
        await wait_until(
            lambda: any("unknown inference id" in r.getMessage() for r in caplog.records),
            what="the dropped notification",
        )
        # The refusal, in the watcher's statistics and in the metric of the job's endpoint.
        refused = "aiosagemaker.watcher.refused_notifications"
        assert otel.value(refused, **{"aiosagemaker.endpoint": endpoint.name}) == 1
    with pytest.raises(InvokerClosedError):
        await waiting.result()

    records = [r for r in caplog.records if r.name == "aiosagemaker"]
    for record in records:
        assert hasattr(record, "endpoint"), record.getMessage()
        assert hasattr(record, "inference_id"), record.getMessage()
        text = repr(vars(record)) + record.getMessage()
        for secret in (
            "SECRET-PAYLOAD-123",
            "SECRET-ATTRIBUTE-456",
            stack_env.info.aws_secret_access_key,
        ):
            assert secret not in text

    def about(fragment: str) -> logging.LogRecord:
        found = [r for r in records if fragment in r.getMessage()]
        assert found, fragment
        return found[0]

    retry = about("retrying inference")
    assert (retry.endpoint, retry.inference_id) == (endpoint.name, job.inference_id)  # type: ignore[attr-defined]
    refusal = about("refused a notification")
    assert (refusal.endpoint, refusal.inference_id) == (endpoint.name, "waits-forever")  # type: ignore[attr-defined]
    dropped = about("unknown inference id")
    assert dropped.inference_id == "nobody-tracks-this"  # type: ignore[attr-defined]
    assert dropped.endpoint == endpoint.name  # type: ignore[attr-defined]  # the watcher's one


def test_every_record_of_the_library_logger_has_both_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A record about no job (the batch job's, the commands', a watcher's own) still has both
    # fields, as None, so that a JSON handler's format never meets a record without them.
    caplog.set_level(logging.INFO, logger="aiosagemaker")
    library = logging.getLogger("aiosagemaker")
    library.info("about no job")
    library.info("about one", extra={"endpoint": "an-endpoint", "inference_id": "an-id"})
    first, second = (r for r in caplog.records if r.name == "aiosagemaker")
    assert (first.endpoint, first.inference_id) == (None, None)  # type: ignore[attr-defined]
    assert (second.endpoint, second.inference_id) == ("an-endpoint", "an-id")  # type: ignore[attr-defined]
