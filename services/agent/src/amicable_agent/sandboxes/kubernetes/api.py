"""The one adapter around the synchronous ``kubernetes`` client.

Every call runs in a worker thread (``trio.to_thread.run_sync``) under a
:class:`trio.CapacityLimiter`, works on plain dicts (``CustomObjectsApi`` paths serve
agent-sandbox CRDs and ``coordination.k8s.io`` Leases alike), has a socket deadline, and
translates the client's exceptions into :class:`KubeApiError` here, once. These errors never
leave the Kubernetes backend: it turns them into :class:`~amicable_agent.errors.SandboxError`
with a sentence for the user.
"""

from __future__ import annotations

import contextlib
import json
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import kubernetes
import trio
import urllib3
from kubernetes.watch.watch import iter_resp_lines

from amicable_agent.errors import AgentError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

logger = logging.getLogger(__name__)

Obj = dict[str, Any]


@attrs.frozen
class Resource:
    """A namespaced resource type: API group, version, plural and kind."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


class KubeApiError(AgentError):
    """The API server answered with an error, or could not be reached (``status`` 0)."""

    def __init__(self, status: int, reason: str, message: str, *, named: bool = False) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        #: the Status body names an object (404 of an object, not of the resource type)
        self.named = named


class KubeNotFound(KubeApiError):
    """404: the object (``named``) or the whole resource type (missing CRD) does not exist."""


class KubeForbidden(KubeApiError):
    """403: RBAC denies the call."""


class KubeConflict(KubeApiError):
    """409: AlreadyExists, or a resourceVersion/precondition conflict."""


class KubeGone(KubeApiError):
    """410: a watch's resourceVersion is too old."""


class KubeInvalid(KubeApiError):
    """422: the object failed validation."""


class KubeUnavailable(KubeApiError):
    """No answer: connection refused/reset, timeout, or a 5xx."""


_BY_STATUS: dict[int, type[KubeApiError]] = {
    403: KubeForbidden,
    404: KubeNotFound,
    409: KubeConflict,
    410: KubeGone,
    422: KubeInvalid,
}


def error_from_status(status: int, body: str | bytes | None) -> KubeApiError:
    """Build the right :class:`KubeApiError` from an HTTP status and a ``Status`` body."""
    reason, message, named = "", "", False
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        data = None
    if isinstance(data, dict):
        reason = str(data.get("reason") or "")
        message = str(data.get("message") or "")
        details = data.get("details") or {}
        named = isinstance(details, dict) and bool(details.get("name"))
        if data.get("kind") == "Status" and isinstance(data.get("code"), int):
            status = data["code"]
    elif body:
        message = (body.decode(errors="replace") if isinstance(body, bytes) else body)[:200]
    cls = _BY_STATUS.get(status, KubeUnavailable if status >= 500 or status == 0 else KubeApiError)
    return cls(status, reason or "Error", message, named=named)


def _translate(exc: Exception) -> KubeApiError:
    if isinstance(exc, kubernetes.client.ApiException):
        return error_from_status(int(exc.status or 0), exc.body)
    return KubeUnavailable(0, "Unavailable", f"Kubernetes API unreachable: {exc}")


_CLIENT_ERRORS: tuple[type[Exception], ...] = (
    kubernetes.client.ApiException,
    urllib3.exceptions.HTTPError,
    OSError,
)


def load_configuration(kubeconfig: str | None = None) -> kubernetes.client.Configuration:
    """In-cluster service-account config first, the local kubeconfig otherwise.

    Raises:
        KubeUnavailable: neither is available.
    """
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        try:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
        except (kubernetes.config.ConfigException, OSError) as exc:
            raise KubeUnavailable(0, "NoConfig", f"no in-cluster or kubeconfig: {exc}") from exc
    return configuration


class WatchStream:
    """One open watch: :meth:`next` returns decoded events, ``None`` when the stream ends."""

    def __init__(self, response: urllib3.HTTPResponse, limiter: trio.CapacityLimiter) -> None:
        self._response = response
        self._lines: Iterator[str] = iter_resp_lines(response)  # type: ignore[no-untyped-call]
        self._limiter = limiter

    def _next_line(self) -> str | None:
        try:
            return next(self._lines, None)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            # A cut connection (or one we shut down) ends the stream; the caller re-watches.
            logger.debug("watch stream ended: %r", exc)
            return None

    async def next(self) -> Obj | None:
        """The next event ``{"type": ..., "object": {...}}``, or ``None`` at end of stream.

        Raises:
            KubeGone: the server answered ``ERROR`` with code 410 (resourceVersion too old).
            KubeApiError: any other ``ERROR`` event.
        """
        while True:
            line = await trio.to_thread.run_sync(
                self._next_line, limiter=self._limiter, abandon_on_cancel=True
            )
            if line is None:
                return None
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("type") == "ERROR":
                obj = event.get("object") or {}
                raise error_from_status(int(obj.get("code") or 0), json.dumps(obj))
            if event.get("type") == "BOOKMARK":
                continue
            return event

    def close(self) -> None:
        # shutdown() unblocks a worker thread stuck reading this socket; close() drops the
        # connection (half-read, it must not go back to the pool) so the server sees EOF.
        with contextlib.suppress(ValueError, OSError):  # ValueError: already released
            self._response.shutdown()
        self._response.close()


class KubeApi:
    """Async, dict-based access to namespaced resources through the ``kubernetes`` client.

    Args:
        configuration: where and how to reach the API server.
        max_threads: concurrent blocking calls (watch reads have their own limiter).
        request_timeout_s: connect and read deadline of every request.
    """

    def __init__(
        self,
        configuration: kubernetes.client.Configuration,
        *,
        max_threads: int = 8,
        request_timeout_s: float = 10.0,
    ) -> None:
        self._client = kubernetes.client.ApiClient(configuration)
        self._objects = kubernetes.client.CustomObjectsApi(self._client)
        self._limiter = trio.CapacityLimiter(max_threads)
        self._watch_limiter = trio.CapacityLimiter(256)
        self._timeout = (request_timeout_s, request_timeout_s)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            try:
                return fn(*args, _request_timeout=self._timeout, **kwargs)
            except _CLIENT_ERRORS as exc:
                raise _translate(exc) from exc

        return await trio.to_thread.run_sync(run, limiter=self._limiter, abandon_on_cancel=True)

    async def get(self, res: Resource, namespace: str, name: str) -> Obj:
        """GET one object. Raises :class:`KubeNotFound` if it is missing."""
        obj: Obj = await self._call(
            self._objects.get_namespaced_custom_object,
            res.group, res.version, namespace, res.plural, name,
        )  # fmt: skip
        return obj

    async def find(self, res: Resource, namespace: str, name: str) -> Obj | None:
        """GET one object, ``None`` if that object does not exist.

        Raises:
            KubeNotFound: the resource type itself is unknown (CRD not installed).
        """
        try:
            return await self.get(res, namespace, name)
        except KubeNotFound as exc:
            if exc.named:
                return None
            raise

    async def list(
        self, res: Resource, namespace: str, *, label_selector: str = ""
    ) -> tuple[list[Obj], str]:
        """LIST objects; returns the items and the list's resourceVersion."""
        data: Obj = await self._call(
            self._objects.list_namespaced_custom_object,
            res.group, res.version, namespace, res.plural,
            label_selector=label_selector or None,
        )  # fmt: skip
        return list(data.get("items") or []), str(data.get("metadata", {}).get("resourceVersion"))

    async def create(self, res: Resource, namespace: str, body: Obj) -> Obj:
        """POST a new object (raises :class:`KubeConflict` if the name is taken)."""
        obj: Obj = await self._call(
            self._objects.create_namespaced_custom_object,
            res.group, res.version, namespace, res.plural, body,
        )  # fmt: skip
        return obj

    async def replace(self, res: Resource, namespace: str, name: str, body: Obj) -> Obj:
        """PUT an object; a ``metadata.resourceVersion`` in ``body`` makes it conditional."""
        obj: Obj = await self._call(
            self._objects.replace_namespaced_custom_object,
            res.group, res.version, namespace, res.plural, name, body,
        )  # fmt: skip
        return obj

    async def patch(self, res: Resource, namespace: str, name: str, patch: Obj) -> Obj:
        """JSON merge patch of an object."""
        obj: Obj = await self._call(
            self._objects.patch_namespaced_custom_object,
            res.group, res.version, namespace, res.plural, name, patch,
        )  # fmt: skip
        return obj

    async def delete(
        self,
        res: Resource,
        namespace: str,
        name: str,
        *,
        propagation: str = "Foreground",
        resource_version: str | None = None,
    ) -> None:
        """DELETE an object; ``resource_version`` makes it conditional (409 if it changed).

        Raises:
            KubeNotFound: it does not exist.
            KubeConflict: the precondition failed.
        """
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if resource_version is not None:
            body["preconditions"] = {"resourceVersion": resource_version}
        await self._call(
            self._objects.delete_namespaced_custom_object,
            res.group, res.version, namespace, res.plural, name, body=body,
        )  # fmt: skip

    @asynccontextmanager
    async def watch(
        self,
        res: Resource,
        namespace: str,
        *,
        name: str | None = None,
        label_selector: str = "",
        resource_version: str | None = None,
        timeout_s: float = 60.0,
    ) -> AsyncIterator[WatchStream]:
        """Open a watch from ``resource_version`` (all current objects first if ``None``).

        Cancellation: leaving the block shuts the connection down, which also ends the
        worker thread reading it.
        """
        server_timeout = max(1, int(timeout_s))

        def open_stream() -> urllib3.HTTPResponse:
            try:
                response: Any = self._objects.list_namespaced_custom_object(
                    res.group, res.version, namespace, res.plural,
                    watch=True,
                    field_selector=f"metadata.name={name}" if name else None,
                    label_selector=label_selector or None,
                    resource_version=resource_version,
                    timeout_seconds=server_timeout,
                    allow_watch_bookmarks=True,
                    _preload_content=False,
                    _request_timeout=(self._timeout[0], server_timeout + self._timeout[1]),
                )  # fmt: skip
            except _CLIENT_ERRORS as exc:
                raise _translate(exc) from exc
            if not 200 <= response.status <= 299:
                error = error_from_status(response.status, response.data)
                response.release_conn()
                raise error
            opened: urllib3.HTTPResponse = response
            return opened

        response = await trio.to_thread.run_sync(
            open_stream, limiter=self._limiter, abandon_on_cancel=True
        )
        stream = WatchStream(response, self._watch_limiter)
        try:
            yield stream
        finally:
            stream.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()  # type: ignore[no-untyped-call]
