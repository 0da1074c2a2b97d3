"""The concrete :class:`~amicable_agent.loop.api.RuntimeClient` of one sandbox runtime.

HTTP/1.1 through one :class:`~amicable_agent.lean_http.LeanTransport` (keep-alive pool on raw
Trio streams; the request head is written here and the response read whole by
:meth:`LeanTransport.fetch`, no request/response objects in between: the agent calls the
runtime for every tool call and exec, and a generic client stack costs more per request than
the runtime's own work), with the sandbox's bearer token and a deadline on every request.
``open_exec_stream`` streams a command over the runtime's ``WebSocket /v1/exec/stream``
(:mod:`.exec_stream`, on trio-websocket); leaving its block early closes the socket and the
runtime kills the process group. Foreign errors become
:class:`~amicable_agent.errors.RuntimeClientError` here and in :mod:`.exec_stream`, nowhere
else.

The runtime runs inside the sandbox, so a compromised project controls what it answers:
every read here is bounded (:class:`ResponseLimits`; code ``too_large`` beyond).
"""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import attrs
import httpx2
import trio
from amicable_protocol import MAX_COMMAND_BYTES, structure, unstructure
from amicable_protocol.errors import ProtocolError
from amicable_protocol.runtime import (
    EditRequest,
    EditResult,
    ExecRequest,
    ExecResult,
    GlobRequest,
    GlobResult,
    GrepRequest,
    GrepResult,
    MoveRequest,
    PathRequest,
    PreviewLogs,
    PreviewStatus,
    TreeResult,
    WriteResult,
)

from amicable_agent.errors import RuntimeClientError
from amicable_agent.lean_http import BODY, LeanTransport, _BodyTooLarge

from .exec_stream import ExecStream, open_exec_stream

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Sequence

    from .base import SandboxHandle

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 30.0
EXEC_SLACK_S = 30.0
DEFAULT_EXEC_TIMEOUT_S = 600.0
MIB = 1024 * 1024


@attrs.frozen
class ResponseLimits:
    """The most the client reads from a runtime.

    Attributes:
        response_bytes: one HTTP answer (a file of up to the runtime's 20 MiB, a tree …).
        archive_bytes: a streamed archive, compressed.
        exec_message_bytes: one ``/v1/exec/stream`` message.
        exec_stream_bytes: everything one exec stream sends (the runtime caps output at
            200,000 characters per stream; this bounds a runtime that does not).
    """

    response_bytes: int = 32 * MIB
    archive_bytes: int = 512 * MIB
    exec_message_bytes: int = 4 * MIB
    exec_stream_bytes: int = 64 * MIB


def _too_large(what: str, limit: int) -> RuntimeClientError:
    return RuntimeClientError(0, "too_large", f"{what} is larger than {limit} bytes")


_PORTS = {"http": 80, "https": 443}


def _json_dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class _Response:
    """A fully read response: status, headers (names lower-cased), body."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], content: bytes) -> None:
        self.status_code = status
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _check_command(command: str) -> None:
    """Refuse a command the runtime would refuse, before sending it (one far over the
    limit would not even fit the runtime's largest WebSocket frame).

    Raises:
        RuntimeClientError: 413 ``command_too_long``, as the runtime answers it.
    """
    if len(command) * 4 > MAX_COMMAND_BYTES:
        size = len(command.encode("utf-8", "surrogatepass"))
        if size > MAX_COMMAND_BYTES:
            raise RuntimeClientError(413, "command_too_long", f"the command has {size} bytes; "
                                     f"at most {MAX_COMMAND_BYTES} are allowed (write a script "
                                     "file and run it instead)")  # fmt: skip


def _file_url(path: str) -> str:
    clean = path.lstrip("/")
    return "/v1/files/" + quote(clean, safe="/")


class HttpRuntimeClient:
    """Typed client of one runtime (see :class:`turn_api.RuntimeClient` for the methods).

    Create with :func:`open_runtime_client`.
    """

    def __init__(
        self,
        transport: LeanTransport,
        base_url: str,
        token: str | None,
        timeout_s: float,
        limits: ResponseLimits | None = None,
    ) -> None:
        self._transport = transport
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._limits = limits or ResponseLimits()
        url = self._url = urlsplit(self._base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) runtime URL: {base_url!r}")
        scheme = url.scheme.encode()
        self._origin = (scheme, url.hostname.encode("idna"), url.port or _PORTS[url.scheme])
        self._prefix = url.path
        fixed = [f"Host: {url.netloc}"]
        if token:
            fixed.append(f"Authorization: Bearer {token}")
        self._fixed = "\r\n".join(fixed).encode("latin-1") + b"\r\n"

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
    ) -> _Response:
        """One request/response with the body read (the connection goes back to the pool).

        The request head is written here (no request object per call). Raises ``httpx2``
        transport errors; the caller owns the deadline.
        """
        target = self._prefix + url
        if params:
            target += "?" + urlencode(params)
        extra = []
        if json is not None:
            content = _json_dumps(json)
            extra.append("Content-Type: application/json")
        body = content or b""
        for name, value in (headers or {}).items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"invalid header value for {name}")
            extra.append(f"{name}: {value}")
        extra.append(f"Content-Length: {len(body)}\r\nAccept-Encoding: identity\r\n\r\n")
        head = (
            f"{method} {target} HTTP/1.1\r\n".encode("latin-1")
            + self._fixed
            + "\r\n".join(extra).encode("latin-1")
        )
        status, raw_headers, payload = await self._transport.fetch(
            self._origin, head, body, max_body=self._limits.response_bytes
        )
        return _Response(status, raw_headers, payload)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        timeout_s: float | None = None,
        **kwargs: Any,
    ) -> _Response:
        limit = timeout_s if timeout_s is not None else self._timeout_s
        try:
            with trio.fail_after(limit):
                response = await self._send(method, url, **kwargs)
        except trio.TooSlowError as exc:
            raise RuntimeClientError(0, "timeout", f"{method} {url} took over {limit}s") from exc
        except _BodyTooLarge as exc:
            raise _too_large(f"the answer to {method} {url}", self._limits.response_bytes) from exc
        except httpx2.HTTPError as exc:
            raise RuntimeClientError(0, "unreachable", f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            code, detail = "http_error", response.text[:500]
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("error"), str):
                code = body["error"]
                detail = str(body.get("detail") or "")
            raise RuntimeClientError(response.status_code, code, detail)
        return response

    async def _json(self, method: str, url: str, cls: type[T], **kwargs: Any) -> T:
        response = await self._request(method, url, **kwargs)
        try:
            return structure(response.json(), cls)
        except (ValueError, ProtocolError) as exc:
            raise RuntimeClientError(response.status_code, "invalid_response", str(exc)) from exc

    # --- files ------------------------------------------------------------------------

    async def read_file(self, path: str, *, max_bytes: int | None = None) -> tuple[bytes, str]:
        """Content and sha256 hex of a file.

        ``max_bytes``: read at most this much of the answer (the runtime is untrusted: a
        bigger body raises ``413 too_large`` and the connection is dropped unread).
        """
        if max_bytes is None:
            response = await self._request("GET", _file_url(path))
            return response.content, response.headers.get("x-content-sha256", "")
        return await self._read_capped(_file_url(path), max_bytes)

    async def _read_capped(self, url: str, max_bytes: int) -> tuple[bytes, str]:
        headers = {"Accept-Encoding": "identity"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        limit = self._timeout_s
        request = httpx2.Request(
            "GET",
            self._base_url + url,
            headers=headers,
            extensions={"timeout": {"connect": limit, "read": limit, "write": limit}},
        )
        parts: list[bytes] = []
        try:
            with trio.fail_after(limit):
                response = await self._transport.handle_async_request(request)
                body = response.extensions[BODY]
                try:
                    size = 0
                    async for chunk in body:
                        size += len(chunk)
                        if size > max(max_bytes, 65536 if response.status_code >= 400 else 0):
                            raise RuntimeClientError(
                                413, "too_large", f"GET {url} answered over {max_bytes} bytes"
                            )
                        parts.append(chunk)
                finally:
                    await body.aclose()
        except trio.TooSlowError as exc:
            raise RuntimeClientError(0, "timeout", f"GET {url} took over {limit}s") from exc
        except httpx2.HTTPError as exc:
            raise RuntimeClientError(0, "unreachable", f"{type(exc).__name__}: {exc}") from exc
        content = b"".join(parts)
        if response.status_code >= 400:
            answer = _Response(response.status_code, [], content)
            code, detail = "http_error", answer.text[:500]
            try:
                err = answer.json()
            except ValueError:
                err = None
            if isinstance(err, dict) and isinstance(err.get("error"), str):
                code, detail = err["error"], str(err.get("detail") or "")
            raise RuntimeClientError(response.status_code, code, detail)
        return content, response.headers.get("x-content-sha256", "")

    async def write_file(
        self, path: str, content: bytes, *, if_match: str | None = None
    ) -> WriteResult:
        """Write a file (parents created); ``if_match`` -> 409 ``conflict`` on mismatch."""
        headers = {"if-match": if_match} if if_match else {}
        return await self._json(
            "PUT", _file_url(path), WriteResult, content=content, headers=headers
        )

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        """Delete a file, or a directory tree with ``recursive``."""
        params = {"recursive": "1"} if recursive else {}
        await self._request("DELETE", _file_url(path), params=params)

    async def move(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst``."""
        await self._request("POST", "/v1/fs/move", json=unstructure(MoveRequest(src, dst)))

    async def mkdir(self, path: str) -> None:
        """``mkdir -p``."""
        await self._request("POST", "/v1/fs/mkdir", json=unstructure(PathRequest(path)))

    async def edit(
        self, path: str, old_string: str, new_string: str, *, replace_all: bool = False
    ) -> EditResult:
        """Exact string replacement."""
        body = unstructure(EditRequest(path, old_string, new_string, replace_all))
        return await self._json("POST", "/v1/fs/edit", EditResult, json=body)

    async def tree(
        self, path: str = "/", *, depth: int | None = None, include_hidden: bool = False
    ) -> TreeResult:
        """Entries under ``path``."""
        params: dict[str, str] = {"path": path}
        if depth is not None:
            params["depth"] = str(depth)
        if include_hidden:
            params["include_hidden"] = "1"
        return await self._json("GET", "/v1/fs/tree", TreeResult, params=params)

    async def glob(self, pattern: str, path: str = "/") -> GlobResult:
        """Paths matching a glob."""
        body = unstructure(GlobRequest(pattern, path))
        return await self._json("POST", "/v1/fs/glob", GlobResult, json=body)

    async def grep(
        self,
        pattern: str,
        path: str = "/",
        *,
        glob: str | None = None,
        fixed_strings: bool = False,
        max_results: int = 200,
    ) -> GrepResult:
        """Lines matching a pattern."""
        body = unstructure(GrepRequest(pattern, path, glob, fixed_strings, max_results))
        return await self._json("POST", "/v1/fs/grep", GrepResult, json=body)

    # --- exec -------------------------------------------------------------------------

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> ExecResult:
        """Run a command to completion (cancelling closes the request; the runtime kills)."""
        _check_command(command)
        body = unstructure(ExecRequest(command, cwd, env, timeout_s))
        limit = (timeout_s or DEFAULT_EXEC_TIMEOUT_S) + EXEC_SLACK_S
        return await self._json("POST", "/v1/exec", ExecResult, json=body, timeout_s=limit)

    def open_exec_stream(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> AbstractAsyncContextManager[ExecStream]:
        """Run a command; the block iterates its output, the last item is the ExecExit.

        Cancellation: leaving the block early (or being cancelled) closes the WebSocket and
        the runtime kills the command's process group (see :func:`open_exec_stream`).
        """
        _check_command(command)
        return open_exec_stream(
            self._url,
            self._token,
            ExecRequest(command, cwd, env, timeout_s),
            (timeout_s or DEFAULT_EXEC_TIMEOUT_S) + EXEC_SLACK_S,
            message_bytes=self._limits.exec_message_bytes,
            stream_bytes=self._limits.exec_stream_bytes,
        )

    # --- archive ------------------------------------------------------------------------

    async def archive(
        self,
        fmt: str = "tar.gz",
        *,
        excludes: Sequence[str] = (),
        default_excludes: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        """The workspace as a streamed ``tar.gz`` or ``zip`` (``GET /v1/archive``).

        An error answer raises :class:`RuntimeClientError` before the first chunk. Each read
        has the client's deadline; use with ``aclosing`` (leaving early closes the
        connection).
        """
        query: list[tuple[str, str]] = [("format", fmt)]
        if not default_excludes:
            query.append(("no_default_excludes", "1"))
        query += [("exclude", p) for p in excludes]
        headers = {"Accept-Encoding": "identity"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        limit = self._timeout_s
        request = httpx2.Request(
            "GET",
            f"{self._base_url}/v1/archive?{urlencode(query)}",
            headers=headers,
            extensions={"timeout": {"connect": limit, "read": limit, "write": limit}},
        )
        try:
            with trio.fail_after(limit):
                response = await self._transport.handle_async_request(request)
        except trio.TooSlowError as exc:
            raise RuntimeClientError(0, "timeout", f"GET /v1/archive took over {limit}s") from exc
        except httpx2.HTTPError as exc:
            raise RuntimeClientError(0, "unreachable", f"{type(exc).__name__}: {exc}") from exc
        body = response.extensions[BODY]
        try:
            if response.status_code >= 400:
                raw = b""
                async for chunk in body:
                    raw += chunk
                    if len(raw) > 65536:  # an error body is a small JSON object
                        break
                try:
                    err = json.loads(raw)
                except ValueError:
                    err = None
                if isinstance(err, dict) and isinstance(err.get("error"), str):
                    raise RuntimeClientError(
                        response.status_code, err["error"], str(err.get("detail") or "")
                    )
                raise RuntimeClientError(response.status_code, "http_error", raw[:500].decode())
            received = 0
            try:
                async for chunk in body:
                    received += len(chunk)
                    if received > self._limits.archive_bytes:
                        raise _too_large("the archive", self._limits.archive_bytes)
                    yield chunk
            except httpx2.HTTPError as exc:
                raise RuntimeClientError(0, "unreachable", f"{type(exc).__name__}: {exc}") from exc
        finally:
            await body.aclose()

    # --- dev server ---------------------------------------------------------------------

    async def preview_status(self) -> PreviewStatus:
        """The dev server's state."""
        return await self._json("GET", "/v1/preview", PreviewStatus)

    async def preview_restart(self) -> PreviewStatus:
        """Restart the dev server."""
        return await self._json("POST", "/v1/preview/restart", PreviewStatus)

    async def preview_logs(self, tail: int = 200) -> PreviewLogs:
        """The last ``tail`` dev-server log lines."""
        return await self._json("GET", "/v1/preview/logs", PreviewLogs, params={"tail": str(tail)})

    async def readyz(self) -> tuple[bool, dict[str, Any]]:
        """``GET /readyz``: (ready, body). Never raises for 503; raises when unreachable."""
        try:
            with trio.fail_after(self._timeout_s):
                response = await self._send("GET", "/readyz")
        except _BodyTooLarge as exc:
            raise _too_large("the answer to GET /readyz", self._limits.response_bytes) from exc
        except (httpx2.HTTPError, trio.TooSlowError) as exc:
            raise RuntimeClientError(0, "unreachable", type(exc).__name__) from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        return response.status_code == 200, body if isinstance(body, dict) else {}


@asynccontextmanager
async def open_runtime_client(
    base_url: str,
    token: str | None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    limits: ResponseLimits | None = None,
) -> AsyncIterator[HttpRuntimeClient]:
    """A client of the runtime at ``base_url`` for the duration of the block."""
    transport = LeanTransport()
    try:
        yield HttpRuntimeClient(transport, base_url, token, timeout_s, limits)
    finally:
        with trio.CancelScope(shield=True):
            await transport.aclose()


def runtime_client_for(handle: SandboxHandle) -> Any:
    """The default ``runtime_factory`` of :class:`~amicable_agent.sessions.session.SessionDeps`."""
    return open_runtime_client(handle.runtime_url, handle.runtime_token)
