// heimweg panel: small enhancements only. Every page works without this script.
"use strict";
document.addEventListener("submit", (ev) => {
  // Forms with data-confirm ask before an irreversible change (revoke, disable, rotate).
  const msg = ev.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) ev.preventDefault();
});
document.addEventListener("click", async (ev) => {
  const t = ev.target;
  if (t.matches("[data-back]")) {
    ev.preventDefault();
    history.back();
    return;
  }
  if (!t.matches("button.copy")) return;
  // Copy buttons copy the text of the element they name (an input's value, or its text).
  const src = document.querySelector(t.getAttribute("data-copy"));
  if (!src) return;
  const text = "value" in src ? src.value : src.textContent;
  try {
    await navigator.clipboard.writeText(text);
    t.dataset.label = t.dataset.label || t.textContent;
    t.textContent = document.documentElement.lang === "de" ? "Kopiert" : "Copied";
    setTimeout(() => { t.textContent = t.dataset.label; }, 2000);
  } catch (_) {
    if ("select" in src) src.select();
  }
});
document.addEventListener("change", async (ev) => {
  // A file input with data-fill reads the chosen file (UTF-8) into the field it names, so
  // that the form it belongs to stays an ordinary form.
  const t = ev.target;
  if (!t.matches("input[type=file][data-fill]") || !t.files.length) return;
  const into = document.querySelector(t.getAttribute("data-fill"));
  if (into) into.value = await t.files[0].text();
});
// Sign in to connect: the warning shows a quarter of an hour before the activation ends, and
// the page reloads at its end, so that it says what the gateway does.
const ends = document.querySelector("[data-ends-at]");
if (ends) {
  const left = Number(ends.getAttribute("data-ends-at")) * 1000 - Date.now();
  const warning = document.getElementById("connect-warning");
  if (warning) setTimeout(() => { warning.hidden = false; }, Math.max(0, left - 15 * 60 * 1000));
  setTimeout(() => location.reload(), Math.max(1000, left + 1000));
}
