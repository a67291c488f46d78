#!/bin/sh
# postinst of the sentproxy package. Safe where systemd is not running
# (containers, chroots, image builds): then it does nothing but print.
set -e

if [ "$1" = "configure" ]; then
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || true
    # An upgrade: move a running service onto the new binary.
    if [ -n "$2" ]; then
      systemctl try-restart sentproxy.service || true
    fi
  fi
  if [ -z "$2" ]; then
    echo "sentproxy: set SENTPROXY_SENTINEL_ADDRS in /etc/default/sentproxy, then: systemctl enable --now sentproxy"
  fi
fi
exit 0
