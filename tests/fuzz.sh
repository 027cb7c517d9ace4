#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ (cargo fuzz: libFuzzer, nightly toolchain) and runs each for
# HEIMWEG_FUZZ_SECONDS (default 30) from the committed seeds; fails on the first crash, naming
# the input libFuzzer saved under fuzz/artifacts/<target>/. Replay one with
#   cargo +nightly fuzz run -s none <target> fuzz/artifacts/<target>/crash-...
#
# Sanitizer: none by default. The code under test is safe Rust (unsafe_code is forbidden
# outside heimweg-sys, which no target reaches), so AddressSanitizer adds nothing that bounds
# checks miss, and it costs more than half the executions. HEIMWEG_FUZZ_SANITIZER=address
# turns it on. Overflow checks and debug assertions are on either way.
#
# The working corpus grows in HEIMWEG_FUZZ_CORPUS/<target> (default target/fuzz-corpus, kept
# between runs); libFuzzer's output goes to HEIMWEG_FUZZ_LOGS/<target>.log (default
# target/fuzz-logs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${HEIMWEG_FUZZ_SECONDS:-30}
sanitizer=${HEIMWEG_FUZZ_SANITIZER:-none}
corpus=${HEIMWEG_FUZZ_CORPUS:-$root/target/fuzz-corpus}
logs=${HEIMWEG_FUZZ_LOGS:-$root/target/fuzz-logs}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

nice -n 10 cargo +nightly fuzz build --fuzz-dir "$root/fuzz" -s "$sanitizer"
mkdir -p "$logs"
for target in $(cargo +nightly fuzz list --fuzz-dir "$root/fuzz"); do
  mkdir -p "$corpus/$target"
  # One process, niced: the fuzzer must not take the machine from whatever else runs. With
  # -jobs libFuzzer runs in a child that logs to fuzz-0.log in the working directory, hence the
  # cd; the parent prints that log when the child ends.
  if ! (cd "$logs" && nice -n 19 cargo +nightly fuzz run --fuzz-dir "$root/fuzz" -s "$sanitizer" \
        "$target" "$corpus/$target" "$root/fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -jobs=1 -workers=1 >"$logs/$target.log" 2>&1); then
    echo "fuzz: $target failed (log: $logs/$target.log)" >&2
    grep -E -A20 "panicked|ERROR: libFuzzer|Test unit written" "$logs/$target.log" | head -60 >&2
    exit 1
  fi
  echo "fuzz: $target: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$logs/$target.log" | tail -1)"
done
