"""``SqsNotifications``: resolve jobs from SageMaker's success/error notifications on an SQS queue.

Receivers long-poll the queue (10 messages a call), parse each message (raw, or inside the SNS
envelope) and feed the tracker; deletes go out in batches of up to 10, and only after the tracker
has recorded the result.

**Calls per result.** SQS's long poll answers as soon as *one* message is there, so a receiver
that asks again at once gets what arrived during one call: one or two messages at 150 a second,
and as many calls. One receiver therefore paces itself (:class:`_Pacing`): after a receive it waits
about as long as 10 messages take to arrive at the rate they have been coming, never more than
``receive_linger`` in all until a receive finds the queue empty, so batching delays a notification
by at most ``receive_linger``. The other receivers join only while receives sent back to back keep
coming back full (a backlog one receiver cannot take), with short polls (1 s), so that they never
sit in a long poll splitting a steady stream into one-message receives. One batcher forms the
deletes, so batches are not split between two half-full ones either. At a steady 150 notifications
a second that makes about 0.22 SQS calls per result, 0.1 of them deletes.

**Closing** stops receiving, and lets the receives in flight answer (at most their long poll): a
receive abandoned mid-poll is still served by SQS (moto's server certainly does), and would hide
the next notification to arrive from every other consumer (the next watcher on the queue) for a
whole visibility timeout. What those receives brought, and the messages held for
jobs not tracked yet, are handed back at once (ChangeMessageVisibility to 0), for whoever collects
them; the queued deletes are sent.

**Trust.** Anyone allowed to send to the queue can write a message that looks like SageMaker's,
so a notification is believed only as far as the job's own locations (from its 202) back it. The
tracker decides (the table of :func:`aiosagemaker._core._tracker.decide`); in short:

* a Completed that names the job's own output settles it, and the output is read from S3 there;
  an included ``responseBody`` is used only when the notification is *signed* (a ``verifier``
  accepted its SNS envelope), so what a job returns is what S3 holds, or what SageMaker sent;
* a Completed that names no output (a bare ``responseBody``, say), and every unsigned Failed, is
  a *hint*: the watcher HEADs the job's own output (or failure) location, and settles the job
  from S3 only if the object is there (a failure with the reason read from the failure object);
  else the job keeps waiting. A job's location is HEADed for hints at most once a second;
* one that names another location than the job's, or another endpoint, is *refused*;
* a job whose 202 named no location has nothing to check a notification against: only a signed
  one settles it, or an unsigned one with ``trust_unsigned_notifications=True``.

An attacker who can send to the queue can therefore delay a result (hints cost HEADs, and a hint
never settles anything by itself). Knowing a job's exact output location, they can also make it
settle early, before its output exists, unless a ``verifier`` is set (every unsigned notification
is then at most a hint): the read then retries briefly and fails with :class:`ResultReadError`
(with ``fetch=False``, the job resolves with a location not written yet). They can never supply a
job's body or failure reason, nor make a job report a failed inference. Best: a queue policy that
lets only the endpoint's topics send (see the README).

Which messages are deleted (the queue may be shared with other services):

* a notification that settled one of our jobs: deleted (the result is recorded; the output, when
  not inline, is in S3 and is fetched from there);
* a notification for a job this watcher already settled (SNS delivers at least once): deleted;
* a hint or a refused notification about one of our pending jobs: deleted (it is about our job,
  and has been acted on; a refused one is counted in ``refused_notifications`` and logged without
  its content);
* SageMaker's ``TestNotification`` (sent when an endpoint is created or updated; it belongs to no
  job): deleted, unless ``delete_test_notifications=False``;
* a notification for an id this watcher does not know *yet*: the tracker holds the event (it may
  have beaten the 202 answer), with the message's receipt handle as its tag. If a ``track()`` then
  takes the held event, the tracker hands the tag back and the message is deleted; if the hold
  ends first, the message is left alone and becomes visible again after the visibility timeout,
  for whoever owns it;
* a malformed message (over 256 KiB, not JSON, nested too deep, a SageMaker notification with
  wrong types): counted in ``malformed_notifications``, logged without its content, and deleted
  only if it names the inference id of one of our pending jobs; else left;
* anything else (other producers' messages): left in the queue and counted.

Messages left alone come back after every visibility timeout. Give the queue a redrive policy, so
that what nobody deletes moves aside instead of circling (and costing receives) for the whole
retention period: a dead-letter queue, ``{"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount":
"5"}``. Ours are deleted at their first or second receive (a held one once its job is tracked),
so a few receives are plenty; on a queue shared with other consumers, allow for theirs too.

A periodic reconciliation looks in S3 (a HEAD of the output, then of the failure location) for
jobs whose notification is overdue, at most ``reconcile_batch`` jobs a round, backing off per
job, so a lost notification costs latency, not a result. A job is overdue once it has waited
``reconcile_after`` seconds and either a job tracked after it has had its notification (it was
overtaken) or no notification has come for ``reconcile_after`` seconds (they stalled). A job that
is merely queued behind others in the endpoint is not looked for: async endpoints queue requests
for minutes, and a HEAD of every such job would cost a call per result and find nothing.

Errors (classified in :mod:`._errors`): throttling, 5xx and connection errors are retried after a
pause and counted. A queue that does not exist, or a receive that is denied, fails every pending job
with a :class:`WatcherError` once a second receive in a row says so, and each job tracked while it
lasts at its first receive: there is no other way to hear of results here, and reconciliation is a
safety net for lost notifications, not a replacement for the queue. A reconciliation HEAD that
answers 403 (no ``s3:ListBucket``) is explained once and the job keeps waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import math
import time
from typing import TYPE_CHECKING, Any, Protocol

from .._core._events import Completed, Decision, Effect, Failed, Origin
from .._core._notifications import MessageKind, loggable_id, read_message
from .._core._request import parse_s3_uri
from .._core._tracker import Tracker
from .._exceptions import NotificationError
from .._logs import logger
from .._sqs_calls import SqsCalls
from ._base import Watcher
from ._errors import ErrorKind, Streak, classify

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

    from .._aws import AwsContext
    from .._core._events import Event, Expected, ExpectResult
    from .._core._notifications import Message

__all__ = ["NotificationVerifier", "SqsNotifications"]


#: the ReceiveMessage and DeleteMessageBatch maximum.
_BATCH = 10
#: a job's reconciliation backs off to at most this many times ``reconcile_after``.
_MAX_BACKOFF = 8
#: seconds to wait after a failed receive (doubling up to the maximum).
_RECEIVE_BACKOFF = 0.1
_RECEIVE_BACKOFF_MAX = 5.0
#: at most this long, closing waits for the receives in flight to answer and for the queued
#: deletes and hand-backs to be sent.
_CLOSE_FLUSH_SECONDS = 10.0
#: closing waits for a receive in flight at most its long poll and this much more.
_CLOSE_RECEIVE_MARGIN = 5.0
#: the long poll of every receiver during a backlog (0-20 s): the extra receivers come and go
#: with backlogs, and a long wait would leave them taking one message at a time from a stream
#: receiver 0 paces, or in a poll when closing.
_EXTRA_WAIT_SECONDS = 1
#: DeleteMessageBatch calls in flight at once.
_DELETE_SENDS = 4
#: a job's own location is HEADed for hints at most once this many seconds: a flood of forged
#: hints costs at most that many HEADs, and a hint that comes in meanwhile is not lost (one more
#: HEAD follows the gap).
_HINT_GAP = 1.0
#: why a notification was refused, for the log (never its content).
_REFUSALS = {
    Decision.FOREIGN_LOCATION: "it names another location than the one the endpoint returned",
    Decision.WRONG_ENDPOINT: "it names another endpoint than the one the job was sent to",
    Decision.UNVERIFIABLE: (
        "it is unsigned, and the job has no location of its kind to check it against (set a "
        "verifier, or trust_unsigned_notifications=True)"
    ),
}


#: what only a trusted notification may give, by event type: its body, content type, reason.
_NO_CONTENT: dict[type[Event], dict[str, None]] = {
    Completed: {"body": None, "content_type": None},
    Failed: {"reason": None},
}


class NotificationVerifier(Protocol):
    """Checks that an SNS envelope was signed by SNS for one of the endpoint's topics.

    .. versionadded:: 0.1
    """

    async def verify(self, envelope: Mapping[str, Any]) -> None:
        """Return when ``envelope`` (the SNS ``Notification`` a message came in) is trusted.

        :raises NotificationError: it is not (a bad signature, another topic, a certificate
            from elsewhere).
        """


class _Pacing:
    """How long receiver 0 waits before its next ReceiveMessage, so that it brings back ~10.

    * The rate notifications arrive at is the rate every receiver has been receiving them,
      smoothed over about a second (whenever a message arrived, it is counted when received).
    * The wait is the time the next 9 take to arrive at that rate, less what a full receive left
      queued (by estimate). Fewer than 10: what arrives during the call itself comes too, most
      receives then find the queue emptied, and a full one leaves little behind.
    * The waits since the last receive that found the queue empty (fewer than 10) add up to at
      most ``linger``: a notification that arrived after that receive has been kept waiting by
      pacing for at most ``linger``, whatever the estimates. Once that budget is spent,
      receives go back to back until one finds the queue empty, and two full ones in a row
      call in the other receivers (see :meth:`SqsNotifications._receive_loop`).

    Sans-IO: the times come in as arguments (the event loop's clock), so it is tested with a
    fake one.
    """

    __slots__ = ("_count", "_last", "_queued", "_spent", "linger", "rate")

    #: seconds the rate estimate remembers (exponentially)
    _HORIZON = 1.0
    #: the messages a receive is timed to find: fewer than 10, so that most find the queue
    #: emptied (and the budget starts again), and a full one leaves little behind
    _TARGET = 9.0
    #: waits shorter than this are not worth a sleep
    _MIN_WAIT = 0.001

    def __init__(self, linger: float) -> None:
        self.linger = linger
        #: arrivals a second, as estimated (0: nothing known yet)
        self.rate = 0.0
        self._spent = 0.0  # waited since the last receive that found the queue empty
        self._queued = 0.0  # messages estimated left in the queue by the last receive
        self._last: float | None = None  # when the previous receive returned
        self._count = 0  # messages received by every receiver by then

    def resume(self, now: float, received: int) -> None:
        """Receiving starts again after a spell with nothing pending (which says nothing about
        the rate)."""
        self._last, self._count = now, received

    def received(self, count: int, now: float, received: int, *, backlog: bool = False) -> float:
        """Receiver 0's receive returned ``count`` messages at ``now``; ``received`` messages
        were received by every receiver so far. Return how long to wait before the next
        receive (0 during a ``backlog``)."""
        last, arrived = self._last, received - self._count
        self._last, self._count = now, received
        span = now - last if last is not None else 0.0
        if span > 0:
            # A rate smoothed over about a second: messages received, whenever they arrived.
            decay = math.exp(-span / self._HORIZON)
            self.rate = self.rate * decay + arrived * (1 - decay) / span
        if count < _BATCH:
            self._spent = 0.0
            self._queued = 0.0
        else:
            self._queued = max(0.0, self._queued + self.rate * span - arrived)
        if backlog or self.linger <= 0:
            return 0.0
        if self.rate > 0:
            fill = (self._TARGET - min(self._queued, self._TARGET)) / self.rate
        else:
            fill = self.linger
        wait = min(fill, self.linger - self._spent)
        if wait < self._MIN_WAIT:
            return 0.0
        self._spent += wait
        return wait


class SqsNotifications(Watcher):
    """Resolve jobs from the endpoint's notifications, read from an SQS queue.

    The queue is subscribed to the endpoint's success and error SNS topics (raw delivery or not).
    See the module docstring for which messages are deleted, and for errors: a queue that does
    not exist, or a receive that is denied, fails the pending jobs with :class:`WatcherError`.

    .. code-block:: python

        watcher = SqsNotifications(queue_url=QUEUE_URL, receivers=4)
        async with AsyncInvoker("my-endpoint", watcher=watcher) as invoker:
            result = await (await invoker.submit(b"..."))

    :param queue_url: the queue's URL.
    :param receivers: receive loops at most; the first polls whenever jobs are pending, paced, the
        others join while receives sent back to back keep coming back full (a backlog).
    :param wait_time_seconds: the long-poll wait of each ReceiveMessage (0-20); 1 s at most while
        several receivers are at work (a backlog). Closing with jobs pending waits for the poll
        in flight to end (see :meth:`aclose`): a watcher meant to be closed early may want a
        shorter one.
    :param visibility_timeout: the VisibilityTimeout of each ReceiveMessage (the queue's when
        ``None``): how soon a message left alone becomes visible again.
    :param reconcile_after: seconds a job waits for its notification before the watcher looks in
        S3 for its output or failure, once a later job's notification came first or none came for
        as long (see the module's docstring).
    :param reconcile_every: seconds between reconciliation rounds at least.
    :param reconcile_batch: jobs looked up in S3 per round at most (two HEADs each at most).
    :param receive_linger: the most a notification waits for a receive, so that receives come
        back with 10 messages rather than one or two: the first receiver waits about as long as
        10 notifications take to arrive (at the rate they have been arriving), and never more
        than this in all until a receive finds the queue empty. ``0`` receives again at once
        (a call per message or two when notifications trickle in).
    :param delete_linger: seconds a delete waits for others to fill its batch (results are
        already settled: this delays only the clean-up).
    :param delete_test_notifications: delete SageMaker's test notifications.
    :param verifier: checks the SNS signature of each notification's envelope (an object with
        ``async def verify(envelope)`` that raises :class:`NotificationError` when the envelope
        is not trusted). A notification it accepts is *signed*: its included response body is
        used and it settles its job without a HEAD. With a verifier, every unsigned notification
        (raw delivery, a signature refused) is at most a hint. ``None`` (the default): nothing is
        signed, notifications are believed only as far as the jobs' own locations back them.
    :param trust_unsigned_notifications: let unsigned notifications settle jobs whose 202 named
        no output (or failure) location, with the body (or reason) they carry. Such a job has
        nothing to check a notification against: **anyone who may send to the queue can then
        resolve it with a body of their choosing, or fail it**. Jobs with locations are not
        affected. Leave it off unless the queue policy lets only the endpoint's topics send.
    :param kwargs: the :class:`Watcher` options (``fetch``, ``hold_seconds``, ...).

    .. versionadded:: 0.1
    """

    kind = "sqs"
    # Notifications name the inference id: a job accepted without locations is still found.
    matches_by_inference_id = True

    def __init__(
        self,
        *,
        queue_url: str,
        receivers: int = 4,
        wait_time_seconds: int = 20,
        visibility_timeout: int | None = None,
        reconcile_after: float = 30.0,
        reconcile_every: float | None = None,
        reconcile_batch: int = 64,
        receive_linger: float = 0.25,
        delete_linger: float = 0.5,
        delete_test_notifications: bool = True,
        verifier: NotificationVerifier | None = None,
        trust_unsigned_notifications: bool = False,
        **kwargs: Any,
    ) -> None:
        if not queue_url:
            raise ValueError("queue_url is required")
        if receivers < 1:
            raise ValueError(f"receivers must be >= 1, not {receivers!r}")
        if not 0 <= wait_time_seconds <= 20:
            raise ValueError(f"wait_time_seconds must be in 0..20, not {wait_time_seconds!r}")
        if visibility_timeout is not None and not 0 <= visibility_timeout <= 43_200:
            raise ValueError(f"visibility_timeout must be in 0..43200, not {visibility_timeout!r}")
        if min(reconcile_after, receive_linger, delete_linger) < 0 or reconcile_batch < 1:
            raise ValueError(
                "reconcile_after, receive_linger and delete_linger must be >= 0, "
                "reconcile_batch >= 1"
            )
        # Before the base builds the tracker (_new_tracker reads them).
        self.verifier = verifier
        self.trust_unsigned_notifications = trust_unsigned_notifications
        super().__init__(**kwargs)
        self.queue_url = queue_url
        self.receivers = receivers
        self.wait_time_seconds = wait_time_seconds
        self.visibility_timeout = visibility_timeout
        self.reconcile_after = reconcile_after
        self.reconcile_every = (
            reconcile_every
            if reconcile_every is not None
            else min(5.0, max(0.05, reconcile_after / 4))
        )
        self.reconcile_batch = reconcile_batch
        self.receive_linger = receive_linger
        self.delete_linger = delete_linger
        self.delete_test_notifications = delete_test_notifications
        self._sqs: SQSClient | None = None
        self._calls: SqsCalls | None = None
        self._active = asyncio.Event()  # jobs are pending: receive
        self._busy = asyncio.Event()  # receives come back full: the extra receivers join
        self._full_streak = 0
        self._received = 0  # messages received by every receiver (the pacing's arrival count)
        self._deletes: asyncio.Queue[str] = asyncio.Queue()
        # Closing: no receive is sent any more; what the ones in flight bring is handed back.
        self._closing = asyncio.Event()
        self._receiving = 0  # receive calls in flight
        self._receives_done = asyncio.Event()  # none in flight
        self._receives_done.set()
        # Receipt handles of the messages held for jobs not tracked yet (the tracker holds their
        # events; these are only what closing hands back), and of those received while closing.
        self._held_receipts: set[str] = set()
        self._to_release: list[str] = []
        # When to look in S3 for each job: (due, job key, attempt). Keys are unique, so they
        # break ties; the job itself is asked of the tracker, which drops it once settled.
        self._due: list[tuple[float, int, int]] = []
        # Evidence that notifications flow: when one last named a pending job of ours, and the
        # newest job (by tracking order: keys increase) one has named. Reconciliation looks only
        # for jobs overtaken by a later one, or when notifications have stalled.
        #: the clock of reconciliation's deadlines (a test may set another)
        self._clock: Callable[[], float] = time.monotonic
        self._last_notified = self._clock()
        self._newest_notified = -1
        self._due_added = asyncio.Event()
        #: messages left in the queue: not SageMaker notifications (or not inference results).
        self.ignored_messages = 0
        #: notifications whose SNS envelope the verifier refused (or failed on): read as unsigned.
        self.unverified_notifications = 0
        #: SageMaker test notifications seen.
        self.test_notifications = 0
        #: jobs settled by reconciliation (their notification was late or lost).
        self.reconciled = 0
        #: deletes SQS refused (the message comes back and is deleted as a duplicate).
        self.delete_failures = 0
        #: ChangeMessageVisibilityBatch calls at close, and the messages they handed back
        #: (visible again at once, for another consumer). Not in :meth:`statistics` (yet).
        self.release_calls = 0
        self.released_messages = 0
        # Repeated permanent errors of ReceiveMessage: confirmed, they fail the pending jobs.
        self._receive_streak = Streak()
        self._delete_denied_explained = False
        # Hints being checked, by (job key, is a failure): whether another came in meanwhile.
        self._hinting: dict[tuple[int, bool], bool] = {}

    def _new_tracker(self, hold_seconds: float) -> Tracker:
        return Tracker(
            hold_seconds=hold_seconds,
            trust_unsigned=self.trust_unsigned_notifications,
            # With a verifier every real notification is signed: an unsigned one proves nothing
            # and is a hint, checked with a HEAD. Without one (raw delivery cannot be signed), an
            # unsigned notification naming the job's own output settles it from S3 (one GET, no
            # HEAD): what is returned is what S3 holds there.
            require_signatures=self.verifier is not None,
        )

    @property
    def malformed_messages(self) -> int:
        """Messages that could not be read (see :attr:`WatcherStatistics.malformed_notifications`)."""
        return self._counters.malformed_notifications

    # --- lifecycle ----------------------------------------------------------------------------

    async def _open_clients(self, aws: AwsContext) -> None:
        self._sqs = await aws.client("sqs", pool=self.receivers + 4)
        # Receives, deletes and hand-backs as signed requests of our own: see _sqs_calls.
        self._calls = SqsCalls(self._sqs, aws=aws, pool=self.receivers + 4)

    async def aclose(self) -> None:
        """Stop receiving, hand back what is not ours to keep, send the queued deletes, then stop
        (pending jobs fail as in :class:`Watcher`).

        First the receives in flight are let answer, for at most their long poll
        (``wait_time_seconds``): a receive given up on mid-poll is still served by SQS, and
        what it takes stays hidden from every other consumer (the next watcher on the queue)
        for a visibility timeout. A receive is in flight at close only when jobs are pending,
        or when the last result came another way than a receive (held for its 202, found by
        reconciliation, expired); during a backlog every receive is a 1 s poll. When the closing
        task is cancelled, they are not waited for. Then, for at most 10 s
        (``_CLOSE_FLUSH_SECONDS``): what those receives brought, and the messages held for jobs
        never tracked, are handed back (visible again at once), and the queued deletes are
        sent.
        """
        try:
            if not self._closed and self._runner is not None and not self._runner.done():
                await self._wind_down()
        finally:
            try:
                await super().aclose()
            finally:
                if self._calls is not None:
                    await self._calls.aclose()

    async def _wind_down(self) -> None:
        self._closing.set()
        current = asyncio.current_task()
        # Cancelled (Ctrl-C): no waiting for long polls; what is queued is still sent.
        if current is None or not current.cancelling():
            try:
                # Until the polls in flight end by themselves: one given up on would still be
                # served (hiding what it takes), and so would the messages handed back below.
                async with asyncio.timeout(self.wait_time_seconds + _CLOSE_RECEIVE_MARGIN):
                    await self._receives_done.wait()
            except TimeoutError:
                logger.warning(
                    "closing with %d SQS receives unanswered",
                    self._receiving,
                    extra=self._log_fields(),
                )
        try:
            async with asyncio.timeout(_CLOSE_FLUSH_SECONDS):
                await self._release([*self._to_release, *self._held_receipts])
                self._to_release.clear()
                self._held_receipts.clear()
                # The delete loop is still running: it sends everything queued, including a
                # batch lingering for company.
                await self._deletes.join()
        except TimeoutError:
            logger.warning(
                "closing with %d SQS deletes unsent",
                self._deletes.qsize(),
                extra=self._log_fields(),
            )

    async def _release(self, receipts: list[str]) -> None:
        """Make these messages visible again at once (ChangeMessageVisibility to 0), for another
        consumer: this watcher will not act on them. A failure only delays them (they come back
        after their visibility timeout)."""
        batches = [receipts[i : i + _BATCH] for i in range(0, len(receipts), _BATCH)]
        await asyncio.gather(*(self._release_batch(batch) for batch in batches))

    async def _release_batch(self, receipts: list[str]) -> None:
        self.release_calls += 1
        entries: Any = [
            {"Id": str(i), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
            for i, receipt in enumerate(receipts)
        ]
        try:
            response = await self._sqs_client.change_message_visibility_batch(
                QueueUrl=self.queue_url, Entries=entries
            )
        except Exception as exc:  # noqa: BLE001 - they come back after their visibility timeout
            self._transient("ChangeMessageVisibilityBatch", self.queue_url, exc)
            return
        self.released_messages += len(receipts) - len(response.get("Failed", []))

    @property
    def _sqs_client(self) -> SqsCalls:
        if self._calls is None:
            raise RuntimeError("watcher is not open")
        return self._calls

    def _on_tracked(self, expected: Expected, result: ExpectResult) -> None:
        self._active.set()
        # Held events the job took (the one that settled it and any copies, hints, refused
        # ones): all are about this job, the tracker hands back their receipt handles, and
        # their messages can go.
        for events in (result.consumed, result.hints, result.rejected):
            self._delete_sources(events)
        if result.rejected:
            logger.warning(
                "refused %d held notification(s) about inference id %s (another location or "
                "endpoint, or unsigned with nothing to check it against); deleted",
                len(result.rejected),
                loggable_id(expected.inference_id),
                extra=self._log_fields(expected),
            )
        if result.outcome is None:
            heapq.heappush(self._due, (self._clock() + self.reconcile_after, expected.key, 0))
            self._due_added.set()
            for event in result.hints:
                self._hint(expected, event)

    def _delete_sources(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event.tag, str):  # a receipt handle (see _handle)
                self._held_receipts.discard(event.tag)
                self._deletes.put_nowait(event.tag)

    def _dropped(self, event: Event) -> None:
        # Its message is left in the queue (for whoever owns it): its receipt is no longer held.
        if isinstance(event.tag, str):
            self._held_receipts.discard(event.tag)

    def _is_pending(self, key: int) -> bool:
        return self._tracker.pending_job(key) is not None

    # --- receiving ------------------------------------------------------------------------------

    async def _watch(self) -> None:
        for index in range(1, self.receivers):
            self._spawn(self._receive_loop(index))
        self._spawn(self._delete_loop())
        self._spawn(self._reconcile_loop())
        await self._receive_loop(0)

    async def _receive_loop(self, index: int) -> None:
        """Receive while jobs are pending: receiver 0 always, paced (:class:`_Pacing`); the others
        only during a backlog (two full receives in a row with no wait before them), back to
        back and with short polls."""
        loop = asyncio.get_running_loop()
        pacing = _Pacing(self.receive_linger) if index == 0 else None
        backoff = 0.0
        waited = 0.0  # how long receiver 0 waited before this receive (0: back to back)
        args: dict[str, Any] = {"QueueUrl": self.queue_url, "MaxNumberOfMessages": _BATCH}
        if self.visibility_timeout is not None:
            args["VisibilityTimeout"] = self.visibility_timeout
        # Short polls while more than one receiver is at work (a backlog's end then finds none in
        # a long poll: nothing to split a stream, nothing for closing to wait long for); else
        # the long poll.
        short = min(self.wait_time_seconds, _EXTRA_WAIT_SECONDS)
        while not self._closing.is_set():
            if not self._tracked:
                # Nothing pending: leave the queue alone (other services may share it).
                self._active.clear()
                self._busy.clear()
                await self._active.wait()
                if pacing is not None:
                    pacing.resume(loop.time(), self._received)
                continue
            if index and not self._busy.is_set():
                await self._busy.wait()
                continue
            others = self._busy.is_set() or self._receiving > 0
            args["WaitTimeSeconds"] = short if index or others else self.wait_time_seconds
            count = await self._receive_once(args, back_to_back=bool(index) or not waited)
            if count is None:  # failed: retried after a pause
                backoff = min(_RECEIVE_BACKOFF_MAX, max(_RECEIVE_BACKOFF, backoff * 2))
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            if pacing is None:
                continue
            waited = pacing.received(
                count, loop.time(), self._received, backlog=self._busy.is_set()
            )
            if waited:
                await asyncio.sleep(waited)

    async def _receive_once(self, args: dict[str, Any], *, back_to_back: bool) -> int | None:
        """One ReceiveMessage and the handling of what it brought; return how many messages,
        ``None`` when it failed. Closing waits for it to end (see :meth:`aclose`)."""
        self._receiving += 1
        self._receives_done.clear()
        try:
            self._counters.sqs_receive_calls += 1
            try:
                response = await self._sqs_client.receive_message(**args)
            except Exception as exc:  # noqa: BLE001 - classified: retried, or the jobs fail
                if self._receive_failed(exc) and not self._tracked:
                    return 0  # the pending jobs failed: nothing to wait for
                return None
            messages = response.get("Messages", [])
            if self._closing.is_set():
                # Answered while closing: hand them back, for the next consumer (see aclose).
                self._to_release.extend(message["ReceiptHandle"] for message in messages)
                return len(messages)
            self._receive_streak.clear()
            self._received += len(messages)
            if len(messages) < _BATCH:
                # The queue was empty when SQS answered: no backlog.
                self._full_streak = 0
                self._busy.clear()
            elif back_to_back:
                # Full, with no wait before it: more may be queued than one receiver takes. Two
                # in a row are a backlog, and the other receivers join. (A full receive after a
                # wait is what the wait was for.)
                self._full_streak += 1
                if self._full_streak >= 2:
                    self._busy.set()
            if messages:
                await self._handle_batch(messages)
            return len(messages)
        finally:
            self._receiving -= 1
            if not self._receiving:
                self._receives_done.set()

    def _receive_failed(self, exc: Exception) -> bool:
        """Classify a failed receive; return whether it failed the pending jobs."""
        verdict = classify("ReceiveMessage", exc, self.queue_url)
        if verdict.kind is not ErrorKind.PERMANENT:
            self._transient("ReceiveMessage", self.queue_url, exc)
            return False
        self._counters.permanent_errors += 1
        # Each receive is its own try: its number tells the streak two calls apart.
        if not self._receive_streak.record(verdict.code, self._counters.sqs_receive_calls):
            logger.info(
                "ReceiveMessage on %s answered %s; believed if it repeats",
                self.queue_url,
                verdict.code,
                extra=self._log_fields(),
            )
            return False
        message = (
            f"SqsNotifications cannot read {self.queue_url} ({verdict.code}): {verdict.advice}"
        )
        failed = self._give_up(self._pending(), verdict, message, exc)
        if failed:
            logger.warning("%s; failed %d pending jobs", message, failed, extra=self._log_fields())
        return True

    async def _handle_batch(self, messages: list[MessageTypeDef]) -> None:
        read = [read_message(message.get("Body", "")) for message in messages]
        if self.verifier is None:
            origins = [Origin.UNSIGNED] * len(read)
        else:
            origins = await asyncio.gather(
                *(self._verify(message, sqs) for message, sqs in zip(read, messages, strict=True))
            )
        for sqs, message, origin in zip(messages, read, origins, strict=True):
            self._handle(sqs, message, origin)

    async def _verify(self, message: Message, sqs: MessageTypeDef) -> Origin:
        """SIGNED if the verifier accepts the message's SNS envelope; else UNSIGNED."""
        if self.verifier is None or message.kind is not MessageKind.RESULT:
            return Origin.UNSIGNED
        if message.envelope is None:
            return Origin.UNSIGNED  # raw delivery: nothing signed it
        try:
            await self.verifier.verify(message.envelope)
        except Exception as exc:  # noqa: BLE001 - a verifier never stops the watcher
            self.unverified_notifications += 1
            # The class only: a verifier's message may quote the envelope (the sender's text).
            logger.warning(
                "SQS message %s: the verifier %s its SNS signature (%s); read as unsigned",
                sqs.get("MessageId"),
                "refused" if isinstance(exc, NotificationError) else "failed to check",
                type(exc).__name__,
                extra=self._log_fields(),
            )
            return Origin.UNSIGNED
        return Origin.SIGNED

    def _handle(self, sqs: MessageTypeDef, message: Message, origin: Origin) -> None:
        receipt = sqs["ReceiptHandle"]
        kind = message.kind
        if kind is MessageKind.UNREADABLE or kind is MessageKind.MALFORMED:
            self._counters.malformed_notifications += 1
            # Ours only if it names one of our pending jobs: else another producer's, left.
            named = (
                self._tracker.pending_by_inference_id(message.inference_id)
                if message.inference_id is not None
                else []
            )
            ours = bool(named)
            logger.warning(
                "SQS message %s is not a readable notification (%s); %s",
                sqs.get("MessageId"),
                message.problem,
                "deleted: it names a pending job's inference id" if ours else "left in the queue",
                extra=self._log_fields(named[0]) if named else self._log_fields(),
            )
            if ours:
                self._deletes.put_nowait(receipt)
            return
        if kind is MessageKind.TEST:
            self.test_notifications += 1
            if self.delete_test_notifications:
                self._deletes.put_nowait(receipt)
            return
        event = message.event
        if kind is not MessageKind.RESULT or event is None:
            self.ignored_messages += 1
            return
        # The receipt rides along as the event's tag: should the tracker hold the event, it
        # hands the receipt back when a job takes it (see _on_tracked).
        changes: dict[str, Any] = {"tag": receipt}
        if origin is Origin.SIGNED:
            changes["origin"] = Origin.SIGNED
        elif not self.trust_unsigned_notifications:
            # An unsigned body or reason is never used then (the tracker reads the job's own
            # location instead): drop it now, so that a held event costs no more than its ids.
            changes.update(_NO_CONTENT[type(event)])
        result = self._feed(dataclasses.replace(event, **changes))
        effect = result.effect
        if effect is Effect.SETTLED or effect is Effect.HINT:
            self._notified([o.job.key for o in result.outcomes] or [j.key for j in result.jobs])
        if effect is Effect.HINT:
            for job in result.jobs:
                self._hint(job, event)
        elif effect is Effect.REJECTED:
            assert result.decision is not None
            logger.warning(
                "refused a notification (SQS message %s) about pending inference id %s: %s; "
                "deleted",
                sqs.get("MessageId"),
                loggable_id(result.jobs[0].inference_id),
                _REFUSALS[result.decision],
                extra=self._log_fields(result.jobs[0]),
            )
        if effect in (Effect.SETTLED, Effect.DUPLICATE, Effect.HINT, Effect.REJECTED):
            # Recorded, ours and settled already, or about one of our pending jobs and acted on.
            self._deletes.put_nowait(receipt)
        elif effect is Effect.HELD:
            self._held_receipts.add(receipt)  # handed back if we close before a job takes it
        # HELD (perhaps a job not tracked yet, perhaps another service's) or REFUSED: the message
        # stays in the queue until a job takes the event; a dropped one reappears for its owner.

    # --- hints ----------------------------------------------------------------------------------

    def _hint(self, job: Expected, event: Event) -> None:
        """Look at ``job``'s own output (or failure) location: a notification hinted at it."""
        failed = isinstance(event, Failed)
        key = (job.key, failed)
        if key in self._hinting:
            self._hinting[key] = True  # being checked: look once more after the gap
            return
        self._hinting[key] = False
        self._spawn(self._check_hint(job, failed))

    async def _check_hint(self, job: Expected, failed: bool) -> None:
        key = (job.key, failed)
        location = job.failure_location if failed else job.output_location
        assert location is not None  # a hint is only ever about a job's own location
        try:
            while True:
                found = await self._exists(location)
                if self._tracker.pending_job(job.key) is None:
                    return  # settled (or given up) meanwhile
                if found:
                    # Seen in S3 by this watcher: an observed event, settled from the object.
                    self._feed(
                        Failed(inference_id=job.inference_id, failure_location=location)
                        if failed
                        else Completed(inference_id=job.inference_id, output_location=location)
                    )
                    return
                if not self._hinting.get(key):
                    return  # not there: the job keeps waiting (reconciliation looks again)
                self._hinting[key] = False
                await asyncio.sleep(_HINT_GAP)
        finally:
            self._hinting.pop(key, None)

    # --- deleting -------------------------------------------------------------------------------

    async def _delete_loop(self) -> None:
        """The one batcher of deletes: a batch goes when it holds 10 receipts, or when its first
        has waited ``delete_linger``; up to ``_DELETE_SENDS`` calls in flight. (Two loops each
        lingering over a batch of their own would split the receipts into half-full calls.)"""
        loop = asyncio.get_running_loop()
        sends = asyncio.Semaphore(_DELETE_SENDS)
        while True:
            batch = [await self._deletes.get()]
            deadline = loop.time() + self.delete_linger
            while len(batch) < _BATCH:
                if not self._deletes.empty():
                    batch.append(self._deletes.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        batch.append(await self._deletes.get())
                except TimeoutError:
                    break
            await sends.acquire()
            self._spawn(self._send_deletes(batch, sends))

    async def _send_deletes(self, receipts: list[str], sends: asyncio.Semaphore) -> None:
        try:
            await self._delete_batch(receipts)
        finally:
            sends.release()
            for _ in receipts:
                self._deletes.task_done()

    async def _delete_batch(self, receipts: list[str]) -> None:
        self._counters.sqs_delete_calls += 1
        entries: Any = [
            {"Id": str(i), "ReceiptHandle": receipt} for i, receipt in enumerate(receipts)
        ]
        try:
            response = await self._sqs_client.delete_message_batch(
                QueueUrl=self.queue_url, Entries=entries
            )
        except Exception as exc:  # noqa: BLE001 - the messages come back; deleted as duplicates
            self.delete_failures += len(receipts)
            verdict = classify("DeleteMessageBatch", exc, self.queue_url)
            if verdict.kind is not ErrorKind.PERMANENT:
                self._transient("DeleteMessageBatch", self.queue_url, exc)
            else:
                # Results are settled already; only the clean-up suffers: say so once.
                self._counters.permanent_errors += 1
                if not self._delete_denied_explained:
                    self._delete_denied_explained = True
                    logger.warning(
                        "DeleteMessageBatch on %s failed (%s): messages come back after their "
                        "visibility timeout and pile up; %s",
                        self.queue_url,
                        verdict.code,
                        verdict.advice,
                        extra=self._log_fields(),
                    )
            return
        failed = response.get("Failed", [])
        if failed:
            self.delete_failures += len(failed)
            logger.info(
                "SQS refused %d of %d deletes", len(failed), len(receipts), extra=self._log_fields()
            )

    # --- reconciliation ---------------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            if not self._due:
                self._due_added.clear()
                await self._due_added.wait()
                continue
            delay = max(self._due[0][0] - self._clock(), self.reconcile_every)
            await asyncio.sleep(delay)
            await self.reconcile_once()

    def _notified(self, keys: list[int]) -> None:
        """A notification named these pending jobs of ours: notifications flow."""
        self._last_notified = self._clock()
        if keys:
            self._newest_notified = max(self._newest_notified, *keys)

    async def reconcile_once(self) -> int:
        """Look in S3 for the jobs whose notification is overdue; return how many were found.

        A job past ``reconcile_after`` is overdue when a job tracked after it has had its
        notification, or when none has come for ``reconcile_after`` seconds; the others are
        looked at again next round."""
        now = self._clock()
        stalled = now - self._last_notified >= self.reconcile_after
        batch: list[tuple[int, Expected]] = []
        waiting: list[tuple[float, int, int]] = []
        while self._due and self._due[0][0] <= now and len(batch) < self.reconcile_batch:
            entry = heapq.heappop(self._due)
            _, key, attempt = entry
            expected = self._tracker.pending_job(key)
            if expected is None:  # settled or given up since: nothing to look for
                continue
            if stalled or key < self._newest_notified:
                batch.append((attempt, expected))
            else:
                # Queued behind others in the endpoint, as far as anyone can tell: due, but
                # looked at again next round (reconcile_every), not now.
                waiting.append(entry)
        for entry in waiting:
            heapq.heappush(self._due, entry)
        if not batch:
            return 0
        found = await asyncio.gather(*(self._reconcile(expected) for _, expected in batch))
        later = self._clock()
        for (attempt, expected), hit in zip(batch, found, strict=True):
            if not hit and self._is_pending(expected.key):
                backoff = self.reconcile_after * min(2 ** (attempt + 1), _MAX_BACKOFF)
                heapq.heappush(self._due, (later + backoff, expected.key, attempt + 1))
        return sum(found)

    async def _reconcile(self, expected: Expected) -> bool:
        if expected.output_location is not None and await self._exists(expected.output_location):
            if self._is_pending(expected.key):
                self.reconciled += 1
                self._feed(
                    Completed(
                        inference_id=expected.inference_id,
                        output_location=expected.output_location,
                    )
                )
            return True
        if expected.failure_location is not None and await self._exists(expected.failure_location):
            if self._is_pending(expected.key):
                self.reconciled += 1
                self._feed(
                    Failed(
                        inference_id=expected.inference_id,
                        failure_location=expected.failure_location,
                    )
                )
            return True
        return False

    async def _exists(self, location: str) -> bool:
        target = parse_s3_uri(location, field="location")
        return await self._object_exists(
            target.bucket,
            target.key,
            waiting="the job keeps waiting for its notification, or a later HEAD",
        )
