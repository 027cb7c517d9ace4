// The directory page in a real browser (Debian's headless Chromium through Playwright), started
// by tests/netns/directory.sh inside the gateway's namespace once the directory's VPN group was
// emptied: an admin sees what the sync reads and its mapping, the runs with why they changed
// nothing, and runs it once more with the button: refused, nothing changed. Screenshots go to
// $SHOTS. Each step prints PASS; the first failure ends the run with exit code 1.
import { check, env, launch, log } from "./browser.mjs";
const [URL_, SHOTS, PASSWORD] = ["PANEL_URL", "SHOTS", "ADMIN_PASSWORD"].map(env);
const browser = await launch();
let page;
try {
  const ctx = await browser.newContext({ locale: "de-DE", viewport: { width: 1100, height: 1000 } });
  page = await ctx.newPage();
  await page.goto(`${URL_}/login`);
  await page.fill("#name", "it-admin");
  await page.fill("#password", PASSWORD);
  await page.click("button[type=submit]");
  await page.goto(`${URL_}/users`);
  await page.click("a[href='/directory']");
  const settings = await page.textContent("#directory-settings");
  check("directory: the page names the directory, its security and the reading account",
    settings.includes("ldap://127.0.0.1:3890") && settings.includes("starttls") && settings.includes("cn=heimweg,ou=services"), settings);
  check("directory: no password on the page", !(await page.content()).includes("reader-secret"));
  const mapping = await page.textContent("#directory-groups");
  check("directory: the mapping lists the VPN group and its heimweg group",
    mapping.includes("cn=vpn-users,ou=groups,dc=stadt,dc=example") && mapping.includes("staff"), mapping);
  const runs = await page.$$eval("#directory-runs tbody tr", (trs) => trs.map((tr) => tr.innerText));
  check("directory: the runs say what each did: refused, failed, done",
    runs.length >= 4 && runs[0].includes("verweigert") && runs.some((r) => r.includes("fehlgeschlagen")) && runs.some((r) => r.includes("erledigt")),
    runs.slice(0, 4).join(" | "));
  await page.screenshot({ path: `${SHOTS}/directory.png`, fullPage: true });
  await page.click("#sync button[type=submit]");
  const notice = await page.textContent("main");
  check("directory: the button runs it now; refused, it says nothing was changed and why",
    notice.includes("Nichts wurde geändert: Die Antwort des Verzeichnisses") && notice.includes("named nobody"), page.url());
  await page.screenshot({ path: `${SHOTS}/directory-refused.png`, fullPage: true });
} catch (e) {
  log(`FAIL: ${e.message}`);
  if (page) await page.screenshot({ path: `${SHOTS}/directory-failure.png`, fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
