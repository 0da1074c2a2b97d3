"""Usage and cost per call, turn, project and user; budgets; the per-project model choice
(each test runs against both providers)."""

from __future__ import annotations

import time
from typing import Any

import attrs
from amicable_agent.loop.models import ModelSpec
from amicable_agent.loop.spend import Budgets, Limits
from amicable_agent.store.spend import UsageRecord
from amicable_protocol.messages import UserData
from amicable_testing.model_script import Fault, Reply, Text, ToolUse


def user(text: str, **extra: Any) -> UserData:
    return UserData(session_id="sess-1", text=text, **extra)


async def test_usage_is_recorded_per_call_and_the_project_total_is_sent(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    fake.add(
        Reply([ToolUse("ls", {"path": "/"})], input_tokens=1000, output_tokens=100),
        Reply([Text("Listed.")], input_tokens=2000, output_tokens=50),
        Reply([Text("Again.")], input_tokens=500, output_tokens=10),
    )
    engine = make_engine(url)
    await engine.run_user_turn(host, user("list"), by="user-1")
    records = host.store.usage
    assert [(r.input_tokens, r.output_tokens) for r in records] == [(1000, 100), (2000, 50)]
    assert {r.user_sub for r in records} == {"user-1"}
    assert {r.project_id for r in records} == {"proj-1"}
    assert len({r.turn_id for r in records}) == 1
    spec = engine.models.catalog.default
    assert {r.model_id for r in records} == {spec.id}
    first = host.of("usage")[0].data
    assert first.cost_usd == round(sum(r.cost_usd for r in records), 6)
    assert first.cost_usd > 0
    assert first.model_id == spec.id
    assert first.project.cost_usd == first.cost_usd
    assert first.project.input_tokens == 3000

    await engine.run_user_turn(host, user("again"), by="user-2")
    second = host.of("usage")[1].data
    assert second.input_tokens == 500
    assert second.project.input_tokens == 3500  # the project's running total
    assert second.project.cost_usd == round(first.cost_usd + second.cost_usd, 6)
    assert (await engine.project_spend(host)) == second.project


async def test_a_used_up_budget_refuses_the_turn_before_it_starts(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    budgets = Budgets(project=Limits(daily_tokens=1000))
    await host.store.record_usage(UsageRecord("proj-1", "someone", "t0", "m", input_tokens=1200))
    await make_engine(url, budgets=budgets).run_user_turn(host, user("hi"), by="user-1")
    assert host.types() == ["error"]
    error = host.of("error")[0].data
    assert error.error == "budget_exceeded"
    assert error.detail.startswith("This project's daily budget of 1,000 tokens is used up")
    assert fake.requests == []


async def test_spend_of_earlier_days_does_not_count_today(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    _fake, url = fake_llm
    budgets = Budgets(user=Limits(daily_usd=1.0, monthly_usd=1000.0))
    old = UsageRecord("proj-1", "user-1", "t0", "m", cost_usd=5.0,
                      created_at=time.time() - 3 * 86400)  # fmt: skip
    await host.store.record_usage(old)
    await make_engine(url, budgets=budgets).run_user_turn(host, user("hi"), by="user-1")
    assert host.of("error") == []
    assert host.types()[-1] == "update_completed"


async def test_a_budget_reached_between_model_calls_stops_the_turn(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    fake.responder = lambda body: Reply([ToolUse("ls", {"path": "/"})], input_tokens=150_000)
    budgets = Budgets(user=Limits(daily_usd=0.5))
    await make_engine(url, budgets=budgets).run_user_turn(host, user("loop"), by="user-1")
    # Each call costs 0.30-0.45 USD at list price: the third call is never made.
    assert len(fake.requests) == 2
    error = host.of("error")[0].data
    assert error.error == "budget_exceeded"
    assert error.detail.startswith("Your daily budget of $0.50 is used up")
    final = host.of("agent_final")[0].data.text
    assert "spend budget is reached" in final
    assert host.types()[-1] == "update_completed"
    stored = host.store.conversations["proj-1"]
    assert stored[-1]["role"] == "assistant"  # the conversation stays valid


async def test_an_admin_override_replaces_the_user_default(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    _fake, url = fake_llm
    budgets = Budgets(user=Limits(daily_tokens=10))
    await host.store.record_usage(UsageRecord("p0", "user-1", "t0", "m", input_tokens=50))
    await host.store.set_user_limits("user-1", {"daily_tokens": 1_000_000})
    await make_engine(url, budgets=budgets).run_user_turn(host, user("hi"), by="user-1")
    assert host.of("error") == []
    await make_engine(url, budgets=budgets).run_user_turn(host, user("hi"), by="user-2")
    assert host.of("error") == []  # user-2 spent nothing yet
    await host.store.record_usage(UsageRecord("p0", "user-2", "t1", "m", input_tokens=50))
    await make_engine(url, budgets=budgets).run_user_turn(host, user("hi"), by="user-2")
    assert host.of("error")[0].data.detail.startswith("Your daily budget of 10 tokens")


def _two_models(url: str, provider: str) -> tuple[ModelSpec, ...]:
    cheap = ModelSpec(id="cheap", provider=provider, model=f"{provider}-cheap", label="Cheap",  # type: ignore[arg-type]
                      base_url=url, api_key="k", price_input_per_mtok=1.0,
                      price_output_per_mtok=2.0, context_window=8000, images=False)  # fmt: skip
    return (cheap,)


async def test_the_projects_model_is_chosen_stored_and_kept(
    fake_llm: Any, make_engine: Any, host: Any, provider: str
) -> None:
    fake, url = fake_llm
    engine = make_engine(url, models=_two_models(url, provider))
    default_id = engine.models.catalog.default.id
    assert [c.id for c in engine.model_choices()] == [default_id, "cheap"]
    cheap = engine.model_choices()[1]
    assert (cheap.label, cheap.images, cheap.price_input_per_mtok) == ("Cheap", False, 1.0)

    await engine.run_user_turn(host, user("one", model="cheap"))
    assert fake.view(0)["model"] == f"{provider}-cheap"
    assert await engine.project_model(host) == "cheap"
    usage = host.of("usage")[0].data
    assert (usage.model_id, usage.model) == ("cheap", f"{provider}-cheap")
    assert usage.cost_usd == round((100 * 1.0 + usage.output_tokens * 2.0) / 1e6, 6)

    await engine.run_user_turn(host, user("two"))  # an old editor sends no model
    assert fake.view(1)["model"] == f"{provider}-cheap"

    await engine.run_user_turn(host, user("three", model="gone"))
    error = host.of("error")[0].data
    assert (error.error, error.detail) == (
        "unknown_model", "The model 'gone' is not offered here; using cheap.")  # fmt: skip
    assert fake.view(2)["model"] == f"{provider}-cheap"

    assert await engine.project_model(host, default_id) == default_id  # init's choice
    await engine.run_user_turn(host, user("four"))
    assert fake.view(3)["model"] == engine.models.catalog.default.model


async def test_a_small_context_window_cuts_old_tool_output(
    fake_llm: Any, make_engine: Any, host: Any, provider: str
) -> None:
    fake, url = fake_llm
    small = attrs.evolve(_two_models(url, provider)[0], context_window=12_000)
    big = "x" * 40_000
    host.store.conversations["proj-1"] = [
        {"role": "user", "content": "read it"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ls",
                                           "input": {"path": "/"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": big}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "ls",
                                           "input": {"path": "/src"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2",
                                      "content": "App.tsx"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Read."}]},
    ]  # fmt: skip
    engine = make_engine(url, models=(small,), max_output_tokens=4096)
    await engine.run_user_turn(host, user("next", model="cheap"))
    sent = fake.view(0)["messages"][2]["content"][0]["content"]
    assert len(sent) < 3000
    assert "chars omitted" in sent


async def test_failed_attempts_are_counted_when_the_model_gives_up(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    """A stream that drops after the provider reported its input tokens cost them: the retries
    and the final failure are recorded, not only successful answers."""
    fake, url = fake_llm
    drop = Fault(drop_after_events=8, reply=Reply([Text("Half an answer that never ends")],
                                                  input_tokens=700, output_tokens=5))  # fmt: skip
    fake.add(drop, drop)
    await make_engine(url, llm_max_retries=1).run_user_turn(host, user("hi"), by="user-1")
    assert host.of("error")[0].data.error.startswith("llm_")
    assert len(fake.requests) == 2
    records = host.store.usage
    assert len(records) == 1, "one model call, however many attempts it took"
    if fake.provider == "anthropic":  # message_start reported the input tokens of each attempt
        assert records[0].input_tokens == 1400
        assert records[0].cost_usd > 0
    else:  # Chat Completions report usage only in the last chunk, which never came
        assert records[0].input_tokens == 0


async def test_retried_attempts_count_in_the_successful_call(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    fake.add(
        Fault(drop_after_events=8, reply=Reply([Text("The first part of it")], input_tokens=300)),
        Reply([Text(" and the end.")], input_tokens=400, output_tokens=20),
    )
    await make_engine(url).run_user_turn(host, user("hi"), by="user-1")
    assert not host.of("error")
    [record] = host.store.usage
    expected = 700 if fake.provider == "anthropic" else 400
    assert record.input_tokens == expected
    assert host.of("usage")[0].data.input_tokens == expected
