"""zocket_django's shape: modules that depend one way (no import cycle, not even through imports
inside functions), each small enough to hold one job (docs/architecture.md)."""

import ast
from pathlib import Path

import zocket_django

PACKAGE = Path(zocket_django.__file__).parent
#: Longest module, in lines. A module that grows past it holds more than one job: split it by job.
MAX_LINES = 400
#: The admin's views are exempt (one page's view, form and queries read best together).
LONG_MODULES = {"zocket_django.admin_hot_actors"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_only(tree: ast.AST) -> set[int]:
    """The nodes under ``if TYPE_CHECKING:`` (imports for annotations only, never run)."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (migrations are generated, and left out)."""
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports when run: at the top, in functions, in any branch."""
    paths = modules()
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        skipped = type_only(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                graph[name] |= {alias.name for alias in node.names if alias.name in paths}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # ``from . import x`` names the module x; ``from .x import y`` the module x (or x.y).
                named = {f"{target}.{alias.name}" for alias in node.names} & paths.keys()
                graph[name] |= named or ({target} & paths.keys())
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "zocket_django.node" in graph and "zocket_django.runtime" in graph["zocket_django.node"]
    assert "zocket_django.registry" in graph["zocket_django.apps"]  # imported inside ready()
    assert cycles(graph) == []


def test_the_cycle_finder_sees_cycles_through_any_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_is_over_the_size_limit():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert "zocket_django.consumer" in lengths and "zocket_django.client.core" in lengths
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES and name not in LONG_MODULES}
    assert too_long == {}, f"over {MAX_LINES} lines: split by job"
