#!/usr/bin/env bash
# Debian's VictoriaMetrics (package victoria-metrics) for the tests of the metrics
# API's --metrics-url backend, installed when missing. Prints the executable's path.
#   usage: tests/tools/victoria-metrics.sh
# Exit 2: it is missing and cannot be installed here (no apt-get, or not root).
set -euo pipefail
bash "$(dirname "$0")/debian-packages.sh" victoria-metrics 'command -v victoria-metrics' victoria-metrics
command -v victoria-metrics
