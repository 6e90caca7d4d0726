#!/usr/bin/env bash
# Debian's promtool (package prometheus) for the tests of the alerting rules and
# of /metrics, installed when missing. Prints the executable's path.
#   usage: tests/tools/promtool.sh
# Exit 2: it is missing and cannot be installed here (no apt-get, or not root).
set -euo pipefail
log() { echo "promtool: $*" >&2; }

if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "promtool is not installed and this script can only install it (Debian package prometheus) as root with apt-get"
    exit 2
  fi
  log "installing Debian's prometheus for promtool (once per machine)"
  logfile=/tmp/trioscope-promtool-install.log
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        prometheus) >"$logfile" 2>&1; then
    tail -20 "$logfile" >&2
    log "installing prometheus failed; the whole log is in $logfile"
    exit 1
  fi
fi
command -v promtool
