"""The package's modules import in one direction: no cycle, counting imports inside functions (a
deferred import hides a cycle, it does not remove it) and ignoring `if TYPE_CHECKING:` blocks (types
only, never executed). Also: the request path never imports the operator tools in `llmbill.ops`."""

from __future__ import annotations

import ast
from pathlib import Path

import llmbill

SOURCE = Path(__file__).resolve().parents[2] / "python" / "llmbill"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names]
            submodules = [n for n in names if n in modules]  # `from . import x`: x is a module
            found.update(submodules)
            if len(submodules) < len(names):  # a name defined by the module (or package) itself
                found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    # A module's import also runs its packages' __init__; those are leaves here (they import nothing
    # of their own package), so only the module itself is an edge.
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    files = [p for p in SOURCE.rglob("*.py")]
    modules = {_module_name(p) for p in files} | {"llmbill._core"}  # the compiled core is a module too
    return {_module_name(p): _imports(p, modules) for p in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_source_tree_is_the_installed_package() -> None:
    assert (SOURCE / "__init__.py").exists() and Path(llmbill.__file__).name == "__init__.py"


def test_no_import_cycle() -> None:
    graph = _graph()
    assert "llmbill.proxy.routes.llm" in graph and graph["llmbill.proxy.routes.llm"]
    cycle = _cycle(graph)
    assert cycle is None, " → ".join(cycle or [])


def test_the_detector_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_proxy_never_imports_the_operator_tools() -> None:
    graph = _graph()
    offenders = sorted(f"{m} → {t}" for m, targets in graph.items() if m.startswith("llmbill.proxy")
                       for t in targets if t == "llmbill.ops" or t.startswith("llmbill.ops."))
    assert offenders == []
