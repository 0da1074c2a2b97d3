"""The runtime-error bridge has one source (``amicable_templates/bridge/``): the workspace
initialisation writes it at every browser stack's ``[files] bridge`` path, byte for byte, and
never over a project that already exists (a project's own edits to it stay)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from amicable_sandbox_runtime.templates import cache_key, copy_template
from amicable_templates import BRIDGE_SOURCE, get_template, registry

BROWSER = [t.id for t in registry().templates if t.bridge]


def test_every_browser_stack_and_only_those_declare_a_bridge() -> None:
    assert set(BROWSER) == {t.id for t in registry().templates if t.reload == "hmr"}
    assert {"vite", "nextjs15", "remix", "sveltekit", "vue", "astro"} <= set(BROWSER)


@pytest.mark.parametrize("template_id", registry().ids)
def test_init_writes_the_one_current_bridge_at_the_declared_path(
    template_id: str, tmp_path: Path
) -> None:
    template = get_template(template_id)
    assert copy_template(template_id, tmp_path)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("amicable-*.js"))
    if template.bridge is None:
        assert written == []
        return
    assert written == [template.bridge]
    assert (tmp_path / template.bridge).read_bytes() == BRIDGE_SOURCE.read_bytes()


def test_every_stack_gets_identical_bytes(tmp_path: Path) -> None:
    copies = set()
    for template_id in BROWSER:
        dest = tmp_path / template_id
        dest.mkdir()
        copy_template(template_id, dest)
        path = get_template(template_id).bridge
        assert path is not None
        copies.add((dest / path).read_bytes())
    assert copies == {BRIDGE_SOURCE.read_bytes()}


def test_an_existing_project_keeps_its_own_bridge(tmp_path: Path) -> None:
    assert copy_template("vite", tmp_path)
    bridge = tmp_path / "public/amicable-runtime.js"
    bridge.write_text("/* the project's own edit */")
    assert not copy_template("vite", tmp_path)
    assert bridge.read_text() == "/* the project's own edit */"


def test_the_init_workspace_cli_writes_it(tmp_path: Path) -> None:
    """The command the local backend and the sandbox image run (dependencies from a cache
    entry made here by hand, so nothing is installed)."""
    template = get_template("sveltekit")
    dest, cache = tmp_path / "app", tmp_path / "cache"
    dest.mkdir()
    copy_template("sveltekit", dest)  # to compute the cache key the CLI will look up
    (cache / cache_key("sveltekit", dest) / "node_modules").mkdir(parents=True)
    fresh = tmp_path / "fresh"
    subprocess.run(
        [sys.executable, "-m", "amicable_sandbox_runtime", "init-workspace", str(fresh),
         "--template", "sveltekit", "--cache-dir", str(cache)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert template.bridge == "static/amicable-runtime.js"
    assert (fresh / template.bridge).read_bytes() == BRIDGE_SOURCE.read_bytes()
    assert (fresh / "node_modules").is_dir()
