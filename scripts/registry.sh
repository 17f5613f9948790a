#!/usr/bin/env bash
# A real OCI registry (CNCF distribution, Debian's `docker-registry`) on loopback,
# for tests. Storage, config, log and pid live in the directory given.
#
#   scripts/registry.sh start DIR [PORT]   prints 127.0.0.1:PORT once /v2/ answers
#   scripts/registry.sh stop DIR           stops the registry started in DIR
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [PORT] | stop DIR" >&2
  exit 2
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir="$1" port="${2:-$(free_port)}"
  local bin="${DOCKER_REGISTRY_BIN:-/usr/bin/docker-registry}"
  [ -x "$bin" ] || { echo "registry.sh: $bin missing (apt-get install docker-registry)" >&2; exit 1; }
  mkdir -p "$dir/storage"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
  "$bin" serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  echo $! >"$dir/registry.pid"
  # Bounded wait: 10 s for the API to answer.
  for _ in $(seq 100); do
    if curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then
      echo "127.0.0.1:$port"
      return 0
    fi
    if ! kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
      echo "registry.sh: registry exited:" >&2
      cat "$dir/registry.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "registry.sh: registry did not answer on 127.0.0.1:$port within 10 s" >&2
  stop "$dir"
  exit 1
}

stop() {
  local pidfile="$1/registry.pid"
  [ -f "$pidfile" ] || return 0
  local pid
  pid="$(cat "$pidfile")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start) [ $# -ge 2 ] || usage; start "$2" "${3:-}" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
