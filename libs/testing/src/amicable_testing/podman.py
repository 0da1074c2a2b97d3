"""Podman for the container tests and the container backend's tests: the CLI as this machine
needs it (``--runtime runc``; ulimits at or under the shell's hard limits, as
``deploy/images/podman.sh`` sets them for builds), and the images ``make images`` builds.

Everything here is synchronous (``subprocess``): the fixtures that use it are session-scoped.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO = Path(__file__).resolve().parents[4]
IMAGE_TAG = os.environ.get("IMAGE_TAG", "dev")


def image_ref(name: str) -> str:
    """``localhost/amicable-<name>:<tag>``, as ``deploy/images/build.sh`` tags it (the sandbox
    of a template: ``sandbox-<template>``; ``sandbox`` is the default template's)."""
    return f"localhost/amicable-{name}:{IMAGE_TAG}"


def ulimit_args() -> list[str]:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 16384 if hard == resource.RLIM_INFINITY else min(hard, 16384)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


def podman_available() -> bool:
    return shutil.which("podman") is not None


def podman(*args: str, check: bool = True, timeout: float = 600) -> str:
    """Run ``podman --runtime runc <args>``; its stdout (stripped). Raises with stderr."""
    runtime = os.environ.get("AMICABLE_OCI_RUNTIME", "runc")
    proc = subprocess.run(
        ["podman", "--runtime", runtime, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout.strip()


def build_images(names: Sequence[str] = (), *, templates: Sequence[str] = ()) -> str:
    """``deploy/images/build.sh`` (what ``make images`` runs); its output. ``templates``: the
    sandbox images to build (``TEMPLATES``; the environment's or ``vite`` otherwise)."""
    env = {**os.environ}
    if names:
        env["IMAGES"] = " ".join(names)
    if templates:
        env["TEMPLATES"] = " ".join(templates)
    proc = subprocess.run(
        ["bash", os.fspath(REPO / "deploy" / "images" / "build.sh")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"make images failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def run_detached(name: str, image: str, *args: str, network: str, env: dict[str, str]) -> str:
    """Start a container (removed by :func:`remove`); its id."""
    env_args = [f"--env={key}={value}" for key, value in env.items()]
    return podman(
        "run", "--detach", "--name", name, "--network", network, *ulimit_args(), *env_args,
        *args, image,
    )  # fmt: skip


def container_ip(name: str, network: str) -> str:
    return podman(
        "inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
        name,
    )  # fmt: skip


def remove(*names: str) -> None:
    if names:
        podman("rm", "--force", "--time", "2", *names, check=False)


def logs(name: str) -> str:
    proc = subprocess.run(
        ["podman", "logs", name], capture_output=True, text=True, check=False, timeout=60
    )
    return proc.stdout + proc.stderr


def wait_http(url: str, *, timeout: float = 120, **kwargs: object) -> httpx.Response:
    """GET ``url`` until it answers below 500 (a deadline for start-up, not a timing)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=5, **kwargs)  # type: ignore[arg-type]
            if response.status_code < 500:
                return response
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout}s (last: {last!r})")


AGENT_ENV = {"AMICABLE_INSECURE_NO_AUTH": "1", "PUBLIC_BASE_URL": "http://agent.test:8000"}


def agent_args(socket: str, network: str) -> tuple[list[str], dict[str, str]]:
    """The agent container with the container backend on the engine socket ``socket``."""
    env = {
        **AGENT_ENV,
        "AMICABLE_SANDBOX_BACKEND": "container",
        "AMICABLE_CONTAINER_IMAGE": image_ref("sandbox"),
        "AMICABLE_CONTAINER_NETWORK": network,
        "AMICABLE_CONTAINER_ADDRESS": "name",
        # The agent runs in a container (uid 10001) on the sandboxes' own network: it cannot
        # install nftables rules on the host, and the fence assumes an agent on the host
        # (docs/containers.md); tests/images/test_container_fence.py tests the fence.
        "AMICABLE_CONTAINER_FENCE": "off",
    }
    return ["--volume", f"{socket}:/run/podman/podman.sock"], env
