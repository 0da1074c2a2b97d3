"""Errors of the agent service.

Exception tree::

    AgentError
    ├── SandboxError                 a sandbox backend could not do what was asked
    │   ├── SandboxNotFound          no such sandbox (unknown id, already deleted)
    │   └── SandboxProvisionError    create/start failed; ``reason`` is shown to the user
    ├── RuntimeClientError           the sandbox runtime API answered with an error
    │                                (``status``, ``code``, ``detail`` from its error body)
    ├── UnsafeArchive                an archive from a sandbox is too large or holds an
    │                                entry leaving the project (``code``: ``too_large``,
    │                                ``unsafe_archive``)
    ├── HasuraError                  Hasura answered with an error or not at all
    │                                (``status`` 0 = unreachable/timeout, ``code``, ``detail``)
    ├── StoreUnavailable             the projects store (PostgreSQL) cannot be reached or
    │                                failed in the middle of a call
    ├── TurnRunning                  the project's session has a turn running or queued
    └── CheckpointError              a checkpoint (git in the sandbox) operation failed
                                     (``code``: ``not_found``, ``git_unavailable``,
                                     ``git_failed``)
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(AgentError, ValueError):
    """An environment variable has a value the agent cannot use."""


class SandboxError(AgentError):
    """A sandbox backend operation failed."""


class SandboxNotFound(SandboxError):
    """The sandbox does not exist."""


class SandboxProvisionError(SandboxError):
    """Provisioning failed; ``reason`` is a sentence for the user (no secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RuntimeClientError(AgentError):
    """The sandbox runtime answered with an error body (or not at all: ``status`` 0)."""

    def __init__(self, status: int, code: str, detail: str = "") -> None:
        super().__init__(f"{status} {code}: {detail}" if detail else f"{status} {code}")
        self.status = status
        self.code = code
        self.detail = detail


class UnsafeArchive(AgentError):
    """An archive a sandbox produced breaks the agent's limits or rules (``code``
    ``too_large`` or ``unsafe_archive``; ``detail`` names the entry)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class HasuraError(AgentError):
    """Hasura answered >= 400 (``status``, its error ``code``) or not at all (``status`` 0)."""

    def __init__(self, status: int, code: str, detail: str = "") -> None:
        super().__init__(
            f"hasura {status} {code}: {detail}" if detail else f"hasura {status} {code}"
        )
        self.status = status
        self.code = code
        self.detail = detail


class StoreUnavailable(AgentError):
    """The projects store cannot be reached (or dropped the connection mid-call)."""


class TurnRunning(AgentError):
    """The project's session has a turn running or queued (the request must wait for it)."""


class CheckpointError(AgentError):
    """A checkpoint operation in the sandbox failed.

    ``code`` is ``not_found`` (no such checkpoint), ``git_unavailable`` (git is not
    installed in the sandbox) or ``git_failed`` (git answered with an error; ``detail``
    holds its message).
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
