"""The sandbox network's fence: nftables rules that keep sandbox containers away from the host
and from each other.

An ``--internal`` network has no default route, but the host still answers on its own bridge
address (so a service bound to ``0.0.0.0`` on the host is reachable from every sandbox), and
containers on one bridge reach each other directly. The fence closes both, keyed on the
network's bridge interface ``BR``:

* ``table inet <name>``, hooks ``input`` and ``forward``: a packet that arrives from ``BR``
  is accepted only when it belongs to a connection the host side opened (conntrack
  ``established,related``) or is IPv6 neighbour discovery; everything else is dropped. So a
  sandbox opens no connection to any host address (the bridge's, the host's others, through
  the bridge) nor routes anywhere, while the agent on the host still opens connections to
  each sandbox's runtime and dev-server ports and their replies flow;
* ``table bridge <name>``, hook ``forward``: IP frames that one port of a bridge forwards to
  another with a source address in the network's subnets (one sandbox to another) are dropped.
  The bridge family has no conntrack and (on the kernels this runs on) no ``meta ibrname``, so
  the subnets key it; they are unique among the host's networks, and a sandbox cannot forge a
  source address (every capability is dropped, ``CAP_NET_RAW`` too). IPv6 link-local
  addresses belong to no subnet, so the backend turns IPv6 off inside sandboxes
  (``net.ipv6.conf.all.disable_ipv6=1``). The host's own traffic to a sandbox leaves through
  the bridge device itself and is not forwarded, so it is not affected.

The tables belong to Amicable (named ``amicable_fence_<hash of the network name>``, one pair
per sandbox network) and are replaced whole in one ``nft -f`` transaction, so applying is
idempotent and a changed bridge name replaces the old rules. The fence only ever drops: it
never accepts what another table (netavark's, Docker's) drops.

:func:`ruleset` and :func:`removal` are pure (unit-tested without an engine); :func:`apply`
and :func:`remove` run ``nft``, which needs root (CAP_NET_ADMIN) on the host where the engine's
bridge lives. An agent that runs inside a container cannot do that: the host applies the same
rules (``python -m amicable_agent.sandboxes.container.fence --network NAME --bridge BR``
prints them) and the agent runs with ``AMICABLE_CONTAINER_FENCE=off``.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import re
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import trio

from amicable_agent.errors import SandboxError

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Linux interface names: at most 15 bytes, no slash, no whitespace, no quotes.
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
#: The nft binary (a test points it elsewhere to see the backend refuse to start).
NFT = "nft"
#: The option that names a bridge on Docker (and that Podman's compat API reports).
BRIDGE_OPTION = "com.docker.network.bridge.name"


class FenceError(SandboxError):
    """The fence could not be applied or its bridge could not be found."""


def table_name(network: str) -> str:
    """The nftables table (in both families) that fences ``network``."""
    return "amicable_fence_" + hashlib.sha256(network.encode()).hexdigest()[:12]


def _check_bridge(bridge: str) -> str:
    if not _IFNAME.match(bridge):
        raise FenceError(f"not an interface name: {bridge!r}")
    return bridge


def _check_subnet(subnet: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(subnet, strict=False)
    except ValueError as exc:
        raise FenceError(f"not a subnet: {subnet!r}") from exc


def ruleset(network: str, bridge: str, subnets: Sequence[str]) -> str:
    """The ``nft -f`` script that replaces the fence of ``network`` on interface ``bridge``
    whose addresses are ``subnets`` (CIDR, IPv4 or IPv6).

    The ``table …`` lines before each ``delete table`` make the delete succeed when the table
    does not exist yet; the whole script is one transaction.
    """
    name, br = table_name(network), _check_bridge(bridge)
    nets = [_check_subnet(s) for s in subnets]
    if not nets:
        raise FenceError(f"network {network!r} has no subnet to fence")
    between = "\n".join(
        f"    {'ip' if net.version == 4 else 'ip6'} saddr {net} counter drop"
        f' comment "sandbox -> sandbox"'
        for net in nets
    )
    return f"""\
# Amicable sandbox network fence: network {network!r}, bridge {br}
table inet {name}
delete table inet {name}
table inet {name} {{
  chain input {{
    type filter hook input priority filter - 10; policy accept;
    iifname "{br}" ct state established,related accept
    iifname "{br}" icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
    iifname "{br}" counter drop comment "sandbox -> host"
  }}
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    iifname "{br}" ct state established,related accept
    iifname "{br}" counter drop comment "sandbox -> routed"
  }}
}}
table bridge {name}
delete table bridge {name}
table bridge {name} {{
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
{between}
  }}
}}
"""


def subnets_of(network: dict[str, Any]) -> list[str]:
    """The subnets of an inspected network (``IPAM.Config[].Subnet``)."""
    configs = (network.get("IPAM") or {}).get("Config") or []
    return [str(c["Subnet"]) for c in configs if c.get("Subnet")]


def removal(network: str) -> str:
    """The ``nft -f`` script that removes the fence of ``network`` (nothing when absent)."""
    name = table_name(network)
    return (
        f"table inet {name}\ndelete table inet {name}\n"
        f"table bridge {name}\ndelete table bridge {name}\n"
    )


def bridge_of(network: dict[str, Any]) -> str | None:
    """The bridge interface of an inspected network (``GET /networks/{name}``), or None.

    Docker and Podman's compat API both report ``com.docker.network.bridge.name`` in
    ``Options`` when it was given or (Podman) always; a Docker user network without the option
    uses ``br-<first 12 characters of its id>``. Podman's own API calls it
    ``network_interface``.
    """
    options = network.get("Options") or {}
    named = options.get(BRIDGE_OPTION) or network.get("network_interface")
    if named:
        return str(named)
    if str(network.get("Driver", "bridge")) != "bridge":
        return None
    ident = str(network.get("Id") or "")
    return f"br-{ident[:12]}" if len(ident) >= 12 else None


def run_nft(script: str) -> None:
    """`nft -f -` with ``script`` (blocking).

    Raises:
        FenceError: as :func:`apply`.
    """
    try:
        proc = subprocess.run(
            [NFT, "-f", "-"], input=script, capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError as exc:
        raise FenceError("`nft` is not installed (Debian: apt-get install nftables)") from exc
    except subprocess.TimeoutExpired as exc:
        raise FenceError("`nft -f -` did not finish within 30 s") from exc
    if proc.returncode != 0:
        raise FenceError(f"`nft -f -` failed ({proc.returncode}): {proc.stderr.strip()[:400]}")


async def apply(network: str, bridge: str, subnets: Sequence[str]) -> None:
    """Install (or replace) the fence of ``network`` on ``bridge`` with ``subnets``.

    Raises:
        FenceError: no ``nft``, no permission (not root), or the kernel refused the rules.
    """
    script = ruleset(network, bridge, subnets)
    await trio.to_thread.run_sync(run_nft, script)


async def remove(network: str) -> None:
    """Remove the fence of ``network`` (idempotent)."""
    await trio.to_thread.run_sync(run_nft, removal(network))


def main(argv: list[str] | None = None) -> None:
    """Print (or apply) the fence for a network, for hosts whose agent runs in a container."""
    parser = argparse.ArgumentParser(
        prog="python -m amicable_agent.sandboxes.container.fence",
        description="The nftables fence of an Amicable sandbox network (see docs/containers.md).",
    )
    parser.add_argument("--network", required=True, help="the sandbox network's name")
    parser.add_argument("--bridge", help="its bridge interface (podman network inspect)")
    parser.add_argument(
        "--subnet", action="append", default=[], help="its subnet (CIDR; repeat for several)"
    )
    parser.add_argument("--remove", action="store_true", help="the script that removes it")
    parser.add_argument("--apply", action="store_true", help="run nft -f instead of printing")
    args = parser.parse_args(argv)
    if not args.remove and not (args.bridge and args.subnet):
        parser.error("--bridge and --subnet are required unless --remove")
    try:
        script = (
            removal(args.network)
            if args.remove
            else ruleset(args.network, args.bridge, args.subnet)
        )
    except FenceError as exc:
        sys.exit(f"fence: {exc}")
    if args.apply:
        try:
            run_nft(script)
        except FenceError as exc:
            sys.exit(f"fence: {exc}")
    else:
        sys.stdout.write(script)


if __name__ == "__main__":
    main()
