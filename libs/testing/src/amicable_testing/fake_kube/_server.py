"""The fake API server itself: its HTTP connections and watch streams, and the test API.

:class:`FakeKube` puts the pieces together: an :class:`~._store.ObjectStore`, the
:class:`~._controller.SandboxController` listening to it, and the REST routing of
:mod:`._rest`, served over h11 on a loopback port by :func:`open_fake_kube`.
"""

from __future__ import annotations

import copy
import functools
import http
import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import h11
import trio

from ._controller import SandboxController
from ._resources import KINDS, KubeStatusError
from ._rest import answer, is_watch_request, route
from ._store import ObjectStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from ._resources import Obj, ResKey, WatchEvent
    from ._rest import Route


class FakeKube:
    """The fake API server's state and controller; create with :func:`open_fake_kube`.

    Args:
        bind_delay_s: controller delay before a claim gets its Sandbox.
        ready_delay_s: further delay before the Sandbox is Ready (``None`` = never).
        nursery: where the controller and the garbage collector run (:func:`open_fake_kube`
            passes its own); without one, claims are never provisioned.

    Attributes:
        url: ``http://127.0.0.1:<port>`` once serving.
        installed: resource types the server knows (others answer 404 like a missing CRD).
        forbidden: ``(group, plural, verb)`` triples answered with 403 (verb as in RBAC).
        requests: ``(method, path)`` of every request, for assertions.
        expire_watches: answer this many upcoming watches with a ``410 Expired`` ERROR event.
    """

    def __init__(
        self,
        *,
        bind_delay_s: float = 0.0,
        ready_delay_s: float | None = 0.0,
        nursery: trio.Nursery | None = None,
    ) -> None:
        self.url = ""
        self.installed: set[ResKey] = set(KINDS)
        self.forbidden: set[tuple[str, str, str]] = set()
        self.requests: list[tuple[str, str]] = []
        self.expire_watches = 0
        self._activity = trio.Event()
        self._watch_scopes: set[trio.CancelScope] = set()
        self._store = ObjectStore(nursery=nursery)
        self._store.listeners.append(lambda _event: self._poke())
        self._controller = SandboxController(
            self._store, bind_delay_s=bind_delay_s, ready_delay_s=ready_delay_s, nursery=nursery
        )

    # ----- the controller's knobs -----------------------------------------------------

    @property
    def bind_delay_s(self) -> float:
        """Controller delay before a claim gets its Sandbox."""
        return self._controller.bind_delay_s

    @bind_delay_s.setter
    def bind_delay_s(self, value: float) -> None:
        self._controller.bind_delay_s = value

    @property
    def ready_delay_s(self) -> float | None:
        """Further delay before the Sandbox is Ready (``None`` = never)."""
        return self._controller.ready_delay_s

    @ready_delay_s.setter
    def ready_delay_s(self, value: float | None) -> None:
        self._controller.ready_delay_s = value

    @property
    def report_sandbox_name(self) -> bool:
        """The controller fills ``status.sandbox.name`` of claims (False: older controllers)."""
        return self._controller.report_sandbox_name

    @report_sandbox_name.setter
    def report_sandbox_name(self, value: bool) -> None:
        self._controller.report_sandbox_name = value

    # ----- direct state access for tests (no HTTP) -----------------------------------

    @property
    def _history(self) -> list[WatchEvent]:
        # The change log itself (not a copy): tests slice it to see what one call wrote.
        return self._store.history

    def get(self, res: ResKey, namespace: str, name: str) -> Obj | None:
        """A deep copy of the stored object, or ``None``."""
        return self._store.get(res, namespace, name)

    def objects(self, res: ResKey, namespace: str) -> list[Obj]:
        """Deep copies of every stored object of a type in a namespace."""
        return self._store.copies(res, namespace)

    def put(self, res: ResKey, version: str, namespace: str, body: Obj) -> Obj:
        """Create an object directly, as ``kubectl apply`` would (no RBAC checks)."""
        return self._store.create(res, version, namespace, copy.deepcopy(body))

    def update_status(self, res: ResKey, namespace: str, name: str, status: Obj) -> None:
        """Replace an object's status (e.g. to play a failing controller)."""
        self._store.set_status(res, namespace, name, status)

    def add_warm_pool(self, namespace: str, name: str, template: str, replicas: int) -> None:
        """A SandboxWarmPool with ``replicas`` pre-warmed, already Ready sandboxes."""
        self._controller.add_warm_pool(namespace, name, template, replicas)

    def mark_ready(self, namespace: str, claim_name: str) -> None:
        """Mark the claim's Sandbox (and the claim) Ready now, as the controller would."""
        self._controller.mark_ready(namespace, claim_name)

    def compact(self) -> None:
        """Forget the change history, so watches from an older resourceVersion get 410."""
        self._store.compact()

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream (no terminating chunk)."""
        for scope in list(self._watch_scopes):
            scope.cancel()

    def _poke(self) -> None:
        self._activity.set()
        self._activity = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait (event-driven, no polling) until ``predicate()`` holds; it is re-checked
        after every request, change and watch open/close. Bound it with ``trio.fail_after``.
        """
        while not predicate():
            activity = self._activity
            await activity.wait()

    @property
    def watch_requests(self) -> int:
        """How many watch requests the server has received."""
        return sum(1 for m, t in self.requests if is_watch_request(m, t))

    @property
    def open_watches(self) -> int:
        """How many watch streams are currently open."""
        return len(self._watch_scopes)

    # ----- HTTP ------------------------------------------------------------------------

    def _route(self, method: str, target: str) -> Route:
        return route(method, target, installed=self.installed, forbidden=self.forbidden)

    async def _serve_conn(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await _read_request(conn, stream)
                if request is None:
                    return
                method = request.method.decode()
                target = request.target.decode()
                self.requests.append((method, target))
                self._poke()
                if is_watch_request(method, target):
                    try:
                        to = self._route(method, target)
                    except KubeStatusError as exc:
                        await _send_json(conn, stream, exc.code, exc.body())
                    else:
                        await self._serve_watch(conn, stream, to)
                        return  # a watch stream ends its connection
                else:
                    try:
                        code, reply = answer(self._store, method, self._route(method, target), body)
                    except KubeStatusError as exc:
                        code, reply = exc.code, exc.body()
                    except (ValueError, KeyError, TypeError) as exc:
                        code, reply = 400, KubeStatusError(400, "BadRequest", str(exc)).body()
                    await _send_json(conn, stream, code, reply)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()

    async def _serve_watch(
        self, conn: h11.Connection, stream: trio.SocketStream, to: Route
    ) -> None:
        headers = [("content-type", "application/json"), ("transfer-encoding", "chunked")]
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)) or b"")

        async def send(event_type: str, obj: Obj) -> None:
            line = json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
            await stream.send_all(conn.send(h11.Data(data=line)) or b"")

        async def detect_client_close(scope: trio.CancelScope) -> None:
            # A real API server ends a watch when its client goes away; so does this one.
            try:
                while await stream.receive_some(4096):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            scope.cancel()

        with trio.CancelScope() as scope:
            self._watch_scopes.add(scope)
            self._poke()
            try:
                async with trio.open_nursery() as watchers:
                    watchers.start_soon(detect_client_close, scope)
                    await self._stream_events(conn, stream, to, send)
                    watchers.cancel_scope.cancel()
            finally:
                self._watch_scopes.discard(scope)
                self._poke()
        # cancelled by drop_watches(): the caller closes the socket without a last chunk

    async def _stream_events(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        to: Route,
        send: Callable[[str, Obj], Awaitable[None]],
    ) -> None:
        rv_text = to.query.get("resourceVersion", "")
        timeout = float(to.query.get("timeoutSeconds", "0") or 0) or float("inf")
        with trio.move_on_after(timeout):
            if self._store.too_old(rv_text) or self.expire_watches > 0:
                self.expire_watches = max(0, self.expire_watches - 1)
                expired = KubeStatusError(
                    410, "Expired", f"too old resource version: {rv_text} ({self._store.floor})"
                )
                await send("ERROR", expired.body())
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                return
            await self._store.watch(to.res, to.version, to.ns, to.query, send)
        # timeoutSeconds elapsed: end the stream cleanly, as the server does
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


async def _read_request(
    conn: h11.Connection, stream: trio.SocketStream
) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return request, bytes(body)
        else:  # ConnectionClosed or PAUSED at a closed peer
            return None, b""


async def _send_json(conn: h11.Connection, stream: trio.SocketStream, code: int, body: Obj) -> None:
    data = json.dumps(body).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
    reason = http.HTTPStatus(code).phrase.encode()
    response = h11.Response(status_code=code, headers=headers, reason=reason)
    await stream.send_all(conn.send(response) or b"")
    await stream.send_all(conn.send(h11.Data(data=data)) or b"")
    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


@asynccontextmanager
async def open_fake_kube(
    *, bind_delay_s: float = 0.0, ready_delay_s: float | None = 0.0
) -> AsyncIterator[FakeKube]:
    """Serve a :class:`FakeKube` on a free loopback port for the duration of the block.

    Cancellation: leaving the block closes the listener, every connection (watches
    included) and the controller's pending work.
    """
    async with trio.open_nursery() as nursery:
        fake = FakeKube(bind_delay_s=bind_delay_s, ready_delay_s=ready_delay_s, nursery=nursery)
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, fake._serve_conn, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        fake.url = f"http://127.0.0.1:{port}"
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()
