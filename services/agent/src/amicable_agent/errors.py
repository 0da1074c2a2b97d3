"""Errors of the agent service.

Every error the agent raises on purpose across a module boundary derives from
:class:`AgentError`. Classes defined elsewhere, next to the code that raises them, name
their module in brackets; ``tests/agent/core/test_errors_tree.py`` checks that this drawing
lists every exception class of the package under its real base.

Exception tree::

    AgentError
    ├── ConfigError                  an environment variable has a value the agent cannot use
    │   │                            (also an ``amicable_settings.SettingsError``, a ValueError)
    │   ├── LoopConfigError          ... a variable of the LLM loop [loop/settings.py]
    │   ├── PortInUse                a port to listen on is taken (names the flag to change)
    │   └── RunDirInUse              another live agent runs on the same data directory
    ├── SandboxError                 a sandbox backend could not do what was asked
    │   ├── SandboxNotFound          no such sandbox (unknown id, already deleted)
    │   ├── SandboxProvisionError    create/start failed; ``reason`` is shown to the user
    │   ├── EngineError              the container engine's API (Docker/Podman) answered with
    │   │   │                        an error or not at all [sandboxes/container/engine.py]
    │   │   ├── EngineNotFound       404: no such container, volume, network or image
    │   │   └── EngineConflict       409: the name is taken, or the object is in use
    │   └── FenceError               the sandbox network's nftables fence could not be
    │                                applied [sandboxes/container/fence.py]
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
    ├── LeaseLost                    a write carried a stale turn-lease token (another
    │                                replica took the project over)
    ├── CheckpointError              a checkpoint (git in the sandbox) operation failed
    │                                (``code``: ``not_found``, ``git_unavailable``,
    │                                ``git_failed``)
    ├── SnapshotError                a project snapshot could not be taken, stored or
    │                                restored (``code``: ``conflict``, ``diverged``,
    │                                ``too_large``, ``invalid_bundle``, ``storage``, ``failed``)
    ├── HttpError                    a route answers ``{error, detail}`` with ``status``
    │   │                            [http/bodies.py]
    │   └── RichError                ... with fields besides ``{error, detail}`` (upstream's
    │                                409 bodies of a schema apply) [http/dbschema_apply.py]
    ├── LlmError                     the model API failed for good, after retries; ``message``
    │                                is fit for the user [loop/model_api.py]
    ├── Retryable                    a model call failed in a way worth another try; never
    │                                leaves the loop's retry loop [loop/model_api.py]
    ├── ChunkError                   a Chat Completions stream sent an error chunk mid-way
    │                                (retried) [loop/openai_wire.py]
    ├── UnknownModel                 a model id the deployment does not offer; the editor
    │                                is told, the project's model is used [loop/selection.py]
    ├── HitlValidationError          a ``hitl_response`` that cannot be applied [loop/hitl.py]
    ├── ToolInputError               the model called a tool with missing or mistyped
    │                                arguments; the model is told [loop/tools.py]
    ├── DbToolInputError             the model's DB tool arguments are invalid; the model is
    │                                told (also a ValueError) [db/tools.py]
    ├── InvalidJwt                   a Hasura token that does not verify: shape, algorithm,
    │                                signature or expiry (also a ValueError) [db/jwt.py]
    ├── InvalidDraft                 a database schema draft the editor cannot use: a name,
    │                                type, default or change refused (also a ValueError)
    │                                [db/schema_model.py]
    ├── IntentReplyError             the model's answer to a schema intent is not a usable
    │                                draft (also a ValueError) [db/schema_intent.py]
    ├── InvalidRow                   a row change from the database pane that will not be
    │                                sent: column, value or key refused (``code``; also a
    │                                ValueError) [db/rows.py]
    ├── NoDown                       an applied schema change cannot be undone by a restore
    │                                (no or an invalid undo record) [db/schema_down.py]
    ├── AccessDenied                 the caller may not do this (``status``, ``code``:
    │   │                            ``read_only``, ``owner_only``) [auth/access.py]
    │   ├── ProjectNotFound          404: no such project, or one the caller may not see
    │   └── QuotaExceeded            429: a per-user or global limit is reached
    ├── LoginError                   a login could not complete; ``detail`` is shown
    │                                [auth/oidc.py]
    ├── BrowserError                 the preview browser could not take a screenshot; the
    │   │                            message is fit for the model [browser/errors.py]
    │   ├── BrowserUnavailable       Chromium is missing or did not start
    │   ├── BrowserCrashed           Chromium died (or closed its pipe) during a call
    │   ├── CdpError                 a DevTools call was answered with an error
    │   ├── CaptureFailed            the page did not load or could not be captured
    │   └── PreviewPathRefused       the path leaves the preview (also a ValueError)
    ├── WebError                     a web tool failed; the message is fit for the model
    │   │                            [web/errors.py]
    │   ├── FetchRefused             the URL or a redirect target is not public (SSRF guard)
    │   ├── FetchFailed              DNS, connection, TLS, timeout, redirects, not text
    │   └── SearchFailed             the search provider failed or refused
    ├── GitSyncError                 GitLab persistence failed (``code``, ``detail``: never
    │   │                            the token) [gitsync/errors.py]
    │   ├── GitLabApiError           the GitLab REST API answered >= 400 or not at all
    │   │                            (``status`` 0 = unreachable/timeout)
    │   ├── GitCommandError          a ``git`` command failed or timed out
    │   └── NoBaseline               a pull into a sandbox that was never synced
    │                                [gitsync/pull.py]
    └── KubeApiError                 the Kubernetes API answered with an error or not at all;
        │                            never leaves the Kubernetes backend, which turns it into
        │                            a SandboxError [sandboxes/kubernetes/api.py]
        ├── KubeNotFound             404: the object, or the resource type (missing CRD)
        ├── KubeForbidden            403: RBAC denies the call
        ├── KubeConflict             409: AlreadyExists or a resourceVersion conflict
        ├── KubeGone                 410: a watch's resourceVersion is too old
        ├── KubeInvalid              422: the object failed validation
        └── KubeUnavailable          no answer: refused, reset, timeout, or a 5xx

Private exceptions (``loop/anthropic_api.py``'s ``_DroppedStream``, ``loop/openai_api.py``'s
``_StatusError`` and ``_EndedEarly``) never leave their module; the test lists why one is
not an AgentError.
"""

from __future__ import annotations

from amicable_settings import SettingsError


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(AgentError, SettingsError):
    """An environment variable has a value the agent cannot use (a ``ValueError``)."""


class PortInUse(ConfigError):
    """A port the agent (or its preview router) must listen on is taken; the message names
    the port and the flag or variable that changes it."""


class RunDirInUse(ConfigError):
    """Another live agent runs children from the same data directory."""


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


class LeaseLost(AgentError):
    """A write carried a stale turn-lease token: another replica took the project over."""


class CheckpointError(AgentError):
    """A checkpoint operation in the sandbox failed.

    ``code`` is ``not_found`` (no such checkpoint), ``git_unavailable`` (git is not
    installed in the sandbox), ``history_full`` (the history uses more disk than allowed,
    even after ``git gc``; ``detail`` says so for people) or ``git_failed`` (git answered
    with an error; ``detail`` holds its message).
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class SnapshotError(AgentError):
    """A project snapshot (a git bundle copied out of the sandbox) failed.

    ``code``: ``conflict`` (the stored history moved under the writer), ``diverged`` (the
    sandbox's history does not continue the stored one: never stored over it),
    ``too_large`` (over the size cap), ``invalid_bundle`` (the sandbox's bundle did not
    verify), ``storage`` (the snapshot store failed) or ``failed`` (git or the sandbox
    failed); ``detail`` says more.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
