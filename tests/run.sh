#!/usr/bin/env bash
# The whole test suite: Rust unit + end-to-end tests (real binary, real TCP/TLS, fake upstream),
# then the official OpenAI and Anthropic Python SDKs against the real gateway.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked --no-fail-fast
# Benches are measured by hand (docs/performance.md); here they only have to compile.
cargo check --locked --benches

# The SDK suite is part of the bar: its absence, or a run that collects no test, is a failure.
if [ ! -f tests/sdk/requirements.txt ]; then
  echo "tests/run.sh: tests/sdk/requirements.txt is missing" >&2
  exit 1
fi
python=${PORTCULLIS_PYTHON:-python3}
venv=${PORTCULLIS_VENV:-.venv}
# (Re)create the venv unless it exists with a working pip (a half-made or stale one is replaced).
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
    echo "tests/run.sh: $venv exists and is not a venv" >&2
    exit 1
  fi
  "$python" -m venv --clear "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
cargo build --locked --bin portcullis
rc=0
PORTCULLIS_BIN="$PWD/target/debug/portcullis" "$venv/bin/python" -m pytest -q tests/sdk || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "tests/run.sh: ERROR: pytest collected no tests in tests/sdk" >&2
  exit 1
fi
exit "$rc"
