#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need where it is missing
# (redis-server; PostgreSQL's server binaries for the archive tests, which start their own
# clusters; Chromium and npm packages for the browser tests; PyPI packages for the
# contract tests), then runs every Rust test (unit, property, integration, several instances
# on real redis-server processes), the browser tests, the OpenAPI contract tests and the
# TypeScript SDK tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ -z "${POSTGRES_BIN_DIR:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The crash and shutdown tests run the demo-server binary; build it with the same features
# the test build uses, once.
cargo build -p demo-server
cargo test --workspace --all-features

# The browser client in real Chromium, and the OpenAPI contract through a generated SDK and
# schemathesis; each starts its own servers and installs its own packages (npm, PyPI).
DEMO_SERVER_BIN="$PWD/target/debug/demo-server" bash tests/e2e/browser/run.sh
DEMO_SERVER_BIN="$PWD/target/debug/demo-server" bash tests/e2e/contract/run.sh
# The contract as a TypeScript SDK: types generated from the checked-in openapi/ files, a
# strict client run against a live demo, programs tsc must reject (npm packages, pinned).
DEMO_SERVER_BIN="$PWD/target/debug/demo-server" bash tests/e2e/sdk-ts/run.sh
