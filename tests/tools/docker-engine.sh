#!/usr/bin/env bash
# Starts a real Docker-API-compatible engine (Podman) on a unix socket, for tests of the
# probe's Docker collectors and container controls. Idempotent: safe to run many times.
#   usage: tests/tools/docker-engine.sh [SOCKET]     (default /tmp/trioscope-podman.sock)
#          Leaves the engine running in the background and prints the DOCKER_HOST value
#          to use, e.g. unix:///tmp/trioscope-podman.sock (for trying things by hand).
#   usage: tests/tools/docker-engine.sh --exec SOCKET
#          Becomes the engine (exec), in the foreground: the caller owns its process and
#          ends it (tests/engine.py, for tests and benchmarks).
# Either way installs what is missing and imports a tiny busybox image as
# localhost/busybox:latest (no registry needed).
set -euo pipefail
EXEC=false
if [ "${1:-}" = "--exec" ]; then
  EXEC=true
  shift
  [ -n "${1:-}" ] || { echo "docker-engine: --exec needs a socket path" >&2; exit 64; }
fi
SOCK="${1:-/tmp/trioscope-podman.sock}"
log() { echo "docker-engine: $*" >&2; }

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! [ -x /bin/busybox ]; then
  # Exit 2, and only here: Podman cannot be installed on this machine (the
  # tests that need it skip, saying so); any other failure is a failure.
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "podman, runc or busybox-static missing, and not installable here (needs root and apt-get)"
    exit 2
  fi
  log "installing podman, runc, busybox-static"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc busybox-static) >&2
fi

# crun fails here (hybrid cgroups); rlimits cannot be raised (no CAP_SYS_RESOURCE).
mkdir -p /etc/containers
# exit_command_delay: an exec session's conmon otherwise lingers 5 minutes after the
# exec (and its container) is gone.
if ! grep -q 'trioscope, 2' /etc/containers/containers.conf 2>/dev/null; then
  cat > /etc/containers/containers.conf <<'CONF'
# written by trioscope, 2: tests/tools/docker-engine.sh
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
exit_command_delay = 5
CONF
fi

if ! podman image exists localhost/busybox:latest; then
  log "importing busybox image"
  tmp="$(mktemp -d)"
  mkdir -p "$tmp/root/bin" "$tmp/root/tmp" "$tmp/root/proc" "$tmp/root/sys" "$tmp/root/dev" "$tmp/root/etc"
  cp /bin/busybox "$tmp/root/bin/busybox"
  for c in sh ls cat echo sleep top ps wget nc httpd true false env id hostname; do ln -sf busybox "$tmp/root/bin/$c"; done
  echo "root:x:0:0:root:/root:/bin/sh" > "$tmp/root/etc/passwd"
  tar -C "$tmp/root" -cf "$tmp/rootfs.tar" .
  podman import --change 'CMD ["/bin/sh"]' "$tmp/rootfs.tar" localhost/busybox:latest >/dev/null
  rm -rf "$tmp"
fi

if $EXEC; then
  rm -f "$SOCK"
  exec podman system service --time=0 "unix://$SOCK"
fi

if ! curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; then
  rm -f "$SOCK"
  log "starting podman system service on $SOCK"
  nohup podman system service --time=0 "unix://$SOCK" >/tmp/trioscope-podman.log 2>&1 &
  for _ in $(seq 1 50); do
    curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1 && break
    sleep 0.2
  done
fi
curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null || { log "engine did not start; see /tmp/trioscope-podman.log"; exit 1; }
echo "unix://$SOCK"
