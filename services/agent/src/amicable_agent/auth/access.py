"""Who is calling, and what they may do with a project.

:class:`Access` turns a request's credentials (the session cookie, an ``Authorization:
Bearer`` API token, or nothing in ``AUTH_MODE=none``) into a :class:`~.identity.Caller`, and
answers every "may this caller do that to this project" question the same way for HTTP routes
and WebSocket frames. A project the caller may not see is :class:`ProjectNotFound` — never a
different answer that would confirm it exists.
"""

from __future__ import annotations

import logging
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING

from amicable_agent.errors import AgentError

from .identity import LOCAL_USER, TOKEN_PREFIX, Caller, Role, User, satisfies

if TYPE_CHECKING:
    from collections.abc import Mapping

    from amicable_agent.store import Project, Store

    from .config import AuthConfig
    from .cookies import CookieSigner

log = logging.getLogger(__name__)

#: A project id: what the HTTP API and ``init`` accept (uuid4s, or a short client token).
MAX_PROJECT_ID = 128


class AccessDenied(AgentError):
    """The caller may not do this; ``status``/``code`` are the HTTP answer."""

    status = 403

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class ProjectNotFound(AccessDenied):
    """No such project — or one the caller may not see (the same answer on purpose)."""

    status = 404

    def __init__(self) -> None:
        super().__init__("not_found", "no such project")


class QuotaExceeded(AccessDenied):
    """A per-user or global limit is reached."""

    status = 429

    def __init__(self, detail: str) -> None:
        super().__init__("quota_exceeded", detail)


def valid_project_id(project_id: str) -> bool:
    """``[A-Za-z0-9][A-Za-z0-9_-]{0,127}``: uuid4s and short client-chosen tokens."""
    return (
        0 < len(project_id) <= MAX_PROJECT_ID
        and project_id.isascii()
        and project_id[0].isalnum()
        and all(c.isalnum() or c in "-_" for c in project_id)
    )


class Access:
    """Authentication and project authorization.

    Args:
        config: the auth settings.
        store: users, sessions, tokens, members.
        signer: checks the session cookie.
    """

    def __init__(self, config: AuthConfig, store: Store, signer: CookieSigner) -> None:
        self.config = config
        self._store = store
        self.signer = signer

    @property
    def store(self) -> Store:
        """The store the answers come from."""
        return self._store

    async def authenticate(self, headers: Mapping[str, str]) -> Caller | None:
        """The caller a request's headers prove, or None.

        ``AUTH_MODE=none``: always the local user. Otherwise an ``Authorization: Bearer
        amk_…`` API token, else the session cookie. A forged, expired or logged-out cookie
        and an unknown token prove nothing.
        """
        if not self.config.login_enabled:
            return Caller(LOCAL_USER, "local")
        auth = headers.get("authorization") or headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip().startswith(TOKEN_PREFIX):
            user = await self._store.token_user(token.strip())
            return self._caller(user, "token", None) if user else None
        session_id = self._session_id(headers.get("cookie") or headers.get("Cookie") or "")
        if session_id is None:
            return None
        user = await self._store.session_user(session_id)
        return self._caller(user, "cookie", session_id) if user else None

    def _caller(self, user: User, via: str, session_id: str | None) -> Caller:
        admin = bool(user.email) and user.email in self.config.admin_emails
        return Caller(user, via, session_id, admin)  # type: ignore[arg-type]

    def _session_id(self, cookie_header: str) -> str | None:
        if not cookie_header:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie_header)
        except CookieError:
            return None
        morsel = jar.get(self.config.cookie_name)
        return self.signer.session_id(morsel.value) if morsel is not None else None

    async def role(self, caller: Caller, project_id: str) -> Role | None:
        """The caller's role in a live project, or None (no such project, or no access)."""
        if caller.local or caller.admin:
            exists = await self._store.get_project(project_id)
            return "owner" if exists is not None else None
        return await self._store.project_role(project_id, caller.sub)

    async def project(self, caller: Caller, project_id: str, need: Role) -> tuple[Project, Role]:
        """The live project and the caller's role, if it is at least ``need``.

        Raises:
            ProjectNotFound: malformed id, unknown project, or one the caller cannot see.
            AccessDenied: ``read_only`` (a viewer asked to change it) or ``owner_only``.
        """
        if not valid_project_id(project_id):
            raise ProjectNotFound
        role = await self.role(caller, project_id)
        project = await self._store.get_project(project_id) if role is not None else None
        if role is None or project is None:
            raise ProjectNotFound
        if not satisfies(role, need):
            if need == "owner":
                raise AccessDenied("owner_only", "only the project's owner may do this")
            raise AccessDenied("read_only", "you can view this project but not change it")
        return project, role

    async def projects(self, caller: Caller) -> list[tuple[Project, Role]]:
        """Every project the caller can see, most recently updated first."""
        if caller.local or caller.admin:
            return [(p, "owner") for p in await self._store.list_projects()]
        return await self._store.projects_of(caller.sub)

    async def check_project_quota(self, caller: Caller) -> None:
        """Raise :class:`QuotaExceeded` when the caller owns as many projects as allowed."""
        limit = self.config.quotas.projects_per_user
        if caller.local or not limit:
            return
        if await self._store.count_owned_projects(caller.sub) >= limit:
            raise QuotaExceeded(
                f"you have {limit} projects, the most this installation allows per person; "
                "delete one to make room"
            )
