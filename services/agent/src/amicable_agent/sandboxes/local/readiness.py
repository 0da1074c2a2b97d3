"""Whether a local sandbox's dev server is up: waiting for it, restarting it, exit reasons.

Talks to the runtime's ``/readyz`` and ``/v1/preview`` and tries the dev server's port
directly; knows nothing of the backend's bookkeeping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import httpx
import trio

from amicable_agent.errors import SandboxProvisionError

from .network import PREVIEW_PORT
from .procs import tail

if TYPE_CHECKING:
    from .sandbox import LocalSandbox

#: How often a starting sandbox's dev-server port is tried.
_READY_POLL_S = 0.02
#: How often the runtime is asked for the dev server's state meanwhile.
_STATUS_POLL_S = 0.5


async def restart_preview(http: httpx.AsyncClient, sandbox: LocalSandbox) -> None:
    """Make sure the dev server runs on the complete workspace.

    The dev command waits for ``package.json`` and ``node_modules`` on a workspace
    still being created, so usually the dev server is already starting: restarting it
    would boot Vite twice. Only a dev server that gave up or is backing off (it ran on a
    half-made workspace) is restarted, which also skips the supervisor's back-off.
    """
    headers = {"authorization": f"Bearer {sandbox.token}"}
    base = f"http://127.0.0.1:{sandbox.runtime_port}/v1/preview"
    try:
        status = await http.get(base, headers=headers)
        if status.status_code == 200 and status.json().get("state") in ("starting", "running"):
            return
        response = await http.post(base + "/restart", headers=headers)
    except httpx.HTTPError as exc:
        raise SandboxProvisionError("the sandbox runtime stopped answering") from exc
    if response.status_code >= 400:
        raise SandboxProvisionError(
            f"the runtime refused to start the dev server ({response.status_code})"
        )


async def wait_preview(http: httpx.AsyncClient, sandbox: LocalSandbox, *, trust_port: bool) -> None:
    """Wait until the dev server is ready.

    The runtime's ``/readyz`` is asked every ``_STATUS_POLL_S`` (and at once when the
    port opens) by a task of its own; meanwhile the dev server's port is tried with a
    cheap local connect every ``_READY_POLL_S``. Each HTTP round trip costs CPU in both
    processes while Vite boots on the same cores, and the runtime answers slowly then
    (it loads its web stack meanwhile), so the port is not checked only between answers.

    Args:
        trust_port: the port accepting while the runtime last reported the dev server
            ``starting`` counts as ready (the runtime's own criterion, before its probe
            ran). Not after a restart of the dev server, whose outgoing process may
            still hold the port.

    Raises:
        SandboxProvisionError: the runtime exited or the dev server keeps crashing.
    """
    status = _PreviewWatch(url=f"http://127.0.0.1:{sandbox.runtime_port}/readyz")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_status, http, sandbox, status)
        while not status.done.is_set():
            if sandbox.stopped.is_set():
                raise SandboxProvisionError(exit_reason(sandbox))
            if await _listens(sandbox):
                if trust_port and status.state in ("starting", "running"):
                    break
                status.poke.set()
            with trio.move_on_after(_READY_POLL_S):
                await status.done.wait()
        nursery.cancel_scope.cancel()
    if status.error is not None:
        raise status.error


async def _watch_status(
    http: httpx.AsyncClient, sandbox: LocalSandbox, status: _PreviewWatch
) -> None:
    while True:
        try:
            state = await _preview_state(http, sandbox, status.url)
        except SandboxProvisionError as exc:
            status.error = exc
            state = "ready"
        if state == "ready":
            status.done.set()
            return
        status.state = state
        with trio.move_on_after(_STATUS_POLL_S):
            await status.poke.wait()
        status.poke = trio.Event()


async def _preview_state(http: httpx.AsyncClient, sandbox: LocalSandbox, url: str) -> str | None:
    """``ready``, the runtime's dev-server state, or None (no answer)."""
    try:
        response = await http.get(url)
    except httpx.HTTPError:
        return None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if isinstance(body.get("pid"), int):
        sandbox.preview_pid = body["pid"]
    if response.status_code == 200:
        return "ready"
    if body.get("state") == "exhausted":
        raise SandboxProvisionError(
            "the dev server keeps crashing; see run/preview.log in the sandbox directory"
        )
    state = body.get("state")
    return state if isinstance(state, str) else None


@attrs.define
class _PreviewWatch:
    url: str
    state: str | None = None
    error: SandboxProvisionError | None = None
    done: trio.Event = attrs.field(factory=trio.Event)
    poke: trio.Event = attrs.field(factory=trio.Event)


async def _listens(sandbox: LocalSandbox) -> bool:
    """Whether the dev server listens. Isolated, pasta accepts on the host port whether or
    not anything listens inside, so the sandbox's own TCP table is read instead (through
    ``/proc/<pid>/net``, which shows the network namespace of that process)."""
    if sandbox.namespace_pid is None:
        return await _accepts(sandbox.preview_port)
    await trio.lowlevel.checkpoint()
    return listening_in(sandbox.namespace_pid, PREVIEW_PORT)


def listening_in(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in the network namespace of ``pid``."""
    needle = f":{port:04X} "
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}", encoding="ascii") as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A" and (fields[1] + " ").endswith(needle):
                        return True
        except OSError:
            continue
    return False


async def _accepts(port: int) -> bool:
    with trio.move_on_after(1):
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            return False
        await stream.aclose()
        return True
    return False


def exit_reason(sandbox: LocalSandbox) -> str:
    text = tail(sandbox.root / "runtime.log")
    return "the sandbox runtime exited" + (f": {text}" if text else "")
