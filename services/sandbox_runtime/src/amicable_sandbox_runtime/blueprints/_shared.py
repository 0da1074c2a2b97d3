"""What every blueprint uses: the workspace's objects, JSON answers, query and body parsing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio
from amicable_protocol import unstructure
from amicable_protocol.http import ErrorBody
from quart import Response, current_app, request
from werkzeug.routing import PathConverter

from amicable_sandbox_runtime.config import RuntimeConfig
from amicable_sandbox_runtime.errors import InvalidRequest
from amicable_sandbox_runtime.fastpath import decode_body
from amicable_sandbox_runtime.files import Files
from amicable_sandbox_runtime.paths import Jail
from amicable_sandbox_runtime.supervisor import PreviewSupervisor

if TYPE_CHECKING:
    from collections.abc import Callable

    from quart import Quart


T = TypeVar("T")
_EXTENSION = "amicable_sandbox_runtime"


@attrs.frozen
class Services:
    """The workspace's objects, shared with the fast routes (one write lock, one limiter).

    Attributes:
        config: runtime config (limits, exec defaults).
        jail: the workspace jail every path goes through.
        files: the file API.
        supervisor: the dev-server supervisor.
        limiter: worker-thread limiter.
    """

    config: RuntimeConfig
    jail: Jail
    files: Files
    supervisor: PreviewSupervisor
    limiter: trio.CapacityLimiter

    def install(self, app: Quart) -> None:
        """Make these the services of ``app``'s handlers."""
        app.extensions[_EXTENSION] = self

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread (blocking file-system work)."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)


def services() -> Services:
    """The services of the app handling the current request."""
    found: Services = current_app.extensions[_EXTENSION]
    return found


class AnyPath(PathConverter):
    """Like ``path`` but also matches empty and ``/``-leading paths (``/v1/files//src/a``)."""

    regex = ".*?"
    part_isolating = False


def json_response(obj: Any, status: int = 200) -> Response:
    """``obj`` (a wire type) as a JSON response."""
    return Response(json.dumps(unstructure(obj)), status=status, mimetype="application/json")


def error_response(code: str, detail: str, status: int) -> Response:
    """An :class:`~amicable_protocol.http.ErrorBody` response."""
    return json_response(ErrorBody(error=code, detail=detail), status)


def flag(name: str) -> bool:
    """Whether the query parameter ``name`` is set to a true value (``1``, ``true``, …)."""
    return request.args.get(name, "").lower() in ("1", "true", "yes", "on")


def int_arg(name: str) -> int | None:
    """The integer query parameter ``name``, if given.

    Raises:
        InvalidRequest: it is not an integer.
    """
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"query parameter {name} must be an integer") from None


async def body(cls: type[T]) -> T:
    """The request body as a ``cls`` (strict).

    Raises:
        InvalidRequest: not strict JSON, or not a ``cls`` (see :func:`.fastpath.decode_body`).
    """
    raw = await request.get_data(as_text=False)
    return decode_body(raw, cls)
