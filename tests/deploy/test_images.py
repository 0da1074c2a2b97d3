"""The four Dockerfiles: hadolint-clean, multi-stage, uv-locked, non-root, tini; their uv step
works against the real lockfile; the editor's nginx config serves the SPA as intended (real
nginx). No Docker engine here, so images themselves are built only by CI."""

from __future__ import annotations

import os
import re
import shutil
import socket
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from deploy_support import REPO, VENV_BIN, run_tool

IMAGES = REPO / "deploy" / "images"
NAMES = ["agent", "sandbox", "preview-router", "editor"]
PYTHON_IMAGES = {
    "agent": ("amicable-agent", "amicable-agent"),
    "sandbox": ("amicable-sandbox-runtime", "amicable-sandbox-runtime"),
    "preview-router": ("amicable-preview-router", "amicable-preview-router"),
}


def dockerfile(name: str) -> str:
    return (IMAGES / name / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", NAMES)
async def test_hadolint_clean(name: str) -> None:
    # Any finding, down to "info", fails; justified ignores are inline next to their line.
    await run_tool(
        [
            VENV_BIN / "hadolint",
            "--no-color",
            "--failure-threshold",
            "info",
            IMAGES / name / "Dockerfile",
        ]
    )


async def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    with pytest.raises(Exception, match=r"DL3006|DL3008|DL3015"):
        await run_tool([VENV_BIN / "hadolint", "--no-color", bad])


@pytest.mark.parametrize("name", NAMES)
def test_multi_stage_non_root_tini(name: str) -> None:
    steps = instructions(dockerfile(name))
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    final = len(steps) - 1 - [w for w, _ in steps][::-1].index("FROM")
    tail = steps[final:]
    users = [args for word, args in tail if word == "USER"]
    assert users, "final stage must set USER"
    assert users[-1].split(":")[0] not in ("0", "root"), users[-1]
    entrypoint = [args for word, args in tail if word == "ENTRYPOINT"]
    assert entrypoint
    if name == "editor":
        # Its entrypoint renders /config.js, then execs nginx, whose master reaps its workers.
        assert entrypoint[-1] == '["/usr/local/bin/amicable-editor-entrypoint"]'
        assert 'exec "$@"' in (IMAGES / "editor" / "entrypoint.sh").read_text()
    else:
        assert "tini" in entrypoint[-1]
    assert not [a for w, a in tail if w == "ADD"], "COPY, not ADD"
    # Every base image is pinned to a tag (no implicit :latest).
    for args in froms:
        image = args.split()[0]
        if not image.startswith("${"):
            assert ":" in image, image
            assert not image.endswith(":latest"), image
    for word, args in steps:
        if word == "ARG" and "_IMAGE=" in args:
            assert ":" in args.split("=", 1)[1], args


@pytest.mark.parametrize("name", list(PYTHON_IMAGES))
def test_python_images_install_exactly_the_lockfile(name: str) -> None:
    text = dockerfile(name)
    member, script = PYTHON_IMAGES[name]
    assert re.search(rf"uv sync --locked --no-dev --no-editable --package {member}\b", text), (
        "uv sync --locked --no-dev --package <member>"
    )
    assert re.search(rf'CMD \["{script}"\]', text)
    ignore = (IMAGES / name / "Dockerfile.dockerignore").read_text()
    assert ignore.splitlines()[1] == "*", "context is allow-listed"


def test_sandbox_image_bakes_the_template() -> None:
    text = dockerfile("sandbox")
    assert (
        'amicable-sandbox-runtime init-workspace /app --template "${TEMPLATE}" '
        "--cache-dir /opt/amicable/cache" in text
    )
    assert "ARG TEMPLATE=vite" in text, "one image per stack, vite by default"
    steps = instructions(text)
    bake = next(i for i, (w, a) in enumerate(steps) if "init-workspace" in a)
    user_before = [a for w, a in steps[:bake] if w == "USER"]
    assert user_before, "bake as the runtime user"
    assert user_before[-1].startswith("10001"), "workspace owned by the runtime user"
    env = " ".join(a for w, a in steps if w == "ENV")
    for var in (
        "AMICABLE_WORKSPACE=/app",
        "AMICABLE_RUNTIME_PORT=8888",
        "AMICABLE_PREVIEW_PORT=3000",
        "AMICABLE_TEMPLATE=${TEMPLATE}",
    ):
        assert var in env


def test_sandbox_image_is_deterministic() -> None:
    """The sandbox installs from committed lockfiles only: no scaffolding, clones or @latest."""
    text = dockerfile("sandbox")
    for banned in ("git clone", "@latest", "create-vite", "npm create", "npm init", "npm install "):
        assert banned not in text, banned


@pytest.mark.parametrize("name", list(PYTHON_IMAGES))
async def test_uv_step_of_the_image_works(name: str, tmp_path: Path) -> None:
    """Run the Dockerfile's own uv sync line into a fresh venv and start its console script."""
    uv = shutil.which("uv") or os.fspath(REPO / ".tools" / "bin" / "uv")
    match = re.search(r"uv sync [^\n]*", dockerfile(name))
    assert match
    member, script = PYTHON_IMAGES[name]
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": os.fspath(venv)}
    env.pop("VIRTUAL_ENV", None)
    with trio.fail_after(300):
        proc = await trio.run_process(
            [uv, *match.group(0).split()[1:], "--quiet"],
            cwd=REPO,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            start_new_session=True,
        )
    assert proc.returncode == 0, proc.stderr.decode()
    site = next((venv / "lib").glob("python3*/site-packages"))
    installed = {p.name for p in site.iterdir()}
    assert member.replace("-", "_") in installed
    assert not [p for p in installed if p.endswith(".pth") and "amicable" in p], "not editable"
    assert "_pytest" not in installed, "no dev dependencies"
    out = await run_tool([venv / "bin" / script, "--help"])
    assert "usage:" in out
    if name == "sandbox":
        assert (site / "amicable_templates" / "stacks" / "vite" / "package-lock.json").is_file()
        assert (site / "amicable_templates" / "stacks" / "fastapi" / "requirements.lock").is_file()
    shutil.rmtree(venv)  # ~100 MiB each; pytest would keep three runs of them


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_editor_nginx_config_serves_the_spa(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    html = tmp_path / "html"
    (html / "assets").mkdir(parents=True)
    (html / "index.html").write_text("<!doctype html><title>Amicable</title>")
    (html / "assets" / "app-1234.js").write_text("console.log(1)")
    shutil.copy(IMAGES / "editor" / "config.js", html / "config.js")
    port = _free_port()
    conf = (IMAGES / "editor" / "nginx.conf").read_text()
    conf = conf.replace("/tmp/", f"{tmp_path}/")
    conf = conf.replace("/usr/share/nginx/html", os.fspath(html))
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("worker_processes auto;", "worker_processes 1;")
    if os.geteuid() == 0:  # root's workers would drop to nobody, who can't read tmp_path
        conf = "user root;\n" + conf
    (tmp_path / "nginx.conf").write_text(conf)
    await run_tool([nginx, "-t", "-p", tmp_path, "-c", tmp_path / "nginx.conf"])

    async with trio.open_nursery() as nursery:
        proc = await nursery.start(
            partial(
                trio.run_process,
                [nginx, "-p", tmp_path, "-c", tmp_path / "nginx.conf", "-g", "daemon off;"],
                start_new_session=True,
                check=False,
            )
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                with trio.fail_after(20):
                    while True:
                        try:
                            health = await client.get("/healthz")
                            break
                        except httpx.ConnectError:
                            await trio.sleep(0.05)
                assert health.status_code == 200
                deep = await client.get("/projects/abc/settings")
                assert deep.status_code == 200
                assert "<title>Amicable</title>" in deep.text
                assert deep.headers["cache-control"] == "no-cache"
                config = await client.get("/config.js")
                assert config.status_code == 200
                assert config.headers["cache-control"] == "no-store"
                assert "javascript" in config.headers["content-type"]
                # A config rendered from environment (the entrypoint's) wins over the image's.
                rendered = tmp_path / "amicable-editor"
                rendered.mkdir()
                (rendered / "config.js").write_text("window.__AMICABLE_CONFIG__ = {};//env")
                config = await client.get("/config.js")
                assert config.text.endswith("//env")
                assert config.headers["cache-control"] == "no-store"
                asset = await client.get("/assets/app-1234.js")
                assert "immutable" in asset.headers["cache-control"]
                missing = await client.get("/assets/nope.js")
                assert missing.status_code == 404
                assert asset.headers["x-content-type-options"] == "nosniff"
        finally:
            proc.terminate()


BASES = sorted((IMAGES / "base").glob("*.Dockerfile"))


@pytest.mark.parametrize("path", BASES, ids=[p.name for p in BASES])
async def test_local_base_dockerfiles_are_hadolint_clean(path: Path) -> None:
    await run_tool([VENV_BIN / "hadolint", "--no-color", "--failure-threshold", "info", path])


def test_local_bases_replace_every_public_base() -> None:
    """`make images` on a machine without a registry overrides every public base the four
    Dockerfiles name, and only ARGs they declare; the defaults stay public images."""
    script = (IMAGES / "build.sh").read_text()
    overridden = set(re.findall(r'--build-arg "([A-Z_]+_IMAGE)=localhost/amicable-base/', script))
    declared = set()
    for name in NAMES:
        for word, args in instructions(dockerfile(name)):
            if word == "ARG" and "_IMAGE=" in args:
                key, default = args.split("=", 1)
                declared.add(key)
                assert not default.startswith("localhost/"), f"{name}: {args} must stay public"
    assert overridden == declared
    assert "registry_reachable" in script, "public bases are used when a registry answers"
