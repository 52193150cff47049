"""Reads are bounded (#10): outputs over ``max_output_bytes`` are left unread, failure objects are
cut, and ``job.result(to_file=...)`` streams an output of any size to a file.

Over real HTTP on loopback: the local stack's echo model returns the payload as the output, so a
payload of N bytes makes an output of N bytes. What a watcher fetched is counted by a proxy in
front of moto's S3 that streams each GetObject answer and counts the bytes it hands the client
(the bytes the client could have read, socket buffers included); a watcher that read the whole
output would take them all.
"""

from __future__ import annotations

import os
import tracemalloc
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aws_proxy import AwsProxy, operation
from watcher_helpers import RawClients, build_watcher

from aiosagemaker import (
    AsyncInvoker,
    InferenceFailedError,
    OutputTooLargeError,
    ResultReadError,
    S3Polling,
)
from aiosagemaker._watchers._base import (
    DEFAULT_MAX_OUTPUT_BYTES,
    MAX_FAILURE_BYTES,
    Watcher,
)
from aiosagemaker.local import EndpointInfo, LocalStack

#: large against what loopback sockets buffer once a client stops reading (measured: 0 to 0.7 MB
#: of an unread 8 MB answer), so that an output read whole and one left unread look different.
LARGE = 8 * 1024 * 1024

#: the hop-by-hop and length headers (as in aws_proxy): aiohttp sets its own.
_SKIP_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}
)


class GetCounter:
    """An ``aws_proxy`` answer for GetObject that streams moto's answer to the client in 16 KiB
    writes, counting per object the bytes written (the client's socket took them), and stops when
    the client closes the connection."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.sent: defaultdict[str, int] = defaultdict(int)
        self.gets: defaultdict[str, int] = defaultdict(int)
        self._session = aiohttp.ClientSession(auto_decompress=False)

    def bytes_sent(self, location: str) -> int:
        return self.sent[location.removeprefix("s3://")]

    async def __call__(
        self, proxy: AwsProxy, request: web.Request, data: bytes
    ) -> web.StreamResponse:
        key = request.path.lstrip("/")
        self.gets[key] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_HEADERS}
        upstream = await self._session.get(self.upstream + request.raw_path, headers=headers)
        try:
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _SKIP_HEADERS}
            response = web.StreamResponse(status=upstream.status, headers=out)
            # The client reads ContentLength from this header: keep moto's.
            response.content_length = upstream.content_length
            await response.prepare(request)
            while chunk := await upstream.content.read(16 * 1024):
                try:
                    await response.write(chunk)
                except ConnectionError:  # the client closed the stream: the test's point
                    break
                self.sent[key] += len(chunk)
            return response
        finally:
            upstream.close()

    async def aclose(self) -> None:
        await self._session.close()


@pytest.fixture
async def get_counter(aws_proxy: AwsProxy) -> AsyncIterator[GetCounter]:
    """Every GetObject through the proxy, streamed and counted (see :class:`GetCounter`)."""
    counter = GetCounter(aws_proxy.upstream)
    aws_proxy.add(operation("GetObject"), counter)
    try:
        yield counter
    finally:
        await counter.aclose()


async def put_input(clients: RawClients, bucket: str, body: bytes) -> str:
    """An input object for ``submit(input_location=...)``: outputs larger than the 128,000 bytes
    that may go inline."""
    key = f"reads-inputs/{uuid.uuid4().hex}.bin"
    await clients.s3.put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def large_payload() -> bytes:
    # Not one repeated byte: a file written at the wrong offset must not pass.
    return os.urandom(1024) * (LARGE // 1024)


# --- the limit ----------------------------------------------------------------------------------


def test_max_output_bytes_default_and_validation() -> None:
    assert DEFAULT_MAX_OUTPUT_BYTES == 64 * 1024 * 1024
    assert S3Polling().max_output_bytes == DEFAULT_MAX_OUTPUT_BYTES
    assert S3Polling(max_output_bytes=0).max_output_bytes == 0
    with pytest.raises(ValueError, match="max_output_bytes"):
        S3Polling(max_output_bytes=-1)


async def test_output_over_the_limit_is_not_read(
    watcher_kind: str,
    make_watcher: Callable[..., Watcher],
    watched_endpoint: EndpointInfo,
    aws_clients: RawClients,
    get_counter: GetCounter,
    stack_env: LocalStack,
    tmp_path: Path,
) -> None:
    payload = large_payload()
    source = await put_input(aws_clients, stack_env.info.bucket, payload)
    watcher = make_watcher(watched_endpoint, max_output_bytes=1024)
    async with AsyncInvoker(watched_endpoint.name, watcher=watcher) as invoker:
        job = await invoker.submit(input_location=source, content_type="application/x-test")
        with pytest.raises(OutputTooLargeError) as caught:
            await job.result(timeout=60)
        error = caught.value
        assert isinstance(error, ResultReadError)
        assert error.size == LARGE and error.limit == 1024
        assert error.content_type == "application/x-test"
        assert error.inference_id == job.inference_id
        assert error.output_location == job.output_location is not None
        assert "to_file" in str(error)
        # Asked for its headers once, then closed unread: a small part of it crossed the proxy
        # (what the sockets buffered), where reading it would have taken all of it.
        assert get_counter.gets[job.output_location.removeprefix("s3://")] == 1
        assert get_counter.bytes_sent(job.output_location) < LARGE // 4
        stats = watcher.statistics()
        assert stats.bytes_read == 0 and stats.outputs_too_large == 1
        assert stats.resolved == 1 and stats.failed == 0  # the inference itself succeeded

        # The caller streams it instead: to a file, whatever max_output_bytes says.
        target = tmp_path / "output.bin"
        result = await job.result(to_file=target)
        assert result.body is None and result.path == target and result.size == LARGE
        assert result.content_type == "application/x-test"
        assert result.output_location == job.output_location
        assert target.read_bytes() == payload
        assert watcher.statistics().bytes_read == LARGE
    assert list(tmp_path.iterdir()) == [target]  # no partial file left beside it


async def test_output_at_the_limit_is_read(
    quiet_endpoint: EndpointInfo, stack_env: LocalStack
) -> None:
    limit = 100_000
    watcher = S3Polling(interval=0.02, max_output_bytes=limit)
    async with AsyncInvoker(quiet_endpoint.name, watcher=watcher) as invoker:
        at = await invoker.submit(b"a" * limit)
        over = await invoker.submit(b"o" * (limit + 1))
        result = await at.result(timeout=30)
        assert result.body == b"a" * limit and result.size == limit and result.path is None
        with pytest.raises(OutputTooLargeError) as caught:
            await over.result(timeout=30)
        assert caught.value.size == limit + 1 and caught.value.limit == limit
    assert watcher.statistics().bytes_read == limit


class AcceptAll:
    """A verifier that takes every SNS envelope as signed (the local stack's are not really), so
    that the bodies its notifications carry are used."""

    async def verify(self, envelope: Mapping[str, Any]) -> None:
        return None


async def test_embedded_body_over_the_limit_is_not_used(
    local_stack: LocalStack, stack_env: LocalStack, tmp_path: Path
) -> None:
    # The notification carries the output (include_response) and is believed (signed): over the
    # limit, its body is dropped as an output read from S3 would be, and the job resolves the same
    # way; under the limit, it is used.
    endpoint = await local_stack.create_endpoint(include_response=True)
    try:
        watcher = build_watcher(
            "sqs", endpoint, reconcile_after=60.0, max_output_bytes=1000, verifier=AcceptAll()
        )
        async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
            small = await invoker.submit(b"s" * 1000, content_type="text/plain")
            big = await invoker.submit(b"b" * 5000, content_type="text/plain")
            assert (await small.result(timeout=30)).body == b"s" * 1000
            with pytest.raises(OutputTooLargeError) as caught:
                await big.result(timeout=30)
            assert caught.value.size == 5000 and caught.value.limit == 1000
            assert caught.value.output_location == big.output_location is not None
            stats = watcher.statistics()
            assert stats.inline_bodies == 2 and stats.s3_get_calls == 0
            assert stats.outputs_too_large == 1
            # Streamed from S3 on request, not from the notification it arrived in.
            target = tmp_path / "big.txt"
            result = await big.result(to_file=target)
            assert target.read_bytes() == b"b" * 5000 and result.size == 5000
            assert watcher.statistics().s3_get_calls == 1
    finally:
        await local_stack.delete_endpoint(endpoint.name)


# --- to_file ---------------------------------------------------------------------------------------


async def test_to_file_streams_without_holding_the_output(
    quiet_endpoint: EndpointInfo, aws_clients: RawClients, stack_env: LocalStack, tmp_path: Path
) -> None:
    payload = large_payload()
    source = await put_input(aws_clients, stack_env.info.bucket, payload)
    # fetch=False: the watcher reads nothing; the output is only ever streamed to the file.
    watcher = S3Polling(interval=0.02, fetch=False)
    async with AsyncInvoker(quiet_endpoint.name, watcher=watcher) as invoker:
        job = await invoker.submit(input_location=source)
        await job.result(timeout=60)
        target = tmp_path / "streamed.bin"
        tracemalloc.start()
        try:
            result = await job.result(to_file=str(target))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert target.read_bytes() == payload
    assert result.body is None and result.size == LARGE and result.path == target
    # Chunks, never the whole: the most allocated at once is a small part of the output.
    assert peak < LARGE // 4, peak


async def test_to_file_writes_an_output_already_in_memory(
    quiet_endpoint: EndpointInfo, stack_env: LocalStack, tmp_path: Path
) -> None:
    watcher = S3Polling(interval=0.02)
    async with AsyncInvoker(quiet_endpoint.name, watcher=watcher) as invoker:
        job = await invoker.submit(b'{"small": 1}')
        assert (await job.result(timeout=30)).body == b'{"small": 1}'
        gets = watcher.statistics().s3_get_calls
        result = await job.result(to_file=tmp_path / "small.json")
        assert (tmp_path / "small.json").read_bytes() == b'{"small": 1}'
        assert result.body is None and result.size == 12
        assert watcher.statistics().s3_get_calls == gets  # written from memory
        # A file that cannot be written is the caller's OSError, and leaves nothing behind.
        with pytest.raises(FileNotFoundError):
            await job.result(to_file=tmp_path / "missing" / "small.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.json"]


# --- failure objects ------------------------------------------------------------------------------


async def test_a_large_failure_object_is_cut(
    aws_clients: RawClients, stack_env: LocalStack
) -> None:
    bucket = stack_env.info.bucket
    prefix = f"reads-failures/{uuid.uuid4().hex}"
    # Two-byte characters after one one-byte: the cut falls inside a character.
    reason = "E" + "é" * 50_000
    failure = f"s3://{bucket}/{prefix}/job-error.out"
    await aws_clients.s3.put_object(
        Bucket=bucket, Key=f"{prefix}/job-error.out", Body=reason.encode()
    )
    async with S3Polling(interval=0.02) as watcher:
        job = watcher.track("job", f"s3://{bucket}/{prefix}/job.out", failure)
        with pytest.raises(InferenceFailedError) as caught:
            await job.result(timeout=30)
        stats = watcher.statistics()
    text = caught.value.reason
    assert text.startswith("Eéé") and "\ufffd" not in text
    kept = text.split(" [")[0]
    assert len(kept.encode()) == MAX_FAILURE_BYTES - 1  # the split character left out
    assert f"cut at {MAX_FAILURE_BYTES:,} of {len(reason.encode()):,} bytes" in text
    assert stats.failed == 1 and stats.bytes_read <= MAX_FAILURE_BYTES + 1
