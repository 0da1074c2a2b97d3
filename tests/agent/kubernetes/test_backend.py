"""KubernetesBackend against the fake API server, driven by the real ``kubernetes`` client."""

from __future__ import annotations

import logging
from pathlib import Path

import jsonschema
import pytest
import trio
import yaml
from amicable_agent.errors import SandboxProvisionError
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.kubernetes.backend import (
    KubernetesBackendConfig,
    derive_runtime_token,
)
from amicable_agent.sandboxes.kubernetes.objects import parse_time
from amicable_testing.fake_kube import CLAIMS, SANDBOXES, TEMPLATES, FakeKube

NS = "sandboxes"
TEMPLATE = "amicable-sandbox-vite"
CRDS = Path(__file__).parent / "crds"


class Stages:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, stage: str, message: str) -> None:
        self.seen.append(stage)


def claim_posts(fake: FakeKube) -> int:
    return sum(1 for m, t in fake.requests if m == "POST" and "/sandboxclaims" in t)


async def test_ensure_creates_labelled_claim_and_waits_until_ready(
    fake, open_backend, runtime, clock
):
    stages = Stages()
    async with open_backend(template_map={"vite": TEMPLATE}, template_name="other") as backend:
        handle = await backend.ensure(
            "sess-1", project_id="p1", template_id="vite", on_stage=stages
        )

    name = sandbox_id_for("sess-1")
    assert handle.sandbox_id == name
    assert not handle.existed
    assert handle.runtime_url == f"http://127.0.0.1:{runtime.port}"
    assert handle.preview_upstream == "http://127.0.0.1:3000"
    assert handle.runtime_token == derive_runtime_token("s3cret", name)
    assert stages.seen == ["creating", "starting_runtime"]
    # the runtime was probed with the per-sandbox token
    assert f"Bearer {handle.runtime_token}" in runtime.authorizations

    claim = fake.get(CLAIMS, NS, name)
    assert claim is not None
    assert claim["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "amicable",
        "amicable.dev/project-id": "p1",
    }
    assert claim["metadata"]["annotations"]["amicable.dev/session-id"] == "sess-1"
    assert claim["spec"]["sandboxTemplateRef"] == {"name": TEMPLATE}
    assert claim["spec"]["env"] == [
        {"name": "AMICABLE_RUNTIME_TOKEN", "value": handle.runtime_token}
    ]
    shutdown = parse_time(claim["spec"]["lifecycle"]["shutdownTime"])
    assert shutdown is not None
    assert abs(shutdown - (clock.now + 600)) < 2
    sandbox = fake.get(SANDBOXES, NS, name)
    assert sandbox is not None
    assert sandbox["metadata"]["ownerReferences"][0]["uid"] == claim["metadata"]["uid"]


async def test_reconnect_after_agent_restart_reuses_the_claim_and_renews_ttl(
    fake, open_backend, clock
):
    async with open_backend() as first:
        await first.ensure("sess-2", project_id="p1", template_id="vite")
    posts = claim_posts(fake)
    clock.advance(300)
    stages = Stages()
    async with open_backend() as second:  # a new process: no in-memory state
        handle = await second.ensure("sess-2", project_id="p1", template_id="vite", on_stage=stages)
    assert handle.existed
    assert claim_posts(fake) == posts
    assert "creating" not in stages.seen
    claim = fake.get(CLAIMS, NS, sandbox_id_for("sess-2"))
    assert claim is not None
    assert abs(parse_time(claim["spec"]["lifecycle"]["shutdownTime"]) - (clock.now + 600)) < 2  # type: ignore[operator]


async def test_two_replicas_ensuring_the_same_session_share_one_claim(fake, open_backend):
    fake.bind_delay_s = 0.05
    handles = []
    async with open_backend() as a, open_backend() as b:

        async def ensure(backend) -> None:
            handles.append(await backend.ensure("sess-3", project_id="p1", template_id="vite"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ensure, a)
            nursery.start_soon(ensure, b)
    assert {h.sandbox_id for h in handles} == {sandbox_id_for("sess-3")}
    assert len(fake.objects(CLAIMS, NS)) == 1
    assert len(fake.objects(SANDBOXES, NS)) == 1


@pytest.mark.parametrize("version", ["v1alpha1", "v1beta1"])
def test_claim_body_validates_against_the_crd_schema(version, clock):
    from amicable_agent.sandboxes.kubernetes import api as kube
    from amicable_agent.sandboxes.kubernetes.backend import KubernetesBackend

    config = KubernetesBackendConfig(claim_api_version=version, runtime_token_secret="x")
    backend = KubernetesBackend(config, api=None, clock=clock)  # type: ignore[arg-type]
    body = backend.claim_body(
        "sess", project_id="4f7c0a52-2d0b-4c55-9a43-0e0a1c7c2a10", template_id="vite"
    )
    crd = yaml.safe_load((CRDS / "extensions.agents.x-k8s.io_sandboxclaims.yaml").read_text())
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"][
        "openAPIV3Schema"
    ]
    jsonschema.validate(body, schema, format_checker=jsonschema.FormatChecker())
    assert body["apiVersion"] == f"extensions.agents.x-k8s.io/{version}"
    assert kube.Resource("a", "b", "c", "D").api_version == "a/b"
    # and every key we send exists in that version's schema (no silently pruned fields)
    assert set(body["spec"]) <= set(schema["properties"]["spec"]["properties"])


async def test_v1beta1_claim_binds_to_a_prewarmed_sandbox(fake, open_backend, caplog):
    fake.ready_delay_s = None  # a cold sandbox would never become ready
    fake.add_warm_pool(NS, "vite-pool", TEMPLATE, replicas=1)
    caplog.set_level(logging.INFO, logger="amicable_agent.sandboxes.kubernetes.backend")
    async with open_backend(claim_api_version="v1beta1", template_name="vite-pool") as backend:
        handle = await backend.ensure("sess-warm", project_id="p1", template_id="vite")
    claim = fake.get(CLAIMS, NS, handle.sandbox_id)
    assert claim is not None
    assert claim["spec"]["warmPoolRef"] == {"name": "vite-pool"}
    bound = claim["status"]["sandbox"]["name"]
    assert bound.startswith("vite-pool-")
    sandbox = fake.get(SANDBOXES, NS, bound)
    assert sandbox is not None
    assert sandbox["metadata"]["ownerReferences"][0]["name"] == handle.sandbox_id
    assert any(
        "warm=True" in r.getMessage() and "ready in" in r.getMessage() for r in caplog.records
    )


async def test_controller_without_sandbox_name_means_same_named_sandbox(fake, open_backend):
    fake.report_sandbox_name = False
    async with open_backend() as backend:
        handle = await backend.ensure("sess-old", project_id="p1", template_id="vite")
    claim = fake.get(CLAIMS, NS, handle.sandbox_id)
    assert claim is not None
    assert "sandbox" not in claim["status"]
    assert claim["status"]["conditions"][0]["status"] == "True"


async def test_timeout_names_the_claim_and_the_sandbox_conditions(fake, open_backend):
    fake.ready_delay_s = None
    async with open_backend(ready_timeout_s=0.5) as backend:
        with pytest.raises(SandboxProvisionError) as info:
            await backend.ensure("sess-slow", project_id="p1", template_id="vite")
    reason = info.value.reason
    assert "Timed out" in reason
    assert sandbox_id_for("sess-slow") in reason
    assert f"namespace={NS}" in reason
    assert "Ready=False (DependenciesNotReady): Pod is not ready" in reason


async def test_missing_crds_are_reported_as_such(fake, open_backend):
    fake.installed -= {CLAIMS, TEMPLATES, SANDBOXES}
    async with open_backend() as backend:
        with pytest.raises(SandboxProvisionError, match="CRDs are not installed"):
            await backend.ensure("sess-x", project_id="p1", template_id="vite")


async def test_rbac_denial_is_reported_as_such(fake, open_backend):
    fake.forbidden.add((*CLAIMS, "create"))
    async with open_backend() as backend:
        with pytest.raises(SandboxProvisionError, match=r"not allowed .*RBAC.*cannot create"):
            await backend.ensure("sess-x", project_id="p1", template_id="vite")


async def test_missing_template_is_reported_before_creating_a_claim(fake, open_backend):
    async with open_backend(template_map={"nextjs": "no-such-template"}) as backend:
        with pytest.raises(SandboxProvisionError, match=r"'no-such-template'.*does not exist"):
            await backend.ensure("sess-x", project_id="p1", template_id="nextjs")
    assert fake.objects(CLAIMS, NS) == []


async def test_missing_template_reported_by_the_controller_fails_fast(fake, open_backend):
    fake.forbidden.add((*TEMPLATES, "get"))  # the agent may not read templates
    async with open_backend(template_name="no-such-template", ready_timeout_s=30) as backend:
        with trio.fail_after(10):  # well before the ready timeout
            with pytest.raises(SandboxProvisionError, match=r"cannot be satisfied.*not found"):
                await backend.ensure("sess-x", project_id="p1", template_id="vite")


async def test_unreachable_runtime_is_reported(fake, open_backend):
    async with open_backend(runtime_port=1, runtime_probe_timeout_s=0.3) as backend:
        with pytest.raises(SandboxProvisionError, match="runtime_unreachable"):
            await backend.ensure("sess-x", project_id="p1", template_id="vite")


async def test_lost_watch_connection_is_resumed(fake, open_backend):
    fake.ready_delay_s = None
    name = sandbox_id_for("sess-w")
    async with open_backend() as backend, trio.open_nursery() as nursery:
        result = []

        async def ensure() -> None:
            result.append(await backend.ensure("sess-w", project_id="p1", template_id="vite"))

        nursery.start_soon(ensure)
        with trio.fail_after(10):
            await fake.wait_until(
                lambda: fake.open_watches == 1 and fake.get(SANDBOXES, NS, name) is not None
            )
            before = fake.watch_requests
            fake.drop_watches()
            await fake.wait_until(lambda: fake.watch_requests > before and fake.open_watches == 1)
        fake.mark_ready(NS, name)
    assert result[0].sandbox_id == name


async def test_expired_resource_version_relists_and_continues(fake, open_backend):
    fake.ready_delay_s = None
    fake.expire_watches = 2  # the next two watches get "410 Expired"
    name = sandbox_id_for("sess-410")
    async with open_backend() as backend, trio.open_nursery() as nursery:
        result = []

        async def ensure() -> None:
            result.append(await backend.ensure("sess-410", project_id="p1", template_id="vite"))

        nursery.start_soon(ensure)
        with trio.fail_after(10):
            await fake.wait_until(lambda: fake.expire_watches == 0 and fake.open_watches == 1)
        fake.mark_ready(NS, name)
    assert result[0].sandbox_id == name


async def test_delete_is_foreground_and_idempotent(fake, open_backend):
    async with open_backend() as backend:
        handle = await backend.ensure("sess-d", project_id="p1", template_id="vite")
        assert await backend.lookup(handle.sandbox_id) is not None
        history_start = len(fake._history)
        await backend.delete(handle.sandbox_id)
        with trio.fail_after(10):
            await fake.wait_until(lambda: fake.get(CLAIMS, NS, handle.sandbox_id) is None)
        await backend.delete(handle.sandbox_id)  # already gone: not an error
        assert await backend.lookup(handle.sandbox_id) is None
    events = [(e.type, e.res) for e in fake._history[history_start:]]
    # foreground: the claim is marked first, its Sandbox goes, then the claim itself
    assert events == [("MODIFIED", CLAIMS), ("DELETED", SANDBOXES), ("DELETED", CLAIMS)]


async def test_ensure_after_delete_recreates_the_sandbox(fake, open_backend):
    async with open_backend() as backend:
        first = await backend.ensure("sess-r", project_id="p1", template_id="vite")
        await backend.delete(first.sandbox_id)
        again = await backend.ensure("sess-r", project_id="p1", template_id="vite")
    assert again.sandbox_id == first.sandbox_id
    assert not again.existed


async def test_touch_renews_shutdown_time_throttled(fake, open_backend, clock):
    async with open_backend(idle_ttl_s=600) as backend:
        handle = await backend.ensure("sess-t", project_id="p1", template_id="vite")

        def shutdown_time() -> float:
            claim = fake.get(CLAIMS, NS, handle.sandbox_id)
            assert claim is not None
            value = parse_time(claim["spec"]["lifecycle"]["shutdownTime"])
            assert value is not None
            return value

        first = shutdown_time()
        clock.advance(30)  # within the throttle window (min(60, ttl/10) = 60 s)
        patches = sum(1 for m, _ in fake.requests if m == "PATCH")
        await backend.touch(handle.sandbox_id)
        assert sum(1 for m, _ in fake.requests if m == "PATCH") == patches
        clock.advance(60)
        await backend.touch(handle.sandbox_id)
        assert abs(shutdown_time() - (first + 90)) < 2
        await backend.delete(handle.sandbox_id)
        await backend.touch(handle.sandbox_id)  # a vanished sandbox is not an error


async def test_list_reports_managed_sandboxes(fake, open_backend, clock):
    fake.put(
        CLAIMS,
        "v1alpha1",
        NS,
        {"metadata": {"name": "not-ours"}, "spec": {"sandboxTemplateRef": {"name": TEMPLATE}}},
    )
    async with open_backend() as backend:
        await backend.ensure("sess-l", project_id="p2", template_id="vite")
        infos = await backend.list()
    assert [(i.sandbox_id, i.session_id, i.project_id, i.ready) for i in infos] == [
        (sandbox_id_for("sess-l"), "sess-l", "p2", True)
    ]
    assert infos[0].last_active_s is not None
    assert abs(infos[0].last_active_s - clock.now) < 2


def test_config_from_env():
    config = KubernetesBackendConfig.from_env(
        {
            "K8S_SANDBOX_NAMESPACE": "amicable",
            "K8S_SANDBOX_TEMPLATE_NAME": "amicable-sandbox-vite",
            "AMICABLE_TEMPLATE_K8S_TEMPLATE_MAP_JSON": '{"nextjs": "amicable-sandbox-next"}',
            "K8S_SANDBOX_READY_TIMEOUT": "90",
            "AMICABLE_SANDBOX_CLAIM_API_VERSION": "v1beta1",
            "AMICABLE_SANDBOX_IDLE_TTL_S": "120",
            "SANDBOX_RUNTIME_PORT": "9999",
            "AMICABLE_RUNTIME_TOKEN_SECRET": "hunter2-secret",
            "HOSTNAME": "agent-0",
        }
    )
    assert config.namespace == "amicable"
    assert config.template_for("nextjs") == "amicable-sandbox-next"
    assert config.template_for("vite") == "amicable-sandbox-vite"
    assert config.ready_timeout_s == 90
    assert config.claim_api_version == "v1beta1"
    assert config.idle_ttl_s == 120
    assert config.runtime_port == 9999
    assert config.preview_port == 3000
    assert config.runtime_token_secret == "hunter2-secret"
    assert "hunter2" not in repr(config)
    assert config.replica_id == "agent-0"
    defaults = KubernetesBackendConfig.from_env({})
    assert (defaults.namespace, defaults.ready_timeout_s, defaults.claim_api_version) == (
        "default",
        180.0,
        "v1alpha1",
    )
    with pytest.raises(ValueError, match="v1alpha1"):
        KubernetesBackendConfig.from_env({"AMICABLE_SANDBOX_CLAIM_API_VERSION": "v2"})


def test_config_reads_the_token_secret_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    config = KubernetesBackendConfig.from_env({"AMICABLE_RUNTIME_TOKEN_SECRET_FILE": str(secret)})
    assert config.runtime_token_secret == "from-file"


def test_runtime_token_is_per_sandbox_and_secret_dependent():
    a = derive_runtime_token("secret", "amicable-aaaaaaaaaaaa")
    assert a == derive_runtime_token("secret", "amicable-aaaaaaaaaaaa")
    assert a != derive_runtime_token("secret", "amicable-bbbbbbbbbbbb")
    assert a != derive_runtime_token("other", "amicable-aaaaaaaaaaaa")


async def test_kubeconfig_is_used_outside_a_cluster(fake, runtime, tmp_path, monkeypatch):
    from amicable_agent.sandboxes.kubernetes.backend import open_kubernetes_backend

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
                "users": [{"name": "me", "user": {"token": "t"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                "current-context": "fake",
            }
        )
    )
    config = KubernetesBackendConfig(
        namespace=NS,
        template_name=TEMPLATE,
        service_host_template="127.0.0.1",
        runtime_port=runtime.port,
        reap_interval_s=0,
        kubeconfig=str(kubeconfig),
    )

    async def exists(project_id: str) -> bool:
        return True

    async with open_kubernetes_backend(config, project_exists=exists) as backend:
        handle = await backend.ensure("sess-kc", project_id="p1", template_id="vite")
    assert fake.get(CLAIMS, NS, handle.sandbox_id) is not None


async def test_no_cluster_configuration_is_a_clear_error(tmp_path, monkeypatch):
    from amicable_agent.errors import SandboxError
    from amicable_agent.sandboxes.kubernetes.backend import open_kubernetes_backend

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = KubernetesBackendConfig(kubeconfig=str(tmp_path / "missing"))

    async def exists(project_id: str) -> bool:
        return True

    with pytest.raises(SandboxError, match="cannot configure the Kubernetes client"):
        async with open_kubernetes_backend(config, project_exists=exists):
            pass
