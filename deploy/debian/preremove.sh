#!/bin/sh
# prerm of the sentproxy package: stop and disable the service before its
# binary goes (not on upgrade: postinst restarts it then). Safe where systemd
# is not running.
set -e

if [ "$1" = "remove" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl stop sentproxy.service || true
  systemctl disable sentproxy.service || true
fi
exit 0
