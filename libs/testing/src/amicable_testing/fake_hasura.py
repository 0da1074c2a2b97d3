"""A fake Hasura for tests: a real HTTP server speaking Hasura's wire format.

- ``POST /v2/query`` ``run_sql`` (admin secret required), backed by an in-memory SQLite:
  Postgres schemas become table-name prefixes (``"s"."t"`` -> ``"s__t"``),
  ``information_schema.tables`` is a view over them, ``E'...'`` literals, ``now()``,
  ``serial``, ``CREATE/DROP SCHEMA``, ``TRUNCATE`` and ``DROP TABLE … CASCADE`` are
  translated. Enough for the agent's
  provisioning SQL and for tests that create tables.
- ``POST /v1/metadata``: ``pg_track_table``, ``pg_untrack_table``,
  ``pg_create_{select,insert,update,delete}_permission``, ``bulk``; Hasura's error codes.
- ``POST /v1/graphql``: verifies the HS256 JWT (signature, expiry, claims namespace,
  allowed roles) like Hasura in JWT mode and answers root fields of tracked tables the
  role may use: ``<schema>_<table>`` (``where`` with ``_eq``, ``limit``, ``order_by``),
  ``insert_<...>(objects:)`` / ``insert_<...>_one(object:)`` and ``delete_<...>(where:)``.
  Errors come back as ``{"errors": [...]}`` with status 200, as Hasura does.

Use::

    fake = FakeHasura(admin_secret="s3cret", jwt_key=b"k" * 32)
    base_url = await nursery.start(fake.serve)
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

import attrs
import trio
from amicable_agent.db.config import DEFAULT_CLAIMS_NAMESPACE
from amicable_agent.db.jwt import InvalidJwt, decode_hs256
from graphql import GraphQLError
from graphql.language import FieldNode, OperationDefinitionNode, parse
from graphql.utilities import value_from_ast_untyped
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, request
from quart_trio import QuartTrio

__all__ = ["FakeHasura", "GraphqlError", "RecordedRequest"]

_LITERAL = re.compile(r"([Ee])?'((?:[^'\\]|''|\\.)*)'", re.DOTALL)
_QUALIFIED = re.compile(r'"?([A-Za-z_][A-Za-z0-9_]*)"?\s*\.\s*"?([A-Za-z_][A-Za-z0-9_]*)"?')
_CREATE_SCHEMA = re.compile(r'^\s*CREATE\s+SCHEMA\s+(?:IF\s+NOT\s+EXISTS\s+)?"?(\w+)"?\s*$', re.I)
_DROP_SCHEMA = re.compile(
    r'^\s*DROP\s+SCHEMA\s+(?:IF\s+EXISTS\s+)?"?(\w+)"?(?:\s+CASCADE)?\s*$', re.I
)
_TRUNCATE = re.compile(
    r"^\s*TRUNCATE\s+(?:TABLE\s+)?(.+?)(?:\s+(?:RESTART|CONTINUE)\s+IDENTITY)?"
    r"(?:\s+(?:CASCADE|RESTRICT))?\s*$",
    re.I | re.S,
)
_DROP_TABLE_CASCADE = re.compile(
    r"^(\s*DROP\s+TABLE\s+.+?)\s+(?:CASCADE|RESTRICT)\s*$", re.I | re.S
)
_OPS = ("select", "insert", "update", "delete")


class GraphqlError(Exception):
    """An error answered as ``{"errors": [{"message", "extensions": {"code", "path"}}]}``."""

    def __init__(self, code: str, message: str, path: str = "$") -> None:
        super().__init__(message)
        self.code = code
        self.path = path


class _HasuraError(Exception):
    def __init__(self, status: int, code: str, error: str, path: str = "$") -> None:
        super().__init__(error)
        self.status = status
        self.body = {"code": code, "error": error, "path": path}


@attrs.frozen
class RecordedRequest:
    """One request the fake received."""

    path: str
    headers: dict[str, str]
    body: Any


def _split_literals(sql: str) -> list[tuple[bool, str]]:
    """``(is_literal, text)`` pieces; literals already converted to SQLite syntax."""
    out: list[tuple[bool, str]] = []
    pos = 0
    for m in _LITERAL.finditer(sql):
        out.append((False, sql[pos : m.start()]))
        raw = m.group(2)
        if m.group(1):
            value = re.sub(r"\\(.)", r"\1", raw.replace("''", "'"), flags=re.DOTALL)
        else:
            value = raw.replace("''", "'")
        out.append((True, "'" + value.replace("'", "''") + "'"))
        pos = m.end()
    out.append((False, sql[pos:]))
    return out


def _statements(sql: str) -> list[list[tuple[bool, str]]]:
    stmts: list[list[tuple[bool, str]]] = [[]]
    for is_lit, text in _split_literals(sql):
        if is_lit:
            stmts[-1].append((True, text))
            continue
        parts = text.split(";")
        stmts[-1].append((False, parts[0]))
        for part in parts[1:]:
            stmts.append([(False, part)])
    return [s for s in stmts if "".join(t for _, t in s).strip()]


class FakeHasura:
    """The fake server and its state.

    Attributes:
        requests: every request received, in order.
        tracked: ``(schema, table)`` pairs tracked through the metadata API.
        permissions: ``(schema, table, role) -> {operations}``.
        graphql_delay_s: a pause before answering ``/v1/graphql`` (timeout tests).
    """

    def __init__(
        self,
        *,
        admin_secret: str,
        jwt_key: bytes,
        claims_namespace: str = DEFAULT_CLAIMS_NAMESPACE,
        source_name: str = "default",
    ) -> None:
        self._admin_secret = admin_secret
        self._jwt_key = jwt_key
        self._namespace = claims_namespace
        self._source = source_name
        self.requests: list[RecordedRequest] = []
        self.tracked: set[tuple[str, str]] = set()
        self.permissions: dict[tuple[str, str, str], set[str]] = {}
        self.schemas: set[str] = {"public", "information_schema"}
        self.graphql_delay_s = 0.0
        self._db = sqlite3.connect(":memory:", isolation_level=None)
        self._db.execute(
            "CREATE VIEW information_schema__tables AS SELECT "
            "substr(name, 1, instr(name, '__') - 1) AS table_schema, "
            "substr(name, instr(name, '__') + 2) AS table_name, "
            "'BASE TABLE' AS table_type FROM sqlite_master "
            "WHERE type = 'table' AND instr(name, '__') > 1"
        )

    # --- SQL -----------------------------------------------------------------------

    def table_names(self, schema: str) -> list[str]:
        """Tables that exist in ``schema``."""
        rows = self._db.execute(
            "SELECT table_name FROM information_schema__tables WHERE table_schema = ?", (schema,)
        ).fetchall()
        return sorted(r[0] for r in rows)

    def _translate(self, stmt: list[tuple[bool, str]]) -> str | None:
        code = "".join(t for lit, t in stmt if not lit)
        if m := _CREATE_SCHEMA.match(code):
            self.schemas.add(m.group(1))
            return None
        if m := _DROP_SCHEMA.match(code):
            schema = m.group(1)
            for table in self.table_names(schema):
                self._db.execute(f'DROP TABLE "{schema}__{table}"')
            self.schemas.discard(schema)
            return None

        def qualify(m: re.Match[str]) -> str:
            if m.group(1) in self.schemas:
                return f'"{m.group(1)}__{m.group(2)}"'
            return m.group(0)

        out = []
        for is_lit, text in stmt:
            if not is_lit:
                text = _QUALIFIED.sub(qualify, text)
                text = re.sub(r"\bnow\(\)", "CURRENT_TIMESTAMP", text, flags=re.I)
                text = re.sub(r"\b(big)?serial\b", "INTEGER", text, flags=re.I)
            out.append(text)
        sql = "".join(out)
        # Postgres-only statement forms SQLite lacks: TRUNCATE (one table) and DROP TABLE's
        # CASCADE/RESTRICT (the fake has no dependent objects to cascade to).
        if m := _TRUNCATE.match(sql):
            return f"DELETE FROM {m.group(1)}"
        if m := _DROP_TABLE_CASCADE.match(sql):
            return m.group(1)
        return sql

    def run_sql(self, sql: str, read_only: bool = False) -> dict[str, Any]:
        """Run ``sql`` like Hasura's ``run_sql`` (one transaction; last result returned)."""
        cur = self._db.cursor()
        schemas = set(self.schemas)
        cur.execute("BEGIN")
        try:
            result: dict[str, Any] = {"result_type": "CommandOk", "result": None}
            for stmt in _statements(sql):
                translated = self._translate(stmt)
                if translated is None:
                    continue
                if read_only and not translated.lstrip().upper().startswith("SELECT"):
                    raise sqlite3.OperationalError("cannot execute in a read-only transaction")
                cur.execute(translated)
                if cur.description is not None:
                    header = [d[0] for d in cur.description]
                    rows = [["NULL" if v is None else str(v) for v in row] for row in cur]
                    result = {"result_type": "TuplesOk", "result": [header, *rows]}
                else:
                    result = {"result_type": "CommandOk", "result": None}
            cur.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            cur.execute("ROLLBACK")
            self.schemas = schemas
            raise _HasuraError(400, "postgres-error", f"query execution failed: {exc}") from exc

    # --- metadata ------------------------------------------------------------------

    def _table_ref(self, args: dict[str, Any]) -> tuple[str, str]:
        if args.get("source", "default") != self._source:
            raise _HasuraError(400, "not-exists", f"source {args.get('source')!r} does not exist")
        table = args.get("table")
        if isinstance(table, str):
            return ("public", table)
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            raise _HasuraError(400, "parse-failed", "table must be {schema, name}", "$.args")
        return (str(table.get("schema", "public")), table["name"])

    def metadata(self, body: Any) -> Any:
        """Apply one metadata call."""
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise _HasuraError(400, "parse-failed", "expected {type, args}")
        kind, args = body["type"], body.get("args") or {}
        if kind == "bulk":
            return [self.metadata(item) for item in args]
        if kind == "pg_track_table":
            ref = self._table_ref(args)
            if ref[1] not in self.table_names(ref[0]):
                raise _HasuraError(400, "not-exists", f"no such table/view exists in source: {ref}")
            if ref in self.tracked:
                raise _HasuraError(400, "already-tracked", f"view/table already tracked: {ref}")
            self.tracked.add(ref)
            return {"message": "success"}
        if kind == "pg_untrack_table":
            ref = self._table_ref(args)
            if ref not in self.tracked:
                raise _HasuraError(400, "already-untracked", f"view/table already untracked: {ref}")
            self.tracked.discard(ref)
            for key in [k for k in self.permissions if k[:2] == ref]:
                del self.permissions[key]
            return {"message": "success"}
        m = re.fullmatch(r"pg_create_(select|insert|update|delete)_permission", kind)
        if m:
            ref = self._table_ref(args)
            if ref not in self.tracked:
                raise _HasuraError(400, "not-exists", f"table {ref} is not tracked")
            role = args.get("role")
            if not isinstance(role, str) or not isinstance(args.get("permission"), dict):
                raise _HasuraError(400, "parse-failed", "role and permission required")
            ops = self.permissions.setdefault((*ref, role), set())
            if m.group(1) in ops:
                raise _HasuraError(400, "already-exists", f"{m.group(1)} permission exists")
            ops.add(m.group(1))
            return {"message": "success"}
        raise _HasuraError(400, "parse-failed", f"unknown metadata type {kind!r}")

    # --- GraphQL -------------------------------------------------------------------

    def _role(self, headers: dict[str, str]) -> str:
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            raise GraphqlError(
                "access-denied",
                "Missing 'Authorization' or 'Cookie' header in JWT authentication mode",
            )
        try:
            payload = decode_hs256(auth[7:].strip(), self._jwt_key)
        except InvalidJwt as exc:
            raise GraphqlError("invalid-jwt", f"Could not verify JWT: {exc}") from exc
        claims = payload.get(self._namespace)
        if isinstance(claims, str):
            claims = json.loads(claims)
        if not isinstance(claims, dict):
            raise GraphqlError("jwt-missing-role-claims", "JWT claims namespace missing")
        default = claims.get("x-hasura-default-role")
        allowed = claims.get("x-hasura-allowed-roles")
        if not isinstance(allowed, list) or default not in allowed:
            raise GraphqlError("jwt-invalid-claims", "default role not in allowed roles")
        role = headers.get("x-hasura-role", default)
        if role not in allowed:
            raise GraphqlError("access-denied", "Your requested role is not in allowed roles")
        return str(role)

    def _table_for(self, root: str, role: str, op: str) -> tuple[str, str] | None:
        for schema, table in self.tracked:
            name = table if schema == "public" else f"{schema}_{table}"
            if name == root and op in self.permissions.get((schema, table, role), set()):
                return (schema, table)
        return None

    def _columns(self, ref: tuple[str, str]) -> list[str]:
        return [r[1] for r in self._db.execute(f'PRAGMA table_info("{ref[0]}__{ref[1]}")')]

    def _where(self, ref: tuple[str, str], where: Any) -> tuple[str, list[Any]]:
        if not where:
            return "", []
        cols = self._columns(ref)
        clauses, params = [], []
        for col, cond in where.items():
            if col not in cols or not isinstance(cond, dict) or set(cond) != {"_eq"}:
                raise GraphqlError("validation-failed", f"unsupported where on {col!r}")
            clauses.append(f'"{col}" = ?')
            params.append(cond["_eq"])
        return " WHERE " + " AND ".join(clauses), params

    def _project(self, ref: tuple[str, str], field: FieldNode, rows: list[dict[str, Any]]) -> Any:
        cols = self._columns(ref)
        out = []
        for row in rows:
            item: dict[str, Any] = {}
            for sel in field.selection_set.selections if field.selection_set else ():
                if not isinstance(sel, FieldNode):
                    raise GraphqlError("validation-failed", "fragments are not supported")
                key = (sel.alias or sel.name).value
                if sel.name.value == "__typename":
                    item[key] = f"{ref[0]}_{ref[1]}"
                elif sel.name.value in cols:
                    item[key] = row[sel.name.value]
                else:
                    raise GraphqlError(
                        "validation-failed",
                        f"field '{sel.name.value}' not found in type: '{ref[0]}_{ref[1]}'",
                    )
            out.append(item)
        return out

    def _select(self, ref: tuple[str, str], sql: str, params: list[Any]) -> list[dict[str, Any]]:
        cur = self._db.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def _field(self, kind: str, field: FieldNode, role: str, variables: dict[str, Any]) -> Any:
        name = field.name.value
        args = {
            a.name.value: value_from_ast_untyped(a.value, variables) for a in field.arguments or ()
        }
        if name == "__typename":
            return f"{kind}_root"
        if kind == "query":
            ref = self._table_for(name, role, "select")
            if ref is not None:
                where, params = self._where(ref, args.get("where"))
                sql = f'SELECT * FROM "{ref[0]}__{ref[1]}"{where}'
                order = args.get("order_by") or {}
                cols = self._columns(ref)
                terms = []
                for col, direction in order.items():
                    if col not in cols or direction not in ("asc", "desc"):
                        raise GraphqlError("validation-failed", f"bad order_by {col!r}")
                    terms.append(f'"{col}" {direction.upper()}')
                if terms:
                    sql += " ORDER BY " + ", ".join(terms)
                if isinstance(args.get("limit"), int):
                    sql += f" LIMIT {int(args['limit'])}"
                return self._project(ref, field, self._select(ref, sql, params))
        elif kind == "mutation":
            m = re.fullmatch(r"(insert|delete)_(.+?)(_one)?", name)
            ref = self._table_for(m.group(2), role, m.group(1)) if m else None
            if m and ref is not None:
                return self._mutate(m.group(1), bool(m.group(3)), ref, field, args)
        raise GraphqlError(
            "validation-failed",
            f"field '{name}' not found in type: '{kind}_root'",
            f"$.selectionSet.{name}",
        )

    def _mutate(
        self, verb: str, one: bool, ref: tuple[str, str], field: FieldNode, args: dict[str, Any]
    ) -> Any:
        table = f'"{ref[0]}__{ref[1]}"'
        cols = self._columns(ref)
        if verb == "delete":
            where, params = self._where(ref, args.get("where"))
            count = self._db.execute(f"DELETE FROM {table}{where}", params).rowcount
            return {"affected_rows": count}
        objects = [args.get("object")] if one else args.get("objects")
        if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
            raise GraphqlError("validation-failed", "objects must be a list of objects")
        rows = []
        for obj in objects:
            if not set(obj) <= set(cols):
                raise GraphqlError(
                    "validation-failed", f"unknown columns {sorted(set(obj) - set(cols))}"
                )
            names = ", ".join(f'"{c}"' for c in obj)
            marks = ", ".join("?" for _ in obj)
            cur = self._db.execute(
                f"INSERT INTO {table} ({names}) VALUES ({marks})", list(obj.values())
            )
            rows += self._select(ref, f"SELECT * FROM {table} WHERE rowid = ?", [cur.lastrowid])
        if one:
            return self._project(ref, field, rows)[0]
        result: dict[str, Any] = {}
        for sel in field.selection_set.selections if field.selection_set else ():
            if isinstance(sel, FieldNode) and sel.name.value == "affected_rows":
                result[(sel.alias or sel.name).value] = len(rows)
            elif isinstance(sel, FieldNode) and sel.name.value == "returning":
                result[(sel.alias or sel.name).value] = self._project(ref, sel, rows)
        return result

    def graphql(self, headers: dict[str, str], body: Any) -> dict[str, Any]:
        """Answer one GraphQL request body."""
        role = self._role(headers)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            raise GraphqlError("bad-request", "expected {query, variables?}")
        try:
            doc = parse(body["query"])
        except GraphQLError as exc:
            raise GraphqlError(
                "validation-failed", f"not a valid graphql query: {exc.message}"
            ) from exc
        ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
        wanted = body.get("operationName")
        op = next((o for o in ops if o.name and o.name.value == wanted), ops[0] if ops else None)
        if op is None:
            raise GraphqlError("validation-failed", "no operation")
        variables = body.get("variables") or {}
        data: dict[str, Any] = {}
        for sel in op.selection_set.selections:
            if not isinstance(sel, FieldNode):
                raise GraphqlError("validation-failed", "root fragments are not supported")
            data[(sel.alias or sel.name).value] = self._field(
                op.operation.value, sel, role, variables
            )
        return {"data": data}

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
                raise _HasuraError(
                    401, "access-denied", "invalid x-hasura-admin-secret/x-hasura-access-key"
                )

        @app.post("/v2/query")
        async def v2_query() -> Response:
            headers, body = await body_and_record("/v2/query")
            try:
                admin(headers)
                if not isinstance(body, dict) or body.get("type") != "run_sql":
                    raise _HasuraError(400, "parse-failed", "only run_sql is supported")
                args = body.get("args") or {}
                if args.get("source", "default") != self._source:
                    raise _HasuraError(400, "not-exists", "source does not exist")
                return reply(
                    200, self.run_sql(str(args.get("sql", "")), bool(args.get("read_only")))
                )
            except _HasuraError as exc:
                return reply(exc.status, exc.body)

        @app.post("/v1/metadata")
        async def v1_metadata() -> Response:
            headers, body = await body_and_record("/v1/metadata")
            try:
                admin(headers)
                return reply(200, self.metadata(body))
            except _HasuraError as exc:
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
