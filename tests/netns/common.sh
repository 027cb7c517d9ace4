# Helpers shared by the netns suites: logging, polling with deadlines, PASS/FAIL accounting
# and a cleanup that kills only what runs in this suite's own namespaces.
#
# The sourcing script defines: T_START, ALL_NS (its namespaces), BG_PIDS, GW_PID, PASSED,
# FAILED, TMPD, WG_RUN and SOCKETS (UAPI socket names to remove); optionally a `diag` function
# printed after every failure.

log() { printf '[%4ss] %s\n' "$(($(date +%s) - T_START))" "$*"; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# wait_until TIMEOUT_SECONDS CMD...: poll CMD every 0.2 s until it succeeds; 1 on timeout.
wait_until() {
  local timeout=$1; shift
  local deadline=$(($(date +%s%N) + timeout * 1000000000))
  while true; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    (($(date +%s%N) < deadline)) || return 1
    sleep 0.2
  done
}

pass() { PASSED=$((PASSED + 1)); log "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL: $*"; if declare -F diag >/dev/null; then diag; fi; }
# check DESCRIPTION CMD...: PASS if CMD succeeds, else FAIL.
check() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
# ping_ok NS DST: one ping from NS to DST is answered within a second.
ping_ok() { nsx "$1" ping -c 1 -W 1 -q "$2" >/dev/null 2>&1; }

SUMMARY_DONE=0
ABORT_AT=""
summary() {
  log "done in $(($(date +%s) - T_START)) s"
  echo "$PASSED passed, $FAILED failed"
  SUMMARY_DONE=1
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM ERR
  if [[ $SUMMARY_DONE -ne 1 ]]; then
    # aborted by set -e, a signal or a setup failure: count it and still print the summary
    [[ $rc -ne 0 && -n $ABORT_AT ]] && { FAILED=$((FAILED + 1)); log "FAIL: aborted: $ABORT_AT"; }
    [[ $FAILED -eq 0 ]] && FAILED=1
    summary
    [[ $rc -ne 0 ]] || rc=1
  fi
  local p ns pids
  for p in "${BG_PIDS[@]}" $GW_PID; do kill "$p" 2>/dev/null; done
  # Every process left in our uniquely named namespaces was started by this script
  # (gateway, wireguard-go daemons of wg-quick, socat, iperf3, tcpdump, python).
  for ns in "${ALL_NS[@]}"; do
    [[ -e /var/run/netns/$ns ]] || continue
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [[ -n $pids ]] && kill $pids 2>/dev/null
  done
  for _ in $(seq 1 25); do
    pids=""
    for ns in "${ALL_NS[@]}"; do
      [[ -e /var/run/netns/$ns ]] && pids+=" $(ip netns pids "$ns" 2>/dev/null)"
    done
    [[ -z ${pids// /} ]] && break
    sleep 0.2
  done
  [[ -n ${pids// /} ]] && kill -9 $pids 2>/dev/null
  for ns in "${ALL_NS[@]}"; do
    [[ -e /var/run/netns/$ns ]] && ip netns del "$ns" 2>/dev/null
  done
  for p in "${SOCKETS[@]}"; do rm -f "$WG_RUN/$p.sock"; done
  [[ -n ${KEEP_TMPD:-} ]] || rm -rf "$TMPD"
  exit "$rc"
}
trap cleanup EXIT
trap 'ABORT_AT="$BASH_COMMAND (exit $?) at line $LINENO in ${FUNCNAME[*]:-main}, called from lines ${BASH_LINENO[*]}"' ERR
trap 'exit 130' INT TERM

# serve_with_settings: `heimweg serve` in NS_GW with the settings file $TMPD/env (one worker, no
# metrics listener), logging to GW_LOG; ready once its UAPI socket is there. `ip netns exec`
# itself (not a shell function) goes to the background, so GW_PID is the gateway.
serve_with_settings() {
  ip netns exec "$NS_GW" env HEIMWEG_ENV_FILE="$TMPD/env" "$HW" --state-dir "$STATE" serve \
    --interface "$GWIF" --workers 1 --metrics-listen off >>"$GW_LOG" 2>&1 &
  GW_PID=$!
  wait_until 15 test -S "$WG_RUN/$GWIF.sock"
}

# gateway_topology LAN_ADDRESS...: the topology backup.sh and provisioning.sh share. Every
# namespace in ALL_NS with loopback up; NS_GW forwards, reaches NS_LAN over lan0 (192.0.2.1/24;
# NS_LAN holds the LAN_ADDRESSes, /24 each, and routes the device pool 10.77.0.0/16 back), and
# bridges NS_C1 and NS_C2 on br0 (198.51.100.1/24; the clients are .11 and .12).
gateway_topology() {
  local ns a n=0
  for ns in "${ALL_NS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  nsx "$NS_GW" sysctl -qw net.ipv4.ip_forward=1
  ip link add lan0 netns "$NS_GW" type veth peer name eth0 netns "$NS_LAN"
  ip -n "$NS_GW" addr add 192.0.2.1/24 dev lan0; ip -n "$NS_GW" link set lan0 up
  for a in "$@"; do ip -n "$NS_LAN" addr add "$a/24" dev eth0; done
  ip -n "$NS_LAN" link set eth0 up
  ip -n "$NS_LAN" route add 10.77.0.0/16 via 192.0.2.1
  ip -n "$NS_GW" link add br0 type bridge; ip -n "$NS_GW" addr add 198.51.100.1/24 dev br0
  ip -n "$NS_GW" link set br0 up
  for ns in "$NS_C1" "$NS_C2"; do
    n=$((n + 1))
    ip link add "up$n" netns "$NS_GW" type veth peer name eth0 netns "$ns"
    ip -n "$NS_GW" link set "up$n" master br0 up
    ip -n "$ns" addr add "198.51.100.1$n/24" dev eth0; ip -n "$ns" link set eth0 up
  done
}
