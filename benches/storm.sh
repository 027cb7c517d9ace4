#!/usr/bin/env bash
# The Monday-morning storm: N devices, each a peer on the server, start their handshakes at the
# same moment from SOURCES addresses (heimweg-loadgen storm: initiations precomputed, 5 s
# retry with jitter, resend with mac2 after a cookie). Servers run in one network namespace,
# the devices in another, on this machine; each server gets the same peers with `wg setconf`.
# Prints one JSON line per run (the loadgen's report plus the server's CPU seconds and RSS)
# and, at the end, a Markdown table of medians.
#
# Usage (as root, from the repo root, after `cargo build --release`; PEERS=100000 N=10000 for
# the storm of 10,000 devices among 100,000 the server knows):
#   IMPLS="heimweg gotatun wggo boringtun" N=10000 SOURCES=100 RUNS=2 bash benches/storm.sh
# Servers: heimweg (target/release/heimweg-wg), wggo (wireguard-go), gotatun and boringtun
# (from crates.io; GT and BT name their binaries, as in ../shared/testbed/setup.sh).
# FLOOD_RATE=200000 adds a flood during the storm: initiations from 4,096 unknown keys with a
# valid mac1, from FLOOD_SOURCES (default 50) other addresses; the server's own UDP counters
# (/proc/net/snmp in its namespace) show what arrived and what its socket dropped.
# SERVER_CPUS=1 GENERATOR_CPUS=0 give server and devices a core each (see lib.sh).
# STRICT=1 makes the script fail when any device had no session by the deadline (the system
# test uses it; comparisons leave it off, as some servers do leave devices out).
set -euo pipefail
cd "$(dirname "$0")/.."
IMPLS=${IMPLS:-heimweg}
N=${N:-1000}
# The server knows PEERS devices (default N); the storm is of the last N of them, so with
# PEERS > N the connecting devices are ones the server held no session state for.
PEERS=${PEERS:-$N}
SOURCES=${SOURCES:-100}
RUNS=${RUNS:-1}
DEADLINE=${DEADLINE:-40}
OUT=${OUT:-/dev/null}

source benches/lib.sh
bench_init storm.sh hwst

netns_pair "$NS_S" "$NS_C" 10.200 "$SOURCES"
FLOOD_RATE=${FLOOD_RATE:-0}
FLOOD_SOURCES=${FLOOD_SOURCES:-50}
if [[ $FLOOD_RATE -gt 0 ]]; then
  for k in $(seq 0 $((FLOOD_SOURCES - 1))); do
    echo "address add 10.200.200.$((1 + k))/16 dev c0"
  done | ip -n "$NS_C" -batch -
fi
FIRST_SOURCE=10.200.0.1

(umask 077; wg genkey >"$TMPD/s.key"); SERVER_PUB=$(wg pubkey <"$TMPD/s.key")
{ printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\n\n' "$(cat "$TMPD/s.key")"
  "$LOADGEN" keys --devices "$PEERS"; } >"$TMPD/server.conf"

for run in $(seq 1 "$RUNS"); do
  for impl in $IMPLS; do
    start_wg "$NS_S" "$IFN" "$impl"; SRV_PID=$STARTED
    ip netns exec "$NS_S" wg setconf "$IFN" "$TMPD/server.conf"
    ip -n "$NS_S" link set "$IFN" up
    rss0=$(rss_kb "$SRV_PID"); cpu0=$(cpu_ticks "$SRV_PID"); read -r udp_in0 udp_err0 < <(udp_counters "$NS_S" InDatagrams RcvbufErrors)
    set +e
    report=$(ip netns exec "$NS_C" bash -c "ulimit -n $((N + 1024)) && exec ${PIN_GENERATOR[*]} '$LOADGEN' storm \
      --server 10.200.255.254:51820 --server-key '$SERVER_PUB' --devices $N --first $((PEERS - N)) \
      --source-base $FIRST_SOURCE --sources $SOURCES --deadline-secs $DEADLINE --json \
      --flood-rate $FLOOD_RATE --flood-sources $FLOOD_SOURCES")
    set -e
    cpu1=$(cpu_ticks "$SRV_PID"); rss1=$(rss_kb "$SRV_PID"); read -r udp_in1 udp_err1 < <(udp_counters "$NS_S" InDatagrams RcvbufErrors)
    line=$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); r.update(server=sys.argv[2], run=int(sys.argv[3]), sources=int(sys.argv[4]), server_cpu_s=(int(sys.argv[6])-int(sys.argv[5]))/int(sys.argv[7]), rss_before_kb=int(sys.argv[8]), rss_after_kb=int(sys.argv[9]), rss_per_peer_kb=round(int(sys.argv[9])/int(sys.argv[10]),1), peers=int(sys.argv[10]), server_udp_in=int(sys.argv[11]), server_udp_rcvbuf_errors=int(sys.argv[12])); print(json.dumps(r))" \
      "$report" "$impl" "$run" "$SOURCES" "$cpu0" "$cpu1" "$TICK" "$rss0" "$rss1" "$PEERS" \
      "$((udp_in1 - udp_in0))" "$((udp_err1 - udp_err0))")
    echo "$line" | tee -a "$OUT"
    echo "$line" >>"$TMPD/results.jsonl"
    stop_pid "$SRV_PID"; SRV_PID=""
    for _ in $(seq 1 50); do [[ -S /var/run/wireguard/$IFN.sock ]] || break; sleep 0.1; done
    rm -f "/var/run/wireguard/$IFN.sock"
  done
done

python3 - "$TMPD/results.jsonl" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n| server | devices | with a session | all within | p50 | cookie replies | retries | server CPU | RSS per peer |")
print("|---|---|---|---|---|---|---|---|---|")
for impl in dict.fromkeys(r["server"] for r in rows):
    rs = [r for r in rows if r["server"] == impl]
    med = lambda k: statistics.median(r[k] for r in rs if r.get(k) is not None) if any(r.get(k) is not None for r in rs) else None
    fmt = lambda v, u="s": "—" if v is None else f"{v:.2f} {u}"
    print(f"| {impl} | {rs[0]['devices']} | {med('with_session'):.0f} | {fmt(med('all_within_s'))} | {fmt(med('p50_s'))} "
          f"| {med('cookie_replies'):.0f} | {med('retries'):.0f} | {fmt(med('server_cpu_s'))} | {med('rss_per_peer_kb'):.1f} KB |")
print(f"\n(medians of {len(rs)} run(s) each)")
PYEOF
if [[ ${STRICT:-0} == 1 ]]; then
  python3 -c "import json,sys; sys.exit(1 if any(json.loads(l)['failed'] for l in open(sys.argv[1])) else 0)" \
    "$TMPD/results.jsonl" || { echo "storm.sh: devices were left without a session" >&2; exit 1; }
fi
