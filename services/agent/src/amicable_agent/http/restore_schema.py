"""A checkpoint restore takes the database schema back with the files.

Schema changes applied in the database pane are recorded as ``/db/migrations/*.sql`` files
with a down record (:mod:`amicable_agent.db.schema_down`). Before the files are reset,
:func:`plan_rollback` finds the migration files the restore will remove and reads how to
undo each; :func:`run_rollback` runs all their down steps, newest migration first, in one
transaction (all or nothing). Only then are the files restored, so a rollback PostgreSQL
refuses leaves both the files and the database as they were.

The restore's answer carries ``schema_rollback``: ``{status, migrations, steps, sql,
data_lost, detail, not_reapplied}`` with ``status`` one of ``none`` (no migration removed), ``rolled_back``,
``skipped`` (the caller asked to keep the database as it is) or ``no_database`` (this agent
has no database). A migration that cannot be undone is 409
``schema_rollback_impossible``, a rollback PostgreSQL refuses 409 ``schema_rollback_failed``;
both say which file and why, and that ``{"skip_schema_rollback": true}`` restores the files
alone. Migration files a restore brings back are listed in ``not_reapplied``: they are not
run again (the database may lack their changes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import trio

from amicable_agent.db.schema_down import DownStep, NoDown, parse_down
from amicable_agent.db.schema_editor import MIGRATIONS_DIR, SchemaEditor
from amicable_agent.db.sql import app_schema_name
from amicable_agent.errors import HasuraError, RuntimeClientError

from .bodies import HttpError
from .dbschema_apply import RichError, app_state

if TYPE_CHECKING:
    from amicable_agent.loop.api import RuntimeClient
    from amicable_agent.sessions.checkpoints import Checkpoints

MAX_MIGRATION_BYTES = 4 * 1024 * 1024
_SKIP_HINT = (
    ' Restore with {"skip_schema_rollback": true} to restore the files and keep the '
    "database as it is."
)


@attrs.frozen
class SchemaRollback:
    """What a restore does to the schema.

    Attributes:
        migrations: the migration files the restore removes, newest first.
        steps: their down steps, in the order they run.
        problem: why they cannot be undone (then ``steps`` is empty).
    """

    migrations: tuple[str, ...] = ()
    steps: tuple[DownStep, ...] = ()
    problem: str | None = None


async def _down_of(runtime: RuntimeClient, path: str, schema: str) -> list[DownStep]:
    try:
        raw, _ = await runtime.read_file(path, max_bytes=MAX_MIGRATION_BYTES)
        return parse_down(raw.decode("utf-8"), schema)
    except (RuntimeClientError, UnicodeDecodeError) as exc:
        raise NoDown(f"it could not be read ({exc})") from exc


async def plan_rollback(
    runtime: RuntimeClient, checkpoints: Checkpoints, project_id: str, sha: str
) -> SchemaRollback:
    """The schema rollback of restoring checkpoint ``sha`` (nothing is changed).

    Raises:
        CheckpointError: ``not_found``, or git failed.
    """
    removed = await checkpoints.removed_by_restore(sha, MIGRATIONS_DIR.lstrip("/"))
    migrations = tuple(sorted((p for p in removed if p.endswith(".sql")), reverse=True))
    steps: list[DownStep] = []
    schema = app_schema_name(project_id)
    for path in migrations:
        try:
            steps += await _down_of(runtime, path, schema)
        except NoDown as exc:
            return SchemaRollback(migrations, (), f"The migration {path} cannot be undone: {exc}.")
    return SchemaRollback(migrations, tuple(steps))


def rollback_json(rollback: SchemaRollback, status: str, detail: str | None) -> dict[str, Any]:
    """The ``schema_rollback`` field of the restore's answer."""
    return {
        "status": status,
        "migrations": list(rollback.migrations),
        "steps": [s.operation.summary for s in rollback.steps],
        "sql": [s.operation.sql for s in rollback.steps],
        "data_lost": [s.data_lost for s in rollback.steps if s.data_lost],
        "detail": detail,
    }


async def run_rollback(project_id: str, rollback: SchemaRollback, *, skip: bool) -> dict[str, Any]:
    """Undo ``rollback``'s migrations in the database; the ``schema_rollback`` field.

    Raises:
        HttpError: 409 ``schema_rollback_impossible`` / ``schema_rollback_failed`` (nothing
            changed), 502/504 when the database fails; never when ``skip``.
    """
    if not rollback.migrations:
        return rollback_json(rollback, "none", None)
    db = app_state().db
    if db is None:
        detail = "this agent has no database: the migration files are removed, nothing else"
        return rollback_json(rollback, "no_database", detail)
    if skip:
        detail = "the database schema was kept as it is, at your request"
        return rollback_json(rollback, "skipped", detail)
    if rollback.problem is not None:
        raise RichError(409, "schema_rollback_impossible", rollback.problem + _SKIP_HINT,
                        schema_rollback=rollback_json(rollback, "impossible", rollback.problem))  # fmt: skip
    try:
        await SchemaEditor(db).apply(project_id, [s.operation for s in rollback.steps])
    except HasuraError as exc:
        detail = (
            "The database refused to undo "
            + ", ".join(rollback.migrations)
            + f" (nothing was changed): {exc.detail or exc.code}"[:600]
        )
        if exc.status == 0 or exc.code != "postgres-error":
            raise HttpError(502, "db_unreachable", detail) from exc
        raise RichError(409, "schema_rollback_failed", detail + _SKIP_HINT,
                        schema_rollback=rollback_json(rollback, "failed", detail)) from exc  # fmt: skip
    except trio.TooSlowError as exc:
        raise HttpError(504, "schema_rollback_timeout", "the database did not answer") from exc
    return rollback_json(rollback, "rolled_back", None)


def after_rollback(error: HttpError, schema: dict[str, Any]) -> HttpError:
    """``error`` of a file restore that failed after the schema was rolled back, saying so."""
    if schema["status"] != "rolled_back":
        return error
    done = "; ".join(schema["steps"])[:300]
    detail = (
        f"{error.detail or 'The files could not be restored'} — the database schema was "
        f"already rolled back ({done}): restore again, or apply those changes again."
    )
    return HttpError(error.status, error.code, detail)


def with_returned(schema: dict[str, Any], changed_paths: tuple[str, ...]) -> dict[str, Any]:
    """``schema`` plus ``not_reapplied``: migration files the restore brought back (or
    changed). Their changes are not applied again; the database may lack them."""
    back = [p for p in changed_paths
            if p.startswith(MIGRATIONS_DIR + "/") and p.endswith(".sql")
            and p not in schema["migrations"]]  # fmt: skip
    return {**schema, "not_reapplied": back}


def rollback_note(schema: dict[str, Any]) -> str:
    """What the model and the chat read about the schema after a restore ("" if nothing)."""
    back = schema.get("not_reapplied") or []
    if back:
        return _rollback_sentence(schema) + (
            f" Migration files that came back ({', '.join(back)[:300]}) were not applied again:"
            " the database may not have their changes; apply them again from the Database pane."
        )
    return _rollback_sentence(schema)


def _rollback_sentence(schema: dict[str, Any]) -> str:
    if schema["status"] == "rolled_back":
        lost = f" Data lost: {'; '.join(schema['data_lost'])}." if schema["data_lost"] else ""
        return (
            f" The database schema was rolled back with it ({len(schema['migrations'])} "
            f"migration(s) undone: {'; '.join(schema['steps'])[:400]}).{lost}"
        )
    if schema["status"] in ("skipped", "no_database"):
        return f" The database schema was NOT rolled back: {schema['detail']}."
    return ""
