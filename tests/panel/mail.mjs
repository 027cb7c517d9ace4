// The mailed invitation in a real browser (Debian's headless Chromium through Playwright),
// started by tests/netns/mail.sh inside the gateway's namespace: the staff member opens the
// link from the mail and saves the config the page hands out; the admin looks at the rollout
// view and reminds everyone who has not set up with one click. Screenshots of the mail, the
// link's pages and the rollout view go to $SHOTS. Each step prints PASS; the first failure
// ends the run with exit code 1.
import { check, env, launch, log } from "./browser.mjs";
import { writeFileSync } from "node:fs";

const [URL_, LINK, MAIL_HTML, CONF_OUT, SHOTS] = ["PANEL_URL", "LINK", "MAIL_HTML", "CONF_OUT", "SHOTS"].map(env);
const STEP = env("STEP");

const browser = await launch();
let page;
try {
  const ctx = await browser.newContext({ locale: "de-DE", viewport: { width: 900, height: 1000 } });
  page = await ctx.newPage();
  page.on("dialog", (d) => d.accept()); // the panel's confirm() before reminding everyone
  if (STEP === "staff") {
    // The mail as a mail program shows its HTML part (scripts off, as mail programs do).
    const mailPage = await (await browser.newContext({ javaScriptEnabled: false, viewport: { width: 800, height: 900 } })).newPage();
    await mailPage.setContent(MAIL_HTML);
    await mailPage.screenshot({ path: `${SHOTS}/mail-invitation.png`, fullPage: true });
    const href = await mailPage.getAttribute("a", "href");
    check("mail: the HTML part's link is the text part's link", href === LINK, href);

    await page.goto(LINK);
    await page.screenshot({ path: `${SHOTS}/mail-link-opened.png`, fullPage: true });
    check("link: opening it only asks to confirm", (await page.textContent("body")).includes("Jetzt einrichten"));
    await page.click("button[type=submit]");
    const data = await page.getAttribute("a[href^='data:application/octet-stream']", "href");
    check("link: the confirmed page hands out the config", data !== null);
    writeFileSync(CONF_OUT, Buffer.from(data.split(",")[1], "base64"), { mode: 0o600 });
    await page.screenshot({ path: `${SHOTS}/mail-link-config.png`, fullPage: true });
    await page.goto(LINK);
    check("link: a second visit finds it used up", !(await page.textContent("body")).includes("Jetzt einrichten"));
  } else {
    await page.goto(`${URL_}/login`);
    await page.fill("#name", "alice");
    await page.fill("#password", "alice-password-1");
    await page.click("button[type=submit]");
    await page.goto(`${URL_}/rollout`);
    const rows = await page.$$eval("#invitations tbody tr", (trs) => trs.map((tr) => tr.innerText));
    const jm = rows.find((r) => r.includes("Jürgen"));
    check("rollout: Jürgen's mail is sent and his device set up", jm && jm.includes("verschickt") && !jm.split("\t").slice(5, 7).includes("—"), jm);
    check("rollout: the queue line counts the sent mails", /2 verschickt/.test(await page.textContent("#mail-queue")),
      await page.textContent("#mail-queue"));
    await page.screenshot({ path: `${SHOTS}/rollout.png`, fullPage: true });
    await page.click("#remind button[type=submit]");
    check("rollout: one click queues a reminder for the one who has not set up",
      (await page.textContent("main")).includes("1 Erinnerungen"), page.url());
    await page.screenshot({ path: `${SHOTS}/rollout-reminded.png`, fullPage: true });
  }
} catch (e) {
  log(`FAIL: ${e.message}`);
  if (page) await page.screenshot({ path: `${SHOTS}/mail-failure-${STEP}.png`, fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
