"""SqsNotifications' calls per result, the lag its batching adds, and what closing leaves behind.

Most tests here run the watcher against a fake SQS queue on a *virtual clock*: an event loop
whose time jumps to the next timer whenever nothing else is ready, so a 2,000-notification run at
150 a second takes a fraction of a second of real time, comes out the same on every machine, and
every lag is measured exactly (no wall-clock timing anywhere). The fake queue serves each
ReceiveMessage as SQS does: after half a round trip it takes up to 10 visible messages, long-polls
until one is there, and answers half a round trip later; a poll the client gives up on is still
served (the messages it takes stay invisible for the visibility timeout), as moto's server does.
The last test checks that on the local stack.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import selectors
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from watcher_helpers import RawClients, completed_notification

from aiosagemaker import InferenceJob, InvokerClosedError, SqsNotifications
from aiosagemaker._aws import AwsContext
from aiosagemaker._watchers._sqs import _Pacing
from aiosagemaker.local import EndpointInfo

OUTPUTS = "s3://outputs-bucket/out"
LINGER = 0.25  # SqsNotifications' default receive_linger
LATENCY = 0.02  # a ReceiveMessage round trip, in the fake queue


# --- a virtual clock ------------------------------------------------------------------------


class _Clock:
    now = 0.0


class _VirtualSelector(selectors.DefaultSelector):
    """Never blocks: when no file descriptor is ready, the clock moves to the next timer."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> Any:
        ready = super().select(0)
        if not ready:
            if timeout is None:
                raise RuntimeError("deadlock: nothing is scheduled, nothing can happen")
            self._clock.now += max(0.0, timeout)
        return ready


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._clock = _Clock()
        super().__init__(_VirtualSelector(self._clock))

    def time(self) -> float:
        return self._clock.now


def run_virtual(main: Coroutine[Any, Any, Any]) -> Any:
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        if leftover:
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.close()


# --- a fake queue -----------------------------------------------------------------------------


@dataclass
class _Message:
    id: str
    body: str
    sent: float
    receipt: str | None = None
    visible_at: float = 0.0


@dataclass
class FakeQueue:
    """One SQS queue, served to any number of watchers."""

    latency: float = LATENCY
    visibility_timeout: float = 30.0
    visible: list[_Message] = field(default_factory=list)
    in_flight: dict[str, _Message] = field(default_factory=dict)  # by receipt handle
    #: (receiver's WaitTimeSeconds, messages returned) of every ReceiveMessage served
    receives: list[tuple[int, int]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)  # entries of each DeleteMessageBatch
    released: int = 0
    _receipts: itertools.count[int] = field(default_factory=itertools.count)
    _waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def send(self, body: str) -> None:
        loop = asyncio.get_running_loop()
        self.visible.append(_Message(str(uuid.uuid4()), body, loop.time()))
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _expire(self, now: float) -> float | None:
        """Messages whose visibility timeout is over are visible again; return the next such
        time."""
        upcoming = None
        for receipt, message in list(self.in_flight.items()):
            if message.visible_at <= now:
                del self.in_flight[receipt]
                self.visible.append(message)
            elif upcoming is None or message.visible_at < upcoming:
                upcoming = message.visible_at
        return upcoming

    async def receive_message(self, **args: Any) -> dict[str, Any]:
        # The server's side is a task of its own: a client that gives up does not stop it.
        serving = asyncio.ensure_future(self._serve_receive(args))
        return await asyncio.shield(serving)

    async def _serve_receive(self, args: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.latency / 2)
        until = loop.time() + args["WaitTimeSeconds"]
        visibility = args.get("VisibilityTimeout", self.visibility_timeout)
        while True:
            upcoming = self._expire(loop.time())
            if self.visible or loop.time() >= until:
                break
            waiter = loop.create_future()
            self._waiters.append(waiter)
            wake_at = until if upcoming is None else min(until, upcoming)
            try:
                async with asyncio.timeout_at(wake_at):
                    await waiter
            except TimeoutError:
                pass
        taken, self.visible = self.visible[:10], self.visible[10:]
        for message in taken:
            message.receipt = f"{message.id}/{next(self._receipts)}"
            message.visible_at = loop.time() + visibility
            self.in_flight[message.receipt] = message
        self.receives.append((args["WaitTimeSeconds"], len(taken)))
        await asyncio.sleep(self.latency / 2)
        return {
            "Messages": [
                {"MessageId": m.id, "ReceiptHandle": m.receipt, "Body": m.body} for m in taken
            ]
        }

    async def delete_message_batch(self, **args: Any) -> dict[str, Any]:
        self.deletes.append(len(args["Entries"]))
        await asyncio.sleep(self.latency)
        for entry in args["Entries"]:
            self.in_flight.pop(entry["ReceiptHandle"], None)
        return {"Successful": [{"Id": e["Id"]} for e in args["Entries"]], "Failed": []}

    async def change_message_visibility_batch(self, **args: Any) -> dict[str, Any]:
        await asyncio.sleep(self.latency)
        now = asyncio.get_running_loop().time()
        for entry in args["Entries"]:
            message = self.in_flight.get(entry["ReceiptHandle"])
            if message is not None:
                message.visible_at = now + entry["VisibilityTimeout"]
                self.released += 1
        self._expire(now)
        self._wake()
        return {"Successful": [{"Id": e["Id"]} for e in args["Entries"]], "Failed": []}

    def deletes_and_receives(self) -> int:
        return len(self.deletes) + len(self.receives)

    async def aclose(self) -> None:
        """As the watcher's own SQS calls close (nothing to release here)."""


class _OnFakeQueue(SqsNotifications):
    """SqsNotifications whose SQS client is the fake queue (the S3 client is real, and unused:
    the jobs are tracked with ``fetch=False`` and the outputs are never looked up)."""

    def __init__(self, queue: FakeQueue, **options: Any) -> None:
        self.fake_queue = queue
        super().__init__(queue_url="https://sqs.us-east-1.amazonaws.com/1/q", **options)

    async def _open_clients(self, aws: AwsContext) -> None:
        # The watcher's calls (receive, delete, hand back) all go to the fake queue.
        self._calls = self.fake_queue  # type: ignore[assignment]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Enough of an AWS environment to make (never use) an S3 client."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


async def open_watcher(queue: FakeQueue, **options: Any) -> tuple[_OnFakeQueue, AwsContext]:
    options = {"fetch": False, "reconcile_after": 3600.0, **options}
    watcher = _OnFakeQueue(queue, **options)
    aws = AwsContext()
    await watcher.open(aws)
    return watcher, aws


def notification(inference_id: str) -> str:
    """SageMaker's success notification (raw delivery) for the job ``inference_id``."""
    return completed_notification(inference_id, f"{OUTPUTS}/{inference_id}.out")


@dataclass
class Run:
    results: int
    receives: int
    deletes: int
    extra_receives: int  # the 1 s polls of the extra receivers (and of receiver 0 beside them)
    lags: list[float]  # per job: settled (virtual time) minus its notification's arrival

    @property
    def sqs_calls_per_result(self) -> float:
        return (self.receives + self.deletes) / self.results


async def notifications_at(
    arrivals: list[float], *, latency: float = LATENCY, **options: Any
) -> Run:
    """Track one job per arrival time, each half a second before its notification reaches the
    queue (the 202 comes first), and wait for every result; then close the watcher."""
    loop = asyncio.get_running_loop()
    queue = FakeQueue(latency=latency)
    watcher, aws = await open_watcher(queue, **options)
    start = loop.time() + 0.5
    arrived: dict[str, float] = {}
    lags: list[float] = []
    jobs = []

    async def notify(inference_id: str, at: float) -> None:
        await asyncio.sleep(at - loop.time())
        arrived[inference_id] = loop.time()
        queue.send(notification(inference_id))

    async def settle(inference_id: str, job: InferenceJob) -> None:
        await job.result()
        lags.append(loop.time() - arrived[inference_id])

    senders = []
    for i, at in enumerate(arrivals):
        await asyncio.sleep(max(0.0, start + at - 0.5 - loop.time()))
        inference_id = f"job-{i}"
        job = watcher.track(inference_id, f"{OUTPUTS}/{inference_id}.out", None)
        jobs.append(asyncio.ensure_future(settle(inference_id, job)))
        senders.append(asyncio.ensure_future(notify(inference_id, start + at)))
    await asyncio.gather(*jobs, *senders)
    await watcher.aclose()
    await aws.aclose()
    stats = watcher.statistics()
    assert stats.resolved == len(arrivals) and stats.duplicates == 0
    assert not queue.visible and not queue.in_flight  # every notification deleted
    return Run(
        results=stats.resolved,
        receives=stats.sqs_receive_calls,
        deletes=stats.sqs_delete_calls,
        extra_receives=sum(1 for wait, _ in queue.receives if wait == 1),
        lags=lags,
    )


def steady(rate: float, count: int) -> list[float]:
    return [i / rate for i in range(count)]


def poisson(rate: float, count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return list(itertools.accumulate(rng.expovariate(rate) for _ in range(count)))


# --- the pacing, alone --------------------------------------------------------------------------


def test_pacing_waits_about_as_long_as_nine_notifications_take() -> None:
    pacing = _Pacing(LINGER)
    now, received, queued, wait = 0.0, 0, 0.0, 0.0
    pacing.resume(now, received)
    for _ in range(40):  # 150 a second reach the queue; each receive takes up to 10
        now += wait + LATENCY
        queued += 150 * (wait + LATENCY)
        count = min(10, int(queued))
        queued -= count
        received += count
        wait = pacing.received(count, now, received)
    assert pacing.rate == pytest.approx(150, rel=0.1)
    assert wait == pytest.approx(9 / 150, abs=0.01)  # with the call's own, ~10 come
    # Notifications trickling in (2 a second): the longest wait, never more.
    for _ in range(10):
        now += wait + 0.5
        received += 1
        wait = pacing.received(1, now, received)
    assert wait == LINGER


@pytest.mark.parametrize("seed", range(20))
def test_pacing_waits_add_up_to_at_most_the_linger_until_the_queue_is_found_empty(
    seed: int,
) -> None:
    """The bound on the lag pacing adds: whatever comes back, the waits since the last receive
    that found the queue empty (fewer than 10) add up to at most ``linger``. A notification
    that arrived after that receive was therefore kept waiting at most ``linger`` by pacing."""
    rng = random.Random(seed)
    pacing = _Pacing(LINGER)
    now, received, since_empty = 0.0, 0, 0.0
    for _ in range(500):
        now += rng.choice([0.001, 0.02, 0.2, 1.0, 20.0]) * rng.random()
        count = rng.choice([0, 1, 3, 9, 10, 10, 10])
        received += count + rng.choice([0, 0, 10])  # the other receivers' too
        if count < 10:
            since_empty = 0.0
        wait = pacing.received(count, now, received, backlog=rng.random() < 0.1)
        assert 0.0 <= wait <= LINGER
        since_empty += wait
        assert since_empty <= LINGER + 1e-9
        now += wait


def test_pacing_off_and_during_a_backlog() -> None:
    eager = _Pacing(0.0)
    assert eager.received(1, 0.02, 1) == 0.0
    pacing = _Pacing(LINGER)
    pacing.resume(0.0, 0)
    assert pacing.received(3, 0.02, 3, backlog=True) == 0.0
    # Nothing known of the rate: the longest wait; then a full receive, the budget spent: the
    # next goes back to back.
    pacing = _Pacing(LINGER)
    pacing.resume(0.0, 0)
    assert pacing.received(1, 1.0, 1) == LINGER
    assert pacing.received(10, 1.0 + LINGER + LATENCY, 11) == 0.0


# --- end to end, on the virtual clock ---------------------------------------------------------


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize(
    "arrivals",
    [steady(150, 2000), poisson(150, 2000, seed=1), poisson(150, 2000, seed=2)],
    ids=["steady", "poisson-1", "poisson-2"],
)
def test_150_notifications_a_second_cost_at_most_a_quarter_call_each(
    arrivals: list[float],
) -> None:
    """The issue's load with the watcher's defaults (it measured 0.39-0.40 SQS calls per result
    on the local stack). Against this fake queue the fixed linger came to 0.23-0.24, but kept
    notifications waiting up to 0.5 s (a backlog built while it lingered) and split a delete
    batch; pacing comes to 0.21-0.22 with every delete full and the lag bound kept."""
    run = run_virtual(notifications_at(arrivals))
    assert run.sqs_calls_per_result <= 0.25, run
    assert run.deletes == run.results // 10  # every DeleteMessageBatch full
    # One receiver keeps up with 150 a second (10 per call, a call every 67 ms): the others
    # only help with the odd burst (and the first second, while the rate is unknown).
    assert run.extra_receives <= 0.15 * run.receives
    assert max(run.lags) <= LINGER + 2 * LATENCY


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize("rate", [2.0, 20.0, 60.0, 150.0, 300.0])
def test_the_lag_batching_adds_is_at_most_the_linger(rate: float) -> None:
    """A notification is settled at most ``receive_linger`` plus two calls after it reached
    the queue (the receive in flight when it came, then the next one), at every rate one
    receiver keeps up with (300 a second: 10 a call every 33 ms, calls of 20 ms)."""
    run = run_virtual(notifications_at(poisson(rate, min(600, int(rate * 4) + 10), seed=3)))
    assert max(run.lags) <= LINGER + 2 * LATENCY, sorted(run.lags)[-5:]


@pytest.mark.usefixtures("aws_env")
def test_the_bound_follows_receive_linger() -> None:
    run = run_virtual(notifications_at(poisson(20.0, 400, seed=4), receive_linger=1.0))
    assert max(run.lags) <= 1.0 + 2 * LATENCY
    eager = run_virtual(notifications_at(poisson(20.0, 400, seed=4), receive_linger=0.0))
    assert max(eager.lags) <= 2 * LATENCY
    # 20 a second: 10 in half a second, against one or two a call.
    assert run.receives <= 400 / 6 < 400 / 2 <= eager.receives


@pytest.mark.usefixtures("aws_env")
def test_a_backlog_brings_in_the_other_receivers_and_drains() -> None:
    """2,000 notifications at once (the jobs' results were all ready): full receives back to
    back, the other receivers join, and all is settled at about 4 x 10 per round trip."""
    run = run_virtual(notifications_at([0.0] * 2000, latency=0.05))
    assert run.extra_receives > run.receives / 2
    assert run.sqs_calls_per_result <= 0.22
    # 200 full receives, 4 at a time, 50 ms each: ~2.5 s, plus the linger before the backlog is
    # recognised (two full receives in a row).
    assert max(run.lags) <= 2000 / 40 * 0.05 + LINGER + 1.0


# --- closing ------------------------------------------------------------------------------------


async def _close_while_polling(*, held: bool) -> tuple[float, int, _OnFakeQueue]:
    """Watcher A waits for a job that never finishes, so it long-polls, and closes; meanwhile a
    notification arrives, for a job watcher B (opened after A closed) tracks. Return how long B
    waits for it (from B's track), B's receive count, and A. ``held``: A received the
    notification before closing, for a job it did not track (it is held)."""
    loop = asyncio.get_running_loop()
    queue = FakeQueue()
    a, aws_a = await open_watcher(queue, wait_time_seconds=20)
    blocker = a.track("blocker", f"{OUTPUTS}/blocker.out", None)
    await asyncio.sleep(1.0)  # A is in a long poll
    if held:
        queue.send(notification("late"))
        await asyncio.sleep(1.0)
        assert a._tracker.statistics().held == 1
    closing = asyncio.ensure_future(a.aclose())
    await asyncio.sleep(0.5)
    if not held:
        queue.send(notification("late"))
    await closing
    await aws_a.aclose()
    with pytest.raises(InvokerClosedError):
        await blocker
    b, aws_b = await open_watcher(queue, wait_time_seconds=20)
    tracked = loop.time()
    await b.track("late", f"{OUTPUTS}/late.out", None).result()
    waited = loop.time() - tracked
    receives = b.statistics().sqs_receive_calls
    await b.aclose()
    await aws_b.aclose()
    return waited, receives, a


@pytest.mark.usefixtures("aws_env")
def test_closing_mid_poll_leaves_the_next_notification_to_the_next_watcher() -> None:
    """A poll abandoned at close is still served: it took the next notification and hid it for
    the visibility timeout (30 s), from the next watcher on the queue (seen once in 1,000
    requests of mixed runs). Closing now waits for the poll, and hands back what it brought."""
    waited, receives, a = run_virtual(_close_while_polling(held=False))
    assert waited < 1.0  # not the 30 s visibility timeout
    assert receives == 1
    assert a.released_messages == 1


@pytest.mark.usefixtures("aws_env")
def test_closing_hands_back_the_notifications_it_holds() -> None:
    """A notification for a job not tracked (yet) is held, its message left invisible; at close
    it goes back to the queue at once, for whoever tracks that job next."""
    waited, receives, a = run_virtual(_close_while_polling(held=True))
    assert waited < 1.0
    assert receives == 1
    assert a.released_messages == 1


@pytest.mark.usefixtures("aws_env")
def test_closing_while_cancelled_does_not_wait_for_a_long_poll() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        queue = FakeQueue()
        watcher, aws = await open_watcher(queue, wait_time_seconds=20)
        watcher.track("blocker", f"{OUTPUTS}/blocker.out", None)
        await asyncio.sleep(1.0)

        async def body() -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                await watcher.aclose()

        task = asyncio.ensure_future(body())
        await asyncio.sleep(0.1)
        started = loop.time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await aws.aclose()
        return loop.time() - started

    assert run_virtual(main()) < 1.0


# --- on the local stack ---------------------------------------------------------------------


@pytest.mark.usefixtures("stack_env")
async def test_a_watcher_closed_mid_poll_hides_nothing_from_the_next_on_moto(
    endpoint: EndpointInfo, aws_clients: RawClients
) -> None:
    """moto's server, as the fake queue above, serves a poll the client gave up on: closing
    must wait for it rather than leave it to take (and hide) the next watcher's notification."""
    assert endpoint.queue_url is not None
    out = endpoint.output_path.rstrip("/")
    first = SqsNotifications(
        queue_url=endpoint.queue_url, wait_time_seconds=2, visibility_timeout=60, fetch=False
    )
    async with first:
        blocker = first.track("blocker", f"{out}/b/blocker.out", None)
        # A receive is in flight (the first one may bring the endpoint's test notification).
        while first.statistics().sqs_receive_calls < 2:
            await asyncio.sleep(0.05)
    with pytest.raises(InvokerClosedError):
        await blocker
    inference_id = f"next-{uuid.uuid4()}"
    output = f"{out}/next/{inference_id}.out"
    body = completed_notification(inference_id, output)
    second = SqsNotifications(queue_url=endpoint.queue_url, wait_time_seconds=1, fetch=False)
    async with second:
        job = second.track(inference_id, output, None)
        await aws_clients.sqs.send_message(QueueUrl=endpoint.queue_url, MessageBody=body)
        # Hidden by an abandoned poll, it would come back after 60 s.
        result = await job.result(timeout=20)
    assert result.output_location == output
