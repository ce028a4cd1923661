#!/usr/bin/env bash
# Build the node image without any registry: a Debian base from debootstrap
# (Debian's own packages), imported with `docker import`, and the project's
# wheels built here and installed offline inside the image.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
if ! docker image inspect bacalhau-py-base:bookworm >/dev/null 2>&1; then
  root=$(mktemp -d)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root"
  tar -C "$root" -c . | docker import - bacalhau-py-base:bookworm
  rm -rf "$root"
fi
rm -rf .state/wheels && mkdir -p .state/wheels
.venv/bin/pip wheel -q -w .state/wheels .
docker build -t bacalhau-py:latest -f Dockerfile .
