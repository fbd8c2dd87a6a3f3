"""docs/architecture.md is true: each module's one job is its first docstring line, and each module
imports only what the document's table allows (function-level imports included).

The table is read from the document itself, so changing the code's layering means changing
the document in the same commit; a module missing from the table fails too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "tunectl"
DOC = REPO / "docs" / "architecture.md"
ONLY_IN = {"typer": {"cli", "console"}, "rich": {"report", "console"}}  # the edges
NEVER_IN = {  # training knows nothing of tuning; the CLI's edge answers --help without torch
    "optuna": {"config", "models", "recurrent", "sources", "sequences", "data", "train", "attacks", "runs", "numbers",
               "errors", "files"},
    "torch": {"cli", "console", "report", "storage", "studies", "results", "workers"},
}


def documented() -> dict[str, tuple[str, set[str]]]:
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \| (.+?) \|$", DOC.read_text(), flags=re.M)
    return {m: (job, set() if allowed.strip() == "—" else {a.strip() for a in allowed.split(",")})
            for m, job, allowed in rows if (PACKAGE / f"{m}.py").exists()}


def modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imports(module: str) -> tuple[set[str], set[str]]:
    """(tunectl modules, top-level third-party packages) that `module` imports anywhere in it."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    own, third = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top, *rest = node.module.split(".")
            if top == "tunectl":
                own |= {rest[0]} if rest else {a.name for a in node.names}
            else:
                third.add(top)
        elif isinstance(node, ast.Import):
            for a in node.names:
                top, *rest = a.name.split(".")
                if top == "tunectl" and rest:
                    own.add(rest[0])
                elif top != "tunectl":
                    third.add(top)
    return own - {module}, third


def test_every_module_is_in_the_table_with_its_one_job():
    table = documented()
    assert sorted(table) == modules(), "docs/architecture.md's module table and tunectl/ differ"
    for m in modules():
        doc = ast.get_docstring(ast.parse((PACKAGE / f"{m}.py").read_text())) or ""
        assert doc.splitlines()[0] == table[m][0], f"{m}.py's first docstring line is not the table's 'one job'"


@pytest.mark.parametrize("module", modules())
def test_a_module_imports_only_what_the_document_allows(module):
    own, third = imports(module)
    allowed = documented()[module][1]
    assert own <= allowed, f"{module} imports {sorted(own - allowed)}, which docs/architecture.md does not allow"
    for package, edges in ONLY_IN.items():
        assert module in edges or package not in third, f"{module} imports {package}: only {sorted(edges)} may"
    for package, banned in NEVER_IN.items():
        assert module not in banned or package not in third, f"{module} imports {package}, which it must not"


def test_the_layers_have_no_cycle():
    graph = {m: imports(m)[0] for m in modules()}
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import cycle: {' -> '.join((*path, m))}"
        if m in done:
            return
        for dep in graph.get(m, ()):
            visit(dep, (*path, m))
        done.add(m)

    for m in graph:
        visit(m, ())


def test_the_checker_sees_function_level_imports():
    """The rule would be empty if imports inside functions were missed: cli imports its core there."""
    own, third = imports("cli")
    assert {"tune", "runs", "diagnose"} <= own and "typer" in third
