"""Fixtures for the deployment checks (helpers live in deploy_support.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent))

import yaml
from deploy_support import (
    CHART,
    KUBERNETES_VERSION,
    VENV_BIN,
    Doc,
    Render,
    Validate,
    install_helm,
    is_builtin,
    load_docs,
    run_tool,
)
from deploy_support import (
    crd_validators as _crd_validators,
)


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """Path of a working helm binary (installed into .cache/ on first use)."""
    return install_helm()


@pytest.fixture(scope="session")
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """jsonschema validators keyed by (apiVersion, kind) for every CRD-typed kind we render."""
    return _crd_validators()


@pytest.fixture
def validate(
    crd_validators: dict[tuple[str, str], jsonschema.protocols.Validator],
) -> Validate:
    """Validate manifests: built-ins via kubernetes-validate --strict, CRD kinds via jsonschema."""

    async def check(docs: list[Doc], version: str = KUBERNETES_VERSION) -> None:
        assert docs, "nothing rendered"
        crd_kinds = [d for d in docs if not is_builtin(d)]
        builtin = [d for d in docs if is_builtin(d)]
        for doc in crd_kinds:
            key = (doc["apiVersion"], doc["kind"])
            assert key in crd_validators, f"no schema for {key}"
            errors = sorted(crd_validators[key].iter_errors(doc), key=lambda e: list(e.path))
            assert not errors, "\n".join(
                f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}"
                for e in errors
            )
        if builtin:
            out = await run_tool(
                [VENV_BIN / "kubernetes-validate", "--strict", "-k", version, "-"],
                stdin=yaml.safe_dump_all(builtin).encode(),
            )
            passed = [
                line for line in out.splitlines() if line.startswith("INFO") and "passed" in line
            ]
            # A kind the CLI has no schema for is only a warning there; make it an error here.
            assert len(passed) == len(builtin), out

    return check


@pytest.fixture
def render(helm_bin: Path) -> Render:
    """``await render(*helm_template_args)`` -> rendered documents (chart path included)."""

    async def do(*args: str, release: str = "amicable", namespace: str = "amicable") -> list[Doc]:
        out = await run_tool(
            [helm_bin, "template", release, os.fspath(CHART), "--namespace", namespace, *args]
        )
        return load_docs(out)

    return do


@pytest.fixture
def tmp_yaml(tmp_path: Path) -> Callable[[str], Path]:
    """Write a values file into tmp_path and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(text)
        return path

    return write
