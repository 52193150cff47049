"""Frozen, validated configuration objects with documented defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Wire facts, kept with the request field rules of the protocol core (which the local stack shares)
# and re-exported here under their old names. A job's deadline is the sum of the two clocks unless
# set per request.
from ._core._request import (
    DEFAULT_INVOCATION_TIMEOUT_SECONDS as DEFAULT_INVOCATION_TIMEOUT_SECONDS,
)
from ._core._request import DEFAULT_REQUEST_TTL_SECONDS as DEFAULT_REQUEST_TTL_SECONDS
from ._core._request import MAX_INLINE_BODY_BYTES as MAX_INLINE_BODY_BYTES

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_RESULT_GRACE",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_TIMEOUTS",
    "MAX_INLINE_BODY_BYTES",
    "Limits",
    "RetryPolicy",
    "Timeouts",
]

#: Seconds past a job's request TTL plus invocation timeout before it is given up (the invoker's
#: ``result_grace``): a failure object lands shortly after the invocation timeout fires.
DEFAULT_RESULT_GRACE = 60.0


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """How much the invoker may have under way at once.

    :param max_concurrent_invocations: HTTP calls to ``InvokeEndpointAsync`` in flight; the
        connection pool is sized to match. A slot is released when the call returns.
    :param max_pending: jobs submitted and not yet resolved (bounds memory and the endpoint's
        queue). A slot is released when the job's result (or failure) is known.
    :param admission_timeout: how long ``submit`` waits for room; ``None`` waits indefinitely.
    :param adaptive: adapt the in-flight limit to throttling (AIMD: halve on a throttle, grow by
        one per window of successes, never above ``max_concurrent_invocations``). Load tests turn
        it off to hold the configured concurrency.
    """

    # 256 calls in flight keep a few endpoints' front doors busy from one core without
    # piling up unread sockets; AWS's account-level invoke TPS is the real ceiling.
    max_concurrent_invocations: int = 256
    # 10,000 pending jobs bound the client's memory to a few MB of records.
    max_pending: int = 10_000
    admission_timeout: float | None = None
    # On by default: backing off under throttling is what AWS asks of clients.
    adaptive: bool = True

    def __post_init__(self) -> None:
        _require(self.max_concurrent_invocations >= 1, "max_concurrent_invocations must be >= 1")
        _require(self.max_pending >= 1, "max_pending must be >= 1")
        _require(
            self.admission_timeout is None or self.admission_timeout >= 0,
            "admission_timeout must be >= 0 or None",
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeouts:
    """Network timeouts, in seconds.

    :param connect: opening a connection to the runtime endpoint.
    :param invoke: one ``InvokeEndpointAsync`` HTTP call, from send to the 202 answer.
    """

    # A loopback or in-region connect takes milliseconds; 5 s means the network is unwell.
    connect: float = 5.0
    # The accept path is an enqueue; 30 s leaves room for a saturated front door.
    invoke: float = 30.0

    def __post_init__(self) -> None:
        _require(self.connect > 0 and math.isfinite(self.connect), "connect must be > 0")
        _require(self.invoke > 0 and math.isfinite(self.invoke), "invoke must be > 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Retries of ``InvokeEndpointAsync`` with capped, jittered exponential backoff.

    Throttling, ``ServiceUnavailable``, ``InternalFailure`` and connection errors that happen before
    the request was sent are retried. Failures after the request may have reached the endpoint
    (a reset while waiting for the answer, a read timeout) are *ambiguous*: AWS does not deduplicate
    by inference id, so retrying them can run the inference twice. They are retried only when
    ``retry_ambiguous`` is true, and counted either way.

    :param max_attempts: attempts in all, the first included.
    :param base_delay: the first backoff; each further one doubles, up to ``max_delay``.
    :param jitter: "full" draws each delay uniformly from [0, backoff] (AWS's recommendation).
    """

    # Five attempts ride out a burst of throttling of a few seconds with the default delays.
    max_attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 5.0
    retry_ambiguous: bool = True

    def __post_init__(self) -> None:
        _require(self.max_attempts >= 1, "max_attempts must be >= 1")
        _require(self.base_delay >= 0, "base_delay must be >= 0")
        _require(self.max_delay >= self.base_delay, "max_delay must be >= base_delay")

    def backoff(self, attempt: int, rand: float) -> float:
        """The delay before retry number ``attempt`` (1-based), given ``rand`` in [0, 1)."""
        ceiling: float = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling * rand


DEFAULT_LIMITS = Limits()
DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_RETRY_POLICY = RetryPolicy()
