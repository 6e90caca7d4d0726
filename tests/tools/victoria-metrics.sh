#!/usr/bin/env bash
# Debian's VictoriaMetrics (package victoria-metrics) for the tests of the metrics
# API's --metrics-url backend, installed when missing. Prints the executable's path.
#   usage: tests/tools/victoria-metrics.sh
# Exit 2: it is missing and cannot be installed here (no apt-get, or not root).
set -euo pipefail
log() { echo "victoria-metrics: $*" >&2; }

if ! command -v victoria-metrics >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "victoria-metrics is not installed and this script can only install it (Debian package victoria-metrics) as root with apt-get"
    exit 2
  fi
  log "installing Debian's victoria-metrics (once per machine)"
  logfile=/tmp/trioscope-victoria-metrics-install.log
  # Waits for a dpkg lock held by another install (the promtool fixture's) instead of failing.
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 victoria-metrics) >"$logfile" 2>&1; then
    tail -20 "$logfile" >&2
    log "installing victoria-metrics failed; the whole log is in $logfile"
    exit 1
  fi
fi
command -v victoria-metrics
