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
  procps iproute2
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

# The Debian package enables a system-wide mosquitto on port 1883; Vigie
# starts its own brokers, so a running system one would only be in the way
# of the demo's default ports. Leave it alone unless it is ours to stop.
exit 0
