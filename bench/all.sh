#!/usr/bin/env bash
# Regenerates every section of bench/RESULTS.md and the pictures in
# bench/img, one benchmark after the other (never side by side: they share
# the machine's cores, and each one's ratios are taken inside its own run):
#   1. bench/run.sh      throughput and latency: direct, sentproxy tcp/resp, HAProxy
#   2. bench/drill       failover drill: four faults, four contenders, timelines
#   3. bench/propagation no proxy: when a majority of the Sentinels knows the new master
#   4. bench/scale       client count and pipeline depth, idle memory, cutover of open connections
#   5. bench/latency     added latency at a fixed moderate request rate (open loop)
# bench/failover.sh's section is kept as it is (it is added by hand).
# Usage: bash bench/all.sh   (about 45 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash bench/run.sh
go run ./bench/drill
go run ./bench/propagation
go run ./bench/scale
go run ./bench/latency
