"""Workspace hygiene: each member declares what it imports, services never import each other,
and nothing imports asyncio (ARCHITECTURE.md §2, CONVENTIONS.md "Layout")."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = {
    "libs/protocol": "amicable_protocol",
    "libs/frontdoor": "amicable_frontdoor",
    "libs/settings": "amicable_settings",
    "libs/templates": "amicable_templates",
    "services/agent": "amicable_agent",
    "services/sandbox_runtime": "amicable_sandbox_runtime",
    "services/preview_router": "amicable_preview_router",
    "libs/testing": "amicable_testing",
}
SERVICES = {"amicable_agent", "amicable_sandbox_runtime", "amicable_preview_router"}


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _declared(member: str) -> set[str]:
    data = tomllib.loads((ROOT / member / "pyproject.toml").read_text())
    names = set()
    for req in data["project"].get("dependencies", []):
        head = req.split(";")[0]
        for sep in "<>=!~[ ":
            head = head.split(sep)[0]
        names.add(_canonical(head))
    return names


def _imports(package_dir: Path) -> set[str]:
    found: set[str] = set()
    for path in package_dir.rglob("*.py") if package_dir.is_dir() else [package_dir]:
        if "stacks" in path.relative_to(package_dir).parts:
            continue  # project templates (their own dependencies), package data
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("member", sorted(MEMBERS))
def test_member_declares_every_third_party_import(member: str) -> None:
    package = MEMBERS[member]
    dist_of = packages_distributions()
    declared = _declared(member)
    missing = []
    for module in sorted(_imports(ROOT / member / "src" / package)):
        if module in sys.stdlib_module_names or module in {package, "__future__"}:
            continue
        dists = {_canonical(d) for d in dist_of.get(module, [_canonical(module)])}
        if not dists & declared:
            missing.append(f"{module} (from {sorted(dists)})")
    assert not missing, f"{member} imports undeclared packages: {missing}"


@pytest.mark.parametrize("member", sorted(m for m in MEMBERS if m.startswith("services/")))
def test_services_never_import_each_other(member: str) -> None:
    package = MEMBERS[member]
    others = (SERVICES - {package}) & _imports(ROOT / member / "src" / package)
    assert not others, f"{package} imports other services: {sorted(others)}"


@pytest.mark.parametrize("member", sorted(m for m in MEMBERS if m.startswith("services/")))
def test_services_never_import_the_test_fakes(member: str) -> None:
    package = MEMBERS[member]
    assert "amicable_testing" not in _imports(ROOT / member / "src" / package)


@pytest.mark.parametrize("member", sorted(MEMBERS))
def test_members_use_only_the_public_modules_of_other_members(member: str) -> None:
    package = MEMBERS[member]
    own = set(MEMBERS.values())
    private = set()
    for path in (ROOT / member / "src" / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top, *rest = name.split(".")
                if top in own and top != package and any(p.startswith("_") for p in rest):
                    private.add(name)
    assert not private, (
        f"{package} imports private modules: {sorted(private)}; "
        "use the package's public names (its __init__ and __all__)"
    )


def test_no_asyncio_anywhere() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for member, package in MEMBERS.items()
        for path in (ROOT / member / "src" / package).rglob("*.py")
        if "asyncio" in _imports(path)
    ]
    assert not offenders, f"asyncio imported in {offenders}"
