#!/usr/bin/env bash
# Installs from Debian's packages what sentproxy's demo and tests need, only
# when missing.
#   deps.sh                  redis-server, redis-sentinel, redis-tools
#   deps.sh --tests          those, and prometheus (its server and promtool)
#   deps.sh CMD=PKG ...      just these: install PKG when CMD is missing
set -euo pipefail

wants=()
if [ $# -eq 0 ] || [ "$1" = "--tests" ]; then
  wants=(redis-server=redis-server redis-sentinel=redis-sentinel redis-cli=redis-tools)
fi
if [ "${1:-}" = "--tests" ]; then
  wants+=(prometheus=prometheus)
  shift
fi
wants+=("$@")

need=()
for w in "${wants[@]}"; do
  command -v "${w%%=*}" >/dev/null 2>&1 || need+=("${w#*=}")
done
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "deps: need root or sudo to install: ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Where an init system runs, Debian's packages start system-wide services
# (redis-server on 6379, prometheus on 9090); the demo and the tests start
# their own processes on free ports and never touch those.
$sudo apt-get install -y -qq "${need[@]}" >/dev/null
