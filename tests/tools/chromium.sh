#!/usr/bin/env bash
# Debian's Chromium for the browser tests and benchmarks, installed when missing.
# Prints the executable's path. Playwright drives it; it never downloads a browser.
#   usage: tests/tools/chromium.sh
set -euo pipefail
log() { echo "chromium: $*" >&2; }

if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "chromium is not installed and this script can only install it as root with apt-get"
    exit 1
  fi
  log "installing Debian's chromium (once per machine)"
  logfile=/tmp/trioscope-chromium-install.log
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium fonts-dejavu-core) >"$logfile" 2>&1; then
    tail -20 "$logfile" >&2
    log "installing chromium failed; the whole log is in $logfile"
    exit 1
  fi
fi
command -v chromium
