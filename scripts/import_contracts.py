"""Two import-linter contract types the stock ones lack (loaded by ``lint-imports`` from the repo root).

- ``no_string_imports``: no ``importlib.import_module(...)`` / ``__import__(...)`` in the package. A string
  import is invisible to the import graph, so it can dodge the layers contract; import what you need with
  an import statement (inside a function when it must be lazy: the graph still sees it).
- ``no_cycles``: no import cycle between modules, function-level imports included (the graph has them;
  ``TYPE_CHECKING`` imports are left out with ``exclude_type_checking_imports``).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck

STRING_IMPORTS = {"import_module", "__import__"}


def package_files(package: str) -> list[Path]:
    """Every ``.py`` file of an importable package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{package} is not an importable package")
    root = Path(next(iter(spec.submodule_search_locations)))
    return sorted(root.rglob("*.py"))


def string_imports(file: Path) -> list[int]:
    """Line numbers of ``import_module(...)`` / ``__import__(...)`` calls in ``file``."""
    lines = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in STRING_IMPORTS:
                lines.append(node.lineno)
    return lines


class NoStringImportsContract(Contract):
    """Forbid string imports (``importlib.import_module``, ``__import__``) in ``package``."""

    package = fields.StringField()

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        found = {
            str(file): lines for file in package_files(str(self.package)) if (lines := string_imports(file))
        }
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for file, lines in check.metadata["found"].items():
            output.print_error(f"{file}: string import on line(s) {', '.join(map(str, lines))}")
            output.new_line()


def cycles(graph: ImportGraph, package: str) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), in the package."""
    modules = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & set(modules)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in modules:
        if module not in index:
            visit(module)
    return found


class NoCyclesContract(Contract):
    """Forbid import cycles between the modules of ``package``."""

    package = fields.StringField()

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        found = cycles(graph, str(self.package))
        return ContractCheck(kept=not found, metadata={"cycles": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for group in check.metadata["cycles"]:
            output.print_error("cycle: " + ", ".join(group))
            output.new_line()
