"""The agent, preview-router and editor images, each run for real on the session's network."""

from __future__ import annotations

import json

import httpx
import pytest
from amicable_testing.podman import (
    agent_args,
    container_ip,
    image_ref,
    logs,
    podman,
    remove,
    run_detached,
    ulimit_args,
    wait_http,
)


def test_editor_serves_the_spa_and_config_rendered_from_env(network: str, unique: str) -> None:
    name = f"amicable-editor-{unique}"
    ws_url = 'wss://agent.example.com/"quoted\\'
    env = {"VITE_AGENT_WS_URL": ws_url, "AMICABLE_AUTH_MODE": "oidc"}
    run_detached(name, image_ref("editor"), network=network, env=env)
    try:
        assert podman("exec", name, "id", "-u") == "101"
        base = f"http://{container_ip(name, network)}:8080"
        assert wait_http(f"{base}/healthz").status_code == 200, logs(name)
        shell = httpx.get(f"{base}/projects/abc", timeout=10)
        assert shell.status_code == 200
        assert '<div id="root">' in shell.text
        assert shell.headers["cache-control"] == "no-cache"
        config = httpx.get(f"{base}/config.js", timeout=10)
        assert config.headers["cache-control"] == "no-store"
        prefix = "window.__AMICABLE_CONFIG__ = "
        assert config.text.startswith(prefix)
        rendered = json.loads(config.text[len(prefix) :].strip().rstrip(";"))
        assert rendered == {"VITE_AGENT_WS_URL": ws_url, "AMICABLE_AUTH_MODE": "oidc"}
    finally:
        remove(name)


def test_editor_without_env_serves_the_default_config(network: str, unique: str) -> None:
    name = f"amicable-editor-{unique}"
    run_detached(name, image_ref("editor"), network=network, env={})
    try:
        base = f"http://{container_ip(name, network)}:8080"
        wait_http(f"{base}/healthz")
        config = httpx.get(f"{base}/config.js", timeout=10)
        assert config.status_code == 200
        assert "window.__AMICABLE_CONFIG__ = window.__AMICABLE_CONFIG__ || {};" in config.text
    finally:
        remove(name)


def test_editor_refuses_a_multi_line_setting(network: str, unique: str) -> None:
    name = f"amicable-editor-{unique}"
    podman(
        "run", "--name", name, "--network", network, *ulimit_args(),
        "--env", "VITE_AGENT_WS_URL=wss://a/\n};alert(1);//", image_ref("editor"),
        check=False,
    )  # fmt: skip
    try:
        assert podman("inspect", "--format", "{{.State.ExitCode}}", name) == "64"
        assert "VITE_AGENT_WS_URL must be one line" in logs(name)
    finally:
        remove(name)


def test_agent_refuses_an_open_port_without_a_login(network: str, unique: str) -> None:
    name = f"amicable-agent-{unique}"
    out = podman(
        "run", "--name", name, "--network", network, *ulimit_args(), image_ref("agent"),
        check=False,
    )  # fmt: skip
    try:
        state = podman("inspect", "--format", "{{.State.ExitCode}}", name)
        assert state != "0"
        assert "refusing to listen on 0.0.0.0 without a login" in logs(name)
        assert "Traceback" not in out
    finally:
        remove(name)


def test_agent_migrates_its_store_and_answers_healthz(
    network: str, unique: str, podman_socket: str
) -> None:
    name = f"amicable-agent-{unique}"
    volume = f"amicable-agent-data-{unique}"
    podman("volume", "create", volume)
    args, env = agent_args(podman_socket, network)
    try:
        run_detached(name, image_ref("agent"), "--volume", f"{volume}:/data", *args,
                     network=network, env=env)  # fmt: skip
        assert podman("exec", name, "id", "-u") == "10001"
        base = f"http://{container_ip(name, network)}"
        health = wait_http(f"{base}:8000/healthz", timeout=120)
        assert health.status_code == 200, logs(name)
        assert health.json()["status"] == "ok"
        assert wait_http(f"{base}:8001/healthz").status_code == 200
        tables = podman(
            "exec", name, "python3", "-c",
            "import sqlite3; c = sqlite3.connect('/data/amicable.db'); "
            "print(' '.join(r[0] for r in c.execute(\"select name from sqlite_master "
            "where type='table'\")))",
        ).split()  # fmt: skip
        assert {"projects", "schema_version"} <= set(tables), tables
    finally:
        remove(name)
        podman("volume", "rm", "--force", volume, check=False)


@pytest.mark.parametrize("label_kind", ["known", "unknown"])
def test_router_proxies_to_the_sandbox_container(
    network: str, unique: str, label_kind: str
) -> None:
    sandbox = f"amicable-{unique}sb"
    router = f"amicable-router-{unique}"
    run_detached(
        sandbox, image_ref("sandbox"), network=network,
        env={"AMICABLE_RUNTIME_TOKEN": "t", "AMICABLE_HMR_CLIENT_PORT": "8080",
             "AMICABLE_HMR_PROTOCOL": "ws"},
    )  # fmt: skip
    env = {"AMICABLE_PREVIEW_UPSTREAM_TEMPLATE": "http://{sandbox_id}:3000"}
    run_detached(router, image_ref("preview-router"), network=network, env=env)
    try:
        assert podman("exec", router, "id", "-u") == "10001"
        base = f"http://{container_ip(router, network)}:8080"
        assert wait_http(f"{base}/healthz").status_code == 200, logs(router)
        wait_http(f"http://{container_ip(sandbox, network)}:3000/", timeout=180)
        label = sandbox if label_kind == "known" else f"amicable-{unique}zz"
        page = httpx.get(f"{base}/", headers={"Host": f"{label}.preview.localhost"}, timeout=30)
        if label_kind == "known":
            assert page.status_code == 200, logs(router)
            assert "/@vite/client" in page.text
        else:
            assert page.status_code in (502, 503, 504), page.text
    finally:
        remove(router, sandbox)
