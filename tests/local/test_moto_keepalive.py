"""The stack's moto server keeps connections alive (local/_moto_child.py), over real HTTP on
loopback: one aiohttp session's S3 calls share one TCP connection, HEAD included."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import aiohttp

from aiosagemaker.local import LocalStack


def authorization(service: str) -> str:
    # moto checks no signature; the credential scope routes the call to S3.
    return (
        f"AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/{service}/aws4_request, "
        "SignedHeaders=host, Signature=0"
    )


async def test_s3_calls_from_one_session_share_one_connection(local_stack: LocalStack) -> None:
    url = f"{local_stack.info.s3_url}/{local_stack.info.bucket}/keepalive-{uuid.uuid4().hex}"
    headers = {"Authorization": authorization("s3")}
    created: list[object] = []
    reused: list[object] = []

    async def on_create(_: aiohttp.ClientSession, __: SimpleNamespace, params: Any) -> None:
        created.append(params)

    async def on_reuse(_: aiohttp.ClientSession, __: SimpleNamespace, params: Any) -> None:
        reused.append(params)

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_create)
    trace.on_connection_reuseconn.append(on_reuse)
    answers: list[tuple[int, str | None, bytes]] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1), trace_configs=[trace]
    ) as session:
        # PUT, then HEAD (a Content-Length and no body: a stray body would garble the GET), GET.
        for method, body in (("PUT", b"kept alive"), ("HEAD", None), ("GET", None)):
            async with session.request(method, url, data=body, headers=headers) as response:
                answers.append(
                    (response.status, response.headers.get("Connection"), await response.read())
                )

    assert answers == [(200, None, b""), (200, None, b""), (200, None, b"kept alive")]
    # aiohttp's own account: one TCP connection opened, then taken from the pool twice.
    assert (len(created), len(reused)) == (1, 2)
