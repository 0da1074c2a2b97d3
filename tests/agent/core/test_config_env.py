"""``AgentConfig.from_env`` for the settings the local backend and the integrations read."""

from __future__ import annotations

from pathlib import Path

import pytest
from amicable_agent.config import AgentConfig
from amicable_agent.db.config import hasura_config_from_env
from amicable_agent.errors import ConfigError
from amicable_agent.loop.settings import LoopSettings
from amicable_agent.sandboxes.kubernetes.config import KubernetesBackendConfig
from amicable_agent.sandboxes.local.backend import LocalBackendConfig


def test_defaults_leave_the_integrations_off_and_keep_one_spare() -> None:
    config = AgentConfig.from_env({"HOME": "/home/u"})
    assert config.hasura is None
    assert config.git_sync is not None
    assert not config.git_sync.enabled
    assert config.spare_workspaces == 1
    assert LocalBackendConfig.from_agent_config(config).spare_workspaces == 1
    assert config.max_prompt_chars == 100_000


def test_the_prompt_limit_from_env() -> None:
    config = AgentConfig.from_env({"HOME": "/home/u", "AMICABLE_MAX_PROMPT_CHARS": "5000"})
    assert config.max_prompt_chars == 5000


def test_spares_and_integrations_from_env() -> None:
    config = AgentConfig.from_env(
        {
            "HOME": "/home/u",
            "AMICABLE_SPARE_WORKSPACES": "0",
            "GITLAB_TOKEN": "glpat-x",
            "GITLAB_BASE_URL": "https://gitlab.example.com",
            "HASURA_BASE_URL": "http://hasura:8080",
            "HASURA_GRAPHQL_ADMIN_SECRET": "admin",
        }
    )
    assert LocalBackendConfig.from_agent_config(config).spare_workspaces == 0
    assert config.git_sync is not None
    assert config.git_sync.enabled
    assert config.git_sync.base_url == "https://gitlab.example.com"
    assert config.hasura is not None
    assert config.hasura.base_url == "http://hasura:8080"
    assert "glpat-x" not in repr(config)
    assert "admin" not in repr(config)


def test_checkpoint_limits_from_env() -> None:
    from amicable_agent.sessions.checkpoints import CheckpointPolicy

    default = AgentConfig.from_env({"HOME": "/home/u"})
    policy = CheckpointPolicy()
    assert (default.checkpoint_max_file_bytes, default.checkpoint_max_history_bytes) == (
        policy.max_file_bytes,
        policy.max_history_bytes,
    )
    config = AgentConfig.from_env(
        {
            "HOME": "/home/u",
            "AMICABLE_CHECKPOINT_MAX_FILE_BYTES": "1000",
            "AMICABLE_CHECKPOINT_MAX_HISTORY_BYTES": "0",
        }
    )
    assert (config.checkpoint_max_file_bytes, config.checkpoint_max_history_bytes) == (1000, 0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AMICABLE_SPARE_WORKSPACES", "two"),
        ("AMICABLE_GIT_SYNC_ENABLED", "1"),
        ("AMICABLE_AGENT_PORT", "70000"),
        ("AMICABLE_SANDBOX_BACKEND", "docker"),
        ("AMICABLE_SESSION_IDLE_TIMEOUT_S", "-5"),
        ("AMICABLE_PREVIEW_RESOLVER_TOKEN_FILE", "/nonexistent/token"),
        ("AMICABLE_CHECKPOINT_MAX_FILE_BYTES", "50MB"),
        ("AMICABLE_CHECKPOINT_MAX_HISTORY_BYTES", "-1"),
        ("AMICABLE_MAX_PROMPT_CHARS", "0"),
        ("AMICABLE_MAX_PROMPT_CHARS", "100001"),  # over the protocol's limit
    ],
)
def test_bad_values_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        AgentConfig.from_env({"HOME": "/home/u", name: value})


def test_secrets_come_from_the_variable_or_its_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    name = "AMICABLE_PREVIEW_RESOLVER_TOKEN"
    assert AgentConfig.from_env({f"{name}_FILE": str(token)}).preview_resolver_token == (
        "from-file"
    )
    both = {name: "direct", f"{name}_FILE": str(token)}
    assert AgentConfig.from_env(both).preview_resolver_token == "direct"


def test_every_config_error_of_the_agent_is_one_config_error() -> None:
    with pytest.raises(ConfigError, match="AMICABLE_TURN_TIMEOUT_S"):
        LoopSettings.from_env({"AMICABLE_TURN_TIMEOUT_S": "soon"})
    with pytest.raises(ConfigError, match="SANDBOX_RUNTIME_PORT"):
        KubernetesBackendConfig.from_env({"SANDBOX_RUNTIME_PORT": "http"})
    with pytest.raises(ConfigError, match="HASURA_GRAPHQL_ADMIN_SECRET_FILE"):
        hasura_config_from_env(
            {"HASURA_BASE_URL": "http://h", "HASURA_GRAPHQL_ADMIN_SECRET_FILE": "/nonexistent"}
        )
    assert issubclass(ConfigError, ValueError)


def test_blank_values_mean_the_default() -> None:
    config = AgentConfig.from_env({"HOME": "/home/u", "AMICABLE_AGENT_HOST": " "})
    assert config.host == "127.0.0.1"
    assert LoopSettings.from_env({"DEEPAGENTS_QA": ""}).qa_enabled is True


def test_templates_from_env_and_their_checks() -> None:
    from amicable_templates import registry

    default = AgentConfig.from_env({})
    assert default.templates == registry().ids
    assert default.pooled_templates == ("vite",)
    chosen = AgentConfig.from_env(
        {"AMICABLE_TEMPLATES": "vite,hono", "AMICABLE_WARM_POOL_TEMPLATES": "hono,vite,fastapi"}
    )
    assert chosen.templates == ("vite", "hono")
    assert chosen.pooled_templates == ("hono", "vite")  # only offered templates get a pool
    for env, message in (
        ({"AMICABLE_TEMPLATES": "vite,cobol"}, "AMICABLE_TEMPLATES: unknown template"),
        ({"AMICABLE_WARM_POOL_TEMPLATES": "rails"}, "AMICABLE_WARM_POOL_TEMPLATES: unknown"),
        ({"AMICABLE_TEMPLATES": "hono"}, "AMICABLE_DEFAULT_TEMPLATE 'vite' is not in"),
        ({"AMICABLE_DEFAULT_TEMPLATE": "cobol"}, "AMICABLE_DEFAULT_TEMPLATE: unknown"),
    ):
        with pytest.raises(ConfigError, match=message):
            AgentConfig.from_env(env)
