"""The layers hold: who may import whom, no import circles, no platform names.

The picture is in ``docs/architecture.md``. These tests read the source (every
``import`` statement, at module level or inside a function), so a rule broken
by a lazy import fails here too.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

from connectors.registry import CONNECTORS

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "eventlog", "projections", "connectors", "hub")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Our modules that ``path`` imports, wherever the import statement is."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name in modules:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    modules = set(sources)
    return {name: _imports(path, modules) - {name} for name, path in sources.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
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
    return found


def test_no_import_circles() -> None:
    graph = _graph()
    # A package's __init__ importing its own modules is not a circle of design.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    assert _cycles(graph) == []


@pytest.mark.parametrize("package", ["domain", "eventlog", "projections", "connectors"])
def test_lower_layers_never_import_the_hub(package: str) -> None:
    offenders = {
        name: sorted(t for t in targets if t == "hub" or t.startswith("hub."))
        for name, targets in _graph().items()
        if name.startswith(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_hub_layers_import_downwards_only() -> None:
    """infra never imports the service layer or the entry points; the service
    layer never imports the entry points."""
    rank = {"hub.infra": 0, "hub.service": 1, "hub.entry": 2}

    def layer(module: str) -> int | None:
        for prefix, value in rank.items():
            if module == prefix or module.startswith(prefix + "."):
                return value
        return None

    upward = []
    for name, targets in _graph().items():
        own = layer(name)
        if own is None:
            continue
        for target in targets:
            other = layer(target)
            if other is not None and other > own:
                upward.append(f"{name} -> {target}")
    assert upward == []


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string literal's value (not comments), with its line."""
    found: list[tuple[int, str]] = []
    source = path.read_text(encoding="utf-8")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING:
            try:
                value = ast.literal_eval(token.string)
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, str):
                found.append((token.start[0], value))
    return found


@pytest.mark.parametrize("package", ["hub", "projections"])
def test_no_platform_name_is_spelled_in_the_hub_or_projections(package: str) -> None:
    """The hub asks the connector registry; it never names a platform."""
    codes = set(CONNECTORS)
    spelled = [
        f"{path.relative_to(ROOT)}:{line} {value!r}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, value in _string_literals(path)
        if value in codes
    ]
    assert spelled == []
