"""The network fence's nftables rules, generated without an engine (tests/images applies them
to a real podman network and tries to get through)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from amicable_agent.sandboxes.container import fence
from amicable_agent.sandboxes.container.network import bridge_name


def test_rules_drop_new_connections_from_the_bridge_and_between_sandboxes() -> None:
    script = fence.ruleset("amicable-sandboxes", "amb0123456789a", ["10.89.3.0/24"])
    name = fence.table_name("amicable-sandboxes")
    assert name.startswith("amicable_fence_")
    lines = [line.strip() for line in script.splitlines()]
    # replaced whole, idempotently: create-if-missing, delete, define, for both families
    for family in ("inet", "bridge"):
        at = lines.index(f"table {family} {name}")
        assert lines[at + 1] == f"delete table {family} {name}"
        assert lines[at + 2] == f"table {family} {name} {{"
    inet = script[script.index(f"table inet {name} {{") : script.index(f"table bridge {name}\n")]
    for hook in ("input", "forward"):
        chain = inet[inet.index(f"chain {hook}") :]
        chain = chain[: chain.index("\n  }")]
        rules = [line.strip() for line in chain.splitlines()[2:] if line.strip()]
        # replies to what the host opened pass; then everything else from the bridge drops
        assert rules[0] == 'iifname "amb0123456789a" ct state established,related accept'
        assert rules[-1].startswith('iifname "amb0123456789a" counter drop')
        assert all('iifname "amb0123456789a"' in rule for rule in rules)
        assert f"hook {hook} priority filter - 10; policy accept;" in chain
    bridge = script[script.index(f"table bridge {name} {{") :]
    assert "ip saddr 10.89.3.0/24 counter drop" in bridge
    assert "policy accept;" in bridge
    assert bridge.count("accept") == 1, "the policy only: no rule accepts anything"


def test_ipv6_subnets_and_bad_input() -> None:
    script = fence.ruleset("n", "amb1", ["10.89.3.0/24", "fd00:1::/64"])
    assert "ip6 saddr fd00:1::/64 counter drop" in script
    with pytest.raises(fence.FenceError, match="interface name"):
        fence.ruleset("n", 'x" drop; accept "', ["10.0.0.0/8"])
    with pytest.raises(fence.FenceError, match="interface name"):
        fence.ruleset("n", "a-name-longer-than-15", ["10.0.0.0/8"])
    with pytest.raises(fence.FenceError, match="not a subnet"):
        fence.ruleset("n", "amb1", ["10.0.0.0/8; flush ruleset"])
    with pytest.raises(fence.FenceError, match="no subnet"):
        fence.ruleset("n", "amb1", [])


def test_removal_and_names() -> None:
    name = fence.table_name("net-a")
    assert name != fence.table_name("net-b")
    assert fence.removal("net-a") == (
        f"table inet {name}\ndelete table inet {name}\n"
        f"table bridge {name}\ndelete table bridge {name}\n"
    )
    assert len(bridge_name("a" * 200)) <= 15
    assert bridge_name("x") != bridge_name("y")


def test_bridge_and_subnets_of_an_inspected_network() -> None:
    docker = {"Id": "0123456789abcdef", "Driver": "bridge", "Options": {},
              "IPAM": {"Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]}}  # fmt: skip
    assert fence.bridge_of(docker) == "br-0123456789ab"
    named = {**docker, "Options": {fence.BRIDGE_OPTION: "amb1"}}
    assert fence.bridge_of(named) == "amb1"
    assert fence.bridge_of({"network_interface": "podman3"}) == "podman3"
    assert fence.bridge_of({"Driver": "macvlan", "Id": "0123456789abcdef"}) is None
    assert fence.subnets_of(docker) == ["172.18.0.0/16"]
    assert fence.subnets_of({"IPAM": None}) == []


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
def test_nft_accepts_the_rules() -> None:
    """`nft --check` parses the script (no kernel change; needs root for the netlink cache)."""
    script = fence.ruleset("amicable-unit", "amb0123456789a", ["10.89.3.0/24"])
    proc = subprocess.run(["nft", "--check", "-f", "-"], input=script, capture_output=True,
                          text=True, check=False)  # fmt: skip
    if proc.returncode != 0 and "Operation not permitted" in proc.stderr:
        pytest.skip("nft --check needs CAP_NET_ADMIN here")
    assert proc.returncode == 0, proc.stderr
