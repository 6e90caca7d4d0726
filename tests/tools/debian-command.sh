#!/usr/bin/env bash
# A command from a Debian package for the tests (promtool from `prometheus`,
# victoria-metrics from `victoria-metrics`), installed with apt-get when missing.
# Prints the command's path; exits 1 saying why when it cannot be had.
#   usage: tests/tools/debian-command.sh COMMAND PACKAGE
set -euo pipefail
command_name=$1
package=$2
log() { echo "$package: $*" >&2; }

if ! command -v "$command_name" >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "$command_name is not installed and this script can only install it as root with apt-get"
    exit 1
  fi
  log "installing Debian's $package (once per machine)"
  logfile=/tmp/trioscope-$package-install.log
  # A lock held by another installer is waited for, not failed on.
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "$package") >"$logfile" 2>&1; then
    tail -20 "$logfile" >&2
    log "installing $package failed; the whole log is in $logfile"
    exit 1
  fi
fi
command -v "$command_name"
