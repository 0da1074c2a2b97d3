"""The fake Hasura's metadata API: which tables are tracked, and which role may do what."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ._errors import HasuraError

if TYPE_CHECKING:
    from ._postgres import Source


class Metadata:
    """``pg_track_table``, ``pg_untrack_table``, ``pg_create_<op>_permission`` and ``bulk``.

    Args:
        source: the database whose tables can be tracked.
        source_name: the one source name calls may name (others: ``not-exists``).

    Attributes:
        tracked: ``(schema, table)`` pairs tracked.
        permissions: ``(schema, table, role) -> {operations}``.
    """

    def __init__(self, source: Source, *, source_name: str) -> None:
        self.tracked: set[tuple[str, str]] = set()
        self.permissions: dict[tuple[str, str, str], set[str]] = {}
        self._pg = source
        self._source = source_name

    def _table_ref(self, args: dict[str, Any]) -> tuple[str, str]:
        if args.get("source", "default") != self._source:
            raise HasuraError(400, "not-exists", f"source {args.get('source')!r} does not exist")
        table = args.get("table")
        if isinstance(table, str):
            return ("public", table)
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            raise HasuraError(400, "parse-failed", "table must be {schema, name}", "$.args")
        return (str(table.get("schema", "public")), table["name"])

    def apply(self, body: Any) -> Any:
        """Apply one metadata call.

        Raises:
            HasuraError: 400 with Hasura's code (``parse-failed``, ``not-exists``, …).
        """
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise HasuraError(400, "parse-failed", "expected {type, args}")
        kind, args = body["type"], body.get("args") or {}
        if kind == "bulk":
            return [self.apply(item) for item in args]
        if kind == "pg_track_table":
            ref = self._table_ref(args)
            if ref[1] not in self._pg.table_names(ref[0]):
                raise HasuraError(400, "not-exists", f"no such table/view exists in source: {ref}")
            if ref in self.tracked:
                raise HasuraError(400, "already-tracked", f"view/table already tracked: {ref}")
            self.tracked.add(ref)
            return {"message": "success"}
        if kind == "pg_untrack_table":
            ref = self._table_ref(args)
            if ref not in self.tracked:
                raise HasuraError(400, "already-untracked", f"view/table already untracked: {ref}")
            self.tracked.discard(ref)
            for key in [k for k in self.permissions if k[:2] == ref]:
                del self.permissions[key]
            return {"message": "success"}
        m = re.fullmatch(r"pg_create_(select|insert|update|delete)_permission", kind)
        if m:
            ref = self._table_ref(args)
            if ref not in self.tracked:
                raise HasuraError(400, "not-exists", f"table {ref} is not tracked")
            role = args.get("role")
            if not isinstance(role, str) or not isinstance(args.get("permission"), dict):
                raise HasuraError(400, "parse-failed", "role and permission required")
            ops = self.permissions.setdefault((*ref, role), set())
            if m.group(1) in ops:
                raise HasuraError(400, "already-exists", f"{m.group(1)} permission exists")
            ops.add(m.group(1))
            return {"message": "success"}
        raise HasuraError(400, "parse-failed", f"unknown metadata type {kind!r}")

    def table_for(self, root: str, role: str, op: str) -> tuple[str, str] | None:
        """The tracked table a GraphQL root field names, if ``role`` may ``op`` it."""
        for schema, table in self.tracked:
            name = table if schema == "public" else f"{schema}_{table}"
            if name == root and op in self.permissions.get((schema, table, role), set()):
                return (schema, table)
        return None
