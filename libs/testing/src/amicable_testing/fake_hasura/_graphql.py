"""The fake Hasura's GraphQL endpoint: JWT roles and the root fields of tracked tables.

Verifies the HS256 JWT (signature, expiry, claims namespace, allowed roles) like Hasura in
JWT mode and answers root fields of tracked tables the role may use: ``<schema>_<table>``
(``where`` with ``_eq``, ``limit``, ``order_by``), ``insert_<...>(objects:)`` /
``insert_<...>_one(object:)`` and ``delete_<...>(where:)``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from amicable_agent.db.jwt import InvalidJwt, decode_hs256
from graphql import GraphQLError
from graphql.language import FieldNode, OperationDefinitionNode, parse
from graphql.utilities import value_from_ast_untyped

from ._errors import GraphqlError

if TYPE_CHECKING:
    from ._metadata import Metadata
    from ._postgres import Source


class GraphqlEngine:
    """Answers GraphQL request bodies against ``source`` as ``metadata`` allows.

    Args:
        source: the database holding the tables.
        metadata: what is tracked and which role may do what.
        jwt_key: the HS256 key tokens must be signed with.
        claims_namespace: the JWT claim holding the ``x-hasura-*`` claims.
    """

    def __init__(
        self,
        source: Source,
        metadata: Metadata,
        *,
        jwt_key: bytes,
        claims_namespace: str,
    ) -> None:
        self._pg = source
        self._metadata = metadata
        self._jwt_key = jwt_key
        self._namespace = claims_namespace

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

    def _where(self, ref: tuple[str, str], where: Any) -> tuple[str, list[Any]]:
        if not where:
            return "", []
        cols = self._pg.columns(ref)
        clauses, params = [], []
        for col, cond in where.items():
            if col not in cols or not isinstance(cond, dict) or set(cond) != {"_eq"}:
                raise GraphqlError("validation-failed", f"unsupported where on {col!r}")
            clauses.append(f'"{col}" = ?')
            params.append(cond["_eq"])
        return " WHERE " + " AND ".join(clauses), params

    def _project(self, ref: tuple[str, str], field: FieldNode, rows: list[dict[str, Any]]) -> Any:
        cols = self._pg.columns(ref)
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

    def _field(self, kind: str, field: FieldNode, role: str, variables: dict[str, Any]) -> Any:
        name = field.name.value
        args = {
            a.name.value: value_from_ast_untyped(a.value, variables) for a in field.arguments or ()
        }
        if name == "__typename":
            return f"{kind}_root"
        if kind == "query":
            ref = self._metadata.table_for(name, role, "select")
            if ref is not None:
                return self._query(ref, field, args)
        elif kind == "mutation":
            m = re.fullmatch(r"(insert|delete)_(.+?)(_one)?", name)
            ref = self._metadata.table_for(m.group(2), role, m.group(1)) if m else None
            if m and ref is not None:
                return self._mutate(m.group(1), bool(m.group(3)), ref, field, args)
        raise GraphqlError(
            "validation-failed",
            f"field '{name}' not found in type: '{kind}_root'",
            f"$.selectionSet.{name}",
        )

    def _query(self, ref: tuple[str, str], field: FieldNode, args: dict[str, Any]) -> Any:
        where, params = self._where(ref, args.get("where"))
        sql = f'SELECT * FROM "{ref[0]}__{ref[1]}"{where}'
        order = args.get("order_by") or {}
        cols = self._pg.columns(ref)
        terms = []
        for col, direction in order.items():
            if col not in cols or direction not in ("asc", "desc"):
                raise GraphqlError("validation-failed", f"bad order_by {col!r}")
            terms.append(f'"{col}" {direction.upper()}')
        if terms:
            sql += " ORDER BY " + ", ".join(terms)
        if isinstance(args.get("limit"), int):
            sql += f" LIMIT {int(args['limit'])}"
        return self._project(ref, field, self._pg.rows(sql, params))

    def _mutate(
        self, verb: str, one: bool, ref: tuple[str, str], field: FieldNode, args: dict[str, Any]
    ) -> Any:
        table = f'"{ref[0]}__{ref[1]}"'
        cols = self._pg.columns(ref)
        if verb == "delete":
            where, params = self._where(ref, args.get("where"))
            count = self._pg.execute(f"DELETE FROM {table}{where}", params).rowcount
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
            cur = self._pg.execute(
                f"INSERT INTO {table} ({names}) VALUES ({marks})", list(obj.values())
            )
            rows += self._pg.rows(f"SELECT * FROM {table} WHERE rowid = ?", [cur.lastrowid])
        if one:
            return self._project(ref, field, rows)[0]
        result: dict[str, Any] = {}
        for sel in field.selection_set.selections if field.selection_set else ():
            if isinstance(sel, FieldNode) and sel.name.value == "affected_rows":
                result[(sel.alias or sel.name).value] = len(rows)
            elif isinstance(sel, FieldNode) and sel.name.value == "returning":
                result[(sel.alias or sel.name).value] = self._project(ref, sel, rows)
        return result

    def execute(self, headers: dict[str, str], body: Any) -> dict[str, Any]:
        """Answer one GraphQL request body (``headers`` with lower-case names).

        Raises:
            GraphqlError: answered as ``{"errors": [...]}`` with status 200.
        """
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
