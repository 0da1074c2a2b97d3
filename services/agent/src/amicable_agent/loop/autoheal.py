"""Runtime-error auto-heal policy and prompt (upstream §1.7).

:class:`AutoHealLimiter` is per session and clock-agnostic (callers pass ``now`` from
``trio.current_time()``), so it is tested on ``autojump_clock`` or with plain numbers.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Literal

import attrs

if TYPE_CHECKING:
    from amicable_protocol.messages import RuntimeErrorInfo

    from .settings import LoopSettings

Decision = Literal["run", "cooldown", "paused"]

#: Characters of the preview log tail quoted for ``preview_load_failed``.
LOG_TAIL_MAX = 12_000


def fingerprint_of(error: RuntimeErrorInfo) -> str:
    """The editor's fingerprint, or ``rt_`` + sha256(kind|message|stack|url)[:16]."""
    if error.fingerprint:
        return error.fingerprint[:200]
    raw = "|".join([error.kind, error.message, error.stack or "", error.url or ""])
    return "rt_" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


@attrs.define
class AutoHealLimiter:
    """Cooldown, dedupe window and per-fingerprint cap for one session.

    A run is allowed when no auto-heal started within ``cooldown_s`` and the fingerprint
    has had fewer than ``max_attempts`` runs within ``window_s``; over the cap the session is
    ``paused`` for that fingerprint (the caller sends ``runtime_auto_heal_paused``).
    """

    cooldown_s: float
    window_s: float
    max_attempts: int
    last_run: float | None = None
    attempts: dict[str, list[float]] = attrs.field(factory=dict)

    @classmethod
    def from_settings(cls, settings: LoopSettings) -> AutoHealLimiter:
        return cls(
            settings.auto_heal_cooldown_s,
            settings.auto_heal_dedupe_window_s,
            settings.auto_heal_max_attempts_per_fingerprint,
        )

    def decide(self, fingerprint: str, now: float) -> Decision:
        """Whether an auto-heal turn for ``fingerprint`` may start at ``now``."""
        recent = [t for t in self.attempts.get(fingerprint, []) if now - t < self.window_s]
        self.attempts[fingerprint] = recent
        if len(self.attempts) > 200:  # bound memory: forget the stalest fingerprints
            for key in sorted(self.attempts, key=lambda k: max(self.attempts[k], default=0))[:50]:
                del self.attempts[key]
        if len(recent) >= self.max_attempts:
            return "paused"
        if self.last_run is not None and now - self.last_run < self.cooldown_s:
            return "cooldown"
        return "run"

    def record(self, fingerprint: str, now: float) -> None:
        """Note that an auto-heal turn for ``fingerprint`` started at ``now``."""
        self.last_run = now
        self.attempts.setdefault(fingerprint, []).append(now)


def paused_detail(fingerprint: str, settings: LoopSettings) -> str:
    """The ``detail`` of ``runtime_auto_heal_paused``."""
    return (
        f"Auto-heal already tried {settings.auto_heal_max_attempts_per_fingerprint} time(s) "
        f"for this error in the last {int(settings.auto_heal_dedupe_window_s)} s; "
        "describe the problem in the chat to continue."
    )


def build_prompt(error: RuntimeErrorInfo, log_tail: list[str] | None = None) -> str:
    """The user message of an auto-heal turn."""
    lines = [
        "Runtime error detected in the running preview. Find the cause in the code and fix "
        "it with minimal edits.",
        "",
        f"Kind: {error.kind}",
        f"Message: {error.message[:2000]}",
    ]
    for label, value in (
        ("URL", error.url),
        ("Source", error.source),
        ("Level", error.level),
    ):
        if value:
            lines.append(f"{label}: {value[:2000]}")
    if error.stack:
        lines += ["Stack:", error.stack[:8000]]
    if error.args_preview:
        lines += ["Console args:", error.args_preview[:4000]]
    if error.extra:
        lines += ["Extra:", json.dumps(error.extra, ensure_ascii=False)[:4000]]
    if log_tail:
        tail = "\n".join(log_tail)[-LOG_TAIL_MAX:]
        lines += ["", "Dev server log (last lines):", tail]
    hint = _hint(error)
    if hint:
        lines += ["", f"Hint: {hint}"]
    return "\n".join(lines)


def _hint(error: RuntimeErrorInfo) -> str | None:
    if error.kind == "graphql_error" and "not found in type" in error.message:
        return (
            "a table or field is missing in the app's database; create it with the "
            "db_create_table tool (not with SQL files) before querying it."
        )
    if error.kind == "console_error":
        return "this was logged with console.error; check the component that logs it."
    if error.kind == "runtime_bridge_missing":
        return "the preview did not load the runtime bridge; check index.html and main entry."
    if error.kind == "preview_load_failed":
        return "the preview did not load; the dev server log above usually names the error."
    return None
