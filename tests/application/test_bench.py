"""``aiosagemaker bench``: the schedule, latency from each request's due time (no coordinated
omission), thresholds as exit statuses, histograms that merge, and the report's fields.

The runs are the command in a child process, against a loopback endpoint that can stall all its
answers for 2 s once, and against the local stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from app_helpers import cli, cli_process

from aiosagemaker.bench import (
    Latency,
    Stage,
    arrival_times,
    parse_duration,
    parse_stages,
    parse_threshold,
)

# --- the schedule ------------------------------------------------------------------------------


def test_a_constant_rate_is_due_every_1_over_r() -> None:
    times = list(arrival_times([Stage(2.0, 50.0)], start_rate=50.0))
    assert len(times) == 100
    assert times == pytest.approx([i / 50 for i in range(100)])


def test_a_ramp_is_due_where_the_expected_count_reaches_each_request() -> None:
    # 0 -> 100/s over 10 s: N(t) = 5 t^2, 500 requests, request k due at sqrt(k / 5).
    times = list(arrival_times([Stage(10.0, 100.0)]))
    assert len(times) == 500
    assert times[:4] == pytest.approx([0.0, (1 / 5) ** 0.5, (2 / 5) ** 0.5, (3 / 5) ** 0.5])
    assert times[499] == pytest.approx((499 / 5) ** 0.5)
    # Then up to 300/s over 5 s (1,000 more) and down to 0 over 5 s (750 more).
    staged = list(arrival_times(parse_stages("10s:100,5s:300,5s:0")))
    assert len(staged) == 500 + 1000 + 750
    assert staged == sorted(staged) and staged[-1] <= 20.0
    # The rate in each second is the schedule's (the middle of the up ramp: 200/s).
    assert sum(1 for t in staged if 12.0 <= t < 13.0) == pytest.approx(200, abs=2)


def test_stage_and_duration_syntax() -> None:
    assert parse_duration("500ms") == 0.5 and parse_duration("2m") == 120.0
    assert parse_stages("30s:100,1m:0") == [Stage(30.0, 100.0), Stage(60.0, 0.0)]
    for bad in ("30s", "x:100", "30s:-1", "0s:10"):
        with pytest.raises(ValueError):
            parse_stages(bad)


# --- thresholds and histograms -----------------------------------------------------------------


def _report(**overrides: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "target_rate": 100.0,
        "achieved_rate": 97.0,
        "due": 1000,
        "late": 3,
        "dropped": 0,
        "unfinished": 2,
        "errors": {"ThrottlingException": 1},
        "submit_latency_ms": {"p99": 42.0, "max": 80.0},
        "end_to_end_latency_ms": None,
    }
    return {**report, **overrides}


def test_thresholds_hold_or_fail() -> None:
    report = _report()
    verdicts = {t: parse_threshold(t).check(report)["ok"] for t in (
        "submit.p99<50ms", "submit.p99<0.04s", "submit.max<=80", "errors<0.1%", "errors<0.2%",
        "unfinished<1", "achieved_rate>=0.98*target", "achieved_rate>=0.96*target",
        "e2e.p99<1s",
    )}  # fmt: skip
    assert verdicts == {
        "submit.p99<50ms": True,
        "submit.p99<0.04s": False,
        "submit.max<=80": True,
        "errors<0.1%": False,  # 1 of 1,000 is not under 0.1 %
        "errors<0.2%": True,
        "unfinished<1": False,
        "achieved_rate>=0.98*target": False,
        "achieved_rate>=0.96*target": True,
        "e2e.p99<1s": False,  # not measured: a gate that cannot be checked does not pass
    }
    for bad in ("submit.p42<1s", "latency<1s", "errors.p99<1", "achieved_rate>=x*target"):
        with pytest.raises(ValueError):
            parse_threshold(bad)


def test_histograms_merge_exactly_across_processes() -> None:
    rng = random.Random(3)
    samples = [rng.lognormvariate(-3, 1.2) for _ in range(20_000)]
    whole = Latency()
    parts = [Latency(), Latency(), Latency()]
    for i, seconds in enumerate(samples):
        whole.record(seconds)
        parts[i % 3].record(seconds)
    merged = Latency()
    for part in parts:
        merged.merge(Latency.decode(part.encode()))  # as another process would send it
    assert merged.summary() == whole.summary()
    assert merged.count == 20_000


# --- runs against a loopback endpoint that stalls once -----------------------------------------


class StallingEndpoint:
    """Answers ``InvokeEndpointAsync`` at once, except that every request arriving in
    ``[stall_at, stall_at + stall)`` seconds after the first one is held until the stall ends."""

    def __init__(self, stall_at: float, stall: float) -> None:
        self.stall_at, self.stall = stall_at, stall
        self.first: float | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        if self.first is None:
            self.first = now
        start = self.first + self.stall_at
        if start <= now < start + self.stall:
            await asyncio.sleep(start + self.stall - now)
        inference_id = request.headers.get("X-Amzn-SageMaker-Inference-Id", "x")
        return web.json_response(
            {"InferenceId": inference_id},
            status=202,
            headers={
                "X-Amzn-SageMaker-OutputLocation": f"s3://b/out/{inference_id}.out",
                "X-Amzn-SageMaker-FailureLocation": f"s3://b/failures/{inference_id}-error.out",
            },
        )


@contextlib.asynccontextmanager
async def serving(endpoint: StallingEndpoint) -> AsyncIterator[StallingEndpoint]:
    """Serve ``endpoint`` on a loopback port; held answers are dropped at the end."""
    app = web.Application()
    app.router.add_post("/endpoints/{name}/async-invocations", endpoint.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    endpoint.url = f"http://127.0.0.1:{port}"
    try:
        yield endpoint
    finally:
        await runner.cleanup()


@pytest.fixture
async def stalling() -> AsyncIterator[StallingEndpoint]:
    async with serving(StallingEndpoint(stall_at=1.0, stall=2.0)) as endpoint:
        yield endpoint


async def _bench(*args: str, process: bool = False) -> tuple[int, str, str]:
    """The command, in a thread of its own (this loop goes on serving the loopback endpoint), or
    with ``process`` in a child process: where timings must not share this interpreter's lock."""
    # The loopback endpoint takes any credentials; the local stack's win.
    defaults = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env = {name: value for name, value in defaults.items() if name not in os.environ}
    run = cli_process if process else cli
    done = await asyncio.wait_for(asyncio.to_thread(run, "bench", *args, env=env), timeout=120)
    return done.returncode, done.stdout, done.stderr


def _raw(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_a_stall_shows_in_every_request_due_during_it(tmp_path: Path) -> None:
    """100/s for 4 s, at most 5 in flight: the endpoint holds every answer for 2.5 s, from 1 s in.
    The requests due meanwhile cannot even be sent (no slot): timed from their send they would
    look fast; timed from when they were due, they show the wait. (2.5 s: the stall then holds
    more than half the requests, so the median shows it however fast the client catches up.)"""
    report, raw = tmp_path / "report.json", tmp_path / "raw.jsonl"
    async with serving(StallingEndpoint(stall_at=1.0, stall=2.5)) as stalling:
        status, out, err = await _bench(
            "ep", "--endpoint-url", stalling.url, "--rate", "100", "--duration", "4s",
            "--max-in-flight", "5", "--max-lateness", "5s", "--report", str(report),
            "--raw", str(raw), "--quiet", "--threshold", "submit.p99<100ms", process=True,
        )  # fmt: skip
    assert status == 1, err  # the threshold fails: that is the point
    data = orjson.loads(report.read_bytes())
    records = _raw(raw)
    assert len(records) == data["due"] == 400 and data["sent"] == 400
    assert data["dropped"] == 0 and data["errors"] == {}
    first = min(r["intended"] for r in records)
    during = [r for r in records if 1.2 <= r["intended"] - first < 3.3]
    assert len(during) >= 190
    for r in during:
        from_due = r["accepted"] - r["intended"]
        from_send = r["accepted"] - r["sent"]
        assert r["sent"] - r["intended"] > 0.1, "sent on time although no slot was free"
        assert from_due > 0.2 and from_due > from_send
    # The stall is in the percentiles: a client timing from the send would report it for the 5
    # requests it had in flight only (p99 well under the stall).
    assert data["submit_latency_ms"]["p99"] > 1500
    assert data["submit_latency_ms"]["p50"] > 100
    assert data["late"] >= len(during)
    assert "FAIL submit.p99<100ms" in out


async def test_a_starved_client_drops_what_it_cannot_start_in_time(
    stalling: StallingEndpoint, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    status, out, err = await _bench(
        "ep", "--endpoint-url", stalling.url, "--rate", "50", "--duration", "4s",
        "--max-in-flight", "1", "--max-lateness", "0.5s", "--report", str(report), "--quiet",
        "--threshold", "dropped<1", process=True,
    )  # fmt: skip
    assert status == 1, err
    data = orjson.loads(report.read_bytes())
    # 2 s of stall at 50/s: about 100 requests due with no slot, dropped 0.5 s after their time.
    assert 60 <= data["dropped"] <= 110
    assert data["errors"] == {"dropped": data["dropped"]}
    assert data["sent"] + data["dropped"] == data["due"] == 200
    assert data["achieved_rate"] < 0.8 * data["target_rate"]
    assert "FAIL dropped<1" in out


async def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in (
        ("ep", "--rate", "10"),  # no duration
        ("ep", "--rate", "10", "--duration", "1s", "--threshold", "latency<1s"),
        ("ep", "--stages", "10s"),
        ("--rate", "10", "--duration", "1s"),  # no endpoint
    ):
        status, _, err = await _bench(*args)
        assert status == 2, (args, err)


# --- against the local stack -------------------------------------------------------------------


@pytest.mark.usefixtures("stack_env")
async def test_report_fields_with_a_watcher(endpoint: Any, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    status, out, err = await _bench(
        endpoint.name, "--rate", "50", "--duration", "2s", "--watcher", "sqs",
        "--queue-url", endpoint.queue_url, "--report", str(report), "--quiet",
        "--threshold", "errors<1%", "--threshold", "achieved_rate>=0.9*target",
        "--threshold", "e2e.p99<60s",
    )  # fmt: skip
    assert status == 0, err + out
    data = orjson.loads(report.read_bytes())
    for key in (
        "mode", "target_rate", "achieved_rate", "sent", "late", "dropped", "errors",
        "throttled", "unfinished", "submit_latency_ms", "end_to_end_latency_ms",
        "service_time_ms", "notification_lag_ms", "output_fetch_ms", "thresholds", "settings",
    ):  # fmt: skip
        assert key in data, key
    assert data["mode"] == "open" and data["target_rate"] == 50.0
    assert data["sent"] == data["completed"] == 100 and data["unfinished"] == 0
    e2e, submit = data["end_to_end_latency_ms"], data["submit_latency_ms"]
    assert e2e["count"] == submit["count"] == 100
    assert e2e["p50"] >= submit["p50"] and set(e2e) >= {"p50", "p90", "p99", "p999", "max", "mean"}
    assert [v["ok"] for v in data["thresholds"]] == [True, True, True]
    # The service's own times ride in the notifications: queueing + inference + upload.
    service, lag = data["service_time_ms"], data["notification_lag_ms"]
    assert service["count"] == lag["count"] == 100
    assert 0 <= service["p50"] <= e2e["p50"]
    assert data["output_fetch_ms"]["count"] == 100  # each output read from S3 after its notice
    assert data["settings"]["versions"]["aiosagemaker"]
    assert data["settings"]["machine"]["cpus"] >= 1


@pytest.mark.usefixtures("stack_env")
async def test_closed_loop_and_s3_submission(quiet_endpoint: Any, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    bucket = quiet_endpoint.output_path.removeprefix("s3://").split("/", 1)[0]
    status, out, err = await _bench(
        quiet_endpoint.name, "--concurrency", "4", "--requests", "40", "--mode", "s3",
        "--staging", f"s3://{bucket}/bench-in/", "--report", str(report), "--quiet",
    )  # fmt: skip
    assert status == 0, err + out
    data = orjson.loads(report.read_bytes())
    assert data["mode"] == "closed" and data["target_rate"] is None
    assert data["sent"] == data["accepted"] == 40
    assert data["settings"]["submission"] == "s3"
    assert "closed loop: peak throughput" in out


async def test_processes_split_the_load_and_merge_their_histograms(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    async with serving(StallingEndpoint(stall_at=3600.0, stall=0.0)) as calm:
        status, out, err = await _bench(
            "ep", "--endpoint-url", calm.url, "--rate", "100",
            "--duration", "2s", "--processes", "2", "--report", str(report), "--quiet",
        )  # fmt: skip
    assert status == 0, err
    data = orjson.loads(report.read_bytes())
    # Each process sent 50/s for 2 s; the merged histogram holds every one of the 200.
    assert data["due"] == data["sent"] == data["accepted"] == 200
    assert data["submit_latency_ms"]["count"] == 200
    assert data["target_rate"] == 100.0 and data["settings"]["processes"] == 2
    assert "histograms" not in data


@pytest.mark.usefixtures("stack_env")
async def test_mode_both_compares_inline_and_s3_on_the_same_schedule(
    quiet_endpoint: Any, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    bucket = quiet_endpoint.output_path.removeprefix("s3://").split("/", 1)[0]
    status, out, err = await _bench(
        quiet_endpoint.name, "--rate", "20", "--duration", "1s", "--mode", "both",
        "--staging", f"s3://{bucket}/bench-in/", "--watcher", "s3", "--poll-interval", "0.05",
        "--payload-size", "2000", "--report", str(report), "--quiet",
        "--threshold", "errors<1",
    )  # fmt: skip
    assert status == 0, err + out
    data = orjson.loads(report.read_bytes())
    s3 = data["comparison"]["s3"]
    assert data["settings"]["submission"] == "inline" and s3["settings"]["submission"] == "s3"
    assert data["completed"] == s3["completed"] == 20
    ratios = data["comparison"]["ratios"]
    assert set(ratios) == {
        "submit_p50", "submit_p99", "e2e_p50", "e2e_p99", "throughput_inline_over_s3",
    }  # fmt: skip
    assert all(isinstance(v, float) for v in ratios.values())
    assert [v.get("run") for v in data["thresholds"]] == [None, "s3"]
    assert "S3 upload vs inline" in out


async def test_plot_draws_a_png(stalling: StallingEndpoint, tmp_path: Path) -> None:
    plot = tmp_path / "run.png"
    status, _, err = await _bench(
        "ep", "--endpoint-url", stalling.url, "--rate", "50", "--duration", "1s",
        "--plot", str(plot), "--quiet",
    )  # fmt: skip
    assert status == 0, err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert list(tmp_path.iterdir()) == [plot]  # its temporary per-request file is gone


async def test_closed_loop_stops_at_duration_plus_drain_with_a_hung_endpoint(
    tmp_path: Path,
) -> None:
    report = tmp_path / "report.json"
    started = time.monotonic()
    async with serving(StallingEndpoint(stall_at=0.3, stall=60.0)) as hung:
        status, _, err = await _bench(
            "ep", "--endpoint-url", hung.url, "--concurrency", "2",
            "--duration", "1s", "--drain", "0.5s", "--report", str(report), "--quiet",
        )  # fmt: skip
    assert status == 0, err
    assert time.monotonic() - started < 30  # not the 60 s the endpoint holds its answers
    data = orjson.loads(report.read_bytes())
    assert data["mode"] == "closed" and data["unfinished"] == 2
    assert data["sent"] == data["accepted"] + 2
