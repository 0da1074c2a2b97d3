#!/usr/bin/env bash
# A minimal Debian bookworm root filesystem (a tar on stdout) made by mmdebstrap from the apt
# archive this machine uses, for `podman import` as the local base image when no registry base
# is reachable. The host's extra CA certificates are trusted inside too (a TLS-inspecting egress
# proxy would otherwise break apt/uv/npm inside builds); a public build never uses this base.
set -euo pipefail
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
cas=()
for crt in /usr/local/share/ca-certificates/*.crt; do
  [ -e "$crt" ] && cas+=(--customize-hook="upload $crt /usr/local/share/ca-certificates/$(basename "$crt")")
done
# As in the official Debian images: apt keeps no .debs and no package caches in image layers.
export CLEAN='DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";'
exec mmdebstrap --quiet --variant=minbase --include=ca-certificates \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  "${cas[@]}" \
  --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
  --customize-hook='printf "%s\n" "$CLEAN" > "$1"/etc/apt/apt.conf.d/docker-clean' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm - \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
  "deb $security bookworm-security main"
