"""Hasura settings of the per-app database (seed guide §7), parsed from the environment.

The feature is optional: without ``HASURA_BASE_URL`` :func:`hasura_config_from_env` returns
None and the agent runs without ``/db/*`` (upstream refused to start — a bug).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

import attrs
from amicable_settings import choice, errors_as, integer, seconds, secret, string

from amicable_agent.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

OriginMode = Literal["strict_preview", "any"]

#: Hasura's default claims namespace (``claims_namespace`` in the JWT secret overrides it).
DEFAULT_CLAIMS_NAMESPACE = "https://hasura.io/jwt/claims"
#: Hasura refuses HS256 keys shorter than this.
MIN_HS256_KEY_CHARS = 32


@attrs.frozen
class JwtSecret:
    """The parsed ``HASURA_GRAPHQL_JWT_SECRET`` (Hasura's JSON format, HS256 only).

    Attributes:
        key: the shared HMAC key (the ``key`` member, as UTF-8 bytes).
        claims_namespace: where the ``x-hasura-*`` claims go.
        claims_format: ``json`` (an object) or ``stringified_json`` (a JSON string).
        issuer: ``iss`` to put in minted tokens when Hasura checks it.
        audience: ``aud`` to put in minted tokens when Hasura checks it.
    """

    key: bytes = attrs.field(repr=False)
    claims_namespace: str = DEFAULT_CLAIMS_NAMESPACE
    claims_format: Literal["json", "stringified_json"] = "json"
    issuer: str | None = None
    audience: str | None = None


def parse_jwt_secret(raw: str) -> JwtSecret:
    """Parse Hasura's ``{"type":"HS256","key":"..."}`` JSON.

    Raises:
        ConfigError: not JSON, not HS256, a short key, or an unsupported option.
    """
    name = "HASURA_GRAPHQL_JWT_SECRET"
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f'{name} must be JSON like {{"type":"HS256","key":"..."}}') from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{name} must be a JSON object")
    if doc.get("type") != "HS256":
        raise ConfigError(f"{name}: only type HS256 is supported, not {doc.get('type')!r}")
    key = doc.get("key")
    if not isinstance(key, str) or len(key) < MIN_HS256_KEY_CHARS:
        raise ConfigError(f"{name}: key must be a string of at least {MIN_HS256_KEY_CHARS} chars")
    if "claims_namespace_path" in doc or "claims_map" in doc:
        raise ConfigError(f"{name}: claims_namespace_path/claims_map are not supported")
    namespace = doc.get("claims_namespace", DEFAULT_CLAIMS_NAMESPACE)
    claims_format = doc.get("claims_format", "json")
    if not isinstance(namespace, str) or claims_format not in ("json", "stringified_json"):
        raise ConfigError(f"{name}: bad claims_namespace or claims_format")
    issuer = doc.get("issuer")
    audience = doc.get("audience")
    if isinstance(audience, list):
        audience = audience[0] if audience else None
    if not isinstance(issuer, str | None) or not isinstance(audience, str | None):
        raise ConfigError(f"{name}: issuer and audience must be strings")
    return JwtSecret(
        key=key.encode("utf-8"),
        claims_namespace=namespace,
        claims_format=claims_format,
        issuer=issuer,
        audience=audience,
    )


@attrs.frozen
class HasuraConfig:
    """Settings of the Hasura integration.

    Attributes:
        base_url: ``HASURA_BASE_URL`` (e.g. ``http://hasura:8080``), no trailing slash.
        admin_secret: ``HASURA_GRAPHQL_ADMIN_SECRET`` (or ``_FILE``); sent as
            ``x-hasura-admin-secret`` on ``run_sql`` and metadata calls only.
        source_name: ``HASURA_SOURCE_NAME`` (``default``).
        jwt_secret: ``HASURA_GRAPHQL_JWT_SECRET`` (or ``_FILE``); without it the proxy
            answers 503 ``hasura jwt not configured`` (provisioning still works).
        origin_mode: ``AMICABLE_DB_PROXY_ORIGIN_MODE``: ``strict_preview`` (default: only the
            preview origin of the app's own project) or ``any`` (any non-empty Origin).
        public_base_url: ``AMICABLE_PUBLIC_BASE_URL`` or ``PUBLIC_BASE_URL``: the agent's
            public URL that previews call (``graphqlUrl`` in ``amicable-db.js``).
        timeout_s: deadline of every Hasura request (``AMICABLE_HASURA_TIMEOUT_S``, 30).
        max_body_bytes: largest proxied request body (``AMICABLE_DB_PROXY_MAX_BODY_BYTES``,
            1 MiB); larger bodies get 413.
    """

    base_url: str
    admin_secret: str = attrs.field(repr=False)
    source_name: str = "default"
    jwt_secret: JwtSecret | None = attrs.field(default=None, repr=False)
    origin_mode: OriginMode = "strict_preview"
    public_base_url: str | None = None
    timeout_s: float = 30.0
    max_body_bytes: int = 1024 * 1024


def hasura_config_from_env(env: Mapping[str, str]) -> HasuraConfig | None:
    """The Hasura settings, or None when ``HASURA_BASE_URL`` is not set (feature off).

    Raises:
        ConfigError: a variable is malformed, or the admin secret is missing.
    """
    with errors_as(ConfigError):
        return _hasura_config(env)


def _hasura_config(env: Mapping[str, str]) -> HasuraConfig | None:
    base_url = string(env, "HASURA_BASE_URL", "").rstrip("/")
    if not base_url:
        return None
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"HASURA_BASE_URL must be an http(s) URL, not {base_url!r}")
    admin_secret = secret(env, "HASURA_GRAPHQL_ADMIN_SECRET")
    if admin_secret is None:
        raise ConfigError("HASURA_BASE_URL is set but HASURA_GRAPHQL_ADMIN_SECRET is not")
    raw_jwt = secret(env, "HASURA_GRAPHQL_JWT_SECRET")
    public = string(env, "AMICABLE_PUBLIC_BASE_URL", string(env, "PUBLIC_BASE_URL", ""))
    return HasuraConfig(
        base_url=base_url,
        admin_secret=admin_secret,
        source_name=string(env, "HASURA_SOURCE_NAME", "default"),
        jwt_secret=parse_jwt_secret(raw_jwt) if raw_jwt else None,
        origin_mode=choice(
            env, "AMICABLE_DB_PROXY_ORIGIN_MODE", "strict_preview", ("strict_preview", "any")
        ),
        public_base_url=public.rstrip("/") or None,
        timeout_s=seconds(env, "AMICABLE_HASURA_TIMEOUT_S", 30.0, positive=True),
        max_body_bytes=integer(env, "AMICABLE_DB_PROXY_MAX_BODY_BYTES", 1024 * 1024, minimum=1),
    )
