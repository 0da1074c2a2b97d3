"""The edges of identity: hosts (DNS rebinding), origins, CORS and CSRF, the editor page's
headers, hostile ``init`` ids, per-user and global limits, refusing to run without a login on
a public address, and handing projects from before logins to the first user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from amicable_agent.auth.config import AuthConfig, Quotas
from amicable_agent.auth.identity import User
from amicable_agent.config import AgentConfig
from amicable_agent.errors import ConfigError
from amicable_agent.server import check_exposure
from amicable_agent.store.sqlite import open_sqlite_store
from amicable_testing import ws_recv_until, ws_send
from amicable_testing.logins import ALICE, BOB, Site
from trio_websocket import open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection, Request

REBOUND = "attacker.example:{port}"


async def test_a_rebinding_host_gets_421_and_a_closed_socket(agent) -> None:
    host = REBOUND.format(port=agent.ports.public)
    evil = f"http://{host}"
    async with httpx.AsyncClient(base_url=agent.http) as client:
        for method, path in (("GET", "/api/projects"), ("POST", "/api/projects"),
                             ("GET", "/"), ("GET", "/config.js"), ("GET", "/auth/me")):  # fmt: skip
            answer = await client.request(
                method, path, headers={"Host": host, "Origin": evil}, json={}
            )
            assert answer.status_code == 421, (path, answer.status_code)
            assert answer.json()["error"] == "misdirected_request"
        assert (await client.get("/healthz", headers={"Host": host})).status_code == 200
        assert (await client.get("/api/projects")).json() == {"projects": []}  # nothing made
    stream = await trio.open_tcp_stream("127.0.0.1", agent.ports.public)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        request = Request(host=host, target="/ws", extra_headers=[("Origin", evil)])
        await stream.send_all(ws.send(request))
        closed = None
        with trio.fail_after(10):
            while closed is None:
                data = await stream.receive_some(65536)
                assert data
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, CloseConnection):
                        closed = event.code
        assert closed == 1008
    assert agent.backend.ensure_calls == []


async def test_cors_for_exactly_the_allowed_origins(agent_factory) -> None:
    editor = "https://editor.example.com"
    config = {"auth": AuthConfig(allowed_origins=(editor,))}
    async with (
        agent_factory(config=config) as agent,
        httpx.AsyncClient(base_url=agent.http) as client,
    ):
        preflight = await client.options(
            "/api/projects",
            headers={
                "Origin": editor,
                "Access-Control-Request-Method": "DELETE",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == editor
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "DELETE" in preflight.headers["access-control-allow-methods"]
        assert "Origin" in preflight.headers["vary"]
        listed = await client.get("/api/projects", headers={"Origin": editor})
        assert listed.headers["access-control-allow-origin"] == editor
        for foreign in ("https://evil.example", f"http://localhost:{agent.ports.public + 1}",
                            "https://editor.example.com.evil.example", "null"):  # fmt: skip
            refused = await client.options(
                "/api/projects",
                headers={"Origin": foreign, "Access-Control-Request-Method": "GET"},
            )
            assert refused.status_code == 403, foreign
            assert "access-control-allow-origin" not in refused.headers


def test_a_preview_origin_can_never_be_allowed() -> None:
    config = AuthConfig(allowed_origins=("http://shop.preview.localhost:8080",))
    with pytest.raises(ConfigError, match="preview origin"):
        config.check_preview_domain("preview.localhost")
    with pytest.raises(ConfigError, match="exact origin"):
        AuthConfig.from_env({"AMICABLE_ALLOWED_ORIGINS": "http://localhost:*"})
    assert AuthConfig.from_env({"CORS_ALLOW_ORIGINS": "https://e.example/"}).allowed_origins == (
        "https://e.example",
    )


async def test_cookie_writes_need_an_allowed_origin(site: Site) -> None:
    async with site.signed_in(ALICE) as alice:
        cookie = alice.cookies["amicable_session"]
        async with httpx.AsyncClient(
            base_url=site.http, cookies={"amicable_session": cookie}
        ) as bare:
            assert (await bare.get("/api/projects")).status_code == 200  # reads are fine
            forged = await bare.post("/api/projects", json={"name": "csrf"})
            assert forged.status_code == 403
            assert forged.json()["error"] == "forbidden_origin"
            other = await bare.post(
                "/api/projects", json={"name": "csrf"}, headers={"Origin": "https://evil.example"}
            )
            assert other.status_code == 403
        assert (await alice.get("/api/projects")).json() == {"projects": []}


async def test_the_editor_page_and_config_js(agent_factory, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>Amicable</title>")
    async with (
        agent_factory(config={"editor_dist": dist}) as agent,
        httpx.AsyncClient(base_url=agent.http) as client,
    ):
        page = await client.get("/")
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "frame-src http://*.preview.localhost:8123" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        body = (await client.get("/config.js")).text
        config = json.loads(body.removeprefix("window.__AMICABLE_CONFIG__ = ").rstrip(";\n"))
        port = agent.ports.public
        assert config == {
            "VITE_AGENT_HTTP_URL": f"http://localhost:{port}",
            "VITE_AGENT_WS_URL": f"ws://localhost:{port}/ws",
            "AMICABLE_AUTH_MODE": "none",
        }


@pytest.mark.parametrize(
    "bad_id",
    ["../../etc/x", "x" * (1 << 20), ".", "a/b", "-leading-dash", "ü-umlaut", "a" * 129, "a\x00b"],
)
async def test_hostile_init_ids_create_nothing(agent, bad_id: str) -> None:
    async with open_websocket_url(agent.ws, max_message_size=4 << 20) as ws:
        await ws_send(ws, {"type": "init", "data": {"session_id": bad_id}})
        last = (await ws_recv_until(ws, "error"))[-1]
        assert last.data.error == "invalid_project_id"  # the socket stays open
    async with httpx.AsyncClient(base_url=agent.http) as client:
        assert (await client.get("/api/projects")).json() == {"projects": []}
    assert agent.backend.ensure_calls == []


async def test_an_unknown_id_becomes_the_callers_project(site: Site) -> None:
    async with site.signed_in(BOB) as bob:
        cookie = f"amicable_session={bob.cookies['amicable_session']}"
        pid = str(uuid.uuid4())
        ws_url = f"ws://localhost:{site.agent.ports.public}/ws"
        headers = [("Origin", site.origin), ("Cookie", cookie)]
        async with open_websocket_url(ws_url, extra_headers=headers) as ws:
            await ws_send(ws, {"type": "init", "data": {"session_id": pid}})
            await ws_recv_until(ws, "init")
        listed = (await bob.get("/api/projects")).json()["projects"]
        assert [(p["project_id"], p["role"]) for p in listed] == [(pid, "owner")]


async def test_projects_per_user_limit(site_factory) -> None:
    async with (
        site_factory(auth={"quotas": Quotas(projects_per_user=2)}) as site,
        site.signed_in(ALICE) as alice,
        site.signed_in(BOB) as bob,
    ):
        for n in range(2):
            assert (await alice.post("/api/projects", json={"name": f"p{n}"})).status_code == 200
        third = await alice.post("/api/projects", json={"name": "p3"})
        assert third.status_code == 429
        assert third.json()["error"] == "quota_exceeded"
        assert "2 projects" in third.json()["detail"]
        assert (await bob.post("/api/projects", json={"name": "b"})).status_code == 200


async def test_running_sandboxes_per_user_and_in_all(site_factory) -> None:
    quotas = Quotas(running_sandboxes_per_user=1, running_sandboxes=2)
    async with (
        site_factory(auth={"quotas": quotas}) as site,
        site.signed_in(ALICE) as alice,
        site.signed_in(BOB) as bob,
    ):
        a1, a2, b1, b2 = [
            (await client.post("/api/projects", json={"name": n})).json()["project_id"]
            for client, n in ((alice, "a1"), (alice, "a2"), (bob, "b1"), (bob, "b2"))
        ]
        ws_url = f"ws://localhost:{site.agent.ports.public}/ws"

        def headers(client: httpx.AsyncClient) -> list[tuple[str, str]]:
            cookie = f"amicable_session={client.cookies['amicable_session']}"
            return [("Origin", site.origin), ("Cookie", cookie)]

        async with open_websocket_url(ws_url, extra_headers=headers(alice)) as ws_a:
            await ws_send(ws_a, {"type": "init", "data": {"session_id": a1}})
            await ws_recv_until(ws_a, "init")
            await ws_send(ws_a, {"type": "init", "data": {"session_id": a2}})
            refused = (await ws_recv_until(ws_a, "error"))[-1]
            assert refused.data.error == "quota_exceeded"
            async with open_websocket_url(ws_url, extra_headers=headers(bob)) as ws_b:
                await ws_send(ws_b, {"type": "init", "data": {"session_id": b1}})
                await ws_recv_until(ws_b, "init")
                async with open_websocket_url(ws_url, extra_headers=headers(bob)) as ws_c:
                    await ws_send(ws_c, {"type": "init", "data": {"session_id": b2}})
                    full = (await ws_recv_until(ws_c, "error"))[-1]
                    assert full.data.error == "quota_exceeded"
        assert sorted(site.agent.backend.ensure_calls) == sorted([a1, b1])


def test_no_login_on_a_public_address_is_refused(tmp_path: Path) -> None:
    public = AgentConfig(host="0.0.0.0", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="AUTH_MODE"):
        check_exposure(public)
    check_exposure(attrs.evolve(public, auth=AuthConfig(insecure_no_auth=True)))
    check_exposure(AgentConfig(host="127.0.0.1", data_dir=tmp_path))
    check_exposure(attrs.evolve(public, auth=AuthConfig(mode="oidc", issuer_url="https://i")))


def test_amicable_up_on_a_public_address_exits_with_a_readable_message(tmp_path: Path) -> None:
    env = {**os.environ, "AMICABLE_DATA_DIR": str(tmp_path)}
    env.pop("AUTH_MODE", None)
    env.pop("AMICABLE_INSECURE_NO_AUTH", None)
    done = subprocess.run(
        [sys.executable, "-m", "amicable_agent.cli", "up", "--host", "0.0.0.0", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "AUTH_MODE" in done.stderr
    assert "--insecure-no-auth" in done.stderr
    assert "Traceback" not in done.stderr


async def test_projects_from_before_logins_go_to_the_first_user(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "a.db") as store:
        old = await store.create_project("From before", template_id="vite")  # no owner
        alice = User(sub=ALICE.sub, email=ALICE.email, name=ALICE.name)
        first = await store.record_login(alice, admin_emails=())
        assert await store.project_role(old.project_id, first.sub) == "owner"
        await store.record_login(User(sub="bob-sub", email="bob@example.com"), admin_emails=())
        assert await store.project_role(old.project_id, "bob-sub") is None
    async with open_sqlite_store(tmp_path / "b.db") as store:
        old = await store.create_project("From before", template_id="vite")
        admin = User(sub="admin-sub", email="admin@example.com", name="Admin")
        await store.record_login(
            User(sub="alice-sub", email="alice@example.com"), admin_emails=("admin@example.com",)
        )
        assert await store.project_role(old.project_id, ALICE.sub) is None  # not an admin
        await store.record_login(admin, admin_emails=("admin@example.com",))
        assert await store.project_role(old.project_id, "admin-sub") == "owner"
    await trio.lowlevel.checkpoint()


def test_the_default_sandbox_cap_follows_free_memory() -> None:
    meminfo = "MemTotal: 24000000 kB\nMemAvailable:   3072000 kB\n"
    assert Quotas().with_default_cap("local", meminfo).running_sandboxes == 10
    assert Quotas().with_default_cap("local", "MemAvailable: 10 kB\n").running_sandboxes == 4
    assert Quotas().with_default_cap("kubernetes").running_sandboxes == 200
    assert Quotas(running_sandboxes=0).with_default_cap("local").running_sandboxes == 0  # off
    env = {"AMICABLE_MAX_RUNNING_SANDBOXES": "7"}
    assert AuthConfig.from_env(env).quotas.running_sandboxes == 7
    assert AuthConfig.from_env({}).quotas.running_sandboxes is None


def test_login_settings_from_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "client-secret"
    secret.write_text("from-a-file\n")
    google = AuthConfig.from_env(
        {"GOOGLE_CLIENT_ID": "gid", "GOOGLE_CLIENT_SECRET_FILE": str(secret)}
    )
    assert (google.mode, google.issuer_url, google.client_id) == (
        "google", "https://accounts.google.com", "gid",
    )  # fmt: skip
    assert google.client_secret == "from-a-file"
    assert google.session_secret_generated  # a warning-worthy random secret
    oidc = AuthConfig.from_env({
        "AUTH_MODE": "OIDC", "OIDC_ISSUER_URL": "https://id.example.com/realms/x/",
        "OIDC_CLIENT_ID": "amicable", "SESSION_SECRET": "s" * 40,
        "PUBLIC_BASE_URL": "https://agent.example.com", "OIDC_ALLOWED_EMAIL_DOMAINS": "@Example.com",
    })  # fmt: skip
    assert oidc.issuer_url == "https://id.example.com/realms/x"
    assert oidc.allowed_email_domains == ("example.com",)
    assert oidc.secure_cookies
    assert not oidc.session_secret_generated
    assert not AuthConfig.from_env({}).login_enabled
    for bad, message in (
        ({"AUTH_MODE": "token"}, "AUTH_MODE"),
        ({"AUTH_MODE": "oidc", "OIDC_CLIENT_ID": "x"}, "OIDC_ISSUER_URL"),
        ({"AUTH_MODE": "google"}, "GOOGLE_CLIENT_ID"),
        ({"SESSION_SECRET": "short"}, "at least 32"),
        ({"OIDC_SCOPES": "email profile"}, "openid"),
        ({"PUBLIC_BASE_URL": "agent.example.com"}, "http"),
    ):
        with pytest.raises(ConfigError, match=message):
            AuthConfig.from_env(bad)
