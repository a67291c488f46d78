#!/usr/bin/env bash
# Builds the Debian package: dist/sentproxy_<version>_<arch>.deb, holding the
# static binary (/usr/bin/sentproxy), the systemd unit
# (/lib/systemd/system/sentproxy.service) and its settings
# (/etc/default/sentproxy, a conffile).
#
#   bash scripts/package-deb.sh                  # version from git describe
#   VERSION=1.2.3 bash scripts/package-deb.sh
#   VERSION=1.3.0-rc.1 ARCH=arm64 bash scripts/package-deb.sh
#
# VERSION is what `sentproxy version` prints (a leading v is dropped); the
# package version is the same with '-' turned into '~', so that a pre-release
# sorts before its release as in semver. Without VERSION: the tag
# (v1.2.3 -> 1.2.3), a count and commit after it (1.2.3+git.4.abc1234), or
# 0.0.0+git.<commits>.<commit> before any tag; "+dirty" marks local changes.
# Other variables: ARCH (a Go architecture, default: this machine's),
# REVISION (default: the commit), MAINTAINER ("Name <email>"),
# SOURCE_DATE_EPOCH (file times in the package; default: the commit's time,
# so that the same commit packs to the same bytes), DIST_DIR (where the
# package goes, default: dist).
# Prints the package's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

# nfpm runs from the module cache: pinned, nothing to install. Releases after
# v2.45.0 import modules that the Go module proxy reachable here refuses.
NFPM_VERSION=v2.45.0

ARCH="${ARCH:-$(go env GOARCH)}"
case "$ARCH" in
  amd64) DEB_ARCH=amd64 ;;
  arm64) DEB_ARCH=arm64 ;;
  386) DEB_ARCH=i386 ;;
  ppc64le) DEB_ARCH=ppc64el ;;
  s390x) DEB_ARCH=s390x ;;
  riscv64) DEB_ARCH=riscv64 ;;
  *) echo "package-deb: ARCH=$ARCH: want a Go architecture among amd64 arm64 386 ppc64le s390x riscv64" >&2; exit 2 ;;
esac

in_git=false
if git rev-parse --git-dir >/dev/null 2>&1; then in_git=true; fi

if [ -z "${REVISION:-}" ]; then
  REVISION=unknown
  if $in_git; then REVISION="$(git rev-parse --short HEAD)"; fi
fi

if [ -z "${VERSION:-}" ]; then
  dirty=""
  if $in_git && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    dirty="+dirty"
  fi
  desc=""
  if $in_git; then desc="$(git describe --tags --match 'v[0-9]*' --long 2>/dev/null || true)"; fi
  if [[ "$desc" =~ ^v([0-9][0-9A-Za-z.+~-]*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
    base="${BASH_REMATCH[1]}" count="${BASH_REMATCH[2]}" sha="${BASH_REMATCH[3]}"
    if [ "$count" = 0 ]; then
      VERSION="$base"
    else
      VERSION="$base+git.$count.$sha"
    fi
  elif $in_git; then
    VERSION="0.0.0+git.$(git rev-list --count HEAD).$(git rev-parse --short HEAD)"
  else
    VERSION="0.0.0"
  fi
  if [ -n "$dirty" ]; then
    case "$VERSION" in
      *+*) VERSION="$VERSION.dirty" ;;
      *) VERSION="$VERSION$dirty" ;;
    esac
  fi
fi
VERSION="${VERSION#v}"
DEB_VERSION="${VERSION//-/\~}"
if ! [[ "$DEB_VERSION" =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
  echo "package-deb: VERSION=$VERSION does not make a Debian version (want a digit first, then letters, digits and . + ~ -)" >&2
  exit 2
fi

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  if $in_git; then
    SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)"
  else
    SOURCE_DATE_EPOCH="$(date +%s)"
  fi
fi
export SOURCE_DATE_EPOCH

MAINTAINER="${MAINTAINER:-sentproxy developers <sentproxy@localhost>}"

DIST_DIR="${DIST_DIR:-dist}"
DIST_DIR="${DIST_DIR%/}"
build_dir="$DIST_DIR/build/linux-$ARCH"
mkdir -p "$build_dir"
echo "package-deb: building sentproxy $VERSION ($REVISION) for linux/$ARCH" >&2
CGO_ENABLED=0 GOOS=linux GOARCH="$ARCH" go build -trimpath \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$VERSION -X github.com/prometheus/common/version.Revision=$REVISION" \
  -o "$build_dir/sentproxy" ./cmd/sentproxy

deb="$DIST_DIR/sentproxy_${DEB_VERSION}_${DEB_ARCH}.deb"
rm -f "$deb"
echo "package-deb: packing $deb with nfpm $NFPM_VERSION" >&2
ARCH="$ARCH" VERSION="$DEB_VERSION" BINARY="$build_dir/sentproxy" MAINTAINER="$MAINTAINER" \
  go run "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION" \
  pkg --packager deb --config deploy/debian/nfpm.yaml --target "$DIST_DIR/" >&2
[ -f "$deb" ] || { echo "package-deb: nfpm did not write $deb" >&2; ls -l "$DIST_DIR" >&2; exit 1; }
echo "$deb"
