#!/usr/bin/env bash
# Starts (or stops) the Redis servers the test suite can use, all on loopback:
#   a standalone Redis on 6379 (left alone if one already answers),
#   a 3-master Redis Cluster on 7000-7002,
#   a primary/replica pair on 6391 (primary) and 6392 (replica),
#   a Sentinel on 26380 watching that primary as "outgrow".
# Usage:
#   scripts/test-services.sh start   # prints the export lines for the test variables
#   scripts/test-services.sh stop    # stops what start started, by pid
#   scripts/test-services.sh env     # prints the export lines only
# State (pid files, logs, data) lives in $OUTGROW_SERVICES_DIR (default: /tmp/outgrow-test-services).
set -euo pipefail

dir=${OUTGROW_SERVICES_DIR:-/tmp/outgrow-test-services}
cluster_ports=(7000 7001 7002)
primary_port=6391
replica_port=6392
sentinel_port=26380
sentinel_master=outgrow

log() { echo "test-services: $*" >&2; }

ensure_binaries() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    return
  fi
  log "redis-server not found; installing it with apt-get"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools >&2
}

answers() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }

wait_until() { # wait_until <seconds> <command...>
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
    sleep 0.1
  done
}

# start_server <port> <name> [extra redis-server args...]
start_server() {
  local port=$1 name=$2; shift 2
  if answers "$port"; then
    # Started by this script (pid file), or by another run: reuse it, and leave it running.
    [ -f "$dir/$name.pid" ] || log "reusing the server already on port $port (left running at stop)"
    return 0
  fi
  mkdir -p "$dir/$name"
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$dir/$name" --logfile "$dir/$name.log" --pidfile "$dir/$name.pid" \
    --daemonize yes "$@" >/dev/null
  wait_until 10 answers "$port" || { log "redis on $port did not start; see $dir/$name.log"; return 1; }
}

cluster_ok() { redis-cli -p "${cluster_ports[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; }
sentinel_ok() {
  redis-cli -p "$sentinel_port" sentinel get-master-addr-by-name "$sentinel_master" 2>/dev/null | grep -q "^$primary_port\$"
}
replica_ok() { redis-cli -p "$replica_port" info replication 2>/dev/null | grep -q 'master_link_status:up'; }

print_env() {
  echo "export OUTGROW_REDIS_URL=redis://127.0.0.1:6379/0"
  echo "export OUTGROW_REDIS_CLUSTER=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"
  echo "export OUTGROW_REDIS_PRIMARY=redis://127.0.0.1:$primary_port/0"
  echo "export OUTGROW_REDIS_REPLICA=redis://127.0.0.1:$replica_port/0"
  echo "export OUTGROW_REDIS_SENTINEL=127.0.0.1:$sentinel_port"
  echo "export OUTGROW_REDIS_SENTINEL_MASTER=$sentinel_master"
}

start_sentinel() {
  if answers "$sentinel_port"; then
    [ -f "$dir/sentinel.pid" ] || log "reusing the sentinel already on port $sentinel_port (left running at stop)"
    return 0
  fi
  mkdir -p "$dir/sentinel"
  cat >"$dir/sentinel/sentinel.conf" <<CONF
bind 127.0.0.1
port $sentinel_port
daemonize yes
pidfile $dir/sentinel.pid
logfile $dir/sentinel.log
dir $dir/sentinel
sentinel monitor $sentinel_master 127.0.0.1 $primary_port 1
sentinel down-after-milliseconds $sentinel_master 5000
CONF
  redis-server "$dir/sentinel/sentinel.conf" --sentinel >/dev/null
  wait_until 10 sentinel_ok || { log "sentinel did not see the primary; see $dir/sentinel.log"; return 1; }
}

start() {
  ensure_binaries
  mkdir -p "$dir"
  if answers 6379; then
    log "redis on 6379 already answers"
  else
    start_server 6379 standalone
  fi
  for p in "${cluster_ports[@]}"; do
    start_server "$p" "cluster-$p" --cluster-enabled yes --cluster-config-file "$dir/cluster-$p/nodes.conf" \
      --cluster-node-timeout 2000
  done
  if ! cluster_ok; then
    redis-cli --cluster create "${cluster_ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$dir/cluster-create.log" 2>&1 ||
      { log "cluster create failed; see $dir/cluster-create.log"; return 1; }
    wait_until 30 cluster_ok || { log "cluster did not reach state ok"; return 1; }
  fi
  start_server "$primary_port" primary
  start_server "$replica_port" replica --replicaof 127.0.0.1 "$primary_port"
  wait_until 30 replica_ok || { log "replica did not link to its primary"; return 1; }
  start_sentinel
  log "ready"
  print_env
}

stop() {
  local f pid
  for f in "$dir"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill "$pid" 2>/dev/null; then
      wait_until 10 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
