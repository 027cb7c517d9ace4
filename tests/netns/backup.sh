#!/usr/bin/env bash
# End-to-end backup and restore: `heimweg backup` of a running gateway's SQLite store, then a
# fresh gateway (new state directory, the old server.key copied in) restored from it before
# its first `heimweg serve`; the devices' wg-quick configs, unchanged, connect again.
#
# Usage (as root, from the repo root):
#   HEIMWEG=/path/to/heimweg bash tests/netns/backup.sh
#
# Topology (every address exists only inside the namespaces created here):
#   c1, c2 --veth-- br0 in gw (198.51.100.1)      gw: heimweg serve, UDP 51820, pool 10.77.0.0/16
#   lan: 192.0.2.2, reached through the gateway by the group "staff" (192.0.2.0/25)
#
# laptop-1 (CLI) and ipad-2 (JSON API) are brought up with wg-quick (wireguard-go) and reach the
# host; lost-3 is enrolled and never dialled. `heimweg backup` runs while the gateway serves.
# After the backup lost-3 is revoked and late-4 enrolled. `heimweg restore` refuses while the
# gateway runs and while another process has the database open; on the stopped gateway's own
# state directory it keeps the replaced database (0600). The old database is wiped; a new state
# directory gets the old server.key and the backup, and serves: both clients reach the host
# again, the device list is the backup's (lost-3 back, late-4 gone, so the revocations made
# since the backup are repeated), the old API token works. The PostgreSQL case of both
# commands says which pg_dump / pg_restore commands to run.
# Prints PASS/FAIL lines and finally "N passed, M failed"; exits 1 if any failed.
set -eEuo pipefail

[[ $(id -u) -eq 0 ]] || { echo "backup.sh: must run as root" >&2; exit 2; }
HW=${HEIMWEG:?set HEIMWEG to the heimweg binary}
for tool in wg wg-quick wireguard-go ip ping python3 socat sha256sum; do
  command -v "$tool" >/dev/null || { echo "backup.sh: missing tool: $tool" >&2; exit 2; }
done

T_START=$(date +%s)
ID=$$
PFX="hwbk-$ID"
NS_GW="$PFX-gw"
NS_LAN="$PFX-lan"
NS_C1="$PFX-c1"
NS_C2="$PFX-c2"
ALL_NS=("$NS_GW" "$NS_LAN" "$NS_C1" "$NS_C2")
GWIF="hw${ID}b"
C1IF="hw${ID}k1"
C2IF="hw${ID}k2"
SOCKETS=("$GWIF" "$C1IF" "$C2IF")
WG_RUN=/var/run/wireguard
TMPD=$(mktemp -d /tmp/hwbk.XXXXXX)
STATE="$TMPD/state"
STATE2="$TMPD/state-new"
BACKUP="$TMPD/backups/heimweg-1.backup"
GW_LOG="$TMPD/gateway.log"
GW_PID=""
BG_PIDS=()
PASSED=0
FAILED=0
ALLOWED=192.0.2.2

# shellcheck source=tests/netns/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

diag() {
  echo "  -- wg show $GWIF:"; nsx "$NS_GW" wg show "$GWIF" 2>&1 | sed 's/^/    /' || true
  echo "  -- gateway log:"; tail -n 15 "$GW_LOG" 2>/dev/null | sed 's/^/    /' || true
  echo "  -- last command output:"; sed 's/^/    /' "$TMPD/out.txt" 2>/dev/null || true
}

# The state directory the commands and the gateway use: the old one, then the new one.
CUR="$STATE"
hw() { "$HW" --state-dir "$CUR" "$@"; }

# ---- topology ----
gateway_topology "$ALLOWED"

start_gateway() {
  # `ip netns exec` itself (not a shell function) so that $! is the gateway.
  ip netns exec "$NS_GW" "$HW" --state-dir "$CUR" serve --interface "$GWIF" --workers 2 \
    --metrics-listen off >>"$GW_LOG" 2>&1 &
  GW_PID=$!
  wait_until 15 test -S "$WG_RUN/$GWIF.sock"
}
stop_gateway() {
  kill -TERM "$GW_PID" 2>/dev/null || true
  wait "$GW_PID" 2>/dev/null || true
  GW_PID=""
  wait_until 5 eval "! ip -n '$NS_GW' link show '$GWIF'"
}
# Both clients send every round, so both start their handshakes with the new gateway at once.
both_reach() {
  local a=0 b=0
  ping_ok "$NS_C1" "$ALLOWED" || a=1
  ping_ok "$NS_C2" "$ALLOWED" || b=1
  ((a == 0 && b == 0))
}
peers() { nsx "$NS_GW" wg show "$GWIF" peers | wc -l; }
mode() { stat -c %a "$1"; }
api() { # METHOD PATH [JSON]: prints "STATUS BODY"; the API listens on the gateway's loopback
  nsx "$NS_GW" python3 - "$TOKEN" "$@" <<'EOF'
import json, sys, urllib.request, urllib.error
token, method, path = sys.argv[1:4]
data = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request("http://127.0.0.1:8080" + path, data=data, method=method,
                             headers={"Authorization": "Bearer " + token,
                                      "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
EOF
}
# How many devices of that name a database file holds (python's sqlite3, read-only).
devices_named() { # FILE NAME
  python3 - "$1" "$2" <<'EOF'
import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(c.execute("SELECT COUNT(*) FROM devices WHERE name = ? AND revoked_at IS NULL",
                (sys.argv[2],)).fetchone()[0])
EOF
}

# ---- a gateway with two connected devices ----
check "serve: the first gateway comes up" start_gateway
hw settings endpoint 198.51.100.1:51820 >/dev/null
hw group add staff --allow 192.0.2.0/25 >/dev/null
hw device add laptop-1 --group staff --owner anna --output "$TMPD/$C1IF.conf" 2>/dev/null
TOKEN=$(hw token create e2e --scope devices:write --scope devices:read 2>/dev/null)
wait_until 5 eval "api GET /api/v1/devices | grep -q '^200 '"
out=$(api POST /api/v1/devices '{"name": "ipad-2", "group": "staff", "owner": "bernd"}')
check "api: ipad-2 enrolled (201)" test "${out%% *}" = 201
( umask 077; python3 -c "import json,sys; print(json.loads(sys.argv[1].split(' ',1)[1])['config'], end='')" "$out" \
    >"$TMPD/$C2IF.conf" )
hw device add lost-3 --group staff --output "$TMPD/lost-3.conf" 2>/dev/null
sha256sum "$TMPD/$C1IF.conf" "$TMPD/$C2IF.conf" >"$TMPD/configs.sha256"
for i in 1 2; do
  ns_var="NS_C$i"; if_var="C${i}IF"
  nsx "${!ns_var}" env WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go LOG_LEVEL=error \
    wg-quick up "$TMPD/${!if_var}.conf" >>"$TMPD/wg-quick.log" 2>&1
done
check "before: both devices reach the host behind the gateway" wait_until 20 both_reach

# ---- backup while the gateway serves ----
mkdir -p "$TMPD/backups"; chmod 755 "$TMPD/backups"
check "backup: heimweg backup writes a copy while the gateway runs" \
  eval "hw backup '$BACKUP' >'$TMPD/out.txt' 2>&1 && grep -q 'backed up to .*3 devices' '$TMPD/out.txt'"
check "backup: it says the gateway key is not in it" grep -q 'server.key is not in the backup' "$TMPD/out.txt"
check "backup: the file is private (0600)" test "$(mode "$BACKUP")" = 600
sha256sum "$BACKUP" >"$TMPD/backup.sha256"
check "backup: an existing file is refused and left as it is" \
  eval "! hw backup '$BACKUP' >'$TMPD/out.txt' 2>&1 && grep -q 'exists' '$TMPD/out.txt' && sha256sum -c --quiet '$TMPD/backup.sha256'"
check "backup: nothing else was left in the directory" \
  eval "[[ \$(ls -A '$TMPD/backups') == heimweg-1.backup ]]"
check "backup: the gateway served on (both devices still reach the host)" both_reach
check "restore: refused while the gateway runs, and says so" \
  eval "! hw restore '$BACKUP' --interface '$GWIF' >'$TMPD/out.txt' 2>&1 && grep -q 'a gateway is running' '$TMPD/out.txt'"

# ---- changes after the backup, which a restore does not have ----
hw device revoke lost-3 >/dev/null
hw device add late-4 --group staff --output "$TMPD/late-4.conf" 2>/dev/null
check "after the backup: lost-3 revoked, late-4 enrolled" \
  wait_until 2 eval "[[ \$(peers) -eq 3 ]] && hw device list | grep -q '^late-4 '"

check "stop: the gateway stops on SIGTERM" stop_gateway
# The PostgreSQL case says which commands to use, before connecting anywhere.
check "postgres: heimweg backup names pg_dump" \
  eval "! HEIMWEG_DATABASE_URL=postgres://nobody@127.0.0.1:1/none hw backup '$TMPD/pg.backup' >'$TMPD/out.txt' 2>&1 && grep -q 'pg_dump --format=custom' '$TMPD/out.txt' && [[ ! -e '$TMPD/pg.backup' ]]"
check "postgres: heimweg restore names pg_restore and psql" \
  eval "! HEIMWEG_DATABASE_URL=postgres://nobody@127.0.0.1:1/none hw restore '$BACKUP' >'$TMPD/out.txt' 2>&1 && grep -q 'pg_restore --clean' '$TMPD/out.txt' && grep -q 'psql' '$TMPD/out.txt'"

# ---- restore on the stopped gateway's own state directory keeps what it replaces ----
check "restore: on the old state directory it keeps the replaced database" \
  eval "hw restore '$BACKUP' --interface '$GWIF' >'$TMPD/out.txt' 2>&1 && grep -q 'kept the database it replaces' '$TMPD/out.txt'"
kept=$(ls "$STATE"/heimweg.db.before-restore-* 2>/dev/null | head -n 1)
check "restore: the kept database is private (0600) and holds the changes since the backup" \
  eval "[[ -n '$kept' && \$(mode '$kept') == 600 && \$(devices_named '$kept' late-4) == 1 && \$(devices_named '$kept' lost-3) == 0 ]]"
check "restore: the database in place is the backup's (late-4 gone, lost-3 back), 0600" \
  eval "[[ \$(devices_named '$STATE/heimweg.db' late-4) == 0 && \$(devices_named '$STATE/heimweg.db' lost-3) == 1 && \$(mode '$STATE/heimweg.db') == 600 ]]"
check "restore: the backup itself was not changed" sha256sum -c --quiet "$TMPD/backup.sha256"

# ---- disaster: the database is lost; a fresh state directory, the old key, the backup ----
rm -f "$STATE"/heimweg.db "$STATE"/heimweg.db-wal "$STATE"/heimweg.db-shm "$STATE"/heimweg.db.before-restore-*
CUR="$STATE2"
install -d -m 700 "$STATE2"
install -m 600 "$STATE/server.key" "$STATE2/server.key"
check "restore: onto a fresh state directory before the first serve" \
  eval "hw restore '$BACKUP' --interface '$GWIF' >'$TMPD/out.txt' 2>&1 && grep -q 'restored .* 3 devices' '$TMPD/out.txt'"
check "restore: it names the gateway key it found" grep -q 'The gateway key is .*server.key (public key' "$TMPD/out.txt"
check "restore: nothing to keep on a fresh directory, and no leftovers" \
  eval "[[ \$(ls -A '$STATE2' | sort | tr '\n' ' ') == 'heimweg.db server.key ' ]] || { ls -A '$STATE2'; false; }"
# Another process with the database open (a forgotten gateway on another interface, a shell).
python3 -c "import sqlite3, time; c = sqlite3.connect('$STATE2/heimweg.db'); c.execute('SELECT 1'); time.sleep(60)" &
HOLDER=$!
BG_PIDS+=("$HOLDER")
wait_until 5 eval "ls -l /proc/$HOLDER/fd | grep -q heimweg.db"
check "restore: refused while another process has the database open" \
  eval "! hw restore '$BACKUP' --interface '$GWIF' >'$TMPD/out.txt' 2>&1 && grep -q 'is open in process $HOLDER' '$TMPD/out.txt'"
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null || true
check "restore: a file that is no backup is refused, the database left as it is" \
  eval "head -c 8192 /dev/urandom >'$TMPD/junk.backup' && ! hw restore '$TMPD/junk.backup' --no-keep --interface '$GWIF' >'$TMPD/out.txt' 2>&1 && grep -q 'checking the backup' '$TMPD/out.txt' && [[ \$(devices_named '$STATE2/heimweg.db' ipad-2) == 1 ]]"

check "serve: the fresh gateway serves the restored database" start_gateway
check "serve: the restored gateway has the same public key" \
  eval "[[ \$(nsx '$NS_GW' wg show '$GWIF' public-key) == \$(wg pubkey <'$STATE/server.key') ]]"
check "serve: the peers are the backup's devices (laptop-1, ipad-2, lost-3)" wait_until 2 eval "[[ \$(peers) -eq 3 ]]"
check "configs: the clients' wg-quick configs are unchanged" sha256sum -c --quiet "$TMPD/configs.sha256"
check "after restore: both devices reach the host again, with their old configs" wait_until 45 both_reach
check "after restore: the device list shows both" \
  eval "hw device list >'$TMPD/out.txt' && grep -q '^laptop-1 ' '$TMPD/out.txt' && grep -q '^ipad-2 ' '$TMPD/out.txt' && ! grep -q '^late-4 ' '$TMPD/out.txt'"
check "after restore: the API token from before the backup still works" \
  eval "api GET /api/v1/devices | grep -q '^200 '"
# What happened after the backup is not in it: the revocation is repeated (deploy/README.md).
hw device revoke lost-3 >/dev/null
check "after restore: a revocation made since the backup, repeated, takes lost-3 out" \
  wait_until 2 eval "[[ \$(peers) -eq 2 ]]"
check "after restore: both devices still reach the host" both_reach

summary
[[ $FAILED -eq 0 ]]
