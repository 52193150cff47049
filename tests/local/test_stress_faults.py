"""The client against the local stack under each fault and two mixes of them: every job resolved
exactly once with the right outcome, duplicates only where the client counted an ambiguous retry
(checked id by id against the endpoint's counts), no task, connection or file leaked.

These tests own their stack: restarts and pauses are stack-wide.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from stress_helpers import Run, fresh_name, run_jobs

from aiosagemaker.local import EndpointInfo, LocalStack, open_local_stack

# 100x fast: the model's sleep:5 is 50 ms, an InvocationTimeoutSeconds of 100 is 1 s.
TIME_SCALE = 0.01
MODEL = "sleep:5"
# InvocationTimeoutSeconds for runs with hangs: 1 s at this time scale.
HANG_TIMEOUT = 100
# Jobs per run: 150 per fault, 300 per mix in the suite (each fault fires tens of times);
# thousands per mix under the scale marker (make test-scale).
JOBS = 150
MIX_JOBS = 300
SCALE_MIX_JOBS = 5000


@pytest.fixture(scope="module")
def stress_stack() -> Iterator[LocalStack]:
    with open_local_stack(
        model=MODEL, instances=2, max_concurrency=8, time_scale=TIME_SCALE, endpoints=("warm",)
    ) as stack:
        yield stack


@pytest.fixture
async def stressed(
    stress_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[LocalStack, EndpointInfo]]:
    for name, value in stress_stack.env().items():
        monkeypatch.setenv(name, value)
    info = await stress_stack.create_endpoint(fresh_name("s"))
    yield stress_stack, info
    await stress_stack.delete_endpoint(info.name)


def injected(run: Run, kind: str) -> int:
    return int(run.server["global"]["faults_injected"].get(kind, 0))


async def wait_accepted(stack: LocalStack, endpoint: EndpointInfo, at_least: int) -> None:
    while int((await stack.stats(endpoint.name))["accepted"]) < at_least:
        await asyncio.sleep(0.02)


# --- one fault at a time ------------------------------------------------------------------------


async def test_endpoint_restart_mid_run_keeps_every_accepted_request(
    stressed: tuple[LocalStack, EndpointInfo],
) -> None:
    stack, endpoint = stressed

    async def restart_twice() -> None:
        for at in (JOBS // 4, JOBS * 2 // 3):
            await wait_accepted(stack, endpoint, at)
            await stack.restart(0.3)

    run = await run_jobs(stack, endpoint, JOBS, during=restart_twice)
    run.check()
    assert injected(run, "endpoint_restart") == 2
    # Workers were stopped mid-run and their requests ran again: none was lost.
    assert run.server["reruns"] > 0
    assert run.server["accepted"] == JOBS + run.duplicates


async def test_moto_paused_mid_run(stressed: tuple[LocalStack, EndpointInfo]) -> None:
    stack, endpoint = stressed

    async def pause() -> None:
        await wait_accepted(stack, endpoint, JOBS // 4)
        await stack.pause_aws(1.5)

    run = await run_jobs(stack, endpoint, JOBS, during=pause)
    run.check()
    assert injected(run, "aws_pause") == 1
    assert run.duplicates == 0 and run.client.ambiguous_retries == 0


async def test_notifications_reordered(stressed: tuple[LocalStack, EndpointInfo]) -> None:
    stack, endpoint = stressed
    faults = {"seed": 11, "notification_reorder": {"rate": 0.5, "seconds": 0.5}}
    run = await run_jobs(stack, endpoint, JOBS, faults=faults)
    run.check()
    assert JOBS * 0.3 < injected(run, "notification_reorder") < JOBS * 0.7


async def test_outputs_appear_late(stressed: tuple[LocalStack, EndpointInfo]) -> None:
    stack, endpoint = stressed
    # 1.0 s late: longer than most notifications take to reach the watcher, even on a loaded
    # machine (0.3 s was not, with two test processes on two cores), so their first GET misses;
    # and within the watcher's re-reads of a missing output (0.2 + 0.4 + 0.8 s after the first
    # GET), however fast the notification came (1.5 s was not, once it came within 0.1 s).
    faults = {"seed": 12, "output_late": {"rate": 0.3, "seconds": 1.0}}
    run = await run_jobs(stack, endpoint, JOBS, faults=faults)
    run.check()
    late = injected(run, "output_late")
    assert late > JOBS * 0.15
    # Late outputs were not there at the notification's first GET: read again, not failed.
    assert run.watcher.s3_get_calls > JOBS


async def test_model_failures_and_hangs_fail_their_jobs_only(
    stressed: tuple[LocalStack, EndpointInfo],
) -> None:
    stack, endpoint = stressed
    faults = {"seed": 13, "model_error": 0.05, "model_hang": 0.03}
    run = await run_jobs(stack, endpoint, JOBS, faults=faults, invocation_timeout=HANG_TIMEOUT)
    run.check()  # the failed jobs are exactly the faulted ids, each with its reason
    kinds = list(run.server["model_faults_by_id"].values())
    assert kinds.count("model_error") == injected(run, "model_error") > 0
    assert kinds.count("model_hang") == injected(run, "model_hang") > 0
    assert len(run.failed_ids) == len(kinds)


async def test_transient_s3_get_failures(stressed: tuple[LocalStack, EndpointInfo]) -> None:
    stack, endpoint = stressed
    faults = {"seed": 15, "s3_get_error": 0.15, "s3_get_reset": 0.05}
    run = await run_jobs(stack, endpoint, JOBS, faults=faults)
    run.check()
    errors, resets = injected(run, "s3_get_error"), injected(run, "s3_get_reset")
    # Each failed GET was retried by the watcher (up to 8 times for a transient error: at one
    # GET in five failing, 4 tries lost about one job in 600), and none became a job's error:
    # check() found every result right.
    assert errors > 0 and resets > 0


async def test_accepted_then_reset_duplicates_are_exactly_the_counted_ambiguous_retries(
    stressed: tuple[LocalStack, EndpointInfo],
) -> None:
    stack, endpoint = stressed
    run = await run_jobs(stack, endpoint, JOBS, faults={"seed": 14, "accept_then_reset": 0.1})
    run.check()
    # Each reset came after the enqueue: every ambiguous retry ran the request twice.
    assert run.duplicates == run.client.ambiguous_retries == injected(run, "accept_then_reset") > 0


# --- mixes --------------------------------------------------------------------------------------


MIX_SIZES = [
    pytest.param(MIX_JOBS, id="suite"),
    pytest.param(SCALE_MIX_JOBS, id="scale", marks=[pytest.mark.scale, pytest.mark.timeout(1200)]),
]


@pytest.mark.parametrize("count", MIX_SIZES)
async def test_mix_of_request_and_notification_faults(
    stressed: tuple[LocalStack, EndpointInfo], count: int
) -> None:
    stack, endpoint = stressed
    faults = {
        "seed": 21,
        "throttle": 0.05,
        "internal_error": 0.02,
        "unavailable": 0.02,
        "reset": 0.03,
        "accept_then_reset": 0.03,
        "model_error": 0.03,
        "output_late": {"rate": 0.1, "seconds": 0.3},
        "notification_drop": 0.02,
        "notification_duplicate": 0.05,
        "notification_reorder": {"rate": 0.2, "seconds": 0.5},
    }
    run = await run_jobs(stack, endpoint, count, faults=faults)
    run.check()
    for kind in ("throttle", "reset", "accept_then_reset", "model_error", "output_late"):
        assert injected(run, kind) > 0, kind
    assert run.duplicates >= injected(run, "accept_then_reset")


@pytest.mark.parametrize("count", MIX_SIZES)
async def test_mix_with_restarts_and_pauses(
    stressed: tuple[LocalStack, EndpointInfo], count: int
) -> None:
    stack, endpoint = stressed
    faults = {
        "seed": 22,
        "endpoint_restart": {"every": 2.5, "seconds": 0.3},
        "aws_pause": {"every": 3.5, "seconds": 0.8},
        "model_hang": 0.03,
        "notification_delay": {"rate": 0.1, "seconds": 0.5},
        "unavailable": 0.03,
    }
    run = await run_jobs(stack, endpoint, count, faults=faults, invocation_timeout=HANG_TIMEOUT)
    run.check()
    assert injected(run, "endpoint_restart") >= 1
    assert injected(run, "aws_pause") >= 1
    assert injected(run, "model_hang") > 0
