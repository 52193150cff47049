"""A Ray cluster for the ``aiosagemaker.ray`` tests: started on loopback by the tests themselves,
with the local stack's environment in its workers."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator

import pytest

from aiosagemaker.local import LocalStack


def start_ray(stack: LocalStack, *, num_cpus: int = 4) -> Iterator[str]:
    """Start a Ray cluster on 127.0.0.1 (a head node, no dashboard); yield its GCS address.

    The workers inherit the local stack's ``AWS_*`` variables (endpoints and its test
    credentials), as the nodes of a real cluster would have theirs, so that a driver in another
    process (``aiosagemaker batch --ray --ray-address``) reaches the stack too.
    """
    import ray

    with pytest.MonkeyPatch.context() as patch:
        for name, value in stack.env().items():
            patch.setenv(name, value)
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def kill(pid: int) -> None:
    """Kill a process as a machine failure would (no clean-up in it)."""
    os.kill(pid, signal.SIGKILL)
