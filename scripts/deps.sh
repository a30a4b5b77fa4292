#!/usr/bin/env bash
# Install what Vigie needs from Debian 12's packages, only what is missing.
# Run as root on a fresh machine; safe to rerun.
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang clang-format
  mosquitto mosquitto-clients libmosquitto-dev
  libuv1-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  libsqlite3-dev sqlite3 libyaml-dev libsodium-dev libssl-dev libcmocka-dev
  python3 python3-paho-mqtt python3-protobuf python3-yaml
  procps iproute2 chromium docker-compose
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The dashboard's packages, pinned by dashboard/package-lock.json. Node 20
# comes with the machine (Debian's nodejs is 18, too old for Vite 7).
if ! command -v npm >/dev/null 2>&1; then
  echo "deps: npm (Node.js >= 20) is needed for the dashboard" >&2
  exit 1
fi
here=$(cd "$(dirname "$0")/.." && pwd)
lock=$here/dashboard/package-lock.json
stamp=$here/dashboard/node_modules/.vigie-lock
if [ ! -f "$stamp" ] || ! cmp -s "$lock" "$stamp"; then
  echo "deps: npm ci in dashboard/" >&2
  (cd "$here/dashboard" && npm ci --no-audit --no-fund >/dev/null)
  cp "$lock" "$stamp"
fi
