#!/usr/bin/env bash
# run-checkers.sh — run the PyPI SCIM conformance checkers scim2-tester and
# scim-sanity against a live SCIM 2.0 server, headless (CI-friendly).
#
#   SCIM_URL=http://127.0.0.1:4000/scim/v2 SCIM_TOKEN=sk-... ./run-checkers.sh
#
# Both checkers CREATE, MODIFY and DELETE Users and Groups on the target.
# Point them at a throwaway instance, never at production data.
#
# Required:
#   SCIM_URL              SCIM base URL (the one /ServiceProviderConfig hangs off)
#   SCIM_TOKEN            bearer token (sent as "Authorization: Bearer <token>";
#                         never put on a command line, so it does not show in ps)
# Optional:
#   SCIM_CHECK_VENV       venv to create/reuse            (default: ./.venv-scim)
#   SCIM_PYTHON           interpreter for the venv, >=3.11 (default: python3)
#   SCIM_REPORT_DIR       where logs + JSON reports go     (default: ./scim-check-reports)
#   SCIM_CHECKERS         which to run                     (default: scim2-tester,scim-sanity)
#   SCIM_WAIT_SECONDS     wait this long for the server to answer (default: 30)
#   SCIM_TIMEOUT          per-request timeout, seconds     (default: 30)
#   SCIM_TLS_NO_VERIFY=1  skip TLS verification (https test servers)
#   SCIM_VERBOSE=1        print debug data for non-passing scim2-tester results
#   -- scim2-tester --
#   SCIM2_TESTER_FAIL_ON    statuses that fail the run     (default: ERROR,CRITICAL)
#   SCIM2_TESTER_INCLUDE    only run checks with these tags (e.g. discovery,crud)
#   SCIM2_TESTER_EXCLUDE    skip checks with these tags     (e.g. patch:remove,misc)
#   SCIM2_TESTER_RESOURCES  only these resource types       (e.g. User)
#   SCIM2_TESTER_SCIM_MEDIA=1  send Accept/Content-Type application/scim+json
#                           (scim2-client 0.13.2 otherwise sends application/json, */*)
#   SCIM2_TESTER_WAIVE      ';'-separated fnmatch patterns of known/accepted failures,
#                           matched against "Resource:check" and "check",
#                           e.g. "Group:check_add_attribute;Group:check_replace_attribute"
#   -- scim-sanity --
#   SCIM_SANITY_MODE        strict | compat                 (default: strict)
#   SCIM_SANITY_ARGS        extra probe args, word-split    (e.g. "--resource User --skip-cleanup")
#   SCIM_SANITY_WAIVE       ';'-separated fnmatch patterns of accepted failing test names,
#                           e.g. "PATCH /Groups/{id} add member"
#
# Exit status: 0 = every check passed (warnings/skips allowed)
#              1 = at least one checker reported a failing check
#              2 = usage/setup error, server unreachable, or auth rejected
set -euo pipefail

die() { echo "run-checkers: $*" >&2; exit 2; }

[[ -n "${SCIM_URL:-}" ]]   || die "SCIM_URL is not set (e.g. http://127.0.0.1:4000/scim/v2)"
[[ -n "${SCIM_TOKEN:-}" ]] || die "SCIM_TOKEN is not set"
export SCIM_URL="${SCIM_URL%/}" SCIM_TOKEN

VENV="${SCIM_CHECK_VENV:-$PWD/.venv-scim}"
PYTHON="${SCIM_PYTHON:-python3}"
REPORT_DIR="${SCIM_REPORT_DIR:-$PWD/scim-check-reports}"
CHECKERS="${SCIM_CHECKERS:-scim2-tester,scim-sanity}"
export SCIM_TIMEOUT="${SCIM_TIMEOUT:-30}"

# Local targets must never be sent through a CI HTTP(S)_PROXY (scim-sanity's
# stdlib urllib transport honours the proxy environment variables).
export NO_PROXY="${NO_PROXY:+$NO_PROXY,}127.0.0.1,localhost,::1"
export no_proxy="$NO_PROXY"

# ---------------------------------------------------------------- venv ------
# Exact versions verified together (pip freeze of a clean install, 2026-12).
REQUIREMENTS='scim2-tester==0.5.2
scim2-client[httpx2]==0.13.2
scim2-models==0.12.3
scim-sanity==0.7.4
httpx2==2.16.2
httpcore2==2.16.2
h11==0.16.0
anyio==4.16.0
truststore==0.10.5
pydantic==2.14.4
pydantic_core==2.50.5
annotated-types==0.8.0
typing_extensions==4.16.0
typing-inspection==0.4.5
email-validator==2.4.0
dnspython==2.9.2
idna==3.20
lark==1.3.1
click==8.5.1'

STAMP="$VENV/.scimcheck-requirements.txt"
if [[ ! -x "$VENV/bin/python" ]] || ! printf '%s\n' "$REQUIREMENTS" | cmp -s - "$STAMP"; then
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set SCIM_PYTHON)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than 3.11 (scim2-tester needs >=3.11); set SCIM_PYTHON"
  echo "run-checkers: preparing venv $VENV" >&2
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV" || die "cannot create venv $VENV"
  printf '%s\n' "$REQUIREMENTS" > "$VENV/.scimcheck-req.tmp"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r "$VENV/.scimcheck-req.tmp" || die "pip install failed"
  mv "$VENV/.scimcheck-req.tmp" "$STAMP"
fi
PY="$VENV/bin/python"
mkdir -p "$REPORT_DIR"
HELPERS="$VENV/scimcheck-helpers"
mkdir -p "$HELPERS"

# ------------------------------------------------------------ helpers ------
cat > "$HELPERS/preflight.py" <<'PYEOF'
"""Wait until the server answers GET /ServiceProviderConfig; refuse a rejected token."""
import os, ssl, sys, time, urllib.error, urllib.request

url = os.environ["SCIM_URL"] + "/ServiceProviderConfig"
deadline = time.monotonic() + float(os.environ.get("SCIM_WAIT_SECONDS", "30"))
ctx = None
if os.environ.get("SCIM_TLS_NO_VERIFY") == "1":
    ctx = ssl._create_unverified_context()
req = urllib.request.Request(url, headers={
    "Authorization": "Bearer " + os.environ["SCIM_TOKEN"],
    "Accept": "application/scim+json"})
last = None
while True:
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            status, ctype = resp.status, resp.headers.get("Content-Type")
        break
    except urllib.error.HTTPError as exc:
        status, ctype = exc.code, exc.headers.get("Content-Type")
        break
    except Exception as exc:  # connection refused, DNS, timeout...
        last = exc
        if time.monotonic() > deadline:
            print(f"preflight: {url} unreachable: {last}", file=sys.stderr)
            sys.exit(2)
        time.sleep(1)
print(f"preflight: GET {url} -> {status} ({ctype})")
if status in (401, 403):
    print("preflight: the server rejected SCIM_TOKEN; nothing else can pass", file=sys.stderr)
    sys.exit(2)
PYEOF

cat > "$HELPERS/scim2_tester_driver.py" <<'PYEOF'
"""Run scim2-tester (a library, no CLI of its own) and summarise its CheckResults."""
import collections, fnmatch, json, os, sys


def csv(name):
    return {x.strip() for x in os.environ.get(name, "").split(",") if x.strip()} or None


def patterns(name):
    raw = os.environ.get(name, "").replace("\n", ";")
    return [p.strip() for p in raw.split(";") if p.strip()]


def main():
    from httpx2 import Client
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import Status, check_server

    headers = {"Authorization": "Bearer " + os.environ["SCIM_TOKEN"]}
    if os.environ.get("SCIM2_TESTER_SCIM_MEDIA") == "1":
        headers.update({"Accept": "application/scim+json",
                        "Content-Type": "application/scim+json"})
    http = Client(base_url=os.environ["SCIM_URL"], headers=headers,
                  timeout=float(os.environ.get("SCIM_TIMEOUT", "30")),
                  verify=os.environ.get("SCIM_TLS_NO_VERIFY") != "1",
                  trust_env=False)  # never proxy the target
    fail_on = csv("SCIM2_TESTER_FAIL_ON") or {"ERROR", "CRITICAL"}
    waive = patterns("SCIM2_TESTER_WAIVE")
    resources = csv("SCIM2_TESTER_RESOURCES")
    try:
        results = check_server(
            SyncSCIMClient(http),  # no models given: discovered from the server
            include_tags=csv("SCIM2_TESTER_INCLUDE"),
            exclude_tags=csv("SCIM2_TESTER_EXCLUDE"),
            resource_types=sorted(resources) if resources else None,
        )
    except Exception as exc:
        print(f"scim2-tester: run aborted: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2

    def waived(r):
        keys = [r.title or "", f"{r.resource_type}:{r.title}"]
        return any(fnmatch.fnmatchcase(k, p) for k in keys for p in waive)

    counts = collections.Counter(r.status.name for r in results)
    failing, waived_n = [], 0
    for r in results:
        bad = r.status.name in fail_on
        mark = ""
        if bad and waived(r):
            mark, bad = " (WAIVED)", False
            waived_n += 1
        if bad:
            failing.append(r)
        where = f"[{r.resource_type}] " if r.resource_type else ""
        reason = (r.reason or "").replace("\n", " | ")
        print(f"{r.status.name:<9}{mark} {where}{r.title}: {reason}")
        if os.environ.get("SCIM_VERBOSE") == "1" and r.status != Status.SUCCESS and r.data is not None:
            print(f"          data: {r.data!r}"[:2000])

    ran_resources = any(r.title == "object_creation" for r in results)
    if not ran_resources and not csv("SCIM2_TESTER_INCLUDE"):
        print("scim2-tester: discovery failed, so no User/Group check ran")
        failing = failing or ["discovery"]

    report = os.environ.get("SCIM2_TESTER_JSON")
    if report:
        with open(report, "w") as fh:
            json.dump({"summary": dict(counts), "fail_on": sorted(fail_on),
                       "waived": waived_n,
                       "results": [{"status": r.status.name, "title": r.title,
                                    "resource_type": r.resource_type,
                                    "tags": sorted(r.tags), "reason": r.reason,
                                    "waived": r.status.name in fail_on and waived(r)}
                                   for r in results]}, fh, indent=2)
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"scim2-tester: {len(results)} results ({summary}); "
          f"failing={len(failing)} waived={waived_n}")
    return 1 if failing else 0


sys.exit(main())
PYEOF

cat > "$HELPERS/scim_sanity_driver.py" <<'PYEOF'
"""Run `scim-sanity probe --json-output` in-process (token kept off argv) and summarise."""
import contextlib, fnmatch, io, json, os, shlex, sys

from scim_sanity.cli import main as cli

mode = os.environ.get("SCIM_SANITY_MODE", "strict")
if mode not in ("strict", "compat"):
    print(f"scim-sanity: SCIM_SANITY_MODE must be strict or compat, not {mode!r}", file=sys.stderr)
    sys.exit(2)
args = ["probe", os.environ["SCIM_URL"], "--token", os.environ["SCIM_TOKEN"],
        "--json-output", "--i-accept-side-effects", f"--{mode}",
        "--timeout", os.environ.get("SCIM_TIMEOUT", "30")]
if os.environ.get("SCIM_TLS_NO_VERIFY") == "1":
    args.append("--tls-no-verify")
args += shlex.split(os.environ.get("SCIM_SANITY_ARGS", ""))

buf, code = io.StringIO(), None
with contextlib.redirect_stdout(buf):
    try:
        cli.main(args=args, prog_name="scim-sanity")
    except SystemExit as exc:
        code = exc.code
raw = buf.getvalue()
try:
    data = json.loads(raw)
except ValueError:
    print(raw)
    print(f"scim-sanity: no JSON report (exit {code})", file=sys.stderr)
    sys.exit(2)
report = os.environ.get("SCIM_SANITY_JSON")
if report:
    with open(report, "w") as fh:
        json.dump(data, fh, indent=2)
if "results" not in data:
    print(json.dumps(data, indent=2))
    sys.exit(2)

raw_waive = os.environ.get("SCIM_SANITY_WAIVE", "").replace("\n", ";")
waive = [p.strip() for p in raw_waive.split(";") if p.strip()]
failing, waived = [], 0
for r in data["results"]:
    status = r["status"]
    bad = status in ("fail", "error")
    mark = ""
    if bad and any(fnmatch.fnmatchcase(r["name"], p) for p in waive):
        bad, mark = False, " (WAIVED)"
        waived += 1
    if bad:
        failing.append(r)
    msg = (r.get("message") or "").replace("\n", " | ")
    print(f"{status.upper():<6}{mark} {r.get('phase', '')} :: {r['name']}" + (f": {msg}" if msg else ""))
for issue in data.get("issues", []):
    print(f"  [{issue['priority']}] {issue['title']} ({issue.get('affected_tests')} tests) "
          f"- fix: {issue['fix']}")
s = data.get("summary", {})
print(f"scim-sanity {data.get('scim_sanity_version')} ({data.get('mode')}): "
      + ", ".join(f"{k}={v}" for k, v in s.items())
      + f"; failing={len(failing)} waived={waived} (tool exit {code})")
sys.exit(1 if failing else 0)
PYEOF

# ------------------------------------------------------------- run ---------
echo "run-checkers: target $SCIM_URL  (reports: $REPORT_DIR)"
"$PY" "$HELPERS/preflight.py" || exit 2

declare -A RC=()
ORDER=()
run_one() {  # name, script, log
  local name="$1" script="$2" log="$3" rc
  echo
  echo "==================== $name ===================="
  set +e
  "$PY" "$script" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  RC[$name]=$rc
  ORDER+=("$name")
}

IFS=',' read -r -a selected <<<"$CHECKERS"
for checker in "${selected[@]}"; do
  case "${checker// /}" in
    scim2-tester)
      SCIM2_TESTER_JSON="$REPORT_DIR/scim2-tester.json" \
        run_one scim2-tester "$HELPERS/scim2_tester_driver.py" "$REPORT_DIR/scim2-tester.log" ;;
    scim-sanity)
      SCIM_SANITY_JSON="$REPORT_DIR/scim-sanity.json" \
        run_one scim-sanity "$HELPERS/scim_sanity_driver.py" "$REPORT_DIR/scim-sanity.log" ;;
    "") ;;
    *) die "unknown checker '$checker' in SCIM_CHECKERS" ;;
  esac
done

echo
echo "==================== summary ===================="
[[ ${#ORDER[@]} -gt 0 ]] || die "no checker selected (SCIM_CHECKERS='$CHECKERS')"
overall=0
for name in "${ORDER[@]}"; do
  case "${RC[$name]}" in
    0) verdict="PASS" ;;
    1) verdict="FAIL (checks failed)"; overall=1 ;;
    *) verdict="ERROR (could not run, exit ${RC[$name]})"; overall=1 ;;
  esac
  printf '  %-13s %s   log: %s\n' "$name" "$verdict" "$REPORT_DIR/$name.log"
done
exit "$overall"
