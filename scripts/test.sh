#!/usr/bin/env bash
# The test command: installs the Redis packages when missing, checks the
# package boundaries, vets, and runs every test with the race detector
# against real redis-server and redis-sentinel processes.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh --tests

# Data flows one way: discovery -> proxy, metrics observes both. proxy and
# discovery must not import each other, metrics, or prometheus; proxy must
# not pull in go-redis.
deps_of() { go list -deps "$1" | grep -E 'sentproxy/(proxy|discovery|metrics)$|prometheus|go-redis' | grep -v "^github.com/sentproxy/sentproxy/${1#./}$" || true; }
bad=$(deps_of ./proxy)
[ -z "$bad" ] || { echo "proxy imports what it must not:"; echo "$bad"; exit 1; }
bad=$(deps_of ./discovery | grep -v go-redis || true)
[ -z "$bad" ] || { echo "discovery imports what it must not:"; echo "$bad"; exit 1; }
bad=$(go list -deps ./metrics | grep -E 'sentproxy/(proxy|discovery|notify)$' || true)
[ -z "$bad" ] || { echo "metrics imports what it must not:"; echo "$bad"; exit 1; }
# notify uses the standard library only.
bad=$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' ./notify | grep -v '^github.com/sentproxy/sentproxy/notify$' || true)
[ -z "$bad" ] || { echo "notify imports beyond the standard library:"; echo "$bad"; exit 1; }

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
[ -z "$unformatted" ] || { echo "gofmt would change: $unformatted"; exit 1; }
go vet ./...
# staticcheck, pinned, from the Go module proxy (cached after the first run).
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
bash scripts/check-observability.sh
go test -race -count=1 -timeout 12m "$@" ./...
# The same proxy tests, and the tcp-mode failovers with real Sentinels, on
# the splice engine (--proxy.engine=splice: io.Copy between the sockets),
# which is the default off Linux and the choice on it. Skipped when
# arguments narrow the run above. (Off Linux the run above is on splice
# already.)
if [ $# -eq 0 ] && [ "$(uname -s)" = Linux ]; then
  SENTPROXY_PROXY_ENGINE=splice go test -race -count=1 -timeout 8m ./proxy
  SENTPROXY_PROXY_ENGINE=splice go test -race -count=1 -timeout 8m \
    -run 'TestFailoverBy|TestFailoverWithOneSentinelDown|TestAllSentinelsDown|TestTwoRoutesUnderOneSentinelSet' ./cmd/sentproxy
  # The epoll engine's tests with one P, where no loop may hold and every
  # loop parks on the netpoller (the run above holds where it has 2 CPUs).
  GOMAXPROCS=1 go test -race -count=1 -timeout 5m -run 'TestEpollEngine' ./proxy
fi
