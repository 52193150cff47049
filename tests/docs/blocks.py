"""The fenced blocks of the project's Markdown, and the pieces the tests that run them share.

``test_readme_blocks.py`` (README.md) and ``test_docs_blocks.py`` (the site, ``docs/**/*.md``)
each keep a registry, ``COVERED_BY``, naming for every block (found by the heading above it and its
first line, never by line number) the test that runs or checks it; ``check_registry`` fails on a
block its registry does not name, so a new block cannot go untested, and on an entry naming a
block that is gone or a test that does not exist.

The helpers run a block's command lines as a user would, with only the names a user replaces
substituted (each substituted text must be in the line, so the block and the test cannot drift
apart): ``aiosagemaker`` lines in this process through ``aiosagemaker.cli.main`` (a child Python
costs a second of imports), the local stack, which serves until stopped, as a child.
"""

from __future__ import annotations

import ast
import os
import re
import runpy
import shlex
import socket
import subprocess
import sys
import tomllib
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from packaging.requirements import Requirement

from aiosagemaker.cli import main

if TYPE_CHECKING:
    import pytest

ROOT = Path(__file__).parents[2]
#: the directory of this environment's ``aiosagemaker`` and ``python`` (``.venv/bin``)
BIN = Path(sys.executable).parent

#: MyST directives whose body is Markdown (parsed for the code blocks inside) or a list of pages
#: (the toctree: ``make docs``, warnings as errors, checks every entry): not code. Any other
#: directive (``{literalinclude}``, ``{code-block}``, one not known here) is a block to register.
PROSE_DIRECTIVES = {
    "toctree", "note", "tip", "hint", "important", "warning", "caution", "attention", "danger",
    "error", "seealso", "admonition", "dropdown",
}  # fmt: skip


# --- blocks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown file."""

    line: int  # of its opening fence, from 1
    language: str  # "" for a plain ``` block; "{name}" for a MyST directive
    code: str
    heading: str  # the text of the nearest heading above it, without the #s
    #: the rest of the opening fence: a directive's argument (``{literalinclude} PATH``)
    argument: str = ""
    #: the file, for messages (``README.md``, ``docs/tutorial.md``)
    source: str = field(default="", compare=False)

    @property
    def directive(self) -> str | None:
        return self.language[1:-1] if self.language.startswith("{") else None

    @property
    def first_line(self) -> str:
        """What the block is known by: its first line of code, or a directive and its argument."""
        if self.directive is not None:
            return f"{self.language} {self.argument}".strip()
        return self.code.splitlines()[0].strip() if self.code.strip() else ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.heading, self.first_line)

    @property
    def is_code(self) -> bool:
        return self.directive not in PROSE_DIRECTIVES

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


_FENCE = re.compile(r"\s*(`{3,}|~{3,}|:{3,})\s*(\{[\w:-]+\}|[\w+-]*)\s*(.*?)\s*")


def parse_blocks(text: str, source: str = "") -> list[Block]:
    """Every fenced block, in order: ``#`` lines inside a block are not headings. The body of a
    prose directive (``{note}``, ``:::{tip}``, the toctree) is parsed for the blocks inside it."""
    return _parse(text.splitlines(), source, offset=0, heading="")


def _parse(lines: list[str], source: str, *, offset: int, heading: str) -> list[Block]:
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.fullmatch(line)
        if fence and (fence.group(1)[0] != ":" or fence.group(2).startswith("{")):
            marks, language, argument = fence.groups()
            close = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == marks), None)
            assert close is not None, f"{source}:{offset + i + 1}: a fence that is never closed"
            code = "\n".join(lines[i + 1 : close])
            block = Block(offset + i + 1, language, code, heading, argument, source)
            blocks.append(block)
            if not block.is_code:
                blocks += _parse(
                    lines[i + 1 : close], source, offset=offset + i + 1, heading=heading
                )
            i = close + 1
            continue
        if match := re.match(r"#{1,6} (.+)", line):
            heading = match.group(1).strip()
        i += 1
    return blocks


K = TypeVar("K", bound=Hashable)


def defined_tests(path: Path) -> set[str]:
    """The test functions a file defines, as ``name`` and ``Class::name``."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {
                f"{node.name}::{f.name}"
                for f in node.body
                if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return names


def node_ids(tests: str | tuple[str, ...]) -> tuple[str, ...]:
    return (tests,) if isinstance(tests, str) else tests


def check_registry(
    what: str,
    blocks: list[Block],
    key: Callable[[Block], K],
    covered_by: Mapping[K, str | tuple[str, ...]],
) -> None:
    """Every code block of ``blocks`` is named by ``covered_by`` (by ``key``), every entry names
    a block there, and every test an entry names exists (``path::function``, from the root)."""
    code = [b for b in blocks if b.is_code]
    keys = [key(b) for b in code]
    duplicated = {k for k in keys if keys.count(k) > 1}
    assert not duplicated, f"blocks that heading + first line cannot tell apart: {duplicated}"
    untested = [f"{b.where} {key(b)}" for b in code if key(b) not in covered_by]
    assert not untested, f"{what} blocks no test runs or checks (add them to COVERED_BY):\n" + (
        "\n".join(untested)
    )
    stale = [k for k in covered_by if k not in keys]
    assert not stale, f"COVERED_BY entries that match no {what} block: {stale}"
    defined: dict[str, set[str]] = {}
    for k, tests in covered_by.items():
        for node_id in node_ids(tests):
            path, _, function = node_id.partition("::")
            assert function, f"{k}: {node_id!r} names no test function"
            assert (ROOT / path).is_file(), f"{k}: no test file {path}"
            if path not in defined:
                defined[path] = defined_tests(ROOT / path)
            assert function.split("[")[0] in defined[path], f"{k}: {path} defines no {function}"


# --- command lines ---------------------------------------------------------------------------


def commands(block: Block, *starts: str) -> list[str]:
    """The block's command lines (``\\`` continuations joined), one per ``starts``, each
    beginning with its start: a line added to the block fails the test that runs it."""
    logical: list[str] = []
    pending = ""
    for line in block.code.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            logical.append(line.strip())
    assert [line.split()[: len(s.split())] for line, s in zip(logical, starts, strict=False)] == [
        s.split() for s in starts
    ] and len(logical) == len(starts), f"{block.where}: {logical}"
    return logical


def substituted(line: str, *replacements: tuple[str, str]) -> str:
    for old, new in replacements:
        assert old in line, f"the documented line no longer has {old!r}: {line}"
        line = line.replace(old, new)
    return line


@dataclass
class Ran:
    status: int
    out: str
    err: str


def run_command(
    capsys: pytest.CaptureFixture[str], line: str, *replacements: tuple[str, str]
) -> Ran:
    """A documented command line, substituted, run in this process as ``aiosagemaker ARGS``."""
    argv = shlex.split(substituted(line, *replacements), comments=True)
    assert argv[0] == "aiosagemaker", line
    capsys.readouterr()
    status = main(argv[1:])
    out = capsys.readouterr()
    return Ran(status, out.out, out.err)


def calls_of(path: Path, test: str, helper: str) -> list[list[str]]:
    """The arguments ``test`` passes to ``helper(capsys, ...)``: strings as they are, any name
    (the test's endpoint) as ``my-endpoint``."""
    tree = ast.parse(path.read_text())
    (function,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == test]
    calls = []
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == helper:
            args = node.args[1:]
            if all(isinstance(a, ast.Constant | ast.Name) for a in args):
                calls.append(
                    [a.value if isinstance(a, ast.Constant) else "my-endpoint" for a in args]
                )
    return calls


# --- pip install -----------------------------------------------------------------------------


def project() -> dict[str, Any]:
    """pyproject.toml's ``[project]``."""
    table: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return table


def extra_requires(extra: str) -> dict[str, Requirement]:
    """The distributions an extra of the project requires, by normalized name."""
    requirements = project()["optional-dependencies"][extra]
    return {(r := Requirement(text)).name.lower().replace("_", "-"): r for text in requirements}


# --- the local stack, as a child -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class Child:
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def printed(self) -> list[str]:
        """What the stack printed, up to its last line (the control URL)."""
        assert self.process.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("# control: "):
            line = self.process.stdout.readline()
            if not line:
                self.log.seek(0)
                raise AssertionError(f"the stack exited early:\n{self.log.read().decode()}")
            lines.append(line.decode().rstrip("\n"))
        return lines

    def stop(self) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()  # --watch-stdin: stop
        try:
            status = self.process.wait(timeout=30)
        finally:
            self.process.stdout.close()
            self.log.close()
        return status


def start_stack(argv: list[str], tmp_path: Path) -> Child:
    """``aiosagemaker local ...`` as a child, without the caller's AWS variables."""
    # --watch-stdin (a hidden flag): the stack stops when its stdin closes, as with Ctrl-C.
    log = open(tmp_path / "stack.log", "w+b")
    process = subprocess.Popen(
        [*argv, "--watch-stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )
    return Child(process, log)


def export_pairs(lines: list[str]) -> list[tuple[str, str]]:
    """The (name, value) pairs of ``export`` lines, in order."""
    pairs = []
    for line in lines:
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            for word in words[1:]:
                name, _, value = word.partition("=")
                pairs.append((name, value))
    return pairs


# --- the documentation site ------------------------------------------------------------------

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))


def page_blocks(page: Path) -> list[Block]:
    """Every fenced block of a page of ``docs/``."""
    return parse_blocks(page.read_text(), page.relative_to(ROOT).as_posix())


def docs_key(block: Block) -> tuple[str, str, str]:
    """A block of the site by its page (under ``docs/``), heading and first line."""
    return (block.source.removeprefix("docs/"), block.heading, block.first_line)


def docs_block(page: str, heading: str, first_line: str) -> Block:
    """The one block of ``docs/PAGE`` under ``heading`` whose first line is ``first_line``."""
    found = [b for b in page_blocks(DOCS / page) if docs_key(b) == (page, heading, first_line)]
    assert len(found) == 1, f"docs/{page} has {len(found)} blocks under {heading!r} {first_line!r}"
    return found[0]


def run_example(monkeypatch: pytest.MonkeyPatch, line: str, *replacements: tuple[str, str]) -> int:
    """A page's ``python examples/NAME.py ARGS`` line, substituted, run as ``python`` would run
    it from the repository's root (the file as ``__main__``, those arguments in ``sys.argv``),
    in this process; return its exit status."""
    argv = shlex.split(substituted(line, *replacements), comments=True)
    assert argv[0] == "python" and argv[1].startswith("examples/"), line
    monkeypatch.setattr(sys, "argv", argv[1:])
    try:
        runpy.run_path(str(ROOT / argv[1]), run_name="__main__")
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            return exit.code or 0
        print(exit.code, file=sys.stderr)  # sys.exit("message"): status 1
        return 1
    return 0


NOTIFICATIONS_TEST = ROOT / "tests/application/test_notifications_setup.py"


def notifications_lines_run(lines: list[str]) -> list[tuple[str, str, bool]]:
    """Each ``aiosagemaker notifications`` line as (action, endpoint, dry run), checked to be one
    that ``test_notifications_setup.py`` runs against the local stack."""
    from aiosagemaker.cli._main import build_parser

    ran = calls_of(
        NOTIFICATIONS_TEST,
        "test_setup_wires_the_queue_to_the_endpoints_topics_and_teardown_undoes_it",
        "run",
    )
    parsed = []
    for line in lines:
        argv = shlex.split(line, comments=True)
        assert argv[1:] in ran, f"test_notifications_setup.py does not run {line}"
        args = build_parser().parse_args(argv[1:])
        parsed.append((args.notifications_action, args.endpoint, args.dry_run))
    return parsed
