"""The fake OpenID Connect provider, driven over real HTTP the way a relying party would:
discovery, the authorization-code flow with PKCE, ID tokens verified with PyJWT against the
published JWKS, and the test hooks (users, denial, key rotation, tampered tokens)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import trio
import trio.testing
from amicable_testing.fake_oidc import (
    FakeOidc,
    TamperKind,
    User,
    open_fake_oidc,
    pkce_challenge,
)

CLIENT, SECRET = "amicable", "s3cret:with/odd+chars"
REDIRECT = "http://127.0.0.1:9/auth/callback"
VERIFIER = "v" * 20 + "-._~" + "0123456789abcdefghijkl"  # 46 unreserved characters
ALICE = User("alice-sub", "alice@example.com", "Alice", "https://pics.example/alice.png")
BOB = User("bob-sub", "Bob@Example.org", "Bob")


class NonceMismatch(jwt.InvalidTokenError):
    pass


class UnknownKid(jwt.InvalidTokenError):
    pass


def verify(token: str, jwks: dict[str, Any], issuer: str, nonce: str | None) -> dict[str, Any]:
    """What the agent's callback checks: a published key, RS256 only, iss, aud, exp, nonce."""
    keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys}
    kid = jwt.get_unverified_header(token).get("kid")
    if kid not in keys:
        raise UnknownKid(kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        keys[kid].key,
        algorithms=["RS256"],
        audience=CLIENT,
        issuer=issuer,
        options={"require": ["iss", "sub", "aud", "exp", "iat"]},
    )
    if claims.get("nonce") != nonce:
        raise NonceMismatch(claims.get("nonce"))
    return claims


@pytest.fixture
async def oidc() -> AsyncIterator[FakeOidc]:
    async with open_fake_oidc(clients={CLIENT: (SECRET, [REDIRECT])}, users=[ALICE, BOB]) as p:
        yield p


@pytest.fixture
async def http(oidc: FakeOidc) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=oidc.issuer) as client:
        yield client


async def authorize(http: httpx.AsyncClient, **overrides: str) -> tuple[str, dict[str, str]]:
    """``/authorize``; the redirect target and its query."""
    params = {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "scope": "openid email profile",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": pkce_challenge(VERIFIER),
        "code_challenge_method": "S256",
    } | overrides
    resp = await http.get("/authorize", params={k: v for k, v in params.items() if v})
    assert resp.status_code == 302, resp.text
    target = urlsplit(resp.headers["location"])
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    return f"{target.scheme}://{target.netloc}{target.path}", query


async def login(http: httpx.AsyncClient, **overrides: str) -> str:
    """A fresh authorization code."""
    _, query = await authorize(http, **overrides)
    return query["code"]


async def exchange(
    http: httpx.AsyncClient,
    code: str,
    *,
    verifier: str = VERIFIER,
    auth: str = "basic",
    **form: str,
) -> httpx.Response:
    """``POST /token`` with client_secret_basic or client_secret_post."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier} | form  # fmt: skip
    if auth == "post":
        return await http.post("/token", data={"client_id": CLIENT, "client_secret": SECRET} | data)
    raw = f"{_form_encode(CLIENT)}:{_form_encode(SECRET)}".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    return await http.post("/token", data=data, headers=headers)


def _form_encode(value: str) -> str:  # RFC 6749 §2.3.1
    return str(httpx.QueryParams({"v": value}))[2:]


async def test_discovery_points_at_the_provider_itself(
    oidc: FakeOidc, http: httpx.AsyncClient
) -> None:
    doc = (await http.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == oidc.issuer
    assert oidc.issuer.startswith("http://127.0.0.1:")
    for key in ("authorization", "token", "userinfo", "end_session"):
        assert doc[f"{key}_endpoint"].startswith(oidc.issuer + "/")
    assert doc["response_types_supported"] == ["code"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        doc["token_endpoint_auth_methods_supported"]
    )
    assert {"openid", "email", "profile"} <= set(doc["scopes_supported"])
    jwks = (await http.get(doc["jwks_uri"])).json()
    (key,) = jwks["keys"]
    assert key["kty"] == "RSA"
    assert key["use"] == "sig"
    assert key["alg"] == "RS256"
    assert key["e"] == "AQAB"
    assert len(base64.urlsafe_b64decode(key["n"] + "==")) == 256


@pytest.mark.parametrize("auth", ["basic", "post"])
async def test_code_flow_with_pkce(oidc: FakeOidc, http: httpx.AsyncClient, auth: str) -> None:
    target, query = await authorize(http)
    assert target == REDIRECT
    assert query["state"] == "st-1"
    assert query["code"]
    resp = await exchange(http, query["code"], auth=auth)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    assert body["scope"] == "openid email profile"
    jwks = (await http.get("/jwks")).json()
    claims = verify(body["id_token"], jwks, oidc.issuer, "n-1")
    assert claims["sub"] == "alice-sub"
    assert claims["azp"] == CLIENT
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is True
    assert claims["name"] == "Alice"
    assert claims["picture"] == ALICE.picture
    assert jwt.get_unverified_header(body["id_token"])["kid"] == jwks["keys"][0]["kid"]
    info = await http.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.json() == {"sub": "alice-sub", "email": "alice@example.com",
                           "email_verified": True, "name": "Alice", "picture": ALICE.picture}  # fmt: skip
    stats = oidc.statistics()
    assert (stats.codes_issued, stats.tokens_issued, stats.outstanding_codes) == (1, 1, 0)
    token_request = next(r for r in oidc.requests if r.path == "/token")
    assert token_request.params["code_verifier"] == VERIFIER


async def test_wrong_verifier_is_refused_and_burns_the_code(http: httpx.AsyncClient) -> None:
    code = await login(http)
    resp = await exchange(http, code, verifier="w" * 43)
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"
    assert (await exchange(http, code)).json()["error"] == "invalid_grant"


async def test_a_code_is_single_use_and_replay_revokes_its_token(http: httpx.AsyncClient) -> None:
    code = await login(http)
    first = await exchange(http, code)
    assert first.status_code == 200
    again = await exchange(http, code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {first.json()['access_token']}"}
    info = await http.get("/userinfo", headers=bearer)
    assert info.status_code == 401
    assert "invalid_token" in info.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"redirect_uri": REDIRECT + "/other"}, 400, "invalid_grant"),
        ({"grant_type": "refresh_token"}, 400, "unsupported_grant_type"),
        ({"code_verifier": ""}, 400, "invalid_grant"),
    ],
)
async def test_token_request_errors(
    http: httpx.AsyncClient, change: dict[str, str], status: int, error: str
) -> None:
    resp = await exchange(http, await login(http), **change)
    assert (resp.status_code, resp.json()["error"]) == (status, error)


async def test_client_authentication_is_checked(oidc: FakeOidc, http: httpx.AsyncClient) -> None:
    code = await login(http)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER}  # fmt: skip
    resp = await http.post("/token", data=data, auth=(CLIENT, "wrong"))
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    assert resp.headers["www-authenticate"].startswith("Basic")
    unencoded = await http.post("/token", data=data | {"code": "x"}, auth=(CLIENT, SECRET))
    assert unencoded.json()["error"] == "invalid_grant"  # authenticated, unlike the next one
    no_secret = await http.post("/token", data=data | {"client_id": CLIENT})
    assert no_secret.status_code == 401
    as_json = await http.post("/token", json=data, auth=(CLIENT, SECRET))
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"
    assert (await exchange(http, code)).status_code == 200  # failed client auth kept the code
    assert oidc.statistics().token_errors == 4


async def test_a_code_expires_after_60_seconds(
    oidc: FakeOidc, mock_clock: trio.testing.MockClock
) -> None:
    # No keep-alive: the server's idle timeout fires when the clock jumps.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=oidc.issuer, limits=limits) as http:
        fresh, stale = await login(http), await login(http)
        mock_clock.jump(59)
        assert (await exchange(http, fresh)).status_code == 200
        mock_clock.jump(2)
        resp = await exchange(http, stale)
    assert resp.status_code == 400
    assert "expired" in resp.json()["error_description"]


async def test_rotation_publishes_the_new_key_and_keeps_the_old_one(
    oidc: FakeOidc, http: httpx.AsyncClient
) -> None:
    old_token = (await exchange(http, await login(http))).json()["id_token"]
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_kid = oidc.rotate_keys()
    new_token = (await exchange(http, await login(http))).json()["id_token"]
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid != old_kid
    jwks = (await http.get("/jwks")).json()
    assert [k["kid"] for k in jwks["keys"]] == [old_kid, new_kid]
    for token in (old_token, new_token):
        verify(token, jwks, oidc.issuer, "n-1")
    newest = oidc.rotate_keys(drop_old=True)
    jwks = (await http.get("/jwks")).json()
    assert [k["kid"] for k in jwks["keys"]] == [newest]
    with pytest.raises(UnknownKid):
        verify(new_token, jwks, oidc.issuer, "n-1")


EXPECTED: dict[str, type[Exception]] = {
    "signature": jwt.InvalidSignatureError,
    "issuer": jwt.InvalidIssuerError,
    "audience": jwt.InvalidAudienceError,
    "expired": jwt.ExpiredSignatureError,
    "nonce": NonceMismatch,
    "alg_none": jwt.InvalidAlgorithmError,
    "unknown_kid": UnknownKid,
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
async def test_each_tampered_token_fails_its_check(
    oidc: FakeOidc, http: httpx.AsyncClient, kind: TamperKind
) -> None:
    oidc.tamper_next(kind)
    bad = (await exchange(http, await login(http))).json()["id_token"]
    jwks = (await http.get("/jwks")).json()
    with pytest.raises(EXPECTED[kind]):
        verify(bad, jwks, oidc.issuer, "n-1")
    good = (await exchange(http, await login(http))).json()["id_token"]
    assert verify(good, jwks, oidc.issuer, "n-1")["sub"] == "alice-sub"  # one-shot


def test_an_unknown_tamper_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown tamper kind"):
        FakeOidc().tamper_next("everything")  # type: ignore[arg-type]


async def test_login_hint_and_login_as_choose_the_user(
    oidc: FakeOidc, http: httpx.AsyncClient
) -> None:
    async def sub_of(**overrides: str) -> str:
        body = (await exchange(http, await login(http, **overrides))).json()
        return str(jwt.decode(body["id_token"], options={"verify_signature": False})["sub"])

    assert await sub_of() == "alice-sub"
    assert await sub_of(login_hint="bob@example.org") == "bob-sub"
    carol = User("carol-sub", "carol@example.net")
    oidc.login_as(carol)
    assert await sub_of() == "carol-sub"
    assert await sub_of(login_hint="alice@example.com") == "alice-sub"
    _, query = await authorize(http, login_hint="nobody@example.com")
    assert query["error"] == "access_denied"


async def test_deny_next_redirects_with_access_denied_once(
    oidc: FakeOidc, http: httpx.AsyncClient
) -> None:
    oidc.deny_next()
    target, query = await authorize(http)
    assert target == REDIRECT
    assert query["error"] == "access_denied"
    assert query["state"] == "st-1"
    assert "code" not in query
    _, query = await authorize(http)
    assert "code" in query
    assert oidc.statistics().authorize_errors == 1


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": ""}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"scope": "email profile"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
async def test_malformed_authorizations_are_redirected_with_an_error(
    http: httpx.AsyncClient, overrides: dict[str, str], error: str
) -> None:
    _, query = await authorize(http, **overrides)
    assert query["error"] == error
    assert "code" not in query


async def test_unknown_clients_and_redirects_get_400_until_registered(
    oidc: FakeOidc, http: httpx.AsyncClient
) -> None:
    later = "http://127.0.0.1:4242/auth/callback"
    base = {"response_type": "code", "scope": "openid", "code_challenge_method": "S256",
            "code_challenge": pkce_challenge(VERIFIER)}  # fmt: skip
    unknown = await http.get("/authorize", params=base | {"client_id": "x", "redirect_uri": later})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_client"
    resp = await http.get("/authorize", params=base | {"client_id": CLIENT, "redirect_uri": later})
    assert resp.status_code == 400
    assert "location" not in resp.headers
    oidc.register_client(CLIENT, SECRET, [REDIRECT, later])
    target, query = await authorize(http, redirect_uri=later)
    assert target == later
    assert "code" in query


async def test_scopes_limit_the_released_claims(oidc: FakeOidc, http: httpx.AsyncClient) -> None:
    body = (await exchange(http, await login(http, scope="openid", nonce=""))).json()
    claims = verify(body["id_token"], (await http.get("/jwks")).json(), oidc.issuer, None)
    assert "email" not in claims
    assert "name" not in claims
    assert body["scope"] == "openid"


async def test_logout_redirects_only_to_a_registered_origin(http: httpx.AsyncClient) -> None:
    ok = await http.get("/logout", params={"post_logout_redirect_uri": "http://127.0.0.1:9/",
                                           "state": "s"})  # fmt: skip
    assert ok.status_code == 302
    assert ok.headers["location"] == "http://127.0.0.1:9/?state=s"
    evil = await http.get("/logout", params={"post_logout_redirect_uri": "https://evil.example/"})
    assert evil.status_code == 400
    assert (await http.get("/logout")).status_code == 200


async def test_non_ascii_credentials_are_refused_not_crashed(http: httpx.AsyncClient) -> None:
    code = await login(http, code_challenge="défi" * 11)
    resp = await exchange(http, code, auth="post", client_secret="sécret")
    assert resp.status_code == 401
    resp = await exchange(http, await login(http, code_challenge="défi" * 11))
    assert resp.json()["error"] == "invalid_grant"


async def test_nobody_logged_in_is_login_required() -> None:
    async with (
        open_fake_oidc(clients={CLIENT: (SECRET, [REDIRECT])}) as oidc,
        httpx.AsyncClient(base_url=oidc.issuer) as http,
    ):
        _, query = await authorize(http)
        assert query["error"] == "login_required"
