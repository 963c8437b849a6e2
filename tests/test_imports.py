"""No import circle inside ``src/stargate``, and no import from a layer to one above it
(the architecture issue).

The graph is built from the source, not by importing it: every module-level import of a
``stargate`` module (also inside module-level ``if``/``try`` blocks and class bodies, which
run at import time; not inside functions, which run later, nor under ``if TYPE_CHECKING:``,
which never runs).  Importing ``stargate.a.b`` from outside the package ``stargate.a`` runs
``stargate/a/__init__.py`` first, so that is an edge too.  A module's own ancestors are not
(Python finishes them before it, or they are the ones importing it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "stargate"

#: The layers, top first: a module may import its own layer and those below, never above.
#: Modules not listed are the sans-I/O core and its helpers (layer 1).  The package's own
#: ``__init__`` (the public API) is above them all.
LAYERS: tuple[tuple[str, int], ...] = (
    ("stargate.cli", 6),
    ("stargate.__main__", 6),
    ("stargate.workers", 5),
    ("stargate.gunicorn", 5),
    ("stargate.pyramid", 5),
    ("stargate.demo", 5),
    ("stargate.testing", 5),
    ("stargate.settings", 4),
    ("stargate.targets", 4),
    ("stargate.groups", 3),
    ("stargate.server", 2),
    ("stargate.client", 2),
    ("stargate.brokers", 2),
)

#: Cycles in files this test's author does not own, each with its owner; the test fails
#: on any other cycle, and on one of these once it is gone (so the list stays true).
KNOWN_CYCLES: dict[frozenset[str], str] = {}


def module_names() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported."""
    stack: list[ast.stmt] = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                stack.extend(reversed(node.body))
            stack.extend(reversed(node.orelse))
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                stack.extend(reversed(block))
        elif isinstance(node, ast.With | ast.ClassDef):
            stack.extend(reversed(node.body))


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``stargate`` modules that importing ``name`` imports directly."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in module_level_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            # ``from package import module`` imports that module too.
            targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                found.update(_with_packages(target, name, modules))
    found.discard(name)
    return found


def _with_packages(target: str, importer: str, modules: dict[str, Path]) -> set[str]:
    """``target`` and the packages above it that importing it runs, less the importer's own
    ancestors."""
    parts = target.split(".")
    names = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    ancestors = {importer.rsplit(".", i)[0] for i in range(importer.count(".") + 1)}
    return {n for n in names if n in modules and n not in ancestors}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted:
    every import circle lies inside one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def shortest_circle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One circle through the component's first module, to show in the failure."""
    start = component[0]
    members = set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for successor in sorted(graph[node] & members):
            if successor == start:
                return [*paths[node], start]
            if successor not in paths:
                paths[successor] = [*paths[node], successor]
                queue.append(successor)
    return component


def layer(module: str) -> int:
    for prefix, rank in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return 1


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} (layer {layer(module)}) imports {imported} (layer {layer(imported)})"
        for module, imports in sorted(graph.items())
        if module != PACKAGE
        for imported in sorted(imports)
        if layer(imported) > layer(module)
    ]


def test_the_graph_sees_imports() -> None:
    """The graph is not empty by mistake: known edges, a relative import resolved, a lazy
    import (inside a function) and a TYPE_CHECKING import left out."""
    graph = import_graph()
    assert "stargate.server.config" in graph["stargate.settings"]
    assert "stargate.server" in graph["stargate.settings"]  # its __init__ runs first
    assert "stargate.targets" in graph["stargate.workers"]
    assert "stargate.pyramid.paste" not in graph["stargate.targets"]


def test_cycles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert shortest_circle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import hidden\n"
        "try:\n    from . import tried\nexcept ImportError:\n    pass\n"
        "def later():\n    from . import lazy\n"
    )
    seen = [node.names[0].name for node in module_level_imports(tree)]
    assert seen == ["TYPE_CHECKING", "tried"]


def test_upward_imports_are_found() -> None:
    graph = {"stargate.server.app": {"stargate.groups.hub", "stargate.frames"}}
    assert upward_imports(graph) == [
        "stargate.server.app (layer 2) imports stargate.groups.hub (layer 3)"
    ]


def test_no_upward_import() -> None:
    """The supervisor sits above server and groups, the settings above the server's config;
    nothing below imports them (they used to: server/workers.py imported groups)."""
    assert upward_imports(import_graph()) == []


def test_no_import_circle_inside_stargate() -> None:
    graph = import_graph()
    found = {frozenset(component): component for component in cycles(graph)}
    unknown = [
        " -> ".join(shortest_circle(graph, component))
        for key, component in found.items()
        if key not in KNOWN_CYCLES
    ]
    assert not unknown, "import circles:\n" + "\n".join(unknown)
    gone = [f"{sorted(key)} ({owner})" for key, owner in KNOWN_CYCLES.items() if key not in found]
    assert not gone, "known circles that are gone: remove them from KNOWN_CYCLES: " + str(gone)
