# The README's two commands: `make up` (run the product locally) and `make test` (pass the tests).
# Both install whatever is missing on a fresh Debian machine first.

SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
STAMPS := $(ROOT)/.stamps
UV := $(shell command -v uv 2>/dev/null || echo $(ROOT)/.tools/bin/uv)
# What isolates local sandboxes (`make up` installs these): bubblewrap, pasta, ip, setpriv.
SANDBOX_PACKAGES := bubblewrap passt iproute2 util-linux
# What builds and runs the images (`make images`, the container tests): podman with runc,
# buildah, and mmdebstrap for the local Debian base when no registry base is reachable;
# iptables for netavark's firewall driver (Debian 12's netavark 1.4 needs it); nftables for
# the container backend's network fence (docs/containers.md).
IMAGE_PACKAGES := podman buildah runc netavark aardvark-dns iptables mmdebstrap uidmap passt slirp4netns nftables
# The container tests run in `make test`: the images build in the background (cached by
# content, so seconds when nothing changed; 5-6 min from nothing) while lint, type-check and
# the other tests run, and the container tests come last (README: what each costs).
# IMAGE_TESTS=0 leaves them out (no build either); `make test-images` runs them alone.
IMAGE_TESTS ?= 1
APT_PACKAGES := chromium chromium-driver nginx wrk git openssl postgresql $(SANDBOX_PACKAGES)
export UV_PROJECT_ENVIRONMENT := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
# Installed packages are byte-compiled once at install time, and our own modules may cache
# bytecode: otherwise every server, runtime and test process recompiles anthropic & co.
export UV_COMPILE_BYTECODE := 1
unexport PYTHONDONTWRITEBYTECODE

.PHONY: images image-deps images-background test-images help up test soak schema-check deps py-deps node-deps apt-deps sandbox-deps install-apt lint typecheck pytest frontend frontend-test schema bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

up: sandbox-deps py-deps frontend ## install what is missing, then run agent + preview router + editor locally
	$(VENV)/bin/amicable up $(ARGS)

test: deps $(if $(filter 1,$(IMAGE_TESTS)),images-background) lint typecheck schema-check frontend-test pytest ## install what is missing, then lint, type-check and run every test

deps: apt-deps py-deps node-deps frontend

$(ROOT)/.tools/bin/uv:
	python3 -m venv $(ROOT)/.tools
	$(ROOT)/.tools/bin/pip install --quiet uv

py-deps: $(UV) ## the uv workspace in .venv (uv sync --locked)
	$(UV) sync --locked --all-packages --quiet

apt-deps: ## Debian packages: sandbox isolation (bubblewrap, passt, iproute2), Chromium, nginx, wrk, PostgreSQL
	@$(MAKE) --no-print-directory install-apt PACKAGES="$(APT_PACKAGES)"

sandbox-deps: ## Debian packages that isolate local sandboxes (on other systems: install them yourself)
	@if command -v dpkg >/dev/null; then $(MAKE) --no-print-directory install-apt PACKAGES="$(SANDBOX_PACKAGES)"; fi

install-apt:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

node-deps: ## npm dependencies of the editor
	@if [ -f frontend/package-lock.json ]; then \
	  if [ ! -d frontend/node_modules ] || [ frontend/package-lock.json -nt frontend/node_modules/.package-lock.json ]; then \
	    cd frontend && npm ci --no-audit --no-fund --loglevel=error; fi; fi

frontend: node-deps ## build the editor into frontend/dist when its sources changed
	@if [ -f frontend/package.json ]; then $(MAKE) --no-print-directory -C frontend -f build.mk dist; fi

frontend-test: node-deps ## vitest + type-check of the editor
	@if [ -f frontend/package.json ]; then cd frontend && npm run --silent check && npm run --silent test; fi

lint: py-deps ## ruff (lint + format check)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: py-deps ## mypy strict on libs/ and services/
	$(VENV)/bin/mypy

pytest: export AMICABLE_IMAGE_TESTS := $(IMAGE_TESTS)
pytest: py-deps ## every Python test (real servers, real Vite, real Chromium)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

soak: py-deps ## the soak test: 20 sessions, random kills and model drops (a few minutes)
	$(VENV)/bin/pytest -m soak tests/soak -s $(PYTEST_ARGS)

image-deps: ## Debian packages that build and run the images (podman, runc, buildah, mmdebstrap)
	@$(MAKE) --no-print-directory install-apt PACKAGES="$(IMAGE_PACKAGES)"

images: image-deps ## build the four images with podman (TEMPLATES=vite,hono: one sandbox image each)
	bash deploy/images/build.sh

images-background: image-deps
	@mkdir -p .images; echo "images: building in the background while the tests run (.images/build.log)"
	@nohup bash deploy/images/build.sh > .images/build.log 2>&1 < /dev/null &

test-images: image-deps py-deps ## container tests: build the images (cached by content), run them
	AMICABLE_IMAGE_TESTS=1 $(VENV)/bin/pytest tests/images $(PYTEST_ARGS)

schema: py-deps ## regenerate frontend/src/protocol/schema.json + TypeScript types
	$(VENV)/bin/python -m amicable_protocol.schema --out frontend/src/protocol/schema.json
	cd frontend && npm run --silent gen-types

schema-check: py-deps ## fail when frontend/src/protocol/schema.json is stale w.r.t. libs/protocol
	@if [ -f frontend/src/protocol/schema.json ]; then \
	  tmp=$$(mktemp); $(VENV)/bin/python -m amicable_protocol.schema --out $$tmp && \
	  if ! diff -q frontend/src/protocol/schema.json $$tmp >/dev/null; then \
	    echo "frontend/src/protocol/schema.json is stale: run 'make schema' and commit"; \
	    diff -u frontend/src/protocol/schema.json $$tmp | head -40; rm -f $$tmp; exit 1; fi; rm -f $$tmp; fi

bench: py-deps ## run every benchmark (prints ratios against a same-run baseline)
	@for b in benchmarks/*/run.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean: ## remove build products (keeps .venv)
	rm -rf frontend/dist $(STAMPS) .pytest_cache .mypy_cache .ruff_cache
