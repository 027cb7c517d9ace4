#!/usr/bin/env bash
# Throughput of an established tunnel while the server is flooded: iperf3 TCP through one
# tunnel for DUR seconds, first calm, then while `heimweg-loadgen flood` sends FLOOD_RATE
# datagrams per second at the server's port (initiations from 4,096 unknown keys, each with a
# valid mac1, mixed with JUNK_SHARE percent random datagrams, from 50 other addresses), in both
# directions. Server in one network namespace; client and flood in another, joined by a veth
# pair, on this machine. Prints one JSON line per measurement and a Markdown table of medians
# with the flooded/calm ratio.
#
# Usage (as root, from the repo root, after `cargo build --release`):
#   IMPLS="heimweg gotatun" RUNS=3 FLOOD_RATE=200000 bash benches/flood-throughput.sh
# Servers: heimweg (target/release/heimweg-wg), gotatun, boringtun, wggo (as in storm.sh).
# CLIENT=heimweg (default: heimweg-wg, batched, so the client is not what limits) or wggo.
set -euo pipefail
cd "$(dirname "$0")/.."
IMPLS=${IMPLS:-heimweg gotatun}
RUNS=${RUNS:-3}
DUR=${DUR:-8}
FLOOD_RATE=${FLOOD_RATE:-200000}
JUNK_SHARE=${JUNK_SHARE:-20}
CLIENT=${CLIENT:-heimweg}
OUT=${OUT:-/dev/null}

source benches/lib.sh
bench_init flood-throughput.sh hwft
for tool in wg iperf3 python3; do
  command -v "$tool" >/dev/null || { echo "flood-throughput.sh: missing $tool" >&2; exit 2; }
done
IFS_="${IFN}s"; IFC="${IFN}c"; IFACES=("$IFS_" "$IFC")

ip netns add "$NS_S"; ip netns add "$NS_C"
ip -n "$NS_S" link set lo up; ip -n "$NS_C" link set lo up
ip link add s0 netns "$NS_S" type veth peer name c0 netns "$NS_C"
ip -n "$NS_S" addr add 10.201.0.1/16 dev s0; ip -n "$NS_S" link set s0 up
ip -n "$NS_C" addr add 10.201.0.2/16 dev c0
for k in $(seq 1 50); do echo "address add 10.201.200.$k/16 dev c0"; done | ip -n "$NS_C" -batch -
ip -n "$NS_C" link set c0 up

(umask 077; wg genkey >"$TMPD/s.key"; wg genkey >"$TMPD/c.key")
S_PUB=$(wg pubkey <"$TMPD/s.key"); C_PUB=$(wg pubkey <"$TMPD/c.key")

# measure IMPL RUN DIRECTION FLOOD(0|1): one iperf3 run, one JSON line.
measure() {
  local impl=$1 run=$2 dir=$3 flooded=$4 rev="" flood_pid="" flood_json="{}"
  [[ $dir == rev ]] && rev="-R"
  if [[ $flooded == 1 ]]; then
    ip netns exec "$NS_C" "$LOADGEN" flood --server 10.201.0.1:51820 --server-key "$S_PUB" \
      --rate "$FLOOD_RATE" --junk-share "$JUNK_SHARE" --source-base 10.201.200.1 --sources 50 \
      --seconds $((DUR + 2)) >"$TMPD/flood.json" &
    flood_pid=$!
    sleep 1 # the flood reaches its rate before the transfer starts
  fi
  local cpu0 cpu1 in0 err0 in1 err1
  cpu0=$(cpu_ticks "$SRV_PID"); read -r in0 err0 < <(udp_counters "$NS_S" InDatagrams RcvbufErrors)
  ip netns exec "$NS_C" iperf3 -c 10.99.0.1 -t "$DUR" $rev -J >"$TMPD/iperf.json"
  cpu1=$(cpu_ticks "$SRV_PID"); read -r in1 err1 < <(udp_counters "$NS_S" InDatagrams RcvbufErrors)
  if [[ -n $flood_pid ]]; then wait "$flood_pid"; flood_json=$(cat "$TMPD/flood.json"); fi
  python3 - "$TMPD/iperf.json" "$impl" "$run" "$dir" "$flooded" "$((cpu1 - cpu0))" "$TICK" \
    "$((in1 - in0))" "$((err1 - err0))" "$flood_json" "$CLIENT" <<'PYEOF' | tee -a "$OUT" "$TMPD/results.jsonl"
import json, sys
j = json.load(open(sys.argv[1]))
end = j["end"]
bits = end["sum_received"]["bits_per_second"]
gb = end["sum_received"]["bytes"] / 1e9
cpu = int(sys.argv[6]) / int(sys.argv[7])
row = dict(server=sys.argv[2], run=int(sys.argv[3]), dir=sys.argv[4], flooded=sys.argv[5] == "1",
           seconds=end["sum_received"]["seconds"],
           client=sys.argv[11], gbps=round(bits / 1e9, 3), server_cpu_s=cpu,
           server_cpu_s_per_gb=round(cpu / gb, 3) if gb else None,
           retransmits=end.get("sum_sent", {}).get("retransmits"),
           server_udp_in=int(sys.argv[8]), server_udp_rcvbuf_errors=int(sys.argv[9]))
row.update(json.loads(sys.argv[10]))
print(json.dumps(row))
PYEOF
}

for run in $(seq 1 "$RUNS"); do
  for impl in $IMPLS; do
    start_wg "$NS_S" "$IFS_" "$impl"; SRV_PID=$STARTED
    ip netns exec "$NS_S" wg set "$IFS_" private-key "$TMPD/s.key" listen-port 51820 \
      peer "$C_PUB" allowed-ips 10.99.0.2/32
    ip -n "$NS_S" addr add 10.99.0.1/24 dev "$IFS_"; ip -n "$NS_S" link set "$IFS_" mtu 1420 up
    start_wg "$NS_C" "$IFC" "$CLIENT"; CLI_PID=$STARTED
    ip netns exec "$NS_C" wg set "$IFC" private-key "$TMPD/c.key" \
      peer "$S_PUB" endpoint 10.201.0.1:51820 allowed-ips 10.99.0.0/24
    ip -n "$NS_C" addr add 10.99.0.2/24 dev "$IFC"; ip -n "$NS_C" link set "$IFC" mtu 1420 up
    ip netns exec "$NS_S" iperf3 -s -B 10.99.0.1 >"$TMPD/iperf-server.log" 2>&1 &
    IPERF_PID=$!
    # The handshake happens with the first packet; wait until the tunnel carries a ping.
    up=0
    for _ in $(seq 1 50); do
      ip netns exec "$NS_C" ping -c1 -W1 10.99.0.1 >/dev/null 2>&1 && { up=1; break; }
    done
    [[ $up == 1 ]] || { echo "flood-throughput.sh: the tunnel to $impl never came up" >&2; exit 1; }
    for dir in fwd rev; do
      measure "$impl" "$run" "$dir" 0
      measure "$impl" "$run" "$dir" 1
    done
    stop_pid "$IPERF_PID"; IPERF_PID=""
    stop_pid "$CLI_PID"; CLI_PID=""
    stop_pid "$SRV_PID"; SRV_PID=""
    rm -f "/var/run/wireguard/$IFS_.sock" "/var/run/wireguard/$IFC.sock"
  done
done

python3 - "$TMPD/results.jsonl" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n| server | direction | calm Gbit/s | flooded Gbit/s | flooded / calm | server CPU s/GB calm, flooded | server CPU s per s flooded | generator CPU s per s | flood datagrams the server's socket dropped |")
print("|---|---|---|---|---|---|---|---|---|")
med = lambda xs: statistics.median(xs) if xs else float("nan")
for impl in dict.fromkeys(r["server"] for r in rows):
    for d in ("fwd", "rev"):
        calm = [r for r in rows if r["server"] == impl and r["dir"] == d and not r["flooded"]]
        fl = [r for r in rows if r["server"] == impl and r["dir"] == d and r["flooded"]]
        c, f = med([r["gbps"] for r in calm]), med([r["gbps"] for r in fl])
        print(f"| {impl} | {d} | {c:.2f} | {f:.2f} | {f / c:.2f} | "
              f"{med([r['server_cpu_s_per_gb'] for r in calm]):.2f}, {med([r['server_cpu_s_per_gb'] for r in fl]):.2f} | "
              f"{med([r['server_cpu_s'] / r['seconds'] for r in fl]):.2f} | "
              f"{med([(r.get('flood_generator_cpu_s') or 0) / r['seconds'] for r in fl]):.2f} | "
              f"{med([r['server_udp_rcvbuf_errors'] for r in fl]):.0f} |")
print(f"\n(medians of {len(calm)} run(s) each; client {rows[0]['client']})")
PYEOF
