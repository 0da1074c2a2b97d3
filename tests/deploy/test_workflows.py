"""The CI workflows: images.yml builds all four images and publishes main + sha-<shortsha> to
GHCR only from main; the chart's default image names are the ones CI publishes."""

from __future__ import annotations

import re

import yaml
from amicable_templates import registry
from deploy_support import CHART, REPO

WORKFLOWS = REPO / ".github" / "workflows"


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads a bare `on` as true
    return data


def test_images_workflow_builds_every_image_from_its_dockerfile() -> None:
    flow = load("images.yml")
    job = flow["jobs"]["build"]
    matrix = {m["image"]: m["dockerfile"] for m in job["strategy"]["matrix"]["include"]}
    stacks = {f"amicable-sandbox-{t}" for t in registry().ids if t != "vite"}
    assert set(matrix) == {
        "amicable-agent",
        "amicable-sandbox",
        "amicable-preview-router",
        "amicable-editor",
        *stacks,
    }
    # one sandbox image per stack: the same Dockerfile with its TEMPLATE
    built = {m.get("template") for m in job["strategy"]["matrix"]["include"]}
    assert built - {None} == set(registry().ids)
    for dockerfile in matrix.values():
        assert (REPO / dockerfile).is_file(), dockerfile
    build = next(
        s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action")
    )
    assert build["with"]["context"] == "."
    assert build["with"]["file"] == "${{ matrix.dockerfile }}"
    assert job["permissions"]["packages"] == "write"

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart_images = {
        values[c]["image"]["repository"]
        for c in ("agent", "previewRouter", "editor", "sandboxTemplate")
    }
    chart_images |= {
        t["image"]["repository"] for t in values["sandboxTemplates"] if t["image"]["repository"]
    }
    assert chart_images == set(matrix)
    assert "matrix.template" in build["with"]["build-args"]


def test_images_are_published_only_from_main_with_main_and_sha_tags() -> None:
    flow = load("images.yml")
    assert flow["on"]["push"]["branches"] == ["main"]
    job = flow["jobs"]["build"]
    publish = job["env"]["PUBLISH"]
    assert "github.event_name == 'push'" in publish
    assert "refs/heads/main" in publish
    meta = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/metadata-action"))
    tags = meta["with"]["tags"]
    assert re.search(
        r"type=raw,value=main,enable=\$\{\{ github.ref == 'refs/heads/main' \}\}", tags
    )
    assert "type=sha,prefix=sha-,format=short" in tags
    assert "ghcr.io/" in next(s for s in job["steps"] if s.get("id") == "name")["run"]
    login = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/login-action"))
    assert login["if"] == "env.PUBLISH == 'true'"


def published_names(job: dict) -> dict[str, tuple[str, str | None]]:
    """Every image name the workflow publishes: (Dockerfile, TEMPLATE build-arg)."""
    names = {}
    for m in job["strategy"]["matrix"]["include"]:
        for name in (m["image"], m.get("alias")):
            if name:
                names[name] = (m["dockerfile"], m.get("template"))
    return names


def make_images_names(template_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """Every image name `make images` (build.sh) tags, TEMPLATES being ``template_ids``."""
    script = (REPO / "deploy" / "images" / "build.sh").read_text()
    default = re.search(r'IMAGES=\$\{IMAGES:-"([^"]+)"\}', script)
    assert default, "build.sh names its images"
    assert re.search(r"TEMPLATES=\$\{TEMPLATES:-vite\}", script)
    assert "ref=localhost/amicable-sandbox-$template:$TAG" in script
    assert '--build-arg "TEMPLATE=$template"' in script
    assert 'amicable_podman tag "$ref" "localhost/amicable-sandbox:$TAG"' in script
    assert "DEFAULT_TEMPLATE=vite" in script
    names: dict[str, tuple[str, str | None]] = {}
    for image in default.group(1).split():
        dockerfile = f"deploy/images/{image}/Dockerfile"
        if image != "sandbox":
            names[f"amicable-{image}"] = (dockerfile, None)
            continue
        for template in template_ids:
            names[f"amicable-sandbox-{template}"] = (dockerfile, template)
        names["amicable-sandbox"] = (dockerfile, "vite")
    return names


def test_images_workflow_builds_what_make_images_builds_with_provenance_and_sbom() -> None:
    flow = load("images.yml")
    job = flow["jobs"]["build"]
    # the same names, Dockerfiles and TEMPLATE build-args, every template in the workflow
    assert published_names(job) == make_images_names(list(registry().ids))
    build = next(
        s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action")
    )
    assert build["with"]["provenance"] == "mode=max"
    assert build["with"]["sbom"] is True
    meta = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/metadata-action"))
    assert meta["with"]["images"] == "${{ steps.name.outputs.images }}"
    assert "$ALIAS" in next(s for s in job["steps"] if s.get("id") == "name")["run"]
    # Public bases: the workflow passes no base build-args (local bases are for `make images`);
    # its one build-arg is the sandbox stack (TEMPLATE).
    assert "_IMAGE" not in build["with"].get("build-args", "")


def test_ci_runs_the_readme_test_command() -> None:
    flow = load("test.yml")
    steps = flow["jobs"]["test"]["steps"]
    assert any(s.get("run") == ".ci/run" for s in steps)
    assert "pull_request" in flow["on"]
