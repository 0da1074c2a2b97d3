"""Settings of the LLM loop (models, budgets, QA, HITL, auto-heal), read once from the env.

Names follow the upstream implementation where it has one (``DEEPAGENTS_*``,
``AMICABLE_RUNTIME_AUTO_HEAL*``) and ``AMICABLE_*`` otherwise. ``ANTHROPIC_BASE_URL`` is
honoured by passing it to the SDK client explicitly. The model variables are described in
:mod:`.models`, the spend budgets in :mod:`.spend`.

=========================================================  ============================
variable                                                   default
=========================================================  ============================
DEEPAGENTS_MODEL / AMICABLE_MODEL: ``anthropic:<model>``,  anthropic:claude-sonnet-5-5
``openai:<model>`` or an AMICABLE_MODELS id
ANTHROPIC_API_KEY / ANTHROPIC_API_KEY_FILE                 unset (no model: no engine)
ANTHROPIC_BASE_URL                                         SDK default
OPENAI_API_KEY / OPENAI_API_KEY_FILE                       unset (optional for local servers)
OPENAI_BASE_URL                                            https://api.openai.com/v1
AMICABLE_MODELS (JSON list, see models.py)                 unset (only the default)
AMICABLE_SMALL_MODEL (id or provider:model)                the default model
AMICABLE_BUDGET_* (see spend.py)                           no budgets
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
AMICABLE_AUTOHEAL_SCREENSHOT (a screenshot in auto-heal)   true
AMICABLE_QA_SCREENSHOT (look at the result after QA)       false
AMICABLE_WEB_* (web_fetch, web_search)                     off; see amicable_agent.web
=========================================================  ============================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from amicable_settings import boolean, comma_list, errors_as, json_value, number, string

from amicable_agent.errors import ConfigError
from amicable_agent.web import WebConfig

from .models import ModelCatalog, ModelSpec, ProviderName, parse_models, spec_for, split_model
from .redact import known_secrets, looks_secret
from .spend import Budgets

if TYPE_CHECKING:
    from collections.abc import Mapping


#: Default model: a current Claude Sonnet.
DEFAULT_MODEL = "claude-sonnet-5-5"


class LoopConfigError(ConfigError):
    """An environment variable of the loop has an invalid value."""


def _num(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0) -> float:
    # The loop clamps out-of-range numbers to the minimum rather than refusing them.
    return max(minimum, number(env, name, default))


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    # Parsed as a number, so "2e6" tokens or "2.0" rounds are accepted (and truncated).
    return int(_num(env, name, default, minimum=minimum))


def _default_model(
    env: Mapping[str, str], models: tuple[ModelSpec, ...]
) -> tuple[ModelSpec, dict[str, Any]]:
    """The deployment default and the settings fields that describe it."""
    raw = string(env, "DEEPAGENTS_MODEL", string(env, "AMICABLE_MODEL", DEFAULT_MODEL))
    named = next((m for m in models if m.id == raw), None)
    if named is not None:
        spec = named
    else:
        try:
            provider, name = split_model(raw)
        except ConfigError as exc:
            raise LoopConfigError(f"DEEPAGENTS_MODEL: {exc}") from exc
        spec = spec_for(env, f"{provider}:{name}", provider, name)
    fields = {"provider": spec.provider, "model": spec.model, "api_key": spec.api_key,
              "base_url": spec.base_url, "model_id": spec.id}  # fmt: skip
    return spec, fields


def _small_model(env: Mapping[str, str], models: tuple[ModelSpec, ...]) -> tuple[ModelSpec, ...]:
    """``AMICABLE_SMALL_MODEL`` as a spec, when it names no configured model."""
    raw = string(env, "AMICABLE_SMALL_MODEL", None)
    if raw is None or any(m.id == raw for m in models):
        return ()
    try:
        provider, name = split_model(raw)
    except ConfigError as exc:
        raise LoopConfigError(f"AMICABLE_SMALL_MODEL: {exc}") from exc
    return (spec_for(env, f"{provider}:{name}", provider, name),)


def _interrupt_on(env: Mapping[str, str]) -> frozenset[str]:
    value: Any = json_value(env, "DEEPAGENTS_HITL_INTERRUPT_ON_JSON", None)
    if value is None:
        return frozenset()
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    if isinstance(value, dict):
        # LangChain shape: {"tool": true | false | {allowed_decisions: [...]}}.
        return frozenset(str(k) for k, v in value.items() if v not in (False, None))
    raise LoopConfigError("DEEPAGENTS_HITL_INTERRUPT_ON_JSON must be an object or a list")


@attrs.frozen
class LoopSettings:
    """Everything the turn engine needs to know about its environment.

    Attributes:
        provider: the default model's provider (``anthropic`` or ``openai``).
        model: the default model's name at its provider (prefix stripped).
        api_key: the default model's key (``ANTHROPIC_API_KEY`` or ``OPENAI_API_KEY``, or
            the ``_FILE`` variants); never logged.
        base_url: the default model's API (``ANTHROPIC_BASE_URL`` / ``OPENAI_BASE_URL``;
            tests point it at a fake server).
        model_id: the default model's id (None: ``provider:model``).
        models: the other models on offer (``AMICABLE_MODELS``, and the small model).
        small_model_id: the model of small tasks (None: the default).
        budgets: spend budgets per user and project (``AMICABLE_BUDGET_*``).
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
        autoheal_screenshot / qa_screenshot: attach a screenshot of the preview to auto-heal
            turns / show one to the model once after QA passed (``loop/visual.py``).
        web: the web tools' settings (``amicable_agent.web``; both off by default).
        known_secrets: values redacted from tool results and traces wherever they appear:
            the API key and every environment variable whose name looks secret (see
            :func:`amicable_agent.loop.redact.known_secrets`); never logged.
    """

    model: str = DEFAULT_MODEL
    api_key: str | None = attrs.field(default=None, repr=False)
    base_url: str | None = None
    provider: ProviderName = "anthropic"
    model_id: str | None = None
    models: tuple[ModelSpec, ...] = ()
    small_model_id: str | None = None
    budgets: Budgets = attrs.field(factory=Budgets)
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
    autoheal_screenshot: bool = True
    qa_screenshot: bool = False
    web: WebConfig = attrs.field(factory=WebConfig)
    known_secrets: tuple[str, ...] = attrs.field(default=(), repr=False)

    @property
    def model_configured(self) -> bool:
        """True when the default model can be called: an Anthropic key, or for an
        OpenAI-compatible server a key or a base URL (local servers need no key)."""
        if self.provider == "openai":
            return bool(self.api_key or self.base_url)
        return bool(self.api_key)

    def catalog(self) -> ModelCatalog:
        """Every model on offer, the default first."""
        default = self.default_spec()
        rest = tuple(m for m in self.models if m.id != default.id)
        return ModelCatalog((default, *rest), small_id=self.small_model_id)

    def default_spec(self) -> ModelSpec:
        """The deployment default model."""
        model_id = self.model_id or f"{self.provider}:{self.model}"
        named = next((m for m in self.models if m.id == model_id), None)
        if named is not None:
            return named
        from .models import default_max_tokens_field

        return ModelSpec(
            id=model_id,
            provider=self.provider,
            model=self.model,
            base_url=self.base_url,
            api_key=self.api_key,
            max_tokens_field=default_max_tokens_field(self.provider, self.base_url),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LoopSettings:
        """Read the settings from ``env`` (``os.environ`` in ``__main__``).

        Raises:
            LoopConfigError: a variable has a value that cannot be used.
        """
        with errors_as(LoopConfigError):
            return cls._from_env(env)

    @classmethod
    def _from_env(cls, env: Mapping[str, str]) -> LoopSettings:
        trigger_default = _int(env, "DEEPAGENTS_SUMMARIZATION_TRIGGER_MESSAGES", 50)
        trigger = max(5, _int(env, "AMICABLE_COMPACTION_TRIGGER_MESSAGES", trigger_default))
        qa_enabled = boolean(env, "DEEPAGENTS_QA", True) or boolean(
            env, "DEEPAGENTS_VALIDATE", False
        )
        models = parse_models(env)
        _, default_fields = _default_model(env, models)
        models += _small_model(env, models)
        small = string(env, "AMICABLE_SMALL_MODEL", None)
        if small is not None and ":" in small and not any(m.id == small for m in models):
            small = ":".join(split_model(small))
        return cls(
            **default_fields,
            models=models,
            small_model_id=small,
            budgets=Budgets.from_env(env),
            max_output_tokens=_int(env, "AMICABLE_MAX_OUTPUT_TOKENS", 8192, minimum=256),
            turn_timeout_s=_num(env, "AMICABLE_TURN_TIMEOUT_S", 900.0, minimum=1),
            turn_max_tool_calls=_int(env, "AMICABLE_TURN_MAX_TOOL_CALLS", 60, minimum=1),
            turn_max_tokens=_int(env, "AMICABLE_TURN_MAX_TOKENS", 2_000_000, minimum=1000),
            request_timeout_s=_num(env, "AMICABLE_LLM_REQUEST_TIMEOUT_S", 300.0, minimum=1),
            llm_max_retries=_int(env, "AMICABLE_LLM_MAX_RETRIES", 4),
            qa_enabled=qa_enabled,
            qa_commands=comma_list(env, "DEEPAGENTS_QA_COMMANDS", None),
            qa_run_tests=boolean(env, "DEEPAGENTS_QA_RUN_TESTS", False),
            qa_timeout_s=_num(env, "DEEPAGENTS_QA_TIMEOUT_S", 600.0, minimum=1),
            qa_parallel=boolean(env, "AMICABLE_QA_PARALLEL", True),
            self_heal_max_rounds=_int(env, "DEEPAGENTS_SELF_HEAL_MAX_ROUNDS", 2),
            hitl_interrupt_on=_interrupt_on(env),
            auto_heal_enabled=boolean(env, "AMICABLE_RUNTIME_AUTO_HEAL", True),
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
            autoheal_screenshot=boolean(env, "AMICABLE_AUTOHEAL_SCREENSHOT", True),
            qa_screenshot=boolean(env, "AMICABLE_QA_SCREENSHOT", False),
            web=WebConfig.from_env(env),
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
