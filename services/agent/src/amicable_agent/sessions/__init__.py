"""Sessions: one per project id, owning its sandbox, its turns and the sockets attached.

``manager`` (every live session, one nursery), ``session`` (one session), ``attachment`` (a
socket's bounded queue), ``sandbox`` (provisioning and keep-alive), ``jobs`` (turns one at a
time and the steps after each: GitLab sync, audit record), ``checkpoint_queue`` (each turn's
checkpoint, taken in the background), ``checkpoints`` (the project's git history inside the
sandbox), ``deps`` (what the server hands down).
"""

from __future__ import annotations

from .attachment import Attachment, Outgoing, frame_bytes
from .deps import SessionDeps
from .manager import SessionManager, open_session_manager
from .session import Session

__all__ = [
    "Attachment",
    "Outgoing",
    "Session",
    "SessionDeps",
    "SessionManager",
    "frame_bytes",
    "open_session_manager",
]
