#!/usr/bin/env bash
# Browser test of the admin panel: `heimweg serve` in a gateway namespace, driven by headless
# Chromium (Debian's) through Playwright, with the configs the panel hands out brought up by
# wg-quick (wireguard-go) in client namespaces. The steps and assertions are in
# tests/panel/panel.mjs; this script builds the network, starts the gateway, creates the panel
# accounts with the CLI and runs the browser inside the gateway's namespace, where the panel
# listens on loopback as it does by default.
#
# Usage (as root, from the repo root, after `npm ci` in tests/panel):
#   HEIMWEG=/path/to/heimweg bash tests/netns/panel.sh
# Screenshots go to $HEIMWEG_SCREENSHOTS (default target/panel-screenshots).
#
# Topology: c1, c2 --veth-- br0 in gw (198.51.100.1); lan host 192.0.2.2 behind gw.
set -eEuo pipefail

[[ $(id -u) -eq 0 ]] || { echo "panel.sh: must run as root" >&2; exit 2; }
HW=${HEIMWEG:?set HEIMWEG to the heimweg binary}
for tool in wg wg-quick wireguard-go ip ping node chromium; do
  command -v "$tool" >/dev/null || { echo "panel.sh: missing tool: $tool" >&2; exit 2; }
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ -d $ROOT/tests/panel/node_modules/playwright-core ]] ||
  { echo "panel.sh: run 'npm ci' in tests/panel first" >&2; exit 2; }

T_START=$(date +%s)
ID=$$
PFX="hwpa-$ID"
NS_GW="$PFX-gw"
NS_LAN="$PFX-lan"
NS_C1="$PFX-c1"
NS_C2="$PFX-c2"
ALL_NS=("$NS_GW" "$NS_LAN" "$NS_C1" "$NS_C2")
GWIF="hw${ID}a"
SOCKETS=("$GWIF" "hw${ID}b1" "hw${ID}b2")
WG_RUN=/var/run/wireguard
TMPD=$(mktemp -d /tmp/hwpa.XXXXXX)
STATE="$TMPD/state"
GW_LOG="$TMPD/gateway.log"
GW_PID=""
BG_PIDS=()
PASSED=0
FAILED=0

# shellcheck source=tests/netns/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
diag() { echo "  -- gateway log:"; tail -n 20 "$GW_LOG" 2>/dev/null | sed 's/^/    /' || true; }
hw() { "$HW" --state-dir "$STATE" "$@"; }

gateway_topology 192.0.2.2

ip netns exec "$NS_GW" "$HW" --state-dir "$STATE" serve --interface "$GWIF" --workers 1 \
  --metrics-listen off >>"$GW_LOG" 2>&1 &
GW_PID=$!
check "serve: the gateway comes up" wait_until 15 test -S "$WG_RUN/$GWIF.sock"
check "serve: the banner points a new admin to the panel and to 'admin add'" \
  wait_until 5 grep -q "admin add NAME" "$GW_LOG"

# Accounts as an operator makes them: the first admin with the CLI. Passwords come on stdin.
check "cli: admin add creates the first admin" \
  eval "echo 'alice-password-1' | hw admin add alice --password-stdin 2>/dev/null"
check "cli: a password shorter than 12 characters is refused" \
  eval "! echo 'short' | hw admin add eve --password-stdin 2>/dev/null"
echo 'hilde-password-1' | hw admin add hilde --role helpdesk --password-stdin 2>/dev/null
echo 'bob-password-123' | hw admin add bob --password-stdin 2>/dev/null
check "cli: admin list shows the roles" \
  eval "hw admin list | grep -qE '^hilde +helpdesk' && hw admin list | grep -qE '^alice +admin'"

SHOTS=${HEIMWEG_SCREENSHOTS:-$ROOT/target/panel-screenshots}
mkdir -p "$SHOTS"
log "browser steps (tests/panel/panel.mjs); screenshots in $SHOTS"
set +e
ip netns exec "$NS_GW" env \
  PANEL_URL=http://127.0.0.1:8080 \
  NS_GW="$NS_GW" NS_C1="$NS_C1" NS_C2="$NS_C2" GWIF="$GWIF" \
  CLIENT_IF1="hw${ID}b1" CLIENT_IF2="hw${ID}b2" TMPD="$TMPD" SHOTS="$SHOTS" \
  HEIMWEG="$HW" STATE="$STATE" LAN_HOST=192.0.2.2 ENDPOINT=198.51.100.1:51820 \
  node "$ROOT/tests/panel/panel.mjs"
rc=$?
set -e
if [[ $rc -eq 0 ]]; then pass "browser: every panel step passed"; else fail "browser: panel.mjs failed ($rc)"; fi

summary
[[ $FAILED -eq 0 ]]
