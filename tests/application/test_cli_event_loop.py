"""The commands run on uvloop when it is installed (the application's choice, not the library's),
and on asyncio's own loop when ``AIOSAGEMAKER_EVENT_LOOP=asyncio`` says so."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from aiosagemaker.cli._common import run_async


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_commands_run_on_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIOSAGEMAKER_EVENT_LOOP", raising=False)
    assert run_async(_loop_type()) is uvloop.Loop


def test_asyncio_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOSAGEMAKER_EVENT_LOOP", "asyncio")
    assert not issubclass(run_async(_loop_type()), uvloop.Loop)
