#!/usr/bin/env bash
# Installs the Debian packages the test suite and bench start as throwaway servers.
# Idempotent: does nothing when every binary is already there. Needs root for apt-get.
set -euo pipefail

declare -A need=(
  [influxd]=influxdb
  [victoria-metrics]=victoria-metrics
  [redis-server]=redis-server
  [mosquitto_pub]=mosquitto-clients
  [mosquitto_sub]=mosquitto-clients
  [docker-compose]=docker-compose
  [openssl]=openssl
  [chromium]=chromium
  [mosquitto]=mosquitto
  [haproxy]=haproxy
)
missing=()
for bin in "${!need[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("${need[$bin]}")
done
# PostgreSQL's server binaries live outside PATH on Debian.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "install-services: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "install-services: need root to apt-get install ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts packaged services on install; the tests start their own throwaway ones.
for svc in influxdb victoria-metrics redis-server postgresql mosquitto haproxy; do
  (command -v systemctl >/dev/null && systemctl stop "$svc" >/dev/null 2>&1) || service "$svc" stop >/dev/null 2>&1 || true
done
