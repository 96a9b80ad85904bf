"""Imports run one way: no cycle anywhere in the tree, and the log processor's folders in the order
of its flow (docs/architecture.md). Read from the source with ast, function-level imports included,
so a cycle hidden behind a deferred import counts too."""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGES = ("common", "serving", "shipper", "log_processor", "demo", "benchmarks")

# The log processor's layers, bottom first: a module may import its own layer and those below it.
LAYERS = (
    ("log_processor.columns", "log_processor.monitors", "log_processor.settings", "log_processor.shard"),
    ("log_processor.tasks",),
    ("log_processor.read",),
    ("log_processor.evaluate",),
    ("log_processor.export",),
    ("log_processor.memory", "log_processor.runner", "log_processor.schedule", "log_processor.processor"),
    ("log_processor.app", "log_processor.__main__"),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports_of(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The project modules `path` imports anywhere in its body (`from pkg import sub` names the submodule)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".") if is_package else name.split(".")[:-1]
                parent = parent[:len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:     # `import a.b.c` of a package: its nearest module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


@lru_cache(maxsize=1)
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, name, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_checker_finds_a_cycle_and_a_clean_graph_has_none():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle_anywhere():
    edges = graph()
    assert len(edges) > 60         # every package was read
    assert cycles(edges) == []


def layer_of(module: str) -> int | None:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    return None


@pytest.mark.parametrize("module", sorted(m for m in modules() if m.startswith("log_processor.")))
def test_log_processor_imports_follow_its_flow(module):
    """read/ never imports evaluate/ or export/, evaluate/ never export/, and so on up."""
    level = layer_of(module)
    if level is None:
        assert module == "log_processor", f"{module} is in no layer of LAYERS: place it"
        return
    upward = sorted(t for t in graph()[module] if (layer_of(t) or 0) > level)
    assert upward == [], f"{module} imports modules of a later step: {upward}"
