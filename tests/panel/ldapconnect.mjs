// Sign in to connect without an identity provider, in headless Chromium, run by
// tests/netns/directory.sh once bob's group requires it: his directory password (checked by
// the real slapd) and a TOTP code this script computes as an authenticator app would (RFC 6238,
// from the key the page shows). One step per run (STEP), so that the shell between the runs
// measures what the gateway does with his tunnel:
// - activate: the first sign-in sets up the second factor: a wrong code is refused and signs
//   nothing in; the right one lands on /my, connected until a time. Prints ACTIVATED_AT_MS
//   (when the gateway answered the code) and keeps the key in $STATE.
// - again: a new sign-in asks for a code only and connects him; he ends it himself; on his page
//   a wrong code connects nothing, password and the next code connect him. Prints ENDED_AT_MS
//   and ACTIVATED_AT_MS.
// - lock: a new sign-in asks for a code only; five wrong codes lock it, and the right
//   password then finds the sign-in locked.
// Screenshots go to $SHOTS. Each step prints PASS; the first failure ends the run with exit 1.
import { createHmac } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { check, env, launch, log } from "./browser.mjs";
const [URL_, SHOTS, STEP, STATE] = ["PANEL_URL", "SHOTS", "STEP", "STATE"].map(env);
const browser = await launch();
const ctx = await browser.newContext({ locale: "de-DE", viewport: { width: 1100, height: 1000 } });
const page = await ctx.newPage();
const text = async () => page.textContent("main");

// RFC 4648 base32 (no padding) to bytes.
function base32(s) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of s.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

// RFC 6238: HMAC-SHA-1 over the 30 s time step, dynamic truncation, six digits.
function totp(key, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const h = createHmac("sha1", base32(key)).update(counter).digest();
  const o = h[h.length - 1] & 0x0f;
  const n = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(n % 1_000_000).padStart(6, "0");
}
const stepNow = () => Math.floor(Date.now() / 1000 / 30);

async function password(login, pw) {
  await page.goto(`${URL_}/my`);
  await page.fill("#login", login);
  await page.fill("#password", pw);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${URL_}/my/sign-in` && r.request().method() === "POST"),
    page.click("#sign-in"),
  ]);
  await page.waitForLoadState("load");
  return answer.status();
}

// Submits a code; returns the gateway's answer to it and when it came.
async function code(c) {
  await page.fill("#code", c);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${URL_}/my/sign-in/code`),
    page.click("#confirm"),
  ]);
  const at = Date.now();
  await page.waitForLoadState("load");
  return { status: answer.status(), at };
}

try {
  if (STEP === "activate") {
    check("bob's directory password leads to setting up his second factor",
      (await password("bob", "builder")) === 200 && (await page.$("#totp-secret")) !== null, await text());
    const key = (await page.textContent("#totp-secret")).trim();
    await page.screenshot({ path: `${SHOTS}/19-staff-second-factor-setup.png`, fullPage: true });
    const step = stepNow();
    const wrong = await code(totp(key, step + 20));
    check("a wrong code is refused and signs nothing in",
      wrong.status === 401 && (await page.$("#totp-secret")) !== null && (await page.$("#who")) === null, await text());
    const right = await code(totp(key, step));
    check("the right code signs him in, and his laptop may connect until a time",
      page.url() === `${URL_}/my` && (await page.textContent("#connect-state")).includes("bis"), await text());
    await page.screenshot({ path: `${SHOTS}/19-staff-password-connected.png`, fullPage: true });
    writeFileSync(STATE, JSON.stringify({ key, step }));
    console.log(`ACTIVATED_AT_MS=${right.at}`);
  } else if (STEP === "again") {
    // Each code counts once: as a person would, wait for the app's next code.
    const saved = JSON.parse(readFileSync(STATE, "utf8"));
    while (stepNow() <= saved.step) await new Promise((r) => setTimeout(r, 500));
    const step = stepNow();
    check("his next sign-in asks for a code only",
      (await password("bob", "builder")) === 200 && (await page.$("#code")) !== null && (await page.$("#totp-secret")) === null);
    const signedIn = await code(totp(saved.key, step));
    check("signed in again, his laptop may connect", signedIn.status === 303 && page.url() === `${URL_}/my` &&
      (await page.textContent("#connect-state")).includes("bis"), await text());
    await Promise.all([page.waitForURL(`${URL_}/my`), page.click("#connect-end")]);
    check("he ends it himself; his page asks for password and code to connect",
      (await page.$("#connect-end")) === null && (await page.$("#connect-password")) !== null, await text());
    const ended = Date.now();
    await page.fill("#connect-password", "builder");
    await page.fill("#connect-code", totp(saved.key, step + 20));
    const [wrong] = await Promise.all([
      page.waitForResponse((r) => r.url() === `${URL_}/my/connect`),
      page.click("#connect"),
    ]);
    await page.waitForLoadState("load");
    check("a wrong code on his page is refused and connects nothing",
      wrong.status() === 401 && (await page.$("#connect-end")) === null, await text());
    await page.fill("#connect-password", "builder");
    // The next step's code: the app shows it within 30 s, and the gateway allows that drift.
    await page.fill("#connect-code", totp(saved.key, step + 1));
    await Promise.all([page.waitForURL(`${URL_}/my`), page.click("#connect")]);
    const at = Date.now();
    check("password and the next code connect him again",
      (await page.$("#connect-end")) !== null, await text());
    writeFileSync(STATE, JSON.stringify({ key: saved.key, step: step + 1 }));
    console.log(`ENDED_AT_MS=${ended}`);
    console.log(`ACTIVATED_AT_MS=${at}`);
  } else if (STEP === "lock") {
    const { key, step } = JSON.parse(readFileSync(STATE, "utf8"));
    check("his next sign-in asks for a code only",
      (await password("bob", "builder")) === 200 && (await page.$("#code")) !== null && (await page.$("#totp-secret")) === null);
    const statuses = [];
    for (let i = 1; i <= 5; i++) statuses.push((await code(totp(key, step + 20 + i))).status);
    check("four wrong codes are refused, the fifth locks the sign-in",
      statuses.slice(0, 4).every((s) => s === 401) && statuses[4] === 423 && (await text()).includes("gesperrt"),
      `${statuses} ${await text()}`);
    await page.screenshot({ path: `${SHOTS}/19-staff-sign-in-locked.png`, fullPage: true });
    check("the right password then finds the sign-in locked",
      (await password("bob", "builder")) === 423 && (await page.$("#code")) === null, await text());
  } else {
    throw new Error(`STEP ${STEP}: activate, again or lock`);
  }
} catch (e) {
  log(`FAIL: ${e.message}`);
  await page.screenshot({ path: `${SHOTS}/ldapconnect-failure.png`, fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
