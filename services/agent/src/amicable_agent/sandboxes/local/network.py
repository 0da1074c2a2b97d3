"""A local sandbox's network: its own namespace, outbound internet through pasta, nothing of
the host.

Inside bubblewrap's new network namespace the sandbox has only its own loopback. ``pasta``
(Debian package ``passt``) attaches to that namespace from the host and gives it:

* **outbound connections** the way the host makes them (the sandbox's packets become
  ordinary sockets of the agent's user, so ``npm install`` reaches the registry through the
  machine's normal route and DNS);
* **two inbound forwards**: host ``127.0.0.1:<free port>`` -> sandbox ``127.0.0.1:8888``
  (the runtime, for the agent) and another -> ``127.0.0.1:3000`` (the dev server, for the
  preview router). Loopback-to-loopback forwards are spliced in the kernel.

What it does not get: pasta runs with ``-T none -U none`` (no host loopback port is mapped
into the namespace) and ``--no-map-gw`` (the gateway address is the real gateway, not the
host), so ``127.0.0.1`` inside is the sandbox itself, and the host's address that pasta
copies is local inside too. Every *other* address of the host (a second interface, a
Docker bridge) and the cloud metadata endpoints would still be forwarded by pasta, so the
sandbox's first, still privileged step installs ``prohibit`` routes for them
(:func:`blocked_destinations`) before it drops every capability.
"""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

#: The runtime's and the dev server's ports inside an isolated sandbox (as in Kubernetes).
RUNTIME_PORT = 8888
PREVIEW_PORT = 3000
#: Cloud metadata endpoints (AWS/GCP/Azure/OpenStack, AWS ECS task role, AWS IPv6).
METADATA_V4 = ("169.254.169.254", "169.254.170.2")
METADATA_V6 = ("fd00:ec2::254",)
#: Used as the sandbox's resolver when the host's is on loopback (systemd-resolved's
#: 127.0.0.53): pasta answers DNS sent here with the host's resolver.
DNS_FORWARD_V4 = "169.254.0.53"


def local_addresses(fib_trie: str, if_inet6: str) -> list[str]:
    """The host's own unicast addresses (not loopback, not IPv6 link-local).

    Args:
        fib_trie: the text of ``/proc/net/fib_trie``.
        if_inet6: the text of ``/proc/net/if_inet6``.
    """
    found: list[str] = []
    last: str | None = None
    for line in fib_trie.splitlines():
        text = line.strip()
        if text.startswith("|--"):
            last = text[3:].strip()
        elif text.startswith("/32 host LOCAL") and last is not None:
            found.append(last)
    for line in if_inet6.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        raw, scope = fields[0], int(fields[3], 16)
        if scope in (0x10, 0x20):  # host (::1), link-local (fe80::/10)
            continue
        found.append(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    out = []
    for text in found:
        addr = ipaddress.ip_address(text)
        if not addr.is_loopback and str(addr) not in out:
            out.append(str(addr))
    return out


def read_local_addresses() -> list[str]:
    """:func:`local_addresses` of this machine (empty where ``/proc/net`` is missing)."""

    def read(path: str) -> str:
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    return local_addresses(read("/proc/net/fib_trie"), read("/proc/net/if_inet6"))


def blocked_destinations(host_addresses: Iterable[str]) -> list[str]:
    """Prefixes the sandbox gets ``prohibit`` routes for: every address of the host and the
    metadata endpoints (IPv6 ones only when the host has IPv6)."""
    hosts = [ipaddress.ip_address(a) for a in host_addresses]
    has_v6 = any(a.version == 6 for a in hosts)
    out = [f"{a}/{a.max_prefixlen}" for a in hosts]
    out += [f"{a}/32" for a in METADATA_V4]
    if has_v6:
        out += [f"{a}/128" for a in METADATA_V6]
    return out


def nameservers(resolv_conf: str) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf text."""
    found = []
    for line in resolv_conf.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            found.append(fields[1])
    return found


def sandbox_resolv_conf(host_resolv_conf: str) -> tuple[str, str | None]:
    """The sandbox's resolv.conf and the address pasta must forward DNS from (or None).

    A resolver on the host's loopback is unreachable from the sandbox's own loopback, so
    then the sandbox asks :data:`DNS_FORWARD_V4` and pasta relays to the host's resolver;
    ``search``/``options`` lines are kept either way.
    """
    servers = nameservers(host_resolv_conf)
    loopback = [s for s in servers if _is_loopback(s)]
    if servers and not loopback:
        return host_resolv_conf, None
    kept = [
        line
        for line in host_resolv_conf.splitlines()
        if line.split()[:1] and line.split()[0] in ("search", "domain", "options")
    ]
    return "\n".join([f"nameserver {DNS_FORWARD_V4}", *kept]) + "\n", DNS_FORWARD_V4


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def route_script(ip: str, blocked: Iterable[str]) -> str:
    """Shell lines adding a ``prohibit`` route for each prefix (one ``ip -batch``)."""
    lines = "".join(f"route add prohibit {prefix}\n" for prefix in blocked)
    if not lines:
        return ""
    return f"{ip} -batch - <<'EOF'\n{lines}EOF\n"


def pasta_argv(
    pasta: str,
    pid: int,
    forwards: Iterable[tuple[int, int]],
    *,
    dns_forward: str | None = None,
) -> list[str]:
    """pasta attached to the network namespace of ``pid``, in the foreground.

    Args:
        forwards: ``(host port, sandbox port)`` pairs; the host side binds ``127.0.0.1`` only.
        dns_forward: see :func:`sandbox_resolv_conf`.
    """
    argv = [pasta, "--foreground", "--quiet", "--config-net", "--no-map-gw"]
    if os.geteuid() == 0:
        # as root pasta switches to "nobody", which may not enter the sandbox's namespaces
        argv += ["--runas", "0:0"]
    ports = ",".join(f"{host}:{inner}" for host, inner in forwards)
    argv += ["--tcp-ports", f"127.0.0.1/{ports}" if ports else "none"]
    argv += ["--udp-ports", "none", "--tcp-ns", "none", "--udp-ns", "none"]
    if dns_forward:
        argv += ["--dns-forward", dns_forward]
    return [*argv, str(pid)]
