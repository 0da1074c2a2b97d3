"""Settings of the LLM loop (model, budgets, QA, HITL, auto-heal), read once from the env.

Names follow the upstream implementation where it has one (``DEEPAGENTS_*``,
``AMICABLE_RUNTIME_AUTO_HEAL*``) and ``AMICABLE_*`` otherwise. ``ANTHROPIC_BASE_URL`` is
honoured by passing it to the SDK client explicitly.

=========================================================  ============================
variable                                                   default
=========================================================  ============================
DEEPAGENTS_MODEL (``anthropic:<id>`` ok) / AMICABLE_MODEL  claude-sonnet-5-5
ANTHROPIC_API_KEY / ANTHROPIC_API_KEY_FILE                 unset (no model: no engine)
ANTHROPIC_BASE_URL                                         SDK default
AMICABLE_MAX_OUTPUT_TOKENS                                 8192
AMICABLE_TURN_TIMEOUT_S                                    900
AMICABLE_TURN_MAX_TOOL_CALLS                               60
AMICABLE_TURN_MAX_TOKENS (input+output, all calls)         2000000
AMICABLE_LLM_REQUEST_TIMEOUT_S / AMICABLE_LLM_MAX_RETRIES  300 / 4
DEEPAGENTS_QA (or legacy DEEPAGENTS_VALIDATE)              true
DEEPAGENTS_QA_COMMANDS (CSV, overrides detection)          unset
DEEPAGENTS_QA_RUN_TESTS                                    false
DEEPAGENTS_QA_TIMEOUT_S                                    600
AMICABLE_QA_PARALLEL                                       true
DEEPAGENTS_SELF_HEAL_MAX_ROUNDS                            2
DEEPAGENTS_HITL_INTERRUPT_ON_JSON (object or list)         {}
AMICABLE_RUNTIME_AUTO_HEAL                                 true
AMICABLE_RUNTIME_AUTO_HEAL_COOLDOWN_S                      30
AMICABLE_RUNTIME_AUTO_HEAL_DEDUPE_WINDOW_S                 600
AMICABLE_RUNTIME_AUTO_HEAL_MAX_ATTEMPTS_PER_FINGERPRINT    2
AMICABLE_COMPACTION_TRIGGER_MESSAGES                       50 (min 5)
DEEPAGENTS_SUMMARIZATION_KEEP_MESSAGES                     20
=========================================================  ============================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from amicable_agent.errors import AgentError

from .redact import known_secrets, looks_secret

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Default model: a current Claude Sonnet.
DEFAULT_MODEL = "claude-sonnet-5-5"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class LoopConfigError(AgentError):
    """An environment variable of the loop has an invalid value."""


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise LoopConfigError(f"{name} must be a boolean, got {raw!r}")


def _num(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise LoopConfigError(f"{name} must be a number, got {raw!r}") from exc
    return max(minimum, value)


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    return int(_num(env, name, default, minimum=minimum))


def _secret(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value:
        return value.strip()
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise LoopConfigError(f"{name}_FILE cannot be read: {exc.strerror}") from exc
    return None


def _model(env: Mapping[str, str]) -> str:
    raw = (env.get("DEEPAGENTS_MODEL") or env.get("AMICABLE_MODEL") or DEFAULT_MODEL).strip()
    provider, sep, name = raw.partition(":")
    if sep:
        if provider != "anthropic":
            raise LoopConfigError(f"only anthropic models are supported, got {raw!r}")
        return name
    return raw


def _interrupt_on(env: Mapping[str, str]) -> frozenset[str]:
    raw = env.get("DEEPAGENTS_HITL_INTERRUPT_ON_JSON", "").strip()
    if not raw:
        return frozenset()
    try:
        value: Any = json.loads(raw)
    except ValueError as exc:
        raise LoopConfigError(f"DEEPAGENTS_HITL_INTERRUPT_ON_JSON is not JSON: {exc}") from exc
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    if isinstance(value, dict):
        # LangChain shape: {"tool": true | false | {allowed_decisions: [...]}}.
        return frozenset(str(k) for k, v in value.items() if v not in (False, None))
    raise LoopConfigError("DEEPAGENTS_HITL_INTERRUPT_ON_JSON must be an object or a list")


def _csv(raw: str | None) -> tuple[str, ...] | None:
    if raw is None or not raw.strip():
        return None
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@attrs.frozen
class LoopSettings:
    """Everything the turn engine needs to know about its environment.

    Attributes:
        model: Anthropic model id (``anthropic:`` prefix stripped).
        api_key: ``ANTHROPIC_API_KEY`` (or ``ANTHROPIC_API_KEY_FILE``); never logged.
        base_url: ``ANTHROPIC_BASE_URL`` (tests point it at the fake server).
        max_output_tokens: ``max_tokens`` of each model request.
        turn_timeout_s: wall-clock bound of one turn (``AMICABLE_TURN_TIMEOUT_S``).
        turn_max_tool_calls / turn_max_tokens: per-turn budget; exceeding it stops the turn
            with a clear message. Tokens count input + output of every model call.
        request_timeout_s: deadline of one model request (connect to last event).
        llm_max_retries / llm_retry_base_s / llm_retry_max_s: retry policy for 429/529/5xx
            and dropped streams (exponential backoff, ``retry-after`` honoured).
        partial_interval_s: minimum spacing of ``agent_partial`` messages.
        qa_enabled … qa_parallel: QA settings of upstream §5.5 and ``AMICABLE_QA_PARALLEL``.
        self_heal_max_rounds: QA self-heal rounds (``DEEPAGENTS_SELF_HEAL_MAX_ROUNDS``).
        hitl_interrupt_on: extra tool names that need approval.
        auto_heal_*: runtime-error auto-heal policy of upstream §1.7.
        compaction_trigger_messages / compaction_keep_messages: history compaction.
        context_budget_chars: request size (characters) above which old tool output is cut.
        tool_output_max_chars: cap on one tool result fed to the model.
        known_secrets: values redacted from tool results and traces wherever they appear:
            the API key and every environment variable whose name looks secret (see
            :func:`amicable_agent.loop.redact.known_secrets`); never logged.
    """

    model: str = DEFAULT_MODEL
    api_key: str | None = attrs.field(default=None, repr=False)
    base_url: str | None = None
    max_output_tokens: int = 8192
    turn_timeout_s: float = 900.0
    turn_max_tool_calls: int = 60
    turn_max_tokens: int = 2_000_000
    request_timeout_s: float = 300.0
    llm_max_retries: int = 4
    llm_retry_base_s: float = 1.0
    llm_retry_max_s: float = 30.0
    partial_interval_s: float = 0.05
    qa_enabled: bool = True
    qa_commands: tuple[str, ...] | None = None
    qa_run_tests: bool = False
    qa_timeout_s: float = 600.0
    qa_parallel: bool = True
    self_heal_max_rounds: int = 2
    hitl_interrupt_on: frozenset[str] = frozenset()
    auto_heal_enabled: bool = True
    auto_heal_cooldown_s: float = 30.0
    auto_heal_dedupe_window_s: float = 600.0
    auto_heal_max_attempts_per_fingerprint: int = 2
    compaction_trigger_messages: int = 50
    compaction_keep_messages: int = 20
    context_budget_chars: int = 400_000
    tool_output_max_chars: int = 30_000
    known_secrets: tuple[str, ...] = attrs.field(default=(), repr=False)

    @property
    def model_configured(self) -> bool:
        """True when an Anthropic API key is configured."""
        return bool(self.api_key)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LoopSettings:
        """Read the settings from ``env`` (``os.environ`` in ``__main__``).

        Raises:
            LoopConfigError: a variable has a value that cannot be used.
        """
        trigger_default = _int(env, "DEEPAGENTS_SUMMARIZATION_TRIGGER_MESSAGES", 50)
        trigger = max(5, _int(env, "AMICABLE_COMPACTION_TRIGGER_MESSAGES", trigger_default))
        qa_enabled = _bool(env, "DEEPAGENTS_QA", True) or _bool(env, "DEEPAGENTS_VALIDATE", False)
        return cls(
            model=_model(env),
            api_key=_secret(env, "ANTHROPIC_API_KEY"),
            base_url=env.get("ANTHROPIC_BASE_URL") or None,
            max_output_tokens=_int(env, "AMICABLE_MAX_OUTPUT_TOKENS", 8192, minimum=256),
            turn_timeout_s=_num(env, "AMICABLE_TURN_TIMEOUT_S", 900.0, minimum=1),
            turn_max_tool_calls=_int(env, "AMICABLE_TURN_MAX_TOOL_CALLS", 60, minimum=1),
            turn_max_tokens=_int(env, "AMICABLE_TURN_MAX_TOKENS", 2_000_000, minimum=1000),
            request_timeout_s=_num(env, "AMICABLE_LLM_REQUEST_TIMEOUT_S", 300.0, minimum=1),
            llm_max_retries=_int(env, "AMICABLE_LLM_MAX_RETRIES", 4),
            qa_enabled=qa_enabled,
            qa_commands=_csv(env.get("DEEPAGENTS_QA_COMMANDS")),
            qa_run_tests=_bool(env, "DEEPAGENTS_QA_RUN_TESTS", False),
            qa_timeout_s=_num(env, "DEEPAGENTS_QA_TIMEOUT_S", 600.0, minimum=1),
            qa_parallel=_bool(env, "AMICABLE_QA_PARALLEL", True),
            self_heal_max_rounds=_int(env, "DEEPAGENTS_SELF_HEAL_MAX_ROUNDS", 2),
            hitl_interrupt_on=_interrupt_on(env),
            auto_heal_enabled=_bool(env, "AMICABLE_RUNTIME_AUTO_HEAL", True),
            auto_heal_cooldown_s=_num(env, "AMICABLE_RUNTIME_AUTO_HEAL_COOLDOWN_S", 30.0),
            auto_heal_dedupe_window_s=_num(
                env, "AMICABLE_RUNTIME_AUTO_HEAL_DEDUPE_WINDOW_S", 600.0
            ),
            auto_heal_max_attempts_per_fingerprint=_int(
                env, "AMICABLE_RUNTIME_AUTO_HEAL_MAX_ATTEMPTS_PER_FINGERPRINT", 2
            ),
            compaction_trigger_messages=trigger,
            compaction_keep_messages=max(
                2, _int(env, "DEEPAGENTS_SUMMARIZATION_KEEP_MESSAGES", 20)
            ),
            known_secrets=known_secrets(_with_secret_files(env)),
        )


def _with_secret_files(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus the contents of ``*_FILE`` variables (``HASURA_GRAPHQL_ADMIN_SECRET_FILE``
    -> ``HASURA_GRAPHQL_ADMIN_SECRET``) that are readable; the rest is ignored here."""
    out = dict(env)
    for name, path in env.items():
        stem = name.removesuffix("_FILE")
        if stem == name or stem in env or not path or not looks_secret(stem):
            continue
        try:
            out[stem] = Path(path).read_text(encoding="utf-8")[:65536].strip()
        except (OSError, UnicodeDecodeError):
            continue
    return out
