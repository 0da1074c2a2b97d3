"""The shape of the house: no import circles, and every room within its size limits.

Every module under ``libs/*/src`` and ``services/*/src`` is read (the test fakes in
``libs/testing`` too: they are code people read). An import is any ``import``/``from``
statement, including those under ``TYPE_CHECKING`` and inside functions: a type-only
back edge still ties two modules into one room that has to be understood at once.
Limits (CONVENTIONS.md, "Small rooms"): module ≤ 800 lines, class ≤ 400, function ≤ 120.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIMITS = {"module": 800, "class": 400, "function": 120}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in ("libs", "services"):
        for path in sorted((ROOT / top).glob("*/src/**/*.py")):
            parts = path.relative_to(ROOT).parts
            if "templates" in parts:  # sandbox template payloads, not our Python
                continue
            dotted = ".".join(parts[parts.index("src") + 1 :])[:-3]
            found[dotted.removesuffix(".__init__")] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                up = parts[: len(parts) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            # A module's own package (its __init__ re-exports it) and its own submodules are
            # not edges: importing them is how a package is put together.
            own = target in (name, name.rpartition(".")[0]) or target.startswith(name + ".")
            if target and not own:
                out.add(target)
    return out


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
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


def test_circle_finder_finds_a_planted_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    known = _modules()
    assert len(known) > 100, "the module scan found too little"
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    assert not _circles(graph)


def _oversized(path: Path) -> list[str]:
    source = path.read_text()
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    over = []
    lines = source.count("\n") + 1
    if lines > LIMITS["module"]:
        over.append(f"module {rel}: {lines} lines")
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            if size > LIMITS[kind]:
                over.append(f"{kind} {rel}:{node.lineno} {node.name}: {size} lines")
    return over


def test_size_check_sees_an_oversized_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMITS["function"] + 1))
    planted = tmp_path / "planted.py"
    planted.write_text(f"def big():\n{body}\n")
    assert any("function" in entry and "big" in entry for entry in _oversized(planted))


@pytest.mark.parametrize("top", ["libs", "services"])
def test_rooms_within_size_limits(top: str) -> None:
    over = [
        entry
        for name, path in _modules().items()
        if path.is_relative_to(ROOT / top)
        for entry in _oversized(path)
    ]
    assert not over, "\n".join(over)
