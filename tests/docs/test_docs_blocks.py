"""The code blocks of the documentation (``docs/``), run or checked as a reader would use them.

- Python on the pages is either a file of ``examples/`` included with ``literalinclude`` (run by
  ``test_docs_examples.py``), or a fenced ``python`` block, executed here with the names the page
  tells the reader to fill in.
- A fenced ``bash`` block right after a ``% tested: shell`` line (a MyST comment, invisible on the
  page) runs in bash against the local stack, with the variables the tutorial has the reader set:
  the stack's ``AWS_*`` variables, ``ENDPOINT`` and ``QUEUE_URL``. It must exit 0.
- The IAM policy documents of ``docs/policies/`` are JSON with only the actions the client uses,
  and the queue policy is the README's.

``make docs`` builds the site with warnings as errors (a missing included file is one).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aiosagemaker.local import EndpointInfo, LocalStack

ROOT = Path(__file__).parent.parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
MARK = "% tested: shell"


def _fenced(page: Path, language: str) -> list[tuple[int, str, bool]]:
    """Each ``language`` block of the page: (line number, code, preceded by the mark)."""
    lines = page.read_text().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() == f"```{language}":
            end = lines.index("```", i + 1)
            marked = i > 0 and lines[i - 1].strip() == MARK
            blocks.append((i + 1, "\n".join(lines[i + 1 : end]), marked))
    return blocks


def _params(language: str, *, marked_only: bool) -> list[object]:
    return [
        pytest.param(code, id=f"{page.relative_to(DOCS)}:{line}")
        for page in PAGES
        for line, code, marked in _fenced(page, language)
        if marked or not marked_only
    ]


SHELL_BLOCKS = _params("bash", marked_only=True)
PYTHON_BLOCKS = _params("python", marked_only=False)


def test_the_pages_have_tested_blocks() -> None:
    # A renamed mark would turn every shell test off silently.
    tested = {
        page.relative_to(DOCS).as_posix()
        for page in PAGES
        for _, _, marked in _fenced(page, "bash")
        if marked
    }
    assert {"tutorial.md", "how-to/load-test.md", "how-to/resume-batch.md"} <= tested
    for page in PAGES:
        text = page.read_text()
        assert text.count(MARK) == sum(marked for _, _, marked in _fenced(page, "bash")), (
            f"{page}: a '{MARK}' line not followed by a ```bash block"
        )


@pytest.mark.parametrize("code", SHELL_BLOCKS)
def test_shell_block(
    code: str, stack_env: LocalStack, endpoint: EndpointInfo, tmp_path: Path
) -> None:
    assert endpoint.queue_url is not None
    env = dict(os.environ)
    env.update(
        ENDPOINT=endpoint.name,
        QUEUE_URL=endpoint.queue_url,
        # The commands and `python` of this environment, as after `source .venv/bin/activate`.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("code", PYTHON_BLOCKS)
def test_python_block(code: str) -> None:
    # The names a page asks the reader to replace; the blocks build objects, they send nothing.
    names = {
        "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/my-endpoint-notifications",
        "SUCCESS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:my-endpoint-success",
        "ERROR_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:my-endpoint-error",
    }
    exec(compile(code, "<docs>", "exec"), {"__name__": "docs_block", **names})


def test_every_example_is_on_a_page_and_run_by_a_test() -> None:
    included = {
        m.group(1)
        for page in PAGES
        for m in re.finditer(r"```\{literalinclude\} (\S+)", page.read_text())
    }
    tests = (Path(__file__).parent / "test_docs_examples.py").read_text()
    for example in sorted((ROOT / "examples").glob("*.py")):
        assert any(path.endswith(f"examples/{example.name}") for path in included), example
        assert f'load_example("{example.stem}")' in tests, example


# --- IAM policies ---------------------------------------------------------------------------

#: What the client calls, by the IAM action that authorizes it (batch calls of SQS are authorized
#: by their single forms; HeadObject by s3:GetObject; ListObjectsV2 by s3:ListBucket).
USED_ACTIONS = {
    "sagemaker:InvokeEndpointAsync",
    "s3:ListBucket",
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:SendMessage",  # the queue policy: what SNS may do
    "kms:GenerateDataKey",
    "kms:Decrypt",
    # `aiosagemaker notifications setup|teardown` (notifications-*.json; checked call by call
    # against the local stack by tests/application/test_notifications_iam.py). sqs:TagQueue:
    # CreateQueue with tags.
    "sagemaker:DescribeEndpoint",
    "sagemaker:DescribeEndpointConfig",
    "sqs:GetQueueUrl",
    "sqs:ListQueueTags",
    "sqs:GetQueueAttributes",
    "sqs:CreateQueue",
    "sqs:TagQueue",
    "sqs:SetQueueAttributes",
    "sqs:DeleteQueue",
    "sns:ListSubscriptionsByTopic",
    "sns:ListSubscriptions",
    "sns:Subscribe",
    "sns:GetSubscriptionAttributes",
    "sns:SetSubscriptionAttributes",
    "sns:Unsubscribe",
}
#: Actions IAM gives no resource type: they can only be granted on "*" (the Service
#: Authorization Reference's SNS table; teardown lists the account's subscriptions).
NO_RESOURCE_TYPE = {"sns:ListSubscriptions"}
POLICIES = sorted((DOCS / "policies").glob("*.json"))


@pytest.mark.parametrize("path", POLICIES, ids=[p.name for p in POLICIES])
def test_policy_document(path: Path) -> None:
    policy = json.loads(path.read_text())
    assert policy["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in policy["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in policy["Statement"]:
        assert statement["Effect"] in ("Allow", "Deny")
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        assert set(actions) <= USED_ACTIONS, f"{path.name}: {actions}"
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        if resources == ["*"]:
            assert set(actions) <= NO_RESOURCE_TYPE, f"{path.name}: {actions} on *"
            continue
        assert all(
            r.startswith("arn:aws:") and "*" not in r.split(":", 5)[-1].split("/")[0]
            for r in resources
        ), resources
    # Every policy is on a page.
    assert any(f"policies/{path.name}" in page.read_text() for page in PAGES), path.name


def test_the_queue_policy_is_the_readmes() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", readme, re.DOTALL)
    queue_policies = [json.loads(b) for b in blocks if '"Statement"' in b]
    assert queue_policies == [json.loads((DOCS / "policies" / "queue-policy.json").read_text())]


def test_documented_constants_are_the_packages() -> None:
    # The reference states some constants by hand (autodoc would show their types' docstrings).
    import aiosagemaker
    import aiosagemaker.ray

    modules = {"client.rst": aiosagemaker, "ray.rst": aiosagemaker.ray}
    for page, module in modules.items():
        text = (DOCS / "reference" / page).read_text()
        stated = re.findall(r"\.\. data:: (\w+)\n(?:   :type: .*\n)?   :value: (.*)\n", text)
        assert stated, page
        for name, value in stated:
            assert getattr(module, name) == eval(value, vars(module)), f"{page}: {name}"
