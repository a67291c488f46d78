#!/bin/sh
# postrm of the sentproxy package: forget the removed unit. Safe where
# systemd is not running.
set -e

case "$1" in
  remove|purge)
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
      systemctl daemon-reload || true
    fi
    ;;
esac
exit 0
