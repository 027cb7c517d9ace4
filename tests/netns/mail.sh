#!/usr/bin/env bash
# End-to-end test of invitations by mail: `heimweg serve` in a gateway namespace sends through
# a real SMTP server (aiosmtpd from PyPI with STARTTLS required and AUTH, its certificate signed
# by a test CA the gateway is told about), the mail is read back with Python's mail parser, its
# link is opened in headless Chromium, the config it hands out comes up with wg-quick
# (wireguard-go) in a client namespace and reaches the group's network; the rollout view shows
# it, and one click there mails a reminder whose new link replaces the old one. The gateway is
# restarted in between: the queue and the invitations survive it.
#
# Usage (as root, from the repo root, after `npm ci` in tests/panel; the browser steps are in
# tests/panel/mail.mjs):
#   HEIMWEG=/path/to/heimweg HEIMWEG_TEST_SMTP_PYTHON=/venv/bin/python bash tests/netns/mail.sh
# Screenshots (the mail, the link's pages, the rollout view) go to $HEIMWEG_SCREENSHOTS
# (default target/panel-screenshots).
set -eEuo pipefail

[[ $(id -u) -eq 0 ]] || { echo "mail.sh: must run as root" >&2; exit 2; }
HW=${HEIMWEG:?set HEIMWEG to the heimweg binary}
PY=${HEIMWEG_TEST_SMTP_PYTHON:?set HEIMWEG_TEST_SMTP_PYTHON to a Python with aiosmtpd}
for tool in wg wg-quick wireguard-go ip ping node chromium openssl; do
  command -v "$tool" >/dev/null || { echo "mail.sh: missing tool: $tool" >&2; exit 2; }
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

T_START=$(date +%s)
ID=$$
PFX="hwml-$ID"
NS_GW="$PFX-gw"
NS_LAN="$PFX-lan"
NS_C1="$PFX-c1"
NS_C2="$PFX-c2"
ALL_NS=("$NS_GW" "$NS_LAN" "$NS_C1" "$NS_C2")
GWIF="hw${ID}m"
C1IF="hw${ID}n1"
SOCKETS=("$GWIF" "$C1IF")
WG_RUN=/var/run/wireguard
TMPD=$(mktemp -d /tmp/hwml.XXXXXX)
STATE="$TMPD/state"
GW_LOG="$TMPD/gateway.log"
GW_PID=""
BG_PIDS=()
PASSED=0
FAILED=0
ALLOWED=192.0.2.2
MAILDIR="$TMPD/mail"
SHOTS=${HEIMWEG_SCREENSHOTS:-$ROOT/target/panel-screenshots}

# shellcheck source=tests/netns/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
diag() {
  echo "  -- gateway log:"; tail -n 15 "$GW_LOG" 2>/dev/null | sed 's/^/    /' || true
  echo "  -- smtp log:"; tail -n 10 "$TMPD/smtp.log" 2>/dev/null | sed 's/^/    /' || true
}
hw() { HEIMWEG_ENV_FILE="$TMPD/env" "$HW" --state-dir "$STATE" "$@"; }

gateway_topology "$ALLOWED"
mkdir -p "$MAILDIR" "$SHOTS"

bash "$ROOT/tests/mail/certs.sh" "$TMPD"
nsx "$NS_GW" "$PY" "$ROOT/tests/mail/smtp_server.py" "$MAILDIR" "$TMPD/tls.crt" "$TMPD/tls.key" \
  heimweg smtp-secret --port 2525 >"$TMPD/smtp.out" 2>"$TMPD/smtp.log" &
BG_PIDS+=($!)
check "smtp: the test server listens (STARTTLS required, AUTH)" wait_until 10 grep -q READY "$TMPD/smtp.out"

# The settings file, as an admin writes /etc/heimweg/env: the password only here (0600).
( umask 077; cat >"$TMPD/env" <<EOF
HEIMWEG_PUBLIC_URL=http://127.0.0.1:8080
HEIMWEG_SMTP_HOST=localhost
HEIMWEG_SMTP_PORT=2525
HEIMWEG_SMTP_SECURITY=starttls
HEIMWEG_SMTP_USER=heimweg
HEIMWEG_SMTP_PASSWORD=smtp-secret
HEIMWEG_SMTP_CA_FILE=$TMPD/ca.crt
HEIMWEG_MAIL_FROM=VPN der Stadt <vpn@stadt.example>
HEIMWEG_MAIL_HELPDESK=IT-Service, Tel. 1234
EOF
)

check "serve: the gateway comes up with the mail settings" serve_with_settings
hw settings endpoint 198.51.100.1:51820 >/dev/null
hw group add staff --allow 192.0.2.0/25 >/dev/null
echo 'alice-password-1' | hw admin add alice --password-stdin >/dev/null 2>&1
check "serve: no secret of the mail settings is in the log or on the command line" \
  eval "! grep -q smtp-secret '$GW_LOG' && ! grep -q smtp-secret /proc/$GW_PID/cmdline"

mails() { ls "$MAILDIR" | grep -c '\.eml$' || true; }
printf '\xef\xbb\xbfBenutzer;E-Mail;Gruppe;Ger\xc3\xa4t\r\nJ\xc3\xbcrgen M\xc3\xbcller;jm@stadt.example;staff;J\xc3\xbcrgens Laptop\r\nAnna Wei\xc3\x9f;aw@stadt.example;staff;Annas iPad\r\nBernd;;staff;Bernds Laptop\r\n' \
  >"$TMPD/staff.csv"
hw user import "$TMPD/staff.csv" --mail --invitations "$TMPD/links.csv" >"$TMPD/import.out" 2>&1
check "import: two invitations queued for mail, Bernd's (no address) in the list" \
  eval "grep -q '^2 invitations queued for mail' '$TMPD/import.out' && [[ \$(grep -c enroll '$TMPD/links.csv') == 1 ]]"
# Queued by another process: the gateway finds them within its 10 s poll.
check "mail: the gateway sends both within its poll interval" wait_until 15 eval '[[ $(mails) == 2 ]]'

read_mails() { "$PY" "$ROOT/tests/mail/read_mail.py" "$MAILDIR"/*.eml; }
read_mails >"$TMPD/mails.json"
field() { # TO FIELD: a field of the mail to TO
  python3 -c "import json,sys; print(next(m for m in json.load(open(sys.argv[1])) if m['envelope_to']==sys.argv[2])[sys.argv[3]])" \
    "$TMPD/mails.json" "$1" "$2"
}
check "mail: sent over STARTTLS as the authenticated user, from the configured sender" \
  eval "[[ '$(field jm@stadt.example auth_user)' == heimweg && '$(field jm@stadt.example from)' == *vpn@stadt.example* ]]"
check "mail: German first, English second, the helpdesk named, no key and no config" \
  python3 - "$TMPD/mails.json" <<'EOF'
import json, sys
m = next(m for m in json.load(open(sys.argv[1])) if m["envelope_to"] == "jm@stadt.example")
t, h = m["text"], m["html"]
assert t.index("Guten Tag Jürgen Müller") < t.index("Hello Jürgen Müller"), t
assert "Hilfe: IT-Service, Tel. 1234" in t
for part in (t, h):
    assert "PrivateKey" not in part and "[Interface]" not in part and "PresharedKey" not in part
EOF
link_of() { field "$1" text | grep -o 'http://127.0.0.1:8080/enroll/[^[:space:]]*' | head -n 1; } # TO
LINK=$(link_of jm@stadt.example)
ANNA_LINK=$(link_of aw@stadt.example)

# A restart between the mail and the click: the link still works.
kill -TERM "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
check "serve: the gateway comes back after a restart" serve_with_settings

MAIL_HTML=$(field jm@stadt.example html)
browser() { # STEP: tests/panel/mail.mjs in the gateway's namespace, where the panel listens
  ip netns exec "$NS_GW" env PANEL_URL=http://127.0.0.1:8080 LINK="$LINK" MAIL_HTML="$MAIL_HTML" \
    CONF_OUT="$TMPD/jm.conf" SHOTS="$SHOTS" STEP="$1" node "$ROOT/tests/panel/mail.mjs"
}
check "browser: the staff member opens the mailed link and saves the config" browser staff
nsx "$NS_C1" env WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go LOG_LEVEL=error \
  wg-quick up "$TMPD/jm.conf" >>"$TMPD/wg-quick.log" 2>&1 || true
check "tunnel: the mailed device reaches its group's network" wait_until 15 ping_ok "$NS_C1" "$ALLOWED"
# The reconciler writes handshakes back every 10 s: then the list says "connected".
check "rollout: the list says Jürgen's mail was sent, opened, set up and connected" \
  wait_until 25 eval "hw user invitations | grep -E '^Jürgen Müller +Jürgens Laptop +sent +yes +yes +yes'"

check "browser: the rollout view shows it, and one click reminds Anna" browser admin
check "mail: the reminder arrives" wait_until 15 eval '[[ $(mails) == 3 ]]'
read_mails >"$TMPD/mails.json"
check "mail: the reminder carries a new link and the old one is dead" \
  python3 - "$TMPD/mails.json" "$ANNA_LINK" <<'EOF'
import json, re, sys, urllib.error, urllib.request
mails = [m for m in json.load(open(sys.argv[1])) if m["envelope_to"] == "aw@stadt.example"]
assert len(mails) == 2 and mails[1]["subject"].startswith("Erinnerung"), [m["subject"] for m in mails]
new = re.search(r"http://127.0.0.1:8080/enroll/\S+", mails[1]["text"]).group(0)
assert new != sys.argv[2]
EOF
gone() { ! nsx "$NS_GW" python3 -c "import sys,urllib.request; b=urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(); sys.exit(0 if 'Jetzt einrichten' in b else 1)" "$1"; }
check "link: Anna's first link no longer opens" gone "$ANNA_LINK"
AUDIT_TOKEN=$(hw token create audit --scope audit:read 2>/dev/null)
reminded_by_alice() {
  nsx "$NS_GW" python3 - "$AUDIT_TOKEN" <<'EOF'
import json, sys, urllib.request
r = urllib.request.Request("http://127.0.0.1:8080/api/v1/audit?limit=100",
                           headers={"Authorization": "Bearer " + sys.argv[1]})
items = json.load(urllib.request.urlopen(r, timeout=5))["items"]
assert any(e["action"] == "link.remind" and e["actor"] == "admin:alice"
           and e["subject"] == "Annas iPad" for e in items), items[:5]
EOF
}
check "audit: the reminder is logged as the admin's doing" reminded_by_alice

nsx "$NS_C1" wg-quick down "$TMPD/jm.conf" >>"$TMPD/wg-quick.log" 2>&1 || true
summary
[[ $FAILED -eq 0 ]]
