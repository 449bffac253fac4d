#!/usr/bin/env node
// The page's benchmark button in headless Chromium: serves the app (scripts/serve.mjs), opens
// the Benchmark section, and for each preset picks it, sets the frames, clicks Run and prints what
// the page shows (and the result object). Without a GPU, Chromium's WebGPU is SwiftShader (the
// CPU): the real-size presets then take minutes, the 7B about 5–7 GB of RAM.
//
//   node scripts/bench-browser.mjs [PRESET[:FRAMES]...]   (default: mimi:3 lm-small:3 lm-7b:2)
//
// Env: CHROMIUM (default /usr/bin/chromium).

import { chromium } from "playwright-core";

import { startServer } from "./serve.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const runs = (process.argv.length > 2 ? process.argv.slice(2) : ["mimi:3", "lm-small:3", "lm-7b:2"]).map((a) => {
  const [preset, frames] = a.split(":");
  return { preset, frames: Number(frames ?? 3) };
});

const server = await startServer({});
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-webgpu"],
});
let failed = 0;
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.log(`[pageerror] ${e.message}`));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForFunction(() => !document.getElementById("bench-run").disabled || !document.getElementById("error").hidden, null, { timeout: 120000 });
  console.log(`adapter: ${await page.locator("#gpu-status").textContent()}`);
  console.log(`chromium: ${browser.version()}`);
  await page.locator("#bench summary").click();
  for (const { preset, frames } of runs) {
    await page.evaluate(() => {
      window.parleApp.bench = null;
      document.getElementById("error").hidden = true;
    });
    await page.locator("#bench-preset").selectOption(preset);
    await page.locator("#bench-frames").fill(String(frames));
    const t0 = Date.now();
    await page.locator("#bench-run").click();
    // No limit: a real-size preset on a software adapter takes as long as it takes.
    await page.waitForFunction(() => window.parleApp.bench || !document.getElementById("error").hidden, null, { timeout: 0 });
    const wall = (Date.now() - t0) / 1000;
    const r = await page.evaluate(() => window.parleApp.bench);
    if (r) {
      console.log(`\n== ${preset}, ${frames} frames (${wall.toFixed(0)} s in all)\n${await page.locator("#bench-out").textContent()}`);
      console.log(JSON.stringify(r));
    } else {
      failed++;
      const title = await page.locator("#error-title").textContent();
      const detail = await page.locator("#error-detail").textContent();
      console.log(`\n== ${preset}, ${frames} frames: FAILED after ${wall.toFixed(0)} s\n${title}\n${detail}`);
    }
  }
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
