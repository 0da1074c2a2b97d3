"""The projects store: the :class:`Store` interface and :func:`open_store`, which picks the
SQLite file (the default) or PostgreSQL (shared by several agent replicas) from the config.

``base`` is the interface, ``sql`` the queries both share, ``sqlite`` and ``postgres`` the two
implementations (each the only user of its driver).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .base import (
    ApiToken,
    Invite,
    Member,
    Project,
    SnapshotIndex,
    Store,
    slug_candidates,
    slugify,
)
from .snapshots import DB_BLOB_PREFIX, SnapshotKind, SnapshotRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from amicable_agent.config import AgentConfig

__all__ = [
    "DB_BLOB_PREFIX",
    "ApiToken",
    "Invite",
    "Member",
    "Project",
    "SnapshotIndex",
    "SnapshotKind",
    "SnapshotRecord",
    "Store",
    "open_store",
    "slug_candidates",
    "slugify",
]


@asynccontextmanager
async def open_store(config: AgentConfig) -> AsyncIterator[Store]:
    """The store ``config.database_url`` names: PostgreSQL for ``postgresql://`` URLs, else
    the SQLite file (:attr:`AgentConfig.sqlite_path`).

    Raises:
        StoreUnavailable: the PostgreSQL server cannot be reached or migrated.
        ConfigError: the URL is malformed.
    """
    url = config.postgres_url
    if url is not None:
        from .postgres import open_postgres_store

        async with open_postgres_store(url) as pg:
            yield pg
    else:
        from .sqlite import open_sqlite_store

        async with open_sqlite_store(config.sqlite_path) as sqlite:
            yield sqlite
