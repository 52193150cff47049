from __future__ import annotations

from collections.abc import Iterator

import pytest

from aiosagemaker.local import LocalStack


@pytest.fixture
def stack_env(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    """Point every AWS client made in the test at the local stack through the standard variables."""
    for name, value in local_stack.env().items():
        monkeypatch.setenv(name, value)
    yield local_stack
