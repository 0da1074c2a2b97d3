"""A small client of Hasura's HTTP API: ``run_sql`` (``/v2/query``), metadata
(``/v1/metadata``) and GraphQL (``/v1/graphql``).

Admin calls carry ``x-hasura-admin-secret``; GraphQL calls carry only the caller's bearer
JWT. Every request has a deadline. httpx errors and Hasura error bodies become
:class:`~amicable_agent.errors.HasuraError` here and nowhere else.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import trio

from amicable_agent.errors import HasuraError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .config import HasuraConfig

#: Hasura's text for SQL NULL in ``run_sql`` results.
SQL_NULL = "NULL"


@attrs.frozen
class GraphqlReply:
    """Hasura's answer to a GraphQL request, passed through to the browser."""

    status: int
    content_type: str | None
    body: bytes


def _error_detail(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "http_error", response.text[:300]
    if not isinstance(body, dict):
        return "http_error", response.text[:300]
    code = str(body.get("code") or "http_error")
    detail = str(body.get("error") or "")
    internal = body.get("internal")
    if isinstance(internal, dict):
        inner = internal.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            detail = f"{detail}: {inner['message']}"
    return code, detail[:500]


class HasuraClient:
    """Hasura's API over one :class:`httpx.AsyncClient`. Create with :func:`open_hasura_client`."""

    def __init__(self, client: httpx.AsyncClient, config: HasuraConfig) -> None:
        self._client = client
        self._config = config

    @property
    def source_name(self) -> str:
        """The Hasura data source (``HASURA_SOURCE_NAME``)."""
        return self._config.source_name

    async def _post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        limit = self._config.timeout_s
        try:
            with trio.fail_after(limit):
                return await self._client.post(path, content=content, headers=headers)
        except trio.TooSlowError as exc:
            raise HasuraError(0, "timeout", f"POST {path} took over {limit:g}s") from exc
        except httpx.HTTPError as exc:
            raise HasuraError(0, "unreachable", f"POST {path}: {type(exc).__name__}") from exc

    async def _admin(self, path: str, body: dict[str, Any]) -> Any:
        headers = {
            "content-type": "application/json",
            "x-hasura-admin-secret": self._config.admin_secret,
        }
        response = await self._post(path, json.dumps(body).encode("utf-8"), headers)
        if response.status_code >= 400:
            code, detail = _error_detail(response)
            raise HasuraError(response.status_code, code, detail)
        try:
            return response.json()
        except ValueError as exc:
            raise HasuraError(response.status_code, "invalid_response", "not JSON") from exc

    async def run_sql(
        self, sql: str, *, read_only: bool = False, cascade: bool = False
    ) -> list[list[str]] | None:
        """Run SQL on the source (all statements in one transaction).

        Returns:
            For a row-returning last statement, ``[[column…], [value…]…]`` with every value
            a string (``"NULL"`` for SQL NULL); otherwise None.

        Raises:
            HasuraError: Hasura rejected the SQL, or did not answer in time.
        """
        body = {
            "type": "run_sql",
            "args": {
                "source": self._config.source_name,
                "sql": sql,
                "read_only": read_only,
                "cascade": cascade,
                "check_metadata_consistency": False,
            },
        }
        doc = await self._admin("/v2/query", body)
        result = doc.get("result") if isinstance(doc, dict) else None
        if doc.get("result_type") != "TuplesOk" or not isinstance(result, list):
            return None
        return [[str(v) if v is not None else SQL_NULL for v in row] for row in result]

    async def metadata(self, type_: str, args: dict[str, Any]) -> Any:
        """Call the metadata API (``pg_track_table``, ``pg_create_select_permission`` …).

        Raises:
            HasuraError: with Hasura's error ``code`` (``already-tracked``, ``not-exists`` …).
        """
        return await self._admin("/v1/metadata", {"type": type_, "args": args})

    async def graphql(self, body: bytes, *, bearer: str) -> GraphqlReply:
        """POST a GraphQL request as the role in ``bearer``; any status is returned as is.

        Raises:
            HasuraError: status 0 when Hasura did not answer (``unreachable``/``timeout``).
        """
        headers = {"content-type": "application/json", "authorization": f"Bearer {bearer}"}
        response = await self._post("/v1/graphql", body, headers)
        return GraphqlReply(
            response.status_code, response.headers.get("content-type"), response.content
        )


@asynccontextmanager
async def open_hasura_client(config: HasuraConfig) -> AsyncIterator[HasuraClient]:
    """A client of the Hasura at ``config.base_url`` for the duration of the block."""
    async with httpx.AsyncClient(
        base_url=config.base_url, timeout=httpx.Timeout(None), trust_env=False
    ) as client:
        yield HasuraClient(client, config)
