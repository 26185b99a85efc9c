#!/usr/bin/env bash
# Real-browser tests of the roomcast web client (frontendws/).
#
#   tests/e2e/browser/run.sh [TEST_FILE...]        (default: every *.test.js here)
#
# - installs Debian's chromium if /usr/bin/chromium is missing (never a downloaded browser);
# - installs the pinned playwright-core with `npm ci` from package-lock.json;
# - uses the demo-server at $DEMO_SERVER_BIN (default target/debug/demo-server from the
#   repository root; built with `cargo build -p demo-server` when missing);
# - starts its own redis-server and two demo-server instances sharing it (one token secret),
#   each on a free port, runs the tests with node's test runner, and always stops what it
#   started.
#
# Screenshots go to tests/e2e/browser/artifacts/ (gitignored), server logs to
# artifacts/logs/. The output ends with node's test runner summary.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
ARTIFACTS="$HERE/artifacts"
LOGS="$ARTIFACTS/logs"

log() { printf 'run.sh: %s\n' "$*"; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  log "installing Debian packages: $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ------------------------------------------------------------------ tools

export CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
missing=()
[ -x "$CHROMIUM_BIN" ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
[ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
[ -x "$CHROMIUM_BIN" ] || die "no chromium at $CHROMIUM_BIN"
command -v node >/dev/null 2>&1 || die "node (>= 20) is required"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || die "node >= 20 is required (found $(node --version))"
export REDIS_SERVER_BIN="$(command -v redis-server)"
export REDIS_CLI_BIN="$(command -v redis-cli)"

log "npm ci (playwright-core from the lockfile)"
(cd "$HERE" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error)

DEMO_SERVER_BIN="${DEMO_SERVER_BIN:-target/debug/demo-server}"
case "$DEMO_SERVER_BIN" in /*) ;; *) DEMO_SERVER_BIN="$ROOT/$DEMO_SERVER_BIN" ;; esac
if [ ! -x "$DEMO_SERVER_BIN" ]; then
  if [ "$DEMO_SERVER_BIN" = "$ROOT/target/debug/demo-server" ]; then
    log "building demo-server"
    (cd "$ROOT" && cargo build -p demo-server)
  fi
  [ -x "$DEMO_SERVER_BIN" ] || die "no demo-server binary at $DEMO_SERVER_BIN"
fi
export DEMO_SERVER_BIN
export RC_STATIC_DIR="$ROOT/frontendws"
# The demo honours STATIC_DIR too; --static-dir below says the same: serve THIS client.
export STATIC_DIR="$RC_STATIC_DIR"

# ------------------------------------------------------------------ processes

WORK="$(mktemp -d "${TMPDIR:-/tmp}/roomcast-e2e.XXXXXX")"
# The tests start a few servers of their own and note their pids here.
export RC_PID_DIR="$WORK/pids"
mkdir -p "$RC_PID_DIR"
PIDS=()
cleanup() {
  local pid f
  for f in "$RC_PID_DIR"/*; do
    [ -e "$f" ] || continue
    pid="$(basename "$f")"
    # Only if that pid is still one of the servers a test started.
    if grep -qsE 'demo-server|redis-server' "/proc/$pid/cmdline" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# Waits (bounded) until `cmd...` succeeds, or the process $1 has exited.
wait_until() {
  local pid="$1" what="$2"; shift 2
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || die "$what exited early (see $LOGS)"
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "$what did not come up within 15 s (see $LOGS)"
}

http_ok() {
  node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$1"
}

mkdir -p "$LOGS"
rm -f "$LOGS"/*.log

REDIS_PORT="$(free_port)"
mkdir -p "$WORK/redis"
"$REDIS_SERVER_BIN" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$WORK/redis" >"$LOGS/redis.log" 2>&1 &
PIDS+=("$!")
wait_until "$!" "redis-server" "$REDIS_CLI_BIN" -p "$REDIS_PORT" ping
export RC_REDIS_PORT="$REDIS_PORT"
export RC_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
export RC_TOKEN_SECRET="e2e-$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')"

for i in 1 2; do
  port="$(free_port)"
  RUST_LOG="${RUST_LOG:-info}" "$DEMO_SERVER_BIN" --listen "127.0.0.1:$port" --redis-url "$RC_REDIS_URL" \
    --token-secret "$RC_TOKEN_SECRET" --static-dir "$RC_STATIC_DIR" >"$LOGS/demo-server-$i.log" 2>&1 &
  PIDS+=("$!")
  # v2: only the API documents are anonymous, so readiness is asked of /openapi.json.
  wait_until "$!" "demo-server $i" http_ok "http://127.0.0.1:$port/openapi.json"
  export "RC_URL_$i=http://127.0.0.1:$port"
done
log "redis $RC_REDIS_URL; demo-server instances $RC_URL_1 and $RC_URL_2; logs in ${LOGS#"$ROOT/"}/"

# ------------------------------------------------------------------ tests

cd "$HERE"
if [ "$#" -gt 0 ]; then
  tests=("$@")
else
  tests=(*.test.js)
fi
# Temporary files of the tests (browser profiles, Redis folders) live in $WORK, removed on exit.
export TMPDIR="$WORK/tmp"
mkdir -p "$TMPDIR"
set +e
node --test --test-concurrency=1 --test-timeout=180000 --test-reporter=spec "${tests[@]}" 2>&1 | tee "$ARTIFACTS/run.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  # A known, rare flake (a UI wait that times out under load; see the issue notes) is run
  # once more, file by file, and said loudly: a test that fails twice fails the run.
  failed=()
  for file in "${tests[@]}"; do
    grep -q "^test at ${file}:" "$ARTIFACTS/run.log" && failed+=("$file")
  done
  if [ ${#failed[@]} -gt 0 ] && [ ${#failed[@]} -le 2 ]; then
    log "RETRYING once after a failure: ${failed[*]}"
    set +e
    node --test --test-concurrency=1 --test-timeout=180000 --test-reporter=spec "${failed[@]}"
    status=$?
    set -e
  fi
fi
exit "$status"
