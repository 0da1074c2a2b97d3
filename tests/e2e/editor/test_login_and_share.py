"""Logins in a real browser: Alice signs in through the editor (the real code flow against a
fake OpenID provider), creates a project and shares it with Bob, who sees it in his own list
and opens it read-only. The agent is the real one (in a background thread, with the built
editor); sandboxes are faked, since no preview is needed here."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.server import serve
from amicable_testing import FakeSandboxBackend, unused_runtime_factory
from amicable_testing.fake_oidc import FakeOidc, open_fake_oidc
from amicable_testing.logins import ALICE, BOB, CAROL, CLIENT_ID, CLIENT_SECRET, oidc_config
from conftest import _dist, screenshot  # type: ignore[import-not-found]


@attrs.define
class LoginSite:
    """The agent and its provider, served from a background thread's Trio loop."""

    data_dir: Path
    origin: str = ""
    oidc: FakeOidc | None = None
    _token: Any = None
    _cancel: trio.CancelScope | None = None
    _ready: threading.Event = attrs.field(factory=threading.Event)
    _error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with open_fake_oidc(
                clients={CLIENT_ID: (CLIENT_SECRET, [])}, users=[ALICE, BOB, CAROL]
            ) as oidc:
                config = AgentConfig(
                    host="127.0.0.1", port=0, internal_port=0, data_dir=self.data_dir,
                    editor_dist=_dist(), auth=oidc_config(oidc.issuer),
                )  # fmt: skip
                with trio.CancelScope() as scope:
                    self._cancel = scope
                    async with trio.open_nursery() as nursery:
                        ports = await nursery.start(
                            lambda task_status: serve(
                                config,
                                backend=FakeSandboxBackend(),
                                runtime_factory=unused_runtime_factory,
                                task_status=task_status,
                            )
                        )
                        self.origin = f"http://localhost:{ports.public}"
                        oidc.register_client(
                            CLIENT_ID, CLIENT_SECRET, [f"{self.origin}/auth/callback"]
                        )
                        self.oidc = oidc
                        self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError("the agent did not start") from self._error

    def login_as(self, user: Any) -> None:
        """Choose who the provider signs in next (on the server's thread)."""
        assert self.oidc is not None
        oidc = self.oidc

        async def choose() -> None:
            oidc.login_as(user)

        trio.from_thread.run(choose, trio_token=self._token)

    def stop(self) -> None:
        if self._cancel is not None:
            trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)


@pytest.fixture
def login_site(tmp_path: Path) -> Any:
    site = LoginSite(tmp_path / "data")
    site.start()
    yield site
    site.stop()


def _sign_in(browser: Any, site: LoginSite, user: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=site.origin)
    context.set_default_timeout(20000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/")
    page.get_by_test_id("sign-in").wait_for()
    site.login_as(user)
    page.get_by_test_id("sign-in-button").click()
    page.get_by_test_id("user-menu").wait_for()  # back in the editor, signed in
    page.errors = errors  # type: ignore[attr-defined]
    return page


def test_sign_in_share_and_the_other_user_sees_it(browser: Any, login_site: LoginSite) -> None:
    bob = _sign_in(browser, login_site, BOB)
    assert bob.get_by_test_id("project-item").count() == 0

    alice = _sign_in(browser, login_site, ALICE)
    alice.get_by_test_id("new-project-name").fill("Team Board")
    alice.get_by_test_id("new-project-prompt").fill("A kanban board for the team")
    alice.get_by_test_id("new-project").click()
    alice.wait_for_url("**/p/team-board")
    alice.get_by_test_id("share").click()
    alice.get_by_test_id("invite-email").fill("bob@example.com")
    alice.get_by_test_id("invite-role").select_option("viewer")
    alice.get_by_test_id("invite-submit").click()
    members = alice.get_by_test_id("member")
    members.filter(has_text="bob@example.com").wait_for()
    assert members.count() == 2  # Alice (owner) and Bob
    screenshot(alice, "share-dialog")

    bob.reload()
    item = bob.get_by_test_id("project-item").filter(has_text="Team Board")
    item.wait_for()
    assert "view" in item.get_by_test_id("project-role").inner_text().lower()
    assert item.get_by_test_id("project-delete").count() == 0
    item.get_by_test_id("project-open").click()
    bob.get_by_test_id("viewer-note").wait_for()

    # Carol, who was not invited, gets nothing at Alice's project's address.
    carol = _sign_in(browser, login_site, CAROL)
    carol.goto(alice.url)
    carol.get_by_text("not found", exact=False).first.wait_for()

    for page in (alice, bob, carol):
        assert page.errors == [], page.errors  # type: ignore[attr-defined]
        page.context.close()
