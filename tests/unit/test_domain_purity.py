"""domain/ imports only the standard library and msgspec (STYLE.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "domain"
ALLOWED_THIRD_PARTY = {"msgspec"}
FORBIDDEN_STDLIB = {"os", "socket", "subprocess", "time", "random", "asyncio"}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_domain_imports_only_stdlib_and_msgspec() -> None:
    offenders: list[str] = []
    for path in sorted(DOMAIN.rglob("*.py")):
        for root in _imported_roots(path):
            if root in {"domain", "__future__"} or root in ALLOWED_THIRD_PARTY:
                continue
            if root in FORBIDDEN_STDLIB or root not in sys.stdlib_module_names:
                offenders.append(f"{path.relative_to(DOMAIN.parent)} imports {root}")
    assert offenders == []
