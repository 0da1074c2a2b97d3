"""The models a deployment offers: provider, endpoint, key, prices, context window.

``DEEPAGENTS_MODEL`` (or ``AMICABLE_MODEL``) is the deployment default: ``anthropic:<model>``,
``openai:<model>`` (any OpenAI-compatible server at ``OPENAI_BASE_URL``) or the ``id`` of an
``AMICABLE_MODELS`` entry. ``AMICABLE_MODELS`` adds named models for the editor's picker, a
JSON list of objects::

    [{"id": "local", "provider": "openai", "model": "qwen2.5-coder:14b",
      "base_url": "http://localhost:11434/v1", "label": "Qwen 2.5 Coder (Ollama)",
      "price_input_per_mtok": 0, "price_output_per_mtok": 0, "context_window": 32768,
      "images": false}]

Keys: ``id``, ``provider`` (``anthropic`` | ``openai``) and ``model`` are required; the rest
are optional: ``label``, ``base_url`` (default: the provider's ``*_BASE_URL``),
``api_key_env`` (the variable holding the key, default ``ANTHROPIC_API_KEY`` /
``OPENAI_API_KEY``; ``<name>_FILE`` works too), ``api_key_header`` (``authorization`` for a
Bearer token, ``api-key`` for Azure), ``price_*_per_mtok`` (USD per million tokens: input,
output, cache_read, cache_write; default: list prices of known model families, else 0),
``context_window`` (tokens), ``images`` (default true), ``max_tokens_field`` (default
``max_completion_tokens`` for api.openai.com, else ``max_tokens``).
``AMICABLE_SMALL_MODEL`` (an id or ``provider:model``) runs small tasks (history summaries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import attrs
import cattrs
from amicable_protocol.messages import ModelChoice
from amicable_settings import json_value, secret, string

from amicable_agent.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .model_api import TokenUsage

ProviderName = Literal["anthropic", "openai"]
PROVIDERS: tuple[ProviderName, ...] = ("anthropic", "openai")
KEY_ENV: dict[str, str] = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
BASE_URL_ENV: dict[str, str] = {"anthropic": "ANTHROPIC_BASE_URL", "openai": "OPENAI_BASE_URL"}

# USD per million tokens: (input, output, cache write, cache read), by model family; the
# first family contained in the model name wins. Deployments set their own in AMICABLE_MODELS.
_PRICES: dict[str, tuple[float, float, float, float]] = {
    "opus-4-5": (5.0, 25.0, 6.25, 0.50),
    "opus-4-6": (5.0, 25.0, 6.25, 0.50),
    "opus": (15.0, 75.0, 18.75, 1.50),
    "sonnet": (3.0, 15.0, 3.75, 0.30),
    "haiku-4": (1.0, 5.0, 1.25, 0.10),
    "haiku": (0.80, 4.0, 1.0, 0.08),
    "gpt-4.1-nano": (0.10, 0.40, 0.0, 0.025),
    "gpt-4.1-mini": (0.40, 1.60, 0.0, 0.10),
    "gpt-4.1": (2.0, 8.0, 0.0, 0.50),
    "gpt-4o-mini": (0.15, 0.60, 0.0, 0.075),
    "gpt-4o": (2.5, 10.0, 0.0, 1.25),
    "gpt-5-nano": (0.05, 0.40, 0.0, 0.005),
    "gpt-5-mini": (0.25, 2.0, 0.0, 0.025),
    "gpt-5": (1.25, 10.0, 0.0, 0.125),
}


@attrs.frozen
class ModelSpec:
    """One model the loop can call.

    Attributes:
        id: what the editor and the store call it (``anthropic:claude-…`` for the
            deployment default given as ``provider:model``).
        provider: which adapter speaks to it.
        model: the provider's model name.
        label: shown in the picker.
        base_url: the API's base URL (None: the provider's default).
        api_key: the key (never logged); None for local servers without one.
        api_key_header: ``authorization`` (Bearer) or the header the server wants the key in.
        price_*_per_mtok: USD per million tokens; None: the family's list price, else 0.
        context_window: tokens the model reads at most (None: unknown).
        images: the model accepts images (else they are replaced by a note).
        max_tokens_field: the Chat Completions name of the output limit.
    """

    id: str
    provider: ProviderName
    model: str
    label: str = ""
    base_url: str | None = None
    api_key: str | None = attrs.field(default=None, repr=False)
    api_key_header: str = "authorization"
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None
    price_cache_read_per_mtok: float | None = None
    price_cache_write_per_mtok: float | None = None
    context_window: int | None = None
    images: bool = True
    max_tokens_field: str = "max_tokens"

    def prices(self) -> tuple[float, float, float, float]:
        """(input, output, cache write, cache read) USD per million tokens."""
        known = next((p for family, p in _PRICES.items() if family in self.model), None)
        base = known or (0.0, 0.0, 0.0, 0.0)
        p_in = base[0] if self.price_input_per_mtok is None else self.price_input_per_mtok
        p_out = base[1] if self.price_output_per_mtok is None else self.price_output_per_mtok
        write = self.price_cache_write_per_mtok
        read = self.price_cache_read_per_mtok
        # Without a family price, cached tokens cost what input costs unless told otherwise.
        default_write, default_read = (base[2], base[3]) if known else (p_in, p_in)
        return (
            p_in,
            p_out,
            default_write if write is None else write,
            default_read if read is None else read,
        )

    def cost_usd(self, usage: TokenUsage) -> float:
        """Estimated cost of ``usage`` on this model (list prices unless configured)."""
        p_in, p_out, p_write, p_read = self.prices()
        cost = (
            usage.input_tokens * p_in
            + usage.output_tokens * p_out
            + usage.cache_creation_input_tokens * p_write
            + usage.cache_read_input_tokens * p_read
        ) / 1_000_000
        return round(cost, 6)

    def choice(self) -> ModelChoice:
        """The public description the editor's picker shows (no URL, no key)."""
        p_in, p_out, _, _ = self.prices()
        return ModelChoice(
            id=self.id,
            label=self.label or self.model,
            provider=self.provider,
            images=self.images,
            context_window=self.context_window,
            price_input_per_mtok=p_in,
            price_output_per_mtok=p_out,
        )


def estimate_cost_usd(model: str, usage: TokenUsage) -> float:
    """Estimated list-price cost of ``usage`` on ``model`` (0 for unknown models)."""
    return ModelSpec(id=model, provider="anthropic", model=model).cost_usd(usage)


@attrs.frozen
class _Entry:
    """One ``AMICABLE_MODELS`` object as written (validated by cattrs, no extra keys)."""

    id: str
    provider: ProviderName
    model: str
    label: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    api_key_header: str = "authorization"
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None
    price_cache_read_per_mtok: float | None = None
    price_cache_write_per_mtok: float | None = None
    context_window: int | None = None
    images: bool = True
    max_tokens_field: str | None = None


_converter = cattrs.Converter(forbid_extra_keys=True)


def default_max_tokens_field(provider: str, base_url: str | None) -> str:
    """OpenAI's own API wants ``max_completion_tokens`` (its newer models refuse
    ``max_tokens``); compatible servers (Ollama, LM Studio …) know ``max_tokens``."""
    if provider == "openai" and (base_url is None or "api.openai.com" in base_url):
        return "max_completion_tokens"
    return "max_tokens"


def spec_for(
    env: Mapping[str, str],
    model_id: str,
    provider: ProviderName,
    model: str,
    *,
    key_env: str | None = None,
    base_url: str | None = None,
    **options: Any,
) -> ModelSpec:
    """A :class:`ModelSpec` with its key and base URL read from ``env`` where not given."""
    url = base_url or string(env, BASE_URL_ENV[provider], None)
    field = options.pop("max_tokens_field", None) or default_max_tokens_field(provider, url)
    return ModelSpec(
        id=model_id,
        provider=provider,
        model=model,
        base_url=url,
        api_key=secret(env, key_env or KEY_ENV[provider]),
        max_tokens_field=field,
        **options,
    )


def parse_models(env: Mapping[str, str]) -> tuple[ModelSpec, ...]:
    """The ``AMICABLE_MODELS`` entries (empty when unset).

    Raises:
        ConfigError: not a list of valid entries, or two entries share an id.
    """
    raw = json_value(env, "AMICABLE_MODELS", None)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("AMICABLE_MODELS must be a JSON list of model objects")
    specs: list[ModelSpec] = []
    for index, item in enumerate(raw):
        try:
            entry = _converter.structure(item, _Entry)
        except Exception as exc:
            why = "; ".join(cattrs.transform_error(exc, path=f"AMICABLE_MODELS[{index}]"))
            raise ConfigError(f"invalid model entry: {why}") from exc
        if not entry.id.strip() or not entry.model.strip():
            raise ConfigError(f"AMICABLE_MODELS[{index}]: id and model must not be empty")
        if any(s.id == entry.id for s in specs):
            raise ConfigError(f"AMICABLE_MODELS: the id {entry.id!r} is used twice")
        options = attrs.asdict(entry)
        for name in ("id", "provider", "model", "api_key_env", "base_url"):
            options.pop(name)
        specs.append(
            spec_for(env, entry.id, entry.provider, entry.model, key_env=entry.api_key_env,
                     base_url=entry.base_url, **options)
        )  # fmt: skip
    return tuple(specs)


def split_model(raw: str) -> tuple[ProviderName, str]:
    """``provider:model`` (a bare name is an Anthropic model, as before providers).

    Raises:
        ConfigError: an unknown provider.
    """
    provider, sep, name = raw.partition(":")
    if not sep:
        return "anthropic", raw
    if provider not in PROVIDERS or not name:
        raise ConfigError(
            f"a model is anthropic:<model>, openai:<model> or an AMICABLE_MODELS id, not {raw!r}"
        )
    return provider, name


@attrs.frozen
class ModelCatalog:
    """Every model of the deployment; the first is the default.

    Attributes:
        models: the default first, then the ``AMICABLE_MODELS`` entries (no duplicate ids).
        small_id: the model of small tasks (None: the default).
    """

    models: tuple[ModelSpec, ...]
    small_id: str | None = None

    @property
    def default(self) -> ModelSpec:
        """The deployment default (``DEEPAGENTS_MODEL``)."""
        return self.models[0]

    @property
    def small(self) -> ModelSpec:
        """The model of small tasks (titles, summaries): ``AMICABLE_SMALL_MODEL`` or the
        default."""
        return self.get(self.small_id) or self.default if self.small_id else self.default

    def get(self, model_id: str | None) -> ModelSpec | None:
        """The model with this id, or None."""
        return next((m for m in self.models if m.id == model_id), None)

    def resolve(self, model_id: str | None) -> ModelSpec:
        """The model with this id, else the default."""
        return self.get(model_id) or self.default

    def choices(self) -> tuple[ModelChoice, ...]:
        """What the editor's picker offers."""
        return tuple(m.choice() for m in self.models)

    def secrets(self) -> tuple[str, ...]:
        """Every configured key (redacted from traces)."""
        return tuple(dict.fromkeys(m.api_key for m in self.models if m.api_key))
