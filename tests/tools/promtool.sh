#!/usr/bin/env bash
# Debian's promtool (package prometheus) for the tests of the alerting rules and
# of /metrics, installed when missing. Prints the executable's path.
#   usage: tests/tools/promtool.sh
# Exit 2: it is missing and cannot be installed here (no apt-get, or not root).
set -euo pipefail
bash "$(dirname "$0")/debian-packages.sh" promtool 'command -v promtool' prometheus
command -v promtool
