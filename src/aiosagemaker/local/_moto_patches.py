"""Patches to moto's server, applied only in the local stack's own moto process: a race fixed,
and targeted speed-ups.

**The race.** moto's threaded server answers each request in its own thread, and moto 5.2's SQS
keeps a queue's state in plain containers mutated by every operation without a lock:
``Queue._messages`` (a list), ``Queue._pending_messages`` (the set of messages received and not
yet deleted or visible again) and ``Queue.deleted_messages``. Under concurrent requests:

* ``receive_message`` iterates ``_pending_messages`` (``pending_message_groups``, at its start and
  again when it finds a message visible again) while another receive adds to it and a delete or a
  change of visibility discards from it: ``RuntimeError: Set changed size during iteration``, an
  HTTP 500 (2,000 jobs through ``SqsNotifications`` hit it repeatedly);
* ``receive_message`` and ``change_message_visibility`` test ``message in pending_messages`` and
  then ``remove`` it: two at once, and the second raises ``KeyError`` (another 500);
* two receives both find the same message visible and both deliver it (a duplicate, each with its
  own receipt handle);
* ``Queue.delete_message`` rebuilds ``_messages`` from a copy and assigns it back: a message sent
  in between is lost, and of two deletes at once one is undone (the message comes back);
* ``purge_queue`` and a receive's move to a dead-letter queue also replace or edit the list.

The fix serialises SQS: one re-entrant lock (:data:`SQS_LOCK`) is held by every public method of
``SQSBackend`` but the two lookups of a queue by name (SNS delivers to SQS through
``send_message``, so through the lock too), and every queue's ``_messages_lock`` -- the condition
a long poll waits on and a send notifies -- is built on that same lock. So a long poll holds the
lock only for each non-blocking pass over the queue: ``Condition.wait`` releases the lock (all its
re-entrant levels) for the wait, and takes it back for the next pass; a send, to any queue, never
stalls behind a 20 s ``WaitTimeSeconds``. No wakeup is lost: the pass and the start of the wait
are under the lock without a gap, and a send notifies under it. ``wait_for_messages`` now always
waits (up to its 1 s) instead of returning at once while visible messages exist: when a pass found
visible messages and could take none (a FIFO group in flight), moto would spin until the poll
ends, which under the lock would starve every other SQS call; the next pass now comes on a send's
notification or a second later, as it already did for messages turning visible by timeout.
Otherwise SQS behaves as before, one call at a time; moto's work is pure Python, so the GIL
serialised most of it already (a 2,000-job run through ``SqsNotifications`` takes as long).

SNS has a smaller one: ``publish`` finds a topic's subscriptions by iterating the backend's
``subscriptions`` dict, which a subscribe or unsubscribe (an endpoint created or deleted) changes
from another thread: ``dictionary changed size during iteration``. The patched lookup iterates a
copy (``list(dict.values())`` copies under the GIL, in one step).

**The speed-ups.** moto 5.2's SQS ``Queue.attributes`` recomputes every queue attribute, counting
the queue's messages with several clock reads each, and it is read on hot paths for a single
value: by ``send_message`` (so by every SNS-to-SQS delivery) for ``ContentBasedDeduplication``,
and by ``receive_message`` once *per message received* for ``MessageRetentionPeriod``. A send or
receive so costs O(queue depth): milliseconds at a few hundred messages, seconds at a few
thousand. The patch makes ``attributes`` a mapping that computes each value only when it is read
(under the lock), exactly as the original does for that key (same keys, same values), so a lookup
of one attribute costs that attribute alone.

moto's server also lists its own package directory (``os.listdir`` plus an ``isdir`` per entry) on
every request to route it; the list never changes while it runs, so it is read once.
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["SQS_LOCK", "TESTED_MOTO", "apply", "check_moto_version", "locked_sqs_methods"]

#: The moto releases these patches were written and tested for (major.minor); the ``[local]``
#: extra pins the same range. Another release may have moved the code they replace.
TESTED_MOTO = ((5, 2),)

#: held by every SQS backend call, and released only by a long poll's wait (see above)
SQS_LOCK = threading.RLock()


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
        with SQS_LOCK:  # read outside the backend too, by the response of GetQueueAttributes
            return self._get(name)

    def _get(self, name: str) -> Any:
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


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` under :data:`SQS_LOCK`; a generator's items are taken under it, then yielded."""
    wrapper: Callable[..., Any]
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with SQS_LOCK:
                items = list(method(*args, **kwargs))
            yield from items

    else:

        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with SQS_LOCK:
                return method(*args, **kwargs)

    wrapper.sqs_locked = True  # type: ignore[attr-defined]
    return wrapper


def _queue_init(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        # The condition a long poll waits on, on the lock of every SQS call: waiting releases it.
        self._messages_lock = threading.Condition(SQS_LOCK)

    __init__.sqs_locked = True  # type: ignore[attr-defined]
    return __init__


def _wait_for_messages(self: Any, timeout: int) -> None:
    # Release the lock for up to ``timeout`` even when visible messages exist (see above).
    with self._messages_lock:
        self._messages_lock.wait(timeout)


# One dict lookup each, atomic under the GIL; and moto calls ``get_queue`` for every SQS request
# (to name the resource for IAM) before the operation itself: locking it would only double the
# acquisitions, and the waits.
_UNLOCKED = frozenset({"get_queue", "get_queue_url"})


def locked_sqs_methods() -> list[str]:
    """The names of the ``SQSBackend`` methods run under :data:`SQS_LOCK`: all its public ones
    but the two lookups of a queue by name."""
    from moto.sqs.models import SQSBackend

    return [
        name
        for name, value in vars(SQSBackend).items()
        if not name.startswith("_") and name not in _UNLOCKED and inspect.isfunction(value)
    ]


def _apply_sqs_lock() -> None:
    from moto.sqs.models import Queue, SQSBackend

    for name in locked_sqs_methods():
        method = vars(SQSBackend)[name]
        if not getattr(method, "sqs_locked", False):
            setattr(SQSBackend, name, _locked(method))
    if not getattr(Queue.__init__, "sqs_locked", False):
        Queue.__init__ = _queue_init(Queue.__init__)  # type: ignore[method-assign]
    Queue.wait_for_messages = _wait_for_messages  # type: ignore[method-assign]


def _topic_subscriptions(backend: Any, topic: Any) -> list[Any]:
    """``SNSBackend._get_topic_subscriptions`` over a copy of the subscriptions."""
    return [sub for sub in list(backend.subscriptions.values()) if sub.topic == topic]


def _apply_sns_snapshot() -> None:
    from moto.sns.models import SNSBackend

    SNSBackend._get_topic_subscriptions = _topic_subscriptions  # type: ignore[method-assign,assignment]


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
    """Serialise moto's SQS, patch its ``Queue.attributes`` and its module list (once per process).

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

    _apply_sqs_lock()
    _apply_sns_snapshot()
