#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian 12 (as root), builds once
# and runs every test. Slow suites run when HEIMWEG_E2E=1 (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: real WireGuard peers (wireguard-go, wg, wg-quick), namespaces
# and traffic tools, tcpdump to capture packets for the replay test, and a PostgreSQL server
# for the second store backend; python3-venv for schemathesis (from PyPI) against the OpenAPI
# document; xmllint for the Apple profiles; openssl for the test certificates (the mail server,
# profile signing); poppler's pdftoppm for the printed sheets; Prometheus (and promtool), nftables and
# systemd-analyze for the operations checks; OpenLDAP's slapd, Samba's AD domain controller and
# the LDAP tools for the directory sync; tzdata for the usage-window test's Berlin clock (heimweg
# itself carries its own copy of the time zone database);
# Chromium, Node.js and npm for the browser test of the panel.
PKGS=(wireguard-go wireguard-tools iproute2 iputils-ping iperf3 socat python3 python3-venv tcpdump
      openresolv procps ca-certificates postgresql prometheus nftables systemd chromium libxml2-utils
      openssl poppler-utils slapd ldap-utils samba-ad-dc samba-ad-provision tzdata)
# Node.js and npm: the machine's own if it has them, else Debian's.
command -v node >/dev/null || PKGS+=(nodejs)
command -v npm >/dev/null || PKGS+=(npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "tests/run.sh: missing packages ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  # slapd's package would otherwise make a directory of its own for the machine; the tests
  # start theirs (tests/directory/slapd.sh).
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

cargo build --workspace --all-targets --locked

# The mechanical guards: the code is formatted, and clippy finds nothing (what the project holds
# itself to is in Cargo.toml's [workspace.lints] and clippy.toml).
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# The browser test's driver (Playwright, without its own browsers: it drives Debian's Chromium)
# and the QR decoder, at the versions package-lock.json pins.
(cd tests/panel && npm ci --no-audit --no-fund --loglevel=error)
# The OpenID provider the sign-in tests run (oidc-provider, certified, from npm).
(cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)

# A throwaway PostgreSQL server for the store and API tests: its own data directory, reachable
# only through a Unix socket in that directory, stopped and deleted when the tests end. The tests
# create one database each on it. Skipped (the PostgreSQL cases say so) when not root.
if [ "$(id -u)" = 0 ] && [ -z "${HEIMWEG_TEST_POSTGRES:-}" ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pg_dir=$(mktemp -d /tmp/heimweg-pg.XXXXXX)
  chown postgres: "$pg_dir"
  # From a directory the postgres user may enter (a checkout under a 0700 one is not).
  (
    cd /
    runuser -u postgres -- "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres >/dev/null
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w -s \
      -o "-k $pg_dir -c listen_addresses= -p 5433 -c max_connections=300" start
  )
  trap 'cd / && runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w -s stop; rm -rf "$pg_dir"' EXIT
  export HEIMWEG_TEST_POSTGRES="postgres://postgres@localhost/postgres?host=$pg_dir&port=5433"
fi
# A real SMTP server for the invitation mails: aiosmtpd from PyPI (tests/mail/smtp_server.py
# adds STARTTLS and AUTH), in a venv of its own.
if ! target/mail-venv/bin/python -c "import aiosmtpd" 2>/dev/null; then
  python3 -m venv target/mail-venv
  target/mail-venv/bin/pip install -q --disable-pip-version-check aiosmtpd==1.4.6
fi
export HEIMWEG_TEST_SMTP_PYTHON=$PWD/target/mail-venv/bin/python
cargo nextest run --workspace --locked --no-fail-fast
# The core's simulator runs boringtun on a simulated clock (feature simulated-clock): a build of
# its own, since features unify across a build and every other binary needs the real clock.
cargo clippy -p heimweg-core --features simulated-clock --all-targets --locked -- -D warnings
cargo nextest run -p heimweg-core --features simulated-clock --locked --no-fail-fast
# boringtun's own unit tests, on the patched copy every crate builds against (third_party/boringtun:
# outside the workspace, with its own Cargo.lock). The library's tests only, which include the
# patch's and run in under a second once built; its benches time the crypto primitives.
cargo test --manifest-path third_party/boringtun/Cargo.toml --locked --lib --target-dir target/boringtun

# Coverage-guided fuzzing of the data plane's parsers (fuzz/, nightly toolchain): a short run per
# target in CI; tests/fuzz.sh alone runs them longer.
if [ -n "${HEIMWEG_E2E:-}" ]; then
  HEIMWEG_FUZZ_SECONDS=${HEIMWEG_FUZZ_SECONDS:-20} tests/fuzz.sh
fi

# schemathesis against the OpenAPI document (tests/schemathesis.sh: the gateway in a namespace of
# its own, generated requests for every operation, about two minutes): fails on any 5xx and on
# any answer the document does not describe.
if [ -n "${HEIMWEG_E2E:-}" ]; then
  tests/schemathesis.sh
fi
