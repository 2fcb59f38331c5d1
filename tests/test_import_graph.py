"""The module graph of hsm/, service/ and bench/: no import cycles, no private names across
modules.

Every import counts, also those under ``if TYPE_CHECKING:`` and inside functions: a cycle
hidden there is still two modules that cannot be understood (or changed) one at a time. The
bench/ scripts import each other by file name (bench/ is on their path), so each is a
top-level module here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.source_tree import python_files, relative

PACKAGES = ("hsm", "service")
SCRIPTS = "bench"  # a directory of top-level modules


def _modules() -> dict[str, Path]:
    out = {}
    for path in python_files(*PACKAGES):
        parts = relative(path).removesuffix(".py").split("/")
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    for path in python_files(SCRIPTS):
        out[path.stem] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (itself, or the package holding it)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> Iterator[tuple[str, str, int]]:
    """(imported project module, imported name or "", line) for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target is not None:
                    yield target, "", node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in MODULES:  # ``from package import module``
                    yield full, "", node.lineno
                else:
                    target = _resolve(base)
                    if target is not None:
                        yield target, alias.name, node.lineno


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in _imports(m) if t != m} for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_module_graph_has_no_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_hsm_never_imports_service() -> None:
    assert [(m, t) for m, targets in _graph().items() if m.startswith("hsm")
            for t in targets if not t.startswith("hsm")] == []


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


#: Private names a module may use anyway, each with its reason.
PROBES = {
    # Times the store's statements by wrapping the one function they all pass through; a
    # measuring probe of the store's insides, not a caller of it.
    ("bench_storage_round", "service.storage.prepared._on_cursor"),
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_of_another_module_is_used(module: str) -> None:
    offences = [f"{module}:{line} imports {name} from {target}"
                for target, name, line in _imports(module)
                if name and _private(name) and target != module]
    # ``import x.y as m`` / ``from x import y`` (a module), then ``m._name``.
    tree = ast.parse(MODULES[module].read_text())
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                # ``import a.b`` binds ``a``: only ``import a.b as m`` and ``import a`` name
                # the module itself.
                if alias.name in MODULES and (alias.asname or "." not in alias.name):
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in MODULES:
                    aliases[alias.asname or alias.name] = full
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and _private(node.attr)):
            used = f"{aliases[node.value.id]}.{node.attr}"
            if (module, used) not in PROBES:
                offences.append(f"{module}:{node.lineno} uses {used}")
    assert offences == []
