"""The template registry: every folder's manifest is complete and true to its files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from amicable_templates import (
    BRIDGE_SOURCE,
    DEFAULT_TEMPLATE,
    STACKS_DIR,
    TemplateError,
    get_template,
    parse_manifest,
    read_registry,
    registry,
)

SIX = ("vite", "nextjs15", "remix", "sveltekit", "fastapi", "hono")
BEYOND = ("vue", "astro")
IDS = registry().ids


def test_the_editor_s_templates_are_registered_in_order() -> None:
    assert IDS[: len(SIX) + len(BEYOND)] == SIX + BEYOND
    assert IDS[0] == DEFAULT_TEMPLATE
    assert [t.order for t in registry().templates] == sorted(t.order for t in registry().templates)


@pytest.mark.parametrize("template_id", IDS)
def test_manifest_matches_the_files(template_id: str) -> None:
    template = get_template(template_id)
    root = template.directory
    assert (root / template.lockfile).is_file()
    for name in template.manifest_files:
        assert (root / name).is_file(), name
    for path in template.protected:  # the bridge is written by init-workspace (test_bridge)
        assert (root / path).is_file() or path == template.bridge, f"protected {path} is missing"
    assert template.edit_from in (root / template.edit_file).read_text()
    assert "Checks" in template.agents_md()
    assert template.qa, "every template has QA commands"
    if template.deps_kind == "npm":
        package = json.loads((root / "package.json").read_text())
        lock = json.loads((root / "package-lock.json").read_text())
        # every dependency is pinned to one version, and the lockfile is the package's
        for deps in (package.get("dependencies", {}), package.get("devDependencies", {})):
            for name, version in deps.items():
                assert version[0].isdigit() or template_id == "vite", (name, version)
        assert lock["packages"][""].get("devDependencies") == package.get("devDependencies")
        for _, command in template.qa:
            script = command.removeprefix("npm run -s ")
            assert script in package["scripts"], command
    else:
        lines = (root / template.lockfile).read_text().splitlines()
        pins = [line for line in lines if "==" in line]
        assert pins
        assert len([line for line in lines if "--hash=sha256:" in line]) >= len(pins)
    assert not (root / template.deps_dir).exists(), "installed dependencies are not shipped"
    # the project's own git history (export, GitLab sync) never carries its dependencies
    assert template.deps_dir in (root / ".gitignore").read_text().split()


@pytest.mark.parametrize("template_id", IDS)
def test_browser_stacks_declare_and_protect_the_runtime_error_bridge(template_id: str) -> None:
    template = get_template(template_id)
    if template.reload == "hmr":  # a browser app: the bridge is written, protected, loaded
        assert template.bridge is not None, template_id
        assert template.bridge in template.protected
        assert template.bridge_source() == BRIDGE_SOURCE.read_bytes()
        files = template.directory.rglob("*")
        pages = [p for p in files if p.is_file() and p.suffix not in (".json", ".md")]
        tag = re.compile(r'src="[^"]*/amicable-runtime\.js"')  # sveltekit: %sveltekit.assets%
        assert any(tag.search(p.read_text(errors="ignore")) for p in pages), template_id
    else:  # an API: its page reloads itself after the server restarted
        assert template.bridge is None
        assert template.bridge_source() is None
        assert any(p.endswith(("reload.ts", "reload.py")) for p in template.protected)


def test_the_bridge_has_one_source_and_no_stack_holds_a_copy() -> None:
    assert "amicableParentOrigin" in BRIDGE_SOURCE.read_text()
    assert sorted(STACKS_DIR.rglob("amicable-runtime.js")) == []


def _manifest(**overrides: str) -> str:
    values = {"id": '"demo"', "kind": '"npm"', "reload": '"hmr"', "extra": "", "files": ""}
    values.update(overrides)
    return f"""
id = {values["id"]}
name = "Demo"
description = "d"
order = 1
[dev]
command = "x"
port = 3000
path = "/"
expect = "x"
reload = {values["reload"]}
[deps]
kind = {values["kind"]}
lockfile = "package-lock.json"
[qa]
build = "npm run -s build"
{values["extra"]}
[files]
edit = "a"
edit_from = "b"
{values["files"]}
"""


def test_parse_manifest_accepts_a_complete_one() -> None:
    template = parse_manifest(_manifest(), Path("/x/demo"))
    assert template.qa_commands(run_tests=False) == ["npm run -s build"]
    assert template.deps_dir == "node_modules"
    assert template.bridge is None
    with_bridge = parse_manifest(
        _manifest(files='bridge = "static/amicable-runtime.js"'), Path("/x/demo")
    )
    assert with_bridge.bridge == "static/amicable-runtime.js"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id": '"other"'}, "is not the folder's name"),
        ({"kind": '"cargo"'}, "unknown deps.kind"),
        ({"reload": '"magic"'}, "unknown deps.kind 'npm' or dev.reload 'magic'"),
        ({"id": "3"}, "'id' must be a str"),
        ({"extra": 'deploy = "x"'}, "unknown QA step"),
        ({"files": 'bridge = "../amicable-runtime.js"'}, "files.bridge must be a relative"),
        ({"files": 'bridge = "/public/amicable-runtime.js"'}, "files.bridge must be a relative"),
        ({"files": 'bridge = "public/bridge.js"'}, "files.bridge must be a relative"),
    ],
)
def test_parse_manifest_rejects_bad_ones(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        parse_manifest(_manifest(**overrides), Path("/x/demo"))


def test_parse_manifest_rejects_broken_toml_and_missing_keys() -> None:
    with pytest.raises(TemplateError, match=r"template\.toml"):
        parse_manifest("id = ", Path("/x/demo"))
    with pytest.raises(TemplateError, match="'command' must be a str"):
        parse_manifest(_manifest().replace('command = "x"', ""), Path("/x/demo"))


def test_unknown_template_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="known: vite"):
        get_template("cobol")
    assert read_registry(tmp_path).ids == ()
    assert {p.name for p in STACKS_DIR.iterdir() if (p / "template.toml").is_file()} == set(IDS)


def test_cli_prints_the_registry() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "amicable_templates", "json"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    listed = json.loads(out.stdout)
    assert [t["id"] for t in listed] == list(IDS)
    assert set(listed[0]) == {"id", "name", "description", "deps", "reload", "qa"}
