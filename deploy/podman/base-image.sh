#!/usr/bin/env bash
# Makes a local Debian bookworm base image with python3 and python3-venv, for building the
# InferCDN images where no image registry is reachable (the Dockerfiles take it as BASE_IMAGE):
#   deploy/podman/base-image.sh [IMAGE]     # default localhost/infercdn-base:bookworm
# Kept once made: podman's store is the cache. Built with debootstrap from Debian's mirror
# ($DEBIAN_MIRROR); it trusts the CAs this host added locally (/usr/local/share/ca-certificates),
# as builds behind a TLS-inspecting proxy need. Run as root.
set -euo pipefail
image=${1:-localhost/infercdn-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if podman image exists "$image"; then
  echo "$image: already here"
  exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
  { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "$image: made from Debian bookworm ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
