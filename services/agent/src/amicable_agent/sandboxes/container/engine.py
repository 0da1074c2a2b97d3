"""The container engine's HTTP API (Docker Engine API, which ``podman system service`` also
speaks) on its Unix socket, through httpx: only the calls the container backend makes.

Every call is bounded by the client's timeout; errors are :class:`EngineError` (404 is
:class:`EngineNotFound`, 409 :class:`EngineConflict`) carrying the engine's own message.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import httpx

from amicable_agent.errors import SandboxError

#: The Docker Engine API version both Docker (>= 20.10) and Podman (>= 3) serve.
API_VERSION = "v1.41"

Obj = dict[str, Any]


class EngineError(SandboxError):
    """The engine refused a call or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EngineNotFound(EngineError):
    """404: no such container, volume or network."""


class EngineConflict(EngineError):
    """409: the name is taken, or the object is in use."""


def _error(response: httpx.Response, what: str) -> EngineError:
    try:
        message = str(response.json().get("message", "")) or response.text
    except (ValueError, AttributeError):
        message = response.text
    text = f"{what}: {message.strip()[:300]} ({response.status_code})"
    if response.status_code == 404:
        return EngineNotFound(text, 404)
    if response.status_code == 409:
        return EngineConflict(text, 409)
    return EngineError(text, response.status_code)


class Engine:
    """A Docker-compatible engine on ``socket_path``."""

    def __init__(self, socket_path: str, *, timeout_s: float = 60.0) -> None:
        self.socket_path = socket_path
        transport = httpx.AsyncHTTPTransport(uds=socket_path)
        self._http = httpx.AsyncClient(
            transport=transport, base_url=f"http://engine/{API_VERSION}", timeout=timeout_s
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, what: str, *, ok: tuple[int, ...] = (200,), **kw: Any
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise EngineError(
                f"{what}: the engine at {self.socket_path} is unreachable: {exc}"
            ) from exc
        if response.status_code not in ok:
            raise _error(response, what)
        return response

    async def ping(self) -> None:
        await self._call("GET", "/_ping", "ping")

    async def image_exists(self, image: str) -> bool:
        try:
            await self._call("GET", f"/images/{image}/json", f"inspect image {image}")
        except EngineNotFound:
            return False
        return True

    async def ensure_network(
        self,
        name: str,
        *,
        internal: bool,
        labels: dict[str, str],
        options: dict[str, str] | None = None,
    ) -> Obj:
        """The inspected network ``name``, created first when missing."""
        try:
            return dict((await self._call("GET", f"/networks/{name}", "inspect network")).json())
        except EngineNotFound:
            pass
        body = {
            "Name": name, "Driver": "bridge", "Internal": internal, "Labels": labels,
            "Options": options or {},
        }  # fmt: skip
        with contextlib.suppress(EngineConflict):  # created meanwhile
            await self._call("POST", "/networks/create", "create network", ok=(200, 201), json=body)
        return dict((await self._call("GET", f"/networks/{name}", "inspect network")).json())

    async def podman_network(self, name: str) -> Obj | None:
        """Podman's own view of a network (``network_interface``, …); None on Docker."""
        try:
            response = await self._call(
                "GET", f"http://engine/v4.0.0/libpod/networks/{name}/json", "inspect network"
            )
        except EngineError:
            return None
        return dict(response.json())

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        """Create the volume (an existing one of that name is kept as it is)."""
        body = {"Name": name, "Labels": labels}
        with contextlib.suppress(EngineConflict):
            await self._call("POST", "/volumes/create", "create volume", ok=(200, 201), json=body)

    async def inspect_volume(self, name: str) -> Obj | None:
        try:
            response = await self._call("GET", f"/volumes/{name}", "inspect volume")
        except EngineNotFound:
            return None
        return dict(response.json())

    async def list_volumes(self, *labels: str) -> list[Obj]:
        """Volumes carrying every ``key=value`` of ``labels``."""
        filters = json.dumps({"label": list(labels)})
        response = await self._call("GET", "/volumes", "list volumes", params={"filters": filters})
        return [dict(item) for item in response.json().get("Volumes") or []]

    async def remove_volume(self, name: str) -> None:
        with contextlib.suppress(EngineNotFound):
            await self._call("DELETE", f"/volumes/{name}", "remove volume", ok=(204,))

    async def create_container(self, name: str, body: Obj) -> str:
        response = await self._call(
            "POST", "/containers/create", "create container", ok=(201,),
            params={"name": name}, json=body,
        )  # fmt: skip
        return str(response.json()["Id"])

    async def start(self, name: str) -> None:
        await self._call("POST", f"/containers/{name}/start", "start container", ok=(204, 304))

    async def rename(self, name: str, new_name: str) -> None:
        """Rename a container (atomic: of two renames of one container, one gets 404)."""
        await self._call(
            "POST", f"/containers/{name}/rename", "rename container", ok=(200, 204),
            params={"name": new_name},
        )  # fmt: skip

    async def stop(self, name: str, *, grace_s: int = 5) -> None:
        await self._call(
            "POST", f"/containers/{name}/stop", "stop container", ok=(204, 304),
            params={"t": grace_s},
        )  # fmt: skip

    async def remove_container(self, name: str) -> None:
        with contextlib.suppress(EngineNotFound):
            await self._call(
                "DELETE", f"/containers/{name}", "remove container", ok=(204,),
                params={"force": "true", "v": "false"},
            )  # fmt: skip

    async def inspect(self, name: str) -> Obj | None:
        try:
            response = await self._call("GET", f"/containers/{name}/json", "inspect container")
        except EngineNotFound:
            return None
        return dict(response.json())

    async def list_containers(self, *labels: str) -> list[Obj]:
        """Containers (running or not) carrying every ``key=value`` of ``labels``."""
        filters = json.dumps({"label": list(labels)})
        response = await self._call(
            "GET", "/containers/json", "list containers", params={"all": "true", "filters": filters}
        )
        return [dict(item) for item in response.json()]
