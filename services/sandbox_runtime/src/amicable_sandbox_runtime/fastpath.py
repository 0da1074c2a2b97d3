"""The hottest routes answered straight from ASGI, in front of the quart app.

Quart's per-request machinery (request context, hooks, werkzeug routing, ``Response``
objects) costs more than the work behind the most frequent calls, and importing quart takes
longer than everything else the runtime does at start-up. So ``GET /healthz``, ``GET
/readyz``, ``GET /v1/preview``, ``POST /v1/preview/restart``, ``POST /v1/exec`` and
``GET``/``PUT /v1/files/<path>`` are answered here, with the same auth, status codes, headers
and error bodies as their quart routes in ``app.py``. Every other request (including these
paths with other methods, e.g. ``HEAD``) goes to the quart app, which is built in the
background after the runtime listens (:meth:`FastRoutes.set_app`); such requests wait for it.
The lifespan protocol is answered here: the quart app uses no lifespan hooks.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

import trio
from amicable_protocol._converter import structure, unstructure
from amicable_protocol.errors import ProtocolError
from amicable_protocol.http import ErrorBody
from amicable_protocol.runtime import ExecRequest

from . import execs
from .errors import CallerGone, InvalidRequest, RuntimeApiError, Unauthorized

if TYPE_CHECKING:
    from .config import RuntimeConfig
    from .files import Files
    from .paths import Jail
    from .supervisor import PreviewSupervisor

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Headers = list[tuple[bytes, bytes]]

_FILES = "/v1/files/"
#: Like quart's ``BODY_TIMEOUT``: a client that stalls mid-body gets 408.
_BODY_TIMEOUT_S = 60.0
_JSON = b"application/json"
_HEALTH = b'{"status":"ok"}'
# werkzeug's texts (InternalServerError, RequestTimeout), which the quart routes answer with
_INTERNAL_ERROR = (
    "The server encountered an internal error and was unable to complete your request. "
    "Either the server is overloaded or there is an error in the application."
)
_BODY_TIMEOUT = (
    "The server closed the network connection because the browser didn't finish the "
    "request within the specified time."
)
#: Files up to this size are read and written on the event loop: a few syscalls on a small
#: file cost less than the round trip to a worker thread. Bigger ones go to a thread.
_INLINE_FILE_BYTES = 64 * 1024


class _Answered(Exception):
    """The request was already answered (or the client left) while reading its body."""


class FastRoutes:
    """ASGI app: the hot routes here, everything else delegated to ``app``.

    Args:
        config: runtime config (token, limits, exec defaults).
        jail: the workspace jail.
        supervisor: the dev-server supervisor.
        files: the file API shared with the quart app (one write lock).
        limiter: worker-thread limiter shared with the quart app.
    """

    def __init__(
        self,
        config: RuntimeConfig,
        jail: Jail,
        supervisor: PreviewSupervisor,
        files: Files,
        limiter: trio.CapacityLimiter,
    ) -> None:
        self.app: Any = None
        self._app_set = trio.Event()
        #: Set by the first request that needs the full app (``serve`` then builds it now).
        self.app_wanted = trio.Event()
        self.config = config
        self.supervisor = supervisor
        self.jail = jail
        self.files = files
        self.limiter = limiter
        self._expected = f"Bearer {config.token}".encode() if config.token else None
        self._too_large = _error_body("too_large", f"body over {config.max_file_bytes} bytes")

    def set_app(self, app: Any) -> None:
        """Hand over the full application; requests waiting for it proceed."""
        self.app = app
        self._app_set.set()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "POST" and path == "/v1/exec":
                return await self._guarded(self._exec, scope, receive, send)
            if path.startswith(_FILES) and method in ("GET", "PUT"):
                handler = self._get_file if method == "GET" else self._put_file
                return await self._guarded(handler, scope, receive, send)
            if method == "GET" and path == "/healthz":
                return await _respond(send, 200, _HEALTH)
            if method == "GET" and path == "/readyz":
                status = self.supervisor.status()
                ok = status.ready or not self.supervisor.enabled
                return await _respond(send, 200 if ok else 503, _json(status))
            if method == "GET" and path == "/v1/preview":
                return await self._guarded(self._preview, scope, receive, send)
            if method == "POST" and path == "/v1/preview/restart":
                return await self._guarded(self._restart, scope, receive, send)
        self.app_wanted.set()
        await self._app_set.wait()
        await self.app(scope, receive, send)

    async def _preview(self, scope: Scope, receive: Any, send: Any) -> None:
        await _respond(send, 200, _json(self.supervisor.status()))

    async def _restart(self, scope: Scope, receive: Any, send: Any) -> None:
        self.supervisor.request_restart()
        await _respond(send, 200, _json(self.supervisor.status()))

    async def _guarded(self, handler: Any, scope: Scope, receive: Any, send: Any) -> None:
        headers: Headers = scope["headers"]
        try:
            if self._expected is not None and not hmac.compare_digest(
                _header(headers, b"authorization") or b"", self._expected
            ):
                raise Unauthorized("missing or wrong bearer token")
            await handler(scope, receive, send)
        except RuntimeApiError as exc:
            await _respond(send, exc.status, _error_body(exc.code, exc.detail))
        except _Answered:
            pass
        except Exception:
            log.exception("error serving %s %s", scope["method"], scope["path"])
            body = _error_body("http_error", _INTERNAL_ERROR)
            await _respond(send, 500, body)

    async def _body(self, scope: Scope, receive: Any, send: Any) -> bytes:
        """The whole request body, with quart's limit (413) and timeout (408)."""
        limit = self.config.max_file_bytes
        length = _header(scope["headers"], b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _respond(send, 413, self._too_large)
            raise _Answered
        body = bytearray()
        with trio.move_on_after(_BODY_TIMEOUT_S):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Answered
                body += message.get("body", b"")
                if len(body) > limit:
                    await _respond(send, 413, self._too_large)
                    raise _Answered
                if not message.get("more_body", False):
                    return bytes(body)
        await _respond(send, 408, _error_body("http_error", _BODY_TIMEOUT))
        raise _Answered

    async def _exec(self, scope: Scope, receive: Any, send: Any) -> None:
        raw = await self._body(scope, receive, send)
        try:
            request = structure(json.loads(raw or b"null"), ExecRequest, strict=True)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"body is not JSON: {exc}") from None
        except ProtocolError as exc:
            raise InvalidRequest(exc.message) from None
        cwd = execs.resolve_cwd(self.jail, request.cwd)

        async def until_disconnect() -> None:
            # a client that goes away cancels the command (its group is killed)
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            result = await execs.run_collected(
                request,
                cwd=cwd,
                default_timeout_s=self.config.exec_timeout_s,
                max_output_chars=self.config.exec_max_output_chars,
                watch=until_disconnect,
            )
        except CallerGone:
            return  # nobody to answer
        await _respond(send, 200, _json(result))

    async def _get_file(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope["path"][len(_FILES) :]
        small = self.files.read_small(path, _INLINE_FILE_BYTES)
        if small is None:
            small = await trio.to_thread.run_sync(self.files.read, path, limiter=self.limiter)
        data, digest = small
        extra = [(b"x-content-sha256", digest.encode())]
        await _respond(send, 200, data, b"application/octet-stream", extra)

    async def _put_file(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope["path"][len(_FILES) :]
        data = await self._body(scope, receive, send)
        raw_if_match = _header(scope["headers"], b"if-match")
        if_match = None if raw_if_match is None else raw_if_match.decode("latin-1")

        def write() -> Any:
            return self.files.write(path, data, if_match=if_match)

        result = None
        if len(data) <= _INLINE_FILE_BYTES and if_match is None:
            # (If-Match reads the current file, which may be big: that goes to a thread)
            result = self.files.try_write(path, data)
        if result is None:  # big, conditional, or another write holds the lock
            result = await trio.to_thread.run_sync(write, limiter=self.limiter)
        await _respond(send, 200, _json(result))


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _json(obj: Any) -> bytes:
    return json.dumps(unstructure(obj)).encode()


def _error_body(code: str, detail: str) -> bytes:
    return _json(ErrorBody(error=code, detail=detail))


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(
    send: Any,
    status: int,
    body: bytes,
    content_type: bytes = _JSON,
    extra: Headers | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
