"""Row editing in the database pane's HTTP API, against the fake Hasura backed by a real
PostgreSQL: an editor inserts, updates and deletes rows and PostgreSQL holds the result;
hostile identifiers and values, unknown tables/columns, wrong types, huge bodies, a missing
row and a table without a primary key get specific errors and change nothing; a viewer is
refused (403) and told the rows are read-only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from amicable_testing.logins import BOB
from amicable_testing.postgres import postgres_available

from .pg_stack import Project, Stack

pytestmark = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL not installed")

ROWS = "tables/customers/rows"


def _customers(stack: Stack, project: Project) -> list[tuple[Any, ...]]:
    return stack.sql(
        f"SELECT id, name, vip, note, score FROM {project.schema}.customers ORDER BY id"
    )


async def test_an_editor_inserts_updates_and_deletes_rows_in_postgres(
    stack: Stack, project: Project
) -> None:
    page = (await project.client.get(project.url(ROWS))).json()
    assert (page["read_only"], page["read_only_reason"], page["primary_key"]) == (
        False, None, ["id"])  # fmt: skip
    info = {c["name"]: c for c in page["column_info"]}
    assert (info["id"]["has_default"], info["name"]["has_default"]) == (True, False)
    hostile = "Robert'); DROP TABLE customers; --"
    added = await project.client.post(project.url(ROWS), json={
        "values": {"name": hostile, "vip": True, "score": "42"}})  # fmt: skip
    assert added.status_code == 201, added.text
    row = added.json()["row"]
    assert (row["id"], row["name"], row["vip"], row["score"], row["note"]) == (
        8, hostile, True, 42, "it's new")  # fmt: skip
    assert _customers(stack, project)[-1] == (8, hostile, True, "it's new", 42)
    changed = await project.client.patch(project.url(ROWS), json={
        "key": {"id": 8}, "values": {"note": None, "score": -3, "name": "Bobby"}})  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert changed.json()["row"]["name"] == "Bobby"
    assert _customers(stack, project)[-1] == (8, "Bobby", True, None, -3)
    gone = await project.client.request("DELETE", project.url(ROWS), json={"key": {"id": "8"}})
    assert gone.status_code == 200, gone.text
    assert gone.json() == {"table": "customers", "deleted": 1, "key": {"id": 8}}
    assert [r[0] for r in _customers(stack, project)] == [1, 2, 3, 4, 5, 6, 7]
    # jsonb and numeric values arrive as data too.
    stack.sql(f"CREATE TABLE {project.schema}.docs (id int PRIMARY KEY, body jsonb, n numeric)")
    doc = {"a": [1, "'; DROP TABLE docs; --"], "b": None}
    made = await project.client.post(project.url("tables/docs/rows"), json={
        "values": {"id": 1, "body": doc, "n": "12.50"}})  # fmt: skip
    assert made.status_code == 201, made.text
    assert stack.sql(f"SELECT body, n::text FROM {project.schema}.docs") == [(doc, "12.50")]


async def _refused(
    project: Project, method: str, body: Any, table: str = "customers", **kw: Any
) -> tuple[int, str]:
    got = await project.client.request(method, project.url(f"tables/{table}/rows"), json=body, **kw)
    assert got.json()["detail"], got.text
    return got.status_code, got.json()["error"]


HOSTILE: list[tuple[str, Any, tuple[int, str]]] = [
    ("POST", {"values": {'name"; DROP TABLE x; --': "a"}}, (400, "invalid_column")),
    ("POST", {"values": {"Name": "a"}}, (400, "invalid_column")),
    ("POST", {"values": {"nope": "a"}}, (404, "unknown_column")),
    ("POST", {"values": {"name": "a", "score": "7; DROP TABLE x"}}, (400, "invalid_value")),
    ("POST", {"values": {"name": "a", "score": 1.5}}, (400, "invalid_value")),
    ("POST", {"values": {"name": "a", "score": 2**40}}, (400, "invalid_value")),
    ("POST", {"values": {"name": "a", "vip": "yes"}}, (400, "invalid_value")),
    ("POST", {"values": {"name": 5}}, (400, "invalid_value")),
    ("POST", {"values": {"name": None}}, (400, "invalid_value")),
    ("POST", {"values": {"name": "a\x00b"}}, (400, "invalid_value")),
    ("POST", {"values": {"name": "a", "created_at": "not a date"}}, (400, "invalid_value")),
    ("POST", {"values": {"vip": True}}, (409, "row_rejected")),  # name is required
    ("POST", {"values": {"id": 1, "name": "dup"}}, (409, "row_rejected")),
    ("POST", {"values": ["name", "a"]}, (400, "invalid_request")),
    ("PATCH", {"key": {"id": 999}, "values": {"name": "x"}}, (404, "row_not_found")),
    ("PATCH", {"key": {"id": 1}, "values": {}}, (400, "empty_change")),
    ("PATCH", {"key": {"id": 1}, "values": {"id": 50}}, (400, "key_change")),
    ("PATCH", {"key": {"name": "c1"}, "values": {"note": "x"}}, (400, "invalid_key")),
    ("PATCH", {"key": {"id": None}, "values": {"note": "x"}}, (400, "invalid_key")),
    ("PATCH", {"key": {"id": "1 OR 1=1"}, "values": {"note": "x"}}, (400, "invalid_value")),
    ("PATCH", {"values": {"note": "x"}}, (400, "invalid_request")),
    ("DELETE", {"key": {"id": 999}}, (404, "row_not_found")),
    ("DELETE", {"key": {"id": 1, "name": "c1"}}, (400, "invalid_key")),
    ("DELETE", {}, (400, "invalid_request")),
]


async def test_hostile_and_wrong_row_changes_get_specific_errors_and_change_nothing(
    stack: Stack, project: Project
) -> None:
    before = _customers(stack, project)
    for method, body, expected in HOSTILE:
        assert await _refused(project, method, body) == expected, (method, body)
    for table, expected in [('customers";drop', (400, "invalid_table")),
                            ("ghost", (404, "unknown_table"))]:  # fmt: skip
        assert await _refused(project, "POST", {"values": {}}, table) == expected
    huge = {"values": {"name": "x" * 300_000}}
    assert await _refused(project, "POST", huge) == (413, "too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the real size counts
        for part in (b'{"values": {"name": "', b"x" * 300_000, b'"}}'):
            yield part

    got = await project.client.post(project.url(ROWS), content=chunked(),
                                     headers={"content-type": "application/json"})  # fmt: skip
    assert (got.status_code, got.json()["error"]) == (413, "too_large")
    for raw in (b"{not json", b"[1]"):
        got = await project.client.post(project.url(ROWS), content=raw,
                                         headers={"content-type": "application/json"})  # fmt: skip
        assert (got.status_code, got.json()["error"]) == (400, "invalid_json")
    assert _customers(stack, project) == before
    assert stack.sql("SELECT count(*) FROM amicable_meta.canary") == [(0,)]


async def test_a_table_without_a_primary_key_is_read_only_with_a_reason(
    stack: Stack, project: Project
) -> None:
    stack.sql(f"CREATE TABLE {project.schema}.log (line text); "
              f"INSERT INTO {project.schema}.log VALUES ('a')")  # fmt: skip
    page = (await project.client.get(project.url("tables/log/rows"))).json()
    assert page["read_only"] is True
    assert "no primary key" in page["read_only_reason"]
    assert page["primary_key"] == []
    for method, body in [("POST", {"values": {"line": "b"}}),
                         ("PATCH", {"key": {"line": "a"}, "values": {"line": "b"}}),
                         ("DELETE", {"key": {"line": "a"}})]:  # fmt: skip
        assert await _refused(project, method, body, "log") == (409, "read_only_table")
    assert stack.sql(f"SELECT line FROM {project.schema}.log") == [("a",)]


async def test_a_viewer_sees_read_only_rows_and_cannot_change_them(
    stack: Stack, project: Project
) -> None:
    shared = await project.client.post(f"/api/projects/{project.pid}/members",
                                       json={"email": BOB.email, "role": "viewer"})  # fmt: skip
    assert shared.status_code in (200, 201), shared.text
    before = _customers(stack, project)
    async with stack.site.signed_in(BOB) as bob:
        page = (await bob.get(project.url(ROWS))).json()
        assert page["read_only"] is True
        assert "not change" in page["read_only_reason"]
        for method, body in [("POST", {"values": {"name": "b"}}),
                             ("PATCH", {"key": {"id": 1}, "values": {"name": "b"}}),
                             ("DELETE", {"key": {"id": 1}})]:  # fmt: skip
            got = await bob.request(method, project.url(ROWS), json=body)
            assert (got.status_code, got.json()["error"]) == (403, "read_only"), method
            assert got.json()["detail"]
    async with stack.site.client() as stranger:
        got = await stranger.post(project.url(ROWS), json={"values": {"name": "b"}})
        assert got.status_code in (401, 403, 404)
    assert _customers(stack, project) == before
