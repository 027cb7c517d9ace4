#!/usr/bin/env bash
# The store's connection to a PostgreSQL server on another machine: TLS that checks who
# answers, or nothing. A real PostgreSQL server in a namespace of its own, on TCP only, with a
# certificate from a CA made here (openssl) and a pg_hba.conf that admits TLS connections only;
# the heimweg CLI in another namespace, as a second gateway would reach the database.
#
# Checked: without sslmode (libpq's `prefer`) and with `require` heimweg refuses before it
# connects and says what to write instead; with `verify-full` and the CA it works and the
# server logs the connection as TLS; with another CA it fails on the certificate, and so does
# a host name the certificate does not name; `sslmode=disable` written out is heimweg's to
# allow (logged as a warning) and here the server's to refuse.
#
# Usage (as root, from the repo root):
#   HEIMWEG=/path/to/heimweg bash tests/netns/pgtls.sh
# Prints PASS/FAIL lines and finally "N passed, M failed"; exits 1 if any failed.
set -eEuo pipefail

[[ $(id -u) -eq 0 ]] || { echo "pgtls.sh: must run as root" >&2; exit 2; }
HW=${HEIMWEG:?set HEIMWEG to the heimweg binary}
for tool in openssl ip runuser; do
  command -v "$tool" >/dev/null || { echo "pgtls.sh: missing tool: $tool" >&2; exit 2; }
done
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

T_START=$(date +%s)
ID=$$
PFX="hwtl-$ID"
NS_DB="$PFX-db"
NS_GW="$PFX-gw"
ALL_NS=("$NS_DB" "$NS_GW")
SOCKETS=()
WG_RUN=/var/run/wireguard
TMPD=$(mktemp -d /tmp/hwtl.XXXXXX)
GW_PID=""
BG_PIDS=()
PASSED=0
FAILED=0
DB_IP=192.0.2.10
GW_IP=192.0.2.20
PG_PORT=5432

# shellcheck source=tests/netns/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pg_stop() {
  [[ -f $TMPD/pg/data/postmaster.pid ]] || return 0
  (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$TMPD/pg/data" -m fast -w -s stop) || true
}
diag() { echo "  -- PostgreSQL log:"; tail -n 8 "$TMPD/pg/log" 2>/dev/null | sed 's/^/    /' || true; }
trap 'pg_stop; rm -rf "/etc/netns/$NS_GW"; cleanup' EXIT

# Two namespaces on one veth: the database at $DB_IP, the "gateway" at $GW_IP. Neither
# address is loopback, so heimweg treats the server as one across a network.
ip netns add "$NS_DB"
ip netns add "$NS_GW"
ip link add "hw${ID}d" netns "$NS_DB" type veth peer name "hw${ID}g" netns "$NS_GW"
nsx "$NS_DB" ip addr add "$DB_IP/24" dev "hw${ID}d"
nsx "$NS_GW" ip addr add "$GW_IP/24" dev "hw${ID}g"
for ns in "$NS_DB" "$NS_GW"; do nsx "$ns" ip link set lo up; done
nsx "$NS_DB" ip link set "hw${ID}d" up
nsx "$NS_GW" ip link set "hw${ID}g" up
# Names as the gateway's resolver gives them (ip netns exec mounts this over /etc/hosts): the
# certificate's name, and one it does not hold, for the same server.
mkdir -p "/etc/netns/$NS_GW"
printf '%s db.heimweg.test wrong.heimweg.test\n' "$DB_IP" >"/etc/netns/$NS_GW/hosts"

# A city CA, the server's certificate for the name db.heimweg.test and the address $DB_IP,
# and a second CA that signed nothing of this server's.
cd "$TMPD"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=Stadt Test CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=Other CA" -keyout other.key -out other.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=db.heimweg.test" \
  -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:db.heimweg.test,IP:%s\nextendedKeyUsage=serverAuth\n' "$DB_IP" >san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile san.ext -out server.pem 2>/dev/null
cd - >/dev/null

mkdir -p "$TMPD/pg"
cp "$TMPD/server.pem" "$TMPD/server.key" "$TMPD/pg/"
chmod 0600 "$TMPD/pg/server.key"
chown -R postgres: "$TMPD/pg"
chmod 0755 "$TMPD"
(cd / && runuser -u postgres -- "$PG_BIN/initdb" -D "$TMPD/pg/data" -A reject -U postgres >/dev/null)
cat >>"$TMPD/pg/data/postgresql.conf" <<EOF
listen_addresses = '$DB_IP'
port = $PG_PORT
unix_socket_directories = '$TMPD/pg'
ssl = on
ssl_cert_file = '$TMPD/pg/server.pem'
ssl_key_file = '$TMPD/pg/server.key'
log_connections = on
EOF
# TLS connections from the gateway's network only; the local socket for this script's checks.
cat >"$TMPD/pg/data/pg_hba.conf" <<EOF
local   all all                 trust
hostssl all all $GW_IP/32 trust
EOF
(cd / && nsx "$NS_DB" runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$TMPD/pg/data" \
  -l "$TMPD/pg/log" -w -s start)
log "PostgreSQL with TLS on $DB_IP:$PG_PORT"

STATE="$TMPD/state"
# hw URL ARGS...: the CLI in the gateway's namespace against the database at URL.
hw() {
  local url=$1; shift
  HEIMWEG_DATABASE_URL=$url HEIMWEG_ENV_FILE=/dev/null nsx "$NS_GW" "$HW" --state-dir "$STATE" "$@"
}
base="postgres://postgres@db.heimweg.test:$PG_PORT/postgres"

# refused URL WHAT: heimweg refuses URL before connecting, naming sslmode=verify-full.
refused() {
  local url=$1 what=$2 out before after
  before=$(grep -c "connection received" "$TMPD/pg/log" || true)
  if out=$(hw "$url" settings endpoint vpn.tls.example:51820 2>&1); then
    fail "$what: accepted"
    return
  fi
  after=$(grep -c "connection received" "$TMPD/pg/log" || true)
  check "$what: refused, saying to use sslmode=verify-full" grep -q "sslmode=verify-full" <<<"$out"
  check "$what: refused before connecting" test "$before" -eq "$after"
}
refused "$base" "no sslmode (libpq's prefer)"
refused "$base?sslmode=require" "sslmode=require"
refused "$base?sslmode=allow" "sslmode=allow"

out=$(hw "$base?sslmode=verify-full&sslrootcert=$TMPD/ca.pem" settings endpoint \
  vpn.tls.example:51820 2>&1) && ok=1 || ok=0
check "verify-full with the city's CA: the CLI writes to the store" test "$ok" -eq 1
[[ $ok -eq 1 ]] || echo "$out" | tail -5
check "the server logged the connection as TLS" grep -q "connection authorized.*SSL enabled" "$TMPD/pg/log"
check "the change is in the database" bash -c "runuser -u postgres -- psql -h '$TMPD/pg' -p $PG_PORT \
  -At -c \"select count(*) from settings where value like '%vpn.tls.example%'\" | grep -qx 1"

for case in "sslrootcert=$TMPD/other.pem|a CA that did not sign the server's certificate" \
  "sslrootcert=$TMPD/ca.pem|a host name the certificate does not name"; do
  query=${case%%|*}; what=${case#*|}
  url="$base?sslmode=verify-full&$query"
  [[ $what == *"host name"* ]] && url=${url/db.heimweg.test/wrong.heimweg.test}
  if out=$(hw "$url" settings endpoint vpn.tls.example:51820 2>&1); then
    fail "verify-full with $what: accepted"
  else
    log "  heimweg: $(tail -n 1 <<<"$out")"
    check "verify-full with $what: refused on the certificate" grep -qi "certificate" <<<"$out"
  fi
done

out=$(hw "$base?sslmode=disable" settings endpoint vpn.tls.example:51820 2>&1) && ok=1 || ok=0
check "sslmode=disable written out: heimweg warns that the link is not encrypted" \
  grep -q "not encrypted" <<<"$out"
check "sslmode=disable: this server admits TLS only and refuses" test "$ok" -eq 0

summary
[[ $FAILED -eq 0 ]]
