# Shared by the benchmark scripts (sourced, not run): setting a run up and cleaning it away,
# starting a WireGuard implementation with wireguard-go's command line in a namespace, reading
# CPU ticks and UDP counters. The scripts set `set -euo pipefail`, then call bench_init.
HWG=${HWG:-$PWD/target/release/heimweg-wg}
LOADGEN=${LOADGEN:-$PWD/target/release/heimweg-loadgen}
GT=${GT:-/opt/gotatun/bin/gotatun}
BT=${BT:-/opt/boringtun/bin/boringtun-cli}
WGGO=${WGGO:-$(command -v wireguard-go || true)}
# HWG_B: a second heimweg-wg build (implementation `heimweg-b`), for before/after series that
# alternate two builds the same way they alternate implementations.
HWG_B=${HWG_B:-}
TICK=$(getconf CLK_TCK)

# bench_init NAME PREFIX: refuses to run without root; sets NS_S and NS_C (the server's and
# the clients' namespace), IFN (PREFIX and the PID: the server's interface), IFACES (the
# interfaces whose UAPI sockets go at the end; a script adds its others), TMPD, and empty
# SRV_PID, CLI_PID and IPERF_PID; on exit, bench_cleanup stops those and removes the rest.
bench_init() {
  [[ $(id -u) -eq 0 ]] || { echo "$1: must run as root" >&2; exit 2; }
  NS_S="$2-s-$$"; NS_C="$2-c-$$"; IFN="$2$$"
  IFACES=("$IFN")
  TMPD=$(mktemp -d "/tmp/$2.XXXXXX")
  SRV_PID=""; CLI_PID=""; IPERF_PID=""
  trap bench_cleanup EXIT
}

bench_cleanup() {
  set +e
  stop_pid "$IPERF_PID"; stop_pid "$CLI_PID"; stop_pid "$SRV_PID"
  remove_namespaces "$NS_S" "$NS_C"
  local i
  for i in "${IFACES[@]}"; do rm -f "/var/run/wireguard/$i.sock"; done
  rm -rf "$TMPD"
}

# SERVER_CPUS and GENERATOR_CPUS (taskset lists, e.g. 1 and 0) pin the server and the load
# generator to their own cores, as if the devices were other machines: on two shared cores the
# generator otherwise competes with the server for the same CPU. Unset: no pinning.
PIN_SERVER=(); PIN_GENERATOR=()
[[ -n ${SERVER_CPUS:-} ]] && PIN_SERVER=(taskset -c "$SERVER_CPUS")
[[ -n ${GENERATOR_CPUS:-} ]] && PIN_GENERATOR=(taskset -c "$GENERATOR_CPUS")

# start_wg NS IFNAME IMPL: starts IMPL (heimweg, heimweg-b, wggo, gotatun, boringtun) on IFNAME
# in NS, logging to $TMPD/IFNAME.log; its PID in STARTED once its UAPI socket is there.
start_wg() {
  local ns=$1 ifn=$2 impl=$3
  case $impl in
    heimweg)   ip netns exec "$ns" "${PIN_SERVER[@]}" "$HWG" -f "$ifn" >"$TMPD/$ifn.log" 2>&1 & ;;
    heimweg-b) [[ -x $HWG_B ]] || { echo "$0: heimweg-b needs HWG_B, a heimweg-wg binary" >&2; exit 2; }
               ip netns exec "$ns" "${PIN_SERVER[@]}" "$HWG_B" -f "$ifn" >"$TMPD/$ifn.log" 2>&1 & ;;
    wggo)      LOG_LEVEL=error ip netns exec "$ns" "${PIN_SERVER[@]}" "$WGGO" -f "$ifn" >"$TMPD/$ifn.log" 2>&1 & ;;
    gotatun)   ip netns exec "$ns" "${PIN_SERVER[@]}" "$GT" -f --disable-drop-privileges "$ifn" >"$TMPD/$ifn.log" 2>&1 & ;;
    boringtun) ip netns exec "$ns" "${PIN_SERVER[@]}" "$BT" -f --disable-drop-privileges "$ifn" >"$TMPD/$ifn.log" 2>&1 & ;;
    *) echo "$0: unknown implementation $impl" >&2; exit 2 ;;
  esac
  STARTED=$!
  for _ in $(seq 1 100); do [[ -S /var/run/wireguard/$ifn.sock ]] && return 0; sleep 0.1; done
  echo "$0: $impl did not come up" >&2; cat "$TMPD/$ifn.log" >&2; exit 1
}

# stop_pid PID: stops a process this script started (nothing if PID is empty).
stop_pid() { if [[ -n $1 ]]; then kill "$1" 2>/dev/null && wait "$1" 2>/dev/null || true; fi; }

# cpu_ticks PID: user + system CPU of PID so far, in clock ticks (TICK per second).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# rss_kb PID: resident memory of PID in KiB.
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# udp_counters NS FIELD...: the named fields of the Udp line of /proc/net/snmp in NS.
udp_counters() {
  local ns=$1; shift
  ip netns exec "$ns" awk -v want="$*" '/^Udp:/ {
      if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1; next }
      n = split(want, w, " "); out = ""
      for (j = 1; j <= n; j++) out = out (j > 1 ? " " : "") $c[w[j]]
      print out
    }' /proc/net/snmp
}

# netns_pair NS_S NS_C NET SOURCES: two namespaces joined by a veth pair (s0 in NS_S, c0 in
# NS_C, both up); the server side is NET.255.254/16, the client side has SOURCES consecutive
# addresses from NET.0.1, as the load generator counts them.
netns_pair() {
  local ns_s=$1 ns_c=$2 net=$3 sources=$4 k
  ip netns add "$ns_s"; ip netns add "$ns_c"
  ip -n "$ns_s" link set lo up; ip -n "$ns_c" link set lo up
  ip link add s0 netns "$ns_s" type veth peer name c0 netns "$ns_c"
  ip -n "$ns_s" addr add "$net.255.254/16" dev s0; ip -n "$ns_s" link set s0 up
  for k in $(seq 0 $((sources - 1))); do
    echo "address add $net.$(((1 + k) / 256)).$(((1 + k) % 256))/16 dev c0"
  done | ip -n "$ns_c" -batch -
  ip -n "$ns_c" link set c0 up
}

# remove_namespaces NS...: kills what still runs in them and deletes them.
remove_namespaces() {
  local ns pids
  for ns in "$@"; do
    pids=$(ip netns pids "$ns" 2>/dev/null); [[ -n $pids ]] && kill $pids 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  return 0
}
