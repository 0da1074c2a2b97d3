"""Pure logic of the db package: config, JWT, SQL quoting, origins, rewriting, injection."""

from __future__ import annotations

import base64
import json

import pytest
from amicable_agent.config import AgentConfig
from amicable_agent.db import (
    InvalidJwt,
    JwtSecret,
    app_schema_name,
    db_js,
    decode_hs256,
    hasura_config_from_env,
    mint_hasura_jwt,
    normalize_origin,
    parse_db_js,
    patch_index_html,
    rewrite_query_for_schema,
)
from amicable_agent.db.inject import graphql_url
from amicable_agent.db.sql import quote_ident, quote_literal
from amicable_agent.errors import ConfigError

KEY = "k" * 40
SECRET_JSON = json.dumps({"type": "HS256", "key": KEY})


# --- config --------------------------------------------------------------------------


def test_feature_is_off_without_base_url() -> None:
    assert hasura_config_from_env({}) is None
    assert AgentConfig.from_env({"HASURA_GRAPHQL_JWT_SECRET": "garbage"}).hasura is None


def test_config_from_env_reads_every_variable(tmp_path) -> None:
    secret_file = tmp_path / "admin"
    secret_file.write_text("from-file\n")
    cfg = AgentConfig.from_env(
        {
            "HASURA_BASE_URL": "http://hasura:8080/",
            "HASURA_SOURCE_NAME": "appdb",
            "HASURA_GRAPHQL_ADMIN_SECRET_FILE": str(secret_file),
            "HASURA_GRAPHQL_JWT_SECRET": SECRET_JSON,
            "AMICABLE_DB_PROXY_ORIGIN_MODE": "any",
            "PUBLIC_BASE_URL": "https://agent.example.com/",
        }
    ).hasura
    assert cfg is not None
    assert cfg.base_url == "http://hasura:8080"
    assert cfg.source_name == "appdb"
    assert cfg.admin_secret == "from-file"
    assert cfg.jwt_secret is not None
    assert cfg.jwt_secret.key == KEY.encode()
    assert cfg.origin_mode == "any"
    assert cfg.public_base_url == "https://agent.example.com"
    assert "from-file" not in repr(cfg)
    assert KEY not in repr(cfg)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HASURA_BASE_URL": "http://h"}, "HASURA_GRAPHQL_ADMIN_SECRET"),
        ({"HASURA_BASE_URL": "ftp://h", "HASURA_GRAPHQL_ADMIN_SECRET": "x"}, "http"),
        (
            {
                "HASURA_BASE_URL": "http://h",
                "HASURA_GRAPHQL_ADMIN_SECRET": "x",
                "HASURA_GRAPHQL_JWT_SECRET": "not json",
            },
            "JSON",
        ),
        (
            {
                "HASURA_BASE_URL": "http://h",
                "HASURA_GRAPHQL_ADMIN_SECRET": "x",
                "HASURA_GRAPHQL_JWT_SECRET": json.dumps({"type": "RS256", "key": KEY}),
            },
            "HS256",
        ),
        (
            {
                "HASURA_BASE_URL": "http://h",
                "HASURA_GRAPHQL_ADMIN_SECRET": "x",
                "HASURA_GRAPHQL_JWT_SECRET": json.dumps({"type": "HS256", "key": "short"}),
            },
            "at least 32",
        ),
        (
            {
                "HASURA_BASE_URL": "http://h",
                "HASURA_GRAPHQL_ADMIN_SECRET": "x",
                "AMICABLE_DB_PROXY_ORIGIN_MODE": "loose",
            },
            "strict_preview or any",
        ),
    ],
)
def test_bad_config_is_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        hasura_config_from_env(env)


# --- JWT -----------------------------------------------------------------------------


def _payload(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_minted_jwt_has_upstream_claims_and_verifies() -> None:
    secret = JwtSecret(key=KEY.encode())
    token = mint_hasura_jwt(secret, role="app_abc", app_id="p1", now=1000)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert "=" not in token
    payload = decode_hs256(token, KEY.encode(), now=1100)
    assert payload["iat"] == 1000
    assert payload["exp"] == 1300
    assert payload["https://hasura.io/jwt/claims"] == {
        "x-hasura-default-role": "app_abc",
        "x-hasura-allowed-roles": ["app_abc"],
        "x-hasura-app-id": "p1",
    }


def test_jwt_expiry_signature_and_algorithm_are_checked() -> None:
    secret = JwtSecret(key=KEY.encode())
    token = mint_hasura_jwt(secret, role="r", app_id="a", now=1000)
    with pytest.raises(InvalidJwt, match="Expired"):
        decode_hs256(token, KEY.encode(), now=1300)
    with pytest.raises(InvalidJwt, match="Signature"):
        decode_hs256(token, b"x" * 40, now=1100)
    _head, body, _ = token.split(".")
    none_alg = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    with pytest.raises(InvalidJwt, match="HS256"):
        decode_hs256(f"{none_alg}.{body}.", KEY.encode(), now=1100)
    with pytest.raises(InvalidJwt):
        decode_hs256("not-a-token", KEY.encode())


#: Tokens minted by the hand-written HS256 encoder this module had before PyJWT: the same
#: inputs must still give the same bytes (sorted compact JSON, the same header).
_GOLDEN_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3MDAwMDAzMDAsImh0dHBzOi8vaGFzdXJhLmlvL2p3dC9"
    "jbGFpbXMiOnsieC1oYXN1cmEtYWxsb3dlZC1yb2xlcyI6WyJhcHBfMDEyMzQ1Njc4OWFiIl0sIngtaGFzdXJhLWFwcC1p"
    "ZCI6InAxIiwieC1oYXN1cmEtZGVmYXVsdC1yb2xlIjoiYXBwXzAxMjM0NTY3ODlhYiJ9LCJpYXQiOjE3MDAwMDAwMDB9"
    ".Ud_7Q4qQ0OfaKVi8GcQ7D1fXte9USWZg0WSV8q4KlSE"
)
_GOLDEN_STRINGIFIED = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJoYXN1cmEtYXBwIiwiZXhwIjozMDUsImhhc3VyYSI6Int"
    "cIngtaGFzdXJhLWFsbG93ZWQtcm9sZXNcIjpbXCJyXCJdLFwieC1oYXN1cmEtYXBwLWlkXCI6XCJhXCIsXCJ4LWhhc3Vy"
    "YS1kZWZhdWx0LXJvbGVcIjpcInJcIn0iLCJpYXQiOjUsImlzcyI6ImFtaWNhYmxlIn0.gMuWfAuMcps9U5MVvaZ0BCurJg"
    "AaiXqt4MFNUa1k7oc"
)


def test_minted_tokens_are_byte_identical_to_the_previous_encoder() -> None:
    key = b"k" * 32
    token = mint_hasura_jwt(JwtSecret(key=key), role="app_0123456789ab", app_id="p1", now=1.7e9)
    assert token == _GOLDEN_TOKEN
    secret = JwtSecret(
        key=key,
        claims_namespace="hasura",
        claims_format="stringified_json",
        issuer="amicable",
        audience="hasura-app",
    )
    assert mint_hasura_jwt(secret, role="r", app_id="a", now=5) == _GOLDEN_STRINGIFIED
    # The audience is put in for Hasura, not checked here (as before).
    assert decode_hs256(_GOLDEN_STRINGIFIED, key, now=6)["aud"] == "hasura-app"


def _signed(header: object, payload: object, key: bytes, digest: str = "sha256") -> str:
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    mac = hmac.new(key, head.encode(), getattr(hashlib, digest)).digest()
    return head + "." + b64(mac)


def test_only_hs256_is_accepted_even_with_the_right_key() -> None:
    key = KEY.encode()
    claims = {"exp": 2000}
    assert decode_hs256(_signed({"alg": "HS256"}, claims, key), key, now=1000) == claims
    for header, digest in (({"alg": "HS512"}, "sha512"), ({"alg": "HS384"}, "sha384")):
        with pytest.raises(InvalidJwt, match="HS256"):
            decode_hs256(_signed(header, claims, key, digest), key, now=1000)
    # "none" with a signature attached, and with the HS256 signature of another header.
    with pytest.raises(InvalidJwt, match="HS256"):
        decode_hs256(_signed({"alg": "none"}, claims, key), key, now=1000)
    with pytest.raises(InvalidJwt):
        decode_hs256(_signed({}, claims, key), key, now=1000)


def test_a_token_without_exp_or_with_a_bad_one_is_refused() -> None:
    key = KEY.encode()
    with pytest.raises(InvalidJwt, match="JWTExpired"):
        decode_hs256(_signed({"alg": "HS256"}, {"iat": 1}, key), key, now=1000)
    with pytest.raises(InvalidJwt, match="JWTExpired"):
        decode_hs256(_signed({"alg": "HS256"}, {"exp": "later"}, key), key, now=1000)
    with pytest.raises(InvalidJwt, match="JWTExpired"):  # exp == now is expired
        decode_hs256(_signed({"alg": "HS256"}, {"exp": 1000}, key), key, now=1000)
    with pytest.raises(InvalidJwt):
        decode_hs256(_signed({"alg": "HS256"}, [1], key), key, now=1000)


def test_jwt_honours_namespace_format_issuer_audience() -> None:
    secret = JwtSecret(
        key=KEY.encode(),
        claims_namespace="hasura",
        claims_format="stringified_json",
        issuer="amicable",
        audience="hasura-app",
    )
    payload = _payload(mint_hasura_jwt(secret, role="r", app_id="a", now=5))
    assert json.loads(payload["hasura"])["x-hasura-default-role"] == "r"
    assert payload["iss"] == "amicable"
    assert payload["aud"] == "hasura-app"


# --- SQL -----------------------------------------------------------------------------


def test_app_names_are_upstream_compatible() -> None:
    import hashlib

    name = app_schema_name("0b7e6c2a")
    assert name == "app_" + hashlib.sha256(b"0b7e6c2a").hexdigest()[:12]
    assert quote_ident(name) == f'"{name}"'


@pytest.mark.parametrize(
    "bad", ['x"; DROP SCHEMA public; --', "Upper", "1abc", "a-b", "", "a" * 64]
)
def test_unsafe_identifiers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        quote_ident(bad)


def test_literals_escape_quotes_and_backslashes() -> None:
    assert quote_literal("it's") == "E'it''s'"
    assert quote_literal("a\\'; DROP") == "E'a\\\\''; DROP'"
    with pytest.raises(ValueError, match="NUL"):
        quote_literal("a\x00b")


# --- origins -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://My-App.Preview.Example.com", "https://my-app.preview.example.com"),
        ("https://a.example.com:443", "https://a.example.com"),
        ("http://a.preview.localhost:8080", "http://a.preview.localhost:8080"),
        ("http://a.preview.localhost:8080/", "http://a.preview.localhost:8080"),
        ("null", None),
        ("", None),
        (None, None),
        ("https://user@a.example.com", None),
        ("https://a.example.com/path", None),
        ("javascript://a.example.com", None),
        ("https://a.example.com:99999", None),
    ],
)
def test_normalize_origin(raw: str | None, expected: str | None) -> None:
    assert normalize_origin(raw) == expected


# --- rewriting -----------------------------------------------------------------------


def test_root_fields_get_the_schema_prefix_and_keep_their_names() -> None:
    out = rewrite_query_for_schema(
        "query Q($n: Int) { todos(limit: $n) { id } mine: notes { id } "
        "app_x_done { id } __typename ...R ... on query_root { tags { id } } } "
        "fragment R on query_root { users { id } } fragment T on todos { title }",
        "app_x",
    )
    assert "todos: app_x_todos(limit: $n)" in out
    assert "mine: app_x_notes" in out
    assert "done: " not in out
    assert "app_x_done {" in out
    assert "__typename" in out
    assert "app_x___typename" not in out
    assert "tags: app_x_tags" in out
    assert "users: app_x_users" in out
    assert "fragment T on todos {\n  title" in out  # nested fields untouched


def test_mutation_verbs_are_prefixed_after_the_verb() -> None:
    out = rewrite_query_for_schema(
        "mutation { insert_todos(objects: []) { affected_rows } update_todos_by_pk { id } "
        "delete_app_x_todos { affected_rows } insert_todos_one { id } }",
        "app_x",
    )
    assert "insert_todos: insert_app_x_todos(objects: [])" in out
    assert "update_todos_by_pk: update_app_x_todos_by_pk" in out
    assert "delete_app_x_todos {" in out
    assert "insert_todos_one: insert_app_x_todos_one" in out


@pytest.mark.parametrize("bad", ["{ broken", "", "query { a(x: ) }", "{" * 5000])
def test_unparseable_queries_are_returned_unchanged(bad: str) -> None:
    assert rewrite_query_for_schema(bad, "app_x") == bad


# --- injection -----------------------------------------------------------------------


def test_db_js_round_trips_and_is_one_safe_assignment() -> None:
    text = db_js(
        app_id="p1",
        app_key="key-</script>\u2028",
        graphql_url=graphql_url("https://agent.example.com/", "p 1"),
        preview_origin="https://slug.preview.example.com",
    )
    assert text.startswith("window.__AMICABLE_DB__ = {")
    assert text.count("\n") == 1
    assert "\u2028" not in text
    doc = parse_db_js(text)
    assert doc == {
        "appId": "p1",
        "appKey": "key-</script>\u2028",
        "graphqlUrl": "https://agent.example.com/db/apps/p%201/graphql",
        "previewOrigin": "https://slug.preview.example.com",
    }
    assert parse_db_js("window.__AMICABLE_DB__ = null;") is None
    assert parse_db_js("garbage") is None


def test_index_html_is_patched_once_before_head_end() -> None:
    html = "<html><head><title>x</title></head><body></body></html>"
    patched = patch_index_html(html)
    assert patched is not None
    assert patched.index('<script src="/amicable-db.js"></script>') < patched.index("</head>")
    assert patch_index_html(patched) is None
    no_head = patch_index_html("<div></div>")
    assert no_head is not None
    assert no_head.endswith('<script src="/amicable-db.js"></script>\n')
