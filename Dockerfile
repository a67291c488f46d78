# sentproxy container image: one static binary on an empty base, run as a
# non-root numeric user. Build (BuildKit, the default builder of current
# Docker releases):
#
#   docker build -t sentproxy \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg REVISION="$(git rev-parse --short HEAD)" .
#
# Run (the Sentinels are the only required setting; every flag has a
# SENTPROXY_* environment twin, see README.md):
#
#   docker run --rm -p 6379:6379 -p 9736:9736 sentproxy \
#     run --sentinel.addrs=sentinel-1:26379,sentinel-2:26379,sentinel-3:26379
#
# docker-compose.yml at the top of the repository builds this image into a
# complete failover lab. scripts/check-packaging.sh checks this file.

ARG GO_VERSION=1.26

# ---- build: a static, trimmed binary, cross-compiled for the target ----
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION}" \
      -o /out/sentproxy ./cmd/sentproxy

# ---- final: the binary and CA certificates, nothing else ----
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sentproxy" \
      org.opencontainers.image.description="Sidecar TCP proxy to the Redis master elected by Redis Sentinel" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/sentproxy /sentproxy
# CA certificates, for an https:// --notify.webhook.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# 65532 is the conventional "nonroot" user of minimal images. Numeric, so
# that runAsNonRoot can verify it without an /etc/passwd.
USER 65532:65532
# Inside a container the proxy and the endpoints must be reachable from
# other containers; outside one the defaults stay on loopback.
ENV SENTPROXY_PROXY_LISTEN_ADDRESS=0.0.0.0:6379 \
    SENTPROXY_WEB_LISTEN_ADDRESS=0.0.0.0:9736
# 6379: Redis clients. 9736: /metrics, /healthz, /readyz.
EXPOSE 6379 9736
# No shell in this image: the binary probes itself. `sentproxy healthcheck`
# GETs http://127.0.0.1:9736/readyz (2 s timeout) and exits 0 only on 200,
# so the container is healthy while every route has a verified master.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/sentproxy", "healthcheck"]
ENTRYPOINT ["/sentproxy"]
CMD ["run"]
