// The admin panel in a real browser: Debian's headless Chromium driven by Playwright.
// Started by tests/netns/panel.sh inside the gateway's network namespace, which passes the
// namespaces, interface names and paths in the environment. Each step prints PASS or FAIL;
// the first failure saves a screenshot and ends the run with exit code 1.
import { check, env, launch, log, passed } from "./browser.mjs";
import { spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { closeSync, copyFileSync, openSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import http from "node:http";
import jsQR from "jsqr";
import { PNG } from "pngjs";

const URL_ = env("PANEL_URL");
const [NS_C1, NS_C2, TMPD, SHOTS] = ["NS_C1", "NS_C2", "TMPD", "SHOTS"].map(env);
const [IF1, IF2, LAN_HOST, ENDPOINT] = ["CLIENT_IF1", "CLIENT_IF2", "LAN_HOST", "ENDPOINT"].map(env);


// Polls `fn` every 200 ms until it returns true or `seconds` pass: a deadline, not a sleep.
async function until(seconds, fn) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
}

const inNs = (ns, cmd, args) =>
  spawnSync("ip", ["netns", "exec", ns, cmd, ...args], { encoding: "utf8", timeout: 20000 });
const pingOk = (ns) => inNs(ns, "ping", ["-c", "1", "-W", "1", "-q", LAN_HOST]).status === 0;
function wgQuickUp(ns, confPath) {
  // Output to a file, not a pipe: the wireguard-go daemon that wg-quick leaves running would
  // hold a pipe open, and spawnSync would wait for it.
  const out = openSync(`${TMPD}/wg-quick.log`, "a");
  const r = spawnSync("ip", ["netns", "exec", ns, "env", "WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go",
    "LOG_LEVEL=error", "wg-quick", "up", confPath], { stdio: ["ignore", out, out], timeout: 30000 });
  closeSync(out);
  if (r.status !== 0) throw new Error(`wg-quick up ${confPath} failed (${r.status}); see ${TMPD}/wg-quick.log`);
}

// RFC 6238 code for a base32 secret: what the admin's authenticator app would show.
function totp(base32, t = Date.now() / 1000) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of base32) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(Math.floor(t / 30)));
  const h = createHmac("sha1", key).update(msg).digest();
  const o = h[19] & 15;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, "0");
}

// Reads a QR code off the page the way a phone camera would: from the rendered pixels.
async function readQr(locator) {
  const png = PNG.sync.read(await locator.screenshot());
  const code = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
  return code ? code.data : null;
}

async function download(page, selector, to) {
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click(selector)]);
  await dl.saveAs(to);
  return { name: dl.suggestedFilename(), text: readFileSync(to, "utf8") };
}

const shot = (page, name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

async function login(page, name, password) {
  await page.goto(`${URL_}/login`);
  await page.fill("#name", name);
  await page.fill("#password", password);
  await page.click("button[type=submit]");
}

const browser = await launch();
let page;
try {
  const admin = await browser.newContext({ locale: "en-GB", viewport: { width: 1280, height: 900 } });
  page = await admin.newPage();
  page.on("dialog", (d) => d.accept()); // the confirm() before revoking

  // ---- first login ----
  await page.goto(`${URL_}/`);
  check("login: the panel sends a visitor to the login page", page.url().startsWith(`${URL_}/login`));
  await shot(page, "01-login");
  await login(page, "alice", "alice-password-1");
  check("login: the first admin logs in and sees the overview",
    (await page.textContent("h1")) === "Overview", await page.textContent("main"));
  const cookies = await admin.cookies();
  const session = cookies.find((c) => c.name === "__Host-heimweg");
  check("login: the session cookie is HttpOnly, Secure and SameSite=Strict",
    session && session.httpOnly && session.secure && session.sameSite === "Strict", JSON.stringify(cookies));
  check("overview: it asks for a second factor", (await page.textContent("main")).includes("no second factor"));

  // ---- settings and a group with its access policy ----
  await page.click("nav >> text=Settings");
  await page.fill("#endpoint", ENDPOINT);
  await page.click("form[action='/settings'] button");
  check("settings: the endpoint is saved", (await page.inputValue("#endpoint")) === ENDPOINT);
  await page.goto(`${URL_}/groups`);
  await page.fill("#name", "staff");
  await page.fill("#prefixes", "192.0.2.0/25");
  await page.click("form[action='/groups'] button");
  check("groups: a group is created with its networks", page.url().endsWith("/groups/staff") &&
    (await page.inputValue("#prefixes")).trim() === "192.0.2.0/25");
  await page.goto(`${URL_}/groups`);
  await page.fill("#name", "broken");
  await page.fill("#prefixes", "10.0.0.300/8");
  await page.click("form[action='/groups'] button");
  check("groups: a bad CIDR gets a clear error", (await page.textContent("main")).includes("is not a CIDR"));
  await page.goto(`${URL_}/groups`);
  check("groups: ...and creates nothing", !(await page.textContent("main")).includes("broken"));
  await shot(page, "06-groups");

  // ---- a group limited to working hours, Berlin time, with public holidays closed ----
  await page.fill("#name", "schicht");
  await page.fill("#prefixes", "192.0.2.0/25");
  await page.click("form[action='/groups'] button");
  await page.fill("#schedule", "Mo-Fr 6-20");
  await page.click("#usage-window button");
  check("window: a schedule in the wrong format gets a clear error",
    (await page.textContent("main")).includes("is not a time range such as 06:00-20:00"));
  await page.goto(`${URL_}/groups/schicht`);
  await page.fill("#schedule", "Mo-Fr 06:00-20:00; Sa 08:00-12:00");
  await page.fill("#closed_dates", "2026-12-24\n2026-12-25\n2026-12-31");
  await page.click("#usage-window button");
  const windowState = await page.textContent("#window-state");
  check("window: the group shows its window, normalised, and where it stands now",
    windowState.includes("Mon-Fri 06:00-20:00; Sat 08:00-12:00 (Europe/Berlin), closed 2026-12-24, 2026-12-25, 2026-12-31") &&
    /(Open now, until|Closed now; opens) (Mon|Tue|Wed|Thu|Fri|Sat|Sun) 20\d\d-/.test(windowState), windowState);
  await shot(page, "07-group-window");

  // ---- enroll an iPad: QR read back, .conf and .mobileconfig downloaded ----
  await page.goto(`${URL_}/`);
  await page.click("nav >> text=Enroll");
  await page.fill("#name", "ipad-erika");
  await page.selectOption("#group", "staff");
  await page.fill("#owner", "erika");
  await shot(page, "03-enroll-form");
  await page.click("form[action='/devices/new'] button[type=submit]");
  check("enroll: the config page warns that it is shown once",
    (await page.textContent(".warning")).includes("Shown only once"));
  await shot(page, "04-enroll-result");
  const qrText = await readQr(page.locator("#config-qr svg"));
  const shownText = await page.locator("#config-text").textContent();
  check("enroll: the QR code read off the screen is the config", qrText !== null && qrText === shownText,
    `qr=${JSON.stringify(qrText)}`);
  check("enroll: the config has a private key, the endpoint and the group's network",
    /PrivateKey = \S{44}/.test(qrText) && qrText.includes(`Endpoint = ${ENDPOINT}`) && qrText.includes("192.0.2.0/25"));
  const conf = await download(page, "#download-conf", `${TMPD}/download.conf`);
  check("enroll: the .conf download is the same config", conf.text === qrText && conf.name === "ipad-erika.conf",
    conf.name);
  const profile = await download(page, "#download-mobileconfig", `${TMPD}/ipad.mobileconfig`);
  check("enroll: the .mobileconfig is an Apple profile with the tunnel",
    profile.name === "ipad-erika.mobileconfig" && profile.text.includes("<plist") &&
    profile.text.includes("com.wireguard.ios"));
  await page.reload();
  check("enroll: reloading does not show the config again (no resubmission, nothing stored)",
    !(await page.content()).includes("PrivateKey"));

  // ---- the downloaded config connects ----
  copyFileSync(`${TMPD}/download.conf`, `${TMPD}/${IF1}.conf`);
  wgQuickUp(NS_C1, `${TMPD}/${IF1}.conf`);
  check("traffic: the downloaded config comes up with wg-quick and reaches the LAN host",
    await until(15, () => pingOk(NS_C1)));

  // ---- find it among the devices, see it connected ----
  await page.goto(`${URL_}/devices`);
  await page.fill("#q", "erika");
  await page.click("form.filters button");
  check("devices: the server-side search finds the device by owner",
    (await page.locator("table.devices tbody tr").count()) === 1 &&
    (await page.textContent("table.devices")).includes("ipad-erika"));
  // The click navigates; a reload before that navigation has committed detaches the page.
  await Promise.all([page.waitForURL(`${URL_}/devices/ipad-erika`), page.click("text=ipad-erika")]);
  check("device: the detail page shows the handshake and traffic",
    await until(10, async () => {
      await page.reload();
      const t = await page.textContent("main");
      return t.includes("connected") && /in \d/.test(t);
    }));
  await shot(page, "05-device-detail");

  // ---- a cross-site request is refused, and so is a same-site one without the token ----
  const evil = http.createServer((_, res) => {
    res.setHeader("content-type", "text/html");
    res.end(`<form method="post" action="${URL_}/devices/ipad-erika/revoke"><input name="_csrf" value="guess"></form>
             <script>document.forms[0].submit()</script>`);
  });
  await new Promise((r) => evil.listen(8099, "127.0.0.2", r));
  const evilPage = await admin.newPage();
  const evilResp = await Promise.all([
    evilPage.waitForResponse((r) => r.url().includes("/revoke")),
    evilPage.goto("http://127.0.0.2:8099/"),
  ]).then(([r]) => r);
  check("csrf: a form posted from another site is refused (403)", evilResp.status() === 403,
    String(evilResp.status()));
  evil.close();
  const forged = await page.request.post(`${URL_}/devices/ipad-erika/revoke`, { form: { _csrf: "forged" } });
  check("csrf: a request with the session cookie but a wrong token is refused (403)", forged.status() === 403);
  check("csrf: ...and the device is still connected", pingOk(NS_C1));

  // ---- revoke: disconnected within a second or two ----
  await page.goto(`${URL_}/devices/ipad-erika`);
  await page.click("#revoke");
  check("revoke: the device shows as revoked", (await page.textContent("main")).includes("revoked"));
  const t0 = Date.now();
  const cut = await until(3, () => !pingOk(NS_C1));
  check("revoke: the device is cut off", cut, `after ${(Date.now() - t0) / 1000} s`);
  log(`revoke took effect after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  // ---- an enrollment link, used by a member of staff on their own device ----
  await page.goto(`${URL_}/links`);
  await page.fill("#device_name", "laptop-klaus");
  await page.selectOption("#group", "staff");
  await page.fill("#owner", "klaus");
  await page.click("form[action='/links'] button");
  const link = await page.inputValue("#link-url");
  check("links: the link is shown once, with the site's address", link.startsWith(`${URL_}/enroll/hw_`), link);
  await shot(page, "07-link-created");
  const staff = await browser.newContext({ locale: "de-DE" });
  const staffPage = await staff.newPage();
  await staffPage.goto(link);
  check("links: opening the link only asks to confirm (a chat preview uses nothing up)",
    (await staffPage.content()).includes("laptop-klaus") && !(await staffPage.content()).includes("PrivateKey"));
  await staffPage.click("button[type=submit]");
  const linkConf = await download(staffPage, "a[download$='.conf']", `${TMPD}/link.conf`);
  check("links: opening the link gives the config", /PrivateKey = \S{44}/.test(linkConf.text));
  copyFileSync(`${TMPD}/link.conf`, `${TMPD}/${IF2}.conf`);
  wgQuickUp(NS_C2, `${TMPD}/${IF2}.conf`);
  check("links: that config connects", await until(15, () => pingOk(NS_C2)));
  const again = await staffPage.goto(link);
  check("links: a second opening is refused (410)", again.status() === 410);
  await page.goto(`${URL_}/links`);
  check("links: the list shows the link as used",
    (await page.textContent("table")).match(/laptop-klaus[\s\S]*used/) !== null);
  await shot(page, "08-links");

  // ---- staff ask for access, an admin approves, the approval becomes a link ----
  await staffPage.goto(`${URL_}/access`);
  check("access: the public form is in German for a German browser",
    (await staffPage.textContent("h1")) === "VPN-Zugang anfragen");
  await staffPage.fill("#requester", "Petra Schulz");
  await staffPage.fill("#contact", "petra@stadt.example");
  await staffPage.fill("#device_name", "ipad-petra");
  await staffPage.fill("#reason", "Homeoffice");
  await staffPage.click("form[action='/access'] button");
  const statusUrl = await staffPage.getAttribute("#status-link", "href");
  check("access: the requester gets a status page", statusUrl?.includes("/request/hw_"), statusUrl);
  await page.goto(`${URL_}/requests`);
  await shot(page, "09-requests");
  const card = page.locator("article.request", { hasText: "Petra Schulz" });
  await card.locator("select").selectOption("staff");
  await card.locator("form[action$='/approve'] button:has-text('Approve')").click();
  check("requests: the approved request moves to the decided list",
    (await page.textContent("main")).match(/Petra Schulz[\s\S]*approved/) !== null);
  await staffPage.goto(statusUrl);
  check("access: the status page offers the setup", (await staffPage.textContent("h1")) === "Request approved");
  await staffPage.click("a[href^='/enroll/']");
  await staffPage.click("button[type=submit]");
  const petraConf = await download(staffPage, "a[download$='.conf']", `${TMPD}/petra.conf`);
  check("access: the approved request's link gives a config for ipad-petra",
    /PrivateKey = \S{44}/.test(petraConf.text) && petraConf.name === "ipad-petra.conf", petraConf.name);

  // ---- a helpdesk account can look but not change ----
  const help = await browser.newContext({ locale: "en-GB" });
  const helpPage = await help.newPage();
  await login(helpPage, "hilde", "hilde-password-1");
  await helpPage.goto(`${URL_}/devices?status=all`);
  check("helpdesk: sees the device list", (await helpPage.textContent("table.devices")).includes("ipad-erika"));
  const denied = await helpPage.goto(`${URL_}/devices/new`);
  check("helpdesk: the enroll page is refused (403)", denied.status() === 403);
  await helpPage.goto(`${URL_}/devices/laptop-klaus`);
  check("helpdesk: a device page has no revoke button", (await helpPage.locator("#revoke").count()) === 0);
  const csrf = await helpPage.getAttribute("input[name=_csrf]", "value");
  const post = await helpPage.request.post(`${URL_}/devices/laptop-klaus/revoke`, { form: { _csrf: csrf } });
  check("helpdesk: even a well-formed revoke is refused (403)", post.status() === 403);
  check("helpdesk: ...and laptop-klaus stays connected", pingOk(NS_C2));

  // ---- lockout after repeated bad passwords ----
  const guesser = await browser.newContext();
  const g = await guesser.newPage();
  for (let i = 0; i < 5; i++) await login(g, "bob", `wrong-password-${i}`);
  check("lockout: five wrong passwords lock the account", (await g.textContent(".notice.error")).includes("locked"));
  await login(g, "bob", "bob-password-123");
  check("lockout: the right password does not open a locked account",
    (await g.textContent(".notice.error")).includes("locked") && g.url().includes("/login"));
  await page.goto(`${URL_}/settings`);
  check("lockout: the settings page shows bob as locked",
    (await page.locator("#admins tr", { hasText: "bob" }).textContent()).includes("locked"));
  await page.locator("#admins tr", { hasText: "bob" }).locator("text=Unlock").click();
  await login(g, "bob", "bob-password-123");
  check("lockout: after an admin unlocks it, bob logs in", (await g.textContent("h1")) === "Overview");
  await shot(page, "10-settings");

  // ---- second factor: set up, then a login needs it ----
  await page.goto(`${URL_}/account`);
  await page.click("form[action='/account/totp'] button");
  await shot(page, "11-totp-setup");
  const secret = (await page.textContent("#totp-secret")).trim();
  await page.fill("#code", totp(secret));
  await page.fill("#totp-password", "alice-password-1");
  await page.click("form[action='/account/totp/confirm'] button");
  const codes = await page.locator("#recovery-codes li").allTextContents();
  check("totp: turning it on shows ten recovery codes", codes.length === 10, String(codes.length));
  await page.click("button:has-text('Log out')");
  check("logout: back at the login page", page.url().startsWith(`${URL_}/login`));
  await login(page, "alice", "alice-password-1");
  check("totp: after the password, the panel asks for the second factor", page.url().includes("/login/totp"));
  const before = await page.goto(`${URL_}/devices`);
  check("totp: without it, no page opens", before.url().includes("/login"));
  await page.goto(`${URL_}/login/totp`);
  await page.fill("#code", codes[0].trim());
  await page.click("button[type=submit]");
  check("totp: a recovery code completes the login", (await page.textContent("h1")) === "Overview");

  // ---- screenshots of the main pages, in both languages and on a tablet ----
  await page.goto(`${URL_}/`);
  await shot(page, "02-overview");
  await page.goto(`${URL_}/devices?status=all`);
  await shot(page, "12-devices");
  await page.goto(`${URL_}/users`);
  await shot(page, "13-users");
  await page.goto(`${URL_}/review`);
  const reviewText = await page.textContent("#access-review");
  check("review: the access review lists who has access, by whose decision, and not the revoked",
    /laptop-klaus\s*staff: 192\.0\.2\.0\/25\s*any time.*enrollment link 1 \(from alice\)/s.test(reviewText) &&
    !reviewText.includes("ipad-erika"), reviewText.slice(0, 400));
  await shot(page, "17-access-review");
  await page.goto(`${URL_}/audit`);
  const auditText = await page.textContent("table");
  check("audit: the log names the admin and the change in words",
    /alice\s*device enrolled/.test(auditText) && auditText.includes("enrollment link 1 (from alice)"), auditText.slice(0, 400));
  await shot(page, "14-audit");
  await page.click("header a[lang=de]");
  check("language: the switch turns the panel German", (await page.textContent("h1")) === "Protokoll");
  await page.goto(`${URL_}/devices?status=all`);
  await shot(page, "15-devices-de");
  const tablet = await browser.newContext({ viewport: { width: 768, height: 1024 }, locale: "de-DE", hasTouch: true });
  const tp = await tablet.newPage();
  await login(tp, "bob", "bob-password-123");
  await tp.goto(`${URL_}/devices?status=all`);
  const overflow = await tp.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check("tablet: the device list fits a 768 px screen without sideways scrolling", overflow <= 0, String(overflow));
  await shot(tp, "16-devices-tablet");
  await tp.goto(`${URL_}/`); // a page without an autofocused field
  await tp.keyboard.press("Tab");
  check("keyboard: the first Tab reaches the skip link",
    (await tp.evaluate(() => document.activeElement.className)) === "skip");

  // ---- accessibility: axe-core's WCAG 2 A and AA rules on the main pages ----
  // A context that lets the test inject axe despite the panel's strict CSP; the panel
  // itself runs no inline script.
  const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
  const audit = await browser.newContext({ bypassCSP: true, locale: "de-DE" });
  const ap = await audit.newPage();
  await login(ap, "bob", "bob-password-123");
  for (const path of ["/login", "/", "/devices?status=all", "/devices/laptop-klaus", "/devices/new",
    "/links", "/requests", "/users", "/groups/staff", "/groups/schicht", "/absences", "/review",
    "/audit", "/settings", "/account", "/access"]) {
    await ap.goto(`${URL_}${path}`);
    await ap.addScriptTag({ content: axeSource });
    const result = await ap.evaluate(() =>
      window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } }));
    const found = result.violations.map((v) => `${v.id} (${v.nodes.length}): ${v.nodes[0].target}`);
    // (and axe really looked: rules passed, among them colour contrast)
    const looked = result.passes.some((p) => p.id === "color-contrast") && result.passes.length > 10;
    check(`accessibility: ${path} has no WCAG 2.1 A/AA violations`, looked && found.length === 0,
      looked ? found.join("; ") : "axe checked nothing");
  }

  log(`${passed} browser checks passed`);
  await browser.close();
} catch (e) {
  log(`FAIL: ${e.message}`);
  if (page) {
    await page.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => {});
    log(`page at failure: ${page.url()}`);
  }
  await browser.close().catch(() => {});
  process.exit(1);
}
