"""The local stack's control routes are not open to every local user or web page (#11).

Every ``/_local/*`` route needs the run's random token; no request is answered for a Host that is
not a loopback name (DNS rebinding); code-running models (``module:function``) are created only
when the command line allowed them.
"""

from __future__ import annotations

import aiohttp
import pytest

from aiosagemaker.local import LocalStack


async def _request(
    stack: LocalStack,
    method: str,
    path: str,
    *,
    token: str | None,
    host: str | None = None,
    json: object = None,
) -> tuple[int, str]:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if host is not None:
        headers["Host"] = host
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, f"{stack.info.control_url}{path}", headers=headers, json=json
        ) as response,
    ):
        return response.status, await response.text()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_local/stats"),
        ("GET", "/_local/info"),
        ("POST", "/_local/reset"),
        ("POST", "/_local/faults"),
        ("GET", "/_local/endpoints"),
        ("POST", "/_local/endpoints"),
        ("DELETE", "/_local/endpoints/local-endpoint"),
    ],
)
async def test_control_routes_need_the_token(
    local_stack: LocalStack, method: str, path: str
) -> None:
    before = await local_stack.endpoints()
    for token in (None, "wrong-token", local_stack.info.control_token[:-1]):
        status, text = await _request(local_stack, method, path, token=token)
        assert status == 401, (token, status, text)
        assert "control_token" in text
    assert await local_stack.endpoints() == before  # nothing was changed by the refused calls


async def test_the_token_opens_them(local_stack: LocalStack) -> None:
    status, _ = await _request(
        local_stack, "GET", "/_local/stats", token=local_stack.info.control_token
    )
    assert status == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example"])
async def test_requests_for_a_foreign_host_name_are_refused(
    local_stack: LocalStack, host: str
) -> None:
    token = local_stack.info.control_token
    status, text = await _request(local_stack, "GET", "/_local/stats", token=token, host=host)
    assert status == 403 and "loopback" in text
    # The runtime route too: a rebinding page cannot invoke either.
    status, _ = await _request(
        local_stack, "POST", "/endpoints/local-endpoint/async-invocations", token=None, host=host
    )
    assert status == 403


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
async def test_loopback_host_names_are_answered(local_stack: LocalStack, host: str) -> None:
    port = local_stack.info.control_url.rsplit(":", 1)[1]
    token = local_stack.info.control_token
    status, _ = await _request(
        local_stack, "GET", "/_local/stats", token=token, host=f"{host}:{port}"
    )
    assert status == 200


async def test_code_models_only_from_the_command_line(local_stack: LocalStack) -> None:
    token = local_stack.info.control_token
    before = await local_stack.endpoints()
    for model in ("builtins:exec", "os:system", "stack_models:not_allowed"):
        status, text = await _request(
            local_stack, "POST", "/_local/endpoints", token=token, json={"model": model}
        )
        assert status == 403, (model, status, text)
        assert "--allow-model" in text
    assert await local_stack.endpoints() == before  # none was created
    # Built-ins and the model the command line allowed (tests/conftest.py) are fine.
    for model in ("echo", "sleep:0", "failing", "stack_models:upper"):
        endpoint = await local_stack.create_endpoint(model=model, notifications=False)
        await local_stack.delete_endpoint(endpoint.name)
