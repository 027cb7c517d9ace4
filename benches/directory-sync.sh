#!/usr/bin/env bash
# The directory sync against a directory of N users (default 50,000; a real slapd,
# tests/directory/slapd.sh, every user a member of the mapped group, read through StartTLS in
# pages of 400 by an account whose size limit is 500): per run on a fresh database, the wall
# time and peak memory (max RSS) of `heimweg directory sync` for the first sync (N users
# created), a second one (nothing changes), and one after LOCKED accounts were locked (they are
# disabled: within the 10 % threshold). Baseline: `heimweg directory runs` (the command line
# reading the database and nothing else). One JSON line per sync; SQLite, and PostgreSQL too
# when HEIMWEG_BENCH_POSTGRES names a server to create databases on.
#
#   cargo build --release -p heimweg
#   RUNS=3 bash benches/directory-sync.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
HW=${HW:-$PWD/target/release/heimweg}
N=${N:-50000}
RUNS=${RUNS:-3}
LOCKED=${LOCKED:-1000}
bench_init directory-sync hwds
trap 'nsx_q bash tests/directory/slapd.sh stop "$LDAP" >/dev/null 2>&1 || true; bench_cleanup' EXIT
nsx_q() { ip netns exec "$NS_S" "$@"; }
ip netns add "$NS_S"; ip -n "$NS_S" link set lo up

LDAP="$TMPD/ldap"
mkdir -p "$LDAP"
bash tests/mail/certs.sh "$LDAP"
nsx_q bash tests/directory/slapd.sh start "$LDAP" 3890
nsx_q bash tests/directory/slapd.sh add-users "$LDAP" "$N" vpn-users
USERS=$((N + 3))

cat >"$TMPD/env" <<EOF
HEIMWEG_LDAP_URL=ldap://127.0.0.1:3890
HEIMWEG_LDAP_KIND=ldap
HEIMWEG_LDAP_BASE=ou=people,dc=stadt,dc=example
HEIMWEG_LDAP_GROUPS=staff=cn=vpn-users,ou=groups,dc=stadt,dc=example
HEIMWEG_LDAP_BIND_DN=cn=heimweg,ou=services,dc=stadt,dc=example
HEIMWEG_LDAP_BIND_PASSWORD=reader-secret
HEIMWEG_LDAP_CA_FILE=$LDAP/ca.crt
HEIMWEG_LDAP_INTERVAL=1h
EOF

# timed STATE DB ARGS...: the command in the namespace; prints {"s":SECONDS,"rss_kb":MAX_RSS}.
timed() {
  local state=$1 db=$2; shift 2
  nsx_q env HEIMWEG_ENV_FILE="$TMPD/env" ${db:+HEIMWEG_DATABASE_URL="$db"} \
    /usr/bin/time -f '%e %M' -o "$TMPD/time" "$HW" --state-dir "$state" "$@" \
    >"$TMPD/out" 2>"$TMPD/err" || { cat "$TMPD/out" "$TMPD/err" >&2; return 1; }
  awk '{printf "{\"s\":%s,\"rss_kb\":%s}", $1, $2}' "$TMPD/time"
}

# run BACKEND DB_URL: one run on a fresh database; prints one JSON line per sync.
run() {
  local backend=$1 db=$2 state="$TMPD/state-$RANDOM" first second third base
  # serve creates the database (and runs its first sync, which fails: the group is not made
  # yet); then the command line does the rest.
  ip netns exec "$NS_S" env HEIMWEG_ENV_FILE="$TMPD/env" ${db:+HEIMWEG_DATABASE_URL="$db"} \
    "$HW" --state-dir "$state" serve --interface "$IFN" --workers 1 --metrics-listen off \
    --api-listen 127.0.0.1:0 >"$TMPD/serve.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 1 100); do [[ -S /var/run/wireguard/$IFN.sock ]] && break; sleep 0.1; done
  stop_pid "$SRV_PID"; SRV_PID=""
  nsx_q env HEIMWEG_ENV_FILE="$TMPD/env" ${db:+HEIMWEG_DATABASE_URL="$db"} \
    "$HW" --state-dir "$state" group add staff --allow 10.20.0.0/16 >/dev/null 2>&1
  base=$(timed "$state" "$db" directory runs)
  first=$(timed "$state" "$db" directory sync)
  grep -q "ok .*$USERS entries, $USERS created" "$TMPD/out" || { cat "$TMPD/out" >&2; return 1; }
  second=$(timed "$state" "$db" directory sync)
  grep -q "ok .*, 0 created, 0 changed, 0 disabled" "$TMPD/out" || { cat "$TMPD/out" >&2; return 1; }
  lock_some
  third=$(timed "$state" "$db" directory sync)
  grep -q "ok .*, $LOCKED disabled" "$TMPD/out" || { cat "$TMPD/out" >&2; return 1; }
  unlock_some
  printf '{"backend":"%s","users":%d,"baseline":%s,"first":%s,"unchanged":%s,"locked_%d":%s}\n' \
    "$backend" "$USERS" "$base" "$first" "$second" "$LOCKED" "$third"
}

# LOCKED accounts locked (and unlocked again after the run), in one ldapmodify.
lock_some() { lock_ldif add | nsx_q ldapmodify -x -H ldap://127.0.0.1:3890 -D cn=admin,dc=stadt,dc=example -w admin-secret >/dev/null; }
unlock_some() { lock_ldif delete | nsx_q ldapmodify -x -H ldap://127.0.0.1:3890 -D cn=admin,dc=stadt,dc=example -w admin-secret >/dev/null; }
lock_ldif() {
  local i
  for i in $(seq 1 "$LOCKED"); do
    printf 'dn: uid=user%05d,ou=people,dc=stadt,dc=example\nchangetype: modify\n%s: pwdAccountLockedTime\n' "$i" "$1"
    [[ $1 == add ]] && printf 'pwdAccountLockedTime: 000001010000Z\n'
    printf '\n'
  done
}

for r in $(seq 1 "$RUNS"); do
  run sqlite ""
  if [[ -n ${HEIMWEG_BENCH_POSTGRES:-} ]]; then
    db="hwds_${$}_$r"
    psql "$HEIMWEG_BENCH_POSTGRES" -qc "CREATE DATABASE $db" >/dev/null
    run postgres "$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p._replace(path="/" + sys.argv[2]).geturl())' "$HEIMWEG_BENCH_POSTGRES" "$db")"
  fi
done
