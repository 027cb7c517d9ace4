#!/usr/bin/env bash
# Access in time, timed: runs tests/netns/timewindow.sh RUNS times (a stock wg-quick client
# behind `heimweg serve`; a Berlin-time usage window closing during an iperf3 transfer and
# opening a minute later; an absence over the API; a config copied onto a second namespace)
# and prints the median and range of each time it reports:
#   WINDOW_CUTOFF_MS     the window's edge to the client's last answered ping (0: none after it)
#   WINDOW_RECONNECT_MS  the window's opening to the client's first answered ping again
#   ABSENCE_CUTOFF_MS    the API's absence request to the last answered ping
#   ABSENCE_RETURN_MS    the absence's end to the first answered ping again
#   SHARED_KEY_DETECT_MS the copy coming up to the device's key being flagged
# The pings go every 50 ms, so cut-off times are good to about 50 ms. Each run takes 4-6 min
# (the window's edge is the next minute boundary at least 30 s away).
#
# With SCRIPT=tests/netns/oidc.sh it times sign in to connect instead (a real OpenID provider,
# headless Chromium; about a minute a run; pings polled every 0.2 s, good to about 0.4 s):
#   ACTIVATION_TO_TRAFFIC_MS the gateway's answer to the fresh sign-in to the first answered ping
#   ADMIN_END_CUTOFF_MS      `heimweg user end-activation` to the first unanswered ping
#   OWN_END_CUTOFF_MS        the staff member's click on "End now" to the first unanswered ping
#   DISABLED_CUTOFF_MS       `heimweg user disable` to the first unanswered ping
#
# With SCRIPT=tests/netns/directory.sh it times the same without an identity provider (a real
# slapd; the directory password and a TOTP code in headless Chromium; about a minute a run):
#   LDAP_ACTIVATION_TO_TRAFFIC_MS the gateway's answer to the code to the first answered ping
#   LDAP_ADMIN_END_CUTOFF_MS      `heimweg user end-activation` to the first unanswered ping
#   DIRECTORY_CUTOFF_MS           an account locked in the directory to the first unanswered
#                                 ping (a sync every 10 s)
#
#   cargo build --release --workspace
#   RUNS=3 bash benches/access-time.sh
#   RUNS=5 SCRIPT=tests/netns/oidc.sh bash benches/access-time.sh
#   RUNS=5 SCRIPT=tests/netns/directory.sh bash benches/access-time.sh
set -euo pipefail
cd "$(dirname "$0")/.."
HW=${HW:-$PWD/target/release/heimweg}
RUNS=${RUNS:-3}
SCRIPT=${SCRIPT:-tests/netns/timewindow.sh}
OUT=$(mktemp -d /tmp/hw-access-time.XXXXXX)
for i in $(seq 1 "$RUNS"); do
  echo "run $i of $RUNS" >&2
  HEIMWEG=$HW bash "$SCRIPT" >"$OUT/run-$i.log" 2>&1 || {
    echo "run $i failed:" >&2; grep -E 'FAIL|passed' "$OUT/run-$i.log" >&2; exit 1; }
done
python3 - "$OUT" <<'PY'
import glob, re, statistics, sys
values = {}
for f in sorted(glob.glob(sys.argv[1] + "/run-*.log")):
    for k, v in re.findall(r"^([A-Z_]+_MS)=(\d+)$", open(f).read(), re.M):
        values.setdefault(k, []).append(int(v))
for k, vs in values.items():
    print(f"{k:30} median {statistics.median(vs):>8.0f}  min {min(vs):>7}  max {max(vs):>7}  runs {len(vs)}")
PY
rm -rf "$OUT"
