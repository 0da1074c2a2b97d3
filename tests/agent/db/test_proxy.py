"""``/db/apps/<app_id>/graphql`` over real HTTP: browser -> quart route -> fake Hasura."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest
import trio
from amicable_agent.db import AppDatabase, JwtSecret, app_schema_name, open_app_database
from amicable_agent.db.http import answer_db_request
from amicable_agent.db.jwt import decode_hs256
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart import Response
from quart_trio import QuartTrio
from trio.testing import MockClock

from .conftest import ADMIN_SECRET, JWT_KEY, Hasura, static_origins

ORIGIN_1 = "http://todo-app.preview.localhost:8123"
ORIGIN_2 = "http://other-app.preview.localhost:8123"
ORIGINS = {"p1": {ORIGIN_1, "http://amicable-aaaa.preview.localhost:8123"}, "p2": {ORIGIN_2}}
CORS = {
    "access-control-allow-origin": ORIGIN_1,
    "access-control-allow-headers": "content-type,x-amicable-app-key",
    "access-control-allow-methods": "POST,OPTIONS",
    "vary": "Origin",
}


@attrs.define
class Proxy:
    url: str
    db: AppDatabase | None
    http: httpx.AsyncClient

    def path(self, app_id: str) -> str:
        return f"{self.url}/db/apps/{app_id}/graphql"

    async def post(
        self,
        app_id: str,
        body: Any,
        *,
        key: str | None,
        origin: str | None = ORIGIN_1,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {"content-type": "application/json", **(extra or {})}
        if origin is not None:
            headers["origin"] = origin
        if key is not None:
            headers["x-amicable-app-key"] = key
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        with trio.fail_after(20):
            return await self.http.post(self.path(app_id), content=content, headers=headers)


@asynccontextmanager
async def run_proxy(config: Any, origins: Any = None) -> AsyncIterator[Proxy]:
    """The integration behind a tiny quart-trio app (the route the agent mounts)."""
    async with open_app_database(config, origins=origins or static_origins(ORIGINS)) as db:
        app = QuartTrio("db_proxy_test")

        @app.route("/db/apps/<app_id>/graphql", methods=["POST", "OPTIONS"])
        async def route(app_id: str) -> Response:
            return await answer_db_request(db, app_id)

        cfg = HypercornConfig()
        cfg.bind = ["127.0.0.1:0"]
        cfg.accesslog = None
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(hypercorn_serve, app, cfg)
            async with httpx.AsyncClient(trust_env=False, timeout=None) as http:
                yield Proxy(binds[0], db, http)
            nursery.cancel_scope.cancel()


async def _app_with_todos(db: AppDatabase, app_id: str) -> str:
    creds = await db.provisioner.ensure_app(app_id)
    schema = app_schema_name(app_id)
    await db.client.run_sql(
        f'CREATE TABLE "{schema}"."todos" (id serial PRIMARY KEY, title text NOT NULL);'
    )
    await db.provisioner.track_table(app_id, "todos")
    return creds.app_key


async def test_browser_reads_and_writes_its_tables_with_logical_names(hasura: Hasura) -> None:
    async with run_proxy(hasura.config) as proxy:
        assert proxy.db is not None
        key = await _app_with_todos(proxy.db, "p1")
        insert = await proxy.post(
            "p1",
            {
                "query": "mutation Add($t: String!) { insert_todos(objects: [{title: $t}, "
                '{title: "second"}]) { affected_rows returning { id title } } }',
                "variables": {"t": "first"},
            },
            key=key,
        )
        assert insert.status_code == 200, insert.text
        assert insert.json() == {
            "data": {
                "insert_todos": {
                    "affected_rows": 2,
                    "returning": [{"id": 1, "title": "first"}, {"id": 2, "title": "second"}],
                }
            }
        }
        assert {k: insert.headers[k] for k in CORS} == CORS
        assert insert.headers["content-type"] == "application/json"
        read = await proxy.post(
            "p1", {"query": "{ todos(order_by: {id: desc}, limit: 1) { title } }"}, key=key
        )
        assert read.json() == {"data": {"todos": [{"title": "second"}]}}
    # Hasura saw a JWT for the app's role, and never the admin secret, on /v1/graphql
    gql = [r for r in hasura.fake.requests if r.path == "/v1/graphql"]
    assert len(gql) == 2
    assert all("x-hasura-admin-secret" not in r.headers for r in gql)
    claims = decode_hs256(gql[0].headers["authorization"][7:], JWT_KEY)
    schema = app_schema_name("p1")
    assert claims["exp"] - claims["iat"] == 300
    assert claims["https://hasura.io/jwt/claims"]["x-hasura-allowed-roles"] == [schema]
    assert claims["https://hasura.io/jwt/claims"]["x-hasura-app-id"] == "p1"
    assert f"insert_todos: insert_{schema}_todos" in gql[0].body["query"]


async def test_an_app_cannot_reach_another_apps_tables(hasura: Hasura) -> None:
    async with run_proxy(hasura.config) as proxy:
        assert proxy.db is not None
        await _app_with_todos(proxy.db, "p1")
        other = (await proxy.db.provisioner.ensure_app("p2")).app_key
        field = f"{app_schema_name('p1')}_todos"
        # Hasura headers from the browser are not forwarded (only the body is)
        smuggled = {
            "x-hasura-admin-secret": ADMIN_SECRET,
            "x-hasura-role": "admin",
            "authorization": "Bearer forged",
        }
        resp = await proxy.post(
            "p2", {"query": f"{{ {field} {{ id }} }}"}, key=other, origin=ORIGIN_2, extra=smuggled
        )
        assert resp.json()["errors"][0]["extensions"]["code"] == "validation-failed"
        seen = [r for r in hasura.fake.requests if r.path == "/v1/graphql"][-1].headers
        assert "x-hasura-admin-secret" not in seen
        assert "x-hasura-role" not in seen
        assert seen["authorization"] != "Bearer forged"
        resp = await proxy.post(
            "p2", {"query": f"{{ {field} {{ id }} }}"}, key=other, origin=ORIGIN_2
        )
        assert resp.status_code == 200
        assert resp.json()["errors"][0]["extensions"]["code"] == "validation-failed"
        assert "data" not in resp.json()


async def test_preflight(hasura: Hasura) -> None:
    async with run_proxy(hasura.config) as proxy:
        headers = {
            "origin": ORIGIN_1,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-amicable-app-key",
        }
        ok = await proxy.http.options(proxy.path("p1"), headers=headers)
        assert ok.status_code == 204
        assert {k: ok.headers[k] for k in CORS} == CORS
        other = await proxy.http.options(proxy.path("p1"), headers={**headers, "origin": ORIGIN_2})
        assert other.status_code == 403
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    ("origin", "app_id"),
    [
        (None, "p1"),
        ("", "p1"),
        ("null", "p1"),
        (ORIGIN_2, "p1"),  # another app's preview: upstream let this through
        ("http://evil.example.com", "p1"),
        ("http://todo-app.preview.localhost:8124", "p1"),
        ("https://todo-app.preview.localhost:8123", "p1"),
        (ORIGIN_1, "unknown-app"),
    ],
)
async def test_strict_origin_is_bound_to_the_apps_own_preview(
    hasura: Hasura, origin: str | None, app_id: str
) -> None:
    async with run_proxy(hasura.config) as proxy:
        assert proxy.db is not None
        key = (await proxy.db.provisioner.ensure_app("p1")).app_key
        resp = await proxy.post(app_id, {"query": "{ __typename }"}, key=key, origin=origin)
        assert resp.status_code == 403
        assert resp.text == "forbidden"
        assert "access-control-allow-origin" not in resp.headers


async def test_sandbox_id_origin_and_case_are_accepted(hasura: Hasura) -> None:
    async with run_proxy(hasura.config) as proxy:
        assert proxy.db is not None
        key = (await proxy.db.provisioner.ensure_app("p1")).app_key
        for origin in ("http://amicable-aaaa.preview.localhost:8123", ORIGIN_1.upper()):
            resp = await proxy.post("p1", {"query": "{ __typename }"}, key=key, origin=origin)
            assert resp.status_code == 200, (origin, resp.text)
            assert resp.json() == {"data": {"__typename": "query_root"}}


async def test_key_and_body_checks_answer_upstreams_errors(hasura: Hasura) -> None:
    config = attrs.evolve(hasura.config, origin_mode="any", max_body_bytes=64 * 1024)
    async with run_proxy(config) as proxy:
        assert proxy.db is not None
        key = (await proxy.db.provisioner.ensure_app("p1")).app_key
        q = {"query": "{ __typename }"}
        cases = [
            (await proxy.post("p1", q, key=None), 401, "missing app key"),
            (await proxy.post("p1", q, key=""), 401, "missing app key"),
            (await proxy.post("p1", q, key=key + "x"), 403, "invalid app key"),
            (await proxy.post("p2", q, key=key), 404, "unknown app"),
            (await proxy.post("x" * 500, q, key=key), 404, "unknown app"),
            (await proxy.post("p1", b"[1, 2]", key=key), 400, "invalid body"),
            (await proxy.post("p1", b"not json", key=key), 400, "invalid body"),
            (await proxy.post("p1", b"[" * 100_00 + b"]" * 100_00, key=key), 400, "invalid body"),
        ]
        for resp, status, text in cases:
            assert (resp.status_code, resp.text) == (status, text)
            assert resp.headers["access-control-allow-origin"] == ORIGIN_1
            assert resp.headers["content-type"].startswith("text/plain")
        direct = await proxy.db.proxy.handle(
            "POST", "p1", {"origin": ORIGIN_1, "x-amicable-app-key": key}, b" " * (65 * 1024)
        )
        assert (direct.status, direct.body) == (413, b"body too large")
        # a huge declared body is refused without being read (raw socket: the client
        # announces 2 MiB and sends none of it)
        host, port = proxy.url.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            head = (
                "POST /db/apps/p1/graphql HTTP/1.1\r\n"
                f"Host: {host}\r\nOrigin: {ORIGIN_1}\r\nX-Amicable-App-Key: {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {2 * 1024 * 1024}\r\n\r\n"
            )
            await stream.send_all(head.encode())
            received = b""
            with trio.fail_after(20):
                while b"body too large" not in received:
                    chunk = await stream.receive_some()
                    assert chunk, received
                    received += chunk
        assert received.startswith(b"HTTP/1.1 413")
    assert not [r for r in hasura.fake.requests if r.path == "/v1/graphql"]


async def test_without_jwt_secret_the_proxy_answers_503(hasura: Hasura) -> None:
    async with run_proxy(attrs.evolve(hasura.config, jwt_secret=None)) as proxy:
        assert proxy.db is not None
        key = (await proxy.db.provisioner.ensure_app("p1")).app_key
        resp = await proxy.post("p1", {"query": "{ __typename }"}, key=key)
        assert (resp.status_code, resp.text) == (503, "hasura jwt not configured")


async def test_a_jwt_hasura_rejects_is_passed_through(hasura: Hasura) -> None:
    wrong = attrs.evolve(hasura.config, jwt_secret=JwtSecret(key=b"another-key-" * 4))
    async with run_proxy(wrong) as proxy:
        assert proxy.db is not None
        key = (await proxy.db.provisioner.ensure_app("p1")).app_key
        resp = await proxy.post("p1", {"query": "{ __typename }"}, key=key)
        assert resp.status_code == 200
        error = resp.json()["errors"][0]
        assert error["extensions"]["code"] == "invalid-jwt"
        assert "JWSInvalidSignature" in error["message"]


async def test_hasura_down_is_a_clear_503(hasura: Hasura, closed_port_url: str) -> None:
    config = attrs.evolve(hasura.config, base_url=closed_port_url, origin_mode="any")
    async with run_proxy(config) as proxy:
        resp = await proxy.post("p1", {"query": "{ __typename }"}, key="some-key")
        assert (resp.status_code, resp.text) == (503, "hasura unavailable")
        assert resp.headers["access-control-allow-origin"] == ORIGIN_1


@pytest.fixture
def slow_clock() -> MockClock:
    """Virtual time that jumps only after 0.5 s of real idleness: loopback round trips
    finish long before that, while a Hasura that never answers lets it reach the deadline."""
    return MockClock(autojump_threshold=0.5)


async def test_slow_hasura_is_a_504(hasura: Hasura, slow_clock: MockClock) -> None:
    async with run_proxy(attrs.evolve(hasura.config, timeout_s=10.0)) as proxy:
        assert proxy.db is not None
        key = (await proxy.db.provisioner.ensure_app("p1")).app_key
        hasura.fake.graphql_delay_s = math.inf
        start = trio.current_time()
        resp = await proxy.post("p1", {"query": "{ __typename }"}, key=key)
        assert (resp.status_code, resp.text) == (504, "hasura timeout")
        assert trio.current_time() - start >= 10.0  # the deadline, not an early failure


async def test_feature_off_answers_404(hasura: Hasura) -> None:
    async with run_proxy(None) as proxy:
        assert proxy.db is None
        resp = await proxy.post("p1", {"query": "{ __typename }"}, key="k")
        assert resp.status_code == 404
    assert hasura.fake.requests == []


async def test_other_methods_are_405(hasura: Hasura) -> None:
    async with open_app_database(hasura.config, origins=static_origins(ORIGINS)) as db:
        assert db is not None
        resp = await db.proxy.handle("GET", "p1", {"Origin": ORIGIN_1}, b"")
        assert resp.status == 405
        assert resp.header("allow") == "POST, OPTIONS"
