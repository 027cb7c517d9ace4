#!/usr/bin/env bash
# End-to-end test of the directory sync: `heimweg serve` in a gateway namespace reads a real
# OpenLDAP directory (slapd, tests/directory/slapd.sh, StartTLS with a test CA, a reading
# account) every 10 s. Two staff members' stock WireGuard clients (wireguard-go under wg-quick)
# reach their group's network; when one account is locked in the directory, that client is cut
# off within the interval (the time is measured and printed) and the other is not. With
# HEIMWEG_DIRECTORY_SIGN_IN, bob's group then requires sign in to connect: in headless Chromium
# he signs in with his directory password and sets up a TOTP second factor; five wrong codes
# lock it (tests/panel/ldapconnect.mjs). A directory
# that is down, and one whose VPN group was emptied, revoke nothing. The API and the command
# line run a sync on demand; the bind password is in neither the log nor a command line.
#
# The panel's directory page is checked in headless Chromium (tests/panel/directory.mjs;
# screenshots in $HEIMWEG_SCREENSHOTS, default target/panel-screenshots).
#
# Usage (as root, from the repo root, after `npm ci` in tests/panel):
#   HEIMWEG=/path/to/heimweg bash tests/netns/directory.sh
set -eEuo pipefail

[[ $(id -u) -eq 0 ]] || { echo "directory.sh: must run as root" >&2; exit 2; }
HW=${HEIMWEG:?set HEIMWEG to the heimweg binary}
for tool in wg wg-quick wireguard-go ip ping slapd ldapsearch openssl python3 node chromium; do
  command -v "$tool" >/dev/null || { echo "directory.sh: missing tool: $tool" >&2; exit 2; }
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

T_START=$(date +%s)
ID=$$
PFX="hwdir-$ID"
NS_GW="$PFX-gw"
NS_LAN="$PFX-lan"
NS_C1="$PFX-c1"
NS_C2="$PFX-c2"
ALL_NS=("$NS_GW" "$NS_LAN" "$NS_C1" "$NS_C2")
GWIF="hw${ID}d"
SOCKETS=("$GWIF" "hw${ID}a" "hw${ID}b")
WG_RUN=/var/run/wireguard
TMPD=$(mktemp -d /tmp/hwdir.XXXXXX)
STATE="$TMPD/state"
LDAP="$TMPD/ldap"
GW_LOG="$TMPD/gateway.log"
GW_PID=""
BG_PIDS=()
PASSED=0
FAILED=0
ALLOWED=192.0.2.2
INTERVAL=10

# shellcheck source=tests/netns/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
diag() {
  echo "  -- gateway log:"; tail -n 15 "$GW_LOG" 2>/dev/null | sed 's/^/    /' || true
  echo "  -- runs:"; hw directory runs --limit 5 2>&1 | sed 's/^/    /' || true
}
# The command line in the gateway's namespace, where the directory is reachable, with the
# gateway's settings file.
hw() { ip netns exec "$NS_GW" env HEIMWEG_ENV_FILE="$TMPD/env" "$HW" --state-dir "$STATE" "$@" 2>>"$TMPD/cli.log"; }
slapd_ctl() { nsx "$NS_GW" bash "$ROOT/tests/directory/slapd.sh" "$1" "$LDAP" "${@:2}"; }

gateway_topology "$ALLOWED"
mkdir -p "$LDAP"
bash "$ROOT/tests/mail/certs.sh" "$LDAP"
check "ldap: slapd answers in the gateway's namespace (StartTLS, test CA)" slapd_ctl start 3890

# The settings file, as an admin writes /etc/heimweg/env: the password only here (0600).
( umask 077; cat >"$TMPD/env" <<EOF
HEIMWEG_LDAP_URL=ldap://127.0.0.1:3890
HEIMWEG_LDAP_KIND=ldap
HEIMWEG_LDAP_BASE=ou=people,dc=stadt,dc=example
HEIMWEG_LDAP_GROUPS=staff=cn=vpn-users,ou=groups,dc=stadt,dc=example
HEIMWEG_LDAP_BIND_DN=cn=heimweg,ou=services,dc=stadt,dc=example
HEIMWEG_LDAP_BIND_PASSWORD=reader-secret
HEIMWEG_LDAP_CA_FILE=$LDAP/ca.crt
HEIMWEG_LDAP_INTERVAL=${INTERVAL}s
HEIMWEG_DIRECTORY_SIGN_IN=true
EOF
)

check "serve: the gateway comes up with the directory settings" serve_with_settings
hw settings endpoint 198.51.100.1:51820 >/dev/null
# Its first run found no group "staff" yet: a failed run that says so, nothing changed.
check "sync: a mapping to a missing group is a failed run that names it" \
  wait_until 15 eval "hw directory runs | grep -A1 failed | grep -q 'staff.*does not exist'"
hw group add staff --allow 192.0.2.0/25 >/dev/null
check "sync: a dry run says what a run would do and changes nothing" \
  eval "hw directory sync --dry-run | grep -q 'would create 3, change 0, disable 0' && ! hw user list | grep -q alice"
check "sync: on demand from the command line, the three staff members are users" \
  eval "hw directory sync | grep -q '^.* ok (by cli:root): 3 entries, 3 created'"
check "serve: the bind password is in neither the log nor the command line" \
  eval "! grep -q reader-secret '$GW_LOG' && ! grep -q reader-secret /proc/$GW_PID/cmdline"

up() { # NS DEVICE OWNER IFNAME: enrolls DEVICE for OWNER and brings it up with wg-quick in NS
  hw device add "$2" --group staff --owner "$3" --no-qr >"$TMPD/$4.conf"
  nsx "$1" env WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go LOG_LEVEL=error \
    wg-quick up "$TMPD/$4.conf" >>"$TMPD/wg-quick.log" 2>&1
}
up "$NS_C1" alice-laptop alice "hw${ID}a"
up "$NS_C2" bob-laptop bob "hw${ID}b"
check "tunnel: alice's and bob's stock clients reach the group's network" \
  eval "wait_until 15 ping_ok '$NS_C1' $ALLOWED && wait_until 15 ping_ok '$NS_C2' $ALLOWED"

# Locked in the directory: the next scheduled run revokes alice's device, and her client's
# packets stop at the gateway. Measured from the lock to the first unanswered ping.
slapd_ctl lock alice
T0=$(date +%s%N)
cut_off() { ! ping_ok "$NS_C1" "$ALLOWED"; }
if wait_until $((INTERVAL + 10)) cut_off; then
  CUT_MS=$((($(date +%s%N) - T0) / 1000000))
  pass "locked: alice's client is cut off ${CUT_MS} ms after the lock (interval ${INTERVAL} s)"
  echo "DIRECTORY_CUTOFF_MS=$CUT_MS"
else
  fail "locked: alice's client is cut off within the interval"
fi
check "locked: alice's device is revoked by the directory, bob's still works" \
  eval "hw device list | grep -qE '^alice-laptop .*revoked' && ping_ok '$NS_C2' $ALLOWED"
check "audit: the revocation is the directory's doing" \
  eval "hw directory runs | grep -qE 'ok \\(by system\\): 3 entries, 0 created, 0 changed, 1 disabled'"

# Sign in to connect without an identity provider: bob's group requires it, so his laptop is
# cut off until he signs in on /my with his directory password and a code from the second
# factor he sets up there (tests/panel/ldapconnect.mjs computes the codes). Measured from the
# gateway's answer to the code to his first answered ping, and from an admin ending it to the
# first unanswered one.
SHOTS=${HEIMWEG_SCREENSHOTS:-$ROOT/target/panel-screenshots}
mkdir -p "$SHOTS"
bob_answered() { nsx "$NS_C2" ping -c 1 -W 0.2 -q "$ALLOWED" >/dev/null 2>&1; }
bob_cut_off() { ! bob_answered; }
ldap_step() {
  nsx "$NS_GW" env PANEL_URL=http://127.0.0.1:8080 SHOTS="$SHOTS" STEP="$1" STATE="$TMPD/totp.json" \
    node "$ROOT/tests/panel/ldapconnect.mjs" >"$TMPD/ldap-$1.out" 2>&1
  local rc=$?
  sed 's/^/    /' "$TMPD/ldap-$1.out"
  return $rc
}
hw group set staff --sign-in-hours 1 >/dev/null
check "sign in to connect: bob's group requires it, and his laptop is cut off" \
  wait_until 10 bob_cut_off
if ldap_step activate; then
  pass "browser: bob signs in with his directory password and sets up his second factor (a wrong code: refused)"
  if wait_until 30 bob_answered; then
    ACT_MS=$(( $(date +%s%3N) - $(sed -n 's/^ACTIVATED_AT_MS=//p' "$TMPD/ldap-activate.out") ))
    pass "sign in to connect: his laptop passes traffic again, ${ACT_MS} ms after the sign-in"
    echo "LDAP_ACTIVATION_TO_TRAFFIC_MS=$ACT_MS"
  else
    fail "sign in to connect: his laptop passes traffic after the sign-in"
  fi
else
  fail "browser: bob signs in with his directory password and a second factor"
fi
T0=$(date +%s%3N)
hw user end-activation bob >/dev/null
if wait_until 10 bob_cut_off; then
  END_MS=$(( $(date +%s%3N) - T0 ))
  pass "sign in to connect: an admin ends it, and bob is cut off ${END_MS} ms later"
  echo "LDAP_ADMIN_END_CUTOFF_MS=$END_MS"
else
  fail "sign in to connect: an admin ends it, and bob is cut off"
fi
if ldap_step again; then
  pass "browser: bob signs in again, ends it himself, and connects on his page with password and code (a wrong code: refused)"
  check "sign in to connect: his laptop passes traffic after password and code on his page" \
    wait_until 30 bob_answered
else
  fail "browser: bob signs in again and connects on his page with password and code"
fi
check "browser: five wrong codes lock bob's sign-in; his right password then finds it locked" \
  ldap_step lock
check "cli: an admin resets his second factor" \
  eval "hw user reset-second-factor bob | grep -q 'sets up a new one'"
hw group set staff --sign-in-hours 0 >/dev/null
check "sign in to connect off again: bob's laptop reaches the network by itself" \
  wait_until 30 bob_answered

# The directory goes away: a failed run, and bob stays connected.
slapd_ctl stop
RUNS_BEFORE=$(hw directory runs --limit 500 | grep -c '^[0-9]')
check "down: the next scheduled run fails and says why" \
  wait_until $((INTERVAL + 10)) eval "hw directory runs | head -n 2 | grep -q 'failed' && [[ \$(hw directory runs --limit 500 | grep -c '^[0-9]') -gt $RUNS_BEFORE ]]"
check "down: bob still reaches the network" ping_ok "$NS_C2" "$ALLOWED"

# Back, but the VPN group emptied by mistake: refused, nothing revoked.
slapd_ctl start 3890
slapd_ctl empty-group vpn-users
TOKEN=$(hw token create sync --scope users:write --scope devices:write --scope users:read 2>/dev/null)
api() { # METHOD PATH: the JSON API in the gateway's namespace with the sync token
  nsx "$NS_GW" python3 - "$1" "$2" "$TOKEN" <<'EOF'
import json, sys, urllib.request
r = urllib.request.Request("http://127.0.0.1:8080" + sys.argv[2], method=sys.argv[1],
                           headers={"Authorization": "Bearer " + sys.argv[3]})
print(urllib.request.urlopen(r, timeout=30).read().decode())
EOF
}
api POST /api/v1/directory/sync >"$TMPD/sync.json"
check "emptied: a sync over the API is refused and revokes nothing" \
  python3 - "$TMPD/sync.json" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
assert run["outcome"] == "refused" and run["disabled"] == 0, run
assert "named nobody" in run["message"], run
EOF
check "emptied: bob still reaches the network" ping_ok "$NS_C2" "$ALLOWED"
api GET /api/v1/directory >"$TMPD/directory.json"
check "api: the settings and runs are listed, the password is not" \
  python3 - "$TMPD/directory.json" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text)
assert "reader-secret" not in text
assert d["settings"]["security"] == "starttls" and d["settings"]["own_ca"] is True, d["settings"]
assert d["settings"]["groups"] == [{"group": "staff", "directory_group": "cn=vpn-users,ou=groups,dc=stadt,dc=example"}]
assert [r["outcome"] for r in d["runs"][:2]] == ["refused", "failed"], d["runs"][:3]
EOF

# The panel's directory page in headless Chromium, as an admin, with the runs so far.
echo 'it-admin-password-1' | hw admin add it-admin --password-stdin >/dev/null
check "browser: the directory page shows the settings, the mapping and the runs, and runs a sync" \
  nsx "$NS_GW" env PANEL_URL=http://127.0.0.1:8080 SHOTS="$SHOTS" ADMIN_PASSWORD=it-admin-password-1 \
    node "$ROOT/tests/panel/directory.mjs"

for n in a b; do
  nsx "$([[ $n == a ]] && echo "$NS_C1" || echo "$NS_C2")" wg-quick down "$TMPD/hw${ID}$n.conf" >>"$TMPD/wg-quick.log" 2>&1 || true
done
slapd_ctl stop || true
summary
[[ $FAILED -eq 0 ]]
