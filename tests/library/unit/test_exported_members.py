"""The public surface: everything in __all__ is exported, and nothing public is left out of it."""

from __future__ import annotations

import types

import aiosagemaker


def test_all_matches_public_attributes() -> None:
    # Subpackages (the application, the local stack) imported as a side effect are not part of
    # the client library's surface.
    exported = {
        name
        for name in dir(aiosagemaker)
        if not name.startswith("_")
        and not isinstance(getattr(aiosagemaker, name), types.ModuleType)
    }
    exported.add("__version__")
    exported -= {"annotations"}
    assert set(aiosagemaker.__all__) == exported
