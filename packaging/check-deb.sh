#!/usr/bin/env bash
# Builds the Debian package and checks it on this machine: contents, install, the installed
# binary, config, permissions and unit (systemd-analyze verify + security, exposure <= 2.0), a
# start as the service user, an upgrade that keeps the operator's config and the data, and purge.
#
# Run by .ci/run, as root, on a throwaway machine: it INSTALLS AND PURGES the `portcullis`
# package (an installed one is purged first, data included). PORTCULLIS_KEEP_DEB=1 leaves the
# package installed at the end. Parts that cannot run here (not root, no systemd as PID 1, an old
# systemd-analyze) are skipped with the reason printed.
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
skipped=0
say() { echo "packaging: $*"; }
ok() {
  echo "packaging: ok: $*"
  passed=$((passed + 1))
}
skip() {
  echo "packaging: SKIPPED: $*"
  skipped=$((skipped + 1))
}
fail() {
  echo "packaging: FAILED: $*" >&2
  exit 1
}

unit=/usr/lib/systemd/system/portcullis.service
installed_by_us=0
smoke_pid=
work=$(mktemp -d)
chmod 0711 "$work" # the service user writes its ready file below it
cleanup() {
  local rc=$?
  if [ -n "$smoke_pid" ] && kill -0 "$smoke_pid" 2>/dev/null; then
    kill -TERM "$smoke_pid" 2>/dev/null || true
    wait "$smoke_pid" 2>/dev/null || true
  fi
  if [ "$installed_by_us" = 1 ] && [ "${PORTCULLIS_KEEP_DEB:-0}" != 1 ] &&
    dpkg-query -W -f='${Status}' portcullis 2>/dev/null | grep -q installed; then
    echo "packaging: cleaning up: purging the portcullis package" >&2
    if [ -d /run/systemd/system ]; then systemctl stop portcullis.service 2>/dev/null || true; fi
    dpkg --purge portcullis >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# GET a URL; prints the body. curl if present, else Python (the SDK suite needs it anyway).
http_get() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 5 "$1"
  else
    python3 -c 'import sys, urllib.request as u; sys.stdout.write(u.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"
  fi
}

if ! command -v dpkg-deb >/dev/null 2>&1; then
  skip "no dpkg-deb: not a Debian-family system, no package built"
  echo "packaging: $passed passed, 0 failed, $skipped skipped"
  exit 0
fi

# --- build --------------------------------------------------------------------------------
if ! cargo deb --version >/dev/null 2>&1; then
  say "installing cargo-deb (cargo install cargo-deb --locked, about a minute)"
  cargo install cargo-deb --version '^3.8' --locked
fi
say "building the package ($(cargo deb --version); dist profile, several minutes from clean)"
# cargo-deb prints the path of the .deb on stdout; cargo's progress goes to stderr.
deb=$(cargo deb --locked | tail -n 1)
[ -f "$deb" ] || fail "cargo deb did not produce a .deb (got: '$deb')"
size=$(stat -c %s "$deb")
ok "built $deb ($((size / 1024)) KiB)"

version=$(dpkg-deb -f "$deb" Version)
upstream=${version%-*}
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for path in ./usr/bin/portcullis ./etc/portcullis/config.yaml ./etc/portcullis/environment \
  ./usr/lib/systemd/system/portcullis.service ./usr/lib/sysusers.d/portcullis.conf \
  ./usr/share/doc/portcullis/operations.md ./usr/share/doc/portcullis/copyright; do
  grep -qxF "$path" <<<"$contents" || fail "$path is missing from the package"
done
conffiles=$(dpkg-deb -I "$deb" conffiles)
for f in /etc/portcullis/config.yaml /etc/portcullis/environment; do
  grep -qxF "$f" <<<"$conffiles" || fail "$f is not a conffile"
done
ok "package $version holds the binary, unit, sysusers file, docs, and both conffiles"

if [ "$(id -u)" -ne 0 ]; then
  skip "not root: the package is built but not installed or checked installed"
  echo "packaging: $passed passed, 0 failed, $skipped skipped"
  exit 0
fi

# --- install ------------------------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
if dpkg-query -W -f='${Status}' portcullis 2>/dev/null | grep -q installed; then
  say "a portcullis package is already installed (an earlier run?): purging it first"
  if [ -d /run/systemd/system ]; then systemctl stop portcullis.service 2>/dev/null || true; fi
  dpkg --purge portcullis >/dev/null
fi
installed_by_us=1
if ! dpkg -i "$deb"; then
  say "dpkg -i failed (missing dependencies?): apt-get install -f"
  apt-get update -qq
  apt-get install -f -y -qq --no-install-recommends
fi
dpkg-query -W -f='${Status}' portcullis | grep -q "install ok installed" ||
  fail "portcullis is not installed after dpkg -i"
ok "installed"

got=$(/usr/bin/portcullis --version)
[ "$got" = "portcullis $upstream" ] || fail "/usr/bin/portcullis --version said '$got', expected 'portcullis $upstream'"
ok "/usr/bin/portcullis --version: $got"

/usr/bin/portcullis check-config --config /etc/portcullis/config.yaml ||
  fail "the packaged /etc/portcullis/config.yaml does not validate"
ok "check-config accepts the packaged config"

getent passwd portcullis >/dev/null || fail "the portcullis user was not created"
check_perms() { # path "owner:group mode"
  local got
  got=$(stat -c '%U:%G %a' "$1")
  [ "$got" = "$2" ] || fail "$1 is $got, expected $2"
}
check_perms /etc/portcullis "root:portcullis 750"
check_perms /etc/portcullis/config.yaml "root:portcullis 640"
check_perms /etc/portcullis/environment "root:root 600"
ok "user portcullis; /etc/portcullis root:portcullis 750, config.yaml 640, environment root:root 600"

[ -L /etc/systemd/system/multi-user.target.wants/portcullis.service ] ||
  fail "portcullis.service was not enabled"
ok "portcullis.service enabled"

# --- the unit -----------------------------------------------------------------------------
if ! command -v systemd-analyze >/dev/null 2>&1; then
  skip "no systemd-analyze: unit verify and security not checked"
else
  # verify exits 0 on unknown keys and other warnings: any output fails.
  out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
  [ -z "$out" ] || fail "systemd-analyze verify $unit warned: $out"
  ok "systemd-analyze verify $unit: clean"

  sd_version=$(systemd-analyze --version | awk 'NR == 1 {print $2}')
  if [ "${sd_version%%[!0-9]*}" -ge 250 ]; then
    # --offline reads the unit file, no running systemd needed. --threshold is on a 0-100 scale.
    security=(systemd-analyze security --offline=yes --threshold=20 "$unit")
  elif [ -d /run/systemd/system ]; then
    security=(systemd-analyze security portcullis.service)
  else
    security=()
    skip "systemd-analyze $sd_version has no --offline and systemd is not running: exposure not measured"
  fi
  if [ ${#security[@]} -gt 0 ]; then
    rc=0
    out=$("${security[@]}" 2>&1) || rc=$?
    exposure=$(grep -oE 'portcullis\.service: [0-9]+\.[0-9]+' <<<"$out" | awk '{print $2}' | tail -n 1)
    [ -n "$exposure" ] || fail "no exposure level in the output of ${security[*]}: $out"
    awk -v e="$exposure" 'BEGIN {exit !(e <= 2.0)}' && [ "$rc" -eq 0 ] ||
      fail "systemd-analyze security: exposure $exposure, more than 2.0 allowed:"$'\n'"$out"
    ok "systemd-analyze security (systemd $sd_version): exposure $exposure (<= 2.0)"
  fi
fi

# --- a start as the service user (what the unit does, minus the sandbox) ------------------
# Proves the permissions work for the service: it reads the config through its group and
# generates the master key into the data dir. The data dir is made as StateDirectory= would.
command -v setpriv >/dev/null 2>&1 || fail "setpriv (util-linux) is missing"
install -d -o portcullis -g portcullis -m 0700 /var/lib/portcullis
install -d -o portcullis -g portcullis -m 0700 "$work/run"
(cd / && exec setpriv --reuid=portcullis --regid=portcullis --init-groups \
  env -i PATH=/usr/bin:/bin /usr/bin/portcullis serve --config /etc/portcullis/config.yaml \
  --data-dir /var/lib/portcullis --listen 127.0.0.1:0 --ready-file "$work/run/ready") \
  >"$work/serve.log" 2>&1 &
smoke_pid=$!
for _ in $(seq 100); do
  [ -s "$work/run/ready" ] && break
  kill -0 "$smoke_pid" 2>/dev/null || break
  sleep 0.2
done
[ -s "$work/run/ready" ] || fail "portcullis serve (as user portcullis) did not become ready:"$'\n'"$(cat "$work/serve.log")"
addr=$(grep -oE '"addr":"[^"]+"' "$work/run/ready" | cut -d'"' -f4)
body=$(http_get "http://$addr/health/readiness") || fail "GET /health/readiness failed"
grep -q healthy <<<"$body" || fail "/health/readiness said: $body"
check_perms /var/lib/portcullis/master.key "portcullis:portcullis 600"
kill -TERM "$smoke_pid"
rc=0
wait "$smoke_pid" || rc=$?
smoke_pid=
[ "$rc" -eq 0 ] || fail "portcullis serve exited $rc after SIGTERM:"$'\n'"$(cat "$work/serve.log")"
ok "serve as user portcullis: ready, healthy, master.key generated (0600), clean exit on SIGTERM"

systemd_up=0
if [ -d /run/systemd/system ]; then
  systemd_up=1
  if systemctl start portcullis.service && systemctl is-active --quiet portcullis.service; then
    body=$(http_get "http://127.0.0.1:4000/health/readiness") || body=
    systemctl reload portcullis.service || fail "systemctl reload failed"
    systemctl is-active --quiet portcullis.service || fail "portcullis.service died on reload"
    grep -q healthy <<<"$body" || fail "the service's /health/readiness said: $body"
    ok "systemctl start/reload under the full sandbox: active and healthy"
  else
    journalctl -u portcullis.service -n 50 --no-pager >&2 || true
    fail "systemctl start portcullis.service failed"
  fi
else
  skip "systemd is not PID 1 here (a container): the sandboxed start, reload and watchdog were not exercised"
fi

# --- upgrade: the operator's config and the data stay ------------------------------------
echo "# edited by packaging/check-deb.sh" >>/etc/portcullis/config.yaml
echo "PORTCULLIS_LOG=info" >>/etc/portcullis/environment
chmod 0644 /etc/portcullis/config.yaml # postinst must put 0640 back
echo marker >/var/lib/portcullis/upgrade-marker
key_before=$(cat /var/lib/portcullis/master.key)
cargo deb --no-build --locked --deb-revision "1+ciupgrade" -o "$work/upgrade.deb" >/dev/null
dpkg -i --force-confdef --force-confold "$work/upgrade.deb"
[ "$(dpkg-query -W -f='${Version}' portcullis)" = "$upstream-1+ciupgrade" ] || fail "the upgrade was not installed"
grep -q "edited by packaging/check-deb.sh" /etc/portcullis/config.yaml || fail "the upgrade lost the edit to config.yaml"
grep -qx "PORTCULLIS_LOG=info" /etc/portcullis/environment || fail "the upgrade lost the edit to environment"
check_perms /etc/portcullis/config.yaml "root:portcullis 640"
[ -f /var/lib/portcullis/upgrade-marker ] && [ -f /var/lib/portcullis/portcullis.redb ] ||
  fail "the upgrade lost files in /var/lib/portcullis"
[ "$(cat /var/lib/portcullis/master.key)" = "$key_before" ] || fail "the upgrade changed the master key"
/usr/bin/portcullis check-config --config /etc/portcullis/config.yaml >/dev/null || fail "check-config after the upgrade"
if [ "$systemd_up" = 1 ]; then
  systemctl is-active --quiet portcullis.service || fail "portcullis.service is not running after the upgrade"
  systemctl stop portcullis.service
fi
ok "upgrade to $upstream-1+ciupgrade kept config.yaml and environment edits, modes, data and master key"

# --- purge --------------------------------------------------------------------------------
if [ "${PORTCULLIS_KEEP_DEB:-0}" = 1 ]; then
  skip "PORTCULLIS_KEEP_DEB=1: the package stays installed"
else
  dpkg --purge portcullis >/dev/null
  for path in /usr/bin/portcullis "$unit" /etc/portcullis /var/lib/portcullis \
    /etc/systemd/system/multi-user.target.wants/portcullis.service; do
    [ ! -e "$path" ] && [ ! -L "$path" ] || fail "$path is still there after purge"
  done
  ok "purge removed the binary, unit, enablement, /etc/portcullis and /var/lib/portcullis"
fi

echo "packaging: $passed passed, 0 failed, $skipped skipped"
