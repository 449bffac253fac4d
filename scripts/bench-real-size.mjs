#!/usr/bin/env node
// The real-size benchmark (not CI): a published-size model directory (scripts/make-real-size.py
// writes one per format) loaded natively by the CLI and through the JS API in headless Chromium
// from the app's own server, as a user would. Prints, for each: load time, warm-up time, frame
// times, dispatches per frame, GPU bytes (estimated before the download vs allocated) and wasm
// memory (the heap only grows, so its size after the run is its peak).
//
//   node scripts/bench-real-size.mjs DIR [--frames N | --load-only] [--native-only | --browser-only]
//
// --load-only: no frames (natively `parle info` only; in Chromium download + load, then the
// wasm heap after load), for iterating on the load's memory.
//
// Env: CHROMIUM (default /usr/bin/chromium), PARLE_BIN (default target/debug/parle).
// Without a GPU, Chromium's WebGPU is SwiftShader and natively it is lavapipe: the 7B then takes
// minutes per frame and ~6–9 GB of RAM; the browser copy also needs the model's size in free disk
// (OPFS, in a temporary profile that is deleted afterwards).

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";

import { chromium } from "playwright-core";

import { testSignal, writeWav16 } from "./lib/audio.mjs";
import { startServer } from "./serve.mjs";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const PARLE = process.env.PARLE_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "debug", "parle");
const FRAME = 1920;

function usage(msg) {
  if (msg) console.error(msg);
  console.error("usage: node scripts/bench-real-size.mjs DIR [--frames N | --load-only] [--native-only | --browser-only]");
  process.exit(2);
}

const args = process.argv.slice(2);
let dir = null;
let frames = 3;
let native = true;
let browser = true;
let loadOnly = false;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--frames") frames = Number(args[++i]);
  else if (a === "--load-only") loadOnly = true;
  else if (a === "--native-only") browser = false;
  else if (a === "--browser-only") native = false;
  else if (a.startsWith("-")) usage(`unknown option ${a}`);
  else if (dir === null) dir = resolve(a);
  else usage(`one model directory only (got ${dir} and ${a})`);
}
if (!dir) usage();
if (!Number.isInteger(frames) || frames < 1) usage("--frames takes a whole number ≥ 1");
if (loadOnly) frames = 0;
try {
  if (!statSync(dir).isDirectory()) usage(`${dir} is not a directory`);
} catch {
  usage(`${dir} does not exist (make one with scripts/make-real-size.py)`);
}

const mb = (b) => (b == null ? "?" : `${(b / 2 ** 20).toFixed(1)} MiB`);
const gb = (b) => (b == null ? "?" : `${(b / 1e9).toFixed(2)} GB`);
const files = readdirSync(dir).map((f) => ({ name: f, size: statSync(join(dir, f)).size }));
const largestFile = files.reduce((a, f) => Math.max(a, f.size), 0);
console.log(`model: ${dir}`);
for (const f of files) console.log(`  ${f.name}: ${gb(f.size)}`);

const work = mkdtempSync(join(tmpdir(), "parle-real-size-"));
// Frames of a test signal; the first `frames` of them are what each side runs.
const signal = testSignal((Math.max(frames, 1) * FRAME) / 24000, 24000, 5);
const wav = writeWav16(join(work, "in.wav"), signal, 24000);

try {
  if (native) {
    console.log("\n== native (parle info, parle run)");
    const info = spawnSync(PARLE, ["info", "--model", dir], { encoding: "utf8" });
    process.stdout.write(info.stdout + info.stderr);
  }
  if (native && !loadOnly) {
    const t0 = Date.now();
    const run = spawnSync(PARLE, ["run", "--model", dir, "--input", join(work, "in.wav"), "--output", join(work, "out.wav"), "--greedy"], {
      encoding: "utf8",
      maxBuffer: 64 << 20,
    });
    process.stdout.write(run.stdout + run.stderr);
    console.log(`parle run: exit ${run.status}, ${((Date.now() - t0) / 1000).toFixed(1)} s in all`);
  }

  if (browser) {
    console.log("\n== Chromium (the JS API, from the app's server)");
    const server = await startServer({ mounts: { "/models/": dirname(dir) } });
    const url = `http://127.0.0.1:${server.address().port}/models/${basename(dir)}/`;
    const profile = join(work, "profile");
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-unsafe-webgpu"],
    });
    try {
      const page = await context.newPage();
      page.on("console", (m) => m.type() === "error" && console.log(`[console] ${m.text()}`));
      await page.goto(`http://127.0.0.1:${server.address().port}/`);
      const frame0 = Array.from(signal.subarray(0, FRAME));
      const result = await page.evaluate(
        async ({ url, frames, frame0 }) => {
          const api = await import("/parle.js");
          const engine = await api.createEngine();
          const inspected = await engine.inspect(url);
          const t0 = performance.now();
          let downloadedAt = null;
          // The wasm heap along the load: its size at the end of each file's download and at
          // every tenth of each file's GPU upload (the heap only grows, so this shows where).
          const heap = [];
          const seen = new Set();
          const info = await engine.load(url, {
            warmup: false,
            onProgress: (p) => {
              if (p.phase !== "download" && downloadedAt === null) downloadedAt = performance.now();
              const tenth = p.total ? Math.floor((10 * p.loaded) / p.total) : 0;
              const key = `${p.phase} ${p.file} ${tenth}`;
              if (p.wasmBytes != null && !seen.has(key) && (p.phase === "gpu" || p.loaded === p.total)) {
                seen.add(key);
                heap.push({ phase: p.phase, file: p.file, at: `${tenth * 10}%`, wasmBytes: p.wasmBytes });
              }
            },
          });
          const loadWallMs = performance.now() - t0;
          const times = [];
          let last = null;
          for (let i = 0; i < frames; i++) {
            const s = performance.now();
            last = await engine.step(new Float32Array(frame0));
            times.push(performance.now() - s);
          }
          const memory = await engine.memory();
          await engine.deleteCached(url);
          return {
            inspected: { gpuBytes: inspected.gpuBytes, bytes: inspected.bytes },
            info,
            downloadMs: downloadedAt === null ? null : downloadedAt - t0,
            loadWallMs,
            times,
            memory,
            tokens: last?.audioTokens ? Array.from(last.audioTokens) : null,
            heap,
          };
        },
        { url, frames, frame0 },
      );
      const i = result.info;
      console.log(`adapter: ${i.adapter}${i.software ? " (software)" : ""}`);
      console.log(`download + load: ${(result.loadWallMs / 1000).toFixed(1)} s in all (download ${result.downloadMs == null ? "?" : (result.downloadMs / 1000).toFixed(1) + " s"}, load ${((i.loadMs ?? 0) / 1000).toFixed(1)} s, warm-up skipped: the first frame compiles the pipelines)`);
      if (frames > 0) console.log(`frames: ${result.times.map((t) => `${(t / 1000).toFixed(2)} s`).join(", ")}; dispatches per frame: see the native run`);
      console.log(`GPU bytes: estimated before the download ${gb(result.inspected.gpuBytes)}, allocated ${gb(i.gpuBytes)}${result.inspected.gpuBytes && i.gpuBytes ? ` (estimate/allocated ${(result.inspected.gpuBytes / i.gpuBytes).toFixed(3)})` : ""}`);
      const bound = 64 * 2 ** 20 + 2 * (i.largestTensor ?? 0);
      console.log(`wasm memory: after load ${mb(i.wasmBytes)}, after ${frames} frames ${mb(result.memory)}; bound 64 MiB + 2 × largest tensor (${mb(i.largestTensor)}) = ${mb(bound)}: ${Math.max(i.wasmBytes ?? 0, result.memory ?? 0) <= bound ? "within" : "OVER"}`);
      let prev = 0;
      for (const h of result.heap) {
        if (h.wasmBytes !== prev) console.log(`  wasm heap ${mb(h.wasmBytes)} at ${h.phase} ${h.file} ${h.at}`);
        prev = h.wasmBytes;
      }
      console.log(`largest file ${gb(largestFile)}; last frame's tokens: ${result.tokens ? result.tokens.join(" ") : "(none yet)"}`);
    } finally {
      await context.close();
      server.close();
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
