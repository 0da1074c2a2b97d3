"""Container tests: the four images ``make images`` builds, run for real with podman.

They run when ``AMICABLE_IMAGE_TESTS=1`` (``make test`` and ``make test-images`` set it), after
every other test. The session builds the images once (cached by content hash: seconds when
nothing changed; under ``make test`` it waits for the build started in the background) and
shares one podman network.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from amicable_testing.container_backend import cleanup
from amicable_testing.podman import build_images, podman, podman_available

ENABLED = os.environ.get("AMICABLE_IMAGE_TESTS") == "1"


def _is_image_test(item: pytest.Item) -> bool:
    return "tests/images/" in item.nodeid.replace(os.sep, "/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ENABLED:
        # last: `make test` builds the images in the background meanwhile (build.sh's lock
        # makes the session's own build wait for it)
        items[:] = [i for i in items if not _is_image_test(i)] + [
            i for i in items if _is_image_test(i)
        ]
        return
    skip = pytest.mark.skip(
        reason="container tests: run `make test-images` (AMICABLE_IMAGE_TESTS=1)"
    )
    for item in items:
        if _is_image_test(item):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def images() -> str:
    """Build (or find cached) all four images; ``make images``' output."""
    assert podman_available(), "podman is missing: `make image-deps` installs it"
    return build_images()


@pytest.fixture(scope="session")
def network(images: str) -> Iterator[str]:
    """One bridge network for the session's containers (its DNS resolves container names)."""
    name = f"amicable-test-{os.getpid()}"
    podman("network", "create", name)
    try:
        yield name
    finally:
        cleanup(name)  # its containers, our volumes labelled with it, the network


@pytest.fixture
def unique() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="session")
def podman_socket(images: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``podman system service`` (Docker-compatible API) on a Unix socket of its own."""
    folder = tmp_path_factory.mktemp("podman")
    path = folder / "podman.sock"
    log = folder / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["podman", "--runtime", "runc", "system", "service", "--time=0", f"unix://{path}"],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 60
        while not path.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "podman system service did not start"
            time.sleep(0.05)
        # The agent's container (uid 10001) is given this socket in the end-to-end tests.
        path.chmod(0o666)
        yield os.fspath(path)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
