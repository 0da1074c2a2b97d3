"""The editor WebSocket: decode frames, dispatch to sessions, answer errors and pings.

One :class:`Connection` per socket owns a reader (this task) and a writer task draining its
:class:`~amicable_agent.sessions.session.Attachment`. Bad frames are answered with an ``error`` naming
the problem and the socket stays open; a missing session id on ``init`` and a foreign
``Origin`` close it with 1008; a slow socket is closed (1013, try again) by the session.
A ``user`` message whose text is longer than ``AMICABLE_MAX_PROMPT_CHARS`` (at most the
protocol's limit, which decoding enforces) is answered ``text_too_long`` and not queued.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Protocol

import trio
from amicable_protocol import MAX_USER_TEXT_CHARS, check_text
from amicable_protocol.errors import ProtocolError
from amicable_protocol.messages import (
    ClientData,
    ClientMessage,
    Empty,
    ErrorData,
    InitData,
    MessageType,
    ServerData,
    ServerMessage,
    TextBlock,
    UserData,
    decode_client_frame,
)

from amicable_agent.auth.access import AccessDenied, valid_project_id
from amicable_agent.errors import SandboxProvisionError
from amicable_agent.sessions import Attachment

if TYPE_CHECKING:
    from amicable_agent.auth.access import Access
    from amicable_agent.auth.identity import Caller, Role
    from amicable_agent.sessions import Session, SessionManager

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
#: A single frame taking longer than this to send means the client stopped reading.
SEND_TIMEOUT_S = 30.0


class SocketLike(Protocol):
    """The part of quart's ``websocket`` object a connection uses.

    A socket that also has ``send_frames(frames: list[bytes])`` (ready-made WebSocket
    frames, :class:`~amicable_agent.http.ws_server.RawWebSocket`) gets every queued message in
    one call, and one with ``write_now(frame: bytes) -> int`` (a non-blocking write; bytes
    written) gets a message at once when nothing is queued for it.
    """

    async def receive(self) -> str | bytes: ...

    async def send(self, data: str | bytes) -> None: ...

    async def close(self, code: int, reason: str = "") -> None: ...


def _is_init_without_session(frame: str | bytes) -> bool:
    try:
        raw = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(raw, dict):
        return False
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    kind = raw.get("type", data.get("type") if isinstance(data, dict) else None)
    if kind != "init":
        return False
    sid = (data or {}).get("session_id") or raw.get("session_id")
    return not (isinstance(sid, str) and sid.strip())


class Connection:
    """One WebSocket connection speaking the editor protocol.

    Cancellation: cancelling :meth:`run` (client disconnect, server shutdown) detaches the
    socket from its session; the session and its turn keep running.
    """

    def __init__(
        self,
        manager: SessionManager,
        socket: SocketLike,
        *,
        queue_size: int,
        caller: Caller,
        access: Access,
        max_text_chars: int = MAX_USER_TEXT_CHARS,
    ) -> None:
        self._manager = manager
        self._max_text_chars = max_text_chars
        self._socket = socket
        self._caller = caller
        self._access = access
        self._attachment = Attachment(queue_size)
        write_now = getattr(socket, "write_now", None)
        if write_now is not None:
            self._attachment.direct = lambda out: write_now(out.wire)
        self._session: Session | None = None
        self._close_code: int | None = None
        self._anon_session = ""
        self._nursery: trio.Nursery | None = None

    def _reply(self, type: MessageType, data: ServerData) -> None:
        sid = self._session.session_id if self._session else self._anon_session
        self._attachment.send_nowait(ServerMessage(type=type, data=data, session_id=sid))

    def _error(self, code: str, detail: str | None = None) -> None:
        self._reply(MessageType.ERROR, ErrorData(error=code, detail=detail))

    def _close_after_drain(self, code: int) -> None:
        self._close_code = code
        self._attachment.drop()

    async def run(self) -> None:
        """Serve the socket until it closes."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer, nursery.cancel_scope)
                while not self._attachment.dropped:
                    frame = await self._socket.receive()
                    await self._handle_frame(frame)
        finally:
            if self._session is not None:
                self._session.detach(self._attachment)

    async def _writer(self, scope: trio.CancelScope) -> None:
        attachment = self._attachment
        send_frames = getattr(self._socket, "send_frames", None)
        while True:
            try:
                out = await attachment.receive()
            except trio.EndOfChannel:
                break
            with trio.move_on_after(SEND_TIMEOUT_S) as sending:
                if send_frames is None:
                    await self._socket.send(out.frame)
                else:
                    # Everything queued goes out in one write, each frame built once for
                    # all sockets.
                    wire = out.wire
                    frames = [wire[attachment.taken_offset :] if attachment.taken_offset else wire]
                    while True:
                        try:
                            frames.append(attachment.take_nowait().wire)
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    await send_frames(frames)
            if sending.cancelled_caught:  # a stalled client: give up on it
                log.warning("closing a WebSocket that stopped reading")
                scope.cancel()
                return
        # The queue ended: a deliberate close, or the session dropped us as too slow.
        code = self._close_code or CLOSE_TRY_AGAIN
        with trio.move_on_after(5):
            await self._socket.close(code)
        scope.cancel()

    async def _handle_frame(self, frame: str | bytes) -> None:
        try:
            message = decode_client_frame(frame)
        except ProtocolError as exc:
            if exc.code == "invalid_field" and _is_init_without_session(frame):
                self._error("missing_session_id", "init needs data.session_id")
                self._close_after_drain(CLOSE_POLICY)
                return
            self._error(exc.code, exc.message)
            return
        await self._dispatch(message)

    async def _dispatch(self, message: ClientMessage) -> None:
        kind = message.type
        if kind is MessageType.PING:
            self._reply(MessageType.PONG, Empty())
            return
        if kind is MessageType.INIT:
            assert isinstance(message.data, InitData)
            await self._init(message.data)
            return
        session = self._session
        if session is None or session.closed:
            self._error("not_initialized", "send init with a session_id first")
            return
        # Every turn-related frame is checked again: the caller may have lost access since.
        role = await self._access.role(self._caller, session.session_id)
        if role is None:
            session.detach(self._attachment)
            self._session = None
            self._error("not_found", "no such project")
            return
        if role == "viewer":
            if kind is not MessageType.RUNTIME_ERROR:  # a viewer's preview never heals
                self._error("read_only", "you can view this project but not change it")
            return
        if kind is MessageType.USER and (
            self._text_too_long(message.data) or self._turns_exceeded()
        ):
            return
        session.submit(kind, message.data, self._attachment, by=self._caller.sub, msg_id=message.id)

    def _text_too_long(self, data: ClientData) -> bool:
        """A ``user`` text over a limit lower than the protocol's (which decoding checks)."""
        assert isinstance(data, UserData)
        blocks = data.content_blocks or ()
        text = data.text + "".join(b.text for b in blocks if isinstance(b, TextBlock))
        try:
            check_text("data.text", text, self._max_text_chars, code="text_too_long")
        except ProtocolError as exc:
            self._error(exc.code, exc.message)
            return True
        return False

    def _turns_exceeded(self) -> bool:
        limit = self._access.config.quotas.concurrent_turns_per_user
        if self._caller.local or not limit or self._manager.turns_by(self._caller.sub) < limit:
            return False
        self._error(
            "quota_exceeded",
            f"you have {limit} prompts running or queued, the most allowed at once; "
            "wait for one to finish",
        )
        return True

    async def _init(self, data: InitData) -> None:
        session_id = data.session_id.strip()
        if not session_id:
            self._error("missing_session_id", "init needs data.session_id")
            self._close_after_drain(CLOSE_POLICY)
            return
        if not valid_project_id(session_id):
            self._error("invalid_project_id", "a project id is 1-128 letters, digits, - or _")
            return
        self._anon_session = session_id
        if self._session is not None and self._session.session_id != session_id:
            self._session.detach(self._attachment)
            self._session = None
        try:
            role = await self._authorize_init(session_id)
        except AccessDenied as exc:
            self._error(exc.code, exc.detail)
            return
        session = self._session
        if session is None or session.closed:
            session = await self._manager.attach(
                session_id, self._attachment, started_by=self._caller.sub
            )
            self._session = session
        # Provisioning can take a while: answer pings and queue messages meanwhile.
        assert self._nursery is not None
        self._nursery.start_soon(self._finish_init, session, data, role != "viewer")

    async def _authorize_init(self, project_id: str) -> Role:
        """The caller's role in the project ``init`` names; creates it (owned by the caller)
        when it does not exist and a login is configured; checks the sandbox limits.

        Raises:
            AccessDenied: not visible (``not_found``), or a limit is reached.
        """
        access, caller = self._access, self._caller
        role = await access.role(caller, project_id)
        if role is None:
            if await access.store.get_project(project_id) is not None or caller.local:
                if not caller.local:
                    raise AccessDenied("not_found", "no such project")
                role = "owner"  # AUTH_MODE=none: the session creates it, as before logins
            else:
                await access.check_project_quota(caller)
                try:
                    await access.store.create_project(
                        "Untitled",
                        template_id=self._manager.deps.default_template,
                        project_id=project_id,
                        owner_sub=caller.sub,
                    )
                except ValueError as exc:  # a deleted project's id
                    raise AccessDenied("not_found", "no such project") from exc
                role = "owner"
        if self._manager.get(project_id) is None:
            await self._manager.check_sandbox_limits(
                caller.sub,
                per_user=0 if caller.local else access.config.quotas.running_sandboxes_per_user,
                total=access.config.quotas.running_sandboxes or 0,
            )
        return role

    async def _finish_init(self, session: Session, data: InitData, may_edit: bool) -> None:
        try:
            reply = await session.init_reply(data, may_edit=may_edit)
        except SandboxProvisionError as exc:
            if self._session is session:
                self._session = None
            self._error("sandbox_failed", exc.reason)
            self._close_after_drain(CLOSE_INTERNAL)
            return
        self._attachment.send_nowait(session.message(MessageType.INIT, reply))


async def serve_socket(
    manager: SessionManager,
    socket: SocketLike,
    *,
    queue_size: int,
    caller: Caller,
    access: Access,
    max_text_chars: int = MAX_USER_TEXT_CHARS,
) -> None:
    """Serve one accepted WebSocket of an authenticated caller until it closes.

    Args:
        max_text_chars: the longest ``user`` text (with its text blocks) accepted.
    """
    connection = Connection(
        manager,
        socket,
        queue_size=queue_size,
        caller=caller,
        access=access,
        max_text_chars=max_text_chars,
    )
    await connection.run()
