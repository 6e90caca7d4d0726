#!/usr/bin/env bash
# Debian's Chromium for the browser tests and benchmarks, installed when missing.
# Prints the executable's path. Playwright drives it; it never downloads a browser.
#   usage: tests/tools/chromium.sh
set -euo pipefail
bash "$(dirname "$0")/debian-packages.sh" chromium 'command -v chromium' chromium fonts-dejavu-core
command -v chromium
