"""The template registry: one ``template.toml`` per folder under ``stacks/``, read by one loader.

Every service reads templates through this module: the agent (``GET /api/templates``, project
validation, QA commands, the system prompt), the sandbox runtime (``init-workspace``, the
dev-server command), the local backend (dependency preparation, warm pools) and, through
``python -m amicable_templates``, the chart's and the editor's checks.

Manifest (every key but the ``[qa]`` commands and ``[files]`` lists is required)::

    id = "hono"                       # the folder's name
    name = "Hono API"                 # shown in the editor
    description = "…"
    order = 6                         # position in the editor's list
    [dev]
    command = "…"                     # sh -c in the workspace; AMICABLE_PREVIEW_HOST/PORT set
    port = 3000
    path = "/"                        # the page the preview opens
    expect = "…"                      # a text that page shows once the stack is up
    reload = "hmr" | "poll"           # HMR over the router's WebSocket, or a polling reload
    [deps]
    kind = "npm" | "python"           # node_modules from npm ci, or .venv from a hashed lock
    lockfile = "package-lock.json"
    [qa]                              # lint, typecheck, test, build: shell commands
    [files]
    protected = ["…"]                 # files the model must not delete
    bridge = "public/amicable-runtime.js"  # browser stacks: where init writes the bridge
    edit = "src/App.tsx"              # a file whose ``edit_from`` text shows on ``path``
    edit_from = "…"
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any, Literal

import attrs

STACKS_DIR = Path(__file__).parent / "stacks"
#: The runtime-error bridge, one source for every browser stack: ``init-workspace`` writes it
#: at each manifest's ``[files] bridge`` path (the stacks' folders hold no copy).
BRIDGE_SOURCE = Path(__file__).parent / "bridge" / "amicable-runtime.js"
DEFAULT_TEMPLATE = "vite"
QA_ORDER = ("lint", "typecheck", "test", "build")

DepsKind = Literal["npm", "python"]
ReloadKind = Literal["hmr", "poll"]


class TemplateError(Exception):
    """An unknown template id or a malformed manifest."""


@attrs.frozen
class Template:
    """One template: its files (``directory``) and what its manifest says about them."""

    id: str
    name: str
    description: str
    order: int
    directory: Path
    dev_command: str
    dev_port: int
    dev_path: str
    dev_expect: str
    reload: ReloadKind
    deps_kind: DepsKind
    lockfile: str
    qa: tuple[tuple[str, str], ...]
    protected: tuple[str, ...]
    edit_file: str
    edit_from: str
    bridge: str | None = None

    @property
    def deps_dir(self) -> str:
        """The workspace directory the prepared dependencies live in."""
        return "node_modules" if self.deps_kind == "npm" else ".venv"

    @property
    def manifest_files(self) -> tuple[str, ...]:
        """The files a dependency install reads (copied into the cache's staging dir)."""
        return ("package.json", self.lockfile) if self.deps_kind == "npm" else (self.lockfile,)

    def qa_commands(self, *, run_tests: bool) -> list[str]:
        """The QA commands in ``lint, typecheck, test, build`` order (``test`` on request)."""
        return [cmd for name, cmd in self.qa if name != "test" or run_tests]

    def bridge_source(self) -> bytes | None:
        """The bridge's bytes this template's workspaces get at :attr:`bridge` (or ``None``)."""
        return BRIDGE_SOURCE.read_bytes() if self.bridge else None

    def agents_md(self) -> str:
        """The template's ``AGENTS.md`` (the model's notes on the stack)."""
        return (self.directory / "AGENTS.md").read_text(encoding="utf-8")

    def public(self) -> dict[str, Any]:
        """What ``GET /api/templates`` answers for this template."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "deps": self.deps_kind,
            "reload": self.reload,
            "qa": [name for name, _ in self.qa],
        }


def _need(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise TemplateError(f"{where}: {key!r} must be a {kind.__name__}")
    return value


def parse_manifest(text: str, directory: Path) -> Template:
    """A :class:`Template` from the text of a ``template.toml`` (no I/O).

    Raises:
        TemplateError: invalid TOML, a missing or mistyped key, or an unknown kind.
    """
    where = str(directory / "template.toml")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{where}: {exc}") from exc
    dev, deps = data.get("dev", {}), data.get("deps", {})
    qa, files = data.get("qa", {}), data.get("files", {})
    if not all(isinstance(t, dict) for t in (dev, deps, qa, files)):
        raise TemplateError(f"{where}: [dev], [deps], [qa] and [files] must be tables")
    template_id = _need(data, "id", str, where)
    if template_id != directory.name:
        raise TemplateError(f"{where}: id {template_id!r} is not the folder's name")
    kind, reload = _need(deps, "kind", str, where), _need(dev, "reload", str, where)
    if kind not in ("npm", "python") or reload not in ("hmr", "poll"):
        raise TemplateError(f"{where}: unknown deps.kind {kind!r} or dev.reload {reload!r}")
    unknown = set(qa) - set(QA_ORDER)
    if unknown:
        raise TemplateError(f"{where}: unknown QA step(s) {sorted(unknown)}")
    protected = files.get("protected", [])
    if not isinstance(protected, list) or not all(isinstance(p, str) for p in protected):
        raise TemplateError(f"{where}: files.protected must be a list of paths")
    bridge = files.get("bridge")
    if bridge is not None and (
        not isinstance(bridge, str)
        or not bridge.endswith("amicable-runtime.js")
        or bridge.startswith("/")
        or ".." in Path(bridge).parts
    ):
        raise TemplateError(f"{where}: files.bridge must be a relative path to amicable-runtime.js")
    return Template(
        id=template_id,
        name=_need(data, "name", str, where),
        description=_need(data, "description", str, where),
        order=_need(data, "order", int, where),
        directory=directory,
        dev_command=_need(dev, "command", str, where),
        dev_port=_need(dev, "port", int, where),
        dev_path=_need(dev, "path", str, where),
        dev_expect=_need(dev, "expect", str, where),
        reload=reload,
        deps_kind=kind,
        lockfile=_need(deps, "lockfile", str, where),
        qa=tuple((name, _need(qa, name, str, where)) for name in QA_ORDER if name in qa),
        protected=tuple(protected),
        edit_file=_need(files, "edit", str, where),
        edit_from=_need(files, "edit_from", str, where),
        bridge=bridge,
    )


@attrs.frozen
class Registry:
    """Every template, in the editor's order."""

    templates: tuple[Template, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        """The template ids, in the editor's order."""
        return tuple(t.id for t in self.templates)

    def get(self, template_id: str) -> Template:
        """The template ``template_id``.

        Raises:
            TemplateError: no such template.
        """
        for template in self.templates:
            if template.id == template_id:
                return template
        raise TemplateError(f"unknown template {template_id!r}; known: {', '.join(self.ids)}")

    def __contains__(self, template_id: object) -> bool:
        return template_id in self.ids


def read_registry(stacks_dir: Path) -> Registry:
    """Read every ``<stacks_dir>/*/template.toml``.

    Raises:
        TemplateError: a malformed manifest.
    """
    found = [
        parse_manifest(manifest.read_text(encoding="utf-8"), manifest.parent)
        for manifest in sorted(stacks_dir.glob("*/template.toml"))
    ]
    return Registry(tuple(sorted(found, key=lambda t: (t.order, t.id))))


@functools.cache
def registry() -> Registry:
    """The bundled templates (read once per process)."""
    return read_registry(STACKS_DIR)


def get_template(template_id: str) -> Template:
    """The bundled template ``template_id``.

    Raises:
        TemplateError: no such template.
    """
    return registry().get(template_id)
