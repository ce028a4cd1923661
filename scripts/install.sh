#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian machine: system packages, a running
# Docker engine, the venv with the project, and the local test image.
# No registry (Docker Hub, public IPFS) is reachable here, so images are
# built locally from Debian's busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="$PWD/.state"
mkdir -p "$STATE"

APT_PACKAGES=(docker.io busybox-static gcc libgmp-dev clang lld wasi-libc libclang-rt-dev-wasm32 iproute2)
PYTHON=${PYTHON:-python3}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install: these Debian packages are missing: ${missing[*]}" >&2
    echo "install: run as root on Debian/Ubuntu, or install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "install: apt-get install ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

# Docker engine: use one that answers; otherwise start dockerd ourselves
# (no systemd on these machines).
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "install: no Docker engine answers and only root can start dockerd; start it (sudo dockerd &) and retry" >&2
    exit 1
  fi
  echo "install: starting dockerd (log: $STATE/dockerd.log)"
  nohup dockerd >"$STATE/dockerd.log" 2>&1 &
  echo $! >"$STATE/dockerd.pid"
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "install: dockerd did not start; see $STATE/dockerd.log" >&2; exit 1; }
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed"  # inside the venv: a venv made anew installs anew
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e ".[test,bench]"
  touch "$stamp"
fi
# Byte-compile the project, as pip does for a regular install (not for -e):
# with PYTHONDONTWRITEBYTECODE set, every CLI command compiled its modules
# again (about 25 ms). Only changed files are compiled.
.venv/bin/python -m compileall -q bacalhau_py

# Bacalhau's own Python SDK in a venv of its own (it pins its own
# dependencies): tests/integration/test_v1_sdk.py drives a node with it.
if [ ! -x .venv-sdk/bin/python ]; then
  "$PYTHON" -m venv .venv-sdk
fi
if ! .venv-sdk/bin/python -c 'import importlib.metadata as m; assert (m.version("bacalhau-sdk"), m.version("bacalhau-apiclient")) == ("1.4.2", "1.4.1")' 2>/dev/null; then
  .venv-sdk/bin/pip install -q --disable-pip-version-check bacalhau-sdk==1.4.2 bacalhau-apiclient==1.4.1
fi

# The busybox image: tagged `busybox:latest`, the name users write.
if ! docker image inspect busybox:latest >/dev/null 2>&1; then
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - busybox:latest >/dev/null
  rm -rf "$root"
  echo "install: built busybox:latest from busybox-static"
fi
echo "install: ready"
