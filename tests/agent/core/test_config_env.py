"""``AgentConfig.from_env`` for the settings the local backend and the integrations read."""

from __future__ import annotations

import pytest
from amicable_agent.config import AgentConfig
from amicable_agent.errors import ConfigError
from amicable_agent.sandboxes.local.backend import LocalBackendConfig


def test_defaults_leave_the_integrations_off_and_keep_one_spare() -> None:
    config = AgentConfig.from_env({"HOME": "/home/u"})
    assert config.hasura is None
    assert config.git_sync is not None
    assert not config.git_sync.enabled
    assert config.spare_workspaces == 1
    assert LocalBackendConfig.from_agent_config(config).spare_workspaces == 1


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
        ("AMICABLE_CHECKPOINT_MAX_FILE_BYTES", "50MB"),
        ("AMICABLE_CHECKPOINT_MAX_HISTORY_BYTES", "-1"),
    ],
)
def test_bad_values_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        AgentConfig.from_env({"HOME": "/home/u", name: value})
