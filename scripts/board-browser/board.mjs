// The live board in a real browser (run by scripts/board-browser-test, which starts the worker):
// Debian's Chromium, headless, opens the page, sees the honest empty state, then a concert sells
// out and its row must appear, highlighted, within 2 s without a reload. Then the worker is
// killed and started again: the page must say it is reconnecting, come back by itself and show
// the next sell-out. Screenshots (a phone's viewport) go to $SCREENSHOTS.
//
//   BOARD_URL    the worker's base URL
//   CONTROL      the command that sells out (`CONTROL sell N`) and kills / starts the worker
//   SCREENSHOTS  a directory for the screenshots
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";

const { BOARD_URL, CONTROL, SCREENSHOTS } = process.env;
const control = (...args) => execFileSync(CONTROL, args, { stdio: "inherit" });
const fail = (message) => { console.error(`board-browser: FAILED: ${message}`); process.exit(1); };

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  // Flags this machine needs (no sandbox as root; no background connections to a closed network).
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.goto(`${BOARD_URL}/`);
  const status = page.locator("#status");
  await status.filter({ hasText: "live" }).waitFor({ timeout: 5000 });
  if (!(await page.locator("#empty").isVisible())) fail("no empty state on an empty ranking");
  console.log("board-browser: empty state shown, stream live");
  await page.screenshot({ path: `${SCREENSHOTS}/board-empty.png` });

  const sellAndSee = async (n, title) => {
    control("sell", String(n));
    const soldOut = Date.now();
    const row = page.locator("li.new", { hasText: title });
    await row.waitFor({ timeout: 2000 }).catch(() => fail(`"${title}" did not appear within 2 s`));
    const text = await row.innerText();
    if (!/sold out in \d/.test(text)) fail(`no human sell-out time in ${JSON.stringify(text)}`);
    console.log(`board-browser: "${title}" appeared ${Date.now() - soldOut} ms after the last payment returned: ${text.replace(/\s+/g, " ")}`);
  };
  await sellAndSee(1, "Browser Test Concert 1");
  await sellAndSee(2, "Browser Test Concert 2");
  await page.screenshot({ path: `${SCREENSHOTS}/board-live.png` });

  control("kill");
  await status.filter({ hasText: "reconnecting" }).waitFor({ timeout: 5000 })
    .catch(() => fail("no reconnecting state after the worker died"));
  console.log("board-browser: worker killed, page says reconnecting");
  await page.screenshot({ path: `${SCREENSHOTS}/board-reconnecting.png` });
  control("start");
  await status.filter({ hasText: "live" }).waitFor({ timeout: 15000 })
    .catch(() => fail("the page did not reconnect within 15 s of the worker's restart"));
  console.log("board-browser: reconnected");
  await sellAndSee(3, "Browser Test Concert 3");
  const rows = await page.locator("#board li").count();
  if (rows !== 3) fail(`expected 3 rows after the restart, found ${rows}`);
  await page.screenshot({ path: `${SCREENSHOTS}/board-after-restart.png` });
  if (errors.length) fail(`page errors: ${errors.join("; ")}`);
  console.log(`board-browser: ok (screenshots in ${SCREENSHOTS})`);
} finally {
  await browser.close();
}
