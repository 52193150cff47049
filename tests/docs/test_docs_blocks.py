"""The code blocks of the documentation (``docs/``), run or checked as a reader would use them.

Every fenced block of the pages is in ``COVERED_BY`` (by its page, the heading above it and its
first line; a directive by its name and argument), with the test that runs or checks it:
``test_every_docs_block_is_covered`` fails on a block it does not name, so a new block cannot go
untested. The parser, the registry check and the helpers that run a line are ``blocks.py``'s,
shared with ``test_readme_blocks.py``.

- Python on the pages is either a file of ``examples/`` included with ``literalinclude``, run by
  ``test_docs_examples.py`` (with the page's command line, where it has one), or a fenced
  ``python`` block, executed here with the names the page tells the reader to fill in.
- A fenced ``bash`` block right after a ``% tested: shell`` line (a MyST comment, invisible on the
  page) runs in bash against the local stack, with the variables the tutorial has the reader set:
  the stack's ``AWS_*`` variables, ``ENDPOINT`` and ``QUEUE_URL``. It must exit 0.
- The tutorial runs as written, in this process but for ``aiosagemaker local`` (a child, as the
  reader's first terminal): its printed environment and the output of its example are compared
  with the page's, line by line, ports, ids and the token aside.
- ``pip install`` lines name extras that exist and require what the line says; the limits diagram
  names the package's own limits, with the bounds it draws.
- The IAM policy documents of ``docs/policies/`` are JSON with only the actions the client uses,
  and the queue policy is the README's.

``make docs`` builds the site with warnings as errors (a missing included file is one).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from blocks import (
    BIN,
    DOCS,
    PAGES,
    ROOT,
    Block,
    check_registry,
    commands,
    docs_block,
    docs_key,
    export_pairs,
    extra_requires,
    node_ids,
    notifications_lines_run,
    page_blocks,
    parse_blocks,
    project,
    run_command,
    run_example,
    start_stack,
    substituted,
)

from aiosagemaker.local import EndpointInfo, LocalStack

MARK = "% tested: shell"
HERE = "tests/docs/test_docs_blocks.py"
EXAMPLES_TESTS = "tests/docs/test_docs_examples.py"


def _t(function: str) -> str:
    return f"{HERE}::{function}"


def _e(function: str) -> str:
    return f"{EXAMPLES_TESTS}::{function}"


#: Each block of the site (page, heading, first line) and the test or tests that run or check it.
COVERED_BY: dict[tuple[str, str, str], str | tuple[str, ...]] = {
    ("index.md", "aiosagemaker", "pip install aiosagemaker            # the client"): _t("test_pip_install_lines"),
    # --- the tutorial
    ("tutorial.md", "1. Install", "pip install 'aiosagemaker[local]'"): _t("test_pip_install_lines"),
    ("tutorial.md", "2. Start the local stack", "aiosagemaker local --endpoint my-endpoint --model sleep:0.05"): _t("test_tutorial"),
    ("tutorial.md", "2. Start the local stack", "export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:41459"): _t("test_tutorial"),
    ("tutorial.md", "2. Start the local stack", "export ENDPOINT=my-endpoint"): _t("test_tutorial"),
    ("tutorial.md", "3. A first request, from the command line", """aiosagemaker invoke "$ENDPOINT" --data '{"inputs": "hello"}'"""): _t("test_tutorial"),
    ("tutorial.md", "4. A first result, from Python", "{literalinclude} ../examples/first_result.py"): (
        _t("test_tutorial"),
        _e("test_first_result_with_s3_polling"),
    ),
    ("tutorial.md", "4. A first result, from Python", "python examples/first_result.py"): _t("test_tutorial"),
    ("tutorial.md", "4. A first result, from Python", "inference id: 3f0c..."): _t("test_tutorial"),
    # --- how-to guides
    ("how-to/million-inputs.md", "Send a million inputs", "{literalinclude} ../../examples/million_inputs.py"): _e("test_million_inputs_streams_every_input_once"),
    ("how-to/million-inputs.md", "Send a million inputs", "python examples/million_inputs.py 1000000"): _e("test_million_inputs_streams_every_input_once"),
    ("how-to/fastapi.md", "Run in a FastAPI service", "pip install aiosagemaker fastapi uvicorn     # or, from a clone: pip install -e '.[examples]'"): _t("test_pip_install_lines"),
    ("how-to/fastapi.md", "Run in a FastAPI service", "{literalinclude} ../../examples/fastapi_service.py"): _e("test_fastapi_service"),
    ("how-to/fastapi.md", "Run in a FastAPI service", "cd examples && uvicorn fastapi_service:app --port 8000"): _e("test_fastapi_service"),
    ("how-to/load-test.md", "From the command line", 'aiosagemaker bench "$ENDPOINT" --rate 20 --duration 1s --watcher sqs --queue-url "$QUEUE_URL" \\'): _t("test_shell_block"),
    ("how-to/load-test.md", "From Python", "{literalinclude} ../../examples/load_test.py"): _e("test_load_test_thresholds"),
    ("how-to/load-test.md", "From Python", "python examples/load_test.py --rate 50 --duration 60 --threshold 'e2e.p99<5s'"): _e("test_load_test_thresholds"),
    ("how-to/resume-batch.md", "Run, interrupt, run again", """seq 1 20 | sed 's/.*/{"inputs": "item &"}/' > inputs.jsonl     # 20 payloads, one a line"""): _t("test_shell_block"),
    ("how-to/resume-batch.md", "From S3 to S3, on any machine", 'aiosagemaker batch "$ENDPOINT" s3://my-bucket/inputs/ -o s3://my-bucket/results/'): _e("test_batch_s3_to_s3_runs_then_resumes"),
    ("how-to/resume-batch.md", "From S3 to S3, on any machine", "{literalinclude} ../../examples/batch_s3_to_s3.py"): _e("test_batch_s3_to_s3_runs_then_resumes"),
    ("how-to/notifications.md", "In one command", "aiosagemaker notifications setup my-endpoint --dry-run   # print the plan, change nothing"): (
        "tests/application/test_notifications_setup.py::test_setup_wires_the_queue_to_the_endpoints_topics_and_teardown_undoes_it",
        _t("test_notifications_lines"),
    ),
    ("how-to/notifications.md", "Raw delivery or the SNS envelope", "from aiosagemaker import SnsSignatureVerifier, SqsNotifications"): _t("test_python_block"),
    ("how-to/notifications.md", "The queue policy", "{literalinclude} ../policies/queue-policy.json"): (
        _t("test_policy_document"),
        _t("test_the_queue_policy_is_the_readmes"),
    ),
    ("how-to/iam.md", "Invoking", "{literalinclude} ../policies/invoke.json"): _t("test_policy_document"),
    ("how-to/iam.md", "Watching with `S3Polling` (the default)", "{literalinclude} ../policies/watcher-s3-polling.json"): _t("test_policy_document"),
    ("how-to/iam.md", "Watching with `SqsNotifications`", "{literalinclude} ../policies/watcher-sqs.json"): _t("test_policy_document"),
    ("how-to/iam.md", "Watching with `SqsNotifications`", "{literalinclude} ../policies/outputs-kms.json"): _t("test_policy_document"),
    ("how-to/iam.md", "Staging payloads over 128,000 bytes", "{literalinclude} ../policies/staging.json"): _t("test_policy_document"),
    ("how-to/iam.md", "Staging payloads over 128,000 bytes", "{literalinclude} ../policies/staging-kms.json"): _t("test_policy_document"),
    ("how-to/iam.md", "Staging payloads over 128,000 bytes", "{literalinclude} ../policies/endpoint-role-staging.json"): _t("test_policy_document"),
    ("how-to/iam.md", "Setting up notifications: `aiosagemaker notifications setup` and `teardown`", "{literalinclude} ../policies/notifications-setup.json"): _t("test_policy_document"),
    ("how-to/iam.md", "Setting up notifications: `aiosagemaker notifications setup` and `teardown`", "{literalinclude} ../policies/notifications-teardown.json"): _t("test_policy_document"),
    # --- explanations
    ("explanation/limits-aimd.md", "Limits and AIMD", "submit(payload)   validate, encode"): _t("test_limits_diagram"),
}  # fmt: skip


def _blocks() -> list[Block]:
    return [block for page in PAGES for block in page_blocks(page)]


def _block(page: str, heading: str, first_line: str) -> Block:
    """The block a test runs; it must be in the registry."""
    assert (page, heading, first_line) in COVERED_BY, (page, heading, first_line)
    return docs_block(page, heading, first_line)


def _marked(block: Block) -> bool:
    """Whether a ``% tested: shell`` line stands right above the block's fence."""
    lines = (ROOT / block.source).read_text().splitlines()
    return block.line > 1 and lines[block.line - 2].strip() == MARK


def _params(language: str, *, marked_only: bool) -> list[object]:
    return [
        pytest.param(block.code, id=f"{block.source.removeprefix('docs/')}:{block.line}")
        for block in _blocks()
        if block.language == language and (_marked(block) or not marked_only)
    ]


SHELL_BLOCKS = _params("bash", marked_only=True)
PYTHON_BLOCKS = _params("python", marked_only=False)


def test_every_docs_block_is_covered() -> None:
    check_registry("docs", _blocks(), docs_key, COVERED_BY)


def test_the_tests_that_run_every_block_of_a_kind_run_the_registered_ones() -> None:
    # test_shell_block runs the marked bash blocks, test_python_block the python blocks and
    # test_policy_document the policy files: a block registered to one of them is one it runs.
    runs = {
        _t("test_shell_block"): lambda b: b.language == "bash" and _marked(b),
        _t("test_python_block"): lambda b: b.language == "python",
        _t("test_policy_document"): lambda b: (
            b.directive == "literalinclude"
            and re.fullmatch(r"(\.\./)+policies/[\w-]+\.json", b.argument) is not None
            and (DOCS / "policies" / Path(b.argument).name).is_file()
        ),
    }
    for test, runs_it in runs.items():
        registered = {k for k, tests in COVERED_BY.items() if test in node_ids(tests)}
        run = {docs_key(b) for b in _blocks() if runs_it(b)}
        assert registered == run, (test, registered ^ run)


def test_the_block_parser_reads_myst() -> None:
    text = "\n".join(
        [
            "# Page",
            "```{literalinclude} ../examples/x.py",
            ":language: python",
            "```",
            "## Part",
            ":::{note}",
            "~~~bash",
            "echo inside",
            "~~~",
            ":::",
            "```text",
            "out",
            "```",
            "```{toctree}",
            ":hidden:",
            "",
            "a",
            "```",
        ]
    )
    blocks = parse_blocks(text, "page.md")
    assert blocks == [
        Block(2, "{literalinclude}", ":language: python", "Page", "../examples/x.py"),
        Block(6, "{note}", "~~~bash\necho inside\n~~~", "Part"),
        Block(7, "bash", "echo inside", "Part"),
        Block(11, "text", "out", "Part"),
        Block(14, "{toctree}", ":hidden:\n\na", "Part"),
    ]
    assert [b.first_line for b in blocks] == [
        "{literalinclude} ../examples/x.py", "{note}", "echo inside", "out", "{toctree}"
    ]  # fmt: skip
    assert [b.is_code for b in blocks] == [True, False, True, True, False]
    assert blocks[2].where == "page.md:7"
    # The site's own: every code block's first line is code, and the headings are real ones.
    site = [b for b in _blocks() if b.is_code]
    assert len(site) >= 33
    for block in site:
        headings = re.findall(r"^#{1,6} (.+)$", (ROOT / block.source).read_text(), re.MULTILINE)
        assert block.heading in headings and block.first_line, block


def test_the_pages_have_tested_blocks() -> None:
    # A renamed mark would turn every shell test off silently.
    tested = {
        block.source.removeprefix("docs/")
        for block in _blocks()
        if block.language == "bash" and _marked(block)
    }
    assert {"how-to/load-test.md", "how-to/resume-batch.md"} <= tested
    for page in PAGES:
        marked = [b for b in page_blocks(page) if b.language == "bash" and _marked(b)]
        assert page.read_text().count(MARK) == len(marked), (
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
    # Each example is included by a page, and that block is registered to a test whose source
    # names the example (its page line, or load_example("NAME")).
    included = [b for b in _blocks() if b.directive == "literalinclude"]
    for example in sorted((ROOT / "examples").glob("*.py")):
        found = [b for b in included if b.argument.endswith(f"examples/{example.name}")]
        assert len(found) == 1, f"{example.name} is included by {len(found)} pages' blocks"
        (block,) = found
        tests = node_ids(COVERED_BY[docs_key(block)])
        sources = []
        for node_id in tests:
            path, _, function = node_id.partition("::")
            text = (ROOT / path).read_text()
            tree = ast.parse(text)
            (node,) = [n for n in tree.body if getattr(n, "name", None) == function]
            sources.append(ast.get_source_segment(text, node) or "")
        assert any(
            f'"{example.stem}"' in source or f"examples/{example.name}" in source
            for source in sources
        ), (example.name, tests)


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


# --- pip install -----------------------------------------------------------------------------


def _installs(line: str) -> list[str]:
    """What a ``pip install`` line installs (its words after the command, comment left out)."""
    words = shlex.split(line, comments=True)
    assert words[:2] == ["pip", "install"], line
    return words[2:]


def _third_party_imports(path: Path) -> set[str]:
    """The top-level modules a file imports that are not the standard library's."""
    tree = ast.parse(path.read_text())
    modules = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import)
            else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
            else []
        )
    }  # fmt: skip
    return {m for m in modules if m and m not in sys.stdlib_module_names}


def test_pip_install_lines() -> None:
    name = project()["name"]
    assert name == "aiosagemaker"
    # The client, and the local stack: moto's server is its S3, SNS and SQS.
    index = _block("index.md", "aiosagemaker", "pip install aiosagemaker            # the client")
    client, local = commands(index, "pip install", "pip install")
    assert _installs(client) == [name] and client.endswith("# the client")
    assert _installs(local) == [f"{name}[local]"]
    assert "the local stack" in local and "S3, SNS and SQS" in local
    moto = extra_requires("local")["moto"]
    assert "server" in moto.extras, moto
    tutorial = _block("tutorial.md", "1. Install", "pip install 'aiosagemaker[local]'")
    (line,) = commands(tutorial, "pip install")
    assert _installs(line) == [f"{name}[local]"]

    # The FastAPI service: what the example imports and the server of the next block, or the
    # project's `examples` extra, which requires both.
    fastapi = _block(
        "how-to/fastapi.md",
        "Run in a FastAPI service",
        "pip install aiosagemaker fastapi uvicorn     # or, from a clone: pip install -e '.[examples]'",
    )
    (line,) = commands(fastapi, "pip install")
    installs = set(_installs(line))
    assert _third_party_imports(ROOT / "examples/fastapi_service.py") | {"uvicorn"} == installs
    served = _block(
        "how-to/fastapi.md",
        "Run in a FastAPI service",
        "cd examples && uvicorn fastapi_service:app --port 8000",
    )
    assert shlex.split(commands(served, "cd", "curl")[0].split("&&")[1])[0] == "uvicorn"
    _, _, clone = line.partition("# or, from a clone: ")
    assert _installs(clone) == ["-e", ".[examples]"], clone
    assert installs - {name} <= set(extra_requires("examples")), extra_requires("examples")


# --- the tutorial ----------------------------------------------------------------------------

_PORT = re.compile(r"127\.0\.0\.1:(\d+)")
_ELIDED = re.compile(r"[\w-]*\.\.\.")


def _same_shape(shown: list[str], real: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Whether the lines a page shows are the real ones but for what it elides: each port
    (``127.0.0.1:PORT``) stands for one real port, each ``...`` (``3f0c...``: an id) for any
    text, the same text wherever the page repeats it. Return the ports and the elided texts."""
    assert len(shown) == len(real), (shown, real)
    ports: dict[str, str] = {}
    elided: dict[str, str] = {}
    for page_line, line in zip(shown, real, strict=True):
        pattern, holes, at = "", [], 0
        for match in re.finditer(f"{_PORT.pattern}|{_ELIDED.pattern}", page_line):
            pattern += re.escape(page_line[at : match.start()])
            if match.group(1):
                pattern += r"127\.0\.0\.1:(\d+)"
                holes.append(("port", match.group(1)))
            else:
                pattern += r"(\S+?)"
                holes.append(("elided", match.group(0)))
            at = match.end()
        pattern += re.escape(page_line[at:])
        found = re.fullmatch(pattern, line)
        assert found, f"the page shows\n  {page_line}\nthe command printed\n  {line}"
        for (kind, text), value in zip(holes, found.groups(), strict=True):
            seen = ports if kind == "port" else elided
            assert seen.setdefault(text, value) == value, (text, seen[text], value)
    assert len(set(ports.values())) == len(ports), ports  # two ports on the page, two real ones
    return ports, elided


def test_tutorial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2. The local stack, as the tutorial starts it, in "a first terminal" (a child process).
    start = _block(
        "tutorial.md",
        "2. Start the local stack",
        "aiosagemaker local --endpoint my-endpoint --model sleep:0.05",
    )
    shown = _block(
        "tutorial.md",
        "2. Start the local stack",
        "export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:41459",
    )
    names = _block("tutorial.md", "2. Start the local stack", "export ENDPOINT=my-endpoint")
    (line,) = commands(start, "aiosagemaker local")
    stack = start_stack([str(BIN / "aiosagemaker"), *shlex.split(line)[1:]], tmp_path)
    try:
        printed = stack.printed()
        # What it prints is the page's, line by line: the ports differ, the token is elided.
        ports, _ = _same_shape(shown.code.splitlines(), printed)

        # "In a second terminal, paste the export lines, and name the endpoint and its
        # notification queue": bash takes them as they are; the queue is the `queue:` line's.
        moto_port = re.search(r"127\.0\.0\.1:(\d+)/123456789012/", names.code)
        assert moto_port
        named = substituted(
            names.code, (moto_port.group(0), f"127.0.0.1:{ports[moto_port[1]]}/123456789012/")
        )
        script = "\n".join([*printed, named, "env"])
        done = subprocess.run(
            ["bash", "-euc", script], capture_output=True, text=True, timeout=30,
            env={"PATH": os.environ["PATH"]},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        exported = dict(export_pairs([*printed, *named.splitlines()]))
        assert {k: env[k] for k in exported} == exported
        assert ("ENDPOINT", "my-endpoint") in exported.items()
        assert f"# endpoint {env['ENDPOINT']}" in printed
        assert f"#   queue:   {env['QUEUE_URL']}" in printed
        for key, value in exported.items():
            monkeypatch.setenv(key, value)

        # 3. The first request from the command line prints the job; the second waits for the
        # output and prints it (the model echoes).
        first = _block(
            "tutorial.md",
            "3. A first request, from the command line",
            """aiosagemaker invoke "$ENDPOINT" --data '{"inputs": "hello"}'""",
        )
        sent, waited = commands(first, *['aiosagemaker invoke "$ENDPOINT"'] * 2)
        endpoint = ('"$ENDPOINT"', env["ENDPOINT"])
        ran = run_command(capsys, sent, endpoint)
        assert ran.status == 0, ran.err
        job = json.loads(ran.out)
        output_path = next(p for p in printed if p.startswith("#   output:  ")).split()[-1]
        assert job["output_location"] == f"{output_path}{job['inference_id']}.out"
        assert job["failure_location"].startswith(output_path.replace("/output/", "/failure/"))
        ran = run_command(capsys, waited, endpoint, ('"$QUEUE_URL"', env["QUEUE_URL"]))
        assert ran.status == 0, ran.err
        assert json.loads(ran.out) == {"inputs": "hello"}

        # 4. The example, from the repository's root, prints what the page shows.
        example = _block(
            "tutorial.md", "4. A first result, from Python", "python examples/first_result.py"
        )
        output = _block("tutorial.md", "4. A first result, from Python", "inference id: 3f0c...")
        (line,) = commands(example, "python examples/first_result.py")
        assert run_example(monkeypatch, line) == 0
        _, ids = _same_shape(output.code.splitlines(), capsys.readouterr().out.splitlines())
        assert list(ids) == ["3f0c..."]  # one id, in both lines
    finally:
        status = stack.stop()
    assert status == 0


# --- notifications ---------------------------------------------------------------------------


def test_notifications_lines() -> None:
    # test_notifications_setup.py runs these lines against the local stack (and checks the
    # queues, policy, subscriptions and notifications they make, and the queue URL setup
    # prints): here, that it runs the page's lines exactly, and they mean what their comments say.
    block = _block(
        "how-to/notifications.md",
        "In one command",
        "aiosagemaker notifications setup my-endpoint --dry-run   # print the plan, change nothing",
    )
    lines = commands(block, *["aiosagemaker notifications setup my-endpoint"] * 2)
    parsed = notifications_lines_run(lines)
    assert parsed == [("setup", "my-endpoint", True), ("setup", "my-endpoint", False)]
    assert "change nothing" in lines[0] and "prints the queue URL" in lines[1]


# --- limits ----------------------------------------------------------------------------------


def test_limits_diagram() -> None:
    import aiosagemaker
    from aiosagemaker import AsyncInvoker, Limits, Watcher

    diagram = _block(
        "explanation/limits-aimd.md", "Limits and AIMD", "submit(payload)   validate, encode"
    ).code
    # The names it draws are the package's: the limits of Limits, its classes, submit(payload)
    # returning the job, and the watcher's track.
    fields = {f.name for f in dataclasses.fields(Limits)}
    snake = set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", diagram))
    assert snake == {"max_pending", "admission_timeout", "max_concurrent_invocations"}
    assert snake <= fields, snake - fields
    camel = set(re.findall(r"\b[A-Z][a-z]+[A-Z]\w*\b", diagram))
    assert camel == {"InferenceJob"} and all(hasattr(aiosagemaker, n) for n in camel)
    submit = inspect.signature(AsyncInvoker.submit)
    assert diagram.startswith("submit(payload)") and "payload" in submit.parameters
    assert submit.return_annotation == "InferenceJob"
    assert "the watcher tracks the job" in diagram and callable(Watcher.track)

    # The bounds it draws: a pending slot per job, room in the send queue for a number of times
    # the in-flight limit, and that limit of invocations.
    factor = re.search(r"\((\d+) x max_concurrent_invocations encoded requests\)", diagram)
    assert factor, diagram
    invoker = AsyncInvoker(
        "my-endpoint", limits=Limits(max_concurrent_invocations=3, max_pending=7)
    )
    stats = invoker.statistics()
    assert (stats.admission.total, stats.send_queue.total, stats.invocations.total) == (
        7, int(factor.group(1)) * 3, 3,
    )  # fmt: skip
