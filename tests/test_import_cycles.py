"""No import cycles among onebit's modules, counting every import statement wherever it is (at the
top, in a function, in a try block): a function-local import hides a cycle from Python at import
time but not from the design. Only ``if TYPE_CHECKING:`` blocks are left out (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import onebit

PACKAGE = Path(onebit.__file__).parent


def _module_name(path: Path) -> str:
    parts = ("onebit", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the statements inside ``if TYPE_CHECKING:`` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
                or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")):
            for stmt in node.body:
                skipped.update(id(n) for n in ast.walk(stmt))
    return skipped


def import_graph() -> dict[str, set[str]]:
    """module -> the onebit modules it imports (``from a.b import c`` counts ``a.b.c`` where that
    is a module, else ``a.b``; a package's ``__init__`` counts as the package)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skipped = _type_checking_blocks(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                # ``from a import b``: the module ``a.b`` where b is one, else ``a`` itself
                subs = [f"{base}.{alias.name}" for alias in node.names]
                targets = [t for t in subs if t in files]
                if len(targets) < len(subs):
                    targets.append(base)
            else:
                continue
            deps.update(t for t in targets if t in files and t != name)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_graph_sees_function_local_imports():
    graph = import_graph()
    assert "onebit.runtime.ops" in graph and len(graph) > 40
    assert "onebit.runtime.checks" in graph["onebit.runtime.ops"]  # a top-level import
    assert "onebit.nn.functional" in graph["onebit.deploy.torch_graph"]


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
