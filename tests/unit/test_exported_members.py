"""The public surface: everything in __all__ is exported, and nothing public is left out of it."""

from __future__ import annotations

import aiosagemaker


def test_all_matches_public_attributes() -> None:
    exported = {name for name in dir(aiosagemaker) if not name.startswith("_")}
    exported.add("__version__")
    # Subpackages imported as a side effect are not part of the API surface.
    exported -= {"local", "annotations"}
    assert set(aiosagemaker.__all__) == exported
