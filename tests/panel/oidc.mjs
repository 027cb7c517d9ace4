// Sign-in through a real OpenID provider (tests/oidc/provider.mjs, oidc-provider from npm) in
// headless Chromium, started by tests/netns/oidc.sh inside the gateway's namespace:
// - staff: a wrong password at the provider opens nothing; signed in, carol puts her laptop
//   online on /my (the .conf is saved to $TMPD/carol.conf for wg-quick), reaches her device
//   limit, revokes a device; jürgen (umlauts, a group with a comma) gets his group's access;
//   dave, in no mapped group, is refused;
// - the answer checked: a tampered state, an ID token that expired (the provider's clock set
//   back) and a replayed answer are refused; a key rotation at the provider is followed;
// - admins: alice signs in to the panel as admin, bob as the helpdesk, dave not at all.
// Screenshots go to $SHOTS. Each step prints PASS; the first failure ends the run with exit 1.
import { check, env, launch, log } from "./browser.mjs";
import { writeFileSync } from "node:fs";
const [URL_, PROVIDER, SHOTS, TMPD] = ["PANEL_URL", "PROVIDER_URL", "SHOTS", "TMPD"].map(env);
const control = async (path) => {
  const r = await fetch(`${PROVIDER}${path}`, { method: "POST" });
  if (!r.ok) throw new Error(`provider ${path}: ${r.status}`);
  return r.json();
};
const browser = await launch();
let page;
// A fresh browser (no provider session, no heimweg cookies) for each person.
async function fresh() {
  const ctx = await browser.newContext({ locale: "de-DE", viewport: { width: 1100, height: 1000 } });
  page = await ctx.newPage();
  page.on("dialog", (d) => d.accept()); // the confirm() before revoking
  return page;
}
// At the provider's form: log in as NAME; heimweg's answer to the provider's redirect back is
// either refused (the page stays) or a page that moves on by itself to where the sign-in began.
async function atProvider(name, password) {
  await page.waitForSelector("#login");
  await page.fill("#login", name);
  await page.fill("#password", password);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url().startsWith(`${URL_}/oidc/callback`)),
    page.click("button[type=submit]"),
  ]);
  if (answer.status() === 200) await page.waitForURL((u) => u.href.startsWith(URL_) && !u.pathname.startsWith("/oidc/"));
  await page.waitForLoadState("load");
}
async function staffSignIn(name, password) {
  await page.goto(`${URL_}/my`);
  await page.click("#sign-in");
  await atProvider(name, password);
}
const text = async () => page.textContent("main");

try {
  // --- staff: carol ---
  await fresh();
  await page.goto(`${URL_}/my`);
  await page.click("#sign-in");
  await page.waitForSelector("#login");
  check("staff: /my sends the browser to the city's provider", page.url().startsWith(PROVIDER), page.url());
  await page.fill("#login", "carol");
  await page.fill("#password", "wrong-password");
  const [resp] = await Promise.all([page.waitForResponse((r) => r.request().method() === "POST"), page.click("button[type=submit]")]);
  check("staff: a wrong password is refused at the provider and opens nothing",
    resp.status() === 401 && (await page.content()).includes("Benutzername oder Passwort falsch") && page.url().startsWith(PROVIDER));
  await page.fill("#login", "carol");
  await page.fill("#password", "caroline");
  await Promise.all([page.waitForURL(`${URL_}/my`), page.click("button[type=submit]")]);
  check("staff: signed in, carol is back on her own page", (await page.textContent("#who")).includes("carol"));
  await page.screenshot({ path: `${SHOTS}/my-signed-in.png`, fullPage: true });
  check("staff: she may pick only her sign-in's group", (await page.$$eval("#group option", (o) => o.map((x) => x.value))).join() === "staff");
  await page.fill("#label", "laptop");
  await page.click("#enroll button[type=submit]");
  const href = await page.getAttribute("#download-conf", "href");
  const conf = Buffer.from(href.split(",")[1], "base64").toString();
  writeFileSync(`${TMPD}/carol.conf`, conf);
  check("staff: her laptop is enrolled, its config shown once with a QR code",
    (await text()).includes("carol-laptop") && (await page.$("#config-qr")) !== null && conf.includes("PrivateKey = "));
  await page.screenshot({ path: `${SHOTS}/my-enrolled.png`, fullPage: true });
  await page.goto(`${URL_}/my`);
  await page.fill("#label", "ipad");
  await page.click("#enroll button[type=submit]");
  check("staff: a second device (the iPad profile offered)", (await page.$("#download-mobileconfig")) !== null);
  await page.goto(`${URL_}/my`);
  check("staff: at the limit of two, the page says so instead of offering a form",
    (await page.$("#limit-reached")) !== null && (await page.$("#enroll")) === null);
  const rows = await page.$$eval("#my-devices tbody tr", (trs) => trs.map((t) => t.innerText));
  check("staff: her page lists her two devices and nobody else's", rows.length === 2 && rows.every((r) => r.includes("carol-")), rows.join(" | "));
  await page.click("#my-devices tbody tr:has-text('carol-ipad') button.danger");
  await page.waitForURL(`${URL_}/my`);
  check("staff: she revokes her iPad; the form is back",
    (await page.$("#enroll")) !== null && (await page.textContent("#my-devices")).includes("gesperrt"));
  // Another person's device is "not found", whatever its name (a form as the page's own, as
  // the panel's CSP allows no script requests).
  const [other] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/my/devices/alice-laptop/revoke")),
    page.evaluate(() => {
      const f = document.querySelector("#enroll");
      f.action = "/my/devices/alice-laptop/revoke";
      f.submit();
    }),
  ]);
  await page.waitForLoadState("load");
  check("staff: another person's device cannot be revoked from her page",
    other.status() === 400 && (await text()).includes("you have no device named"), `${other.status()} ${await text()}`);
  await page.goto(`${URL_}/devices`);
  check("staff: her session opens nothing of the admin panel", page.url().startsWith(`${URL_}/login`), page.url());

  // --- the answer, checked ---
  // The provider's answer, taken before the browser follows it (the context's request API
  // shares the browser's cookies), then sent with one character of the state changed.
  await fresh();
  await page.goto(`${URL_}/my`);
  await page.click("#sign-in");
  await page.waitForSelector("#login");
  const action = new URL(await page.getAttribute("form", "action"), page.url()).href;
  const req = page.context().request;
  const toAuth = await req.post(action, { form: { login: "carol", password: "caroline" }, maxRedirects: 0 });
  const toUs = await req.get(new URL(toAuth.headers()["location"], action).href, { maxRedirects: 0 });
  const answer = new URL(toUs.headers()["location"]);
  check("answer: the provider answers with code, state and its issuer", answer.href.startsWith(`${URL_}/oidc/callback`) &&
    ["code", "state", "iss"].every((k) => answer.searchParams.get(k)), answer.href);
  const state = answer.searchParams.get("state");
  answer.searchParams.set("state", (state[0] === "A" ? "B" : "A") + state.slice(1));
  await page.goto(answer.href);
  check("answer: a tampered state is refused", (await text()).includes("(state)") && (await page.$("#who")) === null, await text());
  await page.screenshot({ path: `${SHOTS}/my-tampered-state.png`, fullPage: true });

  await fresh();
  let callback = "";
  page.on("request", (r) => { if (r.url().startsWith(`${URL_}/oidc/callback`)) callback = r.url(); });
  await staffSignIn("carol", "caroline");
  check("answer: a fresh sign-in works", (await page.$("#who")) !== null);
  await page.goto(callback);
  check("answer: the same answer again (a replay) is refused", (await text()).includes("started no sign-in"), await text());

  await control("/__clock?offset=-300&id_token_ttl=60");
  await fresh();
  await staffSignIn("carol", "caroline");
  const expired = await text();
  await control("/__clock?offset=0&id_token_ttl=600");
  check("answer: an ID token that expired is refused", expired.includes("expired") && (await page.$("#who")) === null, expired);
  await page.screenshot({ path: `${SHOTS}/my-expired-token.png`, fullPage: true });

  const { kids } = await control("/__rotate");
  await fresh();
  await staffSignIn("carol", "caroline");
  check(`answer: after the provider rotated its signing key (${kids.length} keys published), sign-in still works`,
    (await page.$("#who")) !== null, await text());

  // --- staff: jürgen and dave ---
  await fresh();
  await staffSignIn("jürgen", "grüße");
  check("staff: jürgen (umlauts) gets the group his provider group 'Straßenbau, Tiefbau' maps to, read from userinfo (his ID token has no groups)",
    (await page.textContent("#who")).includes("jürgen") &&
    (await page.$$eval("#group option", (o) => o.map((x) => x.value))).join() === "tiefbau");
  await fresh();
  await staffSignIn("dave", "dave-secret");
  check("staff: dave, in no mapped group, is refused and gets no page", (await text()).includes("no group that may connect") && (await page.$("#who")) === null, await text());

  // --- admins ---
  async function panelSignIn(name, password) {
    await fresh();
    await page.goto(`${URL_}/login`);
    await page.click("#provider-sign-in");
    await atProvider(name, password);
  }
  await panelSignIn("alice", "wonderland");
  const account = await page.textContent("header .account");
  check("admin: alice signs in to the panel through the provider, as an admin", account.includes("alice") && account.includes("Admin") && !account.includes("Helpdesk"), account);
  await page.screenshot({ path: `${SHOTS}/panel-provider-admin.png`, fullPage: true });
  await page.goto(`${URL_}/directory#identity`);
  const identity = await page.textContent("#identity-settings");
  const mapping = await page.$$eval("#identity-groups tbody tr", (trs) => trs.map((t) => t.innerText));
  check("admin: the panel shows the provider, its client and the group mapping in order, never the secret",
    identity.includes("127.0.0.1") && identity.includes("heimweg-admins") && mapping.length === 2 &&
    mapping[0].includes("vpn-users") && mapping[1].includes("Straßenbau, Tiefbau") && !(await page.content()).includes("heimweg-secret"),
    `${identity} | ${mapping.join(" | ")}`);
  await page.screenshot({ path: `${SHOTS}/panel-identity.png`, fullPage: true });
  await page.goto(`${URL_}/users`);
  const carolRow = await page.textContent("tbody tr:has-text('carol')");
  check("admin: the user list says carol signs in with her city account", carolRow.includes("Konto der Stadt"), carolRow);
  await panelSignIn("bob", "builder");
  const bob = await page.textContent("header .account");
  check("admin: bob's group makes him the helpdesk (read-only)", bob.includes("bob") && bob.includes("Helpdesk"), bob);
  await panelSignIn("dave", "dave-secret");
  check("admin: dave's groups open no panel", (await text()).includes("no group the panel is open to") && (await page.$("header nav")) === null, await text());
} catch (e) {
  log(`FAIL: ${e.message}`);
  if (page) await page.screenshot({ path: `${SHOTS}/oidc-failure.png`, fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
