"""GetObject faults injected inside moto's child (local/_s3_faults.py), over real HTTP: exactly the
planned GetObjects fail (500/503 in S3's XML shape, or a reset), nothing else on the shared port
ever does, plans are per bucket or global and seeded, the control route needs the run's token,
and MotoServer pauses and stops the child."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import boto3
import pytest
import pytest_asyncio
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from aiosagemaker.local._moto import MotoServer, start_moto, stop_moto
from aiosagemaker.local._s3_faults import CONTROL_PATH

pytestmark = pytest.mark.asyncio(loop_scope="module")

BUCKETS = ("faults-a", "faults-b")
KEY = "outputs/result.json"
BODY = b'{"ok": true}'


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def moto() -> AsyncIterator[MotoServer]:
    """The stack's moto child, as the stack starts it, with a small object in each bucket."""
    server = await start_moto()
    s3 = client(server, "s3")
    for bucket in BUCKETS:
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=KEY, Body=BODY)
    s3.close()
    yield server
    await stop_moto(server)


@pytest_asyncio.fixture(loop_scope="module")
async def s3(moto: MotoServer) -> AsyncIterator[Any]:
    """A plain S3 client, one attempt per call; every test starts without faults."""
    await moto.set_s3_faults({})
    s3 = client(moto, "s3")
    yield s3
    s3.close()
    await moto.set_s3_faults({})


def client(moto: MotoServer, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def get(s3: Any, bucket: str = BUCKETS[0]) -> str:
    """One GetObject's outcome: ``ok``, ``<status> <S3 error code>``, or ``reset``."""
    try:
        body = s3.get_object(Bucket=bucket, Key=KEY)["Body"].read()
    except ClientError as exc:
        meta = exc.response["ResponseMetadata"]
        return f"{meta['HTTPStatusCode']} {exc.response['Error']['Code']}"
    except ConnectionClosedError:
        return "reset"
    assert body == BODY
    return "ok"


def raw_get(moto: MotoServer, path: str, service: str) -> int:
    """The status of a GET signed (in form: moto checks no signature) for ``service``."""
    host, port = moto.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": authorization(service)})
        return connection.getresponse().status
    finally:
        connection.close()


def authorization(service: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/{service}/aws4_request, "
        "SignedHeaders=host, Signature=0"
    )


async def injected(moto: MotoServer) -> dict[str, int]:
    counts: dict[str, int] = (await moto.s3_faults())["injected"]
    return counts


async def test_the_next_three_get_objects_fail_then_all_succeed(moto: MotoServer, s3: Any) -> None:
    before = await injected(moto)
    state = await moto.set_s3_faults({"global": {"s3_get_error": {"next": 3}}})
    assert state["global"] == {"s3_get_error": {"next": 3}} and state["buckets"] == {}

    outcomes = [get(s3) for _ in range(6)]

    # 500 InternalError and 503 SlowDown alternate; botocore read each code from S3's XML error.
    assert outcomes == ["500 InternalError", "503 SlowDown", "500 InternalError", "ok", "ok", "ok"]
    after = await moto.s3_faults()
    assert after["global"] == {"s3_get_error": {"next": 0}}
    assert after["injected"]["s3_get_error"] == before["s3_get_error"] + 3
    assert after["injected"]["s3_get_reset"] == before["s3_get_reset"]


async def test_only_get_object_is_faulted_not_lists_heads_subresources_or_sqs(
    moto: MotoServer, s3: Any
) -> None:
    before = await injected(moto)
    await moto.set_s3_faults({"global": {"s3_get_error": 1.0}})
    sqs, sns = client(moto, "sqs"), client(moto, "sns")
    try:
        # Each would raise if faulted: none of them is a GetObject.
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKETS[0])["Contents"]] == [KEY]
        assert [o["Key"] for o in s3.list_objects(Bucket=BUCKETS[0])["Contents"]] == [KEY]
        assert s3.head_object(Bucket=BUCKETS[0], Key=KEY)["ContentLength"] == len(BODY)
        s3.get_object_tagging(Bucket=BUCKETS[0], Key=KEY)
        s3.get_object_acl(Bucket=BUCKETS[0], Key=KEY)
        s3.put_object(Bucket=BUCKETS[0], Key="other", Body=b"x")
        s3.list_buckets()
        queue_url = sqs.create_queue(QueueName="faults-untouched")["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody="m")
        got = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)["Messages"]
        assert [m["Body"] for m in got] == ["m"]
        sns.list_topics()
    finally:
        sqs.close()
        sns.close()
    # A bare ListObjects (no query string: no key, so not a GetObject) is not faulted either.
    assert raw_get(moto, f"/{BUCKETS[0]}", service="s3") == 200
    assert raw_get(moto, f"/{BUCKETS[0]}/", service="s3") == 200
    # The same GET with another service's credential scope is not S3's, so not a GetObject.
    assert raw_get(moto, f"/{BUCKETS[0]}/{KEY}", service="sqs") != 500
    assert await injected(moto) == before

    assert get(s3) == "500 InternalError"  # the plan was in force all along
    assert (await injected(moto))["s3_get_error"] == before["s3_get_error"] + 1


async def test_a_reset_is_a_connection_error_to_the_client(moto: MotoServer, s3: Any) -> None:
    before = await injected(moto)
    await moto.set_s3_faults({"global": {"s3_get_reset": {"next": 1}}})
    assert [get(s3), get(s3)] == ["reset", "ok"]
    counts = await injected(moto)
    assert counts["s3_get_reset"] == before["s3_get_reset"] + 1
    assert counts["s3_get_error"] == before["s3_get_error"]


async def test_a_reset_is_an_rst_not_an_orderly_close(moto: MotoServer, s3: Any) -> None:
    await moto.set_s3_faults({"global": {"s3_get_reset": {"next": 1}}})
    host, port = moto.url.removeprefix("http://").split(":")
    # The middleware reads only the credential scope (moto checks no signature).
    request = (
        f"GET /{BUCKETS[0]}/{KEY} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: {authorization('s3')}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        # An orderly close would read as b"" (end of stream); a reset raises.
        with pytest.raises(ConnectionResetError):
            sock.recv(65536)
    assert get(s3) == "ok"


async def test_a_bucket_plan_faults_only_its_bucket_and_overrides_the_global_one(
    moto: MotoServer, s3: Any
) -> None:
    a, b = BUCKETS
    await moto.set_s3_faults({"buckets": {a: {"s3_get_error": 1.0}}})
    assert [get(s3, a), get(s3, b), get(s3, a), get(s3, b)] == [
        "500 InternalError",
        "ok",
        "503 SlowDown",
        "ok",
    ]
    # A bucket's own plan wins over the global one, even an empty plan.
    state = await moto.set_s3_faults({"global": {"s3_get_error": 1.0}, "buckets": {b: {}}})
    assert state["global"] == {"s3_get_error": {"rate": 1.0}} and state["buckets"] == {b: {}}
    assert [get(s3, a), get(s3, b)] == ["500 InternalError", "ok"]
    # And {} clears every plan.
    state = await moto.set_s3_faults({})
    assert (state["global"], state["buckets"]) == (None, {})
    assert [get(s3, a), get(s3, b)] == ["ok", "ok"]


async def test_a_seeded_rate_plan_gives_the_same_sequence_twice(moto: MotoServer, s3: Any) -> None:
    async def sequence(seed: int) -> list[str]:
        plan = {"seed": seed, "s3_get_reset": 0.15, "s3_get_error": 0.3}
        await moto.set_s3_faults({"global": plan})
        return [get(s3) for _ in range(30)]

    first = await sequence(42)
    assert await sequence(42) == first
    assert {"ok", "reset", "500 InternalError", "503 SlowDown"} <= set(first)
    assert await sequence(43) != first  # the seed decides it


async def test_the_control_route_needs_the_runs_token(moto: MotoServer, s3: Any) -> None:
    url = moto.url + CONTROL_PATH
    plan = {"global": {"s3_get_error": 1.0}}
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": moto.token}):
            async with session.get(url, headers=headers) as answer:
                assert answer.status == 401
            async with session.post(url, json=plan, headers=headers) as answer:
                assert answer.status == 401
        good = {"Authorization": f"Bearer {moto.token}"}
        async with session.get(url, headers=good) as answer:
            assert answer.status == 200
            assert (await answer.json())["global"] is None
        async with session.put(url, json=plan, headers=good) as answer:
            assert answer.status == 405
    assert get(s3) == "ok"  # no refused request set a plan


@pytest.mark.parametrize(
    "spec",
    [
        {"global": {"s3_get_eror": 1.0}},
        {"global": {"s3_get_error": 2.0}},
        {"global": {"seed": "x"}},
        {"buckets": {BUCKETS[0]: {"s3_get_reset": {"next": -1}}}},
        {"buckets": [BUCKETS[0]]},
        {"everything": {}},
    ],
)
async def test_a_malformed_plan_is_refused_and_changes_nothing(
    moto: MotoServer, s3: Any, spec: dict[str, Any]
) -> None:
    await moto.set_s3_faults({"global": {"s3_get_error": {"next": 1}}})
    with pytest.raises(ValueError):
        await moto.set_s3_faults(spec)
    assert (await moto.s3_faults())["global"] == {"s3_get_error": {"next": 1}}


async def test_a_paused_child_answers_only_once_resumed(moto: MotoServer, s3: Any) -> None:
    events: list[str] = []
    moto.pause()
    try:
        thread = threading.Thread(target=lambda: events.append(get(s3)), daemon=True)
        thread.start()
        time.sleep(0.5)
        events.append("resumed")
    finally:
        moto.resume()
    thread.join(timeout=10)
    assert events == ["resumed", "ok"]
    assert not moto.paused


async def test_stop_moto_stops_a_paused_child() -> None:
    server = await start_moto()
    server.pause()
    assert server.paused
    await stop_moto(server)
    # Resumed first, so it read the end of its stdin and exited by itself (killed, it would be -9).
    assert server.process.returncode == 0
    assert not server.paused
