"""The fake Hasura's HTTP server and the :class:`FakeHasura` tests hold."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import attrs
import trio
from amicable_agent.db.config import DEFAULT_CLAIMS_NAMESPACE
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, request
from quart_trio import QuartTrio

from ._errors import GraphqlError, HasuraError
from ._graphql import GraphqlEngine
from ._metadata import Metadata
from ._postgres import PostgresSource
from ._real_postgres import RealPostgresSource

if TYPE_CHECKING:
    from ._postgres import Source


@attrs.frozen
class RecordedRequest:
    """One request the fake received."""

    path: str
    headers: dict[str, str]
    body: Any


class FakeHasura:
    """The fake server and its state.

    Attributes:
        requests: every request received, in order.
        tracked: ``(schema, table)`` pairs tracked through the metadata API.
        permissions: ``(schema, table, role) -> {operations}``.
        schemas: the Postgres schemas that exist.
        graphql_delay_s: a pause before answering ``/v1/graphql`` (timeout tests).
    """

    def __init__(
        self,
        *,
        admin_secret: str,
        jwt_key: bytes,
        claims_namespace: str = DEFAULT_CLAIMS_NAMESPACE,
        source_name: str = "default",
        postgres_url: str | None = None,
    ) -> None:
        self._admin_secret = admin_secret
        self._source = source_name
        self.requests: list[RecordedRequest] = []
        self.graphql_delay_s = 0.0
        # A real PostgreSQL when given (``postgres_url``), else the SQLite stand-in.
        self._pg: Source = (
            PostgresSource() if postgres_url is None else RealPostgresSource(postgres_url)
        )
        self._metadata = Metadata(self._pg, source_name=source_name)
        self._graphql = GraphqlEngine(
            self._pg, self._metadata, jwt_key=jwt_key, claims_namespace=claims_namespace
        )

    # The state lives in the part that owns it; these keep it where tests look for it.

    @property
    def tracked(self) -> set[tuple[str, str]]:
        """``(schema, table)`` pairs tracked through the metadata API."""
        return self._metadata.tracked

    @tracked.setter
    def tracked(self, value: set[tuple[str, str]]) -> None:
        self._metadata.tracked = value

    @property
    def permissions(self) -> dict[tuple[str, str, str], set[str]]:
        """``(schema, table, role) -> {operations}``."""
        return self._metadata.permissions

    @permissions.setter
    def permissions(self, value: dict[tuple[str, str, str], set[str]]) -> None:
        self._metadata.permissions = value

    @property
    def schemas(self) -> set[str]:
        """The Postgres schemas that exist."""
        return self._pg.schemas

    @schemas.setter
    def schemas(self, value: set[str]) -> None:
        if not isinstance(self._pg, PostgresSource):
            raise TypeError("the schemas of a real PostgreSQL are changed with SQL")
        self._pg.schemas = value

    def table_names(self, schema: str) -> list[str]:
        """Tables that exist in ``schema``."""
        return self._pg.table_names(schema)

    def run_sql(self, sql: str, read_only: bool = False) -> dict[str, Any]:
        """Run ``sql`` like Hasura's ``run_sql`` (one transaction; last result returned)."""
        return self._pg.run_sql(sql, read_only)

    def metadata(self, body: Any) -> Any:
        """Apply one metadata call."""
        return self._metadata.apply(body)

    def graphql(self, headers: dict[str, str], body: Any) -> dict[str, Any]:
        """Answer one GraphQL request body."""
        return self._graphql.execute(headers, body)

    # --- HTTP ----------------------------------------------------------------------

    def _app(self) -> QuartTrio:
        app = QuartTrio("fake_hasura")

        def reply(status: int, doc: Any) -> Response:
            return Response(json.dumps(doc), status=status, content_type="application/json")

        async def body_and_record(path: str) -> tuple[dict[str, str], Any]:
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                body = json.loads(await request.get_data())
            except ValueError:
                body = None
            self.requests.append(RecordedRequest(path, headers, body))
            return headers, body

        def admin(headers: dict[str, str]) -> None:
            if headers.get("x-hasura-admin-secret") != self._admin_secret:
                raise HasuraError(
                    401, "access-denied", "invalid x-hasura-admin-secret/x-hasura-access-key"
                )

        @app.post("/v2/query")
        async def v2_query() -> Response:
            headers, body = await body_and_record("/v2/query")
            try:
                admin(headers)
                if not isinstance(body, dict) or body.get("type") != "run_sql":
                    raise HasuraError(400, "parse-failed", "only run_sql is supported")
                args = body.get("args") or {}
                if args.get("source", "default") != self._source:
                    raise HasuraError(400, "not-exists", "source does not exist")
                sql, read_only = str(args.get("sql", "")), bool(args.get("read_only"))
                if isinstance(self._pg, RealPostgresSource):  # blocking I/O: off the loop
                    done = await trio.to_thread.run_sync(self.run_sql, sql, read_only)
                    return reply(200, done)
                return reply(200, self.run_sql(sql, read_only))
            except HasuraError as exc:
                return reply(exc.status, exc.body)

        @app.post("/v1/metadata")
        async def v1_metadata() -> Response:
            headers, body = await body_and_record("/v1/metadata")
            try:
                admin(headers)
                return reply(200, self.metadata(body))
            except HasuraError as exc:
                return reply(exc.status, exc.body)

        @app.post("/v1/graphql")
        async def v1_graphql() -> Response:
            headers, body = await body_and_record("/v1/graphql")
            if self.graphql_delay_s:
                await trio.sleep(self.graphql_delay_s)
            try:
                return reply(200, self.graphql(headers, body))
            except GraphqlError as exc:
                err = {"message": str(exc), "extensions": {"code": exc.code, "path": exc.path}}
                return reply(200, {"errors": [err]})

        return app

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; ``task_status.started(base_url)``."""
        cfg = HypercornConfig()
        cfg.bind = [f"{host}:{port}"]
        cfg.accesslog = None
        cfg.graceful_timeout = 1.0
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(hypercorn_serve, self._app(), cfg)
            bound = int(binds[0].rsplit(":", 1)[1])
            task_status.started(f"http://{host}:{bound}")
