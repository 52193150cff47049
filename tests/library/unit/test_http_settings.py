"""``HttpSettings.resolve``: the user's HTTP settings read from the sources botocore reads, in its
order; the sessions built from them are exercised over loopback in
``tests/library/invoker/test_invoker_http_settings.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.config import Config

from aiosagemaker._http import HttpSettings


@pytest.fixture(autouse=True)
def no_ca_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_botocores() -> None:
    settings = HttpSettings.resolve(get_session(), None, None)
    assert settings.verify is True
    assert settings.proxies is None
    assert settings.connect_timeout is None and settings.read_timeout is None
    assert settings.user_agent("aiosagemaker/1") == "aiosagemaker/1"


def test_verify_order_argument_then_ca_bundle_then_requests_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/requests.pem")
    assert HttpSettings.resolve(get_session(), None, None).verify == "/requests.pem"
    monkeypatch.setenv("AWS_CA_BUNDLE", "/aws.pem")
    assert HttpSettings.resolve(get_session(), None, None).verify == "/aws.pem"
    assert HttpSettings.resolve(get_session(), None, False).verify is False
    assert HttpSettings.resolve(get_session(), None, "/given.pem").verify == "/given.pem"


def test_ca_bundle_from_the_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("[profile tls]\nca_bundle = /profile.pem\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    session = get_session()
    session.set_config_variable("profile", "tls")
    assert HttpSettings.resolve(session, None, None).verify == "/profile.pem"


async def test_only_what_the_user_set_in_config_applies() -> None:
    # Config() carries botocore's 60 s defaults: they must not replace our Timeouts.
    assert HttpSettings.resolve(get_session(), Config(), None).connect_timeout is None
    settings = HttpSettings.resolve(
        get_session(),
        AioConfig(
            connect_timeout=2,
            read_timeout=7,
            user_agent_extra="acme/2",
            user_agent_appid="shop",
            proxies={"https": "proxy.internal:3128"},
            connector_args={"ttl_dns_cache": 30},
        ),
        None,
    )
    assert (settings.connect_timeout, settings.read_timeout) == (2, 7)
    assert settings.user_agent("aiosagemaker/1") == "aiosagemaker/1 acme/2 app/shop"
    # botocore's scheme fix-up of a proxy without one.
    assert settings.proxy_for("https://runtime.sagemaker.eu-west-1.amazonaws.com/x") == (
        "http://proxy.internal:3128"
    )
    assert settings.proxy_for("http://127.0.0.1:8080/x") is None
    session = await settings.session(limit=4, proxy=None, total=30, connect=5, read=60)
    try:
        timeout = session.timeout
        assert (timeout.total, timeout.sock_connect, timeout.sock_read) == (30, 2, 7)
        assert session.headers["User-Agent"].endswith(" acme/2 app/shop")
    finally:
        await session.close()
    # Without the user's timeouts, ours.
    session = await HttpSettings().session(limit=4, proxy=None, total=30, connect=5, read=60)
    try:
        timeout = session.timeout
        assert (timeout.total, timeout.sock_connect, timeout.sock_read) == (30, 5, 60)
    finally:
        await session.close()


def test_environment_proxies_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://corp:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    settings = HttpSettings.resolve(get_session(), None, None)
    assert settings.proxy_for("https://runtime.sagemaker.us-east-1.amazonaws.com/") == (
        "http://corp:3128"
    )
    assert settings.proxy_for("https://s3.internal.example/") is None
