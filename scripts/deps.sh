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
  procps iproute2 nftables chromium docker-compose
  rabbitmq-server
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
  # Packages with a service (rabbitmq-server, its epmd, mosquitto) must not
  # start one: tests run their own brokers on free ports. invoke-rc.d asks
  # policy-rc.d; 101 means "not allowed". Ours only if there is none.
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# scripts/deps.sh: no service starts during the install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
  fi
  rc=0
  apt-get update -qq || rc=$?
  [ "$rc" != 0 ] || apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ -z "$own_policy" ] || rm -f "$policy"
  [ "$rc" = 0 ] || exit "$rc"
fi

# A RabbitMQ service left running (installed before, or started by systemd)
# would hold the default ports 4369 (epmd), 5672, 1883 and 25672: stop it and
# keep it from starting at boot. The tests start their own nodes from
# /usr/lib/rabbitmq/bin on free ports (tests/integration/test_rabbitmq.py).
if dpkg-query -W -f='${Status}' rabbitmq-server 2>/dev/null | grep -q "install ok installed"; then
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-enabled --quiet rabbitmq-server 2>/dev/null ||
       systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
      echo "deps: stopping and disabling the rabbitmq-server service" >&2
      systemctl disable --now rabbitmq-server epmd.socket epmd.service >/dev/null 2>&1 || true
    fi
  elif [ "$(id -u)" = 0 ] && pgrep -u rabbitmq -x beam.smp >/dev/null 2>&1; then
    echo "deps: stopping the rabbitmq-server service" >&2
    /etc/init.d/rabbitmq-server stop >/dev/null 2>&1 || true
  fi
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
