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


@pytest.mark.parametrize(
    ("name", "value"),
    [("AMICABLE_SPARE_WORKSPACES", "two"), ("AMICABLE_GIT_SYNC_ENABLED", "1")],
)
def test_bad_values_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        AgentConfig.from_env({"HOME": "/home/u", name: value})
