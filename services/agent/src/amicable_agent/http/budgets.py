"""``/api/admin/users/{sub}/budget``: an admin's override of one user's spend budgets.

The deployment's defaults are ``AMICABLE_BUDGET_USER_*`` (``loop/spend.py``); an override
names the numbers it replaces (``daily_usd``, ``monthly_usd``, ``daily_tokens``,
``monthly_tokens``; 0 = no budget). Only admins (``AMICABLE_ADMIN_EMAILS``) may read or set
them; the answer includes what the user spent today and this month.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, current_app, jsonify

from amicable_agent.loop.spend import LIMIT_NAMES, period_starts

from .bodies import HttpError, json_object
from .guard import current_caller

if TYPE_CHECKING:
    from .state import AppState

bp = Blueprint("budgets", __name__)


def _state() -> AppState:
    state: AppState = current_app.config["AMICABLE_STATE"]
    return state


def _admin_only() -> None:
    caller = current_caller()
    if not (caller.admin or caller.local):
        raise HttpError(403, "admin_only", "only an admin may see or change budgets")


def _limits(body: dict[str, Any]) -> dict[str, float | int]:
    unknown = sorted(set(body) - set(LIMIT_NAMES))
    if unknown:
        raise HttpError(400, "invalid_field", f"unknown budget field(s): {', '.join(unknown)}")
    out: dict[str, float | int] = {}
    for name, value in body.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise HttpError(400, "invalid_field", f"{name} must be a number >= 0")
        out[name] = int(value) if name.endswith("tokens") else float(value)
    if not out:
        raise HttpError(400, "invalid_field", f"give at least one of {', '.join(LIMIT_NAMES)}")
    return out


async def _answer(sub: str) -> Response:
    store = _state().store
    day, month = period_starts(time.time())
    today = await store.spend_since(day, user_sub=sub)
    this_month = await store.spend_since(month, user_sub=sub)
    return jsonify({
        "sub": sub,
        "limits": await store.user_limits(sub),
        "spent": {"today": {"cost_usd": today.cost_usd, "tokens": today.tokens},
                  "this_month": {"cost_usd": this_month.cost_usd, "tokens": this_month.tokens}},
    })  # fmt: skip


@bp.get("/api/admin/users/<sub>/budget")
async def get_budget(sub: str) -> Response:
    """The user's override (``limits``, null: the defaults) and their spend."""
    _admin_only()
    return await _answer(sub)


@bp.put("/api/admin/users/<sub>/budget")
async def put_budget(sub: str) -> Response:
    """Replace the user's override with the numbers in the body."""
    _admin_only()
    limits = _limits(await json_object())
    await _state().store.set_user_limits(sub, limits)
    return await _answer(sub)


@bp.delete("/api/admin/users/<sub>/budget")
async def delete_budget(sub: str) -> Response:
    """Drop the override: the defaults apply again."""
    _admin_only()
    await _state().store.set_user_limits(sub, None)
    return await _answer(sub)
