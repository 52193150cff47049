"""Ray is an optional extra: the one place that imports it, and the message when it is missing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiosagemaker.batch import BatchUsageError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["INSTALL_HINT", "RayUnavailableError", "require_ray"]

INSTALL_HINT = "pip install 'aiosagemaker[ray]'"


class RayUnavailableError(BatchUsageError):
    """Ray (``ray[data]``) is not installed: the message says how to install the extra.

    .. versionadded:: 0.1
    """


def require_ray() -> ModuleType:
    """Import Ray and return it.

    :raises RayUnavailableError: Ray Data cannot be imported.

    .. versionadded:: 0.1
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayUnavailableError(
            f"running a batch job on Ray needs Ray Data, which is not installed ({exc}): "
            f"{INSTALL_HINT}"
        ) from None
    return ray
