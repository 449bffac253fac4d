#!/usr/bin/env node
// A long conversation (not part of npm test): the page's Mimi loopback (tests/fixtures/mimi/tiny_b)
// through the fake microphone in headless Chromium for MINUTES minutes (default 30), reporting
// every minute what could grow in a long session, then a verdict.
//
//   node scripts/long-run.mjs [MINUTES]          (needs web/pkg: npm run build:wasm)
//
// "Record both sides" is off (a recording grows with the conversation by design).
// Each minute: the page's and the engine worker's JS heaps after a garbage collection (CDP; the
// worker through a target session of its own), wasm memory and GPU bytes (the engine's stats),
// the mic -> speaker latency (mean and max of the stats sampled every 5 s in that minute) against
// its bound, the frames in, heard and dropped. Verdict: after the first minute (pipelines
// compiled, buffers made), wasm memory and GPU bytes stay exactly flat, each JS heap within
// HEAP_SLACK_MB of its first-minute value, and the last minute's mean latency within one frame
// time (80 ms / the measured speed) of the first minute's. Exit status 0 when all hold, 1 if not.
// The per-minute rows go to target/long-run.json as well.
//
// Env: CHROMIUM (default /usr/bin/chromium).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { startServer } from "./serve.mjs";
import { writeShellVersion } from "./shell-version.mjs";
import { testSignal, writeWav16 } from "./lib/audio.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const HEAP_SLACK_MB = 4;
const MINUTE = 60000;
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
const mb = (x) => (x == null ? "–" : (x / 2 ** 20).toFixed(1));

// The engine worker's JS heap after a garbage collection, through CDP: the page's session
// auto-attaches to its workers (non-flat sessions, so that messages go through this session).
async function workerHeapProbe(cdp) {
  const workers = new Map(); // sessionId -> url
  let next = 1;
  const waiting = new Map();
  cdp.on("Target.attachedToTarget", (e) => e.targetInfo.type === "worker" && workers.set(e.sessionId, e.targetInfo.url));
  cdp.on("Target.detachedFromTarget", (e) => workers.delete(e.sessionId));
  cdp.on("Target.receivedMessageFromTarget", (e) => {
    const m = JSON.parse(e.message);
    waiting.get(m.id)?.(m);
    waiting.delete(m.id);
  });
  const send = (sessionId, method) =>
    new Promise((ok, fail) => {
      const id = next++;
      waiting.set(id, (m) => (m.error ? fail(new Error(m.error.message)) : ok(m.result)));
      cdp.send("Target.sendMessageToTarget", { sessionId, message: JSON.stringify({ id, method, params: {} }) }).catch(fail);
    });
  await cdp.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  return async () => {
    const session = [...workers].find(([, url]) => /worker\.js/.test(url))?.[0];
    if (!session) return null;
    await send(session, "HeapProfiler.collectGarbage");
    return (await send(session, "Runtime.getHeapUsage")).usedSize;
  };
}

async function main() {
  const minutes = Number(process.argv[2] ?? 30);
  if (!(minutes >= 2)) {
    console.error("usage: node scripts/long-run.mjs [MINUTES]   (at least 2: the first minute is the baseline)");
    process.exit(2);
  }
  const tmp = mkdtempSync(join(tmpdir(), "parle-long-"));
  const mic = join(tmp, "mic.wav");
  writeWav16(mic, testSignal(20, 48000, 5), 48000); // looped by Chromium's fake microphone
  writeShellVersion(); // web/version.js as web/ is now (the service worker imports it)
  const server = await startServer({ mounts: { "/fixtures/": join(ROOT, "tests", "fixtures") } });
  const base = `http://127.0.0.1:${server.address().port}`;
  const context = await chromium.launchPersistentContext(join(tmp, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-dev-shm-usage",
      "--enable-unsafe-webgpu",
      "--enable-precise-memory-info",
      "--autoplay-policy=no-user-gesture-required",
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
      `--use-file-for-fake-audio-capture=${mic}`,
    ],
    ignoreDefaultArgs: ["--mute-audio"],
  });
  const rows = [];
  let ok = false;
  try {
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${base}/?model=/fixtures/mimi/tiny_b/&autoload`);
    await page.waitForFunction(() => document.getElementById("model-status").classList.contains("ok") || !document.getElementById("error").hidden, null, { timeout: 300000 });
    if (!(await page.locator("#error").isHidden())) throw new Error(`the model did not load: ${await page.locator("#error").textContent()}`);
    const cdp = await context.newCDPSession(page);
    await cdp.send("Performance.enable");
    const workerHeap = await workerHeapProbe(cdp);
    // No recording: it keeps both sides of the whole conversation in the worker by design
    // (~6-12 MB a minute), which would hide a leak.
    await page.locator("#record").uncheck();
    await page.locator("#talk").click();
    await page.waitForFunction(() => (window.parleApp.stats?.framesOut ?? 0) > 0, null, { timeout: 120000 });
    console.log(`long run: ${minutes} min of the Mimi loopback on ${await page.locator("#st-adapter").textContent()}`);
    console.log("min  page heap MB  worker heap MB  wasm MB  GPU MB  latency mean/max ms (bound)  frames in/heard/dropped  speed");
    const t0 = Date.now();
    for (let m = 1; m <= minutes; m++) {
      const lat = [];
      while (Date.now() - t0 < m * MINUTE) {
        await sleep(Math.min(5000, Math.max(0, t0 + m * MINUTE - Date.now())));
        const s = await page.evaluate(() => window.parleApp.stats);
        if (s?.latencyMs != null) lat.push(s.latencyMs);
      }
      if (!(await page.locator("#error").isHidden())) throw new Error(`the conversation failed: ${await page.locator("#error").textContent()}`);
      await cdp.send("HeapProfiler.collectGarbage");
      const metrics = Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map((x) => [x.name, x.value]));
      const s = await page.evaluate(() => window.parleApp.stats);
      const row = {
        minute: m,
        pageHeap: metrics.JSHeapUsedSize,
        workerHeap: await workerHeap(),
        wasm: s.wasmBytes,
        gpu: s.gpuBytes,
        latencyMean: lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : null,
        latencyMax: lat.length ? Math.max(...lat) : null,
        latencyBound: s.latencyBoundMs,
        framesIn: s.framesIn,
        framesOut: s.framesOut,
        dropped: s.dropped,
        speed: s.speed,
      };
      rows.push(row);
      console.log(
        `${String(m).padStart(3)}  ${mb(row.pageHeap).padStart(12)}  ${mb(row.workerHeap).padStart(14)}  ${mb(row.wasm).padStart(7)}  ${mb(row.gpu).padStart(6)}  ` +
          `${Math.round(row.latencyMean)}/${Math.round(row.latencyMax)} (${Math.round(row.latencyBound)})`.padStart(27) +
          `  ${row.framesIn}/${row.framesOut}/${row.dropped}`.padStart(25) +
          `  ${row.speed?.toFixed(3)}×`,
      );
    }
    await page.locator("#stop").click();
    // The verdict, against the first minute.
    const first = rows[0];
    const lastRow = rows.at(-1);
    const problems = [];
    for (const r of rows.slice(1)) {
      if (r.wasm !== first.wasm) problems.push(`minute ${r.minute}: wasm memory ${mb(first.wasm)} -> ${mb(r.wasm)} MB`);
      if (r.gpu !== first.gpu) problems.push(`minute ${r.minute}: GPU bytes ${first.gpu} -> ${r.gpu}`);
      if (r.pageHeap > first.pageHeap + HEAP_SLACK_MB * 2 ** 20) problems.push(`minute ${r.minute}: page heap ${mb(first.pageHeap)} -> ${mb(r.pageHeap)} MB`);
      if (r.workerHeap != null && first.workerHeap != null && r.workerHeap > first.workerHeap + HEAP_SLACK_MB * 2 ** 20) {
        problems.push(`minute ${r.minute}: worker heap ${mb(first.workerHeap)} -> ${mb(r.workerHeap)} MB`);
      }
      if (r.latencyMax > r.latencyBound) problems.push(`minute ${r.minute}: latency ${Math.round(r.latencyMax)} ms over its bound ${Math.round(r.latencyBound)} ms`);
    }
    const frameMs = 80 / Math.min(1, lastRow.speed || 1);
    if (lastRow.latencyMean > first.latencyMean + frameMs) problems.push(`latency drifted: ${Math.round(first.latencyMean)} -> ${Math.round(lastRow.latencyMean)} ms (allowed +${Math.round(frameMs)} ms)`);
    if (errors.length) problems.push(`page errors: ${errors.join("; ")}`);
    if (rows.some((r) => r.workerHeap == null)) console.log("note: the engine worker's heap could not be read through CDP in some minutes (–)");
    ok = problems.length === 0;
    console.log(
      ok
        ? `verdict: flat — after minute 1 wasm memory and GPU bytes unchanged, JS heaps within ${HEAP_SLACK_MB} MB, latency ${Math.round(first.latencyMean)} -> ${Math.round(lastRow.latencyMean)} ms (allowed +${Math.round(frameMs)} ms); ` +
            `${lastRow.dropped} of ${lastRow.framesIn} frames dropped (this adapter at ${lastRow.speed?.toFixed(3)}× real time)`
        : `verdict: NOT flat —\n  ${problems.join("\n  ")}`,
    );
  } catch (e) {
    console.error(`long run failed: ${e.message}`);
  } finally {
    const out = join(ROOT, "target");
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, "long-run.json"), JSON.stringify(rows, null, 1));
    await context.close().catch(() => {});
    server.close();
    rmSync(tmp, { recursive: true, force: true });
  }
  process.exit(ok ? 0 : 1);
}

main();
