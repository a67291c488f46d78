#!/usr/bin/env bash
# The CI check of how sentproxy is shipped: the Debian package, the systemd
# unit, the container image's Dockerfile and .dockerignore, the failover lab
# (docker-compose.yml and deploy/compose, deploy/grafana/provisioning) and
# the Kubernetes manifests (deploy/kubernetes). Run from anywhere:
#
#   bash scripts/check-packaging.sh
#
# Installs what it needs when missing, from Debian's packages (systemd for
# systemd-analyze, prometheus for promtool, shellcheck), with sudo when not
# root. No container engine is needed: where `docker build` or `docker
# compose up` would run, the same parsers and the same commands run here
# (see deploy/check, a Go program in a module of its own):
#   - the Dockerfile goes through BuildKit's frontend and linter (the rules
#     of `docker build --check`); its build stage's `go build` runs in a copy
#     of the build context that .dockerignore leaves; the binary must be
#     static, report the build args, start with the image's ENTRYPOINT, CMD,
#     ENV and USER, and pass and fail its HEALTHCHECK as it should;
#   - docker-compose.yml is loaded by compose-go, the loader of docker
#     compose (schema, interpolation, depends_on), plus `docker compose
#     config` where the plugin exists; its Sentinel template, Prometheus
#     configuration (promtool) and Grafana provisioning are checked against
#     it, and sentproxy's compose command runs against the binary; where
#     redis-server and redis-sentinel exist (scripts/deps.sh installs them),
#     the lab runs in miniature on loopback ports: redis-1 and redis-2 on
#     their compose commands, a Sentinel on the template, and sentproxy as
#     compose starts it, which must route to the master announced by name;
#   - the Kubernetes manifests decode strictly into the Kubernetes and
#     Prometheus-operator API types; the sidecar runs with its env and user,
#     and its probes' and scrape's paths are fetched on its web port;
#   - the .deb is built by scripts/package-deb.sh and inspected with
#     dpkg-deb, unpacked with dpkg -x, its binary run and its maintainer
#     scripts run (with systemctl stubbed), its unit verified by
#     systemd-analyze, and /etc/default/sentproxy compared with `sentproxy
#     run --help`.
# Every process it starts listens on loopback ports only and is stopped
# before it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

step() { echo "== $*"; }
die() { echo "check-packaging: FAIL: $*" >&2; exit 1; }

main() {
  # ---- tools -------------------------------------------------------------
  need=()
  command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
  if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${need[*]}"
      sudo="sudo"
    fi
    echo "check-packaging: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # systemd is installed for systemd-analyze only: in a container it does
    # not become the init system. Debian's prometheus package ships promtool
    # (where an init system runs it also starts a Prometheus on :9090, which
    # nothing here uses).
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi

  goarch="$(go env GOARCH)"
  case "$goarch" in
    amd64) deb_arch=amd64 ;;
    arm64) deb_arch=arm64 ;;
    *) deb_arch="$goarch" ;;
  esac

  # ---- shell scripts -----------------------------------------------------
  step "shell scripts"
  for f in scripts/package-deb.sh scripts/check-packaging.sh; do
    bash -n "$f"
  done
  for f in deploy/debian/postinstall.sh deploy/debian/preremove.sh deploy/debian/postremove.sh; do
    sh -n "$f"
    [ -x "$f" ] || die "$f is not executable"
  done
  shellcheck scripts/package-deb.sh scripts/check-packaging.sh \
    deploy/debian/postinstall.sh deploy/debian/preremove.sh deploy/debian/postremove.sh
  echo "  ok: bash -n / sh -n and shellcheck"

  # ---- the Go checker: deploy/check, a module of its own -----------------
  # Its own module keeps the compose, BuildKit and Kubernetes libraries out
  # of sentproxy's go.mod. The first build on a fresh machine downloads and
  # compiles them (minutes); later ones come from the build cache.
  step "building the checker (deploy/check)"
  (
    cd deploy/check
    export GOWORK=off
    go vet .
    go build -o "$tmp/checkpkg" .
  )
  checkpkg="$tmp/checkpkg"
  echo "  ok: built and vetted"

  # ---- Debian package ----------------------------------------------------
  step "Debian package (scripts/package-deb.sh)"
  version="1.2.3-check.1"
  deb_version="1.2.3~check.1"
  revision="checkrev"
  # Into a directory of its own: dist/ keeps only packages someone made.
  deb="$(DIST_DIR="$tmp/dist" VERSION="$version" REVISION="$revision" bash scripts/package-deb.sh 2>"$tmp/package.log" | tail -n1)" \
    || { cat "$tmp/package.log" >&2; die "scripts/package-deb.sh failed"; }
  want="$tmp/dist/sentproxy_${deb_version}_${deb_arch}.deb"
  [ "$deb" = "$want" ] || die "package-deb.sh made '$deb', want $want"
  [ -f "$deb" ] || die "$deb does not exist"
  echo "  ok: ${deb#"$tmp/dist/"}"

  contents="$(dpkg-deb -c "$deb")"
  has() { # mode owner path
    grep -Eq "^$1 $2 +[0-9]+ [0-9-]+ [0-9:]+ \./$3\$" <<<"$contents" || die "$deb: no $3 with mode $1, owner $2"
  }
  has '-rwxr-xr-x' 'root/root' 'usr/bin/sentproxy'
  has '-rw-r--r--' 'root/root' 'lib/systemd/system/sentproxy.service'
  has '-rw-------' 'root/root' 'etc/default/sentproxy'
  echo "  ok: dpkg-deb -c: /usr/bin/sentproxy (0755), /lib/systemd/system/sentproxy.service (0644), /etc/default/sentproxy (0600)"

  info="$(dpkg-deb -I "$deb")"
  dpkg-deb -e "$deb" "$tmp/control"
  field() { dpkg-deb -f "$deb" "$1"; }
  [ "$(field Package)" = sentproxy ] || die "Package: $(field Package)"
  [ "$(field Version)" = "$deb_version" ] || die "Version: $(field Version), want $deb_version"
  [ "$(field Architecture)" = "$deb_arch" ] || die "Architecture: $(field Architecture), want $deb_arch"
  if [ -z "$(field Maintainer)" ] || [ -z "$(field Description)" ]; then die "no Maintainer or Description"; fi
  for s in postinst prerm postrm conffiles; do
    grep -q " $s" <<<"$info" || die "dpkg-deb -I: no $s"
  done
  grep -qx /etc/default/sentproxy "$tmp/control/conffiles" || die "/etc/default/sentproxy is not a conffile"
  echo "  ok: dpkg-deb -I: Package sentproxy, Version $deb_version, Architecture $deb_arch; /etc/default/sentproxy is a conffile; postinst, prerm, postrm"

  root="$tmp/root"
  dpkg -x "$deb" "$root"
  cmp -s "$root/lib/systemd/system/sentproxy.service" deploy/systemd/sentproxy.service || die "packaged unit differs from deploy/systemd/sentproxy.service"
  cmp -s "$root/etc/default/sentproxy" deploy/debian/sentproxy.default || die "packaged default file differs from deploy/debian/sentproxy.default"
  bin="$root/usr/bin/sentproxy"
  out="$("$bin" version)"
  case "$out" in
    "sentproxy $version (revision $revision, go"*) ;;
    *) die "packaged sentproxy version: '$out'" ;;
  esac
  ldd_out="$(ldd "$bin" 2>&1 || true)"
  grep -q "not a dynamic executable" <<<"$ldd_out" || die "packaged binary is not static: $ldd_out"
  echo "  ok: dpkg -x: $out, static"

  # Maintainer scripts, with a systemctl that only records its calls: they
  # must succeed whether or not systemd runs here, and touch nothing else.
  mkdir -p "$tmp/stub"
  printf '#!/bin/sh\necho "systemctl $*" >>"%s/systemctl.log"\n' "$tmp" >"$tmp/stub/systemctl"
  chmod +x "$tmp/stub/systemctl"
  maint() { PATH="$tmp/stub:$PATH" sh "$tmp/control/$1" "${@:2}" >/dev/null || die "$* failed"; }
  maint postinst configure ""   # first install
  maint postinst configure 1.0.0 # upgrade
  maint prerm upgrade 1.2.4
  maint prerm remove
  maint postrm remove
  maint postrm purge
  if [ -d /run/systemd/system ]; then
    echo "  ok: postinst, prerm, postrm succeed; with systemd running they call: $(sort -u "$tmp/systemctl.log" | tr '\n' ';')"
  else
    [ ! -e "$tmp/systemctl.log" ] || die "maintainer scripts call systemctl where systemd does not run: $(cat "$tmp/systemctl.log")"
    echo "  ok: postinst, prerm, postrm succeed and leave systemctl alone (no systemd running here)"
  fi

  # ---- systemd unit ------------------------------------------------------
  step "systemd unit (deploy/systemd/sentproxy.service)"
  unit=deploy/systemd/sentproxy.service
  for d in DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
    PrivateDevices=yes ProtectKernelTunables=yes ProtectKernelModules=yes ProtectKernelLogs=yes \
    ProtectControlGroups=yes "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" RestrictNamespaces=yes \
    LockPersonality=yes MemoryDenyWriteExecute=yes SystemCallArchitectures=native CapabilityBoundingSet= \
    Restart=on-failure RestartSec=1s EnvironmentFile=-/etc/default/sentproxy \
    "ExecStart=/usr/bin/sentproxy run" LimitNOFILE=65536; do
    grep -qxF "$d" "$unit" || die "$unit lacks $d"
  done
  stop="$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$unit")"
  drain="$("$bin" run --help | sed -n 's/.*--proxy\.drain-timeout=\([0-9]*\)s.*/\1/p')"
  if [ -z "$stop" ] || [ -z "$drain" ] || [ "$stop" -le "$drain" ]; then
    die "TimeoutStopSec=${stop:-?}s is not above the drain timeout ${drain:-?}s"
  fi
  echo "  ok: hardening and service settings present; TimeoutStopSec ${stop}s > drain timeout ${drain}s"
  # verify needs ExecStart to exist: a copy of the packaged unit that runs the
  # packaged binary.
  mkdir -p "$tmp/unit"
  sed "s|^ExecStart=/usr/bin/sentproxy|ExecStart=$bin|" "$root/lib/systemd/system/sentproxy.service" >"$tmp/unit/sentproxy.service"
  verify="$(cd "$tmp/unit" && systemd-analyze verify "$tmp/unit/sentproxy.service" 2>&1)" || die "systemd-analyze verify: $verify"
  [ -z "$verify" ] || die "systemd-analyze verify: $verify"
  echo "  ok: systemd-analyze verify: no complaint"
  analyze_help="$(systemd-analyze --help 2>&1 || true)"
  if grep -q -- --offline <<<"$analyze_help"; then
    exposure="$(systemd-analyze security --offline=true --threshold=20 "$tmp/unit/sentproxy.service" 2>&1)" \
      || die "systemd-analyze security: exposure above 2.0: $(tail -n1 <<<"$exposure")"
    echo "  ok: systemd-analyze security: $(tail -n1 <<<"$exposure" | sed 's/^→ //')"
  fi

  step "settings file (deploy/debian/sentproxy.default)"
  "$checkpkg" defaults "$repo" "$bin"

  # ---- container image ---------------------------------------------------
  step "Dockerfile and .dockerignore"
  df=Dockerfile
  [ "$(grep -c '^FROM ' "$df")" -ge 2 ] || die "$df: not multi-stage"
  grep -q 'CGO_ENABLED=0' "$df" || die "$df: no CGO_ENABLED=0"
  grep -Eq '^USER [1-9][0-9]*(:[0-9]+)?$' "$df" || die "$df: no numeric non-root USER"
  grep -Eq '^EXPOSE( .*)? 6379( |$)' "$df" || die "$df: no EXPOSE 6379"
  grep -Eq '^EXPOSE( .*)? 9736( |$)' "$df" || die "$df: no EXPOSE 9736"
  grep -q '^HEALTHCHECK ' "$df" || die "$df: no HEALTHCHECK"
  echo "  ok: multi-stage, CGO_ENABLED=0, numeric non-root USER, EXPOSE 6379 9736, HEALTHCHECK"
  "$checkpkg" dockerfile "$repo" "$tmp/image-sentproxy"
  image_bin="$tmp/image-sentproxy"

  # ---- failover lab ------------------------------------------------------
  step "failover lab (docker-compose.yml)"
  compose_ok=true
  CHECKPKG_OUT="$tmp" "$checkpkg" compose "$repo" "$image_bin" >"$tmp/compose.log" || compose_ok=false
  grep -v '^PROMTOOL_CONFIG=' "$tmp/compose.log"
  $compose_ok || exit 1
  promcfg="$(sed -n 's/^PROMTOOL_CONFIG=//p' "$tmp/compose.log")"
  promtool check config "$promcfg" >"$tmp/promtool.log" 2>&1 || { cat "$tmp/promtool.log"; die "promtool check config deploy/compose/prometheus.yml"; }
  echo "  ok: promtool check config: deploy/compose/prometheus.yml with its rule file as mounted"
  if docker compose version >/dev/null 2>&1; then
    docker compose -f docker-compose.yml config -q || die "docker compose config"
    echo "  ok: docker compose config"
  else
    echo "  note: no docker compose plugin here; compose-go (its loader) checked the file"
  fi

  step "failover lab in miniature (deploy/compose/sentinel.conf with the local redis-server and redis-sentinel)"
  "$checkpkg" lab "$repo" "$image_bin"

  # ---- Kubernetes --------------------------------------------------------
  step "Kubernetes (deploy/kubernetes)"
  "$checkpkg" kube "$repo" "$image_bin" deploy/kubernetes/sidecar.yaml deploy/kubernetes/podmonitor.yaml

  echo "packaging checks passed"
}

main "$@"
