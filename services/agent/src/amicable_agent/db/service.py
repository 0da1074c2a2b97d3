"""The Hasura integration as the server uses it: one object opened once in ``serve``.

Entry points for the agent (see docs/kubernetes.md §7 for the wiring):

- :meth:`AppDatabase.prepare_session` on session init: ensure the app's schema and key,
  write ``/public/amicable-db.js`` into the sandbox, patch ``/index.html``; returns the
  INIT ``db``/``db_schema``/``db_role`` values.
- :attr:`AppDatabase.proxy` for ``/db/apps/<app_id>/graphql``.
- :meth:`AppDatabase.cleanup` on project delete.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio
from amicable_protocol.messages import DbInfo

from amicable_agent.errors import HasuraError, RuntimeClientError

from .hasura import open_hasura_client
from .inject import (
    DB_JS_PATH,
    INDEX_HTML_PATH,
    PLACEHOLDER_JS,
    db_js,
    graphql_url,
    parse_db_js,
    patch_index_html,
)
from .origin import OriginPolicy, preview_origin
from .provisioning import Provisioner
from .proxy import DbProxy
from .tools import AppDbTools

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from amicable_agent.loop.api import RuntimeClient

    from .config import HasuraConfig
    from .hasura import HasuraClient
    from .origin import OriginLookup

log = logging.getLogger(__name__)


@attrs.frozen
class AppDbInfo:
    """What INIT reports about the app database (upstream ``db``, ``db_schema``, ``db_role``)."""

    graphql_url: str
    db_schema: str
    db_role: str

    def init_fields(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~amicable_protocol.messages.InitReply`."""
        return {
            "db": DbInfo(graphql_url=self.graphql_url),
            "db_schema": self.db_schema,
            "db_role": self.db_role,
        }


async def _read_text(runtime: RuntimeClient, path: str) -> tuple[str, str] | None:
    try:
        content, sha = await runtime.read_file(path)
    except RuntimeClientError as exc:
        if exc.code == "not_found" or exc.status == 404:
            return None
        raise
    return content.decode("utf-8", errors="replace"), sha


async def _placeholder_if_missing(runtime: RuntimeClient) -> None:
    # An index.html patched on an earlier init must not load a 404 (the runtime bridge
    # would report it as an app error): the app sees "no database" instead.
    try:
        with trio.fail_after(30):
            if await _read_text(runtime, DB_JS_PATH) is None:
                await runtime.write_file(DB_JS_PATH, PLACEHOLDER_JS.encode("utf-8"))
    except (RuntimeClientError, trio.TooSlowError) as exc:
        log.warning("could not write the amicable-db.js placeholder: %s", exc)


class AppDatabase:
    """Per-app databases through Hasura. Create with :func:`open_app_database`.

    Attributes:
        config: the Hasura settings.
        client: the Hasura API client.
        provisioner: schema/key/cleanup operations.
        proxy: the ``/db/apps/<app_id>/graphql`` handler.
        ddl_lock: serialises DDL and metadata changes (the DB tools and the schema editor).
    """

    def __init__(self, config: HasuraConfig, client: HasuraClient, origins: OriginLookup) -> None:
        self.config = config
        self.client = client
        self.provisioner = Provisioner(client)
        self.ddl_lock = trio.Lock()
        self.proxy = DbProxy(
            config=config,
            client=client,
            provisioner=self.provisioner,
            origins=OriginPolicy(config.origin_mode, origins),
        )

    async def prepare_session(
        self,
        app_id: str,
        runtime: RuntimeClient,
        *,
        preview_url: str,
        public_base_url: str | None = None,
    ) -> AppDbInfo:
        """Provision the app and inject its credentials into the sandbox.

        The key already in the sandbox's ``amicable-db.js`` is kept while it matches, so a
        reconnect (or another agent replica) does not invalidate a running preview.

        Args:
            app_id: the project id.
            runtime: the sandbox's runtime client.
            preview_url: the browser URL of the app's preview (its origin goes in the file).
            public_base_url: the agent's public URL when the config has none (local mode).

        Raises:
            HasuraError: Hasura failed.
            RuntimeClientError: the sandbox could not be read or written.
        """
        existing = await _read_text(runtime, DB_JS_PATH)
        parsed = parse_db_js(existing[0]) if existing is not None else None
        known = parsed.get("appKey") if parsed is not None else None
        creds = await self.provisioner.ensure_app(
            app_id, known_key=known if isinstance(known, str) else None
        )
        url = graphql_url(self.config.public_base_url or public_base_url, app_id)
        content = db_js(
            app_id=app_id,
            app_key=creds.app_key,
            graphql_url=url,
            preview_origin=preview_origin(preview_url),
        )
        if existing is None or existing[0] != content:
            await runtime.write_file(DB_JS_PATH, content.encode("utf-8"))
        index = await _read_text(runtime, INDEX_HTML_PATH)
        if index is None:
            log.warning("app %s has no %s; amicable-db.js is not loaded", app_id, INDEX_HTML_PATH)
        else:
            patched = patch_index_html(index[0])
            if patched is not None:
                await runtime.write_file(
                    INDEX_HTML_PATH, patched.encode("utf-8"), if_match=index[1] or None
                )
        record = creds.record
        return AppDbInfo(graphql_url=url, db_schema=record.schema_name, db_role=record.role_name)

    async def try_prepare_session(
        self,
        app_id: str,
        runtime: RuntimeClient,
        *,
        preview_url: str,
        public_base_url: str | None = None,
    ) -> AppDbInfo | None:
        """:meth:`prepare_session`, but a failure is logged and answered with None, so a
        Hasura outage never fails a session (the app just has no database this time).

        Cancellation: the caller's cancellation propagates; nothing is left running.
        """
        try:
            with trio.fail_after(3 * self.config.timeout_s):
                return await self.prepare_session(
                    app_id, runtime, preview_url=preview_url, public_base_url=public_base_url
                )
        except (HasuraError, RuntimeClientError, trio.TooSlowError) as exc:
            log.warning("app %s: database not prepared: %s", app_id, exc)
            await _placeholder_if_missing(runtime)
            return None

    def session_tools(self, app_id: str, info: AppDbInfo) -> AppDbTools:
        """The model's DB tools for a session whose database :meth:`prepare_session` made."""
        return AppDbTools(
            app_id=app_id,
            schema=info.db_schema,
            provisioner=self.provisioner,
            client=self.client,
            lock=self.ddl_lock,
            deadline_s=3 * self.config.timeout_s,
        )

    async def cleanup(self, app_id: str) -> bool:
        """Drop the app's tables, schema and row (project delete). Idempotent.

        Raises:
            HasuraError: Hasura failed.
        """
        return await self.provisioner.cleanup_app(app_id)


@asynccontextmanager
async def open_app_database(
    config: HasuraConfig | None, *, origins: OriginLookup
) -> AsyncIterator[AppDatabase | None]:
    """The integration for the duration of the block, or None when it is off.

    Args:
        config: ``AgentConfig.hasura`` (None: no ``HASURA_BASE_URL``).
        origins: the preview origins of an app (:func:`~.origin.store_origin_lookup`).

    Cancellation: closes the HTTP client; nothing else runs in the background.
    """
    if config is None:
        yield None
        return
    async with open_hasura_client(config) as client:
        yield AppDatabase(config, client, origins)
