"""Identity queries both SQL stores share: users, login sessions, API tokens, project owners,
members and pending invites (see ``docs/auth.md``).

A mixin over :class:`~.sql.SqlStore`'s connection handling; the schema is migration 3 in
:data:`~.sql.MIGRATION_TEMPLATES`.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any, TypeVar

from amicable_agent.auth.identity import RANK, Role, User, hash_token, new_api_token

from .base import COLUMNS, ApiToken, Invite, Member, Project

if TYPE_CHECKING:
    from collections.abc import Callable

    from .dbapi import Connection, Cursor

#: The identity tables and the owner column (migration 3).
IDENTITY_MIGRATION = """
    ALTER TABLE projects ADD COLUMN owner_sub TEXT;
    CREATE INDEX projects_owner ON projects(owner_sub);
    CREATE TABLE users (
        sub TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        name TEXT NOT NULL,
        picture TEXT NOT NULL,
        created_at {real} NOT NULL,
        last_login_at {real} NOT NULL
    );
    CREATE INDEX users_email ON users(email);
    CREATE TABLE project_members (
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        user_sub TEXT NOT NULL REFERENCES users(sub) ON DELETE CASCADE,
        role TEXT NOT NULL,
        created_at {real} NOT NULL,
        PRIMARY KEY (project_id, user_sub)
    );
    CREATE INDEX project_members_user ON project_members(user_sub);
    CREATE TABLE project_invites (
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        email TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at {real} NOT NULL,
        PRIMARY KEY (project_id, email)
    );
    CREATE INDEX project_invites_email ON project_invites(email);
    CREATE TABLE login_sessions (
        session_id TEXT PRIMARY KEY,
        user_sub TEXT NOT NULL REFERENCES users(sub) ON DELETE CASCADE,
        created_at {real} NOT NULL,
        expires_at {real} NOT NULL,
        revoked_at {real}
    );
    CREATE TABLE api_tokens (
        token_id TEXT PRIMARY KEY,
        user_sub TEXT NOT NULL REFERENCES users(sub) ON DELETE CASCADE,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at {real} NOT NULL,
        last_used_at {real}
    );
"""


T = TypeVar("T")
_USER = "u.sub, u.email, u.name, u.picture"


class IdentityQueries:
    """The identity half of the SQL stores (see the module docstring)."""

    if TYPE_CHECKING:  # provided by SqlStore

        async def _run(self, fn: Callable[[Any], T]) -> T: ...

        def _execute(
            self, conn: Connection, query: str, params: tuple[Any, ...] = ()
        ) -> Cursor: ...

    # --- users and logins -----------------------------------------------------------

    async def record_login(self, user: User, *, admin_emails: tuple[str, ...]) -> User:
        """Insert or refresh a user at login; turn their pending invites into memberships;
        hand over unowned projects (from before logins existed) to the first admin who logs
        in, or — with no admin configured — to the very first user."""
        now = time.time()

        def upsert(conn: Connection) -> User:
            first = self._execute(conn, "SELECT 1 FROM users LIMIT 1").fetchone() is None
            self._execute(
                conn,
                "INSERT INTO users (sub, email, name, picture, created_at, last_login_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (sub) DO UPDATE SET email=excluded.email, "
                "name=excluded.name, picture=excluded.picture, last_login_at=excluded.last_login_at",
                (user.sub, user.email or "", user.name or "", user.picture or "", now, now),
            )
            if user.email:
                invites = self._execute(
                    conn,
                    "SELECT project_id, role FROM project_invites WHERE email=?",
                    (user.email,),
                ).fetchall()
                for project_id, role in invites:
                    self._add_member(conn, project_id, user.sub, role, now)
                self._execute(conn, "DELETE FROM project_invites WHERE email=?", (user.email,))
            admin = user.email in admin_emails if user.email else False
            if admin or (first and not admin_emails):
                self._execute(
                    conn, "UPDATE projects SET owner_sub=? WHERE owner_sub IS NULL", (user.sub,)
                )
            return user

        result: User = await self._run(upsert)
        return result

    async def get_user(self, sub: str) -> User | None:
        """A user by ``sub``."""
        query = f"SELECT {_USER} FROM users u WHERE u.sub=?"
        return await self._run(lambda c: _user(self._execute(c, query, (sub,)).fetchone()))

    async def user_by_email(self, email: str) -> User | None:
        """The user who last logged in with ``email`` (lower-case)."""
        query = f"SELECT {_USER} FROM users u WHERE u.email=? ORDER BY u.last_login_at DESC"
        return await self._run(lambda c: _user(self._execute(c, query, (email,)).fetchone()))

    async def create_login_session(self, sub: str, max_age_s: float) -> str:
        """A new login session of ``sub``; its id (goes into the signed cookie)."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        query = (
            "INSERT INTO login_sessions (session_id, user_sub, created_at, expires_at) "
            "VALUES (?,?,?,?)"
        )
        await self._run(lambda c: self._execute(c, query, (session_id, sub, now, now + max_age_s)))
        return session_id

    async def session_user(self, session_id: str) -> User | None:
        """The user of a live (unexpired, not revoked) login session."""
        query = (
            f"SELECT {_USER} FROM login_sessions s JOIN users u ON u.sub = s.user_sub "
            "WHERE s.session_id=? AND s.revoked_at IS NULL AND s.expires_at > ?"
        )
        params = (session_id, time.time())
        return await self._run(lambda c: _user(self._execute(c, query, params).fetchone()))

    async def revoke_login_session(self, session_id: str) -> None:
        """End a login session (logout): its cookie no longer works."""
        query = "UPDATE login_sessions SET revoked_at=? WHERE session_id=?"
        await self._run(lambda c: self._execute(c, query, (time.time(), session_id)))

    # --- API tokens -----------------------------------------------------------------

    async def create_api_token(self, sub: str, name: str) -> tuple[ApiToken, str]:
        """A new API token of ``sub``: its record and the token (shown once)."""
        token, digest = new_api_token()
        record = ApiToken(secrets.token_hex(8), name, time.time(), None)
        query = (
            "INSERT INTO api_tokens (token_id, user_sub, name, token_hash, created_at) "
            "VALUES (?,?,?,?,?)"
        )
        params = (record.token_id, sub, name, digest, record.created_at)
        await self._run(lambda c: self._execute(c, query, params))
        return record, token

    async def list_api_tokens(self, sub: str) -> list[ApiToken]:
        """``sub``'s tokens, newest first."""
        query = (
            "SELECT token_id, name, created_at, last_used_at FROM api_tokens "
            "WHERE user_sub=? ORDER BY created_at DESC"
        )
        return await self._run(
            lambda c: [ApiToken(*r) for r in self._execute(c, query, (sub,)).fetchall()]
        )

    async def delete_api_token(self, sub: str, token_id: str) -> bool:
        """Revoke one of ``sub``'s tokens; False when there is no such token of theirs."""
        query = "DELETE FROM api_tokens WHERE user_sub=? AND token_id=?"

        def delete(conn: Connection) -> bool:
            return bool(self._execute(conn, query, (sub, token_id)).rowcount)

        result: bool = await self._run(delete)
        return result

    async def token_user(self, token: str) -> User | None:
        """The user an API token belongs to (and note its use)."""
        digest = hash_token(token)

        def select(conn: Connection) -> User | None:
            row = self._execute(
                conn,
                f"SELECT {_USER} FROM api_tokens t JOIN users u ON u.sub = t.user_sub "
                "WHERE t.token_hash=?",
                (digest,),
            ).fetchone()
            if row is not None:
                self._execute(
                    conn,
                    "UPDATE api_tokens SET last_used_at=? WHERE token_hash=?",
                    (time.time(), digest),
                )
            return _user(row)

        return await self._run(select)

    # --- ownership and members ------------------------------------------------------

    async def project_role(self, project_id: str, sub: str) -> Role | None:
        """``sub``'s role in a live project: owner, editor, viewer, or None."""

        def select(conn: Connection) -> Role | None:
            row = self._execute(
                conn,
                "SELECT p.owner_sub, m.role FROM projects p LEFT JOIN project_members m "
                "ON m.project_id = p.project_id AND m.user_sub=? "
                "WHERE p.project_id=? AND p.deleted_at IS NULL",
                (sub, project_id),
            ).fetchone()
            if row is None:
                return None
            owner, role = row
            if owner == sub:
                return "owner"
            return role if role in RANK else None

        return await self._run(select)

    async def projects_of(self, sub: str) -> list[tuple[Project, Role]]:
        """Live projects ``sub`` owns or is a member of, most recently updated first."""
        cols = ", ".join(f"p.{c.strip()}" for c in COLUMNS.split(","))
        query = (
            f"SELECT {cols}, m.role FROM projects p LEFT JOIN project_members m "
            "ON m.project_id = p.project_id AND m.user_sub=? "
            "WHERE p.deleted_at IS NULL AND (p.owner_sub=? OR m.user_sub IS NOT NULL) "
            "ORDER BY p.updated_at DESC, p.created_at DESC"
        )

        def select(conn: Connection) -> list[tuple[Project, Role]]:
            out: list[tuple[Project, Role]] = []
            for row in self._execute(conn, query, (sub, sub)).fetchall():
                project = Project(*row[:-1])
                out.append((project, "owner" if project.owner_sub == sub else row[-1]))
            return out

        return await self._run(select)

    async def count_owned_projects(self, sub: str) -> int:
        """How many live projects ``sub`` owns."""
        query = "SELECT COUNT(*) FROM projects WHERE owner_sub=? AND deleted_at IS NULL"
        count: int = await self._run(lambda c: int(self._execute(c, query, (sub,)).fetchone()[0]))
        return count

    async def members(self, project_id: str) -> tuple[list[Member], list[Invite]]:
        """The owner first, then members by name, and the pending invites."""

        def select(conn: Connection) -> tuple[list[Member], list[Invite]]:
            members: list[Member] = []
            owner = self._execute(
                conn,
                f"SELECT {_USER} FROM projects p JOIN users u ON u.sub = p.owner_sub "
                "WHERE p.project_id=?",
                (project_id,),
            ).fetchone()
            if owner is not None:
                members.append(Member(User(*owner), "owner"))
            rows = self._execute(
                conn,
                f"SELECT {_USER}, m.role FROM project_members m JOIN users u "
                "ON u.sub = m.user_sub WHERE m.project_id=? ORDER BY u.name, u.email",
                (project_id,),
            ).fetchall()
            members += [Member(User(*r[:4]), r[4]) for r in rows]
            invites = self._execute(
                conn,
                "SELECT email, role FROM project_invites WHERE project_id=? ORDER BY email",
                (project_id,),
            ).fetchall()
            return members, [Invite(e, r) for e, r in invites]

        return await self._run(select)

    async def add_member(self, project_id: str, sub: str, role: Role) -> None:
        """Give ``sub`` a role in a project (replacing an earlier one)."""
        now = time.time()
        await self._run(lambda c: self._add_member(c, project_id, sub, role, now))

    def _add_member(
        self, conn: Connection, project_id: str, sub: str, role: str, now: float
    ) -> None:
        owner = self._execute(
            conn, "SELECT owner_sub FROM projects WHERE project_id=?", (project_id,)
        ).fetchone()
        if owner is None or owner[0] == sub:
            return  # a deleted project, or the owner (who needs no membership)
        self._execute(
            conn,
            "INSERT INTO project_members (project_id, user_sub, role, created_at) "
            "VALUES (?,?,?,?) ON CONFLICT (project_id, user_sub) DO UPDATE SET role=excluded.role",
            (project_id, sub, role, now),
        )

    async def remove_member(self, project_id: str, sub: str) -> bool:
        """Remove a membership; False when there was none."""
        query = "DELETE FROM project_members WHERE project_id=? AND user_sub=?"

        def delete(conn: Connection) -> bool:
            return bool(self._execute(conn, query, (project_id, sub)).rowcount)

        result: bool = await self._run(delete)
        return result

    async def add_invite(self, project_id: str, email: str, role: Role) -> None:
        """Remember an invitation for an e-mail address (it becomes a membership at login)."""
        query = (
            "INSERT INTO project_invites (project_id, email, role, created_at) VALUES (?,?,?,?) "
            "ON CONFLICT (project_id, email) DO UPDATE SET role=excluded.role"
        )
        params = (project_id, email, role, time.time())
        await self._run(lambda c: self._execute(c, query, params))

    async def remove_invite(self, project_id: str, email: str) -> bool:
        """Drop a pending invitation; False when there was none."""
        query = "DELETE FROM project_invites WHERE project_id=? AND email=?"

        def delete(conn: Connection) -> bool:
            return bool(self._execute(conn, query, (project_id, email)).rowcount)

        result: bool = await self._run(delete)
        return result


def _user(row: Any) -> User | None:
    return User(*row) if row is not None else None
