#!/usr/bin/env bash
# The README's test command. Runs the whole test suite:
#   1. the Rust tests (`cargo test --workspace` would do the same; nextest is faster): these need
#      nothing but Rust;
#   2. criterion benchmarks, each run once in test mode so they keep compiling and working;
#   3. the interoperability suite: tests marked #[ignore] because they drive third-party peers
#      (Mosquitto's broker and clients, Python paho-mqtt). This script installs those peers first
#      (as root, through apt-get and pip). With CI set, a missing peer fails the test, never skips it.
# TERN_SKIP_INTEROP=1 runs only steps 1 and 2.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${TERN_SKIP_INTEROP:-0}" != 1 ]; then
  bash scripts/install-peers.sh
fi

echo "== rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc   # nextest does not run doctests
else
  cargo test --workspace
fi

echo "== benchmarks, once each in test mode"
cargo test --workspace --benches

if [ "${TERN_SKIP_INTEROP:-0}" != 1 ]; then
  echo "== interoperability suite (third-party peers)"
  export TERN_INTEROP=1
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast --run-ignored only --test-threads 1
  else
    cargo test --workspace -- --ignored --test-threads 1
  fi
fi
