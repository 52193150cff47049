"""How the limits of one job add up on Ray: each actor has its own invoker and its own limits."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiosagemaker import Limits

__all__ = ["split_limits"]


def split_limits(limits: Limits, actors: int) -> Limits:
    """The limits of one actor, so that ``actors`` actors together stay within ``limits``.

    Every actor of a Ray Data actor pool is built with the same arguments, so each gets an equal
    share, rounded down (at least 1; the other settings as they are): ``actors * max_concurrent_invocations`` never exceeds the
    total asked for (unless the total is below the number of actors).

    .. code-block:: python

        per_actor = split_limits(Limits(max_concurrent_invocations=512), 4)
        per_actor.max_concurrent_invocations  # 128

    :param limits: the limits of the whole job.
    :param actors: how many actors share them.
    :raises ValueError: ``actors`` below 1.

    .. versionadded:: 0.1
    """
    if actors < 1:
        raise ValueError(f"actors must be at least 1, not {actors!r}")
    return dataclasses.replace(
        limits,
        max_concurrent_invocations=max(1, limits.max_concurrent_invocations // actors),
        max_pending=max(1, limits.max_pending // actors),
    )
