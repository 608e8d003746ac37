#!/usr/bin/env bash
# Installs the Debian packages the tests need, when missing: chromium (browser
# tests), spamassassin (the spam score of a demo message, local rules only),
# systemd (systemd-analyze verify checks the units in cron/), nginx and caddy
# (the reverse-proxy examples in cron/ run in front of serve). PostgreSQL is
# expected at 127.0.0.1:5432; in CI it is started if down.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v spamassassin >/dev/null 2>&1 || need+=(spamassassin)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
{ command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null 2>&1 || need+=(nginx)
command -v caddy >/dev/null 2>&1 || need+=(caddy)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "system-deps: please install: ${need[*]}" >&2
  fi
fi
if [ "${CI:-}" = "true" ] && command -v pg_isready >/dev/null 2>&1; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
fi
