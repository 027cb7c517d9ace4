#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian 12 (as root), builds once
# and runs every test. Slow suites run when HEIMWEG_E2E=1 (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: real WireGuard peers (wireguard-go, wg, wg-quick), namespaces
# and traffic tools, and tcpdump to capture packets for the replay test.
PKGS=(wireguard-go wireguard-tools iproute2 iputils-ping iperf3 socat python3 tcpdump openresolv
      procps ca-certificates)
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
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

cargo build --workspace --all-targets --locked
cargo nextest run --workspace --locked --no-fail-fast
