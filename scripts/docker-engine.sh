#!/usr/bin/env bash
# The project's own Docker engine: Debian's dockerd, started by hand as a process of ours, on its own socket and
# folders (its data under .tools/docker/), nothing of the machine's: no docker0 bridge, no iptables rules, no
# registry. dockerd writes its PID to .tools/docker/dockerd.pid. `make test-deps` starts it with the network to
# build the images; the test suite starts it again inside its loopback-only namespace, on the same data root, to
# run them (tests/docker/). Both stop it by its PID.
#
#   scripts/docker-engine.sh start     start it (an engine of ours still running from before is stopped first)
#   scripts/docker-engine.sh stop      stop it (SIGTERM, then SIGKILL after 30 s)
#   scripts/docker-engine.sh env       print the variables that point `docker` and `docker-compose` at it
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$ROOT/.tools/docker"
PIDFILE="$DIR/dockerd.pid"
LOG="$DIR/dockerd.log"
# The engine's run-time state and socket, one folder per checkout: under /run, because the sockets in it must
# have short paths (108 bytes at most), whatever the checkout's.
RUN="/run/signaling-docker-$(printf %s "$ROOT" | sha256sum | cut -c1-12)"
SOCK="$RUN/engine.sock"
# The engine's own client (docker.io), not another docker on PATH: same version, and its `docker build` is the
# classic builder by default (no buildx here).
CLIENT=/usr/bin/docker

env_lines() {
  echo "DOCKER_HOST=unix://$SOCK"
  echo "DOCKER_CONFIG=$DIR/client"  # our own client config: nothing of the machine's docker login
  echo "DOCKER_BUILDKIT=0"
  echo "DOCKER_CLIENT=$CLIENT"
}

running_pid() {
  # The PID of our engine when it is alive: the one recorded, and only if it is dockerd on our data root.
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid="$(cat "$PIDFILE")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "dockerd .*--data-root $DIR/data" || return 1
  echo "$pid"
}

unmount_leftovers() {
  # What a stopped engine leaves mounted under its folders (its network namespace handle): `rm -rf .tools` works.
  local target
  { awk '{print $2}' /proc/self/mounts | grep -e "^$DIR/" -e "^$RUN/" || true; } | sort -r | while read -r target; do
    umount -l "$target" || true
  done
}

stop() {
  local pid
  if pid="$(running_pid)"; then
    kill -TERM "$pid"
    for _ in $(seq 300); do
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then
      echo "docker engine $pid did not stop in 30 s: SIGKILL" >&2
      kill -KILL "$pid" || true
    fi
  fi
  rm -f "$PIDFILE"
  unmount_leftovers
  # The run-time folder is the engine's alone: once it is gone, nothing of it is left under /run either.
  if [ -z "${pid:-}" ] || [ ! -d "/proc/$pid" ]; then
    rm -rf "$RUN"
  fi
}

start() {
  command -v dockerd >/dev/null || { echo "no dockerd: run make test-deps (it installs docker.io)" >&2; exit 1; }
  stop  # one engine per data root: a leftover of an interrupted run (perhaps in another namespace) goes first
  mkdir -p "$DIR/data" "$DIR/client" "$RUN"
  rm -f "$SOCK"
  # --bridge=none: no default bridge (compose and the tests make their own networks); --iptables=false and
  # --ip-masq=false: no rules on the machine's firewall (published ports go through docker-proxy).
  dockerd \
    --host "unix://$SOCK" --data-root "$DIR/data" --exec-root "$RUN/exec" --pidfile "$PIDFILE" \
    --iptables=false --ip-masq=false --bridge=none \
    >"$LOG" 2>&1 </dev/null &
  local launched=$!
  for _ in $(seq 300); do
    if DOCKER_HOST="unix://$SOCK" DOCKER_CONFIG="$DIR/client" "$CLIENT" info >/dev/null 2>&1; then
      echo "docker engine: pid $(running_pid), unix://$SOCK"
      return 0
    fi
    [ -d "/proc/$launched" ] || break
    sleep 0.1
  done
  echo "the docker engine did not start; its log ($LOG):" >&2
  tail -n 30 "$LOG" >&2
  kill -TERM "$launched" 2>/dev/null || true
  stop
  exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) env_lines ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
