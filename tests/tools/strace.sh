#!/usr/bin/env bash
# Debian's strace for the tests that put a failing disk's errors into a real
# server's system calls (tests/integration/test_store_faults.py), installed
# when missing. Prints the executable's path.
#   usage: tests/tools/strace.sh
# Exit 2: it is missing and cannot be installed here (no apt-get, or not root).
set -euo pipefail
bash "$(dirname "$0")/debian-packages.sh" strace 'command -v strace' strace
command -v strace
