#!/usr/bin/env bash
# Many concurrent clients of the JSON API and the panel against `heimweg serve`, on SQLite and
# on PostgreSQL: device reads and searches with a read-only token, the panel's device list and
# device pages with a helpdesk session, enrollments, rotations, expiry changes and revocations
# with an admin token, CLIENTS at once for SECONDS. Meanwhile a prober enrolls a device with
# its own key, revokes it, and times until the gateway's UAPI socket no longer lists the peer.
# Prints one JSON report per backend (latency quantiles per request kind, status codes).
#
#   cargo build --release --workspace
#   CLIENTS=200 SECONDS_EACH=20 BACKENDS="sqlite postgres" bash benches/api-concurrency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
HW=${HW:-$PWD/target/release/heimweg}
CLIENTS=${CLIENTS:-200}
SECONDS_EACH=${SECONDS_EACH:-20}
DEVICES=${DEVICES:-200}
BACKENDS=${BACKENDS:-sqlite postgres}
bench_init api-concurrency hwa
PG_DIR=""; PG_BIN=""

stop_postgres() {
  if [[ -n $PG_DIR ]]; then
    (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -s stop) || true
    rm -rf "$PG_DIR"
  fi
}
trap 'stop_postgres; bench_cleanup' EXIT

# A throwaway PostgreSQL server on a Unix socket in its own directory (as tests/run.sh does).
start_postgres() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PG_DIR=$(mktemp -d /tmp/hwa-pg.XXXXXX)
  chown postgres: "$PG_DIR"
  (cd / && runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null &&
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -s \
      -o "-k $PG_DIR -c listen_addresses= -p 5434" start)
  runuser -u postgres -- psql -h "$PG_DIR" -p 5434 -qc "CREATE DATABASE heimweg" postgres
}

ip netns add "$NS_S"
ip -n "$NS_S" link set lo up
export HEIMWEG_ENV_FILE=/dev/null
for backend in $BACKENDS; do
  state="$TMPD/state-$backend"
  unset HEIMWEG_DATABASE_URL
  if [[ $backend == postgres ]]; then
    start_postgres
    export HEIMWEG_DATABASE_URL="postgres://postgres@localhost/heimweg?host=$PG_DIR&port=5434"
  fi
  hw() { ip netns exec "$NS_S" "$HW" --state-dir "$state" "$@"; }
  ip netns exec "$NS_S" "${PIN_SERVER[@]}" "$HW" --state-dir "$state" serve --interface "$IFN" \
    --uapi-dir /var/run/wireguard --metrics-listen off --api-listen 127.0.0.1:8080 \
    >"$TMPD/serve-$backend.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 1 100); do
    [[ -S /var/run/wireguard/$IFN.sock ]] && ip netns exec "$NS_S" bash -c ': </dev/tcp/127.0.0.1/8080' 2>/dev/null && break
    sleep 0.1
  done
  hw settings endpoint vpn.example:51820 >/dev/null
  export HEIMWEG_BENCH_ADMIN_TOKEN HEIMWEG_BENCH_READ_TOKEN HEIMWEG_BENCH_PANEL_PASSWORD
  HEIMWEG_BENCH_ADMIN_TOKEN=$(hw token create bench-admin --scope devices:read --scope devices:write 2>/dev/null)
  HEIMWEG_BENCH_READ_TOKEN=$(hw token create bench-read --scope devices:read 2>/dev/null)
  HEIMWEG_BENCH_PANEL_PASSWORD="bench password $$ $RANDOM"
  echo "$HEIMWEG_BENCH_PANEL_PASSWORD" | hw admin add bench-helpdesk --role helpdesk --password-stdin 2>/dev/null
  ip netns exec "$NS_S" "${PIN_GENERATOR[@]}" "$LOADGEN" api --panel-user bench-helpdesk \
    --clients "$CLIENTS" --devices "$DEVICES" --seconds "$SECONDS_EACH" \
    --uapi-socket "/var/run/wireguard/$IFN.sock" >"$TMPD/report-$backend.json"
  echo "{\"backend\": \"$backend\", \"report\": $(cat "$TMPD/report-$backend.json")}"
  grep -c ' ERROR ' "$TMPD/serve-$backend.log" | sed "s/^/server log errors ($backend): /" >&2 || true
  stop_pid "$SRV_PID"; SRV_PID=""
  rm -f "/var/run/wireguard/$IFN.sock"
  if [[ $backend == postgres ]]; then stop_postgres; PG_DIR=""; fi
done
