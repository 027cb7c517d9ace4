#!/usr/bin/env bash
# End-to-end test of sign-in through the identity provider: `heimweg serve` in a gateway
# namespace with a real OpenID provider beside it (oidc-provider from npm, tests/oidc). In
# headless Chromium (tests/panel/oidc.mjs) staff sign in on /my and enroll their own devices,
# admins and the helpdesk sign in to the panel, and tampered, expired and replayed answers
# are refused. Then the laptop carol enrolled herself comes up under wg-quick (wireguard-go)
# and reaches her group's network. Then her group requires sign in to connect: her laptop is
# cut off until she signs in afresh with her second factor (tests/panel/connect.mjs; without
# it: refused), passes traffic after it, and is cut off when an admin ends the activation and
# when she ends it herself (each time measured). Last an admin disables her: cut off, her
# device revoked.
# The client secret is in neither the log nor a command line.
#
# Usage (as root, from the repo root, after `npm ci` in tests/panel and tests/oidc):
#   HEIMWEG=/path/to/heimweg bash tests/netns/oidc.sh
set -eEuo pipefail

[[ $(id -u) -eq 0 ]] || { echo "oidc.sh: must run as root" >&2; exit 2; }
HW=${HEIMWEG:?set HEIMWEG to the heimweg binary}
for tool in wg wg-quick wireguard-go ip ping node chromium; do
  command -v "$tool" >/dev/null || { echo "oidc.sh: missing tool: $tool" >&2; exit 2; }
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

T_START=$(date +%s)
ID=$$
PFX="hwoidc-$ID"
NS_GW="$PFX-gw"
NS_LAN="$PFX-lan"
NS_C1="$PFX-c1"
NS_C2="$PFX-c2"
ALL_NS=("$NS_GW" "$NS_LAN" "$NS_C1" "$NS_C2")
GWIF="hw${ID}o"
SOCKETS=("$GWIF" "carol0")
WG_RUN=/var/run/wireguard
TMPD=$(mktemp -d /tmp/hwoidc.XXXXXX)
STATE="$TMPD/state"
GW_LOG="$TMPD/gateway.log"
GW_PID=""
BG_PIDS=()
PASSED=0
FAILED=0
ALLOWED=192.0.2.2
PROVIDER_PORT=9391

# shellcheck source=tests/netns/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
diag() {
  echo "  -- gateway log:"; tail -n 15 "$GW_LOG" 2>/dev/null | sed 's/^/    /' || true
  echo "  -- provider log:"; tail -n 10 "$TMPD/provider.err" 2>/dev/null | sed 's/^/    /' || true
}
hw() { ip netns exec "$NS_GW" env HEIMWEG_ENV_FILE="$TMPD/env" "$HW" --state-dir "$STATE" "$@" 2>>"$TMPD/cli.log"; }

gateway_topology "$ALLOWED"

start_provider() {
  ip netns exec "$NS_GW" env PORT=$PROVIDER_PORT REDIRECT_URI=http://127.0.0.1:8080/oidc/callback \
    node "$ROOT/tests/oidc/provider.mjs" >"$TMPD/provider.out" 2>"$TMPD/provider.err" &
  BG_PIDS+=($!)
  wait_until 15 grep -q '^READY' "$TMPD/provider.out"
}
check "provider: oidc-provider answers in the gateway's namespace" start_provider

# The settings file, as an admin writes /etc/heimweg/env: the client secret only here (0600).
( umask 077; cat >"$TMPD/env" <<EOF
HEIMWEG_PUBLIC_URL=http://127.0.0.1:8080
HEIMWEG_OIDC_ISSUER=http://127.0.0.1:$PROVIDER_PORT
HEIMWEG_OIDC_CLIENT_ID=heimweg
HEIMWEG_OIDC_CLIENT_SECRET=heimweg-secret
HEIMWEG_OIDC_SCOPES=profile email groups
HEIMWEG_OIDC_GROUPS=staff=vpn-users;tiefbau=Straßenbau, Tiefbau
HEIMWEG_OIDC_ADMIN_GROUPS=heimweg-admins
HEIMWEG_OIDC_HELPDESK_GROUPS=heimweg-helpdesk
HEIMWEG_OIDC_DEVICE_LIMIT=2
HEIMWEG_OIDC_CONNECT_AMR=otp mfa
EOF
)

check "serve: the gateway comes up with the provider's settings" serve_with_settings
hw settings endpoint 198.51.100.1:51820 >/dev/null
hw group add staff --allow 192.0.2.0/25 >/dev/null
hw group add tiefbau --allow 192.0.2.128/25 >/dev/null

SHOTS=${HEIMWEG_SCREENSHOTS:-$ROOT/target/panel-screenshots}
mkdir -p "$SHOTS"
check "browser: staff and admins sign in through the provider; bad answers are refused" \
  nsx "$NS_GW" env PANEL_URL=http://127.0.0.1:8080 PROVIDER_URL=http://127.0.0.1:$PROVIDER_PORT \
    SHOTS="$SHOTS" TMPD="$TMPD" node "$ROOT/tests/panel/oidc.mjs"

check "users: the sign-ins made carol and jürgen users, not dave; alice and bob panel accounts" \
  eval "hw user list | grep -q '^carol ' && hw user list | grep -q '^jürgen ' && ! hw user list | grep -q '^dave ' && hw admin list | grep -qE '^alice +admin' && hw admin list | grep -qE '^bob +helpdesk'"
TOKEN=$(hw token create audit --scope audit:read 2>/dev/null)
nsx "$NS_GW" python3 - "$TOKEN" >"$TMPD/audit.json" <<'EOF'
import sys, urllib.request
r = urllib.request.Request("http://127.0.0.1:8080/api/v1/audit?limit=200",
                           headers={"Authorization": "Bearer " + sys.argv[1]})
print(urllib.request.urlopen(r, timeout=30).read().decode())
EOF
check "audit: carol's own enrollment and revocation are recorded as hers, sign-ins and roles too" \
  python3 - "$TMPD/audit.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
entries = d["items"] if isinstance(d, dict) else d
seen = {(e["actor"], e["action"]) for e in entries}
for want in [("staff:carol", "device.create"), ("staff:carol", "device.revoke"),
             ("staff:carol", "user.sign_in"), ("staff:carol", "user.create"),
             ("admin:alice", "admin.create"), ("admin:alice", "admin.login")]:
    assert want in seen, (want, sorted(seen))
EOF

# The laptop carol enrolled on her own page, under the stock client. wg-quick names the
# interface after the file.
cp "$TMPD/carol.conf" "$TMPD/carol0.conf"
check "tunnel: the config from her own page comes up under wg-quick" \
  nsx "$NS_C1" env WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go LOG_LEVEL=error \
    wg-quick up "$TMPD/carol0.conf"
check "tunnel: carol's laptop reaches her group's network" wait_until 15 ping_ok "$NS_C1" "$ALLOWED"
# For the times: a ping answered within 0.2 s (the namespaces' round trip is well under a
# millisecond), polled every 0.2 s, so a time is good to about 0.4 s.
answered() { nsx "$NS_C1" ping -c 1 -W 0.2 -q "$ALLOWED" >/dev/null 2>&1; }
cut_off() { ! answered; }

# Sign in to connect: her group now requires a sign-in with a second factor, for an hour.
# Each browser step (tests/panel/connect.mjs) prints when the gateway answered; the shell then
# measures what her tunnel does.
connect_step() {
  nsx "$NS_GW" env PANEL_URL=http://127.0.0.1:8080 PROVIDER_URL=http://127.0.0.1:$PROVIDER_PORT \
    SHOTS="$SHOTS" STEP="$1" node "$ROOT/tests/panel/connect.mjs" >"$TMPD/connect-$1.out" 2>&1
  local rc=$?
  sed 's/^/    /' "$TMPD/connect-$1.out"
  return $rc
}
stamp() { sed -n "s/^$1=//p" "$TMPD/connect-$2.out"; }
ms_since() { echo $(( $(date +%s%3N) - $1 )); }
# As for a laptop in use for a while: the gateway has recorded where it connects from (its
# status, every 10 s), which lets it start the handshake itself when the laptop returns.
recorded() { hw device list | grep -qE '^carol-laptop .* s ago'; }
check "status: the gateway recorded carol's laptop's handshake and endpoint" wait_until 20 recorded
hw group set staff --sign-in-hours 1 >/dev/null
check "sign in to connect: the group requires it, and carol's laptop is cut off until she does" \
  wait_until 10 cut_off
if connect_step activate; then
  pass "browser: carol signs in to connect with her second factor (without it: refused)"
  if wait_until 30 answered; then
    ACT_MS=$(ms_since "$(stamp ACTIVATED_AT_MS activate)")
    pass "sign in to connect: her laptop passes traffic again, ${ACT_MS} ms after the sign-in"
    echo "ACTIVATION_TO_TRAFFIC_MS=$ACT_MS"
  else
    fail "sign in to connect: her laptop passes traffic after the sign-in"
  fi
else
  fail "browser: carol signs in to connect with her second factor"
fi
check "activations: the API and the CLI list carol's" eval "hw user activations | grep -q '^carol '"
T0=$(date +%s%3N)
hw user end-activation carol >/dev/null
if wait_until 10 cut_off; then
  CUT_MS=$(ms_since "$T0")
  pass "sign in to connect: an admin ends carol's activation; her laptop is cut off ${CUT_MS} ms later"
  echo "ADMIN_END_CUTOFF_MS=$CUT_MS"
else
  fail "sign in to connect: an admin ends carol's activation; her laptop is cut off"
fi
if connect_step end && wait_until 10 cut_off; then
  CUT_MS=$(ms_since "$(stamp ENDED_AT_MS end)")
  pass "sign in to connect: carol connects again and ends it herself; cut off ${CUT_MS} ms after her click"
  echo "OWN_END_CUTOFF_MS=$CUT_MS"
else
  fail "sign in to connect: carol connects again and ends it herself; cut off"
fi
hw group set staff --sign-in-hours 0 >/dev/null
check "sign in to connect, turned off: her laptop connects without it" wait_until 30 ping_ok "$NS_C1" "$ALLOWED"

hw user disable carol >/dev/null
T0=$(date +%s%N)
if wait_until 10 cut_off; then
  CUT_MS=$((($(date +%s%N) - T0) / 1000000))
  pass "disabled: an admin disables carol; her laptop is cut off ${CUT_MS} ms later"
  echo "DISABLED_CUTOFF_MS=$CUT_MS"
else
  fail "disabled: an admin disables carol; her laptop is cut off"
fi
check "serve: the userinfo endpoint was asked once, for the one person whose ID token has no groups" \
  eval "[[ \$(grep -cE '^(GET|POST) /me 200' '$TMPD/provider.err') -eq 1 ]]"
check "serve: the rotated key was fetched when a token named it (not before, not by polling)" \
  grep -q "key not seen yet" "$GW_LOG"
check "serve: the client secret is in neither the log nor the command line" \
  eval "! grep -q heimweg-secret '$GW_LOG' && ! grep -q heimweg-secret /proc/$GW_PID/cmdline"

nsx "$NS_C1" wg-quick down "$TMPD/carol0.conf" >>"$TMPD/wg-quick.log" 2>&1 || true
summary
[[ $FAILED -eq 0 ]]
