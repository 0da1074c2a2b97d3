"""The login itself: the real authorization-code flow against a provider on loopback, and
every way a login, a cookie or a redirect can be forged."""

from __future__ import annotations

import time

import httpx
import pytest
from amicable_testing.logins import ALICE, BOB, CAROL, SESSION_SECRET, Site, cookie_value, query
from itsdangerous import TimestampSigner, URLSafeTimedSerializer


async def test_login_round_trip_sets_a_session_and_me_says_who(site: Site) -> None:
    async with site.client() as client:
        anonymous = (await client.get("/auth/me")).json()
        assert anonymous == {"authenticated": False, "mode": "oidc", "user": None}
        assert (await client.get("/api/projects")).status_code == 401
        start = await client.get("/auth/login", params={"redirect": "/p/shop"})
        params = query(start.headers["location"])
        assert params["code_challenge_method"] == "S256"
        assert params["state"]
        assert params["nonce"]
        assert params["code_challenge"]
        assert params["redirect_uri"] == f"{site.http}/auth/callback"
        site.oidc.login_as(ALICE)
        async with httpx.AsyncClient() as browser:
            back = (await browser.get(start.headers["location"])).headers["location"]
        done = await client.get(back.removeprefix(site.http))
        assert done.status_code == 302
        assert done.headers["location"] == "/p/shop"
        set_cookie = done.headers["set-cookie"]
        assert "HttpOnly" in set_cookie
        assert "SameSite=Lax" in set_cookie
        assert "Secure" not in set_cookie  # plain http on loopback
        me = (await client.get("/auth/me")).json()
        assert me["authenticated"] is True
        assert me["user"] == {"sub": "alice-sub", "email": "alice@example.com", "name": "Alice",
                              "picture": ""}  # fmt: skip
        assert (await client.get("/api/projects")).json() == {"projects": []}


@pytest.mark.parametrize(
    "kind", ["signature", "issuer", "audience", "expired", "nonce", "alg_none", "unknown_kid"]
)
async def test_a_bad_id_token_is_refused(site: Site, kind: str) -> None:
    async with site.client() as client:
        site.oidc.tamper_next(kind)  # type: ignore[arg-type]
        done = await site.login(client, ALICE)
        assert done.status_code == 400, done.text
        assert done.json()["error"] == "login_failed"
        assert cookie_value(done) is None
        assert (await client.get("/auth/me")).json()["authenticated"] is False


async def test_key_rotation_is_followed(site: Site) -> None:
    async with site.signed_in(ALICE):
        pass  # the agent has cached the first key
    site.oidc.rotate_keys(drop_old=True)
    async with site.client() as client:
        done = await site.login(client, BOB)
        assert done.status_code == 302, done.text


async def test_state_from_another_login_is_refused(site: Site) -> None:
    async with site.client() as mallory, site.client() as victim:
        # Mallory starts a login and sends the victim her provider URL (login CSRF).
        start = await mallory.get("/auth/login")
        site.oidc.login_as(BOB)
        async with httpx.AsyncClient() as browser:
            back = (await browser.get(start.headers["location"])).headers["location"]
        taken = await victim.get(back.removeprefix(site.http))
        assert taken.status_code == 400
        assert taken.json()["error"] == "login_failed"
        # Her own flow cookie with a changed state fails too.
        forged = back.replace("state=", "state=x")
        assert (await mallory.get(forged.removeprefix(site.http))).status_code == 400


async def test_provider_refusal_is_a_readable_error(site: Site) -> None:
    async with site.client() as client:
        site.oidc.deny_next()
        done = await site.login(client, ALICE)
        assert done.status_code == 400
        assert "access_denied" in done.json()["detail"]


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "http://localhost:1/steal",  # another port is another origin
        "https://evil.example@localhost/",
        "/ok\r\nSet-Cookie: x=1",
    ],
)
async def test_no_open_redirect(site: Site, target: str) -> None:
    async with site.client() as client:
        done = await site.login(client, ALICE, redirect=target)
        assert done.status_code == 302
        assert done.headers["location"] == "/"
        out = await client.get("/auth/logout", params={"redirect": target})
        assert out.headers["location"] == "/"


async def test_tampered_expired_and_logged_out_cookies_prove_nothing(site: Site) -> None:
    async with site.signed_in(ALICE) as client:
        value = client.cookies["amicable_session"]
        assert (await client.get("/api/projects")).status_code == 200
        for bad in (value[:-2] + "AA", value + "x", "", "a" * 5000):
            probe = httpx.AsyncClient(base_url=site.http, cookies={"amicable_session": bad})
            async with probe:
                assert (await probe.get("/api/projects")).status_code == 401
        # The real session, signed correctly but long ago: the signature's age says expired.
        sid = URLSafeTimedSerializer(SESSION_SECRET, salt="amicable.session").loads(value)["sid"]

        class LongAgo(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(time.time()) - 30 * 24 * 3600

        stale = URLSafeTimedSerializer(SESSION_SECRET, salt="amicable.session", signer=LongAgo)
        old = stale.dumps({"sid": sid})
        async with httpx.AsyncClient(base_url=site.http, cookies={"amicable_session": old}) as c:
            assert (await c.get("/api/projects")).status_code == 401
        forged = URLSafeTimedSerializer("another-secret-" * 4, salt="amicable.session")
        async with httpx.AsyncClient(
            base_url=site.http, cookies={"amicable_session": forged.dumps({"sid": sid})}
        ) as c:
            assert (await c.get("/api/projects")).status_code == 401
        out = await client.get("/auth/logout")
        assert out.status_code == 302
        async with httpx.AsyncClient(base_url=site.http, cookies={"amicable_session": value}) as c:
            assert (await c.get("/api/projects")).status_code == 401  # revoked server-side
            assert (await c.get("/auth/me")).json()["authenticated"] is False


async def test_only_allowed_email_domains_sign_in(site_factory) -> None:
    async with site_factory(auth={"allowed_email_domains": ("example.com",)}) as site:
        async with site.client() as client:
            assert (await site.login(client, ALICE)).status_code == 302
        async with site.client() as client:
            refused = await site.login(client, CAROL)  # example.org
            assert refused.status_code == 400
            assert "domain" in refused.json()["detail"]


async def test_api_tokens_for_scripts(site: Site) -> None:
    async with site.signed_in(ALICE) as client:
        created = await client.post("/api/tokens", json={"name": "ci"})
        assert created.status_code == 201
        token = created.json()["token"]
        assert token.startswith("amk_")
        listed = (await client.get("/api/tokens")).json()["tokens"]
        assert [t["name"] for t in listed] == ["ci"]
        assert "token" not in listed[0]
        script = httpx.AsyncClient(base_url=site.http, headers={"Authorization": f"Bearer {token}"})
        async with script:
            made = await script.post("/api/projects", json={"name": "From CI"})  # no Origin: ok
            assert made.status_code == 200
            assert (await client.delete(f"/api/tokens/{created.json()['id']}")).status_code == 204
            assert (await script.get("/api/projects")).status_code == 401
        bad = httpx.AsyncClient(base_url=site.http, headers={"Authorization": "Bearer amk_nope"})
        async with bad:
            assert (await bad.get("/api/projects")).status_code == 401


async def test_a_browser_is_sent_back_to_the_editor_with_the_reason(site: Site) -> None:
    async with site.client(headers={"Accept": "text/html,application/xhtml+xml"}) as client:
        site.oidc.tamper_next("nonce")
        done = await site.login(client, ALICE)
        assert done.status_code == 302
        location = done.headers["location"]
        assert location.startswith("/?login_error=")
        assert "nonce" in query(location)["login_error"]
        assert cookie_value(done) is None
