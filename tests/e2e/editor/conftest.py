"""Fixtures for the editor end-to-end tests: the built editor, a fake agent, real Chromium;
and `amicable up` with the fake model (:class:`AmicableUp`, started by the ``amicable_up``
fixture) with a page on its editor (``stack_page``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from amicable_testing.fake_anthropic import FakeAnthropic

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the fake importable

from editor_fake_agent import FakeAgent, FakeProject, serve

ROOT = Path(__file__).resolve().parents[3]
FRONTEND = ROOT / "frontend"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The committed docs/screenshots change only on purpose (AMICABLE_UPDATE_SCREENSHOTS=1);
# ordinary runs write to the gitignored artifacts/ folder so `make test` leaves no diff.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("AMICABLE_UPDATE_SCREENSHOTS") == "1"
    else ROOT / "artifacts" / "screenshots"
)


AMICABLE = str(Path(sys.executable).parent / "amicable")
NODE_CACHE = ROOT / ".cache" / "node_modules"
#: How long a first preview may take on a loaded machine (npm install, Vite); not a timing.
PREVIEW_TIMEOUT_MS = 180_000
#: Settings `amicable up` must not inherit from whoever runs the tests.
_OWN_ENV = ("AMICABLE_", "ANTHROPIC_", "DEEPAGENTS_", "HASURA_")


def _dist() -> Path:
    """frontend/dist, built by `make frontend` (a step of `make test`)."""
    dist = FRONTEND / "dist"
    if not (dist / "index.html").is_file():
        pytest.fail("frontend/dist is not built: run `make frontend`")
    return dist


class FakeAgentHandle:
    """A FakeAgent served from a background thread running its own Trio loop."""

    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent
        self.origin = ""
        self.preview_origin = ""
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as scope:
                self._cancel = scope
                async with trio.open_nursery() as nursery:
                    self.origin, self.preview_origin = await nursery.start(serve, self.agent)
                    self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError("fake agent did not start") from self._error

    def call(self, fn: Any, *args: Any) -> Any:
        """Run sync `fn(*args)` on the server's Trio thread (state is not thread-safe)."""
        assert self._token is not None

        async def wrapper() -> Any:
            return fn(*args)

        return trio.from_thread.run(wrapper, trio_token=self._token)

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None:
            trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        self._thread.join(10)


@pytest.fixture
def fake_agent() -> Iterator[FakeAgentHandle]:
    handle = FakeAgentHandle(FakeAgent(_dist()))
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, fake_agent: FakeAgentHandle) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, base_url=fake_agent.origin
    )
    context.set_default_timeout(15000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert errors == [], f"uncaught errors in the editor: {errors}"


def screenshot(page: Any, name: str) -> None:
    """Save <name>.png (docs/screenshots with AMICABLE_UPDATE_SCREENSHOTS=1; the README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def provisioned_project(agent: FakeAgentHandle, name: str) -> FakeProject:
    """A project whose sandbox already exists (opening it skips provisioning)."""

    def make() -> FakeProject:
        p = agent.agent.create_project(name)
        p.provisioned = True
        return p

    project: FakeProject = agent.call(make)
    return project


class AmicableUp:
    """`amicable up` on ``data_dir`` with the fake Anthropic model answering through
    ``responder``, run (with the fake) from a background Trio loop.

    Args:
        data_dir: the agent's data directory (the ready file goes beside it).
        responder: the fake model's responder (request body -> ``Reply`` or ``Fault``).
        env: settings added to the child's environment.
        services: started in the loop before the child (e.g. a fake Hasura); returns more
            settings for the child's environment.
    """

    def __init__(
        self,
        data_dir: Path,
        responder: Any,
        *,
        env: Mapping[str, str] | None = None,
        services: Callable[[trio.Nursery], Awaitable[dict[str, str]]] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.fake = FakeAnthropic(responder=responder)
        self.info: dict[str, Any] = {}
        self.returncode: int | None = None
        self._env = dict(env or {})
        self._services = services
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def origin(self) -> str:
        """The editor's origin (once started)."""
        return f"http://127.0.0.1:{self.info['port']}"

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _child_env(self, nursery: trio.Nursery) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_ENV)}
        env.update(
            ANTHROPIC_API_KEY="sk-fake", ANTHROPIC_BASE_URL=await nursery.start(self.fake.serve),
            AMICABLE_WARM_POOL_SIZE="0", AMICABLE_NODE_MODULES_CACHE_DIR=str(NODE_CACHE),
            DEEPAGENTS_QA_COMMANDS="true", AMICABLE_RUNTIME_AUTO_HEAL="false",
        )  # fmt: skip
        env.update(self._env)
        if self._services is not None:
            env.update(await self._services(nursery))
        return env

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        ready = self.data_dir.parent / f"ready-{uuid.uuid4().hex}.json"
        async with trio.open_nursery() as nursery:
            env = await self._child_env(nursery)
            argv = [AMICABLE, "up", "--data-dir", str(self.data_dir), "--port", "0"]
            argv += ["--preview-port", "0", "--ready-file", str(ready)]
            process: trio.Process = await nursery.start(
                partial(trio.run_process, argv, env=env, check=False, start_new_session=True)
            )
            try:
                with trio.fail_after(180):
                    # `amicable up` writes the file when it listens; there is no event to await.
                    while not ready.exists():
                        if process.returncode is not None:
                            raise RuntimeError("amicable up exited early")
                        await trio.sleep(0.1)
                self.info = json.loads(ready.read_text())
                self._ready.set()
                await self._stop.wait()
            finally:
                with trio.CancelScope(shield=True):
                    if process.returncode is None:
                        process.send_signal(signal.SIGINT)
                        with trio.move_on_after(60):
                            await process.wait()
                    if process.returncode is None:
                        os.killpg(process.pid, signal.SIGKILL)
                        await process.wait()
                    self.returncode = process.returncode
                nursery.cancel_scope.cancel()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(240) or self._error is not None:
            self.stop()
            raise RuntimeError("amicable up did not start") from self._error

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(90)


Up = TypeVar("Up", bound=AmicableUp)


@pytest.fixture
def amicable_up() -> Iterator[Callable[[Up], Up]]:
    """Starts an :class:`AmicableUp` (``stack = amicable_up(MyStack(...))``); at the end of the
    test stops every one it started and fails unless each exited cleanly. Skips without
    Chromium (every test of a stack drives the editor in it)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed")
    started: list[AmicableUp] = []

    def start(stack: Up) -> Up:
        started.append(stack)
        stack.start()
        return stack

    yield start
    for stack in started:
        stack.stop()
    for stack in started:
        assert stack.returncode == 0, "amicable up did not stop cleanly"


@pytest.fixture
def stack_page(browser: Any, amicable_up: Any) -> Iterator[Callable[[AmicableUp], Any]]:
    """Opens a desktop page on a started stack's editor (``page = stack_page(stack)``); at the
    end closes it (before the stack stops) and fails on any uncaught error in the editor."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_page(stack: AmicableUp) -> Any:
        context = browser.new_context(viewport={"width": 1440, "height": 900},
                                      base_url=stack.origin)  # fmt: skip
        context.set_default_timeout(60_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert errors == [], f"uncaught errors in the editor: {errors}"
