#!/usr/bin/env bash
# The whole test suite: Rust unit + end-to-end tests (real binary, real TCP/TLS, fake upstream),
# then the official OpenAI and Anthropic Python SDKs against the real gateway.
set -euo pipefail
cd "$(dirname "$0")/.."

# The SSO browser tests' tools (tests/oidc: npm oidc-provider and playwright-core, pinned by
# its package-lock.json): installed when missing or older than the lock file, then self-tested
# against a stand-in relying party so a broken tool is told apart from a broken gateway.
oidc=tests/oidc
if [ ! -f "$oidc/node_modules/.package-lock.json" ] \
  || [ "$oidc/package-lock.json" -nt "$oidc/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$oidc" --no-audit --no-fund
fi
node --test "$oidc/selftest.mjs"

# Every gateway log of the run is kept, then searched for secrets: no generated key
# (`sk-` + 48 hex), not the tests' master key and no bearer JWT (`eyJ…` header and payload)
# may ever be logged.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
PORTCULLIS_TEST_LOGS="$logs" cargo test --locked --no-fail-fast
secrets='sk-[0-9a-f]{48}|sk-master-test-0123456789|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}'
if grep -rlE "$secrets" "$logs" >/dev/null; then
  echo "tests/run.sh: a secret appears in a gateway log:" >&2
  grep -rnoE "$secrets" "$logs" | head -5 >&2
  exit 1
fi
echo "tests/run.sh: $(ls "$logs" | wc -l) gateway logs checked, no secret in them"
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

# SCIM conformance: the PyPI checkers scim2-tester and scim-sanity against the real binary.
scim_rc=0
PORTCULLIS_BIN="$PWD/target/debug/portcullis" PORTCULLIS_PYTHON="$python" \
  tests/scim/conformance.sh || scim_rc=$?
if [ "$rc" -eq 0 ]; then rc=$scim_rc; fi
exit "$rc"
