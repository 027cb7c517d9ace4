// Debian's headless Chromium for the browser tests. Root inside a network namespace: no
// sandbox; and nothing may reach out of the closed test network (no background fetches,
// updates, sync or QUIC).
import { chromium } from "playwright-core";
import { basename } from "node:path";

export function launch() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

// What every browser test shares: its settings from the environment (a missing one names the
// script and the variable), a log line with the seconds since the script started, and a check
// that prints PASS or throws (the script's catch prints FAIL, screenshots and exits 1).
const T0 = Date.now();
export let passed = 0;

export function env(k) {
  if (!process.env[k]) throw new Error(`${basename(process.argv[1])}: ${k} is not set`);
  return process.env[k];
}

export function log(m) {
  console.log(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(5)}s] ${m}`);
}

export function check(desc, ok, detail = "") {
  if (!ok) throw new Error(`${desc}${detail ? `: ${detail}` : ""}`);
  passed += 1;
  log(`PASS: ${desc}`);
}
