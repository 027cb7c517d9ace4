#!/usr/bin/env bash
# schemathesis (property-based API testing, from PyPI) against heimweg's own OpenAPI document:
# `heimweg serve` in a network namespace of its own with a fresh state directory, an endpoint
# set and a token holding every scope; schemathesis reads /api/v1/openapi.json and sends every
# operation generated valid and invalid requests (examples, boundaries, random data; a bounded
# number per operation and a time budget for the whole run). Fails on any 5xx answer
# (not_a_server_error) and on any answer whose body does not match what the document says
# for its status (response_schema_conformance).
#
# Usage (as root, from anywhere): tests/schemathesis.sh
#   HEIMWEG                     the heimweg binary (default target/debug/heimweg)
#   HEIMWEG_SCHEMATHESIS_EXAMPLES  test cases per operation and phase (default 30)
#   HEIMWEG_SCHEMATHESIS_SECONDS   time budget for the whole run (default 120)
#   HEIMWEG_SCHEMATHESIS_SEED      random seed (default: a new one, printed; rerun with it)
# schemathesis is installed, at the version pinned here, into a virtualenv under target/.
# Reports (JUnit, and a pytest file that replays each failure) go to target/schemathesis/;
# the gateway's log to target/schemathesis/gateway.log.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

[[ $(id -u) -eq 0 ]] || { echo "schemathesis.sh: must run as root (namespaces, TUN)" >&2; exit 2; }
hw=${HEIMWEG:-$root/target/debug/heimweg}
[[ -x $hw ]] || { echo "schemathesis.sh: no heimweg binary at $hw (cargo build first)" >&2; exit 2; }
examples=${HEIMWEG_SCHEMATHESIS_EXAMPLES:-30}
seconds=${HEIMWEG_SCHEMATHESIS_SECONDS:-120}
seed=${HEIMWEG_SCHEMATHESIS_SEED:-$((RANDOM * 32768 + RANDOM))}

version=4.32.5
venv=$root/target/schemathesis-venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "version $version"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$version"
fi

out=$root/target/schemathesis
rm -rf "$out"
mkdir -p "$out"
ns=hwst-$$
ifname=hwst$$
tmp=$(mktemp -d /tmp/hwst.XXXXXX)
gw_pid=""
cleanup() {
  set +e
  [[ -n $gw_pid ]] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

export HEIMWEG_ENV_FILE=/dev/null
hwc() { "$hw" --state-dir "$tmp/state" "$@"; }
ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" "$hw" --state-dir "$tmp/state" serve --interface "$ifname" --workers 1 \
  --uapi-dir "$tmp/uapi" --metrics-listen off >"$out/gateway.log" 2>&1 &
gw_pid=$!
up=0
for _ in $(seq 1 150); do
  if ip netns exec "$ns" python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/api/v1/openapi.json', timeout=1)" 2>/dev/null; then
    up=1
    break
  fi
  kill -0 "$gw_pid" 2>/dev/null || break
  sleep 0.2
done
if [[ $up -ne 1 ]]; then
  echo "schemathesis.sh: the gateway did not come up" >&2
  tail -20 "$out/gateway.log" >&2
  exit 1
fi
hwc settings endpoint vpn.schemathesis.example:51820 >/dev/null
scopes=()
for s in devices:read devices:write groups:read groups:write users:read users:write tokens:read \
  tokens:write audit:read; do
  scopes+=(--scope "$s")
done
token=$(hwc token create schemathesis "${scopes[@]}" 2>/dev/null)

echo "schemathesis $version: $examples cases per operation, at most ${seconds}s, seed $seed"
rc=0
# From the report directory: schemathesis keeps its own files (.schemathesis/) where it runs.
(cd "$out" && ip netns exec "$ns" "$venv/bin/schemathesis" run \
  http://127.0.0.1:8080/api/v1/openapi.json \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples "$examples" --max-time "$seconds" --seed "$seed" --workers 1 \
  --request-timeout 10 --suppress-health-check all --no-color --generation-database none \
  --report junit,pytest --report-dir "$out") >"$out/run.log" 2>&1 || rc=$?
tail -12 "$out/run.log"

# The verdict, from the JUnit report: every failed check fails the run, and so does every
# error but one kind: an exception inside Hypothesis's own engine (its target optimiser has
# been seen to raise IndexError), which says nothing about heimweg and is only reported.
alive=1
kill -0 "$gw_pid" 2>/dev/null || alive=0
verdict=0
python3 - "$out" "$rc" "$alive" <<'PY' || verdict=$?
import glob, sys, xml.etree.ElementTree as ET
out, rc, alive = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
reports = glob.glob(out + "/junit*.xml")
bad = []
if not alive:
    bad.append("the gateway died during the run")
if not reports:
    bad.append(f"schemathesis wrote no report (exit code {rc})")
for r in reports:
    for case in ET.parse(r).getroot().iter("testcase"):
        for child in case:
            text = (child.get("message") or "") + (child.text or "")
            if child.tag == "failure":
                bad.append(f"{case.get('name')}: {text.strip()[:2000]}")
            elif child.tag == "error":
                if "hypothesis/internal/conjecture" in text:
                    print(f"schemathesis.sh: warning: Hypothesis failed internally in "
                          f"{case.get('name')} (not a finding): {text.strip().splitlines()[0]}")
                else:
                    bad.append(f"{case.get('name')}: error: {text.strip()[:2000]}")
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
if [[ $verdict -ne 0 ]]; then
  echo "schemathesis.sh: failed (seed $seed; the whole output in $out/run.log, a pytest file" \
    "replaying each failure and the JUnit report in $out, the gateway's log in $out/gateway.log)" >&2
  grep -m 20 "panicked\|ERROR" "$out/gateway.log" >&2 || true
  exit 1
fi
echo "schemathesis.sh: passed (seed $seed)"
