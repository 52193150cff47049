"""The user's HTTP settings reach every call the invoker and its watcher make, the invokes included:
proxies (``HTTP_PROXY``/``NO_PROXY``, ``Config(proxies=...)``), the CA bundle (``AWS_CA_BUNDLE``,
``verify=``), ``Config``'s timeouts and user agent, and never botocore's retries.

Over real HTTP on loopback: a counting forward proxy between the client and the local stack, and
TLS fronts with a generated certificate in front of the local endpoint and moto.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme
from aiobotocore.config import AioConfig
from aiohttp import web
from botocore.config import Config
from http_fronts import Front, forward_proxy, tls_front

from aiosagemaker import (
    AsyncInvoker,
    AwsContext,
    InvocationError,
    Limits,
    RetryPolicy,
    S3Polling,
    SqsNotifications,
)
from aiosagemaker.local import EndpointInfo, LocalStack

pytestmark = pytest.mark.usefixtures("stack_env")

JOBS = 12
AGENT = "acme-tests/1.0"


def _host(url: str) -> str:
    return url.split("://", 1)[1].rstrip("/")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: no proxy variables from the machine."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def proxy() -> AsyncIterator[Front]:
    async for front in forward_proxy():
        yield front


async def _round_trip(invoker: AsyncInvoker, n: int = JOBS) -> None:
    jobs = [await invoker.submit(b'{"n": %d}' % i) for i in range(n)]
    results = [await job.result(timeout=60) for job in jobs]
    assert [r.body for r in results] == [b'{"n": %d}' % i for i in range(n)]


async def test_http_proxy_from_the_environment_sees_every_call(
    stack_env: LocalStack,
    endpoint: EndpointInfo,
    proxy: Front,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    watcher = SqsNotifications(queue_url=endpoint.queue_url)
    async with AsyncInvoker(endpoint.name, watcher=watcher) as invoker:
        await _round_trip(invoker)
        stats = invoker.statistics()
    info = stack_env.info
    runtime, s3, sqs = _host(info.sagemaker_runtime_url), _host(info.s3_url), _host(info.sqs_url)
    # Every invoke (no retries: the stack injects no faults here), every output GET, every SQS call.
    assert stats.retried == 0
    assert proxy.count(method="POST", target=runtime) == JOBS == stats.accepted
    assert proxy.count(method="GET", target=s3) == watcher.statistics().s3_get_calls == JOBS
    w = watcher.statistics()
    sqs_calls = [s.operation for s in proxy.seen if s.target == sqs and s.operation]
    assert sqs_calls.count("ReceiveMessage") == w.sqs_receive_calls > 0
    assert sqs_calls.count("DeleteMessageBatch") == w.sqs_delete_calls > 0
    # Nothing else: no call went to a host the test did not expect (moto serves S3 and SQS on
    # one port; S3's REST calls name no operation in a header).
    assert set(proxy.relay.by_target()) <= {runtime, s3, sqs}


async def test_no_proxy_bypasses_the_proxy(
    endpoint: EndpointInfo, proxy: Front, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with AsyncInvoker(
        endpoint.name, watcher=SqsNotifications(queue_url=endpoint.queue_url)
    ) as invoker:
        await _round_trip(invoker)
    assert proxy.seen == []


async def test_config_proxies_and_user_agent_reach_invokes_and_s3(
    stack_env: LocalStack, quiet_endpoint: EndpointInfo, proxy: Front
) -> None:
    """``Config(proxies=..., user_agent_extra=...)`` alone, no environment: every call of the
    invoker and the S3 watcher goes through the proxy and carries the extra user agent."""
    config = Config(proxies={"http": proxy.url}, user_agent_extra=AGENT)
    watcher = S3Polling(interval=0.05)
    async with AsyncInvoker(quiet_endpoint.name, watcher=watcher, config=config) as invoker:
        await _round_trip(invoker)
    runtime, s3 = _host(stack_env.info.sagemaker_runtime_url), _host(stack_env.info.s3_url)
    assert proxy.count(method="POST", target=runtime) == JOBS
    assert proxy.count(method="GET", target=s3) >= JOBS  # the GETs, and the LISTs
    assert proxy.count(target=s3) == watcher.statistics().aws_calls
    agents = {s.user_agent for s in proxy.seen}
    assert all(AGENT in agent for agent in agents), agents
    assert any(agent.startswith("aiosagemaker/") for agent in agents)


async def test_config_read_timeout_applies_to_invokes() -> None:
    """``Config(read_timeout=...)`` bounds the invoke's wait for an answer (``Timeouts.invoke``
    is 30 s): a front door that never answers fails the call as ambiguous, after that timeout."""
    hang = asyncio.Event()

    async def never_answer(request: web.Request) -> web.Response:
        await hang.wait()
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/{tail:.*}", never_answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with AsyncInvoker(
            "hung",
            endpoint_url=url,
            watcher=None,
            retry=RetryPolicy(max_attempts=1),
            config=Config(read_timeout=0.3),
        ) as invoker:
            # Far above 0.3 s and far below the 30 s the call would otherwise wait.
            async with asyncio.timeout(15):
                with pytest.raises(InvocationError) as caught:
                    await invoker.invoke(b"{}")
    finally:
        hang.set()
        await runner.cleanup()
    assert caught.value.ambiguous
    assert isinstance(caught.value.__cause__, TimeoutError)


async def test_botocore_retries_stay_off_under_a_users_config() -> None:
    """A user's ``Config(retries=...)`` never turns botocore's retries on under ours; their
    ``max_pool_connections`` is theirs to set."""
    aws = AwsContext(
        config=Config(retries={"max_attempts": 10, "mode": "adaptive"}, max_pool_connections=7)
    )
    try:
        client = await aws.client("s3", pool=64, endpoint_url="http://127.0.0.1:9")
        assert client.meta.config.retries["total_max_attempts"] == 1
        assert client.meta.config.retries["mode"] == "standard"
        assert client.meta.config.max_pool_connections == 7
    finally:
        await aws.aclose()


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_bundle(authority: trustme.CA, tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    yield str(path)


@pytest.fixture
async def tls_stack(
    stack_env: LocalStack, server_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Front, Front]]:
    """The local endpoint and moto behind TLS fronts, and the AWS variables pointing at them."""
    info = stack_env.info
    async for runtime in tls_front(info.sagemaker_runtime_url, server_context):
        async for aws in tls_front(info.s3_url, server_context):
            monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", runtime.url)
            monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws.url)
            yield runtime, aws


async def test_tls_endpoint_is_refused_without_the_ca_bundle(
    tls_stack: tuple[Front, Front], quiet_endpoint: EndpointInfo
) -> None:
    runtime, _ = tls_stack
    async with AsyncInvoker(
        quiet_endpoint.name, watcher=None, retry=RetryPolicy(max_attempts=1)
    ) as invoker:
        with pytest.raises(InvocationError) as caught:
            await invoker.invoke(b"{}")
    assert caught.value.code == "ConnectionError"
    assert not caught.value.ambiguous  # the handshake failed: nothing was sent
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert runtime.seen == []


@pytest.mark.parametrize("how", ["AWS_CA_BUNDLE", "verify="])
async def test_tls_round_trip_with_the_ca_bundle(
    tls_stack: tuple[Front, Front],
    quiet_endpoint: EndpointInfo,
    ca_bundle: str,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """Invokes, S3 LISTs and GETs all over TLS, trusted through the bundle alone."""
    runtime, aws = tls_stack
    if how == "AWS_CA_BUNDLE":
        monkeypatch.setenv("AWS_CA_BUNDLE", ca_bundle)
        kwargs = {}
    else:
        kwargs = {"verify": ca_bundle}
    async with AsyncInvoker(
        quiet_endpoint.name,
        watcher=S3Polling(interval=0.05),
        limits=Limits(max_concurrent_invocations=4),
        **kwargs,  # type: ignore[arg-type]
    ) as invoker:
        await _round_trip(invoker)
    assert runtime.count(method="POST") == JOBS
    assert aws.count(method="GET") >= JOBS


async def test_aioconfig_app_id_is_on_the_invoke(
    quiet_endpoint: EndpointInfo, proxy: Front
) -> None:
    """An ``AioConfig`` (aiobotocore's own class) works as a ``Config`` does."""
    config = AioConfig(proxies={"http": proxy.url}, user_agent_appid="my-app")
    async with AsyncInvoker(quiet_endpoint.name, watcher=None, config=config) as invoker:
        await invoker.invoke(b"{}")
    (seen,) = proxy.seen
    assert seen.method == "POST"
    assert "app/my-app" in seen.user_agent
