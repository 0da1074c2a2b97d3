"""QA after a turn that changed files: choose commands (upstream §5.5), run them, judge.

Selection and failure classification are pure; :func:`run_qa` runs the chosen commands
through the sandbox runtime, concurrently when ``qa_parallel`` is on.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Literal

import attrs
import trio
from amicable_templates import TemplateError, get_template

from amicable_agent.errors import RuntimeClientError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .api import RuntimeClient
    from .settings import LoopSettings

#: Output kept per command.
QA_OUTPUT_MAX = 50_000
#: Output quoted in the self-heal message / ``qa_failed`` detail.
QA_DETAIL_MAX = 8_000
NONE_COMMAND = "<none>"
PARSE_COMMAND = "<parse package.json>"

FailureKind = Literal["none", "code", "environment"]


@attrs.frozen
class WorkspaceProbe:
    """What QA selection needs to know about a workspace.

    Attributes:
        package_json: text of ``/package.json``, or None when there is none.
        root_files: names of the files in the workspace root.
        file_texts: text of a few marker files (``pom.xml``, ``mix.exs``) when present.
        has_dotnet_project: a ``*.csproj``/``*.sln`` exists within depth 4.
    """

    package_json: str | None = None
    root_files: frozenset[str] = frozenset()
    file_texts: dict[str, str] = attrs.field(factory=dict)
    has_dotnet_project: bool = False


@attrs.frozen
class QaCheck:
    """The outcome of one QA command."""

    command: str
    exit_code: int
    output: str
    truncated: bool = False
    duration_ms: int = 0


@attrs.frozen
class QaOutcome:
    """All checks of one QA round."""

    checks: tuple[QaCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.exit_code == 0 for c in self.checks)

    @property
    def first_failure(self) -> QaCheck | None:
        return next((c for c in self.checks if c.exit_code != 0), None)

    @property
    def failure_kind(self) -> FailureKind:
        failed = self.first_failure
        if failed is None:
            return "none"
        return "environment" if is_environment_failure(failed) else "code"


def template_qa_commands(template_id: str, *, run_tests: bool) -> list[str] | None:
    """The registry's QA commands of a template (``amicable_templates``), None if unknown."""
    try:
        template = get_template(template_id)
    except TemplateError:
        return None
    return template.qa_commands(run_tests=run_tests)


def select_qa_commands(
    probe: WorkspaceProbe, settings: LoopSettings, template_qa: list[str] | None = None
) -> list[str] | QaCheck:
    """The QA commands for a workspace, or an immediate failing check.

    ``DEEPAGENTS_QA_COMMANDS`` overrides everything. A workspace without ``package.json``
    whose template brings QA commands (``template_qa``, e.g. ``fastapi``) runs those: Node
    templates name their checks as package scripts, so detection below finds the same
    commands and follows the model's changes to the scripts. An unreadable ``package.json``
    fails at once; package scripts ``lint``, ``typecheck``, ``test`` (only with
    ``DEEPAGENTS_QA_RUN_TESTS``), ``build`` in that order; then fallbacks per stack. Returns
    ``[]`` when nothing applies (QA passes with a single ``<none>`` result).
    """
    if settings.qa_commands is not None:
        return list(settings.qa_commands)
    if template_qa and probe.package_json is None:
        return list(template_qa)
    tests = settings.qa_run_tests
    if probe.package_json is not None:
        try:
            package: Any = json.loads(probe.package_json)
        except ValueError:
            package = None
        if not isinstance(package, dict):
            return QaCheck(PARSE_COMMAND, 2, "package.json is not a valid JSON object")
        scripts = package.get("scripts")
        scripts = scripts if isinstance(scripts, dict) else {}
        chosen = [
            f"npm run -s {name}"
            for name in ("lint", "typecheck", "test", "build")
            if name in scripts and (name != "test" or tests)
        ]
        if chosen:
            return chosen
        fallback = []
        if "tsconfig.json" in probe.root_files:
            fallback.append("npx --no-install tsc --noEmit")
        deps: dict[str, Any] = {}
        for key in ("dependencies", "devDependencies"):
            if isinstance(package.get(key), dict):
                deps.update(package[key])
        vite_config = any(
            f"vite.config.{ext}" in probe.root_files for ext in ("ts", "js", "mjs", "cjs")
        )
        if "vite" in deps or vite_config:
            fallback.append("npx --no-install vite build")
        return fallback
    return _non_node_commands(probe, tests)


def _non_node_commands(probe: WorkspaceProbe, tests: bool) -> list[str]:
    files = probe.root_files
    if probe.has_dotnet_project:
        return ["dotnet build", *(["dotnet test"] if tests else [])]
    if "io.quarkus" in probe.file_texts.get("pom.xml", ""):
        return ["./mvnw -q -DskipTests compile", *(["./mvnw -q test"] if tests else [])]
    if "phoenix" in probe.file_texts.get("mix.exs", ""):
        return ["mix compile", *(["mix test"] if tests else [])]
    if "pubspec.yaml" in files:
        return ["flutter pub get", "flutter analyze", *(["flutter test"] if tests else [])]
    if "pyproject.toml" in files or "requirements.txt" in files:
        return ["python -m compileall -q .", "ruff check .", *(["pytest"] if tests else [])]
    return []


_ENV_MARKERS = (
    "executable file not found in $path",
    "is not recognized as an internal or external command",
    "not on path",
    "command not found",
)
_NOT_FOUND_RE = re.compile(r"(?m)(?:^|[\s:])[\w./\-]+: (?:\d+: )?(?:[\w./\-]+: )?not found\s*$")
_ENV_PROGRAMS = (
    "flutter", "dart", "dotnet", "mix", "mvn", "mvnw", "java",
    "python", "python3", "node", "npm", "npx",
)  # fmt: skip


def is_environment_failure(check: QaCheck) -> bool:
    """True when a failed check says the sandbox lacks a tool, not that the code is wrong.

    Such failures skip self-heal: the model cannot fix a missing compiler by editing code.
    """
    text = check.output.lower()
    if any(marker in text for marker in _ENV_MARKERS):
        return True
    if _NOT_FOUND_RE.search(text):
        return True
    if check.exit_code == 127:
        program = check.command.split()[0].rsplit("/", 1)[-1] if check.command.split() else ""
        if program in _ENV_PROGRAMS and ("not found" in text or "no such file" in text):
            return True
    return False


async def probe_workspace(runtime: RuntimeClient) -> WorkspaceProbe:
    """Collect a :class:`WorkspaceProbe` through the runtime API."""
    tree = await runtime.tree("/", depth=1, include_hidden=True)
    root_files = frozenset(
        e.path.rstrip("/").rsplit("/", 1)[-1] for e in tree.entries if e.kind != "dir"
    )

    async def text(path: str) -> str | None:
        try:
            content, _sha = await runtime.read_file(path)
        except RuntimeClientError as exc:
            if exc.code in ("not_found", "is_directory"):
                return None
            raise
        return content.decode("utf-8", errors="replace")

    package_json = await text("/package.json") if "package.json" in root_files else None
    file_texts: dict[str, str] = {}
    for name in ("pom.xml", "mix.exs"):
        if name in root_files:
            file_texts[name] = await text(f"/{name}") or ""
    has_dotnet = False
    if package_json is None:
        for pattern in ("**/*.csproj", "**/*.sln"):
            found = await runtime.glob(pattern, "/")
            if any(p.count("/") <= 5 and "/node_modules/" not in p for p in found.paths):
                has_dotnet = True
    return WorkspaceProbe(package_json, root_files, file_texts, has_dotnet)


async def _run_one(runtime: RuntimeClient, command: str, timeout_s: float) -> QaCheck:
    start = trio.current_time()
    try:
        result = await runtime.exec(command, timeout_s=timeout_s)
    except RuntimeClientError as exc:
        return QaCheck(command, 1, f"QA command could not run: {exc}")
    output = result.stdout + ("\n" if result.stdout and result.stderr else "") + result.stderr
    truncated = result.truncated or len(output) > QA_OUTPUT_MAX
    duration = int((trio.current_time() - start) * 1000) or result.duration_ms
    return QaCheck(command, result.exit_code, output[-QA_OUTPUT_MAX:], truncated, duration)


async def sandbox_cpus(runtime: RuntimeClient) -> int | None:
    """How many CPUs the sandbox's processes may use (``nproc``), or None if unknown."""
    try:
        result = await runtime.exec("nproc", timeout_s=10)
    except RuntimeClientError:
        return None
    try:
        return max(1, int(result.stdout.strip())) if result.exit_code == 0 else None
    except ValueError:
        return None


async def run_qa(
    runtime: RuntimeClient,
    settings: LoopSettings,
    *,
    on_check: Callable[[QaCheck], Awaitable[None]] | None = None,
    template_id: str | None = None,
) -> QaOutcome:
    """Select and run the QA commands; the whole round is bounded by ``qa_timeout_s``.

    Sequential mode is fail-fast; parallel mode runs the checks concurrently (they are
    independent), at most as many at a time as the sandbox has CPUs (the checks are
    CPU-bound: more at once only makes each one slower), and reports each as it finishes.

    Cancellation: cancelling the caller cancels the running ``exec`` calls, which kills
    their process groups in the sandbox.
    """
    template_qa = None
    if template_id is not None:
        template_qa = template_qa_commands(template_id, run_tests=settings.qa_run_tests)
    selected = select_qa_commands(await probe_workspace(runtime), settings, template_qa)
    if isinstance(selected, QaCheck):
        return QaOutcome((selected,))
    if not selected:
        return QaOutcome((QaCheck(NONE_COMMAND, 0, ""),))
    results: dict[int, QaCheck] = {}

    async def run(index: int, command: str) -> None:
        check = await _run_one(runtime, command, settings.qa_timeout_s)
        results[index] = check
        if on_check is not None:
            await on_check(check)

    with trio.move_on_after(settings.qa_timeout_s) as scope:
        if settings.qa_parallel and len(selected) > 1:
            slots = await sandbox_cpus(runtime) or len(selected)
            queue = iter(enumerate(selected))  # started in the selected order

            async def worker() -> None:
                for index, command in queue:
                    await run(index, command)

            async with trio.open_nursery() as nursery:
                for _ in range(min(slots, len(selected))):
                    nursery.start_soon(worker)
        else:
            for index, command in enumerate(selected):
                await run(index, command)
                if results[index].exit_code != 0:
                    break
    checks = [results[i] for i in sorted(results)]
    if scope.cancelled_caught:
        checks.append(QaCheck("<qa timeout>", 124, "QA timeout exceeded"))
    return QaOutcome(tuple(checks))


def failure_detail(check: QaCheck) -> str:
    """``QA failed on `<cmd>` (exit N). Output: …`` (the ``qa_failed`` detail)."""
    output = check.output
    if len(output) > QA_DETAIL_MAX:
        output = "…" + output[-QA_DETAIL_MAX:]
    return f"QA failed on `{check.command}` (exit {check.exit_code}). Output:\n\n{output}"


def self_heal_message(check: QaCheck) -> str:
    """The user-role message that asks the model to fix a QA failure."""
    return (
        f"{failure_detail(check)}\n\nPlease fix the cause, then make QA pass. "
        "Hint: for a Node project, `npm install` restores missing packages and "
        "`npm run -s build` reproduces the check."
    )
