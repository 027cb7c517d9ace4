#!/usr/bin/env bash
# Two gateways on one PostgreSQL database, as an active/standby pair sharing the gateway key.
#
# Usage (as root, from the repo root; HEIMWEG_DATABASE_URL names an empty PostgreSQL database):
#   HEIMWEG=/path/to/heimweg HEIMWEG_DATABASE_URL=postgres://… bash tests/netns/multigateway.sh
#
# Topology: gateways a (198.51.100.1) and b (198.51.100.2) and client c (198.51.100.11) on one
# bridge. Both gateways run `heimweg serve` against the same database; b got a's server.key.
# Asserts: a device enrolled through a's API becomes a peer on b within a second (PostgreSQL
# NOTIFY, no restart); the client connects through a; b learns from the store where a saw the
# device; when a dies and the client is pointed at b (what a DNS or VIP move does), b starts the
# handshake on the client's first packet and the same config works through b within seconds,
# not wireguard-go's 15; an absence entered and ended with the CLI holds the device on b and
# lets it back within a second; once the tablet's group requires sign in to connect, its
# owner's sign-in on a (restarted with a slapd beside it, directory password and a TOTP code)
# gives it back to b within a second and an admin's end takes it away within a second (each
# timed); a revocation made with the CLI reaches b within a second; b's handshake is written
# back to the shared store.
# Prints PASS/FAIL lines and finally "N passed, M failed"; exits 1 if any failed.
set -eEuo pipefail

[[ $(id -u) -eq 0 ]] || { echo "multigateway.sh: must run as root" >&2; exit 2; }
HW=${HEIMWEG:?set HEIMWEG to the heimweg binary}
: "${HEIMWEG_DATABASE_URL:?set HEIMWEG_DATABASE_URL to an empty PostgreSQL database}"
export HEIMWEG_DATABASE_URL
for tool in wg wg-quick wireguard-go ip ping python3 slapd; do
  command -v "$tool" >/dev/null || { echo "multigateway.sh: missing tool: $tool" >&2; exit 2; }
done

T_START=$(date +%s)
ID=$$
PFX="hwmg-$ID"
NS_NET="$PFX-net"
NS_A="$PFX-a"
NS_B="$PFX-b"
NS_C="$PFX-c"
ALL_NS=("$NS_NET" "$NS_A" "$NS_B" "$NS_C")
IF_A="hw${ID}a"
IF_B="hw${ID}b"
IF_C="hw${ID}c"
SOCKETS=("$IF_A" "$IF_B" "$IF_C")
WG_RUN=/var/run/wireguard
TMPD=$(mktemp -d /tmp/hwmg.XXXXXX)
GW_PID=""
PID_A=""
PID_B=""
BG_PIDS=()
PASSED=0
FAILED=0

# shellcheck source=tests/netns/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

diag() {
  for f in a b; do
    echo "  -- gateway $f log:"; tail -n 8 "$TMPD/$f.log" 2>/dev/null | sed 's/^/    /' || true
  done
}

# ---- topology: one bridge, two gateways, one client ----
for ns in "${ALL_NS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$NS_NET" link add br0 type bridge; ip -n "$NS_NET" link set br0 up
n=0
for pair in "$NS_A:198.51.100.1" "$NS_B:198.51.100.2" "$NS_C:198.51.100.11"; do
  n=$((n + 1)); ns=${pair%%:*}; addr=${pair#*:}
  ip link add "p$n" netns "$NS_NET" type veth peer name eth0 netns "$ns"
  ip -n "$NS_NET" link set "p$n" master br0 up
  ip -n "$ns" addr add "$addr/24" dev eth0; ip -n "$ns" link set eth0 up
done

start() { # NAME NS IF: `heimweg serve` in NS with its own state directory
  # `ip netns exec` itself so that $! is the gateway, not a subshell.
  ip netns exec "$2" "$HW" --state-dir "$TMPD/$1" serve --interface "$3" --workers 1 \
    --metrics-listen off >>"$TMPD/$1.log" 2>&1 &
}
hw() { "$HW" --state-dir "$TMPD/a" "$@"; }
peers() { nsx "$1" wg show "$2" peers | grep -c . || true; }
tunnel_answers() { nsx "$NS_C" ping -c 1 -W 1 -q 10.77.0.1 >/dev/null 2>&1; }

start a "$NS_A" "$IF_A"; PID_A=$!; BG_PIDS+=("$PID_A")
check "a: first start on the empty database creates schema, defaults and key" \
  wait_until 15 test -S "$WG_RUN/$IF_A.sock"
mkdir -m 0700 "$TMPD/b"
install -m 0600 "$TMPD/a/server.key" "$TMPD/b/server.key"
start b "$NS_B" "$IF_B"; PID_B=$!; BG_PIDS+=("$PID_B")
check "b: starts on the same database with a's key" wait_until 15 test -S "$WG_RUN/$IF_B.sock"
check "b: has the same public key as a" \
  eval "[[ \$(nsx '$NS_A' wg show '$IF_A' public-key) == \$(nsx '$NS_B' wg show '$IF_B' public-key) ]]"

hw settings endpoint 198.51.100.1:51820 >/dev/null
TOKEN=$(hw token create mg --scope devices:write --scope devices:read 2>/dev/null)
enroll() { # through gateway a's API
  nsx "$NS_A" python3 - "$TOKEN" <<'EOF'
import json, sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:8080/api/v1/devices", method="POST",
    data=json.dumps({"name": "tablet-1"}).encode(),
    headers={"Authorization": "Bearer " + sys.argv[1], "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req, timeout=5))["config"], end="")
EOF
}
wait_until 10 eval "nsx '$NS_A' python3 -c 'import urllib.request as u; u.urlopen(\"http://127.0.0.1:8080/api/v1/openapi.json\", timeout=2)'"
( umask 077; enroll >"$TMPD/$IF_C.conf" )
t0=$(date +%s%N)
check "enroll: the device enrolled on a is a peer on a and on b within a second" \
  wait_until 1 eval "[[ \$(peers '$NS_A' '$IF_A') -eq 1 && \$(peers '$NS_B' '$IF_B') -eq 1 ]]"
log "b had the peer $(( ($(date +%s%N) - t0) / 1000000 )) ms after the API answered"

nsx "$NS_C" env WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go LOG_LEVEL=error \
  wg-quick up "$TMPD/$IF_C.conf" >>"$TMPD/wg-quick.log" 2>&1
check "traffic: the client reaches the gateway address through a" wait_until 15 tunnel_answers

# ---- failover: a dies, the client's traffic goes to b ----
# a writes back where it sees the device, b reads everyone's (each every 10 s): b takes it as
# the device's endpoint hint.
CLIENT_EP=$(nsx "$NS_A" wg show "$IF_A" endpoints | awk 'NR == 1 {print $2}')
check "hint: b learns from the store where a sees the device ($CLIENT_EP)" \
  wait_until 25 eval "nsx '$NS_B' wg show '$IF_B' endpoints | grep -qF '$CLIENT_EP'"
# A ping every 100 ms with timestamps, across the failover.
nsx "$NS_C" ping -D -i 0.1 -W 1 10.77.0.1 >"$TMPD/ping.log" 2>&1 &
BG_PIDS+=("$!")
kill -KILL "$PID_A"; wait "$PID_A" 2>/dev/null || true
GWPUB=$(nsx "$NS_B" wg show "$IF_B" public-key)
t_switch=$(date +%s.%N)
nsx "$NS_C" wg set "$IF_C" peer "$GWPUB" endpoint 198.51.100.2:51820
check "failover: the same config works through b" wait_until 20 tunnel_answers
# The client keeps sending on a's session; b does not know it, sees that it comes from where the
# store saw the device, and starts a handshake at once. Without that, wireguard-go starts one
# itself only after 15 s (keepalive timeout plus rekey timeout).
moved_ms=$(awk -v t="$t_switch" '/bytes from/ { s = $1; gsub(/[][]/, "", s);
  if (s + 0 > t + 0) { printf "%d", (s - t) * 1000; exit } }' "$TMPD/ping.log")
log "the client's traffic went through b ${moved_ms:-never} ms after the switch"
check "failover: b started the handshake, traffic flows within 5 s (wireguard-go alone: 15 s)" \
  eval "[[ -n '$moved_ms' && '$moved_ms' -lt 5000 ]]"
check "status: b's handshake reaches the shared store" \
  wait_until 20 eval "hw device list | grep -q ' s ago '"

# ---- an absence entered anywhere holds the device on b, and its end brings it back ----
t0=$(date +%s%N)
hw absence add --device tablet-1 --from "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --until "$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)" --reason e2e >/dev/null
check "absence: the CLI's absence removed the peer from b within a second" \
  wait_until 1 eval "[[ \$(peers '$NS_B' '$IF_B') -eq 0 ]]"
echo "ABSENCE_ON_SECOND_GATEWAY_MS=$(( ($(date +%s%N) - t0) / 1000000 ))"
check "absence: the client is cut off" eval "! tunnel_answers"
absence_id=$(hw absence list | awk 'NR == 1 {print $1}')
t0=$(date +%s%N)
hw absence end "$absence_id" >/dev/null
check "absence ended: b has the peer again within a second" \
  wait_until 1 eval "[[ \$(peers '$NS_B' '$IF_B') -eq 1 ]]"
echo "ABSENCE_END_ON_SECOND_GATEWAY_MS=$(( ($(date +%s%N) - t0) / 1000000 ))"
check "absence ended: the client's traffic flows again through b" wait_until 20 tunnel_answers

# ---- sign in to connect on a, traffic through b ----
# a comes back with the city's directory (a slapd beside it, on its loopback) and staff signing
# in with the directory password; the tablet is bob's, and its group requires sign in to
# connect. bob signs in on a's staff page (HTTP as a browser sends it; the code computed as an
# authenticator app does); his tablet's traffic goes through b.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LDAP="$TMPD/ldap"; mkdir -p "$LDAP"
LDAP_ENV=(HEIMWEG_LDAP_URL=ldap://127.0.0.1:3890 HEIMWEG_LDAP_KIND=ldap
  HEIMWEG_LDAP_BASE=ou=people,dc=stadt,dc=example
  HEIMWEG_LDAP_GROUPS=default=cn=vpn-users,ou=groups,dc=stadt,dc=example
  HEIMWEG_LDAP_BIND_DN=cn=heimweg,ou=services,dc=stadt,dc=example
  HEIMWEG_LDAP_BIND_PASSWORD=reader-secret HEIMWEG_LDAP_PLAINTEXT=true
  HEIMWEG_DIRECTORY_SIGN_IN=true)
check "ldap: slapd answers beside gateway a" \
  nsx "$NS_A" bash "$ROOT/tests/directory/slapd.sh" start "$LDAP" 3890
hw device set tablet-1 --owner bob >/dev/null
check "directory: a sync makes bob (the tablet's owner) a user of the directory" \
  eval "nsx '$NS_A' env ${LDAP_ENV[*]} '$HW' --state-dir '$TMPD/a' directory sync | grep -q ' ok '"
ip netns exec "$NS_A" env "${LDAP_ENV[@]}" "$HW" --state-dir "$TMPD/a" serve --interface "$IF_A" \
  --workers 1 --metrics-listen off >>"$TMPD/a.log" 2>&1 &
PID_A=$!; BG_PIDS+=("$PID_A")
check "a: back, staff sign in there with the directory password" \
  wait_until 15 eval "nsx '$NS_A' python3 -c 'import urllib.request as u; u.urlopen(\"http://127.0.0.1:8080/my\", timeout=2)'"
hw group set default --sign-in-hours 1 >/dev/null
check "sign in to connect: the group requires it, so b holds the tablet" \
  wait_until 1 eval "[[ \$(peers '$NS_B' '$IF_B') -eq 0 ]]"
sign_in() { # bob's first sign-in on a's staff page; prints when a answered the code (ms)
  nsx "$NS_A" python3 - <<'EOF'
import base64, hashlib, hmac, html, re, struct, time
import urllib.error, urllib.parse, urllib.request
BASE = "http://127.0.0.1:8080"
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
web = urllib.request.build_opener(Stay)
first = web.open(BASE + "/my", timeout=10)
# The form token's cookie, sent back as a browser does.
cookie = first.headers["Set-Cookie"].split(";")[0]
def post(path, form):
    req = urllib.request.Request(BASE + path, data=urllib.parse.urlencode(form).encode(),
                                 headers={"Origin": BASE, "Cookie": cookie})
    try:
        r = web.open(req, timeout=10)
        return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
def field(page, name):
    return html.unescape(re.search(r'name="%s" value="([^"]*)"' % name, page).group(1))
def totp(key, step):  # RFC 6238: HMAC-SHA-1, six digits, 30 s
    secret = base64.b32decode(key + "=" * (-len(key) % 8))
    h = hmac.new(secret, struct.pack(">Q", step), hashlib.sha1).digest()
    o = h[-1] & 15
    return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)
csrf = field(first.read().decode(), "_csrf")
status, page = post("/my/sign-in", {"_csrf": csrf, "login": "bob", "password": "builder"})
assert status == 200, (status, page)
key = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
status, page = post("/my/sign-in/code", {"_csrf": csrf, "note": field(page, "note"),
                                         "code": totp(key, int(time.time()) // 30)})
assert status == 303, (status, page)
print(time.time_ns() // 1_000_000)
EOF
}
if SIGNED_IN_MS=$(sign_in); then
  pass "sign in to connect: bob signs in on a with his directory password and a new second factor"
  check "sign in to connect: b has the tablet again within a second" \
    wait_until 1 eval "[[ \$(peers '$NS_B' '$IF_B') -eq 1 ]]"
  echo "ACTIVATION_ON_SECOND_GATEWAY_MS=$(( $(date +%s%3N) - SIGNED_IN_MS ))"
  check "sign in to connect: the tablet's traffic flows through b" wait_until 20 tunnel_answers
  echo "ACTIVATION_TO_TRAFFIC_ON_SECOND_GATEWAY_MS=$(( $(date +%s%3N) - SIGNED_IN_MS ))"
else
  fail "sign in to connect: bob signs in on a with his directory password and a new second factor"
fi
t0=$(date +%s%N)
hw user end-activation bob >/dev/null
check "sign in to connect ended by an admin: b drops the tablet within a second" \
  wait_until 1 eval "[[ \$(peers '$NS_B' '$IF_B') -eq 0 ]]"
echo "ACTIVATION_END_ON_SECOND_GATEWAY_MS=$(( ($(date +%s%N) - t0) / 1000000 ))"
check "sign in to connect ended: the client is cut off" eval "! tunnel_answers"
hw group set default --sign-in-hours 0 >/dev/null
check "sign in to connect off: b has the tablet again" \
  wait_until 1 eval "[[ \$(peers '$NS_B' '$IF_B') -eq 1 ]]"

# ---- a revocation made anywhere reaches b ----
hw device revoke tablet-1 >/dev/null
check "revoke: the CLI's revocation removed the peer from b within a second" \
  wait_until 1 eval "[[ \$(peers '$NS_B' '$IF_B') -eq 0 ]]"
check "revoke: the client is cut off" eval "! tunnel_answers"

summary
[[ $FAILED -eq 0 ]]
