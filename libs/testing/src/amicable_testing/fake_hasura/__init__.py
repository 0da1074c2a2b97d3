"""A fake Hasura for tests: a real HTTP server speaking Hasura's wire format.

- ``POST /v2/query`` ``run_sql`` (admin secret required), backed by an in-memory SQLite:
  Postgres schemas become table-name prefixes (``"s"."t"`` -> ``"s__t"``),
  ``information_schema.tables`` is a view over them, ``E'...'`` literals, ``now()``,
  ``serial``, ``CREATE/DROP SCHEMA``, ``TRUNCATE`` and ``DROP TABLE … CASCADE`` are
  translated. Enough for the agent's
  provisioning SQL and for tests that create tables. With ``postgres_url=`` the SQL runs
  on a real PostgreSQL instead, as sent (``_real_postgres``; no GraphQL then).
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

Modules, each importing only those below it: ``_server`` (:class:`FakeHasura` and its HTTP
routes), ``_graphql`` (JWT roles, queries and mutations), ``_metadata`` (tracking and
permissions), ``_postgres`` (the PostgreSQL side, on SQLite), ``_real_postgres`` (on PostgreSQL),
``_errors``.
"""

from ._errors import GraphqlError
from ._server import FakeHasura, RecordedRequest

__all__ = ["FakeHasura", "GraphqlError", "RecordedRequest"]
