"""The DB tools' SQL on a real PostgreSQL (the fake Hasura runs it on SQLite): every type and
default kind is accepted, string defaults come back byte for byte whatever quoting tricks
they contain, and truncate/drop touch only the one table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from amicable_agent.db.tools import (
    COLUMN_TYPES,
    create_table_sql,
    drop_table_sql,
    parse_create_args,
    truncate_table_sql,
)
from amicable_testing.postgres import PostgresServer, postgres_available

pytestmark = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL not installed")

EVIL = "x'); DROP SCHEMA amicable_meta CASCADE; -- \\' \\\\ $$ \" é"
UUID = "0b6f4a8e-3c1d-4e55-9a0b-6a7d2f1c9e01"


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    with PostgresServer() as server:
        yield server.create_database()


@pytest.fixture
def conn(pg: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS app_t CASCADE")
        conn.execute("CREATE SCHEMA app_t")
        conn.execute("CREATE SCHEMA IF NOT EXISTS amicable_meta")
        conn.execute("CREATE TABLE IF NOT EXISTS amicable_meta.canary (x int)")
        conn.execute("CREATE TABLE app_t.other (x int)")
        conn.execute("INSERT INTO app_t.other VALUES (1)")
        yield conn


COLUMNS = [
    {"name": "title", "type": "text", "default": EVIL},
    {"name": "done", "type": "boolean", "nullable": False, "default": False},
    {"name": "n", "type": "int", "default": -3},
    {"name": "big", "type": "bigint", "default": 9007199254740993},
    {"name": "r", "type": "real", "default": 0.5},
    {"name": "d", "type": "double precision", "default": -1e-05},
    {"name": "price", "type": "numeric", "default": 12.25},
    {"name": "meta", "type": "jsonb", "default": '{"a": [1, "two"]}'},
    {"name": "at", "type": "timestamptz", "default": {"raw": "now()"}},
    {"name": "day", "type": "date", "default": {"raw": "now()"}},
    {"name": "ref", "type": "uuid", "default": UUID},
]


@pytest.mark.parametrize("conforming", ["on", "off"])
def test_every_type_and_default_on_real_postgres(
    conn: psycopg.Connection[Any], conforming: str
) -> None:
    assert {c["type"] for c in COLUMNS} | {"integer"} == set(COLUMN_TYPES)
    conn.execute(f"SET standard_conforming_strings = {conforming}")
    table, columns = parse_create_args({"table": "things", "columns": COLUMNS})
    sql = create_table_sql("app_t", table, columns)
    conn.execute(sql)  # type: ignore[arg-type]
    conn.execute(sql)  # type: ignore[arg-type]  # IF NOT EXISTS: a second run is a no-op
    conn.execute("INSERT INTO app_t.things DEFAULT VALUES")
    row = conn.execute(
        "SELECT id, title, done, n, big, r, d, price, meta, at IS NOT NULL, day, ref::text "
        "FROM app_t.things"
    ).fetchone()
    assert row is not None
    assert row[:8] == (1, EVIL, False, -3, 9007199254740993, 0.5, -1e-05, 12.25)
    assert row[8] == {"a": [1, "two"]}
    assert row[9] is True
    assert row[11] == UUID
    assert conn.execute("SELECT count(*) FROM amicable_meta.canary").fetchone() == (0,)

    conn.execute(truncate_table_sql("app_t", "things"))  # type: ignore[arg-type]
    assert conn.execute("SELECT count(*) FROM app_t.things").fetchone() == (0,)
    conn.execute(drop_table_sql("app_t", "things"))  # type: ignore[arg-type]
    conn.execute(drop_table_sql("app_t", "things"))  # type: ignore[arg-type]  # IF EXISTS
    tables = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'app_t'"
    ).fetchall()
    assert tables == [("other",)]
    assert conn.execute("SELECT x FROM app_t.other").fetchall() == [(1,)]
