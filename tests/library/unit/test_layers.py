"""The three layers, from the outside: what an import loads, what a plain install pulls in.

``make lint`` runs the import contracts in pyproject.toml (``lint-imports``); these tests check
what those contracts cannot see: the modules an import really loads (lazy imports included), the
base dependencies, the contracts' lists against the package, and import cycles between a package
and its own modules, which import-linter's ``acyclic_siblings`` leaves out (#9).
"""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest

import aiosagemaker

PYPROJECT = Path(__file__).parents[3] / "pyproject.toml"

# What `import aiosagemaker` must not load: the application and the local stack, and the
# libraries only they use (rich: progress and tables; hdrh: the bench's histograms; moto;
# pyarrow: Parquet inputs and outputs).
APPLICATION_AND_LOCAL = (
    "aiosagemaker.batch",
    "aiosagemaker.bench",
    "aiosagemaker.cli",
    "aiosagemaker.local",
)
HEAVY = ("rich", "hdrh", "moto", "pyarrow")

# The only parts of the client library that the local stack may import.
SHARED_WITH_LOCAL = {"_core", "_exceptions"}


def _loaded_by(module: str, candidates: tuple[str, ...]) -> list[str]:
    """Import ``module`` in a fresh interpreter; return which of ``candidates`` it loaded."""
    code = (
        "import json, sys\n"
        # aiobotocore imports httpx when it is installed (the examples' extra installs it), and
        # httpx its own command line (click, rich): not ours to count, so it is kept out.
        "sys.modules['httpx'] = sys.modules['httpx2'] = None\n"
        f"import {module}\n"
        f"candidates = {list(candidates)!r}\n"
        "print(json.dumps(sorted({c for c in candidates for name in sys.modules"
        " if name == c or name.startswith(c + '.')})))\n"
    )
    # -I: no current directory on sys.path and no PYTHON* variables, so only the installed
    # package is imported, as a user's program would.
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def _pyproject() -> dict[str, Any]:
    with PYPROJECT.open("rb") as file:
        return tomllib.load(file)


def _names(requirements: list[str]) -> set[str]:
    """Distribution names of PEP 508 requirement strings, normalized (PEP 503)."""
    names = set()
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match is not None, requirement
        names.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


def _contract(contract_id: str) -> dict[str, Any]:
    contracts: list[dict[str, Any]] = _pyproject()["tool"]["importlinter"]["contracts"]
    [contract] = [c for c in contracts if c.get("id") == contract_id]
    return contract


def _client_modules() -> dict[str, bool]:
    """The client library's top-level modules (``_aws``, ``_core``, ...): name to is-package."""
    return {
        info.name: info.ispkg
        for info in pkgutil.iter_modules(aiosagemaker.__path__)
        if info.name.startswith("_") and not info.name.startswith("__")
    }


def test_import_loads_neither_the_application_nor_the_local_stack() -> None:
    assert _loaded_by("aiosagemaker", APPLICATION_AND_LOCAL + HEAVY) == []


def test_cli_imports_the_local_stack_only_in_its_commands() -> None:
    # pyproject.toml's layers contract lets the cli import the local stack because it does so
    # lazily, in the `local` and `demo` commands: `aiosagemaker invoke` never loads moto.
    assert _loaded_by("aiosagemaker.cli", ("aiosagemaker.local", "moto")) == []


def test_base_dependencies_leave_moto_to_the_local_extra() -> None:
    project = _pyproject()["project"]
    base = _names(project["dependencies"])
    assert "moto" not in base
    assert "moto" in _names(project["optional-dependencies"]["local"])
    # The CLI ships with the package (STYLE.md section 11): its libraries are base dependencies.
    assert {"rich", "hdrhistogram"} <= base


def test_contract_lists_name_every_client_module() -> None:
    # The layers contract is exhaustive by itself; the forbidden ones list modules by name, so a
    # new client module must be added to them (or to SHARED_WITH_LOCAL, deliberately).
    client = _client_modules()
    assert {"_core", "_exceptions", "_invoker", "_watchers"} <= client.keys()

    # as_packages = false in the local stack's contract: a package needs its `.**` entry too.
    forbidden_to_local = set(_contract("local")["forbidden_modules"])
    for name, is_package in client.items():
        if name in SHARED_WITH_LOCAL:
            continue
        assert f"aiosagemaker.{name}" in forbidden_to_local, name
        if is_package:
            assert f"aiosagemaker.{name}.**" in forbidden_to_local, name
    assert "aiosagemaker" in forbidden_to_local
    assert not {f"aiosagemaker.{name}" for name in SHARED_WITH_LOCAL} & forbidden_to_local

    forbidden_to_application = set(_contract("public-api")["forbidden_modules"])
    assert forbidden_to_application == {f"aiosagemaker.{name}" for name in client}


def _cycles(package: str) -> set[tuple[str, ...]]:
    """Every import cycle among ``package``'s modules, each as one closed chain of imports.

    As the contracts count them: `if TYPE_CHECKING:` imports and imports inside functions too.
    """
    graph = grimp.build_graph(package, exclude_type_checking_imports=False, cache_dir=None)
    cycles = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.add((importer, *back))
    return cycles


def test_no_import_cycles_between_modules() -> None:
    # Module by module, so that it also sees a package's __init__ and its own modules importing
    # each other (e.g. aiosagemaker._watchers._s3 importing aiosagemaker._watchers), which the
    # acyclic_siblings contract leaves out.
    assert sorted(_cycles("aiosagemaker")) == []


def test_the_cycle_check_sees_lazy_type_checking_and_package_cycles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "layers_probe"
    (package / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "",
        # a -> b inside a function, b -> a under TYPE_CHECKING only.
        "a.py": "def f() -> None:\n    from layers_probe import b\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from layers_probe import a\n",
        # A package and its own module, each importing the other.
        "sub/__init__.py": "from layers_probe.sub import d\n",
        "sub/d.py": "import layers_probe.sub\n",
    }
    for name, source in sources.items():
        (package / name).write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    cycles = {frozenset(cycle) for cycle in _cycles("layers_probe")}
    assert cycles == {
        frozenset({"layers_probe.a", "layers_probe.b"}),
        frozenset({"layers_probe.sub", "layers_probe.sub.d"}),
    }
