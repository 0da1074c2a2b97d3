"""Errors of the sandbox runtime.

Exception tree::

    RuntimeApiError            root; carries the wire ``code`` and HTTP ``status``
    ├── Unauthorized           401 unauthorized   missing or wrong bearer token
    ├── InvalidPath            400 invalid_path   escape, NUL byte, symlink out of the workspace
    ├── InvalidRequest         400 invalid_request body or query does not match the type
    ├── NotFound               404 not_found      no such file or directory
    ├── IsDirectory            400 is_directory   a file operation on a directory
    ├── Conflict               409 conflict       If-Match mismatch, edit matched 0 / >1 times
    ├── TooLarge               413 too_large      body over ``AMICABLE_MAX_FILE_BYTES``
    ├── PathTooLong            400 path_too_long  a path over 4096 bytes or a name over 255
    ├── CommandTooLong         413 command_too_long  an exec command over 1 MiB
    └── ExecFailed             500 exec_failed    the command could not be started

    ConfigError                invalid configuration (raised by ``config.load_config``)
    TemplateError              unknown template or a failed ``npm ci`` (``init-workspace``)
    CallerGone                 the client of an exec left; the command was killed (no answer)
"""

from __future__ import annotations

from typing import ClassVar

from amicable_settings import SettingsError


class RuntimeApiError(Exception):
    """Root of the errors answered on the wire as :class:`~amicable_protocol.http.ErrorBody`.

    Attributes:
        code: stable machine code (``error`` on the wire).
        status: HTTP status code.
        detail: a sentence for people.
    """

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthorized(RuntimeApiError):
    """Missing or wrong bearer token."""

    code = "unauthorized"
    status = 401


class InvalidPath(RuntimeApiError):
    """A path that leaves the workspace or cannot name a file."""

    code = "invalid_path"
    status = 400


class InvalidRequest(RuntimeApiError):
    """A body or query that does not match its type."""

    code = "invalid_request"
    status = 400


class NotFound(RuntimeApiError):
    """No such file or directory."""

    code = "not_found"
    status = 404


class IsDirectory(RuntimeApiError):
    """A file operation on a directory."""

    code = "is_directory"
    status = 400


class Conflict(RuntimeApiError):
    """The current state does not allow the change (If-Match, ambiguous edit, existing target)."""

    code = "conflict"
    status = 409


class TooLarge(RuntimeApiError):
    """A body over the configured limit."""

    code = "too_large"
    status = 413


class PathTooLong(RuntimeApiError):
    """A path over ``MAX_PATH_BYTES`` or with a name over ``MAX_NAME_BYTES`` (UTF-8)."""

    code = "path_too_long"
    status = 400


class CommandTooLong(RuntimeApiError):
    """An exec command over ``MAX_COMMAND_BYTES``."""

    code = "command_too_long"
    status = 413


class ExecFailed(RuntimeApiError):
    """The command could not be started (``fork``/``exec`` failed); ``detail`` says why."""

    code = "exec_failed"
    status = 500


class ConfigError(SettingsError):
    """The environment or command line does not form a valid configuration."""


class TemplateError(RuntimeError):
    """Unknown template, or preparing a workspace failed."""


class CallerGone(Exception):
    """The caller of an exec went away (client disconnect); its process group was killed."""
