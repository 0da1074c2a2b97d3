"""Fixtures for the KubernetesBackend tests: the fake API server, a loopback runtime, clocks."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import h11
import kubernetes
import pytest
import trio
from amicable_agent.sandboxes.kubernetes.backend import (
    KubernetesBackend,
    KubernetesBackendConfig,
    open_kubernetes_backend,
)
from amicable_testing.fake_kube import TEMPLATES, FakeKube, open_fake_kube

NS = "sandboxes"
TEMPLATE = "amicable-sandbox-vite"


@attrs.define
class FakeClock:
    """A wall clock the test moves by hand (TTLs, Lease expiry)."""

    now: float = attrs.field(factory=time.time)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@attrs.define
class RuntimeStub:
    """A loopback HTTP server standing in for the sandbox runtime's ``/healthz``."""

    port: int = 0
    authorizations: list[str] = attrs.field(factory=list)
    status: int = 200


async def _serve_runtime(stub: RuntimeStub, stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
                continue
            if isinstance(event, h11.Request):
                headers = dict(event.headers)
                stub.authorizations.append(headers.get(b"authorization", b"").decode())
                continue
            if isinstance(event, h11.EndOfMessage):
                body = json.dumps({"status": "ok"}).encode()
                response = h11.Response(
                    status_code=stub.status,
                    headers=[
                        ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                    ],
                )
                await stream.send_all(conn.send(response) or b"")
                await stream.send_all(conn.send(h11.Data(data=body)) or b"")
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
                continue
            return
    except (trio.BrokenResourceError, h11.ProtocolError):
        return
    finally:
        await stream.aclose()


@pytest.fixture
async def runtime(nursery: trio.Nursery) -> RuntimeStub:
    stub = RuntimeStub()
    listeners = await nursery.start(
        functools.partial(
            trio.serve_tcp, functools.partial(_serve_runtime, stub), 0, host="127.0.0.1"
        )
    )
    stub.port = listeners[0].socket.getsockname()[1]
    return stub


@pytest.fixture
async def fake() -> AsyncIterator[FakeKube]:
    async with open_fake_kube(ready_delay_s=0.05) as server:
        server.put(
            TEMPLATES,
            "v1alpha1",
            NS,
            {"metadata": {"name": TEMPLATE}, "spec": {"podTemplate": {"spec": {"containers": []}}}},
        )
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def projects() -> set[str]:
    """Project ids that exist (the reaper deletes claims of the others)."""
    return {"p1", "p2", "p3"}


BackendFactory = Callable[..., AbstractAsyncContextManager[KubernetesBackend]]


@pytest.fixture
def open_backend(
    fake: FakeKube, runtime: RuntimeStub, clock: FakeClock, projects: set[str]
) -> BackendFactory:
    """``async with open_backend(**config_overrides) as backend`` against the fake cluster."""

    async def project_exists(project_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return project_id in projects

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[KubernetesBackend]:
        exists = overrides.pop("project_exists", project_exists)
        settings: dict[str, Any] = {
            "namespace": NS,
            "template_name": TEMPLATE,
            "ready_timeout_s": 20.0,
            "service_host_template": "127.0.0.1",
            "runtime_port": runtime.port,
            "runtime_token_secret": "s3cret",
            "reap_interval_s": 0.0,
            "idle_ttl_s": 600.0,
            "request_timeout_s": 5.0,
        }
        settings.update(overrides)
        config = KubernetesBackendConfig(**settings)
        configuration = kubernetes.client.Configuration(host=fake.url)
        async with open_kubernetes_backend(
            config,
            project_exists=exists,
            configuration=configuration,
            clock=clock,
        ) as backend:
            yield backend

    return factory
