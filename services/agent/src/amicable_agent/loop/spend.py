"""Spend budgets per user and per project, in tokens and money, per day and per month.

Every model call's usage is recorded in the store (:class:`~amicable_agent.store.spend.
UsageRecord`); a turn checks the budgets before it starts and again before every model
call, with what it spent itself added. Days and months are UTC calendar periods.

=========================================================  ==================================
variable (0 or unset = no budget)                          meaning
=========================================================  ==================================
AMICABLE_BUDGET_USER_DAILY_USD / _MONTHLY_USD              one user's estimated cost
AMICABLE_BUDGET_USER_DAILY_TOKENS / _MONTHLY_TOKENS        one user's tokens (in + out)
AMICABLE_BUDGET_PROJECT_DAILY_USD / _MONTHLY_USD           one project's estimated cost
AMICABLE_BUDGET_PROJECT_DAILY_TOKENS / _MONTHLY_TOKENS     one project's tokens
=========================================================  ==================================

With logins, an admin overrides a user's budget (``PUT /api/admin/users/{sub}/budget``);
the override replaces the defaults it names.
"""

from __future__ import annotations

import calendar
import time
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from amicable_settings import number

if TYPE_CHECKING:
    from collections.abc import Mapping

    from amicable_agent.store.spend import SpendTotals

LIMIT_NAMES = ("daily_usd", "monthly_usd", "daily_tokens", "monthly_tokens")


class SpendReader(Protocol):
    """What budgets read of the store (the loop's ``ConversationStore`` qualifies; typed this
    narrowly so the loop's seam, ``api.py``, can name the loop's settings)."""

    async def spend_since(
        self, since: float, *, project_id: str | None = None, user_sub: str | None = None
    ) -> SpendTotals: ...

    async def user_limits(self, sub: str) -> dict[str, Any] | None: ...


@attrs.frozen
class Limits:
    """One subject's budgets; 0 means none."""

    daily_usd: float = 0.0
    monthly_usd: float = 0.0
    daily_tokens: int = 0
    monthly_tokens: int = 0

    @property
    def any(self) -> bool:
        """At least one budget is set."""
        return any(getattr(self, name) > 0 for name in LIMIT_NAMES)

    def overridden(self, override: Mapping[str, Any] | None) -> Limits:
        """These limits with the numbers ``override`` names replaced (others ignored)."""
        if not override:
            return self
        changes: dict[str, Any] = {}
        for name in LIMIT_NAMES:
            value = override.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                changes[name] = int(value) if name.endswith("tokens") else float(value)
        return attrs.evolve(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str) -> Limits:
        """``{prefix}_DAILY_USD`` … from ``env``."""
        return cls(
            daily_usd=max(0.0, number(env, f"{prefix}_DAILY_USD", 0.0)),
            monthly_usd=max(0.0, number(env, f"{prefix}_MONTHLY_USD", 0.0)),
            daily_tokens=int(max(0.0, number(env, f"{prefix}_DAILY_TOKENS", 0))),
            monthly_tokens=int(max(0.0, number(env, f"{prefix}_MONTHLY_TOKENS", 0))),
        )


@attrs.frozen
class Budgets:
    """The deployment's default budgets (``AMICABLE_BUDGET_*``)."""

    user: Limits = Limits()
    project: Limits = Limits()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Budgets:
        """Read ``AMICABLE_BUDGET_USER_*`` and ``AMICABLE_BUDGET_PROJECT_*``."""
        return cls(
            user=Limits.from_env(env, "AMICABLE_BUDGET_USER"),
            project=Limits.from_env(env, "AMICABLE_BUDGET_PROJECT"),
        )


def period_starts(now: float) -> tuple[float, float]:
    """Epoch seconds of the start of ``now``'s UTC day and UTC month."""
    t = time.gmtime(now)
    day = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
    month = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    return float(day), float(month)


def _money(value: float) -> str:
    return f"${value:,.2f}"


@attrs.define
class _Window:
    """One budget (e.g. the user's daily dollars) and what was spent against it."""

    who: str  # "Your" / "This project's"
    period: str  # "daily" / "monthly"
    unit: str  # "usd" / "tokens"
    limit: float
    spent: float

    def message(self) -> str:
        amount = _money if self.unit == "usd" else (lambda v: f"{int(v):,} tokens")
        when = "today" if self.period == "daily" else "this month"
        resets = "at midnight UTC" if self.period == "daily" else "on the first of the month (UTC)"
        return (
            f"{self.who} {self.period} budget of {amount(self.limit)} is used up "
            f"({amount(self.spent)} spent {when}). It resets {resets}; an admin can raise it."
        )


@attrs.define
class SpendGuard:
    """The budgets of one turn: what was spent before it, plus what it spends.

    Create with :meth:`load` at the start of a turn; :meth:`add` each model call's usage;
    :meth:`exceeded` says which budget (if any) is used up.
    """

    windows: list[_Window] = attrs.field(factory=list)

    @classmethod
    async def load(
        cls,
        store: SpendReader,
        budgets: Budgets,
        *,
        project_id: str,
        user_sub: str | None,
        now: float | None = None,
    ) -> SpendGuard:
        """Read the spend of the current day and month (only for the budgets that are set)."""
        day, month = period_starts(time.time() if now is None else now)
        guard = cls()
        user_limits = budgets.user
        if user_sub is not None:
            user_limits = user_limits.overridden(await store.user_limits(user_sub))
        subjects: list[tuple[str, Limits, dict[str, Any]]] = [
            ("This project's", budgets.project, {"project_id": project_id})
        ]
        if user_sub is not None:
            subjects.append(("Your", user_limits, {"user_sub": user_sub}))
        for who, limits, where in subjects:
            for period, since in (("daily", day), ("monthly", month)):
                usd = getattr(limits, f"{period}_usd")
                tokens = getattr(limits, f"{period}_tokens")
                if not (usd or tokens):
                    continue
                totals: SpendTotals = await store.spend_since(since, **where)
                if usd:
                    guard.windows.append(_Window(who, period, "usd", usd, totals.cost_usd))
                if tokens:
                    guard.windows.append(_Window(who, period, "tokens", tokens, totals.tokens))
        return guard

    def add(self, tokens: int, cost_usd: float) -> None:
        """Count one model call of this turn."""
        for window in self.windows:
            window.spent += cost_usd if window.unit == "usd" else tokens

    def exceeded(self) -> str | None:
        """The message for the first budget that is used up, or None."""
        for window in self.windows:
            if window.spent >= window.limit:
                return window.message()
        return None
