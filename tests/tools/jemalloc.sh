#!/usr/bin/env bash
# Debian's jemalloc (package libjemalloc2), which `trioscope serve` preloads
# by default when it finds it (server.allocator), for the tests that start a server on it;
# installed when missing. Prints the library's path.
#   usage: tests/tools/jemalloc.sh
# Exit 2: it is missing and cannot be installed here (no apt-get, or not root).
set -euo pipefail
find_library='for f in /usr/lib/*/libjemalloc.so.2 /usr/lib64/libjemalloc.so.2; do [ -e "$f" ] && echo "$f" && break; done | grep .'
bash "$(dirname "$0")/debian-packages.sh" jemalloc "$find_library" libjemalloc2
eval "$find_library"
