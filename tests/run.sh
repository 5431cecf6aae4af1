#!/usr/bin/env bash
# The whole test suite: Rust unit + end-to-end tests (real binary, real TCP/TLS, fake upstream),
# then the official OpenAI and Anthropic Python SDKs against the real gateway.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked --no-fail-fast
cargo build --locked --benches

if [ -d tests/sdk ]; then
  venv=${PORTCULLIS_VENV:-.venv}
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
  cargo build --locked --bin portcullis
  PORTCULLIS_BIN="$PWD/target/debug/portcullis" "$venv/bin/python" -m pytest -q tests/sdk
fi
