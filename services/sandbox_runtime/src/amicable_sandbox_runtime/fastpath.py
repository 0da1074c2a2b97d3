"""The runtime's route table for its hot paths, answered without quart, plus its ASGI entry.

Quart's per-request machinery (request context, hooks, werkzeug routing, ``Response``
objects) costs more than the work behind the most frequent calls, and importing quart takes
longer than everything else the runtime does at start-up. So the paths ``/healthz``,
``/readyz``, ``/v1/preview``, ``/v1/preview/restart``, ``/v1/exec`` and ``/v1/files/<path>``
are defined here, and only here: their handlers (``GET /healthz``, ``GET /readyz``, ``GET
/v1/preview``, ``POST /v1/preview/restart``, ``POST /v1/exec``, ``GET``/``PUT
/v1/files/<path>``), ``HEAD`` for each ``GET`` (the same status and headers, no body),
``OPTIONS`` (``Allow``) and 405 for the other methods, with werkzeug's texts. The one
exception is ``DELETE /v1/files/<path>``, which the table leaves to quart's blueprint.

The route logic takes ``(method, path, headers, body)`` and returns a :class:`Reply`
(:meth:`FastRoutes.route`, :meth:`FastRoutes.precheck`, :meth:`FastRoutes.answer`), so two
transports share it: the raw HTTP/1.1 lane of ``httplane.py``, which answers most of these
requests before hypercorn sees them, and the ASGI entry of ``asgi.py`` behind hypercorn
(requests that hypercorn parses: chunked bodies, ``Expect``, anything the lane hands over),
which sends every other request to the quart app.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio
from amicable_protocol import load_json, structure, unstructure
from amicable_protocol.errors import ProtocolError
from amicable_protocol.http import ErrorBody
from amicable_protocol.runtime import ExecRequest

from . import execs
from .errors import CallerGone, InvalidRequest, RuntimeApiError

if TYPE_CHECKING:
    from .config import RuntimeConfig
    from .files import Files
    from .paths import Jail
    from .supervisor import PreviewSupervisor

log = logging.getLogger(__name__)

T = TypeVar("T")
Headers = list[tuple[bytes, bytes]]
#: Returns when the client has gone away (watched while a command runs).
Watch = Callable[[], Awaitable[None]]

_FILES = "/v1/files/"
#: The paths answered without the bearer token (the health probes); every other path needs
#: it, quart's included (deny by default).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
#: Like quart's ``BODY_TIMEOUT``: a client that stalls mid-body gets 408.
BODY_TIMEOUT_S = 60.0
JSON = b"application/json"
_OCTETS = b"application/octet-stream"
_HEALTH = b'{"status":"ok"}'
_HTML = b"text/html; charset=utf-8"  # werkzeug's default, for the empty OPTIONS answer
# werkzeug's texts (InternalServerError, RequestTimeout), which the quart routes answer with
_INTERNAL_ERROR = (
    "The server encountered an internal error and was unable to complete your request. "
    "Either the server is overloaded or there is an error in the application."
)
_METHOD_NOT_ALLOWED = "The method is not allowed for the requested URL."
_BODY_TIMEOUT = (
    "The server closed the network connection because the browser didn't finish the "
    "request within the specified time."
)
#: Files up to this size are read and written on the event loop: a few syscalls on a small
#: file cost less than the round trip to a worker thread. Bigger ones go to a thread.
_INLINE_FILE_BYTES = 64 * 1024


@attrs.frozen
class Reply:
    """A complete response: status, body, its content type and any extra headers.

    The transport adds ``content-length`` (and its own ``date``/``server``/``connection``).
    """

    status: int
    body: bytes
    content_type: bytes = JSON
    extra: tuple[tuple[bytes, bytes], ...] = ()


#: A route handler: ``(path, headers, body, watch) -> Reply``.
Handler = Callable[[str, Headers, bytes, Watch | None], Awaitable[Reply]]


@attrs.frozen
class Route:
    """One fast route.

    Attributes:
        handler: computes the reply.
        auth: the bearer token is required (checked by :meth:`FastRoutes.precheck`).
        body: the handler uses the request body (limited to ``max_file_bytes``); other
            routes are answered without reading one.
    """

    handler: Handler
    auth: bool
    body: bool


@attrs.frozen
class _Resource:
    """Every method of one path: the fast routes (``HEAD`` and ``OPTIONS`` included), the
    methods the full app serves, and the 405 route for the rest."""

    routes: dict[str, Route]
    app_methods: frozenset[str]
    not_allowed: Route

    def get(self, method: str) -> Route | None:
        route = self.routes.get(method)
        if route is None and method not in self.app_methods:
            return self.not_allowed
        return route


def _resource(
    routes: dict[str, Route], *, auth: bool, app_methods: frozenset[str] = frozenset()
) -> _Resource:
    """A path's methods: ``HEAD`` runs the ``GET`` route (the transports drop the body),
    ``OPTIONS`` lists them all as werkzeug does, anything else is 405 (after the token check,
    as in quart)."""
    routes = dict(routes)
    if "GET" in routes:
        routes["HEAD"] = routes["GET"]
    allow = sorted({*routes, *app_methods, "OPTIONS"})
    options = Reply(200, b"", _HTML, ((b"allow", ", ".join(allow).encode()),))
    routes["OPTIONS"] = Route(_fixed(options), auth=auth, body=False)
    not_allowed = Reply(405, _error_body("method_not_allowed", _METHOD_NOT_ALLOWED))
    return _Resource(routes, app_methods, Route(_fixed(not_allowed), auth=auth, body=False))


def _fixed(reply: Reply) -> Handler:
    async def handler(path: str, headers: Headers, body: bytes, watch: Watch | None) -> Reply:
        return reply

    return handler


class FastRoutes:
    """The route table and its handlers, for both transports (``httplane.py``, ``asgi.py``).

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
        self.config = config
        self.supervisor = supervisor
        self.jail = jail
        self.files = files
        self.limiter = limiter
        self._expected = f"Bearer {config.token}".encode() if config.token else None
        self.too_large = Reply(
            413, _error_body("too_large", f"body over {config.max_file_bytes} bytes")
        )
        self._unauthorized = Reply(
            401, _error_body("unauthorized", "missing or wrong bearer token")
        )
        # The route table: the only definition of these paths (see the module docstring).
        self._paths = {
            path: _resource(routes, auth=path not in PUBLIC_PATHS)
            for path, routes in {
                "/healthz": {"GET": Route(self._health, auth=False, body=False)},
                "/readyz": {"GET": Route(self._ready, auth=False, body=False)},
                "/v1/preview": {"GET": Route(self._preview, auth=True, body=False)},
                "/v1/preview/restart": {"POST": Route(self._restart, auth=True, body=False)},
                "/v1/exec": {"POST": Route(self._exec, auth=True, body=True)},
            }.items()
        }
        self._files = _resource(
            {
                "GET": Route(self._get_file, auth=True, body=False),
                "PUT": Route(self._put_file, auth=True, body=True),
            },
            auth=True,
            app_methods=frozenset({"DELETE"}),  # quart's blueprint (blueprints/fs.py)
        )

    # -- transport-independent route logic ------------------------------------------------

    def route(self, method: str, path: str) -> Route | None:
        """The route for ``method`` and (percent-decoded) ``path``; ``None`` when the full app
        answers it (another path, or ``DELETE /v1/files/...``). ``HEAD`` gets the ``GET`` route:
        the caller sends its status and headers without the body."""
        if path.startswith(_FILES):
            return self._files.get(method)
        resource = self._paths.get(path)
        return None if resource is None else resource.get(method)

    def authorized(self, header: bytes | None) -> bool:
        """Whether ``header`` (the ``Authorization`` value) carries the bearer token (always
        true when the runtime runs without one). Constant-time."""
        if self._expected is None:
            return True
        return hmac.compare_digest(header or b"", self._expected)

    def precheck(self, route: Route, headers: Headers, length: int | None) -> Reply | None:
        """The reply due before any body is read, if any: 401 (wrong or missing token; first,
        as in quart), then 413 when ``length`` (the declared Content-Length) is over the limit.
        """
        if route.auth and self._expected is not None:
            given = b""
            for key, value in headers:
                if key == b"authorization":
                    given = value
                    break
            if not self.authorized(given):
                return self._unauthorized
        if route.body and length is not None and length > self.config.max_file_bytes:
            return self.too_large
        return None

    async def answer(
        self,
        route: Route,
        method: str,
        path: str,
        headers: Headers,
        body: bytes,
        watch: Watch | None,
    ) -> Reply | None:
        """Run ``route`` (after :meth:`precheck`); ``None`` when the client left meanwhile.

        API errors become their error bodies; anything else is logged and answered 500.
        """
        try:
            return await route.handler(path, headers, body, watch)
        except RuntimeApiError as exc:
            return Reply(exc.status, _error_body(exc.code, exc.detail))
        except CallerGone:
            return None  # nobody to answer
        except Exception:
            log.exception("error serving %s %s", method, path)
            return Reply(500, _error_body("http_error", _INTERNAL_ERROR))

    async def _health(self, path: str, headers: Headers, body: bytes, watch: Watch | None) -> Reply:
        return Reply(200, _HEALTH)

    async def _ready(self, path: str, headers: Headers, body: bytes, watch: Watch | None) -> Reply:
        status = self.supervisor.status()
        ok = status.ready or not self.supervisor.enabled
        return Reply(200 if ok else 503, _json(status))

    async def _preview(
        self, path: str, headers: Headers, body: bytes, watch: Watch | None
    ) -> Reply:
        return Reply(200, _json(self.supervisor.status()))

    async def _restart(
        self, path: str, headers: Headers, body: bytes, watch: Watch | None
    ) -> Reply:
        self.supervisor.request_restart()
        return Reply(200, _json(self.supervisor.status()))

    async def _exec(self, path: str, headers: Headers, body: bytes, watch: Watch | None) -> Reply:
        request = decode_body(body, ExecRequest)
        cwd = execs.resolve_cwd(self.jail, request.cwd)
        result = await execs.run_collected(
            request,
            cwd=cwd,
            default_timeout_s=self.config.exec_timeout_s,
            max_output_chars=self.config.exec_max_output_chars,
            watch=watch,  # a client that goes away cancels the command (its group is killed)
        )
        return Reply(200, _json(result))

    async def _get_file(
        self, path: str, headers: Headers, body: bytes, watch: Watch | None
    ) -> Reply:
        rel = path[len(_FILES) :]
        small = self.files.read_small(rel, _INLINE_FILE_BYTES)
        if small is None:
            small = await trio.to_thread.run_sync(self.files.read, rel, limiter=self.limiter)
        data, digest = small
        return Reply(200, data, _OCTETS, ((b"x-content-sha256", digest.encode()),))

    async def _put_file(
        self, path: str, headers: Headers, body: bytes, watch: Watch | None
    ) -> Reply:
        rel = path[len(_FILES) :]
        raw_if_match = header(headers, b"if-match")
        if_match = None if raw_if_match is None else raw_if_match.decode("latin-1")

        def write() -> Any:
            return self.files.write(rel, body, if_match=if_match)

        result = None
        if len(body) <= _INLINE_FILE_BYTES and if_match is None:
            # (If-Match reads the current file, which may be big: that goes to a thread)
            result = self.files.try_write(rel, body)
        if result is None:  # big, conditional, or another write holds the lock
            result = await trio.to_thread.run_sync(write, limiter=self.limiter)
        return Reply(200, _json(result))


def decode_body(raw: str | bytes, cls: type[T], *, what: str = "body") -> T:
    """A JSON request body (or WebSocket frame) as the wire type ``cls`` (strict: unknown
    keys are refused), read with :func:`amicable_protocol.load_json`.

    Raises:
        InvalidRequest: not strict JSON (not UTF-8, a lone surrogate, nested too deeply …),
            or not a ``cls``.
    """
    try:
        return structure(load_json(raw or b"null", what=what), cls, strict=True)
    except ProtocolError as exc:
        raise InvalidRequest(exc.message) from None


def header(headers: Headers, name: bytes) -> bytes | None:
    """The value of the first header called ``name`` (lower case), if any."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _json(obj: Any) -> bytes:
    return json.dumps(unstructure(obj)).encode()


def _error_body(code: str, detail: str) -> bytes:
    return _json(ErrorBody(error=code, detail=detail))


BODY_TIMEOUT_REPLY = Reply(408, _error_body("http_error", _BODY_TIMEOUT))
