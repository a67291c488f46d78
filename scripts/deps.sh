#!/usr/bin/env bash
# Installs what sentproxy's demo and tests need from Debian's packages, only
# when missing: redis-server, redis-sentinel and redis-tools; with --tests,
# also prometheus (its server and promtool, for the alert-rule tests and the
# end-to-end scrape test).
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ "${1:-}" = "--tests" ]; then
  command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "deps: need root or sudo to install: ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${need[@]}" >/dev/null
# Debian's packages start system-wide services where an init system runs;
# the demo and tests start their own processes on free ports and never
# touch those.
