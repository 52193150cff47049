"""Targeted speed-ups of moto's server, applied only in the local stack's own moto process.

moto 5.2's SQS ``Queue.attributes`` recomputes every queue attribute, counting the queue's
messages with several clock reads each, and it is read on hot paths for a single value: by
``send_message`` (so by every SNS-to-SQS delivery) for ``ContentBasedDeduplication``, and by
``receive_message`` once *per message received* for ``MessageRetentionPeriod``. A send or receive
so costs O(queue depth): milliseconds at a few hundred messages, seconds at a few thousand.

The patch makes ``attributes`` a mapping that computes each value only when it is read, exactly
as the original does for that key (same keys, same values), so a lookup of one attribute costs
that attribute alone.

moto's server also lists its own package directory (``os.listdir`` plus an ``isdir`` per entry) on
every request to route it; the list never changes while it runs, so it is read once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["TESTED_MOTO", "apply", "check_moto_version"]

#: The moto releases these patches were written and tested for (major.minor); the ``[local]``
#: extra pins the same range. Another release may have moved the code they replace.
TESTED_MOTO = ((5, 2),)


class _LazyAttributes(Mapping[str, Any]):
    """``Queue.attributes`` with each value computed on demand."""

    __slots__ = ("_names", "_queue")

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        names = list(queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            names += queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:
            names += queue.KMS_ATTRIBUTES
        if queue.policy:
            names.append("Policy")
        if queue.redrive_policy:
            names.append("RedrivePolicy")
        self._names = dict.fromkeys(names)

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        queue = self._queue
        # As the original: the two policies, when set, override what the attribute loop found.
        if name == "Policy" and queue.policy:
            return queue.policy
        if name == "RedrivePolicy" and queue.redrive_policy:
            return json.dumps(queue.redrive_policy)
        from moto.core.utils import camelcase_to_underscores

        value = getattr(queue, camelcase_to_underscores(name))
        return str(value).lower() if isinstance(value, bool) else value

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class _LazyProperty(property):
    def __init__(self, original: property) -> None:
        super().__init__(_LazyAttributes, original.fset)
        #: moto's own property, kept so the two can be compared
        self.original = original


def check_moto_version(version: str) -> None:
    """Refuse a moto release the patches were not written for, loudly, before patching anything.

    :raises RuntimeError: ``version`` is not one of :data:`TESTED_MOTO`.
    """
    parts = version.split(".")
    try:
        release = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        release = (-1, -1)
    if release not in TESTED_MOTO:
        tested = ", ".join(f"{major}.{minor}.x" for major, minor in TESTED_MOTO)
        raise RuntimeError(
            f"the local stack's moto patches were written for moto {tested}, and moto {version} "
            "is installed: install the [local] extra's pinned range (pip install "
            "'aiosagemaker[local]'), or update local/_moto_patches.py for it"
        )


def apply() -> None:
    """Patch moto's SQS ``Queue.attributes`` and its module list (once per process).

    :raises RuntimeError: the installed moto is not a release the patches were written for.
    """
    import moto
    from moto import backends
    from moto.sqs.models import Queue

    check_moto_version(moto.__version__)

    if not hasattr(backends.list_of_moto_modules, "cache_info"):
        modules = tuple(backends.list_of_moto_modules())
        backends.list_of_moto_modules = functools.cache(lambda: modules)

    original = Queue.__dict__["attributes"]
    if not isinstance(original, _LazyProperty):
        Queue.attributes = _LazyProperty(original)  # type: ignore[method-assign,assignment]
