"""Configuration of the sandbox runtime (one frozen object, loaded once in ``__main__``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from amicable_settings import errors_as, integer, seconds, secret, string

from .errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_PREVIEW_CMD = "npm run dev -- --host {host} --port {port}"


@attrs.frozen
class RuntimeConfig:
    """Everything the runtime needs; see the README's config table for the env names.

    Attributes:
        host / port: where the API listens (port 0 picks a free port).
        workspace: the workspace root every path is confined to.
        token: bearer token for ``/v1/*``; ``None`` only with ``insecure_no_auth``.
        insecure_no_auth: serve ``/v1/*`` without a token (development only).
        preview_cmd: dev-server shell command; ``None`` disables the supervisor.
        preview_host / preview_port: where the dev server listens (probed for readiness).
        preview_max_restarts: dev-server restarts per hour (a budget that refills over
            time; run dry it is ``exhausted`` until a restart has refilled).
        preview_log_path: optional file the dev-server output is appended to.
        exec_timeout_s: default ``/v1/exec`` timeout.
        exec_max_output_chars: per-stream output cap of an exec.
        max_file_bytes: largest accepted ``PUT /v1/files`` body.
        ready_file: once listening, write ``{"port", "pid"}`` JSON here.
    """

    workspace: Path
    token: str | None = attrs.field(default=None, repr=False)
    host: str = "0.0.0.0"
    port: int = 8888
    insecure_no_auth: bool = False
    preview_cmd: str | None = None
    preview_host: str = "0.0.0.0"
    preview_port: int = 3000
    preview_max_restarts: int = 100
    preview_log_path: Path | None = None
    preview_log_lines: int = 2000
    preview_backoff_initial_s: float = 0.5
    preview_backoff_max_s: float = 10.0
    preview_probe_interval_s: float = 0.5
    exec_timeout_s: float = 600.0
    exec_max_output_chars: int = 200_000
    max_file_bytes: int = 20 * 1024 * 1024
    ready_file: Path | None = None

    def __attrs_post_init__(self) -> None:
        if not self.token and not self.insecure_no_auth:
            raise ConfigError(
                "no AMICABLE_RUNTIME_TOKEN (or AMICABLE_RUNTIME_TOKEN_FILE) configured; "
                "refusing to start without auth (use --insecure-no-auth for development)"
            )
        if self.exec_max_output_chars < 1 or self.max_file_bytes < 1:
            raise ConfigError("output and file size limits must be positive")


def load_config(
    env: Mapping[str, str],
    *,
    insecure_no_auth: bool = False,
    no_preview: bool = False,
    ready_file: Path | None = None,
    port: int | None = None,
    workspace: Path | None = None,
) -> RuntimeConfig:
    """Build the config from environment variables plus command-line overrides.

    Raises:
        ConfigError: a malformed value, or no token without ``insecure_no_auth``.
    """
    with errors_as(ConfigError):
        return _load(
            env,
            insecure_no_auth=insecure_no_auth,
            no_preview=no_preview,
            ready_file=ready_file,
            port=port,
            workspace=workspace,
        )


def _template_dev_command(template_id: str) -> str:
    """The registry's dev-server command of ``AMICABLE_TEMPLATE`` (it reads the preview host
    and port from the environment the supervisor sets)."""
    from amicable_templates import TemplateError, get_template

    try:
        return get_template(template_id).dev_command
    except TemplateError as exc:
        raise ConfigError(f"AMICABLE_TEMPLATE: {exc}") from None


def _load(
    env: Mapping[str, str],
    *,
    insecure_no_auth: bool,
    no_preview: bool,
    ready_file: Path | None,
    port: int | None,
    workspace: Path | None,
) -> RuntimeConfig:
    preview_host = string(env, "AMICABLE_PREVIEW_HOST", "0.0.0.0")
    preview_port = integer(env, "AMICABLE_PREVIEW_PORT", 3000, minimum=1, maximum=65535)
    template_id = string(env, "AMICABLE_TEMPLATE", "")
    if "AMICABLE_PREVIEW_CMD" in env:
        preview_cmd: str | None = env["AMICABLE_PREVIEW_CMD"].strip() or None
    elif template_id:
        preview_cmd = _template_dev_command(template_id)
    else:
        preview_cmd = DEFAULT_PREVIEW_CMD.format(host=preview_host, port=preview_port)
    log_path = string(env, "AMICABLE_PREVIEW_LOG_PATH", "")
    return RuntimeConfig(
        workspace=workspace or Path(string(env, "AMICABLE_WORKSPACE", "/app")),
        token=secret(env, "AMICABLE_RUNTIME_TOKEN"),
        host=string(env, "AMICABLE_RUNTIME_HOST", "0.0.0.0"),
        port=port
        if port is not None
        else integer(env, "AMICABLE_RUNTIME_PORT", 8888, minimum=0, maximum=65535),
        insecure_no_auth=insecure_no_auth,
        preview_cmd=None if no_preview else preview_cmd,
        preview_host=preview_host,
        preview_port=preview_port,
        preview_max_restarts=integer(env, "AMICABLE_PREVIEW_MAX_RESTARTS", 100, minimum=0),
        preview_log_path=Path(log_path) if log_path else None,
        exec_timeout_s=seconds(env, "SANDBOX_EXEC_TIMEOUT_S", 600.0),
        exec_max_output_chars=integer(env, "SANDBOX_EXEC_MAX_OUTPUT_CHARS", 200_000, minimum=0),
        max_file_bytes=integer(env, "AMICABLE_MAX_FILE_BYTES", 20 * 1024 * 1024, minimum=0),
        ready_file=ready_file,
    )
