#!/usr/bin/env bash
# The Monday-morning storm: N devices, each a peer on the server, start their handshakes at the
# same moment from SOURCES addresses. Servers run in one network namespace, the devices
# (heimweg-loadgen storm) in another, on this machine; each server gets the same peers with
# `wg setconf`. Prints one JSON line per run (the loadgen's report plus the server's CPU seconds
# and RSS) and, at the end, a Markdown table of medians.
#
# The devices behave as the stock clients (wireguard-go in the iOS, macOS and Android apps, the
# Linux kernel, wireguard-nt): a cookie reply is stored and nothing is sent; the next initiation
# leaves when the retransmit timer fires (5 s plus 0-333 ms of jitter) and carries mac2; after
# 20 initiations (about 103 s) a device gives up. RESEND_ON_COOKIE=1 brings back the old model,
# an immediate resend with mac2, which no stock client does.
#
# Where the simulation differs from real devices:
# - one UDP socket per device, SOURCES addresses shared round-robin, and no NAT between them
#   and the server (no rebinding, no mapping timeouts);
# - every first initiation is computed before the clock starts (a real device computes its own
#   when it wakes; here that would be the generator's CPU delaying the start);
# - no data before the session: a real device with data queued may also send an initiation
#   5 s after the last one without waiting for the jitter, which restarts its count of 20; the
#   simulated ones have only the retransmit timer;
# - the jitter is a hash of device number and attempt, not random, so runs are repeatable;
# - the known devices (KNOWN) had their session seconds before the storm, not hours, and come
#   back with a new tunnel and no cookie;
# - everything runs on one machine: the generator (one thread, two Diffie-Hellmans per device,
#   plus the flood's thread) shares the cores with the server it measures.
#
# Usage (as root, from the repo root, after `cargo build --release -p heimweg-loadgen -p
# heimweg`; PEERS=100000 N=10000 for the storm of 10,000 devices among 100,000 the server knows):
#   IMPLS="heimweg gotatun wggo boringtun" N=10000 SOURCES=100 RUNS=2 bash benches/storm.sh
# Servers: heimweg (target/release/heimweg-wg), wggo (wireguard-go), gotatun and boringtun
# (from crates.io; GT and BT name their binaries, as in ../shared/testbed/setup.sh). The servers
# alternate within each of the RUNS rounds; the table gives medians over the rounds.
# FLOOD_RATE=200000 adds a flood during the storm: initiations from 4,096 unknown keys with a
# valid mac1, from FLOOD_SOURCES (default 50) other addresses, from 0.5 s before the devices
# start until they are done, or with FLOOD_SECS until that many seconds after they started (so
# that every server meets the same flood, however soon it is done); the server's own UDP
# counters (/proc/net/snmp in its namespace) show what arrived and what its socket dropped.
# KNOWN=1000: the first 1,000 devices connect once, calmly, before the flood (and the storm)
# starts; then all N start at once. The table then has rows for the known and the new devices.
# Known devices use the first half of the SOURCES addresses, new ones the other half: a new
# device comes from an address the server has not seen.
# PROCS: generator processes, each with a slice of the devices (a process cannot hold more
# sockets than its file limit, 20,000 here): 1 up to 15,000 devices, 2 above. They start at one
# wall-clock instant PREP_S seconds after launch (default: enough to prepare and warm up) and
# their per-device times are merged (heimweg-loadgen merge).
# SERVER_CPUS=1 GENERATOR_CPUS=0 give server and devices a core each (see lib.sh).
# STRICT=1 makes the script fail when any device had no session by the deadline (the system
# test uses it; comparisons leave it off, as some servers do leave devices out).
# MAX_RETRIES=N makes it fail when any run had more than N retransmits (warm-up included).
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
KNOWN=${KNOWN:-0}
PROCS=${PROCS:-$((N > 15000 ? 2 : 1))}
MAX_RETRIES=${MAX_RETRIES:-}
MODEL_ARGS=(); [[ ${RESEND_ON_COOKIE:-0} == 1 ]] && MODEL_ARGS=(--resend-on-cookie)
# Preparing takes about 0.5 ms a device per process on this machine, the warm-up a second per
# 1,000 known devices and one retransmit (5.3 s) if a server answers it with cookies.
PREP_S=${PREP_S:-$((3 + N / PROCS / 2000 + (KNOWN > 0 ? 7 + KNOWN / 1000 : 0)))}

source benches/lib.sh
bench_init storm.sh hwst

netns_pair "$NS_S" "$NS_C" 10.200 "$SOURCES"
FLOOD_RATE=${FLOOD_RATE:-0}
FLOOD_SOURCES=${FLOOD_SOURCES:-50}
FLOOD_SECS=${FLOOD_SECS:-0}
if [[ $FLOOD_RATE -gt 0 ]]; then
  for k in $(seq 0 $((FLOOD_SOURCES - 1))); do
    echo "address add 10.200.200.$((1 + k))/16 dev c0"
  done | ip -n "$NS_C" -batch -
fi
FIRST_SOURCE=10.200.0.1

(umask 077; wg genkey >"$TMPD/s.key"); SERVER_PUB=$(wg pubkey <"$TMPD/s.key")
{ printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\n\n' "$(cat "$TMPD/s.key")"
  "$LOADGEN" keys --devices "$PEERS"; } >"$TMPD/server.conf"

# run_storm: the storm as PROCS generator processes, each a contiguous slice of the N devices
# (the known ones first, the flood's rate shared), started at one instant; prints the merged
# report, one JSON object.
run_storm() {
  local p size known rate off=0 hard at=() merge=() pids=()
  hard=$(ulimit -Hn)
  if ((PROCS > 1)); then at=(--start-at-unix-ms $(($(date +%s%3N) + PREP_S * 1000))); fi
  for p in $(seq 0 $((PROCS - 1))); do
    size=$((N / PROCS + (p < N % PROCS ? 1 : 0)))
    known=$((KNOWN - off)); known=$((known < 0 ? 0 : known > size ? size : known))
    rate=$((FLOOD_RATE / PROCS + (p == 0 ? FLOOD_RATE % PROCS : 0)))
    ip netns exec "$NS_C" bash -c "ulimit -n $((size + 1024 < hard ? size + 1024 : hard)) && exec \
      ${PIN_GENERATOR[*]} '$LOADGEN' storm --server 10.200.255.254:51820 --server-key '$SERVER_PUB' \
      --devices $size --first $((PEERS - N + off)) --source-base $FIRST_SOURCE --sources $SOURCES \
      --deadline-secs $DEADLINE --flood-rate $rate --flood-sources $FLOOD_SOURCES \
      --flood-secs $FLOOD_SECS \
      --known-devices $known ${at[*]} ${MODEL_ARGS[*]} --times-file '$TMPD/times.$p' --json" \
      >"$TMPD/report.$p" 2>"$TMPD/generator.$p.log" &
    pids+=($!)
    merge+=(--report "$TMPD/report.$p" --times "$TMPD/times.$p")
    off=$((off + size))
  done
  # A generator exits 1 when devices are left without a session; its report says so.
  for p in "${pids[@]}"; do wait "$p" || true; done
  "$LOADGEN" merge --json "${merge[@]}" || {
    echo "storm.sh: a generator process failed:" >&2; cat "$TMPD"/generator.*.log >&2; return 1; }
}

for run in $(seq 1 "$RUNS"); do
  for impl in $IMPLS; do
    start_wg "$NS_S" "$IFN" "$impl"; SRV_PID=$STARTED
    ip netns exec "$NS_S" wg setconf "$IFN" "$TMPD/server.conf"
    ip -n "$NS_S" link set "$IFN" up
    rss0=$(rss_kb "$SRV_PID"); cpu0=$(cpu_ticks "$SRV_PID"); read -r udp_in0 udp_err0 < <(udp_counters "$NS_S" InDatagrams RcvbufErrors)
    report=$(run_storm)
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

python3 - "$TMPD/results.jsonl" "$KNOWN" "$FLOOD_RATE" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
known, flood = int(sys.argv[2]) > 0, int(sys.argv[3]) > 0
def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None
def s(v): return "—" if v is None else f"{v:.2f} s"
def n(v): return "—" if v is None else f"{v:,.0f}"
def us(r):
    # Server CPU per session, the warm-up's sessions included (with a flood, its cost too).
    sessions = r["with_session"] + ((r.get("warmup") or {}).get("with_session") or 0)
    return r["server_cpu_s"] * 1e6 / sessions if sessions else None
print("\n| server | devices | count | with a session | failed | p50 | p90 | p100 (last) | cookie replies | retries "
      "| server CPU | CPU per session | RSS per peer |" + (" UDP in / dropped at the server |" if flood else ""))
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if flood else ""))
for impl in dict.fromkeys(r["server"] for r in rows):
    rs = [r for r in rows if r["server"] == impl]
    groups = [("all", lambda r: r)] + ([("known", lambda r: r["known"]), ("new", lambda r: r["new"])] if known else [])
    for name, part in groups:
        g = [part(r) for r in rs]
        m = lambda k: med(x.get(k) for x in g)
        cells = [impl, name, n(m("devices")), n(m("with_session")), n(m("failed")), s(m("p50_s")), s(m("p90_s")),
                 s(m("p100_s")), n(m("cookie_replies")), n(m("retries"))]
        if name == "all":
            cells += [s(med(r["server_cpu_s"] for r in rs)), f"{n(med(us(r) for r in rs))} µs",
                      f"{med(r['rss_per_peer_kb'] for r in rs):.1f} KB"]
            if flood:
                cells.append(f"{n(med(r['server_udp_in'] for r in rs))} / {n(med(r['server_udp_rcvbuf_errors'] for r in rs))}")
        else:
            cells += [""] * (3 + flood)
        print("| " + " | ".join(cells) + " |")
print(f"\n(medians of {len(rs)} run(s) each; p50, p90 and p100 are over the devices that got a session)")
PYEOF
if [[ ${STRICT:-0} == 1 ]]; then
  python3 -c "import json,sys; sys.exit(1 if any(json.loads(l)['failed'] for l in open(sys.argv[1])) else 0)" \
    "$TMPD/results.jsonl" || { echo "storm.sh: devices were left without a session" >&2; exit 1; }
fi
if [[ -n $MAX_RETRIES ]]; then
  python3 - "$TMPD/results.jsonl" "$MAX_RETRIES" <<'PYEOF' || exit 1
import json, sys
limit, bad = int(sys.argv[2]), []
for r in map(json.loads, open(sys.argv[1])):
    retries = r["retries"] + ((r.get("warmup") or {}).get("retries") or 0)
    if retries > limit:
        bad.append(f"{r['server']} run {r['run']}: {retries} retries")
if bad:
    print(f"storm.sh: more than {limit} retries: " + "; ".join(bad), file=sys.stderr)
    sys.exit(1)
PYEOF
fi
