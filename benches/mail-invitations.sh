#!/usr/bin/env bash
# 2,000 invitations mailed by `heimweg serve` to a real SMTP server (aiosmtpd from PyPI,
# STARTTLS and AUTH, tests/mail/smtp_server.py), with the gateway restarted in the middle:
# an orderly stop (SIGTERM, what `systemctl restart` sends) in RUNS runs, and one hard kill
# (SIGKILL) after them. The list is imported through the API (which wakes the sender at once).
# Per run: the time from the import's start to the last mail on the server, how many mails
# arrived, how many people got none and how many got one twice, and whether every mailed link
# is distinct. One JSON line per run.
#
#   cargo build --release --workspace
#   HEIMWEG_TEST_SMTP_PYTHON=target/mail-venv/bin/python RUNS=3 bash benches/mail-invitations.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
HW=${HW:-$PWD/target/release/heimweg}
PY=${HEIMWEG_TEST_SMTP_PYTHON:?set HEIMWEG_TEST_SMTP_PYTHON to a Python with aiosmtpd}
N=${N:-2000}
RUNS=${RUNS:-3}
RESTART_AT=${RESTART_AT:-700}
bench_init mail-invitations hwm
SMTP_PID=""
trap 'stop_pid "$SMTP_PID"; bench_cleanup' EXIT
ip netns add "$NS_S"; ip -n "$NS_S" link set lo up

bash tests/mail/certs.sh "$TMPD"
python3 - "$N" >"$TMPD/staff.csv" <<'EOF'
import sys
print("user;email;group;device")
for i in range(int(sys.argv[1])):
    print(f"Person {i};person{i}@stadt.example;default;Laptop {i}")
EOF

mails() { find "$1" -name '*.eml' | wc -l; }

# run KIND: one run on a fresh state directory and mail directory; prints its JSON line.
run() {
  local kind=$1 t0 t1
  local state="$TMPD/state-$kind-$RANDOM" maildir="$TMPD/mail-$kind-$RANDOM"
  mkdir -p "$maildir"
  stop_pid "$SMTP_PID"
  ip netns exec "$NS_S" "$PY" tests/mail/smtp_server.py "$maildir" "$TMPD/tls.crt" \
    "$TMPD/tls.key" heimweg smtp-secret --port 2525 >"$TMPD/smtp.out" 2>"$TMPD/smtp.log" &
  SMTP_PID=$!
  until grep -q READY "$TMPD/smtp.out" 2>/dev/null; do sleep 0.05; done
  cat >"$TMPD/env" <<EOF
HEIMWEG_PUBLIC_URL=https://vpn.stadt.example
HEIMWEG_SMTP_HOST=localhost
HEIMWEG_SMTP_PORT=2525
HEIMWEG_SMTP_USER=heimweg
HEIMWEG_SMTP_PASSWORD=smtp-secret
HEIMWEG_SMTP_CA_FILE=$TMPD/ca.crt
HEIMWEG_MAIL_FROM=VPN <vpn@stadt.example>
HEIMWEG_MAIL_PER_MINUTE=1000000
EOF
  start() {
    ip netns exec "$NS_S" env HEIMWEG_ENV_FILE="$TMPD/env" "$HW" --state-dir "$state" serve \
      --interface "$IFN" --workers 1 --metrics-listen off >>"$TMPD/gw.log" 2>&1 &
    SRV_PID=$!
    until [[ -S /var/run/wireguard/$IFN.sock ]]; do sleep 0.05; done
    until ip netns exec "$NS_S" curl -s -o /dev/null http://127.0.0.1:8080/api/v1/openapi.json; do sleep 0.05; done
  }
  start
  local hwc=(env HEIMWEG_ENV_FILE="$TMPD/env" "$HW" --state-dir "$state")
  "${hwc[@]}" settings endpoint vpn.stadt.example:51820 >/dev/null
  local token
  token=$("${hwc[@]}" token create bench --scope users:write --scope devices:write 2>/dev/null)
  t0=$(date +%s%N)
  ip netns exec "$NS_S" curl -sf -o /dev/null -X POST -H "Authorization: Bearer $token" \
    -H 'Content-Type: text/csv' --data-binary @"$TMPD/staff.csv" \
    "http://127.0.0.1:8080/api/v1/import/people?mail=true"
  local imported_ms=$((($(date +%s%N) - t0) / 1000000))
  until (($(mails "$maildir") >= RESTART_AT)); do sleep 0.02; done
  local at_stop; at_stop=$(mails "$maildir")
  if [[ $kind == kill ]]; then kill -KILL "$SRV_PID"; else kill -TERM "$SRV_PID"; fi
  wait "$SRV_PID" 2>/dev/null || true
  rm -f "/var/run/wireguard/$IFN.sock"
  local at_restart; at_restart=$(mails "$maildir")
  start
  # Done when every person has a mail and the queue has nothing left (a killed sender's
  # claims come back after their lease, two minutes).
  local deadline=$(($(date +%s) + 400))
  until (($(mails "$maildir") >= N)) && ! "${hwc[@]}" user invitations --limit 100000 | grep -qE ' (queued|sending) '; do
    (($(date +%s) < deadline)) || break
    sleep 0.1
  done
  t1=$(date +%s%N)
  stop_pid "$SRV_PID"; SRV_PID=""
  python3 - "$maildir" "$kind" "$N" "$imported_ms" "$(((t1 - t0) / 1000000))" "$at_stop" "$at_restart" <<'EOF'
import email, email.policy, json, os, re, sys
d, kind, n, imported_ms, total_ms, at_stop, at_restart = sys.argv[1:8]
to, links = {}, set()
for f in sorted(os.listdir(d)):
    if not f.endswith(".eml"):
        continue
    m = email.message_from_binary_file(open(os.path.join(d, f), "rb"), policy=email.policy.default)
    to[m["X-Envelope-To"]] = to.get(m["X-Envelope-To"], 0) + 1
    text = m.get_body(("plain",)).get_content()
    links.add(re.search(r"/enroll/(\S+)", text).group(1))
mails = sum(to.values())
print(json.dumps({"restart": kind, "invitations": int(n), "import_ms": int(imported_ms),
    "all_sent_ms": int(total_ms), "mails": mails, "people_without_mail": int(n) - len(to),
    "people_mailed_twice": sum(1 for c in to.values() if c > 1), "distinct_links": len(links),
    "mails_before_stop": int(at_stop), "mails_when_stopped": int(at_restart)}))
EOF
}

for _ in $(seq 1 "$RUNS"); do run term; done
[[ ${KILL_RUN:-1} == 1 ]] && run kill
