#!/usr/bin/env bash
# Debian's jemalloc (package libjemalloc2), which `trioscope serve` preloads
# by default when it finds it (server.allocator), for the tests that start a server on it;
# installed when missing. Prints the library's path.
#   usage: tests/tools/jemalloc.sh
# Exit 2: it is missing and cannot be installed here (no apt-get, or not root).
set -euo pipefail
log() { echo "jemalloc: $*" >&2; }
library=$(ls /usr/lib/*/libjemalloc.so.2 /usr/lib64/libjemalloc.so.2 2>/dev/null | head -1 || true)

if [ -z "$library" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "libjemalloc.so.2 is not installed and this script can only install it (Debian package libjemalloc2) as root with apt-get"
    exit 2
  fi
  log "installing Debian's libjemalloc2 (once per machine)"
  logfile=/tmp/trioscope-jemalloc-install.log
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libjemalloc2) >"$logfile" 2>&1; then
    tail -20 "$logfile" >&2
    log "installing libjemalloc2 failed; the whole log is in $logfile"
    exit 1
  fi
  library=$(ls /usr/lib/*/libjemalloc.so.2 /usr/lib64/libjemalloc.so.2 2>/dev/null | head -1 || true)
fi
echo "$library"
