"""``aiosagemaker notifications setup|teardown``: an SQS queue wired to an endpoint's notifications.

::

    aiosagemaker notifications setup my-endpoint [--queue-name NAME] [--raw-delivery] [--dry-run]
    aiosagemaker notifications teardown my-endpoint [--queue-name NAME] [--dry-run]

``setup`` reads the endpoint's async inference config (``DescribeEndpoint``,
``DescribeEndpointConfig``), makes (or finds) the queue ``aiosagemaker-<endpoint>`` with a
dead-letter queue and a policy that lets only the endpoint's success and error topics send,
subscribes it to those topics, and prints the queue URL and the commands that use it. Run twice,
it changes nothing the second time, and says so. ``teardown`` removes what ``setup`` made (the
queues it tagged, and their subscriptions), nothing else: never a topic. See
:mod:`._notifications_setup` for the steps and :mod:`._queue_policy` for the policy and why.

Delivery defaults to the SNS envelope (``--no-raw-delivery``): SNS signs each envelope, so
``SqsNotifications(verifier=SnsSignatureVerifier(...))`` can prove a notification came from the
endpoint's topics and may then use a response body it carries; a raw message cannot be checked.
``SqsNotifications`` reads both. ``--raw-delivery`` saves the envelope's ~1 KB per message.

Exit status: 0 done (or nothing to do); 2 usage (a bad queue name, a queue of that name that is
not setup's); 3 AWS or configuration (no credentials or region, the endpoint not found, not
asynchronous, or without notification topics; any refused call).
"""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING, Any

from ._common import EXIT_CONFIG, EXIT_OK, EXIT_USAGE, PROG, CliError
from ._queue_policy import check_queue_name, default_queue_name

if TYPE_CHECKING:
    from ._notifications_setup import Change, SetupResult, TeardownResult

__all__ = ["add_notifications_parser", "run_notifications"]


def add_notifications_parser(commands: Any, aws: argparse.ArgumentParser) -> None:
    """Add ``notifications`` (with its ``setup`` and ``teardown`` actions) to ``commands``;
    ``aws``: the AWS and debug options every AWS command takes."""
    common = argparse.ArgumentParser(add_help=False, parents=[aws])
    common.add_argument("endpoint", metavar="ENDPOINT", help="the async endpoint's name")
    common.add_argument(
        "--queue-name",
        metavar="NAME",
        help="the queue (default aiosagemaker-ENDPOINT); its dead-letter queue is NAME-dlq",
    )
    common.add_argument(
        "--dry-run", action="store_true", help="print what would change, change nothing"
    )
    notifications = commands.add_parser(
        "notifications",
        help="wire an endpoint's SNS notification topics to an SQS queue (setup, teardown)",
        description="Set up (or tear down) an SQS queue that receives an async endpoint's "
        "success and error notifications, for --watcher sqs. SageMaker's, SQS's and SNS's "
        "endpoints follow AWS_ENDPOINT_URL_SAGEMAKER / _SQS / _SNS.",
        epilog="exit status: 0 done, 2 usage, 3 AWS/configuration",
    )
    actions = notifications.add_subparsers(
        dest="notifications_action", metavar="ACTION", required=True
    )
    setup = actions.add_parser(
        "setup",
        parents=[common],
        help="make the queue, its dead-letter queue, policy and subscriptions (idempotent)",
        description="Read the endpoint's AsyncInferenceConfig, make (or reuse) the queue and a "
        "dead-letter queue, let only the endpoint's success and error topics send to it, "
        "subscribe it to them, and print the queue URL and the commands that use it. A second "
        "run changes nothing.",
    )
    setup.add_argument(
        "--raw-delivery",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="deliver the notification itself, without the SNS envelope (default: the "
        "envelope, which SNS signs, so that SnsSignatureVerifier can check it)",
    )
    actions.add_parser(
        "teardown",
        parents=[common],
        help="remove what setup made: subscriptions, queue, dead-letter queue",
        description="Remove the subscriptions, the queue and the dead-letter queue that setup "
        "made for the endpoint (the queues it tagged), nothing else: never a topic, never a "
        "queue without setup's tags.",
    )


async def run_notifications(args: argparse.Namespace) -> int:
    """Run ``notifications setup`` or ``teardown``; print what changed."""
    from botocore.exceptions import BotoCoreError, ClientError

    from aiosagemaker import AwsContext

    from ._notifications_setup import setup, teardown

    queue_name = args.queue_name or default_queue_name(args.endpoint)
    try:
        check_queue_name(queue_name)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    aws = AwsContext(region_name=args.region, profile=args.profile)
    try:
        sqs = await aws.client("sqs", pool=1)
        sns = await aws.client("sns", pool=1)
        if args.notifications_action == "setup":
            result = await setup(
                sagemaker=await aws.client("sagemaker", pool=1),
                sqs=sqs,
                sns=sns,
                endpoint=args.endpoint,
                queue_name=queue_name,
                region=sqs.meta.region_name,
                raw_delivery=args.raw_delivery,
                dry_run=args.dry_run,
            )
            _print_setup(result, raw_delivery=args.raw_delivery, dry_run=args.dry_run)
        else:
            removed = await teardown(
                sqs=sqs,
                sns=sns,
                endpoint=args.endpoint,
                queue_name=queue_name,
                dry_run=args.dry_run,
            )
            _print_teardown(removed, endpoint=args.endpoint, dry_run=args.dry_run)
    except ClientError as exc:  # refused: permissions, a name SQS deleted a minute ago ...
        raise CliError(str(exc), EXIT_CONFIG) from None
    except (BotoCoreError, OSError) as exc:  # no credentials or region, unreachable ...
        raise CliError(f"{type(exc).__name__}: {exc}", EXIT_CONFIG) from None
    finally:
        await aws.aclose()
    return EXIT_OK


def _print_changes(changes: list[Change], *, dry_run: bool) -> None:
    print("plan (--dry-run: nothing was changed):" if dry_run else "changed:")
    for change in changes:
        print(f"  {change.text}")


def _print_setup(result: SetupResult, *, raw_delivery: bool, dry_run: bool) -> None:
    topics = result.endpoint
    print(f"endpoint {topics.endpoint} (endpoint config {topics.config_name})")
    print(f"  success topic: {topics.success_topic or 'none'}")
    print(f"  error topic:   {topics.error_topic or 'none'}")
    if result.changes:
        _print_changes(result.changes, dry_run=dry_run)
    else:
        print(f"nothing to change: queue {result.queue_name} is set up for {topics.endpoint}")
    if result.queue_url is None:
        print(f"queue: {result.queue_name} (not created: --dry-run)")
        return
    url = result.queue_url
    endpoint = shlex.quote(topics.endpoint)
    sqs = f"--watcher sqs --queue-url {shlex.quote(url)}"
    print(f"queue: {url}")
    print("use it:")
    print(f'  {PROG} invoke {endpoint} --data \'{{"inputs": "hello"}}\' --wait {sqs}')
    print(f"  {PROG} batch {endpoint} inputs.jsonl -o results.jsonl {sqs}")
    print(f"  {PROG} bench {endpoint} --rate 50 --duration 30s {sqs}")
    print("from Python:")
    print("  from aiosagemaker import AsyncInvoker, SqsNotifications")
    print(f"  watcher = SqsNotifications(queue_url={url!r})")
    print(f"  async with AsyncInvoker({topics.endpoint!r}, watcher=watcher) as invoker: ...")
    if not raw_delivery:
        # Envelopes are signed by SNS; the verifier fetches SNS's certificate over HTTPS.
        arns = ", ".join(repr(t) for t in topics.topics)
        print("  # to check SNS's signature on each envelope (and use included responses):")
        print(f"  # SqsNotifications(..., verifier=SnsSignatureVerifier(topic_arns=[{arns}]))")


def _print_teardown(result: TeardownResult, *, endpoint: str, dry_run: bool) -> None:
    if result.changes:
        _print_changes(result.changes, dry_run=dry_run)
    else:
        print(f"nothing to remove: no queue {result.queue_name} made by setup for {endpoint}")
    for note in result.notes:
        print(note)
    if result.changes and not dry_run:
        print("(SQS lets a queue of the same name be created again after 60 seconds)")
