#!/usr/bin/env bash
# Installs Debian packages when a command they provide is missing, for the test tools
# (docker-engine.sh keeps its own: podman needs its recommended packages).
# Prints nothing on stdout; logs on stderr.
#   usage: tests/tools/debian-packages.sh NAME CHECK PACKAGE...
#          NAME names the caller in the log; CHECK is a shell test run first (e.g.
#          'command -v promtool'): when it succeeds nothing is installed.
# Exit 2: missing and cannot be installed here (no apt-get, or not root); 1: apt-get failed.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 NAME CHECK PACKAGE..." >&2; exit 64; }
name="$1" check="$2"
shift 2
log() { echo "$name: $*" >&2; }

if eval "$check" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  log "missing, and this script can only install it (Debian packages: $*) as root with apt-get"
  exit 2
fi
log "installing Debian's $* (once per machine)"
logfile="/tmp/trioscope-$name-install.log"
# Waits for the dpkg lock another fixture's install holds instead of failing.
if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=600 "$@") >"$logfile" 2>&1; then
  tail -20 "$logfile" >&2
  log "installing $* failed; the whole log is in $logfile"
  exit 1
fi
