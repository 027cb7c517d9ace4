// Debian's headless Chromium for the browser tests. Root inside a network namespace: no
// sandbox; and nothing may reach out of the closed test network (no background fetches,
// updates, sync or QUIC).
import { chromium } from "playwright-core";

export function launch() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
