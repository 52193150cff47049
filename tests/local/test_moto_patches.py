"""The moto speed-up keeps SQS's behaviour: attributes, counts and content-based deduplication."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from aiosagemaker.local._moto_patches import apply


def test_apply_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import backends
    from moto.sqs.models import Queue

    # Start from moto as shipped (earlier tests in this process may have applied the patch).
    attributes = Queue.__dict__["attributes"]
    moto_attributes = getattr(attributes, "original", attributes)
    assert type(moto_attributes) is property
    listings: list[int] = []

    def list_of_moto_modules() -> Iterator[str]:
        listings.append(1)
        yield from ("s3", "sns", "sqs")

    monkeypatch.setattr(Queue, "attributes", moto_attributes)
    monkeypatch.setattr(backends, "list_of_moto_modules", list_of_moto_modules)

    apply()
    patched_attributes = Queue.__dict__["attributes"]
    patched_listing = backends.list_of_moto_modules
    assert patched_attributes is not moto_attributes
    assert patched_attributes.original is moto_attributes
    assert patched_listing is not list_of_moto_modules
    assert listings == [1]

    apply()
    # The second call changes nothing: no property wrapped twice, no listing cached again.
    assert Queue.__dict__["attributes"] is patched_attributes
    assert backends.list_of_moto_modules is patched_listing
    assert list(backends.list_of_moto_modules()) == ["s3", "sns", "sqs"]
    assert list(backends.list_of_moto_modules()) == ["s3", "sns", "sqs"]
    assert listings == [1]  # the directory was listed once, by the first apply()


def test_patched_queue_attributes_behave_as_before() -> None:
    apply()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        plain = sqs.create_queue(QueueName="plain")["QueueUrl"]
        fifo = sqs.create_queue(
            QueueName="dedup.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
        )["QueueUrl"]
        for _ in range(3):
            sqs.send_message(QueueUrl=plain, MessageBody="m")
            sqs.send_message(QueueUrl=fifo, MessageBody="same", MessageGroupId="g")
        plain_attrs = sqs.get_queue_attributes(QueueUrl=plain, AttributeNames=["All"])["Attributes"]
        fifo_attrs = sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["All"])["Attributes"]
    assert plain_attrs["ApproximateNumberOfMessages"] == "3"
    assert "ContentBasedDeduplication" not in plain_attrs
    # Content-based deduplication still drops the repeats.
    assert fifo_attrs["ApproximateNumberOfMessages"] == "1"
    assert fifo_attrs["ContentBasedDeduplication"] == "true"


def test_lazy_attributes_equal_the_original_computation() -> None:
    from moto.sqs.models import Queue, sqs_backends

    apply()
    patched = Queue.__dict__["attributes"]
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        for name, attributes in [
            ("plain", {}),
            ("dedup.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}),
            (
                "with-dlq",
                {
                    "RedrivePolicy": '{"deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:plain", "maxReceiveCount": 3}'
                },
            ),
        ]:
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            extra = {"MessageGroupId": "g"} if name.endswith(".fifo") else {}
            sqs.send_message(QueueUrl=url, MessageBody="m", **extra)
            queue = sqs_backends["123456789012"]["us-east-1"].queues[name]
            assert dict(queue.attributes) == patched.original.fget(queue)


def test_module_list_is_read_once_and_unchanged() -> None:
    from moto import backends

    apply()
    modules = list(backends.list_of_moto_modules())
    assert {"s3", "sns", "sqs"} <= set(modules)
    assert modules == sorted(modules)
    assert hasattr(backends.list_of_moto_modules, "cache_info")  # read once, then cached


@pytest.mark.parametrize("version", ["5.1.9", "5.3.0", "6.0.0", "garbage"])
def test_patches_refuse_an_untested_moto(version: str) -> None:
    from aiosagemaker.local._moto_patches import check_moto_version

    with pytest.raises(RuntimeError, match=f"moto {version} is installed"):
        check_moto_version(version)


def test_patches_accept_the_tested_moto_and_the_extra_pins_it() -> None:
    import tomllib
    from pathlib import Path

    import moto

    from aiosagemaker.local._moto_patches import TESTED_MOTO, check_moto_version

    check_moto_version(moto.__version__)  # the installed one is a tested one
    check_moto_version("5.2.0")
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    local = pyproject["project"]["optional-dependencies"]["local"]
    assert "moto[server]>=5.2,<5.3" in local and TESTED_MOTO == ((5, 2),)


def test_every_public_sqs_backend_method_but_the_lookups_runs_under_the_lock() -> None:
    import threading

    from moto.sqs.models import SQSBackend

    from aiosagemaker.local._moto_patches import SQS_LOCK, locked_sqs_methods

    apply()
    names = locked_sqs_methods()
    # The operations that raced (local/_moto_patches.py's docstring) are among them.
    assert {
        "send_message",
        "send_message_batch",
        "receive_message",
        "delete_message",
        "delete_message_batch",
        "change_message_visibility",
        "change_message_visibility_batch",
        "purge_queue",
        "get_queue_attributes",
        "iter_tagged_resources",
    } <= set(names)
    assert not {"get_queue", "get_queue_url"} & set(names)
    wrapped = {name: vars(SQSBackend)[name] for name in names}
    apply()  # idempotent: nothing wrapped twice
    for name in names:
        assert vars(SQSBackend)[name] is wrapped[name]
        assert wrapped[name].sqs_locked
        assert not getattr(wrapped[name].__wrapped__, "sqs_locked", False)

    # And the lock is really taken: a send waits for whoever holds it.
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="locked")["QueueUrl"]
        events: list[str] = []

        def send() -> None:
            sqs.send_message(QueueUrl=url, MessageBody="m")
            events.append("sent")

        with SQS_LOCK:
            sender = threading.Thread(target=send)
            sender.start()
            sender.join(0.5)
            events.append("released")
        sender.join(10)
    assert events == ["released", "sent"]


def test_a_long_poll_releases_the_lock_while_it_waits() -> None:
    import threading

    from moto.sqs.models import Queue

    from aiosagemaker.local._moto_patches import SQS_LOCK

    apply()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="long-poll")["QueueUrl"]
        other = sqs.create_queue(QueueName="elsewhere")["QueueUrl"]
        events: list[str] = []
        waiting = threading.Event()
        original_wait = Queue.wait_for_messages

        def wait(self: Queue, timeout: int) -> None:
            waiting.set()
            original_wait(self, timeout)

        def poll() -> None:
            got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5).get("Messages", [])
            events.append(f"polled {len(got)}")

        Queue.wait_for_messages = wait  # type: ignore[method-assign]
        try:
            poller = threading.Thread(target=poll)
            poller.start()
            assert waiting.wait(5)
            # The poller holds the lock only between waits: another thread can take it now.
            assert SQS_LOCK.acquire(timeout=5)
            SQS_LOCK.release()
            sqs.send_message(QueueUrl=other, MessageBody="elsewhere")
            events.append("sent")
            sqs.send_message(QueueUrl=url, MessageBody="wake up")
            poller.join(10)
        finally:
            Queue.wait_for_messages = original_wait  # type: ignore[method-assign]
    assert events == ["sent", "polled 1"]
