#!/usr/bin/env bash
# Traffic from many devices at once: N devices (each a peer on the server) connect, then
# `heimweg-loadgen traffic` sends UDP packets through every device's tunnel, round-robin, as
# fast as it can (or RATE_MBIT), batched with GSO, to an address on the server's side of the
# tunnel that nothing holds (the kernel drops them right after the TUN, the same for every
# server, so no sink's socket can overflow and be mistaken for the server's). The server runs in one network namespace, the devices in another, on this machine.
# What arrived is read from the server's TUN counters; server CPU from /proc. Prints one JSON
# line per run and a Markdown table of medians.
#
# Usage (as root, from the repo root, after `cargo build --release --workspace`):
#   IMPLS="heimweg gotatun" N=1000 RUNS=3 bash benches/many-peers.sh
# Servers: heimweg (target/release/heimweg-wg), gotatun, boringtun, wggo (as in storm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
IMPLS=${IMPLS:-heimweg gotatun}
N=${N:-1000}
SOURCES=${SOURCES:-10}
RUNS=${RUNS:-3}
DUR=${DUR:-8}
SIZE=${SIZE:-1420}
RATE_MBIT=${RATE_MBIT:-0}
OUT=${OUT:-/dev/null}

source benches/lib.sh
bench_init many-peers.sh hwmp

netns_pair "$NS_S" "$NS_C" 10.202 "$SOURCES"

(umask 077; wg genkey >"$TMPD/s.key"); SERVER_PUB=$(wg pubkey <"$TMPD/s.key")
{ printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\n\n' "$(cat "$TMPD/s.key")"
  "$LOADGEN" keys --devices "$N"; } >"$TMPD/server.conf"

tun_rx() { ip netns exec "$NS_S" cat "/sys/class/net/$IFN/statistics/rx_packets" "/sys/class/net/$IFN/statistics/rx_bytes" | paste -sd' '; }

for run in $(seq 1 "$RUNS"); do
  for impl in $IMPLS; do
    start_wg "$NS_S" "$IFN" "$impl"; SRV_PID=$STARTED
    ip netns exec "$NS_S" wg setconf "$IFN" "$TMPD/server.conf"
    # The devices' addresses are 10.64.0.0/10; the server's own is the last one of it.
    ip -n "$NS_S" addr add 10.127.255.254/10 dev "$IFN"; ip -n "$NS_S" link set "$IFN" mtu 1420 up
    # The loadgen connects every device first; the clock of what counts starts with the
    # first data packet, so the server's counters are read around the whole run and the
    # rate is taken from the generator's own timing.
    cpu0=$(cpu_ticks "$SRV_PID"); read -r pk0 by0 < <(tun_rx); err0=$(udp_counters "$NS_S" RcvbufErrors)
    report=$(ip netns exec "$NS_C" bash -c "ulimit -n $((N + 1024)) && exec '$LOADGEN' traffic \
      --server 10.202.255.254:51820 --server-key '$SERVER_PUB' --devices $N \
      --source-base 10.202.0.1 --sources $SOURCES --target 10.127.255.253:9 \
      --packet-size $SIZE --rate-mbit $RATE_MBIT --seconds $DUR")
    cpu1=$(cpu_ticks "$SRV_PID"); read -r pk1 by1 < <(tun_rx); err1=$(udp_counters "$NS_S" RcvbufErrors)
    python3 - "$report" "$impl" "$run" "$((cpu1 - cpu0))" "$TICK" "$((pk1 - pk0))" "$((by1 - by0))" \
      "$((err1 - err0))" \
      <<'PYEOF' | tee -a "$OUT" "$TMPD/results.jsonl"
import json, sys
r = json.loads(sys.argv[1])
cpu = int(sys.argv[4]) / int(sys.argv[5])
arrived, arrived_bytes = int(sys.argv[6]), int(sys.argv[7])
r.update(server=sys.argv[2], run=int(sys.argv[3]), server_cpu_s=cpu,
         arrived_packets=arrived, arrived_share=round(arrived / max(r["packets_sent"], 1), 3),
         arrived_gbit_per_s=round(arrived_bytes * 8 / r["seconds"] / 1e9, 3),
         server_cpu_s_per_gb=round(cpu / (arrived_bytes / 1e9), 3) if arrived_bytes else None,
         udp_rcvbuf_errors=int(sys.argv[8]))
print(json.dumps(r))
PYEOF
    stop_pid "$SRV_PID"; SRV_PID=""
    rm -f "/var/run/wireguard/$IFN.sock"
  done
done

python3 - "$TMPD/results.jsonl" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n| server | devices | sent Gbit/s | arrived Gbit/s | arrived / sent | server CPU s/GB | generator CPU s per s | UDP receive buffer overflows |")
print("|---|---|---|---|---|---|---|---|")
med = lambda xs: statistics.median(xs)
for impl in dict.fromkeys(r["server"] for r in rows):
    rs = [r for r in rows if r["server"] == impl]
    print(f"| {impl} | {rs[0]['devices']} | {med([r['inner_mbit_per_s'] / 1000 for r in rs]):.2f} "
          f"| {med([r['arrived_gbit_per_s'] for r in rs]):.2f} | {med([r['arrived_share'] for r in rs]):.2f} "
          f"| {med([r['server_cpu_s_per_gb'] or float('nan') for r in rs]):.2f} "
          f"| {med([(r['generator_cpu_s'] or 0) / r['seconds'] for r in rs]):.2f} "
          f"| {med([r['udp_rcvbuf_errors'] for r in rs]):.0f} |")
print(f"\n(medians of {len(rs)} run(s) each)")
PYEOF
