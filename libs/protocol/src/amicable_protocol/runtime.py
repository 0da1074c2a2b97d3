"""Bodies of the sandbox runtime API (agent -> ``amicable-sandbox-runtime``, ``/v1/*``).

Every ``/v1`` request carries ``Authorization: Bearer <token>``. Paths are workspace paths:
relative to the workspace root, a leading ``/`` meaning the root itself (``/src/App.tsx``).
Errors are :class:`amicable_protocol.http.ErrorBody` with these codes:

=================  ======  ==========================================================
code               status  meaning
=================  ======  ==========================================================
unauthorized       401     missing or wrong bearer token
invalid_path       400     ``..`` escape, NUL byte, absolute path outside, symlink out
invalid_request    400     body does not match the type (detail names the field)
not_found          404     no such file or directory
is_directory       400     a file operation on a directory
conflict           409     ``If-Match`` mismatch, or an edit matching 0 / several times
too_large          413     body over ``AMICABLE_MAX_FILE_BYTES``
path_too_long      400     a path over :data:`~.limits.MAX_PATH_BYTES` or a name
                           over :data:`~.limits.MAX_NAME_BYTES` (UTF-8 bytes)
command_too_long   413     an exec command over :data:`~.limits.MAX_COMMAND_BYTES`
exec_failed        500     the command could not be started (``detail``: why)
=================  ======  ==========================================================

Bodies are read with :func:`amicable_protocol.load_json`; one that is not JSON is
``invalid_request``.
"""

from __future__ import annotations

from typing import Literal

import attrs

from ._converter import register_renames

# --- files ----------------------------------------------------------------------------


@attrs.frozen
class WriteResult:
    """Answer of ``PUT /v1/files/{path}`` (raw body; optional ``If-Match: <sha256>``)."""

    path: str
    sha256: str
    size: int


@attrs.frozen
class MoveRequest:
    """``POST /v1/fs/move`` — JSON keys are ``from`` and ``to``."""

    from_: str
    to: str


register_renames(MoveRequest, from_="from")


@attrs.frozen
class PathRequest:
    """``POST /v1/fs/mkdir``."""

    path: str


@attrs.frozen
class PathResult:
    """Answer of delete / mkdir / move (``path`` is the resulting path)."""

    path: str


@attrs.frozen
class EditRequest:
    """``POST /v1/fs/edit``: exact string replacement.

    409 ``conflict`` when ``old_string`` occurs 0 times, or more than once without
    ``replace_all``; 404 when the file is missing.
    """

    path: str
    old_string: str
    new_string: str
    replace_all: bool = False


@attrs.frozen
class EditResult:
    path: str
    replacements: int
    sha256: str


EntryKind = Literal["file", "dir", "symlink"]


@attrs.frozen
class TreeEntry:
    """One entry of ``GET /v1/fs/tree?path=&depth=&include_hidden=``."""

    path: str
    kind: EntryKind
    size: int
    mtime_ns: int
    mode: int


@attrs.frozen
class TreeResult:
    path: str
    entries: tuple[TreeEntry, ...]
    truncated: bool = False


@attrs.frozen
class GlobRequest:
    pattern: str
    path: str = "/"


@attrs.frozen
class GlobResult:
    paths: tuple[str, ...]
    truncated: bool = False


@attrs.frozen
class GrepRequest:
    pattern: str
    path: str = "/"
    glob: str | None = None
    fixed_strings: bool = False
    max_results: int = 200


@attrs.frozen
class GrepMatch:
    path: str
    line: int
    text: str


@attrs.frozen
class GrepResult:
    matches: tuple[GrepMatch, ...]
    truncated: bool = False


# --- exec -----------------------------------------------------------------------------


@attrs.frozen
class ExecRequest:
    """``POST /v1/exec`` and the first frame of ``WebSocket /v1/exec/stream``.

    ``command`` runs through ``sh -c`` in the workspace (``cwd`` is a workspace path),
    in its own process group; ``timeout_s`` defaults to ``SANDBOX_EXEC_TIMEOUT_S``.
    """

    command: str
    cwd: str | None = None
    env: dict[str, str] | None = None
    timeout_s: float | None = None


@attrs.frozen
class ExecResult:
    """Answer of ``POST /v1/exec``; ``exit_code`` is 124 on timeout."""

    exit_code: int
    stdout: str
    stderr: str
    truncated: bool
    timed_out: bool
    duration_ms: int


@attrs.frozen
class ExecOutput:
    """A streamed output frame of ``/v1/exec/stream``."""

    stream: Literal["stdout", "stderr"]
    data: str


@attrs.frozen
class ExecExit:
    """The last frame of ``/v1/exec/stream``."""

    exit_code: int
    timed_out: bool
    duration_ms: int = 0
    truncated: bool = False


# --- dev server -----------------------------------------------------------------------

PreviewState = Literal["starting", "running", "backoff", "exhausted", "stopped"]


@attrs.frozen
class PreviewStatus:
    """``GET /v1/preview``; also the body of ``/readyz``."""

    state: PreviewState
    pid: int | None
    restarts: int
    max_restarts: int
    last_exit_code: int | None
    port: int
    ready: bool


@attrs.frozen
class PreviewLogs:
    """``GET /v1/preview/logs?tail=N``."""

    lines: tuple[str, ...]
