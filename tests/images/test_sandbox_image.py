"""The sandbox image: starts as uid 10001, serves the runtime API behind its bearer token and
the baked template's Vite dev server without an npm install."""

from __future__ import annotations

import httpx
from amicable_testing.podman import (
    container_ip,
    image_ref,
    logs,
    podman,
    remove,
    run_detached,
    wait_http,
)


def test_sandbox_serves_runtime_api_and_dev_server(network: str, unique: str) -> None:
    name = f"amicable-sb-{unique}"
    token = f"tok-{unique}"
    run_detached(name, image_ref("sandbox"), network=network, env={"AMICABLE_RUNTIME_TOKEN": token})
    try:
        assert podman("exec", name, "id", "-u") == "10001"
        assert podman("inspect", "--format", "{{.Config.User}}", name).startswith("10001")
        ip = container_ip(name, network)
        api = f"http://{ip}:8888"
        health = wait_http(f"{api}/healthz")
        assert health.status_code == 200, logs(name)
        # The API refuses a missing or wrong token and answers the right one.
        assert httpx.get(f"{api}/v1/preview", timeout=10).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.get(f"{api}/v1/preview", headers=wrong, timeout=10).status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        listing = httpx.get(f"{api}/v1/files/package.json", headers=auth, timeout=10)
        assert listing.status_code == 200, listing.text
        assert "vite" in listing.text
        # The dev server comes up from the baked node_modules.
        page = wait_http(f"http://{ip}:3000/", timeout=180)
        assert page.status_code == 200, logs(name)
        assert "/@vite/client" in page.text
        ran = httpx.post(
            f"{api}/v1/exec", headers=auth, json={"command": "id -u && node --version"}, timeout=60
        )
        assert ran.status_code == 200, ran.text
        assert "10001" in ran.text
        assert "v20." in ran.text
    finally:
        remove(name)
