"""Container backend: ``ensure`` (what an editor ``init`` runs) -> first 200 of the preview
for a new project that claims a warm spare, a new project created cold (no spare: new
container and workspace volume), and a project whose stopped container is started again, as
ratios against a bare ``podman run`` of the sandbox image -> first 200 of its dev server,
measured in the same run, interleaved. Then the image sizes against the previous
``make images`` (``.images/sizes-<tag>.prev.tsv``).

    .venv/bin/python benchmarks/container/run.py --runs 3     (after `make images`)
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import attrs
import httpx
import trio
from amicable_agent.sandboxes.container import fence
from amicable_agent.sandboxes.container.backend import ContainerBackend, open_container_backend
from amicable_agent.sandboxes.container.config import ContainerBackendConfig
from amicable_testing.podman import container_ip, image_ref, podman, remove, ulimit_args

ROOT = Path(__file__).resolve().parents[2]


async def first_200(client: httpx.AsyncClient, url: str, deadline_s: float = 300) -> None:
    with trio.fail_after(deadline_s):
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await trio.sleep(0.02)


async def bare_run(client: httpx.AsyncClient, network: str) -> float:
    name = f"amicable-bench-bare-{secrets.token_hex(3)}"
    started = time.perf_counter()
    podman("run", "-d", "--name", name, "--network", network, *ulimit_args(),
           "--env", "AMICABLE_RUNTIME_TOKEN=t", image_ref("sandbox"))  # fmt: skip
    try:
        await first_200(client, f"http://{container_ip(name, network)}:3000/")
        return time.perf_counter() - started
    finally:
        remove(name)


async def ensure_to_200(
    client: httpx.AsyncClient, backend: ContainerBackend, session: str
) -> float:
    started = time.perf_counter()
    handle = await backend.ensure(session, project_id=session, template_id="vite")
    await first_200(client, handle.preview_upstream + "/")
    return time.perf_counter() - started


def sizes() -> str:
    def read(path: Path) -> dict[str, int]:
        if not path.exists():
            return {}
        rows = (line.split("\t") for line in path.read_text().splitlines() if line)
        return {row[0]: int(row[1]) for row in rows}

    tag = os.environ.get("IMAGE_TAG", "dev")
    now = read(ROOT / ".images" / f"sizes-{tag}.tsv")
    before = read(ROOT / ".images" / f"sizes-{tag}.prev.tsv")
    if "sandbox" in before and "sandbox-vite" not in before:  # before one image per template
        before["sandbox-vite"] = before.pop("sandbox")
    lines = ["| image | size | previous build | change |", "|---|---|---|---|"]
    for name, size in sorted(now.items()):
        prev = before.get(name)
        change = "—" if prev is None else f"{(size - prev) / 1e6:+.1f} MB"
        prev_text = "—" if prev is None else f"{prev / 1e6:.0f} MB"
        lines.append(f"| amicable-{name} | {size / 1e6:.0f} MB | {prev_text} | {change} |")
    return "\n".join(lines)


async def measure(sock: str, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"bare": [], "spare": [], "cold": [], "restart": []}
    pooled, plain = (f"amicable-bench-{secrets.token_hex(3)}" for _ in range(2))
    base = ContainerBackendConfig(
        socket_path=sock, image=image_ref("sandbox"), network=plain, reap_interval_s=3600,
        idle_ttl_s=0, warm_pool_size=0,
    )  # fmt: skip
    # the pool as deployed (one spare, refilled 5 s after a claim), on a network of its own
    with_pool = attrs.evolve(base, network=pooled, warm_pool_size=1, idle_ttl_s=3600)
    try:
        async with (
            open_container_backend(base) as backend,
            open_container_backend(with_pool) as warm,
            httpx.AsyncClient(trust_env=False, timeout=5) as client,
        ):
            await ensure_to_200(client, backend, "bench-prime")  # network + page cache
            await backend.delete((await backend.list())[0].sandbox_id)
            for index in range(runs):  # interleaved: each variant sees about the same load
                # untimed: the refill after the last claim ends before anything is measured
                await warm.pool.wait_filled()
                times["bare"].append(await bare_run(client, plain))
                session = f"bench-{index}-{secrets.token_hex(3)}"
                times["cold"].append(await ensure_to_200(client, backend, session))
                await backend.stop_idle()  # idle stop: the container stays, stopped
                times["restart"].append(await ensure_to_200(client, backend, session))
                times["spare"].append(await ensure_to_200(client, warm, f"spare-{index}"))
            await warm.pool.wait_filled()
            for each in (backend, warm):
                for info in await each.list():
                    await each.delete(info.sandbox_id)
    finally:
        for network in (pooled, plain):
            podman("network", "rm", "--force", network, check=False)
            fence.run_nft(fence.removal(network))
    return times


def main(runs: int) -> None:
    load = [f"{os.getloadavg()[0]:.2f}"]
    with tempfile.TemporaryDirectory(prefix="amicable-bench-") as tmp:
        sock = Path(tmp) / "podman.sock"
        service = subprocess.Popen(
            ["podman", "--runtime", "runc", "system", "service", "--time=0", f"unix://{sock}"],
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            times = trio.run(measure, os.fspath(sock), runs)
        finally:
            os.killpg(service.pid, signal.SIGTERM)
            service.wait(timeout=30)
    load.append(f"{os.getloadavg()[0]:.2f}")
    med = {name: statistics.median(values) for name, values in times.items()}
    b = med["bare"]
    print(f"load avg {load[0]}-{load[1]}, median of {runs}")
    print("| bare podman run -> 200 | spare claim -> 200 | spare/bare | cold create -> 200 "
          "| cold/bare | stopped restart -> 200 | restart/bare |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    cells = [f"{b * 1000:.0f} ms"]
    for name in ("spare", "cold", "restart"):
        cells += [f"{med[name] * 1000:.0f} ms", f"{med[name] / b:.2f}x"]
    print("| " + " | ".join(cells) + " |")
    print()
    print(sizes())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    main(args.runs)
