#!/usr/bin/env bash
# Debian's mimalloc (package libmimalloc2.0), which `trioscope serve` preloads
# when it finds it (server.allocator), for the tests that start a server on it;
# installed when missing. Prints the library's path.
#   usage: tests/tools/mimalloc.sh
# Exit 2: it is missing and cannot be installed here (no apt-get, or not root).
set -euo pipefail
log() { echo "mimalloc: $*" >&2; }
library=$(ls /usr/lib/*/libmimalloc.so.2 /usr/lib64/libmimalloc.so.2 2>/dev/null | head -1 || true)

if [ -z "$library" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "libmimalloc.so.2 is not installed and this script can only install it (Debian package libmimalloc2.0) as root with apt-get"
    exit 2
  fi
  log "installing Debian's libmimalloc2.0 (once per machine)"
  logfile=/tmp/trioscope-mimalloc-install.log
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libmimalloc2.0) >"$logfile" 2>&1; then
    tail -20 "$logfile" >&2
    log "installing libmimalloc2.0 failed; the whole log is in $logfile"
    exit 1
  fi
  library=$(ls /usr/lib/*/libmimalloc.so.2 /usr/lib64/libmimalloc.so.2 2>/dev/null | head -1 || true)
fi
echo "$library"
