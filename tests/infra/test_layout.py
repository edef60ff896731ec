"""The rooms of portal/ hold (docs/architecture.md): no import circles, rules without the
request, the import-linter contracts of pyproject.toml kept."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("web", "rules", "documents", "staff", "plugin_api", "infra")
#: What a rule or a document may take from Flask: the app's configuration, not a request.
REQUEST_NAMES = {"request", "session", "g", "url_for", "redirect", "render_template", "abort"}


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), counting every import,
    also those inside functions."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.find_modules_directly_imported_by(module):
            if not other.startswith("portal.") or other == "portal":
                continue
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module.startswith("portal.") and module not in index:
            visit(module)
    return found


def test_no_module_of_the_portal_imports_itself_through_others():
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    assert cycles(grimp.build_graph("portal")) == []


def test_every_module_lives_in_a_room():
    loose = sorted(p.name for p in (ROOT / "portal").glob("*.py"))
    assert loose == ["__init__.py", "cli.py", "demo.py"]
    folders = {p.name for p in (ROOT / "portal").iterdir() if (p / "__init__.py").exists()}
    assert set(ROOMS) <= folders


def test_rules_and_documents_take_nothing_of_the_request_from_flask():
    offenders = []
    for room in ("rules", "documents", "plugin_api"):
        for path in (ROOT / "portal" / room).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "flask":
                    used = {alias.name for alias in node.names} & REQUEST_NAMES
                    if used:
                        offenders.append(f"{path.relative_to(ROOT)}: {sorted(used)}")
    assert offenders == []


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
