"""Each template's QA, run by the agent's real QA code through a real runtime on a real
workspace (``init-workspace``: template files plus its prepared dependencies): it passes on
the untouched template and fails on a planted error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio
from amicable_agent.loop.qa import run_qa
from amicable_agent.loop.settings import LoopSettings
from amicable_agent.sandboxes.runtime_client import open_runtime_client
from amicable_sandbox_runtime.config import RuntimeConfig
from amicable_sandbox_runtime.server import serve
from amicable_templates import get_template, registry

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
#: the dependency cache every suite shares (prepared once per template and lockfile)
CACHE = REPO / ".cache" / "node_modules"
TOKEN = "qa-token-0123456789abcdef"


def init_workspace(template_id: str, dest: Path) -> None:
    """The real CLI, as the local backend and the sandbox image run it."""
    subprocess.run(
        [sys.executable, "-m", "amicable_sandbox_runtime", "init-workspace", str(dest),
         "--template", template_id, "--cache-dir", str(CACHE)],
        capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip


def plant_error(template_id: str, workspace: Path) -> None:
    """A mistake each stack's checks must catch, in the file the model edits first."""
    template = get_template(template_id)
    path = workspace / template.edit_file
    text = path.read_text()
    if path.suffix == ".py":
        text += "\n\ndef planted() -> int:\n    return undefined_planted_name\n"
    elif path.suffix == ".svelte":
        text = text.replace("$state(0)", "$state<number>('not a number')")
    elif path.suffix == ".vue":
        text = text.replace("ref(0)", "ref<number>('not a number')")
    elif path.suffix == ".astro":  # in the component's (server-side) code fence
        text = text.replace("---\n", "---\nconst planted: number = 'not a number'\n", 1)
    else:
        text += "\nexport const planted: number = 'not a number'\n"
    path.write_text(text)


@pytest.mark.parametrize("template_id", registry().ids)
async def test_qa_passes_on_the_template_and_fails_on_a_planted_error(
    template_id: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    workspace = tmp_path / "app"
    await trio.to_thread.run_sync(init_workspace, template_id, workspace)
    config = RuntimeConfig(
        workspace=workspace, token=TOKEN, host="127.0.0.1", port=0, exec_timeout_s=600.0
    )
    port = await nursery.start(serve, config)
    settings = LoopSettings(qa_run_tests=True)
    expected = get_template(template_id).qa_commands(run_tests=True)
    async with open_runtime_client(f"http://127.0.0.1:{port}", TOKEN, timeout_s=600) as runtime:
        clean = await run_qa(runtime, settings, template_id=template_id)
        assert [c.command for c in clean.checks] == expected
        assert clean.passed, [(c.command, c.output[-2000:]) for c in clean.checks]
        plant_error(template_id, workspace)
        broken = await run_qa(runtime, settings, template_id=template_id)
    assert not broken.passed
    failed = broken.first_failure
    assert failed is not None
    assert broken.failure_kind == "code", failed.output[-2000:]
    # the failure points at the planted mistake (its file, or its name)
    where = Path(get_template(template_id).edit_file).name
    assert where in failed.output or "planted" in failed.output, failed.output[-2000:]
