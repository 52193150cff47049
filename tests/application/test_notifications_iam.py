"""The IAM policies of ``aiosagemaker notifications setup|teardown`` (docs/how-to/iam.md), checked
against every AWS call the commands make on the local stack.

A loopback relay stands in every ``AWS_ENDPOINT_URL*`` variable (any service, the global one
included) and forwards to the stack's moto server as received: whatever makes a call, botocore or
a request of our own, it passes there, and is recorded by its SigV4 credential scope (service)
and its operation (``X-Amz-Target`` for the JSON protocols, ``Action=`` for SNS's query protocol).
Each call is mapped to the IAM action(s) and resource that authorize it (the table below, from
the Service Authorization Reference), and must be allowed by a statement of the page's policy
(action, resource ARN with the placeholders filled in, condition); and the actions the runs used
must be exactly those the policy names.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from aiosagemaker.cli import main
from aiosagemaker.local import EndpointInfo, LocalStack

DOCS = Path(__file__).parents[2] / "docs"

# --- the relay ---------------------------------------------------------------------------------

# Hop-by-hop headers (RFC 9110 7.6.1), and the length, which is set anew.
_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "content-length"}
)
_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/[^/]+/([^/]+)/aws4_request")


@dataclass(frozen=True)
class Call:
    """One request that reached AWS: the signing service, the operation and its parameters."""

    service: str
    operation: str
    params: dict[str, Any]


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects
    server: _RecordingServer

    def do_POST(self) -> None:
        assert "chunked" not in self.headers.get("Transfer-Encoding", ""), "a chunked body"
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.calls.append(_call_of(self.headers, body))
        upstream = urlsplit(self.server.upstream)
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        try:
            # As received, the Host header included: the signature covers it.
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
        finally:
            connection.close()
        self.send_response_only(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_DELETE = do_HEAD = do_POST

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.upstream = upstream
        self.calls: list[Call] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take(self) -> list[Call]:
        """The calls recorded since the last ``take``."""
        calls, self.calls = self.calls, []
        return calls


def _call_of(headers: Any, body: bytes) -> Call:
    scope = _SCOPE.search(headers.get("Authorization", ""))
    service = scope.group(1) if scope else "unsigned"
    target = headers.get("X-Amz-Target")
    if target:  # the JSON protocols: SQS, SageMaker
        return Call(service, target.rpartition(".")[2], json.loads(body or b"{}"))
    form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    return Call(service, form.pop("Action", "?"), form)


@pytest.fixture
def relay(stack_env: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[_RecordingServer]:
    """Every AWS endpoint the commands could use points at the relay (one moto server behind)."""
    upstream = stack_env.info.sqs_url
    assert {stack_env.info.sns_url, stack_env.info.sagemaker_url} == {upstream}
    server = _RecordingServer(upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for suffix in ("", "_SAGEMAKER", "_SAGEMAKER_RUNTIME", "_S3", "_SNS", "_SQS", "_STS"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL{suffix}", server.url)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- from calls to IAM -------------------------------------------------------------------------

#: The IAM action authorizing each operation (Service Authorization Reference: SageMaker, SQS, SNS).
ACTIONS: dict[tuple[str, str], str] = {
    ("sagemaker", "DescribeEndpoint"): "sagemaker:DescribeEndpoint",
    ("sagemaker", "DescribeEndpointConfig"): "sagemaker:DescribeEndpointConfig",
    ("sqs", "GetQueueUrl"): "sqs:GetQueueUrl",
    ("sqs", "ListQueueTags"): "sqs:ListQueueTags",
    ("sqs", "GetQueueAttributes"): "sqs:GetQueueAttributes",
    ("sqs", "CreateQueue"): "sqs:CreateQueue",
    ("sqs", "TagQueue"): "sqs:TagQueue",
    ("sqs", "SetQueueAttributes"): "sqs:SetQueueAttributes",
    ("sqs", "DeleteQueue"): "sqs:DeleteQueue",
    ("sns", "ListSubscriptionsByTopic"): "sns:ListSubscriptionsByTopic",
    ("sns", "ListSubscriptions"): "sns:ListSubscriptions",
    ("sns", "Subscribe"): "sns:Subscribe",
    ("sns", "GetSubscriptionAttributes"): "sns:GetSubscriptionAttributes",
    ("sns", "SetSubscriptionAttributes"): "sns:SetSubscriptionAttributes",
    ("sns", "Unsubscribe"): "sns:Unsubscribe",
}


@dataclass(frozen=True)
class Request:
    """What IAM evaluates for one call: action, resource and the request's condition keys."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


def _requests(call: Call, *, region: str, account: str) -> list[Request]:
    action = ACTIONS.get((call.service, call.operation))
    assert action is not None, f"a call the table does not know: {call}"
    p = call.params
    if call.service == "sagemaker":
        kind, name = {
            "DescribeEndpoint": ("endpoint", p.get("EndpointName")),
            "DescribeEndpointConfig": ("endpoint-config", p.get("EndpointConfigName")),
        }[call.operation]
        assert name, call
        # SageMaker's ARNs keep names in lower case.
        return [Request(action, f"arn:aws:sagemaker:{region}:{account}:{kind}/{name.lower()}")]
    if call.service == "sqs":
        name = p.get("QueueName") or p["QueueUrl"].rsplit("/", 1)[1]
        resource = f"arn:aws:sqs:{region}:{account}:{name}"
        requests = [Request(action, resource)]
        if call.operation == "CreateQueue" and p.get("tags"):
            # Tags given to CreateQueue are authorized by sqs:TagQueue too (a dependent action).
            requests.append(Request("sqs:TagQueue", resource))
        return requests
    if call.operation == "Subscribe":
        context = (("sns:Protocol", p["Protocol"]), ("sns:Endpoint", p["Endpoint"]))
        return [Request(action, p["TopicArn"], context)]
    if "TopicArn" in p:
        return [Request(action, p["TopicArn"])]
    if "SubscriptionArn" in p:
        # A subscription is not a resource type of IAM's: its topic is (arn:...:TOPIC:ID).
        return [Request(action, p["SubscriptionArn"].rsplit(":", 1)[0])]
    return [Request(action, "*")]  # ListSubscriptions: no resource type


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = policy["Statement"]
    return statements


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _policy_actions(policy: dict[str, Any]) -> set[str]:
    return {a for s in _statements(policy) for a in _listed(s["Action"])}


def _allows(policy: dict[str, Any], request: Request) -> bool:
    context = dict(request.context)
    for statement in _statements(policy):
        assert statement["Effect"] == "Allow"
        if request.action not in _listed(statement["Action"]):
            continue
        if not any(fnmatchcase(request.resource, r) for r in _listed(statement["Resource"])):
            continue
        conditions = statement.get("Condition", {})
        assert set(conditions) <= {"StringEquals"}, conditions
        wanted = conditions.get("StringEquals", {})
        if all(context.get(key) == value for key, value in wanted.items()):
            return True
    return False


def _filled(path: Path | str, names: dict[str, str]) -> dict[str, Any]:
    text = path.read_text() if isinstance(path, Path) else path
    for placeholder, value in names.items():  # ENDPOINT-CONFIG before ENDPOINT
        text = text.replace(placeholder, value)
    document: dict[str, Any] = json.loads(text)
    return document


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    status = main(list(args))
    out = capsys.readouterr()
    assert status == 0, out.err
    return out.out


def test_the_policies_allow_every_call_of_setup_and_teardown_and_name_no_other(
    relay: _RecordingServer,
    local_stack: LocalStack,
    endpoint: EndpointInfo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = endpoint.name
    assert endpoint.success_topic_arn and endpoint.error_topic_arn
    region, account = endpoint.success_topic_arn.split(":")[3:5]
    sagemaker = boto3.client(
        "sagemaker", endpoint_url=local_stack.info.sagemaker_url, region_name=region
    )
    config = sagemaker.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    sagemaker.close()
    names = {
        "REGION": region,
        "ACCOUNT": account,
        "ENDPOINT-CONFIG": config.lower(),
        "ENDPOINT": name,
        "SUCCESS-TOPIC": endpoint.success_topic_arn.rsplit(":", 1)[1],
        "ERROR-TOPIC": endpoint.error_topic_arn.rsplit(":", 1)[1],
        "QUEUE": f"aiosagemaker-{name}",
    }
    setup_policy = _filled(DOCS / "policies" / "notifications-setup.json", names)
    teardown_policy = _filled(DOCS / "policies" / "notifications-teardown.json", names)

    # Every path of setup: the plan, the first run (creates), a rerun (finds the subscriptions),
    # the other delivery (switches them).
    _run(capsys, "notifications", "setup", name, "--dry-run")
    setup_dry = relay.take()
    assert f"create queue aiosagemaker-{name}" in _run(capsys, "notifications", "setup", name)
    assert "nothing to change" in _run(capsys, "notifications", "setup", name)
    assert "to raw delivery" in _run(capsys, "notifications", "setup", name, "--raw-delivery")
    setup_calls = setup_dry + relay.take()

    _run(capsys, "notifications", "teardown", name, "--dry-run")
    teardown_dry = relay.take()
    assert "delete dead-letter queue" in _run(capsys, "notifications", "teardown", name)
    assert "nothing to remove" in _run(capsys, "notifications", "teardown", name)
    teardown_calls = teardown_dry + relay.take()

    for calls, policy, which in (
        (setup_calls, setup_policy, "setup"),
        (teardown_calls, teardown_policy, "teardown"),
    ):
        requests = [r for c in calls for r in _requests(c, region=region, account=account)]
        for request in requests:
            assert _allows(policy, request), f"{which}'s policy does not allow {request}"
        # No action missing (every call is allowed, above), none unused.
        assert {r.action for r in requests} == _policy_actions(policy), which

    # The plans only read (what the page says a dry run needs).
    for call in setup_dry + teardown_dry:
        assert call.operation.startswith(("Describe", "Get", "List")), call
    assert {c.operation for c in setup_dry} >= {"DescribeEndpoint", "DescribeEndpointConfig"}
