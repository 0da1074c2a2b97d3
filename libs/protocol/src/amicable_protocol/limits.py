"""Size limits of the protocol's text fields (documented in ``docs/protocol.md``).

Text is refused where it enters (the ``user`` frame in :func:`~.messages.decode_client_frame`,
a project's prompt at creation), and what the ``init`` reply echoes is cut to a size every
client can take: a project created with a 20 MB prompt must still open in an editor whose
WebSocket accepts 1 MiB frames.

Limits of text fields count characters (``len(str)``), as the editor's ``maxLength`` does.
The runtime API's path and command limits count UTF-8 bytes, as the kernel does: every peer
checks them with :func:`path_length_problem` and :data:`MAX_COMMAND_BYTES` before a path
reaches a file system (which would fail with ``ENAMETOOLONG``) or a command a process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

import attrs

from .errors import ProtocolError, ProtocolErrorCode

if TYPE_CHECKING:
    from collections.abc import Sequence


#: The most characters of a ``user`` message (``text`` plus its text blocks); more is
#: answered with ``error`` ``text_too_long`` (the socket stays open). The agent's
#: ``AMICABLE_MAX_PROMPT_CHARS`` may lower it.
MAX_USER_TEXT_CHARS = 100_000
#: The most characters of a project's prompt at creation (the editor sends it as the first
#: ``user`` message, so the same limit); the HTTP API answers 413 ``prompt_too_long`` above
#: it (or above a lower ``AMICABLE_MAX_PROMPT_CHARS``).
MAX_PROJECT_PROMPT_CHARS = MAX_USER_TEXT_CHARS
#: ``init`` echoes at most this many characters of the project's prompt.
INIT_PROMPT_CHARS = 4_000
#: ``init`` echoes at most this many characters of one ``conversation_history`` entry...
INIT_HISTORY_ENTRY_CHARS = 20_000
#: ... and at most this many of all entries together (older entries are dropped first).
INIT_HISTORY_CHARS = 100_000
#: What a cut text ends with.
CUT_MARK = "…"


def check_text(
    name: str, text: str, max_chars: int, *, code: ProtocolErrorCode = "too_large"
) -> None:
    """Refuse ``text`` longer than ``max_chars`` characters.

    Raises:
        ProtocolError: ``code``, naming the field, its length and the limit.
    """
    if len(text) > max_chars:
        raise ProtocolError(
            code, f"{name} has {len(text)} characters; at most {max_chars} are accepted"
        )


def clip_text(text: str, max_chars: int) -> str:
    """``text``, or its first ``max_chars - 1`` characters and :data:`CUT_MARK`."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - len(CUT_MARK))] + CUT_MARK


class _Entry(Protocol):
    """A chat entry (:class:`~.messages.HistoryEntry`): an attrs class with ``text``."""

    @property
    def text(self) -> str: ...


E = TypeVar("E", bound=_Entry)


def fit_history(
    entries: Sequence[E],
    *,
    entry_chars: int = INIT_HISTORY_ENTRY_CHARS,
    total_chars: int = INIT_HISTORY_CHARS,
) -> tuple[E, ...]:
    """The newest ``entries`` that fit: each cut to ``entry_chars``, together at most
    ``total_chars`` (the oldest are dropped first). Order is kept."""
    kept: list[E] = []
    budget = total_chars
    for entry in reversed(entries):
        text = clip_text(entry.text, min(entry_chars, budget))
        kept.append(entry if text is entry.text else attrs.evolve(entry, text=text))  # type: ignore[misc]
        budget -= len(text)
        if budget <= 0:
            break
    return tuple(reversed(kept))


#: Limits of a ``user`` message's ``ui_context.selected_element`` (characters); more is
#: answered with ``error`` ``too_large``. The editor cuts the text before it sends it.
MAX_SELECTION_CHARS = {"tag": 64, "selector": 1_000, "text": 500, "source": 500}


class _Selection(Protocol):
    """A picked element (:class:`~.messages.SelectedElement`)."""

    @property
    def tag(self) -> str: ...
    @property
    def selector(self) -> str: ...
    @property
    def text(self) -> str | None: ...
    @property
    def source(self) -> str | None: ...


def check_selection(selection: _Selection) -> None:
    """Refuse a selected element whose fields are over :data:`MAX_SELECTION_CHARS`.

    Raises:
        ProtocolError: ``too_large``, naming the field.
    """
    for name, limit in MAX_SELECTION_CHARS.items():
        value = getattr(selection, name)
        if value is not None:
            check_text(f"data.ui_context.selected_element.{name}", value, limit)


#: The longest workspace path, in UTF-8 bytes (Linux's ``PATH_MAX``).
MAX_PATH_BYTES = 4096
#: The longest name in a path (one segment), in UTF-8 bytes (Linux's ``NAME_MAX``).
MAX_NAME_BYTES = 255
#: The longest exec command, in UTF-8 bytes (longer ones are ``command_too_long``).
MAX_COMMAND_BYTES = 1024 * 1024


def path_length_problem(path: str) -> str | None:
    """Why ``path`` is too long to be a workspace path (a sentence), or None when it is not.

    Pure; every peer checks paths with it before they reach a file system, which would fail
    with ``ENAMETOOLONG``.
    """
    size = len(path.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        return f"the path has {size} bytes; at most {MAX_PATH_BYTES} are allowed"
    if len(path) > MAX_NAME_BYTES // 4:  # a shorter path cannot hold a long name
        for name in path.split("/"):
            size = len(name.encode("utf-8", "surrogatepass"))
            if size > MAX_NAME_BYTES:
                return (
                    f"the name {name[:40]!r}… has {size} bytes; at most {MAX_NAME_BYTES} "
                    "are allowed in one path segment"
                )
    return None
