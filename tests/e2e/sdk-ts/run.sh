#!/usr/bin/env bash
# The contract as a TypeScript user meets it: types generated from the CHECKED-IN files of
# openapi/, a strict client program run against a live demo-server, and programs that tsc
# must reject.
#
#   tests/e2e/sdk-ts/run.sh
#
# 1. installs the pinned packages of package-lock.json with `npm ci` (from the npm registry;
#    nothing is fetched after that): openapi-typescript + openapi-fetch (REST),
#    json-schema-to-typescript (WebSocket frames), typescript, ws, @redocly/cli;
# 2. lints openapi/openapi.json and openapi/asyncapi.json with Redocly's recommended rules
#    (redocly.yaml says which two rules are off and why): any error or warning fails;
# 3. generates gen/openapi.d.ts (openapi-typescript) and gen/ws-{client,server}-frames.d.ts
#    (json-schema-to-typescript) from the checked-in files: a warning fails, and so does an
#    `any` in the output;
# 4. `tsc --strict --noEmit` on src/client.ts, then compiles and runs it against a demo-server
#    it starts on a free port ($DEMO_SERVER_BIN, default target/debug/demo-server, built when
#    missing): guests, a room, a join, two WebSockets, a direct message, history pages,
#    typed problems and a typed error frame;
# 5. `tsc --strict` on each wrong/*.ts must FAIL, reporting every line marked WRONG and no
#    other line (a typo'd frame field, an unknown error code).
#
# Each numbered check is one test; the output ends with "N passed, N failed". Exits non-zero
# on any failure and always stops the server.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
CONTRACT="$ROOT/openapi"

log() { printf 'run.sh: %s\n' "$*"; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node (>= 20) is required"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || die "node >= 20 is required (found $(node --version))"

log "npm ci (pinned by package-lock.json)"
(cd "$HERE" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error)
BIN="$HERE/node_modules/.bin"

DEMO_SERVER_BIN="${DEMO_SERVER_BIN:-target/debug/demo-server}"
case "$DEMO_SERVER_BIN" in /*) ;; *) DEMO_SERVER_BIN="$ROOT/$DEMO_SERVER_BIN" ;; esac
if [ ! -x "$DEMO_SERVER_BIN" ] && [ "$DEMO_SERVER_BIN" = "$ROOT/target/debug/demo-server" ]; then
  log "building demo-server"
  (cd "$ROOT" && cargo build -p demo-server)
fi
[ -x "$DEMO_SERVER_BIN" ] || die "no demo-server binary at $DEMO_SERVER_BIN"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/roomcast-sdk-ts.XXXXXX")"
SERVER_PID=""
cleanup() {
  local status=$?
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -s "$WORK/demo-server.log" ]; then
    log "last lines of the demo-server log:"
    tail -n 20 "$WORK/demo-server.log" >&2 || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

passed=0
failed=0
# test NAME CMD...: runs CMD, its output indented; counts it as passed or failed.
test_case() {
  local name="$1"; shift
  printf '\n=== %s\n' "$name"
  if "$@" >"$WORK/out" 2>&1; then
    sed 's/^/    /' "$WORK/out"
    printf 'ok: %s\n' "$name"
    passed=$((passed + 1))
  else
    sed 's/^/    /' "$WORK/out"
    printf 'FAILED: %s\n' "$name"
    failed=$((failed + 1))
  fi
}

# Runs a command; fails if it fails or if its output says "warn" anywhere.
no_warnings() {
  "$@" >"$WORK/tool" 2>&1 || { cat "$WORK/tool"; return 1; }
  cat "$WORK/tool"
  if grep -qiE 'warn|⚠' "$WORK/tool"; then
    echo "(the tool warned: failing)"
    return 1
  fi
}

lint() {
  # The banner about future Node versions is not a finding; the summary lines are.
  "$BIN/redocly" lint --config "$HERE/redocly.yaml" --format=summary \
    "$CONTRACT/openapi.json" "$CONTRACT/asyncapi.json" >"$WORK/lint" 2>&1 \
    || { cat "$WORK/lint"; return 1; }
  grep -vE '║|╔|╚' "$WORK/lint"
  if grep -qE '^(warning|error) ' "$WORK/lint"; then
    echo "(Redocly reported findings: failing)"
    return 1
  fi
}

generate() {
  rm -rf "$HERE/gen" && mkdir -p "$HERE/gen"
  no_warnings "$BIN/openapi-typescript" "$CONTRACT/openapi.json" -o "$HERE/gen/openapi.d.ts"
  # additionalProperties=false: frames without an index signature, so that a typo'd field
  # is an error (the schemas leave unknown fields open, for forward compatibility).
  for side in client server; do
    no_warnings "$BIN/json2ts" --additionalProperties=false \
      -i "$CONTRACT/ws-$side-frames.schema.json" -o "$HERE/gen/ws-$side-frames.d.ts"
  done
  if grep -nE ':\s*any\b|<any>|\bany\[\]' "$HERE"/gen/*.d.ts; then
    echo "(an \`any\` in the generated types: failing)"
    return 1
  fi
  # The frame types keep their names and fields (issue 18: they used to lose them).
  grep -q 'export type ServerFrame =' "$HERE/gen/ws-server-frames.d.ts"
  grep -q 'export type ErrorCode =' "$HERE/gen/ws-server-frames.d.ts"
  grep -q 'ProblemCode: "' "$HERE/gen/openapi.d.ts"
  wc -l "$HERE"/gen/*.d.ts
}

typecheck() {
  "$BIN/tsc" -p "$HERE/tsconfig.json" --noEmit
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

run_client() {
  rm -rf "$HERE/dist"
  "$BIN/tsc" -p "$HERE/tsconfig.json"
  local port
  port="$(free_port)"
  RUST_LOG="${RUST_LOG:-warn}" "$DEMO_SERVER_BIN" --listen "127.0.0.1:$port" \
    --token-secret "sdk-ts-$(node -e 'console.log(require("crypto").randomBytes(16).toString("hex"))')" \
    >"$WORK/demo-server.log" 2>&1 &
  SERVER_PID=$!
  for i in $(seq 150); do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/demo-server.log"; return 1; }
    if node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' \
      "http://127.0.0.1:$port/openapi.json"; then break; fi
    [ "$i" -lt 150 ] || { echo "demo-server did not answer within 15 s"; return 1; }
    sleep 0.1
  done
  echo "demo-server at http://127.0.0.1:$port"
  RC_BASE_URL="http://127.0.0.1:$port" node "$HERE/dist/src/client.js"
}

# tsc must reject FILE, at every line marked `// WRONG:` and at no other line.
must_reject() {
  local file="$1" out="$WORK/tsc-wrong"
  if "$BIN/tsc" --strict --noEmit --target ES2022 --module NodeNext --moduleResolution NodeNext \
    --types node "$file" >"$out" 2>&1; then
    echo "tsc accepted $file"
    return 1
  fi
  cat "$out"
  local expected reported
  expected="$(grep -n '// WRONG:' "$file" | cut -d: -f1 | sort -n | uniq | tr '\n' ' ')"
  reported="$(sed -nE 's/^[^(]+\(([0-9]+),[0-9]+\): error TS[0-9]+:.*/\1/p' "$out" | sort -n | uniq | tr '\n' ' ')"
  echo "lines marked WRONG: $expected; lines tsc reported: $reported"
  [ -n "$expected" ] && [ "$expected" = "$reported" ]
}

cd "$HERE"
test_case "redocly lint (recommended rules) of openapi.json and asyncapi.json" lint
test_case "types generated from the checked-in files, warning-free, no any" generate
test_case "tsc --strict accepts src/client.ts" typecheck
test_case "src/client.ts runs against a live demo-server" run_client
for file in wrong/*.ts; do
  test_case "tsc --strict rejects $file at each WRONG line" must_reject "$file"
done

printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
