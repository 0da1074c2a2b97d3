"""Several real ``python -m amicable_agent`` processes on one real PostgreSQL, for the
replica tests: the fake Kubernetes API server and the fake model run in the test process, one
real ``amicable-sandbox-runtime`` on loopback stands for the project's sandbox pod."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import psycopg
import trio
from amicable_testing import ws_recv_until, ws_send
from amicable_testing.processes import free_port, process_alive

from .test_server_integration import NS, SECRET, TEMPLATE, write_kubeconfig

#: Lease time of the replicas under test (short, so take-overs happen quickly).
LEASE_TTL_S = 2.0


@attrs.frozen
class Replica:
    """One running agent process."""

    name: str
    process: trio.Process
    port: int
    log: Path

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """``kill -9`` of the whole process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    async def health(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{self.http}/healthz")
            body: dict[str, Any] = response.json()
            return body


@attrs.frozen
class Cluster:
    """What the replicas share."""

    tmp_path: Path
    kube_url: str
    runtime_port: int
    llm_url: str
    db_url: str

    def env(self, name: str, **extra: str) -> dict[str, str]:
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "AMICABLE_"))
        }
        return {
            **base,
            "AMICABLE_SANDBOX_BACKEND": "kubernetes",
            "AMICABLE_DATA_DIR": str(self.tmp_path / name),
            "AMICABLE_DATABASE_URL": self.db_url,
            "AMICABLE_AGENT_PORT": str(free_port()),
            "AMICABLE_AGENT_INTERNAL_PORT": str(free_port()),
            "AMICABLE_PREVIEW_RESOLVER_TOKEN": "resolver-token",
            "AMICABLE_SANDBOX_IDLE_TTL_S": "600",
            "AMICABLE_RUNTIME_TOKEN_SECRET": SECRET,
            "AMICABLE_K8S_SERVICE_HOST_TEMPLATE": "127.0.0.1",
            "AMICABLE_REPLICA_ID": name,
            "AMICABLE_TURN_LEASE_TTL_S": str(LEASE_TTL_S),
            "K8S_SANDBOX_NAMESPACE": NS,
            "K8S_SANDBOX_TEMPLATE_NAME": TEMPLATE,
            "K8S_SANDBOX_READY_TIMEOUT": "30",
            "SANDBOX_RUNTIME_PORT": str(self.runtime_port),
            "KUBECONFIG": str(write_kubeconfig(self.tmp_path / "kubeconfig", self.kube_url)),
            "HOSTNAME": name,
            "ANTHROPIC_API_KEY": "sk-ant-test-key-123456",
            "ANTHROPIC_BASE_URL": self.llm_url,
            "DEEPAGENTS_QA": "false",
            "AMICABLE_LLM_MAX_RETRIES": "0",
            **extra,
        }

    @asynccontextmanager
    async def replica(self, name: str, **extra: str) -> AsyncIterator[Replica]:
        """Start ``python -m amicable_agent`` and wait until ``/readyz`` answers 200 (again
        on other ports if a free port was taken meanwhile by someone else)."""
        for _attempt in range(3):
            replica = await self._start(name, extra)
            if replica is not None:
                break
        else:
            raise AssertionError(f"{name} could not find free ports")
        try:
            yield replica
        finally:
            with trio.CancelScope(shield=True):
                replica.signal(signal.SIGCONT)
                replica.kill()
                with trio.move_on_after(20):
                    await replica.process.wait()

    async def _start(self, name: str, extra: dict[str, str]) -> Replica | None:
        env = self.env(name, **extra)
        log = self.tmp_path / f"{name}.log"
        with log.open("ab") as out:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "amicable_agent", "--log-level", "INFO"],
                env=env, stdout=out, stderr=out, start_new_session=True,
            )  # fmt: skip
        replica = Replica(name, proc, int(env["AMICABLE_AGENT_PORT"]), log)
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                with trio.fail_after(90):
                    while True:
                        if proc.poll() is not None:
                            text = log.read_text()
                            if "Address already in use" in text:
                                return None
                            raise AssertionError(text[-3000:])
                        with contextlib.suppress(httpx.TransportError):
                            if (await client.get(f"{replica.http}/readyz")).status_code == 200:
                                return replica
                        await trio.sleep(0.1)
        except BaseException:
            with trio.CancelScope(shield=True):
                replica.kill()
                await proc.wait()
            raise

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return list(conn.execute(sql, params).fetchall())

    async def holder(self, project_id: str) -> tuple[str | None, int] | None:
        rows = await trio.to_thread.run_sync(
            self.query, "SELECT holder, token FROM turn_leases WHERE project_id=%s", project_id
        )
        return (rows[0][0], int(rows[0][1])) if rows else None

    async def wait_holder(self, project_id: str, name: str, timeout_s: float = 60) -> int:
        with trio.fail_after(timeout_s):
            while True:
                lease = await self.holder(project_id)
                if lease is not None and lease[0] == name:
                    return lease[1]
                await trio.sleep(0.05)


async def open_project(replica: Replica, ws: Any, sid: str) -> None:
    await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
    await ws_recv_until(ws, "init", timeout_s=60)


async def wait_dead(replica: Replica) -> None:
    with trio.fail_after(20):
        while process_alive(replica.process.pid):
            await trio.sleep(0.05)
