#!/usr/bin/env node
// Browser test of the web page (web/), with no npm dependencies: serves web/ on 127.0.0.1,
// drives headless Chromium through chromedriver's WebDriver HTTP API, and checks that
//   1. with WebGPU: the adapter report and the GPU self-test appear, the fake microphone's frames
//      go capture worklet -> worker -> playback worklet, the service worker installs, and the page
//      still opens (from the cache) once the server is gone;
//   2. without WebGPU: the page says so specifically (no adapter; no navigator.gpu at all), and a
//      denied microphone is reported as such.
// Screenshots go to $PARLE_SCREENSHOTS (default target/page-test/). Prints "N passed, N failed".
//
// Env: CHROMIUM (default /usr/bin/chromium), CHROMEDRIVER (default /usr/bin/chromedriver).

import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdirSync, readFileSync, writeFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { extname, join, normalize, dirname } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const WEB = join(ROOT, "web");
const SHOTS = process.env.PARLE_SCREENSHOTS ?? join(ROOT, "target", "page-test");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const CHROMEDRIVER = process.env.CHROMEDRIVER ?? "/usr/bin/chromedriver";

const BASE_FLAGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  "--window-size=1000,1100",
  "--autoplay-policy=no-user-gesture-required",
];

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} page: ${name}${detail ? ` — ${detail}` : ""}`);
}

// ---- static server -----------------------------------------------------------------------------

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".webmanifest": "application/manifest+json",
  ".svg": "image/svg+xml",
  ".ts": "text/plain",
};

function serve(port = 0) {
  const server = createServer((req, res) => {
    let path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    if (path.endsWith("/")) path += "index.html";
    const file = normalize(join(WEB, path));
    if (!file.startsWith(WEB) || !existsSync(file)) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": MIME[extname(file)] ?? "application/octet-stream", "cache-control": "no-cache" });
    res.end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(port, "127.0.0.1", () => ok(server)));
}

// ---- WebDriver ---------------------------------------------------------------------------------

async function startDriver() {
  const probe = await serve();
  const port = probe.address().port; // a free port for chromedriver
  await new Promise((ok) => probe.close(ok));
  const proc = spawn(CHROMEDRIVER, [`--port=${port}`], { stdio: "ignore" });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${url}/status`)).ok) return { proc, url };
    } catch {}
    await sleep(100);
  }
  proc.kill();
  throw new Error(`chromedriver (${CHROMEDRIVER}) did not start`);
}

async function wd(url, method, path, body) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`WebDriver ${method} ${path}: ${json.value?.message ?? res.status}`);
  return json.value;
}

async function session(driver, extraFlags) {
  const userData = mkdtempSync(join(tmpdir(), "parle-chromium-"));
  const value = await wd(driver.url, "POST", "/session", {
    capabilities: {
      alwaysMatch: {
        "goog:chromeOptions": { binary: CHROMIUM, args: [...BASE_FLAGS, `--user-data-dir=${userData}`, ...extraFlags] },
      },
    },
  });
  const base = `/session/${value.sessionId}`;
  return {
    go: (url) => wd(driver.url, "POST", `${base}/url`, { url }),
    cdp: (cmd, params) => wd(driver.url, "POST", `${base}/goog/cdp/execute`, { cmd, params }),
    js: (script, args = []) => wd(driver.url, "POST", `${base}/execute/sync`, { script, args }),
    jsAsync: (script, args = []) => wd(driver.url, "POST", `${base}/execute/async`, { script, args }),
    // textContent of the first element matching a CSS selector ("" if none), or of an id.
    text: (sel) => wd(driver.url, "POST", `${base}/execute/sync`, { script: `return document.querySelector(arguments[0])?.textContent ?? ""`, args: [/^[a-z-]+$/.test(sel) ? `#${sel}` : sel] }),
    shown: (id) => wd(driver.url, "POST", `${base}/execute/sync`, { script: `return !document.getElementById(arguments[0]).hidden`, args: [id] }),
    shot: async (name) => {
      const png = await wd(driver.url, "GET", `${base}/screenshot`);
      mkdirSync(SHOTS, { recursive: true });
      writeFileSync(join(SHOTS, name), Buffer.from(png, "base64"));
    },
    close: async () => {
      await wd(driver.url, "DELETE", base).catch(() => {});
      rmSync(userData, { recursive: true, force: true });
    },
  };
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/// Poll `probe()` until it returns a truthy value or `ms` pass; returns the last value.
async function until(probe, ms) {
  const end = Date.now() + ms;
  let v;
  while (Date.now() < end) {
    v = await probe();
    if (v) return v;
    await sleep(200);
  }
  return v;
}

// ---- the checks --------------------------------------------------------------------------------

async function withWebGpu(driver) {
  let server = await serve();
  const port = server.address().port;
  const url = `http://127.0.0.1:${port}/`;
  const s = await session(driver, ["--enable-unsafe-webgpu", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]);
  try {
    await s.go(url);
    const report = await until(async () => (await s.text("gpu-report")) || ((await s.shown("gpu-error")) && "error"), 60000);
    const error = await s.text("gpu-error");
    check("adapter report shown", report && report !== "error", report === "error" ? error.trim() : "");
    if (report && report !== "error") {
      for (const line of report.split("\n")) console.log(`      ${line}`);
    }
    const selfTest = await until(async () => {
      const t = await s.text("self-test");
      return t && !t.includes("Running") ? t : null;
    }, 60000);
    check("GPU self-test passes", (await s.js("return document.getElementById('self-test').className")).includes("ok"), selfTest ?? "(no result)");
    check("version shown", /\d+\.\d+\.\d+/.test(await s.text("version")));

    // Audio: the fake microphone (a beep) -> capture -> worker -> playback.
    await s.js("document.getElementById('audio-start').click()");
    const frames = await until(async () => {
      const [n, played] = [Number(await s.text("st-out")), parseFloat(await s.text("st-played"))];
      return n >= 10 && played > 0.3 ? { n, played } : null;
    }, 20000);
    check("audio frames loop through the worker and play", !!frames, frames ? `${frames.n} frames, ${frames.played} s played` : `frames back: ${await s.text("st-out")}, played: ${await s.text("st-played")}, error: ${(await s.text("audio-error")).trim()}`);
    await s.shot("webgpu.png");
    await s.js("document.getElementById('audio-stop').click()");

    // Offline: the service worker controls the page, then the server goes away.
    const sw = await s.jsAsync("const done = arguments[arguments.length - 1]; navigator.serviceWorker.ready.then(() => done(true), (e) => done(String(e)))");
    check("service worker installed", sw === true, sw === true ? "" : String(sw));
    await until(() => s.js("return !!navigator.serviceWorker.controller"), 10000);
    await new Promise((ok) => server.close(ok));
    server = null;
    await s.go(url);
    const offline = await until(() => s.text("gpu-report"), 60000);
    check("page and GPU report work offline (from the service worker cache)", !!offline);
    await s.shot("offline.png");
  } finally {
    await s.close();
    if (server) server.close();
  }
}

async function withoutWebGpu(driver) {
  const server = await serve();
  const url = `http://127.0.0.1:${server.address().port}/`;
  // No --enable-unsafe-webgpu: on Linux Chromium then offers no adapter. Microphone prompts denied.
  const s = await session(driver, ["--use-fake-device-for-media-stream", "--deny-permission-prompts"]);
  try {
    await s.go(url);
    const title = await until(async () => ((await s.shown("gpu-error")) ? s.text("#gpu-error strong") : null), 30000);
    check("missing WebGPU reported", /WebGPU/.test(title ?? "") && !(await s.text("gpu-report")), title ?? "(no message)");
    await s.js("document.getElementById('audio-start').click()");
    const mic = await until(async () => {
      const t = await s.text("#audio-error strong");
      return /[Mm]icrophone/.test(t) ? t : null;
    }, 15000);
    check("denied microphone reported", /denied|blocked/.test(mic ?? ""), `${mic ?? "(no message)"}: ${(await s.text("#audio-error p")).split("\n").pop()}`);
    await s.shot("no-webgpu.png");
    // A browser without WebGPU at all: navigator.gpu undefined.
    await s.cdp("Page.addScriptToEvaluateOnNewDocument", { source: "delete Navigator.prototype.gpu;" });
    await s.go(url);
    const none = await until(async () => ((await s.shown("gpu-error")) ? s.text("#gpu-error strong") : null), 30000);
    check("navigator.gpu undefined reported", /no WebGPU/.test(none ?? ""), none ?? "(no message)");
  } finally {
    await s.close();
    server.close();
  }
}

async function main() {
  if (!existsSync(join(WEB, "pkg", "parle_bg.wasm"))) {
    console.log("FAIL page: web/pkg/ is not built (npm run build:wasm)");
    console.log("0 passed, 1 failed");
    process.exit(1);
  }
  const driver = await startDriver();
  try {
    for (const part of [withWebGpu, withoutWebGpu]) {
      try {
        await part(driver);
      } catch (e) {
        check(part.name, false, e.message);
      }
    }
  } finally {
    driver.proc.kill();
  }
  console.log(`page tests: ${passed} passed, ${failed} failed (screenshots in ${SHOTS})`);
  process.exit(failed ? 1 : 0);
}

main();
