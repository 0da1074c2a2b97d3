"""The Kubernetes backend's configuration (namespace, templates, TTLs, the reaper's lease),
read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from amicable_settings import (
    choice,
    errors_as,
    integer,
    json_value,
    number,
    seconds,
    secret,
    string,
)

from amicable_agent.errors import ConfigError

from .objects import ClaimApiVersion, IdleAction


@attrs.frozen
class KubernetesBackendConfig:
    """Configuration of :class:`KubernetesBackend` (see :meth:`from_env` for the names).

    Attributes:
        namespace: where claims live (``K8S_SANDBOX_NAMESPACE``).
        template_name: fallback SandboxTemplate (``K8S_SANDBOX_TEMPLATE_NAME``); with the
            ``v1beta1`` claim API this names a SandboxWarmPool (claims reference pools).
        template_map: project template id -> SandboxTemplate (or pool) name
            (``AMICABLE_TEMPLATE_K8S_TEMPLATE_MAP_JSON``, e.g. ``{"vite": "amicable-vite"}``).
        ready_timeout_s: bound on claim -> Sandbox Ready (``K8S_SANDBOX_READY_TIMEOUT``).
        claim_api_version: ``v1alpha1`` | ``v1beta1`` (``AMICABLE_SANDBOX_CLAIM_API_VERSION``).
        idle_ttl_s: idle lifetime of a sandbox (``AMICABLE_SANDBOX_IDLE_TTL_S``; 0 = forever).
        idle_action: what happens to an idle sandbox (``AMICABLE_SANDBOX_IDLE_ACTION``):
            ``delete`` its claim, or ``pause`` it (the Sandbox scaled to zero, its volumes
            kept; resumed by the next ``ensure``). The project's snapshots are the source of
            truth either way.
        paused_ttl_s: a sandbox paused this long is deleted after all
            (``AMICABLE_SANDBOX_PAUSED_TTL_S``; 0 = keep paused sandboxes).
        runtime_port / preview_port: ``SANDBOX_RUNTIME_PORT`` / ``SANDBOX_PREVIEW_PORT``.
        service_host_template: host of a sandbox's Service, ``{name}`` and ``{namespace}``
            substituted (``AMICABLE_K8S_SERVICE_HOST_TEMPLATE``; tests point it at loopback).
        runtime_token_secret: ``AMICABLE_RUNTIME_TOKEN_SECRET`` (or ``_FILE``).
        runtime_probe_timeout_s: runtime must answer this soon after a new sandbox is Ready
            (``K8S_RUNTIME_READY_NEW_TIMEOUT_S``); ``runtime_probe_existing_timeout_s`` for a
            reconnect (``K8S_RUNTIME_READY_TIMEOUT_S``); polled every
            ``runtime_probe_interval_s`` (``K8S_RUNTIME_READY_POLL_MS``).
        reap_interval_s: reaper period (``AMICABLE_SANDBOX_REAP_INTERVAL_S``; 0 = no reaper).
        replica_id: this agent's identity in the reaper Lease (``HOSTNAME``).
        lease_name: the reaper's ``coordination.k8s.io`` Lease.
        kubeconfig: kubeconfig path when not in a cluster (``KUBECONFIG``).
        request_timeout_s: deadline of each API request.
    """

    namespace: str = "default"
    template_name: str = "amicable-sandbox"
    template_map: Mapping[str, str] = attrs.field(factory=dict)
    ready_timeout_s: float = 180.0
    claim_api_version: ClaimApiVersion = "v1alpha1"
    idle_ttl_s: float = 1800.0
    idle_action: IdleAction = "delete"
    paused_ttl_s: float = 7 * 24 * 3600.0
    runtime_port: int = 8888
    preview_port: int = 3000
    service_host_template: str = "{name}.{namespace}.svc.cluster.local"
    runtime_token_secret: str | None = attrs.field(default=None, repr=False)
    runtime_probe_timeout_s: float = 30.0
    runtime_probe_existing_timeout_s: float = 5.0
    runtime_probe_interval_s: float = 0.25
    reap_interval_s: float = 60.0
    replica_id: str = "amicable-agent"
    lease_name: str = "amicable-sandbox-reaper"
    kubeconfig: str | None = None
    request_timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KubernetesBackendConfig:
        """Read the configuration from environment variables (unset = default).

        Raises:
            ConfigError: a variable has a value the backend cannot use (a ``ValueError``).
        """
        with errors_as(ConfigError):
            mapping: object = json_value(env, "AMICABLE_TEMPLATE_K8S_TEMPLATE_MAP_JSON", {})
            if not isinstance(mapping, dict) or not all(
                isinstance(v, str) for v in mapping.values()
            ):
                raise ConfigError(
                    "AMICABLE_TEMPLATE_K8S_TEMPLATE_MAP_JSON must be a JSON object of strings"
                )
            poll_ms = number(env, "K8S_RUNTIME_READY_POLL_MS", 250.0, minimum=0)
            return cls(
                namespace=string(env, "K8S_SANDBOX_NAMESPACE", "default"),
                template_name=string(env, "K8S_SANDBOX_TEMPLATE_NAME", "amicable-sandbox"),
                template_map={str(k): v for k, v in mapping.items()},
                ready_timeout_s=seconds(env, "K8S_SANDBOX_READY_TIMEOUT", 180.0),
                claim_api_version=choice(
                    env, "AMICABLE_SANDBOX_CLAIM_API_VERSION", "v1alpha1", ("v1alpha1", "v1beta1")
                ),
                idle_ttl_s=seconds(env, "AMICABLE_SANDBOX_IDLE_TTL_S", 1800.0),
                idle_action=choice(
                    env, "AMICABLE_SANDBOX_IDLE_ACTION", "delete", ("delete", "pause")
                ),
                paused_ttl_s=seconds(env, "AMICABLE_SANDBOX_PAUSED_TTL_S", 7 * 24 * 3600.0),
                runtime_port=integer(env, "SANDBOX_RUNTIME_PORT", 8888, minimum=1, maximum=65535),
                preview_port=integer(env, "SANDBOX_PREVIEW_PORT", 3000, minimum=1, maximum=65535),
                service_host_template=string(
                    env,
                    "AMICABLE_K8S_SERVICE_HOST_TEMPLATE",
                    "{name}.{namespace}.svc.cluster.local",
                ),
                runtime_token_secret=secret(env, "AMICABLE_RUNTIME_TOKEN_SECRET"),
                runtime_probe_timeout_s=seconds(env, "K8S_RUNTIME_READY_NEW_TIMEOUT_S", 30.0),
                runtime_probe_existing_timeout_s=seconds(env, "K8S_RUNTIME_READY_TIMEOUT_S", 5.0),
                runtime_probe_interval_s=max(0.05, poll_ms / 1000),
                reap_interval_s=seconds(env, "AMICABLE_SANDBOX_REAP_INTERVAL_S", 60.0),
                replica_id=string(env, "HOSTNAME", "amicable-agent"),
                kubeconfig=string(env, "KUBECONFIG", None),
            )

    def template_for(self, template_id: str) -> str:
        """The SandboxTemplate (v1alpha1) or SandboxWarmPool (v1beta1) of a project template."""
        return self.template_map.get(template_id, self.template_name)
