#!/usr/bin/env bash
# Usage: ./run.sh [fanout|idle|memfanout] [runs]
#   fanout    : 2 socketioxide instances + private redis-server, 500 clients x 20 msgs (default)
#   idle      : 1 instance (redis adapter) + 5000 idle clients, RSS delta / 5000
#   memfanout : fallback, 1 instance, in-memory adapter, same fan-out traffic
set -euo pipefail
cd "$(dirname "$0")"
MODE=${1:-fanout}; RUNS=${2:-3}
ulimit -n "$(ulimit -Hn)"
SRV=${SRV:-./sio-server/target/release/sio-server}   # SRV="node ../socketio/server.js": the socket.io 4 peer
CLI=./sio-client/target/release/sio-client
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
waitport() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 not up"; exit 1; }
for run in $(seq "$RUNS"); do
  echo "=== $MODE run $run ($(date -u +%H:%M:%S)) ==="
  PIDS=()
  if [ "$MODE" != memfanout ]; then
    RP=$(freeport)
    redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >${TMPDIR:-/tmp}/peer-bench-redis.log 2>&1 &
    PIDS+=($!); waitport "$RP"
    URL="redis://127.0.0.1:$RP/?protocol=resp3"
  else
    URL=""
  fi
  P1=$(freeport); $SRV "$P1" $URL 2>${TMPDIR:-/tmp}/peer-bench-srv1.log & S1=$!; PIDS+=($S1); waitport "$P1"
  case "$MODE" in
    fanout)
      P2=$(freeport); $SRV "$P2" $URL 2>${TMPDIR:-/tmp}/peer-bench-srv2.log & S2=$!; PIDS+=($S2); waitport "$P2"
      sleep 0.5
      $CLI fanout --ports "$P1,$P2" --pids "$S1,$S2" --redis-pid "${PIDS[0]}" ${EXTRA:-} ;;
    memfanout)
      sleep 0.5
      $CLI fanout --ports "$P1" --pids "$S1" ${EXTRA:-} ;;
    idle)
      sleep 0.5
      $CLI idle --port "$P1" --pid "$S1" --clients 5000 --rooms 100 --hold 3 ;;
  esac
  cleanup; PIDS=()
  sleep 1
done
