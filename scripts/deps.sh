#!/usr/bin/env bash
# Installs the Debian packages thaw needs to build, run and test. Idempotent:
# when everything is present it only asks dpkg and returns at once.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang
  libevent-dev libssl-dev libjansson-dev libyaml-dev libsqlite3-dev
  libhiredis-dev libsodium-dev libseccomp-dev libcurl4-openssl-dev
  libopenblas-dev
  redis-server curl wrk openssl
)

# The engine's NEON kernels are cross-built and run under qemu-user by the
# engine_aarch64 test (tests/cross) on x86-64 hosts.
if [ "$(dpkg --print-architecture)" = amd64 ]; then
  PKGS+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
fi

# Real-client tests drive thaw with official client libraries from npm.
if ! command -v npm >/dev/null 2>&1; then PKGS+=(nodejs npm); fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The npm packages are pinned by tests/clients/package-lock.json.
clients="$(dirname "$0")/../tests/clients"
if [ ! -d "$clients/node_modules" ] || [ "$clients/package-lock.json" -nt "$clients/node_modules" ]; then
  echo "deps: npm ci in tests/clients" >&2
  (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$clients/node_modules"
fi
