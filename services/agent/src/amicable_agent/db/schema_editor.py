"""The schema editor's database side: read an app's schema, check a draft, apply it.

Applying runs every statement of the plan in one ``run_sql`` transaction (all or nothing),
untracks dropped tables first and tracks created ones after (with the app role's CRUD
permissions, as the model's ``db_create_table`` does), under the same lock as the DB tools.
The HTTP layer (``http/dbschema.py``) writes the migration file and takes the checkpoint.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .introspect import read_schema
from .schema_down import down_line
from .service import AppDatabase
from .sql import app_schema_name, quote_ident

if TYPE_CHECKING:
    from .schema_diff import Operation
    from .schema_model import SchemaDef

#: Where applied changes are written in the project.
MIGRATIONS_DIR = "/db/migrations"


@attrs.frozen
class SchemaEditor:
    """The schema editor of one :class:`~.service.AppDatabase`."""

    db: AppDatabase

    async def current(self, app_id: str) -> SchemaDef:
        """The app's schema as the database has it now.

        Raises:
            HasuraError: Hasura failed.
        """
        return await read_schema(self.db.client, app_schema_name(app_id))

    async def apply(self, app_id: str, operations: list[Operation]) -> SchemaDef:
        """Run ``operations`` (all in one transaction) and fix Hasura's tracking.

        Raises:
            HasuraError: PostgreSQL refused a statement (nothing was changed) or Hasura
                failed.

        Cancellation: a statement Hasura already received may still complete.
        """
        schema = app_schema_name(app_id)
        with trio.fail_after(3 * self.db.config.timeout_s):
            async with self.db.ddl_lock:
                for op in operations:
                    if op.kind == "drop_table":
                        await self.db.provisioner.untrack_table(app_id, op.table)
                sql = "\n".join(
                    [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)};"]
                    + [op.sql for op in operations]
                )
                await self.db.client.run_sql(sql, cascade=True)
                for op in operations:
                    if op.kind == "create_table":
                        await self.db.provisioner.track_table(app_id, op.table)
        return await self.current(app_id)


def slug(text: str) -> str:
    """A short file-name slug of an operation summary."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "change"


def migration_file(
    operations: list[Operation],
    *,
    base_version: str,
    down: list[dict[str, Any]] | None = None,
    now: datetime | None = None,
) -> tuple[str, str]:
    """``(path, SQL text)`` of the migration that records ``operations``; with ``down``
    (:func:`~.schema_down.down_steps`), the record a checkpoint restore undoes it with."""
    at = now or datetime.now(UTC)
    name = slug(operations[0].summary if len(operations) == 1 else f"{operations[0].summary} etc")
    path = f"{MIGRATIONS_DIR}/{at:%Y%m%d%H%M%S}_{name}.sql"
    lines = [
        "-- Applied through the Amicable database editor.",
        f"-- {at:%Y-%m-%d %H:%M:%S} UTC; schema version before: {base_version}",
        *(f"-- {op.summary}" + (" [destructive]" if op.destructive else "") for op in operations),
        "",
        *(op.sql for op in operations),
        "",
    ]
    if down is not None:
        lines += [
            "-- Undo: restoring a checkpoint from before this change runs these steps (the",
            "-- record below; SQL is rebuilt from it, this file's SQL is never run).",
            down_line(down),
            "",
        ]
    return path, "\n".join(lines)
