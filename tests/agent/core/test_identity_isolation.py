"""Two users on one agent: every route of the route table, tried by the wrong user, answers
404 and changes nothing. The table is read from the app itself, so a new route cannot be
forgotten: an entry missing from ``ROUTES`` fails the test."""

from __future__ import annotations

import re
import uuid
from typing import Any

from amicable_agent.auth.config import AuthConfig
from amicable_agent.auth.origins import OriginPolicy
from amicable_agent.config import AgentConfig
from amicable_agent.http.app import create_public_app
from amicable_agent.http.state import AppState
from amicable_testing import ws_recv_until, ws_send
from amicable_testing.logins import ALICE, BOB, Site
from trio_websocket import open_websocket_url

#: Every /api route (method, rule) -> a request body, and whether it names a project.
ROUTES: dict[tuple[str, str], dict[str, Any] | None] = {
    ("GET", "/api/projects"): None,
    ("POST", "/api/projects"): {"name": "Mine"},
    ("GET", "/api/projects/by-slug/<slug>"): None,
    ("GET", "/api/projects/<project_id>"): None,
    ("PATCH", "/api/projects/<project_id>"): {"name": "Stolen"},
    ("DELETE", "/api/projects/<project_id>"): None,
    ("GET", "/api/projects/<project_id>/members"): None,
    ("POST", "/api/projects/<project_id>/members"): {"email": "bob@example.com", "role": "editor"},
    ("DELETE", "/api/projects/<project_id>/members/<user_sub>"): None,
    ("DELETE", "/api/projects/<project_id>/members/by-email/<email>"): None,
    ("GET", "/api/sandbox/<project_id>/ls"): None,
    ("GET", "/api/sandbox/<project_id>/read"): None,
    ("PUT", "/api/sandbox/<project_id>/write"): {"path": "/src/App.tsx", "content": "pwned"},
    ("POST", "/api/sandbox/<project_id>/mkdir"): {"path": "/x"},
    ("POST", "/api/sandbox/<project_id>/create"): {"path": "/x.txt", "content": "x"},
    ("POST", "/api/sandbox/<project_id>/rename"): {"from": "/a", "to": "/b"},
    ("DELETE", "/api/sandbox/<project_id>/rm"): None,
    ("GET", "/api/sandbox/<project_id>/download"): None,
    ("GET", "/api/sandbox/<project_id>/checkpoints"): None,
    ("GET", "/api/sandbox/<project_id>/checkpoints/<sha>/diff"): None,
    ("POST", "/api/sandbox/<project_id>/checkpoints/<sha>/restore"): {},
    ("GET", "/api/projects/<project_id>/turns"): None,
    ("GET", "/api/db/<project_id>/schema"): None,
    ("GET", "/api/db/<project_id>/tables/<table>/rows"): None,
    ("POST", "/api/db/<project_id>/schema/review"): {"draft": {"tables": []}},
    ("POST", "/api/db/<project_id>/schema/apply"): {"draft": {"tables": []}},
    ("POST", "/api/db/<project_id>/schema/intent"): {"draft": {}, "intent_text": "drop all"},
    ("POST", "/api/db/<project_id>/tables/<table>/rows"): {"values": {"name": "x"}},
    ("PATCH", "/api/db/<project_id>/tables/<table>/rows"): {"key": {"id": 1}, "values": {}},
    ("DELETE", "/api/db/<project_id>/tables/<table>/rows"): {"key": {"id": 1}},
    ("POST", "/api/projects/<project_id>/git/sync"): {},
    ("GET", "/api/projects/<project_id>/git/status"): None,
    ("POST", "/api/projects/<project_id>/git/pull"): {},
    ("GET", "/api/templates"): None,
    ("GET", "/api/tokens"): None,
    ("POST", "/api/tokens"): {"name": "t"},
    ("DELETE", "/api/tokens/<token_id>"): None,
    ("GET", "/api/admin/users/<sub>/budget"): None,
    ("PUT", "/api/admin/users/<sub>/budget"): {"daily_usd": 1000},
    ("DELETE", "/api/admin/users/<sub>/budget"): None,
}


def _route_table() -> set[tuple[str, str]]:
    state = AppState(  # only to build the app and read its url_map
        config=AgentConfig(), store=None, backend=None, manager=None, background=None,  # type: ignore[arg-type]
        access=None, policy=OriginPolicy(AuthConfig()),  # type: ignore[arg-type]
    )  # fmt: skip
    app = create_public_app(state)
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                found.add((method, rule.rule))
    return found


def test_the_table_covers_every_api_route() -> None:
    assert _route_table() == set(ROUTES)


def _url(rule: str, project_id: str, slug: str) -> str:
    values = {
        "project_id": project_id,
        "slug": slug,
        "sha": "a" * 40,
        "user_sub": "alice-sub",
        "email": "alice@example.com",
        "token_id": "0123456789abcdef",
        "sub": "bob-sub",
        "table": "users",
    }
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], rule)


async def test_another_user_gets_404_everywhere_and_nothing_changes(site: Site) -> None:
    async with site.signed_in(ALICE) as alice, site.signed_in(BOB) as bob:
        made = (await alice.post("/api/projects", json={"name": "Alice Shop"})).json()
        pid, slug = made["project_id"], made["slug"]
        before = (await alice.get(f"/api/projects/{pid}")).json()
        token = (await alice.post("/api/tokens", json={"name": "ci"})).json()
        for method, rule in sorted(ROUTES):
            if "<project_id>" not in rule and "<slug>" not in rule:
                continue
            url = _url(rule, pid, slug)
            body = ROUTES[(method, rule)]
            answer = await bob.request(method, url, json=body)
            assert answer.status_code == 404, (method, rule, answer.status_code, answer.text)
            assert answer.json()["error"] == "not_found"
        assert (await bob.delete(f"/api/tokens/{token['id']}")).status_code == 404
        assert (await bob.get("/api/projects")).json() == {"projects": []}
        assert [t["name"] for t in (await alice.get("/api/tokens")).json()["tokens"]] == ["ci"]
        after = (await alice.get(f"/api/projects/{pid}")).json()
        assert after == before
        members = (await alice.get(f"/api/projects/{pid}/members")).json()
        assert [m["user_sub"] for m in members["members"]] == ["alice-sub"]
        assert members["invites"] == []
        assert site.agent.backend.ensure_calls == []  # no sandbox was started for Bob


async def test_every_api_route_needs_a_login(site: Site) -> None:
    async with site.client() as anonymous:
        for method, rule in sorted(ROUTES):
            url = _url(rule, str(uuid.uuid4()), "shop")
            answer = await anonymous.request(method, url, json=ROUTES[(method, rule)])
            assert answer.status_code == 401, (method, rule, answer.status_code)


async def test_the_websocket_hides_other_peoples_projects(site: Site) -> None:
    async with site.signed_in(ALICE) as alice, site.signed_in(BOB) as bob:
        pid = (await alice.post("/api/projects", json={"name": "A"})).json()["project_id"]
        cookie = f"amicable_session={bob.cookies['amicable_session']}"
        ws_url = f"ws://localhost:{site.agent.ports.public}/ws"
        headers = [("Origin", site.origin), ("Cookie", cookie)]
        async with open_websocket_url(ws_url, extra_headers=headers) as ws:
            await ws_send(ws, {"type": "init", "data": {"session_id": pid}})
            error = (await ws_recv_until(ws, "error"))[-1]
            assert error.data.error == "not_found"
            await ws_send(ws, {"type": "user", "data": {"session_id": pid, "text": "hi"}})
            assert (await ws_recv_until(ws, "error"))[-1].data.error == "not_initialized"
        assert site.agent.backend.ensure_calls == []
        async with open_websocket_url(ws_url, extra_headers=[("Origin", site.origin)]) as ws:
            from amicable_testing import ws_expect_close

            assert await ws_expect_close(ws) == 1008  # no login


async def test_viewer_reads_editor_writes_owner_shares(site: Site) -> None:
    async with site.signed_in(ALICE) as alice, site.signed_in(BOB) as bob:
        pid = (await alice.post("/api/projects", json={"name": "Team"})).json()["project_id"]
        shared = await alice.post(
            f"/api/projects/{pid}/members", json={"email": "BOB@example.com", "role": "viewer"}
        )
        assert shared.status_code == 201
        assert shared.json()["user_sub"] == "bob-sub"
        seen = (await bob.get("/api/projects")).json()["projects"]
        assert [(p["project_id"], p["role"]) for p in seen] == [(pid, "viewer")]
        assert (await bob.get(f"/api/projects/{pid}")).json()["role"] == "viewer"
        renamed = await bob.patch(f"/api/projects/{pid}", json={"name": "Mine now"})
        assert renamed.status_code == 403
        assert renamed.json()["error"] == "read_only"
        write = await bob.put(f"/api/sandbox/{pid}/write", json={"path": "/a.txt", "content": "x"})
        assert write.status_code == 403
        invite = await bob.post(
            f"/api/projects/{pid}/members", json={"email": "eve@example.com", "role": "editor"}
        )
        assert invite.json()["error"] == "owner_only"
        await alice.post(
            f"/api/projects/{pid}/members", json={"email": "bob@example.com", "role": "editor"}
        )
        assert (await bob.patch(f"/api/projects/{pid}", json={"name": "Ours"})).status_code == 200
        assert (await bob.delete(f"/api/projects/{pid}")).json()["error"] == "owner_only"
        # A member may leave; the owner cannot be removed.
        assert (await bob.delete(f"/api/projects/{pid}/members/alice-sub")).status_code == 403
        assert (await alice.delete(f"/api/projects/{pid}/members/alice-sub")).status_code == 400
        assert (await bob.delete(f"/api/projects/{pid}/members/bob-sub")).status_code == 204
        assert (await bob.get(f"/api/projects/{pid}")).status_code == 404


async def test_a_viewer_cannot_prompt_over_the_websocket(site: Site) -> None:
    async with site.signed_in(ALICE) as alice, site.signed_in(BOB) as bob:
        pid = (await alice.post("/api/projects", json={"name": "Team"})).json()["project_id"]
        await alice.post(
            f"/api/projects/{pid}/members", json={"email": "bob@example.com", "role": "viewer"}
        )
        cookie = f"amicable_session={bob.cookies['amicable_session']}"
        ws_url = f"ws://localhost:{site.agent.ports.public}/ws"
        async with open_websocket_url(
            ws_url, extra_headers=[("Origin", site.origin), ("Cookie", cookie)]
        ) as ws:
            await ws_send(ws, {"type": "init", "data": {"session_id": pid}})
            await ws_recv_until(ws, "init")
            await ws_send(ws, {"type": "user", "data": {"session_id": pid, "text": "delete all"}})
            assert (await ws_recv_until(ws, "error"))[-1].data.error == "read_only"
            # Removed from the project while connected: the next frame is refused.
            await alice.delete(f"/api/projects/{pid}/members/bob-sub")
            await ws_send(ws, {"type": "cancel", "data": {"session_id": pid}})
            assert (await ws_recv_until(ws, "error"))[-1].data.error == "not_found"


async def test_invites_become_memberships_at_first_login(site: Site) -> None:
    from amicable_testing.logins import CAROL

    async with site.signed_in(ALICE) as alice:
        pid = (await alice.post("/api/projects", json={"name": "Later"})).json()["project_id"]
        invited = await alice.post(
            f"/api/projects/{pid}/members", json={"email": "carol@example.org", "role": "editor"}
        )
        assert invited.json() == {"email": "carol@example.org", "role": "editor", "pending": True}
        listed = (await alice.get(f"/api/projects/{pid}/members")).json()
        assert listed["invites"] == [{"email": "carol@example.org", "role": "editor"}]
        async with site.signed_in(CAROL) as carol:
            assert (await carol.get(f"/api/projects/{pid}")).json()["role"] == "editor"
        assert (await alice.get(f"/api/projects/{pid}/members")).json()["invites"] == []
        for bad in ({"email": "not-an-address", "role": "editor"},
                    {"email": "x@example.com", "role": "owner"}):  # fmt: skip
            answer = await alice.post(f"/api/projects/{pid}/members", json=bad)
            assert answer.status_code == 400
