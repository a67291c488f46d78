# Convenience targets; the scripts they call are the source of truth and
# work without make.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X github.com/prometheus/common/version.Version=$(VERSION) \
            -X github.com/prometheus/common/version.Revision=$(REVISION)

.PHONY: build test demo bench drill failover-bench vet lint check-observability package check-packaging

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/sentproxy ./cmd/sentproxy

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

vet:
	go vet ./...

lint:
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

check-observability:
	bash scripts/check-observability.sh

bench:
	bash bench/run.sh

drill:
	go run ./bench/drill

failover-bench:
	bash bench/failover.sh 5

package:
	bash scripts/package-deb.sh

check-packaging:
	bash scripts/check-packaging.sh
