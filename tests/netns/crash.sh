#!/usr/bin/env bash
# Crash safety: `heimweg serve` killed with SIGKILL at random moments while concurrent clients
# enroll, rotate, change, revoke, create and change groups, and create and redeem enrollment
# links, through the JSON API and through the CLI (whose processes are killed now and then too).
# After the last restart nothing acknowledged may be lost, nothing half-written may exist, no
# address may be doubled, and the gateway's peers must equal the active devices.
#
# Usage (as root, from the repo root):
#   HEIMWEG=/path/to/heimweg bash tests/netns/crash.sh
# With HEIMWEG_DATABASE_URL set (a fresh PostgreSQL database), gateway and CLI use it instead
# of the SQLite file in the state directory.
# Knobs: CRASH_KILLS (gateway kills, default 20), CRASH_THREADS (client threads, default 4),
# CRASH_SEED (random seed, default from $RANDOM; printed so that a run can be repeated as far
# as timing allows).
#
# The gateway runs in a namespace of its own (its TUN, API and UAPI socket are this run's
# alone). The workload (one python3 process, CRASH_THREADS threads) runs in that namespace too:
# each thread owns the devices, groups and links it made, so the operations on one object are
# sequential and the journal gives their order. Each request is journaled as
#   ack      the answer said it happened (2xx; a CLI that exited 0), with what it returned,
#   rejected the answer said it did not happen (4xx/5xx; a CLI that exited non-zero),
#   refused  no connection: it never reached the gateway,
#   unknown  sent, but no answer (the gateway was killed; a CLI killed by the workload),
#   timeout  no answer within 15 s (it may still happen later).
# Meanwhile this script kills the gateway CRASH_KILLS times with random delays of 0.1-2 s from
# each restart (so some kills hit it while it starts) and restarts it at once; the workload
# kills about a third of its CLI processes 5-300 ms after they start.
#
# After the last restart and a few quiet seconds the checker compares the journal with what
# the API, the CLI listing, the database itself and the data plane (`wg show dump` over the
# UAPI socket) say. Prints PASS/FAIL lines and finally "N passed, M failed"; exits 1 if any
# failed.
set -eEuo pipefail

[[ $(id -u) -eq 0 ]] || { echo "crash.sh: must run as root" >&2; exit 2; }
HW=${HEIMWEG:?set HEIMWEG to the heimweg binary}
DB_URL=${HEIMWEG_DATABASE_URL:-}
for tool in wg ip python3 $([[ -n $DB_URL ]] && echo psql); do
  command -v "$tool" >/dev/null || { echo "crash.sh: missing tool: $tool" >&2; exit 2; }
done
# Never the settings file of the machine running the test.
export HEIMWEG_ENV_FILE=${HEIMWEG_ENV_FILE:-/dev/null}

T_START=$(date +%s)
ID=$$
PFX="hwcr-$ID"
NS_GW="$PFX-gw"
ALL_NS=("$NS_GW")
GWIF="hw${ID}k"
SOCKETS=("$GWIF")
WG_RUN=/var/run/wireguard
TMPD=$(mktemp -d /tmp/hwcr.XXXXXX)
STATE="$TMPD/state"
GW_LOG="$TMPD/gateway.log"
GW_PID=""
BG_PIDS=()
PASSED=0
FAILED=0
KILLS=${CRASH_KILLS:-20}
THREADS=${CRASH_THREADS:-4}
SEED=${CRASH_SEED:-$RANDOM}
RANDOM=$SEED

# shellcheck source=tests/netns/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

diag() {
  echo "  -- gateway log (last lines):"; tail -n 15 "$GW_LOG" 2>/dev/null | sed 's/^/    /' || true
}

hw() { "$HW" --state-dir "$STATE" "$@"; }

log "backend: $([[ -n $DB_URL ]] && echo PostgreSQL || echo SQLite), seed $SEED, $KILLS kills, $THREADS client threads"
ip netns add "$NS_GW"
ip -n "$NS_GW" link set lo up

start_gateway() { # in the background; `ip netns exec` execs, so $! is the gateway itself
  ip netns exec "$NS_GW" "$HW" --state-dir "$STATE" serve --interface "$GWIF" --workers 2 \
    >>"$GW_LOG" 2>&1 &
  GW_PID=$!
}
TOKEN=""
api_ready() {
  nsx "$NS_GW" python3 - "$TOKEN" <<'EOF'
import sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:8080/api/v1/devices?limit=1",
                             headers={"Authorization": "Bearer " + sys.argv[1]})
sys.exit(0 if urllib.request.urlopen(req, timeout=2).status == 200 else 1)
EOF
}

# The first start creates the database (or its schema) and the gateway key: kill it in the
# middle of that a few times too. Whatever it left behind, the next start must cope.
for _ in 1 2 3; do
  ms=$((20 + RANDOM % 381))
  start_gateway
  sleep "$(printf '0.%03d' "$ms")"
  kill -9 "$GW_PID" 2>/dev/null || true
  wait "$GW_PID" 2>/dev/null || true
  log "first start killed after 0.$(printf '%03d' "$ms")s"
  wait_until 5 eval "! ip -n '$NS_GW' link show '$GWIF'" || true
done
start_gateway
check "serve: the first start comes up after 3 first starts were killed" \
  wait_until 15 test -S "$WG_RUN/$GWIF.sock"
hw settings endpoint 198.51.100.1:51820 >/dev/null 2>&1
TOKEN=$(hw token create crash --scope devices:read --scope devices:write --scope groups:read \
  --scope groups:write --scope audit:read 2>/dev/null)
check "api: the gateway answers with the new token" wait_until 10 api_ready

# ---- the workload: concurrent API and CLI clients, every request journaled ----
cat >"$TMPD/workload.py" <<'EOF'
import base64, http.client, json, os, random, re, subprocess, sys, threading, time

TOKEN, HW, STATE, JOURNAL, STOP = sys.argv[1:6]
THREADS, SEED = int(sys.argv[6]), int(sys.argv[7])
TIMEOUT = 15
PREFIXES = [f"198.18.{i}.0/24" for i in range(16)] + ["192.0.2.0/25", "2001:db8:5::/48"]

lock = threading.Lock()
journal = []
groups_acked = ["default"]  # groups whose creation was acknowledged: targets for devices


def record(e):
    with lock:
        e["i"] = len(journal)
        journal.append(e)


def call(method, path, body=None, auth=True):
    """(outcome, status, payload, error): outcome is answered, refused, unknown or timeout."""
    headers = {"Authorization": "Bearer " + TOKEN} if auth else {}
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    elif body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn = http.client.HTTPConnection("127.0.0.1", 8080, timeout=TIMEOUT)
    try:
        try:
            conn.connect()
        except OSError as e:
            return "refused", None, None, repr(e)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return "answered", r.status, r.read(), None
        except TimeoutError as e:
            return "timeout", None, None, repr(e)
        except (OSError, http.client.HTTPException) as e:
            return "unknown", None, None, repr(e)
    finally:
        conn.close()


def outcome_of(res):
    kind, status, _, _ = res
    if kind == "answered":
        return "ack" if 200 <= status < 300 else "rejected"
    return kind


def genkey():
    priv = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout.strip()
    return priv, pubkey(priv)


def pubkey(priv):
    return subprocess.run(["wg", "pubkey"], input=priv + "\n", capture_output=True, text=True,
                          check=True).stdout.strip()


gateway_keys = set()  # the gateway keys in the configs handed out


def parse_conf(text):
    """(public key of the config's private key or None, ipv4, ipv6) of a rendered config."""
    g = re.search(r"^\[Peer\]\s*^PublicKey\s*=\s*(\S+)", text, re.M)
    with lock:
        gateway_keys.add(g.group(1) if g else None)
    m = re.search(r"^PrivateKey\s*=\s*(\S+)", text, re.M)
    a = re.search(r"^Address\s*=\s*(.+)$", text, re.M)
    v4 = v6 = None
    if a:
        for part in a.group(1).split(","):
            addr = part.strip().split("/")[0]
            if ":" in addr:
                v6 = addr
            else:
                v4 = addr
    return (pubkey(m.group(1)) if m else None), v4, v6


def err_text(res):
    kind, status, payload, error = res
    if kind == "answered":
        return f"{status} {payload[:200].decode(errors='replace')}"
    return error


class Worker:
    def __init__(self, t):
        self.t = t
        self.rnd = random.Random(SEED * 1000 + t)
        self.n = 0
        self.live = []      # devices acknowledged and not (maybe) revoked
        self.groups = []    # own groups whose creation was acknowledged
        self.links = []     # own links whose creation was acknowledged, not known to be used
        self.cli_times = [] # how long CLI runs took that were not killed

    def fresh(self, kind):
        self.n += 1
        return f"w{self.t}{kind}{self.n}"

    def group(self):
        with lock:
            return self.rnd.choice(groups_acked)

    # -- enrollments --
    def enroll_api(self):
        name = self.fresh("d")
        own = self.rnd.random() < 0.5
        key = genkey()[1] if own else None
        body = {"name": name, "group": self.group()}
        if key:
            body["public_key"] = key
        if self.rnd.random() < 0.3:
            body["owner"] = f"owner{self.t}"
        if self.rnd.random() < 0.3:
            body["expires_in_days"] = 30
        e = {"op": "enroll_api", "name": name, "key": key, "group": body["group"],
             "expires": "days" if "expires_in_days" in body else None}
        res = call("POST", "/api/v1/devices", body)
        self.finish_enroll(e, res, lambda j: j["config"], lambda j: j["device"])

    def finish_enroll(self, e, res, conf_of, device_of):
        e["outcome"] = outcome_of(res)
        if e["outcome"] == "ack":
            j = json.loads(res[2])
            d = device_of(j)
            cpub, v4, v6 = parse_conf(conf_of(j))
            e.update(answered_key=d["public_key"], ipv4=d["ipv4"], ipv6=d["ipv6"],
                     expires_at=d["expires_at"], answered_group=d["group"])
            if e["key"] is None:
                e["key"] = d["public_key"]
            problems = []
            if d["public_key"] != e["key"]:
                problems.append("the answer's key is not the one sent")
            if cpub is not None and cpub != d["public_key"]:
                problems.append("the config's private key does not belong to the device's key")
            if (v4, v6) != (d["ipv4"], d["ipv6"]):
                problems.append(f"the config's addresses {v4},{v6} differ from the device's")
            if problems:
                e["anomaly"] = "; ".join(problems)
            self.live.append({"name": e["name"], "ipv4": d["ipv4"], "ipv6": d["ipv6"]})
        elif e["outcome"] != "refused":
            e["error"] = err_text(res)
        record(e)

    def cli(self, args):
        """Runs the CLI; kills about a third of the runs early. (outcome, stdout, stderr)."""
        p = subprocess.Popen([HW, "--state-dir", STATE] + args, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        killed = []
        timer = None
        if self.rnd.random() < 0.35:
            # Somewhere in the typical run time of the last runs, so that the kill lands
            # while the command opens the database, writes or prints.
            recent = sorted(self.cli_times[-20:]) or [0.1]
            typical = recent[len(recent) // 2]

            def kill():
                if p.poll() is None:
                    p.kill()
                    killed.append(True)
            timer = threading.Timer(self.rnd.uniform(0.1, 1.1) * typical, kill)
            timer.start()
        t0 = time.monotonic()
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            return "timeout", out, err
        finally:
            if timer:
                timer.cancel()
        if not killed:
            self.cli_times.append(time.monotonic() - t0)
        if p.returncode == 0:
            return "ack", out, err
        if killed and p.returncode == -9:
            return "killed", out, err
        return "rejected", out, err

    def enroll_cli(self):
        name = self.fresh("c")
        own = self.rnd.random() < 0.5
        key = genkey()[1] if own else None
        group = self.group()
        args = ["device", "add", name, "--group", group, "--no-qr"]
        if key:
            args += ["--public-key", key]
        e = {"op": "enroll_cli", "name": name, "key": key, "group": group, "expires": None}
        outcome, out, err = self.cli(args)
        e["outcome"] = outcome
        if outcome == "ack":
            cpub, v4, v6 = parse_conf(out)
            if key is None:
                e["key"] = cpub
            e.update(ipv4=v4, ipv6=v6, expires_at=None)
            if key is not None and cpub is not None:
                e["anomaly"] = "a config with a private key for a device that brought its own"
            if e["key"] is None or v4 is None or v6 is None:
                e["anomaly"] = "the CLI printed no complete config"
            else:
                self.live.append({"name": name, "ipv4": v4, "ipv6": v6})
        elif outcome == "rejected":
            e["error"] = err.strip()[-300:]
        record(e)

    # -- enrollment links --
    def link_create(self):
        name = self.fresh("l")
        group = self.group()
        res = call("POST", "/api/v1/enrollment-links", {"device_name": name, "group": group})
        e = {"op": "link_create", "name": name, "group": group, "outcome": outcome_of(res)}
        if e["outcome"] == "ack":
            j = json.loads(res[2])
            e.update(link_id=j["id"], path=j["path"])
            self.links.append({"id": j["id"], "name": name, "group": group, "path": j["path"],
                               "tries": 0, "maybe_used": False})
        elif e["outcome"] != "refused":
            e["error"] = err_text(res)
        record(e)

    def link_redeem(self, link):
        link["tries"] += 1
        # The confirmation page first (read-only), as a browser would.
        res = call("GET", link["path"], auth=False)
        if outcome_of(res) != "ack":
            record({"op": "link_open", "name": link["name"], "link_id": link["id"],
                    "outcome": outcome_of(res), "status": res[1],
                    "maybe_used": link["maybe_used"]})
            if res[0] == "answered" and res[1] == 410:
                self.links.remove(link)
            return
        res = call("POST", link["path"], body=b"", auth=False)
        e = {"op": "link_redeem", "name": link["name"], "link_id": link["id"],
             "group": link["group"], "key": None, "expires": None,
             "maybe_used": link["maybe_used"], "status": res[1]}
        if outcome_of(res) == "ack":
            m = re.search(rb'data:application/octet-stream;base64,([A-Za-z0-9+/=]+)', res[2])
            conf = base64.b64decode(m.group(1)).decode() if m else ""
            cpub, v4, v6 = parse_conf(conf)
            e.update(outcome="ack", key=cpub, ipv4=v4, ipv6=v6, expires_at=None)
            if cpub is None or v4 is None or v6 is None:
                e["anomaly"] = "the redemption page holds no complete config"
            else:
                self.live.append({"name": link["name"], "ipv4": v4, "ipv6": v6})
            self.links.remove(link)
        else:
            e["outcome"] = outcome_of(res)
            if e["outcome"] != "refused":
                e["error"] = err_text(res)
            if e["outcome"] in ("unknown", "timeout"):
                link["maybe_used"] = True
            if res[0] == "answered" and res[1] == 410:
                self.links.remove(link)
        record(e)

    # -- groups --
    def group_create(self):
        name = self.fresh("g")
        prefixes = sorted(self.rnd.sample(PREFIXES, self.rnd.randint(1, 3)))
        res = call("POST", "/api/v1/groups", {"name": name, "allowed_prefixes": prefixes})
        e = {"op": "group_create", "name": name, "prefixes": prefixes, "outcome": outcome_of(res)}
        if e["outcome"] == "ack":
            e["prefixes"] = json.loads(res[2])["allowed_prefixes"]
            self.groups.append(name)
            with lock:
                groups_acked.append(name)
        elif e["outcome"] != "refused":
            e["error"] = err_text(res)
        record(e)

    def group_patch(self):
        name = self.rnd.choice(self.groups)
        prefixes = sorted(self.rnd.sample(PREFIXES, self.rnd.randint(1, 4)))
        res = call("PATCH", f"/api/v1/groups/{name}", {"allowed_prefixes": prefixes})
        e = {"op": "group_patch", "name": name, "prefixes": prefixes, "outcome": outcome_of(res)}
        if e["outcome"] == "ack":
            e["prefixes"] = json.loads(res[2])["allowed_prefixes"]
        elif e["outcome"] != "refused":
            e["error"] = err_text(res)
        record(e)

    # -- operations on an own device --
    def check_addresses(self, e, dev, v4, v6):
        if (v4, v6) != (dev["ipv4"], dev["ipv6"]):
            e["anomaly"] = (f"addresses changed: enrolled with {dev['ipv4']},{dev['ipv6']}, "
                            f"now answered {v4},{v6}")

    def rotate_api(self, dev):
        own = self.rnd.random() < 0.5
        key = genkey()[1] if own else None
        body = json.dumps({"public_key": key}).encode() if key else b""
        res = call("POST", f"/api/v1/devices/{dev['name']}/rotate", body or None)
        e = {"op": "rotate_api", "name": dev["name"], "key": key, "outcome": outcome_of(res)}
        if e["outcome"] == "ack":
            j = json.loads(res[2])
            d = j["device"]
            cpub, v4, v6 = parse_conf(j["config"])
            if key is None:
                e["key"] = d["public_key"]
            if d["public_key"] != e["key"] or (cpub is not None and cpub != d["public_key"]):
                e["anomaly"] = "the rotation's answer and config disagree on the key"
            self.check_addresses(e, dev, d["ipv4"], d["ipv6"])
        elif e["outcome"] != "refused":
            e["error"] = err_text(res)
        record(e)

    def rotate_cli(self, dev):
        key = genkey()[1]
        outcome, out, err = self.cli(["device", "rotate", dev["name"], "--public-key", key,
                                      "--no-qr"])
        e = {"op": "rotate_cli", "name": dev["name"], "key": key, "outcome": outcome}
        if outcome == "ack":
            _, v4, v6 = parse_conf(out)
            self.check_addresses(e, dev, v4, v6)
        elif outcome == "rejected":
            e["error"] = err.strip()[-300:]
        record(e)

    def patch_device(self, dev):
        body = {}
        r = self.rnd.random()
        if r < 0.4:
            body["group"] = self.group()
        elif r < 0.8:
            body["expires_at"] = int(time.time()) + self.rnd.randint(4, 40)
        else:
            body["expires_at"] = None
        if self.rnd.random() < 0.25:
            body["group"] = self.group()
        res = call("PATCH", f"/api/v1/devices/{dev['name']}", body)
        e = {"op": "patch_device", "name": dev["name"], "outcome": outcome_of(res)}
        if "group" in body:
            e["group"] = body["group"]
        if "expires_at" in body:
            e["expires_at"] = body["expires_at"]
        if e["outcome"] == "ack":
            d = json.loads(res[2])
            if "group" in body and d["group"] != body["group"]:
                e["anomaly"] = f"asked for group {body['group']}, answered {d['group']}"
            if "expires_at" in body and d["expires_at"] != body["expires_at"]:
                e["anomaly"] = f"asked for expiry {body['expires_at']}, answered {d['expires_at']}"
            self.check_addresses(e, dev, d["ipv4"], d["ipv6"])
        elif e["outcome"] != "refused":
            e["error"] = err_text(res)
        record(e)

    def revoke(self, dev, via):
        if via == "api":
            res = call("POST", f"/api/v1/devices/{dev['name']}/revoke", b"")
            outcome, error = outcome_of(res), err_text(res)
        else:
            outcome, _, err = self.cli(["device", "revoke", dev["name"]])
            error = err.strip()[-300:]
        e = {"op": f"revoke_{via}", "name": dev["name"], "outcome": outcome}
        if outcome not in ("ack", "refused"):
            e["error"] = error
        # A device whose revocation may have happened gets no further operations.
        if outcome in ("ack", "unknown", "timeout", "killed"):
            self.live.remove(dev)
        record(e)

    def step(self):
        choices = [(self.enroll_api, 3.0), (self.enroll_cli, 1.0), (self.link_create, 1.2)]
        if len(self.groups) < 4:
            choices.append((self.group_create, 0.3))
        if self.groups:
            choices.append((self.group_patch, 0.6))
        if self.links:
            link = self.rnd.choice(self.links)
            choices.append((lambda: self.link_redeem(link), 1.5))
        if self.live:
            dev = self.rnd.choice(self.live)
            choices += [(lambda: self.rotate_api(dev), 1.5), (lambda: self.rotate_cli(dev), 0.3),
                        (lambda: self.patch_device(dev), 1.5),
                        (lambda: self.revoke(dev, "api"), 0.7),
                        (lambda: self.revoke(dev, "cli"), 0.4)]
        total = sum(w for _, w in choices)
        x = self.rnd.uniform(0, total)
        for f, w in choices:
            x -= w
            if x <= 0:
                break
        f()

    def run(self):
        while not os.path.exists(STOP):
            try:
                self.step()
            except Exception as ex:  # a bug of the workload itself: keep it visible
                record({"op": "workload_error", "name": "", "outcome": "error",
                        "error": repr(ex)})
                time.sleep(0.1)
            time.sleep(self.rnd.uniform(0, 0.03))


workers = [Worker(t) for t in range(THREADS)]
threads = [threading.Thread(target=w.run) for w in workers]
for th in threads:
    th.start()
for th in threads:
    th.join()
# Links never redeemed stay open; the checker checks them too.
with open(JOURNAL, "w") as f:
    json.dump(journal, f)
with open(JOURNAL + ".gateway-keys", "w") as f:
    json.dump(sorted(gateway_keys, key=str), f)
EOF

# ---- the checker: the journal against the API, the CLI, the database and the data plane ----
cat >"$TMPD/check.py" <<'EOF'
import collections, http.client, json, os, re, subprocess, sys, time

JOURNAL, TOKEN, HW, STATE, GWIF, RESULTS, KILLS = sys.argv[1:8]
DB_URL = os.environ.get("HEIMWEG_DATABASE_URL", "")
results = open(RESULTS, "w")


def verdict(ok, desc, details=()):
    """One PASS or FAIL line for crash.sh, and what went wrong below it."""
    results.write(("PASS" if ok else "FAIL") + "\t" + desc + "\n")
    details = [str(d).replace("\n", " ") for d in details] if not ok else []
    for d in details[:15]:
        results.write("DETAIL\t" + d + "\n")
    if len(details) > 15:
        results.write(f"DETAIL\t... and {len(details) - 15} more\n")
    results.flush()


def get(path):
    c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=15)
    c.request("GET", path, headers={"Authorization": "Bearer " + TOKEN})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError(f"GET {path}: {r.status} {body[:200]!r}")
    return json.loads(body)


def api_devices():
    out, offset = [], 0
    while True:
        page = get(f"/api/v1/devices?limit=500&offset={offset}")
        out += page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return out


def cli_devices():
    out, offset = [], 0
    while True:
        text = subprocess.run([HW, "--state-dir", STATE, "device", "list", "--limit", "500",
                               "--offset", str(offset)], capture_output=True, text=True,
                              check=True).stdout
        lines = text.splitlines()
        m = re.match(r"\((\d+) of (\d+) shown\)", lines[-1])
        rows = [l.split() for l in lines[1:-1]]
        out += [{"name": r[0], "group": r[1], "ipv4": r[2], "status": r[3], "public_key": r[-1]}
                for r in rows]
        offset += len(rows)
        if not rows or offset >= int(m.group(2)):
            return out


def sql(query):
    """Rows of strings (None for NULL), from the SQLite file or through psql."""
    if DB_URL:
        out = subprocess.run(["psql", DB_URL, "-X", "-q", "-A", "-t", "-F", "\x1f",
                              "-P", "null=<NULL>", "-v", "ON_ERROR_STOP=1", "-c", query],
                             capture_output=True, text=True, check=True).stdout
        # (not splitlines: it would split at the separator too)
        return [[None if v == "<NULL>" else v for v in line.split("\x1f")]
                for line in out.split("\n") if line]
    import sqlite3
    db = sqlite3.connect(f"file:{STATE}/heimweg.db?mode=ro", uri=True, timeout=30)
    try:
        return [[None if v is None else str(v) for v in row] for row in db.execute(query)]
    finally:
        db.close()


def wg_dump():
    return subprocess.run(["wg", "show", GWIF, "dump"], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def wg_peers():
    dump = wg_dump()
    peers = {}
    for line in dump[1:]:
        f = line.split("\t")
        peers[f[0]] = frozenset(a for a in f[3].split(",") if a and a != "(none)")
    return peers


journal = sorted(json.load(open(JOURNAL)), key=lambda e: e["i"])
UNSURE = ("unknown", "timeout", "killed")

# ---- what happened: counts per kind of operation ----
kinds = collections.OrderedDict()
for e in journal:
    kinds.setdefault(e["op"], collections.Counter())[e["outcome"]] += 1
cols = ["ack", "rejected", "refused", "unknown", "timeout", "killed"]
print(f"    {'operation':<14}" + "".join(f"{c:>10}" for c in cols))
for op, c in kinds.items():
    print(f"    {op:<14}" + "".join(f"{c.get(k, 0):>10}" for k in cols))
tot = collections.Counter()
for c in kinds.values():
    tot.update(c)
print(f"    {'all':<14}" + "".join(f"{tot.get(k, 0):>10}" for k in cols)
      + f"    (gateway kills: {KILLS})")
rejections = [f"{e['op']} {e['name']}: {e.get('error') or e.get('status')}" for e in journal
              if e["outcome"] == "rejected"]
if rejections:
    print("    rejected operations (an answer that said no):")
    for r in rejections[:10]:
        print("      " + r)
verdict(not any(e["op"] == "workload_error" for e in journal),
        "workload: no client error of its own",
        [e["error"] for e in journal if e["op"] == "workload_error"])
verdict(tot["ack"] >= 50 and tot["unknown"] + tot["killed"] >= 1,
        f"workload: enough happened ({tot['ack']} acknowledged, "
        f"{tot['unknown'] + tot['killed'] + tot['timeout']} without an answer, "
        f"{tot['refused']} refused)")
# The gateway's identity survives every kill: each config handed out names the key it has now.
handed_out = json.load(open(JOURNAL + ".gateway-keys"))
current = wg_dump()[0].split("\t")[1]  # (field 0 is the private key: never printed)
verdict(handed_out == [current], f"answers: every config handed out names the gateway's "
        f"current key ({len(handed_out)} key(s) seen)",
        [f"a config named {k}, the gateway has {current}" for k in handed_out if k != current])
verdict(not any("anomaly" in e for e in journal),
        "answers: every acknowledged answer was consistent (key, config, addresses)",
        [f"{e['op']} {e['name']}: {e['anomaly']}" for e in journal if "anomaly" in e])

# ---- expectations per device, group and link, from the journal in order ----
ANY = object()


class Field:
    """The values a field may have at the end: the last acknowledged one, or one of the
    operations without an answer since (a timed-out one stays possible for good)."""

    def __init__(self):
        self.values, self.floating, self.known = set(), set(), False

    def ack(self, v):
        self.values, self.known = {v} | self.floating, True

    def first(self, v):
        """The value of a creation without an answer: if the object exists, it has it."""
        if self.known:
            self.values.add(v)
        else:
            self.values, self.known = {v}, True

    def maybe(self, v, timed_out=False):
        self.values.add(v)
        if timed_out:
            self.floating.add(v)

    def allows(self, v):
        return not self.known or ANY in self.values or v in self.values


devices = collections.OrderedDict()
groups = collections.OrderedDict()
links = {}


def dev(name):
    return devices.setdefault(name, {"created": None, "key": Field(), "group": Field(),
                                     "expires": Field(), "addr": None, "revoked": "no",
                                     "ops": []})


for e in journal:
    op, o, name = e["op"], e["outcome"], e["name"]
    if op in ("enroll_api", "enroll_cli", "link_redeem"):
        d = dev(name)
        d["ops"].append(f"{op}:{o}")
        if o == "ack":
            d["created"] = "ack"
            d["key"].ack(e["key"])
            d["group"].ack(e["group"])
            d["expires"].ack(e["expires_at"])
            d["addr"] = (e["ipv4"], e["ipv6"])
        elif o in UNSURE:
            if d["created"] != "ack":
                d["created"] = "maybe"
            d["key"].first(e["key"] if e["key"] else ANY)
            d["group"].first(e["group"])
            d["expires"].first(ANY if e["expires"] else None)
        elif op == "link_redeem" and o == "rejected" and e["status"] == 410:
            # The link was used: by an earlier redemption without an answer, or never by us.
            d["created"] = "used" if e["maybe_used"] else "lost-link"
            d["key"].maybe(ANY)
        elif d["created"] is None:
            d["created"] = "no"
        if op == "link_redeem":
            links[e["link_id"]]["redeem"].append((o, e["status"], e["maybe_used"]))
    elif op == "link_create":
        if o == "ack":
            links[e["link_id"]] = {"name": name, "redeem": [], "opened_gone": []}
    elif op == "link_open":
        if o == "rejected" and e["status"] == 410:
            d = dev(name)
            d["created"] = "used" if e["maybe_used"] else "lost-link"
            d["key"].maybe(ANY)
            links[e["link_id"]]["opened_gone"].append(e["maybe_used"])
    elif op in ("rotate_api", "rotate_cli"):
        d = dev(name)
        d["ops"].append(f"{op}:{o}")
        if o == "ack":
            d["key"].ack(e["key"])
        elif o in UNSURE:
            d["key"].maybe(e["key"] if e["key"] else ANY, o == "timeout")
    elif op == "patch_device":
        d = dev(name)
        d["ops"].append(f"{op}:{o}")
        for field in ("group", "expires_at"):
            if field in e:
                f = d["group" if field == "group" else "expires"]
                if o == "ack":
                    f.ack(e[field])
                elif o in UNSURE:
                    f.maybe(e[field], o == "timeout")
    elif op in ("revoke_api", "revoke_cli"):
        d = dev(name)
        d["ops"].append(f"{op}:{o}")
        if o == "ack":
            d["revoked"] = "yes"
        elif o in UNSURE and d["revoked"] != "yes":
            d["revoked"] = "maybe"
    elif op in ("group_create", "group_patch"):
        g = groups.setdefault(name, {"created": None, "prefixes": Field()})
        if op == "group_create":
            if o == "ack":
                g["created"] = "ack"
            elif o in UNSURE:
                g["created"] = "maybe"
            elif g["created"] is None:
                g["created"] = "no"
        if o == "ack":
            g["prefixes"].ack(tuple(e["prefixes"]))
        elif o in UNSURE:
            g["prefixes"].maybe(tuple(e["prefixes"]), o == "timeout")

# ---- the state, as the API, the CLI and the database report it ----
now = int(time.time())
api = {d["name"]: d for d in api_devices()}
cli = {d["name"]: d for d in cli_devices()}
verdict(len(api) == len(cli) and all(
    n in cli and (cli[n]["group"], cli[n]["ipv4"], cli[n]["public_key"])
    == (d["group"], d["ipv4"], d["public_key"])
    and (cli[n]["status"] == d["status"] or d["expires_at"] and abs(d["expires_at"] - now) < 5)
    for n, d in api.items()),
    f"listings: the CLI and the API list the same {len(api)} devices",
    [f"{n}: api {api.get(n)} cli {cli.get(n)}" for n in set(api) ^ set(cli)])

# 1. acknowledged enrollments, rotations, changes and revocations
lost, wrong, ghosts = [], [], []
for name, x in devices.items():
    d = api.get(name)
    created = x["created"]
    if created in ("ack", "used", "lost-link") and d is None:
        lost.append(f"{name}: {created} ({' '.join(x['ops'])}) but it does not exist")
        continue
    if created == "no" and d is not None:
        ghosts.append(f"{name}: every attempt was refused or rejected ({' '.join(x['ops'])}), "
                      f"yet it exists")
        continue
    if d is None:
        continue
    if not x["key"].allows(d["public_key"]):
        wrong.append(f"{name}: key {d['public_key']}, acknowledged "
                     f"{[v for v in x['key'].values if v is not ANY]} ({' '.join(x['ops'])})")
    if x["addr"] and (d["ipv4"], d["ipv6"]) != x["addr"]:
        wrong.append(f"{name}: addresses {d['ipv4']},{d['ipv6']}, acknowledged {x['addr']}")
    if not x["group"].allows(d["group"]):
        wrong.append(f"{name}: group {d['group']}, acknowledged {x['group'].values} "
                     f"({' '.join(x['ops'])})")
    if not x["expires"].allows(d["expires_at"]):
        wrong.append(f"{name}: expires_at {d['expires_at']}, acknowledged "
                     f"{x['expires'].values} ({' '.join(x['ops'])})")
    revoked = d["revoked_at"] is not None
    if x["revoked"] == "yes" and not revoked:
        wrong.append(f"{name}: its revocation was acknowledged, but it is not revoked")
    if x["revoked"] == "no" and revoked:
        wrong.append(f"{name}: revoked, but no revocation was ever sent ({' '.join(x['ops'])})")
unexpected = [n for n in api if n not in devices]
verdict(not lost, "1. every acknowledged enrollment exists (API, CLI and link)", lost)
verdict(not wrong, "1. keys, addresses, groups, expiries and revocations are as acknowledged",
        wrong)
verdict(not ghosts and not unexpected,
        "1. no device exists that was refused, rejected or never asked for",
        ghosts + [f"{n}: not in the journal" for n in unexpected])
gapi = {g["name"]: g for g in get("/api/v1/groups")["items"]}
gwrong = []
for name, x in groups.items():
    if x["created"] == "ack" and name not in gapi:
        gwrong.append(f"group {name}: its creation was acknowledged, but it does not exist")
    elif x["created"] == "no" and name in gapi:
        gwrong.append(f"group {name}: its creation was refused or rejected, yet it exists")
    elif name in gapi:
        shown = get(f"/api/v1/groups/{name}")["allowed_prefixes"]
        if not x["prefixes"].allows(tuple(shown)):
            gwrong.append(f"group {name}: allowed_prefixes {shown}, acknowledged "
                          f"{x['prefixes'].values}")
gwrong += [f"group {n}: not in the journal" for n in gapi if n != "default" and n not in groups]
verdict(not gwrong, f"1. acknowledged group creations and changes are in place "
        f"({sum(1 for g in groups.values() if g['created'] == 'ack')} groups)", gwrong)

# 2. addresses: unique, complete, and the database consistent
adds = []
by4, by6 = collections.defaultdict(list), collections.defaultdict(list)
for d in api.values():
    by4[d["ipv4"]].append(d["name"])
    by6[d["ipv6"]].append(d["name"])
    if d["status"] == "active" and not (d["ipv4"] and d["ipv6"]):
        adds.append(f"{d['name']}: active without both addresses")
adds += [f"{a} is held by {ns}" for a, ns in list(by4.items()) + list(by6.items()) if len(ns) > 1]
own = re.findall(r"inet6? ([0-9a-f.:]+)/", subprocess.run(
    ["ip", "-o", "addr", "show", "dev", GWIF], capture_output=True, text=True).stdout)
adds += [f"the gateway's own address {a} is held by {(by4.get(a) or []) + (by6.get(a) or [])}"
         for a in own if a in by4 or a in by6]
if len(own) < 2:
    adds.append(f"the gateway's interface has not both its addresses: {own}")
verdict(not adds, "2. no two devices share an IPv4 or IPv6 address (all of them are within "
        "the grace period), none has the gateway's; every active device has both", adds)

if not DB_URL:
    ic = sql("PRAGMA integrity_check")
    fk = sql("PRAGMA foreign_key_check")
    verdict(ic == [["ok"]] and not fk, "2. SQLite: integrity_check ok, no foreign key violation",
            ic + fk)
db = []
db += [f"address {r} belongs to no device" for r in sql(
    "SELECT a.family, a.pool_offset, a.device_id FROM addresses a "
    "LEFT JOIN devices d ON d.id = a.device_id WHERE a.device_id IS NOT NULL AND d.id IS NULL")]
db += [f"unrevoked device {r} lacks an address row" for r in sql(
    "SELECT d.id, d.name FROM devices d WHERE d.revoked_at IS NULL AND ("
    "NOT EXISTS (SELECT 1 FROM addresses a WHERE a.family = 4 AND a.pool_offset = d.ipv4_offset"
    " AND a.device_id = d.id) OR "
    "NOT EXISTS (SELECT 1 FROM addresses a WHERE a.family = 6 AND a.pool_offset = d.ipv6_offset"
    " AND a.device_id = d.id))")]
db += [f"address row {r} held for a revoked device or another offset" for r in sql(
    "SELECT a.family, a.pool_offset, d.name FROM addresses a JOIN devices d ON d.id = a.device_id"
    " WHERE d.revoked_at IS NOT NULL OR (a.family = 4 AND a.pool_offset <> d.ipv4_offset)"
    " OR (a.family = 6 AND a.pool_offset <> d.ipv6_offset)")]
db += [f"revoked device {r} has an address not released into its grace period" for r in sql(
    "SELECT d.id, d.name FROM devices d WHERE d.revoked_at IS NOT NULL AND ("
    "NOT EXISTS (SELECT 1 FROM addresses a WHERE a.family = 4 AND a.pool_offset = d.ipv4_offset"
    " AND a.device_id IS NULL AND a.released_at IS NOT NULL) OR "
    "NOT EXISTS (SELECT 1 FROM addresses a WHERE a.family = 6 AND a.pool_offset = d.ipv6_offset"
    " AND a.device_id IS NULL AND a.released_at IS NOT NULL))")]
for fam, col in ((4, "ipv4_offset"), (6, "ipv6_offset")):
    db += [f"IPv{fam} offset {r[0]} is in {r[1]} device rows" for r in sql(
        f"SELECT {col}, COUNT(*) FROM devices GROUP BY {col} HAVING COUNT(*) > 1")]
    cursor = sql(f"SELECT value FROM settings WHERE key = 'pool_v{fam}_next'")
    top = sql(f"SELECT MAX(pool_offset) FROM addresses WHERE family = {fam}")
    if top and top[0][0] is not None and (not cursor or int(cursor[0][0]) <= int(top[0][0])):
        db += [f"the IPv{fam} cursor {cursor} is not past the highest offset handed out {top}"]
db += [f"device {r[0]} has no device.create audit entry" for r in sql(
    "SELECT d.name FROM devices d WHERE NOT EXISTS (SELECT 1 FROM audit_log a"
    " WHERE a.action = 'device.create' AND a.subject = d.name)")]
revoked_names = {r[0] for r in sql("SELECT name FROM devices WHERE revoked_at IS NOT NULL")}
revoke_audits = {r[0] for r in sql("SELECT subject FROM audit_log WHERE action = 'device.revoke'")}
db += [f"device {n} is revoked without a device.revoke audit entry"
       for n in revoked_names - revoke_audits]
db += [f"device {n} has a device.revoke audit entry but is not revoked"
       for n in revoke_audits - revoked_names]
# The newest key-setting audit entry names the key the device has.
last_key = {}
for subject, detail in sql("SELECT subject, detail FROM audit_log WHERE action IN "
                           "('device.create', 'device.rotate') ORDER BY id"):
    last_key[subject] = detail
for name, key, rotated in sql("SELECT name, public_key, key_rotated_at FROM devices"):
    if last_key.get(name) != key:
        db.append(f"device {name} has key {key}, its audit trail says {last_key.get(name)}")
verdict(not db, "2. database: address rows only for existing devices, no device without its "
        "rows, revocations released, cursors ahead, audit trail matching every row", db)

# 3. enrollment links
link_rows = {int(r[0]): r for r in sql(
    "SELECT l.id, l.device_name, l.used_at, l.revoked_at, "
    "(SELECT COUNT(*) FROM devices d WHERE d.name_key = LOWER(l.device_name)) "
    "FROM enrollment_links l")}
lk = [f"link {i} ({r[1]}) is used, but no device {r[1]} exists"
      for i, r in link_rows.items() if r[2] is not None and r[4] == "0"]
counts = collections.Counter()
for lid, x in links.items():
    r = link_rows.get(lid)
    if r is None:
        lk.append(f"link {lid} ({x['name']}): its creation was acknowledged, but it is gone")
        continue
    used, has_device = r[2] is not None, r[4] != "0"
    outcomes = [o for o, _, _ in x["redeem"]]
    if "ack" in outcomes:
        counts["redeemed (acknowledged)"] += 1
        if not (used and has_device):
            lk.append(f"link {lid} ({x['name']}): redemption acknowledged, used={used}, "
                      f"device exists={has_device}")
    elif any(o in UNSURE for o in outcomes):
        counts["redemption unknown: " + ("used" if used else "open")] += 1
        if used != has_device:
            lk.append(f"link {lid} ({x['name']}): redemption unknown, used={used}, "
                      f"device exists={has_device}")
    else:
        counts["never redeemed or refused"] += 1
        if used or has_device:
            lk.append(f"link {lid} ({x['name']}): never redeemed with an answer or in flight "
                      f"({outcomes}), yet used={used}, device exists={has_device}")
    if any(not m for m in x["opened_gone"]) or any(
            o == "rejected" and s == 410 and not m for o, s, m in x["redeem"]):
        lk.append(f"link {lid} ({x['name']}): an open link answered 410 (gone) to its "
                  f"first use")
print("    links: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
verdict(not lk, f"3. enrollment links: acknowledged ones used with their device, unknown ones "
        f"used with a device or open, none used without a device ({len(link_rows)} links)", lk)

# 4. the data plane: peers == active devices, with their addresses (a few tries: an expiry
# may fall between the two reads)
for attempt in range(10):
    now = int(time.time())
    want = {d["public_key"]: frozenset([d["ipv4"] + "/32", d["ipv6"] + "/128"])
            for d in api_devices() if d["revoked_at"] is None
            and (d["expires_at"] is None or d["expires_at"] > now)}
    have = wg_peers()
    if want == have:
        break
    time.sleep(1)
diff = [f"missing peer {k} {sorted(v)}" for k, v in want.items() if k not in have]
diff += [f"extra peer {k} {sorted(v)}" for k, v in have.items() if k not in want]
diff += [f"peer {k}: allowed IPs {sorted(have[k])}, device has {sorted(want[k])}"
         for k in want.keys() & have.keys() if want[k] != have[k]]
n_expired = sum(1 for d in api_devices() if d["status"] == "expired")
verdict(not diff, f"4. the gateway's peers are exactly the {len(want)} active devices, with "
        f"their addresses ({len(api)} devices, {n_expired} expired)", diff)
EOF

# ---- kill the gateway at random moments while the workload runs ----
ip netns exec "$NS_GW" python3 "$TMPD/workload.py" "$TOKEN" "$HW" "$STATE" "$TMPD/journal.json" \
  "$TMPD/stop" "$THREADS" "$SEED" >"$TMPD/workload.log" 2>&1 &
WL_PID=$!
BG_PIDS+=("$WL_PID")
sleep 2
kills=0
self_exits=0
for _ in $(seq 1 "$KILLS"); do
  ms=$((100 + RANDOM % 1901))
  delay=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
  sleep "$delay"
  if ! kill -0 "$GW_PID" 2>/dev/null; then
    self_exits=$((self_exits + 1))
    log "the gateway exited by itself:"; diag
  fi
  kill -9 "$GW_PID" 2>/dev/null || true
  wait "$GW_PID" 2>/dev/null || true
  kills=$((kills + 1))
  log "kill $kills: SIGKILL ${delay}s after the (re)start"
  wait_until 5 eval "! ip -n '$NS_GW' link show '$GWIF'" || log "the interface outlived the gateway"
  start_gateway
done
check "kill: $kills SIGKILLs, and the gateway never exited by itself in between" test "$self_exits" -eq 0
check "restart: the gateway comes up after the last kill" wait_until 20 api_ready
sleep 3 # the workload goes on against a steady gateway
touch "$TMPD/stop"
wait_until 60 eval "! kill -0 $WL_PID 2>/dev/null" || true
check "workload: finished and wrote its journal" test -s "$TMPD/journal.json"
if [[ -s $TMPD/workload.log ]]; then log "workload stderr:"; sed 's/^/    /' "$TMPD/workload.log" | tail -n 20; fi
check "gateway: the log shows no panic" eval "! grep -q 'panicked at' '$GW_LOG'"

log "checking the state after $kills kills"
: >"$TMPD/results.tsv"
checker_ok=1
ip netns exec "$NS_GW" python3 "$TMPD/check.py" "$TMPD/journal.json" "$TOKEN" "$HW" "$STATE" \
  "$GWIF" "$TMPD/results.tsv" "$kills" || checker_ok=0
# The checker's findings, each FAIL followed by its details (the gateway log once, at the end).
failed_before=$FAILED
unset -f diag
while IFS=$'\t' read -r v desc; do
  case $v in
    PASS) pass "$desc" ;;
    FAIL) fail "$desc" ;;
    *) echo "    $desc" ;;
  esac
done <"$TMPD/results.tsv"
[[ $checker_ok -eq 1 ]] || fail "checker: it stopped with an error (see above)"
if [[ $FAILED -gt $failed_before ]]; then
  echo "  -- gateway log (last lines):"; tail -n 15 "$GW_LOG" | sed 's/^/    /'
fi

summary
[[ $FAILED -eq 0 ]]
