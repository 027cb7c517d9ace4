// Sign in to connect, in headless Chromium against a real OpenID provider (tests/oidc), run by
// tests/netns/oidc.sh once carol's group requires it. One step per run (STEP), so that the
// shell between the runs measures what the gateway does with her tunnel:
// - activate: signed in on /my, the page says her devices pass no traffic and offers the
//   sign-in to connect; a fresh sign-in without the second factor is refused and activates
//   nothing; with it (the provider's one-time code) she is back on /my, connected until a
//   time, and a warning is hidden until shortly before the end. Prints ACTIVATED_AT_MS, the
//   moment the gateway answered the provider's redirect back.
// - end: she activates again and ends it herself with "End now"; prints ENDED_AT_MS.
// Screenshots go to $SHOTS. Each step prints PASS; the first failure ends the run with exit 1.
import { check, env, launch, log } from "./browser.mjs";
const [URL_, PROVIDER, SHOTS, STEP] = ["PANEL_URL", "PROVIDER_URL", "SHOTS", "STEP"].map(env);
const OTP = "246810";
const browser = await launch();
const ctx = await browser.newContext({ locale: "de-DE", viewport: { width: 1100, height: 1000 } });
const page = await ctx.newPage();
const text = async () => page.textContent("main");

// At the provider's form: log in as carol, with the one-time code or without; returns the
// gateway's answer to the redirect back (a refusal stays on its page; a sign-in moves on).
async function atProvider(otp) {
  await page.waitForSelector("#login");
  check("the sign-in happens at the city's provider", page.url().startsWith(PROVIDER), page.url());
  await page.fill("#login", "carol");
  await page.fill("#password", "caroline");
  if (otp) await page.fill("#otp", otp);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url().startsWith(`${URL_}/oidc/callback`)),
    page.click("button[type=submit]"),
  ]);
  const at = Date.now();
  if (answer.status() === 200) await page.waitForURL(`${URL_}/my`);
  await page.waitForLoadState("load");
  return { status: answer.status(), at };
}

async function connect() {
  await page.click("#connect");
  const r = await atProvider(OTP);
  check("with her second factor she is back on her page, connected until a time",
    r.status === 200 && (await page.textContent("#connect-state")).includes("bis"), await text());
  return r.at;
}

try {
  await page.goto(`${URL_}/my`);
  await page.click("#sign-in");
  await atProvider("");
  check("signed in with her password alone, carol is on her page", (await page.textContent("#who")).includes("carol"));
  if (STEP === "activate") {
    check("her page says her devices pass no traffic until she signs in to connect",
      (await page.textContent("#connect-state")).includes("keinen Verkehr") && (await page.$("#connect-end")) === null);
    await page.screenshot({ path: `${SHOTS}/18-staff-connect-before.png`, fullPage: true });
    await page.click("#connect");
    const refused = await atProvider("");
    check("a sign-in to connect without the second factor is refused and activates nothing",
      refused.status === 401 && (await text()).includes("second factor"), `${refused.status} ${await text()}`);
    await page.goto(`${URL_}/my`);
    check("her page still offers the sign-in to connect", (await page.$("#connect-end")) === null);
    const at = await connect();
    check("the warning before the end stays hidden while hours are left",
      await page.$eval("#connect-warning", (w) => w.hidden));
    await page.screenshot({ path: `${SHOTS}/18-staff-connect-activated.png`, fullPage: true });
    console.log(`ACTIVATED_AT_MS=${at}`);
  } else if (STEP === "end") {
    const at = await connect();
    console.log(`ACTIVATED_AT_MS=${at}`);
    const ended = Date.now();
    await Promise.all([page.waitForURL(`${URL_}/my`), page.click("#connect-end")]);
    check("she ends it herself; her page offers the sign-in to connect again",
      (await page.$("#connect-end")) === null && (await page.textContent("#connect-state")).includes("keinen Verkehr"));
    console.log(`ENDED_AT_MS=${ended}`);
  } else {
    throw new Error(`STEP ${STEP}: activate or end`);
  }
} catch (e) {
  log(`FAIL: ${e.message}`);
  await page.screenshot({ path: `${SHOTS}/connect-failure.png`, fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
