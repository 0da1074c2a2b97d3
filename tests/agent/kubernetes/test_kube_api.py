"""The adapter's error translation and watch handling, against the fake API server."""

from __future__ import annotations

import socket

import kubernetes
import pytest
import trio
from amicable_agent.sandboxes.kubernetes import api as kube
from amicable_testing.fake_kube import CLAIMS as FAKE_CLAIMS
from amicable_testing.fake_kube import FakeKube

NS = "sandboxes"
CLAIMS = kube.Resource("extensions.agents.x-k8s.io", "v1alpha1", "sandboxclaims", "SandboxClaim")
LEASES = kube.Resource("coordination.k8s.io", "v1", "leases", "Lease")


def _claim(name: str, **labels: str) -> dict:
    return {
        "apiVersion": CLAIMS.api_version,
        "kind": "SandboxClaim",
        "metadata": {"name": name, "labels": labels},
        "spec": {"sandboxTemplateRef": {"name": "amicable-sandbox-vite"}},
    }


@pytest.fixture
def api(fake: FakeKube) -> kube.KubeApi:
    client = kube.KubeApi(kubernetes.client.Configuration(host=fake.url), request_timeout_s=5)
    yield client
    client.close()


async def test_create_get_list_and_the_status_codes(api, fake):
    created = await api.create(CLAIMS, NS, _claim("one", team="a"))
    assert created["metadata"]["resourceVersion"]
    await api.create(CLAIMS, NS, _claim("two", team="b"))
    with pytest.raises(kube.KubeConflict) as conflict:
        await api.create(CLAIMS, NS, _claim("one"))
    assert conflict.value.reason == "AlreadyExists"
    assert (await api.get(CLAIMS, NS, "one"))["metadata"]["uid"] == created["metadata"]["uid"]
    items, rv = await api.list(CLAIMS, NS, label_selector="team=b")
    assert [i["metadata"]["name"] for i in items] == ["two"]
    assert int(rv) >= int(created["metadata"]["resourceVersion"])
    assert await api.find(CLAIMS, NS, "missing") is None
    with pytest.raises(kube.KubeInvalid, match="sandboxTemplateRef"):
        await api.create(CLAIMS, NS, {"metadata": {"name": "bad"}, "spec": {}})


async def test_missing_resource_type_and_rbac(api, fake):
    fake.forbidden.add((*FAKE_CLAIMS, "list"))
    with pytest.raises(kube.KubeForbidden, match="cannot list"):
        await api.list(CLAIMS, NS)
    fake.installed.discard(FAKE_CLAIMS)
    with pytest.raises(kube.KubeNotFound) as info:
        await api.find(CLAIMS, NS, "anything")  # not "no such object": no such type
    assert not info.value.named


async def test_conditional_replace_and_delete(api, fake):
    lease = await api.create(
        LEASES, NS, {"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}}
    )
    lease["spec"]["holderIdentity"] = "b"
    await api.replace(LEASES, NS, "l", lease)
    lease["spec"]["holderIdentity"] = "c"  # stale resourceVersion
    with pytest.raises(kube.KubeConflict):
        await api.replace(LEASES, NS, "l", lease)
    claim = await api.create(CLAIMS, NS, _claim("c"))
    await api.patch(CLAIMS, NS, "c", {"metadata": {"annotations": {"x": "1"}}})
    with pytest.raises(kube.KubeConflict):
        await api.delete(CLAIMS, NS, "c", resource_version=claim["metadata"]["resourceVersion"])
    await api.delete(CLAIMS, NS, "c")
    with pytest.raises(kube.KubeNotFound):
        await api.delete(CLAIMS, NS, "c")


async def test_watch_replays_from_resource_version_and_ends_when_cut(api, fake):
    # (a Lease: unlike claims, the fake's controller does not also write to it)
    first = await api.create(LEASES, NS, {"metadata": {"name": "w"}, "spec": {}})
    await api.patch(LEASES, NS, "w", {"metadata": {"annotations": {"x": "1"}}})
    async with api.watch(
        LEASES, NS, name="w", resource_version=first["metadata"]["resourceVersion"]
    ) as stream:
        event = await stream.next()
        assert event is not None
        assert event["type"] == "MODIFIED"
        assert event["object"]["metadata"]["annotations"] == {"x": "1"}
        fake.drop_watches()
        with trio.fail_after(10):
            assert await stream.next() is None


async def test_watch_from_a_compacted_resource_version_is_gone(api, fake):
    first = await api.create(CLAIMS, NS, _claim("g"))
    await api.patch(CLAIMS, NS, "g", {"metadata": {"annotations": {"x": "1"}}})
    fake.compact()
    async with api.watch(CLAIMS, NS, resource_version=first["metadata"]["resourceVersion"]) as s:
        with pytest.raises(kube.KubeGone):
            await s.next()


async def test_cancelling_a_blocked_watch_returns_promptly(api, fake):
    await api.create(CLAIMS, NS, _claim("q"))
    with trio.fail_after(10), trio.move_on_after(0.2):
        async with api.watch(CLAIMS, NS, name="q", timeout_s=300) as stream:
            assert (await stream.next())["type"] == "ADDED"  # type: ignore[index]
            await stream.next()  # nothing more happens: blocks until cancelled
    with trio.fail_after(10):
        await fake.wait_until(lambda: fake.open_watches == 0)


async def test_unreachable_api_server():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nothing listens there
    configuration = kubernetes.client.Configuration(host=f"http://127.0.0.1:{port}")
    configuration.retries = 0
    api = kube.KubeApi(configuration, request_timeout_s=2)
    with pytest.raises(kube.KubeUnavailable):
        await api.get(CLAIMS, NS, "x")
    api.close()
