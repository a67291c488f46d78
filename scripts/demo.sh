#!/usr/bin/env bash
# The demo: installs the Redis packages when missing, then runs a local
# failover through sentproxy on loopback ports and cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
exec go run ./cmd/sentproxy demo --log.level=warn "$@"
