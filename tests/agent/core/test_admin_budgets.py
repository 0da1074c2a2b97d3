"""``/api/admin/users/{sub}/budget``: admins override one user's spend budgets; nobody else
may read or change them."""

from __future__ import annotations

import time
from typing import Any

from amicable_agent.store.spend import UsageRecord
from amicable_agent.store.sqlite import open_sqlite_store
from amicable_testing.logins import ALICE, BOB


async def test_an_admin_overrides_a_users_budget(site_factory: Any) -> None:
    async with (
        site_factory(auth={"admin_emails": ("alice@example.com",)}) as site,
        open_sqlite_store(site.agent.config.sqlite_path) as store,  # the agent's database
    ):
        await store.record_usage(UsageRecord("p", BOB.sub, "t", "m", input_tokens=90,
                                             output_tokens=10, cost_usd=0.5))  # fmt: skip
        await store.record_usage(UsageRecord("p", BOB.sub, "t0", "m", input_tokens=5,
                                             cost_usd=9.0, created_at=time.time() - 40 * 86400))  # fmt: skip
        url = f"/api/admin/users/{BOB.sub}/budget"
        async with site.signed_in(BOB) as bob:
            assert (await bob.get(url)).status_code == 403
            denied = await bob.put(url, json={"daily_usd": 1000})
            assert (denied.status_code, denied.json()["error"]) == (403, "admin_only")
        async with site.signed_in(ALICE) as alice:
            got = (await alice.get(url)).json()
            assert got["limits"] is None
            assert got["spent"]["today"] == {"cost_usd": 0.5, "tokens": 100}
            put = await alice.put(url, json={"daily_usd": 50, "monthly_tokens": 2e7})
            assert put.status_code == 200
            assert put.json()["limits"] == {"daily_usd": 50.0, "monthly_tokens": 20000000}
            assert await store.user_limits(BOB.sub) == {"daily_usd": 50.0,
                                                        "monthly_tokens": 20000000}  # fmt: skip
            for bad in ({"daily_usd": -1}, {"weekly_usd": 3}, {}, {"daily_usd": True}):
                answer = await alice.put(url, json=bad)
                assert (answer.status_code, answer.json()["error"]) == (400, "invalid_field"), bad
            assert (await alice.delete(url)).json()["limits"] is None
            assert await store.user_limits(BOB.sub) is None
