"""Starting one headless Chromium with a DevTools pipe, and ending it.

Chromium reads DevTools commands on fd 3 and writes on fd 4. ``subprocess`` cannot place
inherited descriptors at chosen numbers, so a tiny launcher (the agent's own Python, isolated,
without ``site``) ``dup2``s them there and ``exec``s Chromium: no shell, no extra process left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from .cdp import CdpConnection
from .errors import BrowserCrashed, BrowserUnavailable, CdpError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = logging.getLogger(__name__)

#: Names tried on PATH when no Chromium path is configured.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_LAUNCHER = (
    "import os,sys;os.dup2(int(sys.argv[1]),3);os.dup2(int(sys.argv[2]),4);"
    "os.execv(sys.argv[3],sys.argv[3:])"
)

#: Flags of every launch. Background services, sync, extensions and QUIC off (nothing talks
#: to the internet on its own); no proxy from the environment (it would resolve names itself);
#: WebRTC may not send UDP (it bypasses the host-resolver rules). Pages are never throttled as
#: background tabs: several capture at once and each must paint.
BASE_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-breakpad",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--mute-audio",
    "--hide-scrollbars",
    "--no-proxy-server",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--log-level=3",
    "--remote-debugging-pipe",
)


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium executable: ``explicit`` if it exists, else the first of
    :data:`CHROMIUM_NAMES` on ``PATH``; None when there is none."""
    if explicit:
        found = shutil.which(explicit)
        return found or None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_argv(
    binary: str, profile: Path, resolver_rules: str, *, sandbox: bool = False
) -> list[str]:
    """The full command line of one launch (before the fd launcher)."""
    argv = [binary, *BASE_FLAGS, f"--user-data-dir={profile}",
            f"--host-resolver-rules={resolver_rules}"]  # fmt: skip
    if not sandbox:
        argv.append("--no-sandbox")
    argv.append("about:blank")
    return argv


@attrs.define
class Chromium:
    """A running browser: its process and its DevTools connection."""

    process: trio.Process
    cdp: CdpConnection
    product: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid


async def _kill_group(process: trio.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def _stderr_tail(path: Path, limit: int = 600) -> str:
    try:
        text = path.read_bytes()[-limit:].decode("utf-8", errors="replace").strip()
    except OSError:
        return ""
    return f": {text}" if text else ""


@asynccontextmanager
async def open_chromium(
    binary: str, resolver_rules: str, *, launch_timeout_s: float, sandbox: bool = False
) -> AsyncIterator[Chromium]:
    """Start Chromium in its own process group and a fresh temporary profile.

    Yields once the browser answers on its pipe.

    Raises:
        BrowserUnavailable: it exited or did not answer within ``launch_timeout_s``.

    Cancellation: leaving the block (normally, by an error or cancellation) kills the
    browser's process group and removes the profile; the connection is closed.
    """
    with tempfile.TemporaryDirectory(prefix="amicable-chromium-") as tmp:
        profile = Path(tmp)
        stderr_path = profile / "stderr.log"
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        argv = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(to_browser_r),
                str(from_browser_w), *chromium_argv(binary, profile / "data", resolver_rules,
                                                    sandbox=sandbox)]  # fmt: skip
        cdp = CdpConnection(
            trio.lowlevel.FdStream(to_browser_w), trio.lowlevel.FdStream(from_browser_r)
        )
        try:
            with stderr_path.open("wb") as stderr:
                async with trio.open_nursery() as nursery:
                    process: trio.Process = await nursery.start(partial(
                        trio.run_process, argv, check=False, start_new_session=True,
                        pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=stderr, deliver_cancel=_kill_group,
                    ))  # fmt: skip
                    os.close(to_browser_r)
                    os.close(from_browser_w)
                    to_browser_r = from_browser_w = -1
                    nursery.start_soon(_close_when_exited, process, cdp)
                    await nursery.start(cdp.serve)
                    chromium = Chromium(process, cdp)
                    try:
                        with trio.fail_after(launch_timeout_s):
                            version = await cdp.call("Browser.getVersion")
                    except (trio.TooSlowError, BrowserCrashed, CdpError) as exc:
                        reason = "did not answer in time" if isinstance(
                            exc, trio.TooSlowError) else "exited"  # fmt: skip
                        raise BrowserUnavailable(
                            f"Chromium ({binary}) {reason}{_stderr_tail(stderr_path)}"
                        ) from exc
                    chromium.product = str(version.get("product", ""))
                    log.info("preview browser started: %s (pid %d)", chromium.product, process.pid)
                    try:
                        yield chromium
                    finally:
                        nursery.cancel_scope.cancel()
        finally:
            for fd in (to_browser_r, from_browser_w):
                if fd >= 0:
                    os.close(fd)
            with trio.CancelScope(shield=True):
                await cdp.aclose()


async def _close_when_exited(process: trio.Process, cdp: CdpConnection) -> None:
    # Child processes could keep the pipe open after the browser itself died; the browser's
    # exit is what ends the connection.
    await process.wait()
    if not cdp.closed:
        log.warning("the preview browser exited (code %s)", process.returncode)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # its helpers (zygote, renderers) go too
    await cdp.aclose()
