"""A/B of two checkouts' runtimes, side by side, with interleaved requests.

``run.py`` compares each operation with floors measured in the same run, but two runs on this
shared machine see different load, so the same code moves by tens of percent between runs.
This script starts the runtime of checkout A and of checkout B at the same time (each with
its own ``.venv``), keeps one raw keep-alive connection to each, and alternates the same
request between them (the order flips every round), so both see the same load. It prints the
median of each operation per side and the ratio B/A.

Usage: ``python benchmarks/runtime/ab.py A_DIR B_DIR [--iterations N]`` (each DIR a checkout
with ``make py-deps`` done). Prints; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import trio

TOKEN = "ab-token"
WARM_UP = 20


class RawClient:
    """One keep-alive connection; reconnects when the server closes (request limit)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stream: trio.SocketStream | None = None
        self.buf = b""

    async def request(self, method: str, target: str, body: bytes = b"") -> bytes:
        """Send one request; its body (any status but 200 is an error)."""
        if self.stream is None:
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        await self.stream.send_all(head + body)
        while b"\r\n\r\n" not in self.buf:
            self.buf += await self.stream.receive_some(65536)
        got, _, self.buf = self.buf.partition(b"\r\n\r\n")
        size = int(got.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(self.buf) < size:
            self.buf += await self.stream.receive_some(65536)
        answer, self.buf = self.buf[:size], self.buf[size:]
        if not got.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(got.decode("latin-1"))
        if b"connection: close" in got.lower():
            await self.stream.aclose()
            self.stream, self.buf = None, b""
        return answer


async def start_runtime(checkout: Path, tmp: Path, name: str, nursery: trio.Nursery) -> int:
    """Start ``checkout``'s runtime on a fresh workspace; its port."""
    workspace, ready = tmp / name, tmp / f"{name}.ready"
    workspace.mkdir()
    env = {**os.environ, "AMICABLE_RUNTIME_TOKEN": TOKEN, "AMICABLE_RUNTIME_HOST": "127.0.0.1"}
    argv = [str(checkout / ".venv/bin/python"), "-m", "amicable_sandbox_runtime"]
    argv += ["--no-preview", "--port", "0", "--workspace", str(workspace)]
    argv += ["--ready-file", str(ready)]
    run = partial(
        trio.run_process, argv, env=env, check=False, start_new_session=True,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    proc: trio.Process = await nursery.start(run)
    with trio.fail_after(60):
        while not await trio.Path(ready).exists():  # noqa: ASYNC110 - another process writes it
            await trio.sleep(0.05)
    nursery.start_soon(_stop_at_exit, proc)
    return int(json.loads(ready.read_text())["port"])


async def _stop_at_exit(proc: trio.Process) -> None:
    try:
        await trio.sleep_forever()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)


def operations() -> dict[str, Callable[[RawClient], Awaitable[object]]]:
    """The measured operations (the hot routes of ``run.py``)."""

    async def put_get(client: RawClient) -> None:
        await client.request("PUT", "/v1/files/src/small.ts", b"export const a = 1\n")
        await client.request("GET", "/v1/files/src/small.ts")

    return {
        "GET /healthz": lambda c: c.request("GET", "/healthz"),
        "file PUT+GET": put_get,
        "exec 'true'": lambda c: c.request("POST", "/v1/exec", b'{"command": "true"}'),
    }


async def main(a_dir: Path, b_dir: Path, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="amicable-ab-") as tmp:
        async with trio.open_nursery() as nursery:
            clients = [
                RawClient(await start_runtime(a_dir, Path(tmp), "a", nursery)),
                RawClient(await start_runtime(b_dir, Path(tmp), "b", nursery)),
            ]
            samples: dict[tuple[str, int], list[float]] = {}
            for i in range(WARM_UP + n):
                for name, op in operations().items():
                    for side in (0, 1) if i % 2 else (1, 0):
                        start = time.perf_counter()
                        await op(clients[side])
                        if i >= WARM_UP:
                            ms = (time.perf_counter() - start) * 1000
                            samples.setdefault((name, side), []).append(ms)
            nursery.cancel_scope.cancel()
    print(f"A = {a_dir}\nB = {b_dir}")
    for name in operations():
        a, b = (statistics.median(samples[(name, side)]) for side in (0, 1))
        print(f"{name:14s} A {a:6.3f} ms  B {b:6.3f} ms  B/A {b / a:5.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a_dir", type=Path)
    parser.add_argument("b_dir", type=Path)
    parser.add_argument("--iterations", type=int, default=500)
    args = parser.parse_args()
    trio.run(main, args.a_dir.resolve(), args.b_dir.resolve(), args.iterations)
