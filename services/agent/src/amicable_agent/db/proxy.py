"""``/db/apps/<app_id>/graphql``: the browser's door to its app database (upstream §2.8).

Framework-free: :meth:`DbProxy.handle` takes the method, headers and body and returns a
:class:`ProxyResponse`, so the route is a three-line adapter. Checks in upstream's order —
Origin (403 ``forbidden``, no CORS headers), ``x-amicable-app-key`` present (401
``missing app key``), app known (404 ``unknown app``), key hash matches (403
``invalid app key``), JWT secret configured (503 ``hasura jwt not configured``), body a JSON
object (400 ``invalid body``) — then root fields are rewritten to the app schema and the
request is forwarded to Hasura with a fresh 300 s JWT; Hasura's status, body and
content-type pass through. Bodies are plain text like upstream's. Beyond upstream: 413
``body too large``, 405 for other methods, and Hasura failures are 502 ``hasura error`` /
503 ``hasura unavailable`` / 504 ``hasura timeout`` instead of a 500 with exception text.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import attrs

from amicable_agent.errors import HasuraError

from .jwt import mint_hasura_jwt
from .rewrite import rewrite_query_for_schema

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .config import HasuraConfig
    from .hasura import HasuraClient
    from .origin import OriginPolicy
    from .provisioning import Provisioner

log = logging.getLogger(__name__)

APP_KEY_HEADER = "x-amicable-app-key"
#: App ids longer than this are unknown without asking Hasura.
MAX_APP_ID_CHARS = 128


@attrs.frozen
class ProxyResponse:
    """What the route sends back: status, headers (in order) and body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


def cors_headers(origin: str) -> tuple[tuple[str, str], ...]:
    """The CORS headers of every answer to an accepted Origin."""
    return (
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Headers", "content-type,x-amicable-app-key"),
        ("Access-Control-Allow-Methods", "POST,OPTIONS"),
        ("Vary", "Origin"),
    )


def _text(status: int, message: str, cors: tuple[tuple[str, str], ...] = ()) -> ProxyResponse:
    headers = (*cors, ("Content-Type", "text/plain; charset=utf-8"))
    return ProxyResponse(status, headers, message.encode("utf-8"))


def disabled_response() -> ProxyResponse:
    """The answer of ``/db/*`` when Hasura is not configured (feature off)."""
    return _text(404, "database integration is not configured")


def _hasura_failure(exc: HasuraError, cors: tuple[tuple[str, str], ...]) -> ProxyResponse:
    if exc.status == 0 and exc.code == "timeout":
        return _text(504, "hasura timeout", cors)
    if exc.status == 0:
        return _text(503, "hasura unavailable", cors)
    return _text(502, "hasura error", cors)


class DbProxy:
    """Validates and forwards browser GraphQL requests for app databases."""

    def __init__(
        self,
        *,
        config: HasuraConfig,
        client: HasuraClient,
        provisioner: Provisioner,
        origins: OriginPolicy,
    ) -> None:
        self._config = config
        self._client = client
        self._provisioner = provisioner
        self._origins = origins

    @property
    def max_body_bytes(self) -> int:
        """Largest accepted body; routes may refuse a larger Content-Length before reading."""
        return self._config.max_body_bytes

    async def handle(
        self,
        method: str,
        app_id: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        declared_length: int | None = None,
    ) -> ProxyResponse:
        """Answer one request to ``/db/apps/<app_id>/graphql``.

        Args:
            method: the HTTP method.
            app_id: the path segment (the project id).
            headers: the request headers (any case).
            body: the raw request body.
            declared_length: the Content-Length when the caller did not read a body that
                large (answered 413 after the origin and key checks).

        Cancellation: nothing is left running; an in-flight Hasura request is abandoned.
        """
        lower = {k.lower(): v for k, v in headers.items()}
        origin = lower.get("origin", "").strip()
        if not origin or not await self._origins.allowed(origin, app_id):
            if method.upper() == "OPTIONS":
                return ProxyResponse(403, (), b"")
            return _text(403, "forbidden")
        cors = cors_headers(origin)
        method = method.upper()
        if method == "OPTIONS":
            return ProxyResponse(204, cors, b"")
        if method != "POST":
            return _text(405, "method not allowed", (*cors, ("Allow", "POST, OPTIONS")))
        app_key = lower.get(APP_KEY_HEADER, "").strip()
        if not app_key:
            return _text(401, "missing app key", cors)
        if max(len(body), declared_length or 0) > self._config.max_body_bytes:
            return _text(413, "body too large", cors)
        if not app_id or len(app_id) > MAX_APP_ID_CHARS or "\x00" in app_id:
            return _text(404, "unknown app", cors)
        try:
            record = await self._provisioner.get_app(app_id)
        except HasuraError as exc:
            log.warning("db proxy: app lookup failed: %s", exc)
            return _hasura_failure(exc, cors)
        if record is None:
            return _text(404, "unknown app", cors)
        if not record.key_matches(app_key):
            return _text(403, "invalid app key", cors)
        secret = self._config.jwt_secret
        if secret is None:
            return _text(503, "hasura jwt not configured", cors)
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            return _text(400, "invalid body", cors)
        query = doc.get("query")
        if isinstance(query, str) and query.strip():
            doc["query"] = rewrite_query_for_schema(query, record.schema_name)
        bearer = mint_hasura_jwt(secret, role=record.role_name, app_id=app_id)
        try:
            reply = await self._client.graphql(json.dumps(doc).encode("utf-8"), bearer=bearer)
        except HasuraError as exc:
            log.warning("db proxy: graphql request failed: %s", exc)
            return _hasura_failure(exc, cors)
        out = cors if reply.content_type is None else (*cors, ("Content-Type", reply.content_type))
        return ProxyResponse(reply.status, out, reply.body)
