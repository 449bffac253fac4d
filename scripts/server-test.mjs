#!/usr/bin/env node
// The app's server (scripts/serve.mjs), natively in Node: what it serves, what it refuses, and that
// no request can end it. Most checks run against `node scripts/serve.mjs --port 0 --models DIR`
// as a child process (so a crash shows as its exit and its open files can be counted in
// /proc/PID/fd); a few use startServer() in this process (onRequest, injected read errors).
//
//   node scripts/server-test.mjs        (the `server` stage of scripts/test.sh)
//
// Everything talks to 127.0.0.1 only. The models folder holds a 3 GiB sparse file (no disk used).

import { spawn, spawnSync } from "node:child_process";
import fs, { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { request } from "node:http";
import { createServer as createNetServer } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { startServer } from "./serve.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SERVE = join(ROOT, "scripts", "serve.mjs");
const BIG = 3 * 2 ** 30;

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} server: ${name}${detail ? ` — ${detail}` : ""}`);
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

// ---- fixtures ------------------------------------------------------------------------------------

const tmp = mkdtempSync(join(tmpdir(), "parle-server-"));
const models = join(tmp, "models");
const m = join(models, "m");
mkdirSync(join(m, ".git"), { recursive: true });
const DATA = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 255));
writeFileSync(join(m, "model.safetensors"), DATA);
writeFileSync(join(m, ".git", "config"), '[remote "origin"]\n\turl = https://user:hf_secret@huggingface.co/kyutai/x\n');
mkdirSync(join(models, ".cache", "huggingface"), { recursive: true });
writeFileSync(join(models, ".cache", "huggingface", "token"), "hf_secret\n");
writeFileSync(join(tmp, "outside.txt"), "outside the models folder\n");
symlinkSync(join(tmp, "outside.txt"), join(m, "outside"));
symlinkSync("/etc/passwd", join(m, "passwd"));
symlinkSync("../../outside.txt", join(m, "relative-outside"));
writeFileSync(join(m, "100% real.txt"), "percent\n");
// One file per type the app serves.
const TYPED = {
  "a.js": "text/javascript",
  "a.mjs": "text/javascript",
  "a.wasm": "application/wasm",
  "a.json": "application/json",
  "a.webmanifest": "application/manifest+json",
  "a.html": "text/html",
  "a.css": "text/css",
  "a.svg": "image/svg+xml",
  "a.png": "image/png",
  "a.wav": "audio/wav",
  "a.txt": "text/plain",
  "a.gguf": "application/octet-stream",
  "a.xyz": "application/octet-stream",
  "noext": "application/octet-stream",
};
for (const f of Object.keys(TYPED)) writeFileSync(join(m, f), `${f}\n`);
// A Hugging Face cache: snapshots/REV/FILE are relative links to ../../blobs/HASH.
const hub = join(models, "hub", "models--kyutai--tiny");
mkdirSync(join(hub, "blobs"), { recursive: true });
mkdirSync(join(hub, "snapshots", "0123abc"), { recursive: true });
const CONFIG = JSON.stringify({ moshi_name: "model.safetensors" });
writeFileSync(join(hub, "blobs", "5f3a9c"), CONFIG);
writeFileSync(join(hub, "blobs", "77e1d0"), DATA);
symlinkSync("../../blobs/5f3a9c", join(hub, "snapshots", "0123abc", "config.json"));
symlinkSync("../../blobs/77e1d0", join(hub, "snapshots", "0123abc", "model.safetensors"));
// A 3 GiB sparse file with markers at its start, middle and end.
mkdirSync(join(models, "big"));
const bigPath = join(models, "big", "model.safetensors");
const MARKS = [0, 2 ** 30, BIG - 4096];
{
  const fd = openSync(bigPath, "w");
  for (const at of MARKS) writeSync(fd, Buffer.from(`mark@${at}`), 0, undefined, at);
  fs.ftruncateSync(fd, BIG);
  closeSync(fd);
}
// A FIFO (opening it would block) and a Unix socket (opening it fails).
spawnSync("mkfifo", [join(m, "fifo")]);
const sock = createNetServer();
await new Promise((ok) => sock.listen(join(m, "sock"), ok));

// ---- HTTP helpers ----------------------------------------------------------------------------------

/** One request on its own connection: { status, headers, body } or { error }. */
function get(port, path, { method = "GET", headers = {}, host = `127.0.0.1:${port}`, timeout = 20000 } = {}) {
  return new Promise((ok) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers: { host, ...headers }, agent: false, timeout }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => ok({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", (error) => ok({ status: res.statusCode, headers: res.headers, error }));
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", (error) => ok({ error }));
    req.end();
  });
}

/** Start a GET, take its first body chunk, then drop the connection. Resolves to the status (or an error). */
function abortAfterFirstChunk(port, path) {
  return new Promise((ok) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      res.once("data", () => {
        req.destroy();
        ok(res.statusCode);
      });
      res.on("error", () => {});
    });
    req.on("error", (e) => ok(e.code ?? e.message));
    req.end();
  });
}

const describe = (r) => (r.error ? `error ${r.error.code ?? r.error.message}` : `${r.status} ${r.headers["content-type"] ?? ""} ${r.body?.length ?? 0} bytes`);

/** `node scripts/serve.mjs ARGS` as a child process; resolves when it prints its address. */
function serveChild(args, { ulimit } = {}) {
  const cmd = ulimit ? ["bash", ["-c", `ulimit -n ${ulimit} && exec "$0" "$@"`, process.execPath, SERVE, ...args]] : [process.execPath, [SERVE, ...args]];
  const proc = spawn(cmd[0], cmd[1], { stdio: ["ignore", "pipe", "pipe"] });
  const child = { proc, out: "", err: "", exit: null };
  proc.stdout.on("data", (d) => (child.out += d));
  proc.stderr.on("data", (d) => (child.err += d));
  proc.on("exit", (code, signal) => (child.exit = code ?? signal));
  return new Promise((ok, fail) => {
    const t0 = Date.now();
    const poll = setInterval(() => {
      const mm = /parle is at http:\/\/127\.0\.0\.1:(\d+)\//.exec(child.out);
      if (mm || child.exit !== null || Date.now() - t0 > 15000) {
        clearInterval(poll);
        if (mm) ok(Object.assign(child, { port: Number(mm[1]), stop: () => proc.kill() }));
        else {
          proc.kill();
          fail(new Error(`serve.mjs ${args.join(" ")} did not print a 127.0.0.1 address (exit ${child.exit}): ${child.out}${child.err}`));
        }
      }
    }, 50);
  });
}

/** `node scripts/serve.mjs ARGS` that must exit by itself: { code, out, err }. */
function runCli(args) {
  const r = spawnSync(process.execPath, [SERVE, ...args], { encoding: "utf8", timeout: 15000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const openFiles = (pid) => readdirSync(`/proc/${pid}/fd`).length;

/** Wait (up to `ms`) until the child holds at most `n` descriptors; returns the last count. */
async function settleFds(pid, n, ms = 5000) {
  let c = openFiles(pid);
  for (const t0 = Date.now(); c > n && Date.now() - t0 < ms; c = openFiles(pid)) await sleep(100);
  return c;
}

// ---- the checks ------------------------------------------------------------------------------------

async function rangeChecks(port) {
  const url = "/models/m/model.safetensors";
  const n = DATA.length;
  const reversed = await get(port, url, { headers: { range: "bytes=10-5" } });
  check("Range: bytes=10-5 (reversed, invalid) is ignored: 200 with the whole file", reversed.status === 200 && reversed.body.equals(DATA), describe(reversed));
  const huge = await get(port, url, { headers: { range: "bytes=0-18446744073709551615" } });
  check(
    "Range: bytes=0-18446744073709551615 is 206 with the whole file (last-pos clamped to the end)",
    huge.status === 206 && huge.body.equals(DATA) && huge.headers["content-range"] === `bytes 0-${n - 1}/${n}`,
    `${describe(huge)} ${huge.headers?.["content-range"]}`,
  );
  const hugeStart = await get(port, url, { headers: { range: "bytes=18446744073709551615-" } });
  check("Range: bytes=18446744073709551615- is 416 (starts past the end)", hugeStart.status === 416, describe(hugeStart));
  const suffix = await get(port, url, { headers: { range: "bytes=-10" } });
  check(
    "Range: bytes=-10 is 206 with the last 10 bytes",
    suffix.status === 206 && suffix.body.equals(DATA.subarray(n - 10)) && suffix.headers["content-range"] === `bytes ${n - 10}-${n - 1}/${n}`,
    `${describe(suffix)} ${suffix.headers?.["content-range"]}`,
  );
  const bigSuffix = await get(port, url, { headers: { range: `bytes=-${n + 50}` } });
  check("Range: bytes=-(more than the file) is 206 with the whole file", bigSuffix.status === 206 && bigSuffix.body.equals(DATA), describe(bigSuffix));
  const first = await get(port, url, { headers: { range: "bytes=0-0" } });
  check("Range: bytes=0-0 is 206 with exactly the first byte", first.status === 206 && first.body.equals(DATA.subarray(0, 1)) && first.headers["content-range"] === `bytes 0-0/${n}`, describe(first));
  const open = await get(port, url, { headers: { range: "bytes=990-" } });
  check("Range: bytes=990- is 206 with the last 10 bytes", open.status === 206 && open.body.equals(DATA.subarray(990)), describe(open));
  for (const bad of ["bytes=abc", "bytes=1-2-3", "bytes=", "bytes=-", "bytes 0-1", "items=0-1", "bytes=0x10-20"]) {
    const r = await get(port, url, { headers: { range: bad } });
    check(`Range: ${bad} (malformed or another unit) is ignored: 200 with the whole file`, r.status === 200 && r.body.equals(DATA), describe(r));
  }
  for (const unsat of [`bytes=${n}-`, `bytes=${n + 5}-${n + 9}`, "bytes=-0"]) {
    const r = await get(port, url, { headers: { range: unsat } });
    check(
      `Range: ${unsat} is 416 with Content-Range: bytes */${n} and Accept-Ranges`,
      r.status === 416 && r.headers["content-range"] === `bytes */${n}` && r.headers["accept-ranges"] === "bytes" && !r.body.includes(DATA.subarray(0, 16)),
      `${describe(r)} ${r.headers?.["content-range"]}`,
    );
  }
  const several = await get(port, url, { headers: { range: "bytes=0-1,5-6" } });
  check("Range: bytes=0-1,5-6 (several ranges) is 200 with the whole file (no multipart)", several.status === 200 && several.body.equals(DATA), describe(several));
  const emptyElems = await get(port, url, { headers: { range: "bytes= , 2-4 ," } });
  check("Range: bytes= , 2-4 , (empty list elements) is 206 for bytes 2-4", emptyElems.status === 206 && emptyElems.body.equals(DATA.subarray(2, 5)), describe(emptyElems));
  const head = await get(port, url, { method: "HEAD", headers: { range: "bytes=0-9" } });
  check("HEAD with Range: 206, Content-Length 10, no body", head.status === 206 && head.headers["content-length"] === "10" && head.body.length === 0, describe(head));
}

async function validatorChecks(port) {
  const url = "/models/m/model.safetensors";
  const whole = await get(port, url);
  const etag = whole.headers.etag;
  const lm = whole.headers["last-modified"];
  check(
    "a file has a strong ETag (quoted, no W/), Last-Modified, Accept-Ranges: bytes, Cache-Control: no-cache",
    /^"[^"]+"$/.test(etag ?? "") && !Number.isNaN(Date.parse(lm)) && whole.headers["accept-ranges"] === "bytes" && whole.headers["cache-control"] === "no-cache",
    `ETag ${etag}, Last-Modified ${lm}, Accept-Ranges ${whole.headers["accept-ranges"]}`,
  );
  const head = await get(port, url, { method: "HEAD" });
  check(
    "HEAD has GET's status, length, type, ETag and Accept-Ranges, and no body",
    head.status === 200 && head.body.length === 0 && ["content-length", "content-type", "etag", "accept-ranges", "last-modified"].every((h) => head.headers[h] === whole.headers[h]),
    describe(head),
  );
  const inm = await get(port, url, { headers: { "if-none-match": etag } });
  check("If-None-Match with the ETag is 304 without a body, with the ETag and Accept-Ranges", inm.status === 304 && inm.body.length === 0 && inm.headers.etag === etag && inm.headers["accept-ranges"] === "bytes", describe(inm));
  const inmOther = await get(port, url, { headers: { "if-none-match": '"other"' } });
  check("If-None-Match with another ETag is 200 with the file", inmOther.status === 200 && inmOther.body.equals(DATA), describe(inmOther));
  const cases = [
    ["the ETag", etag, 206],
    ["another ETag", '"0-0-0"', 200],
    ["the weak form of the ETag", `W/${etag}`, 200],
    ["the Last-Modified date", lm, 206],
    ["an earlier date", new Date(Date.parse(lm) - 60000).toUTCString(), 200],
    ["a later date", new Date(Date.parse(lm) + 60000).toUTCString(), 200],
    ["garbage", "yesterday", 200],
  ];
  for (const [what, value, want] of cases) {
    const r = await get(port, url, { headers: { range: "bytes=0-9", "if-range": value } });
    const ok = want === 206 ? r.status === 206 && r.body.equals(DATA.subarray(0, 10)) : r.status === 200 && r.body.equals(DATA);
    check(`If-Range with ${what} and Range: bytes=0-9 is ${want}${want === 200 ? " with the whole file" : " with the range"}`, ok, describe(r));
  }
}

async function refusalChecks(port) {
  const secret = (r) => r.body?.includes("hf_secret");
  for (const path of ["/models/m/.git/config", "/models/.cache/huggingface/token", "/models/m/%2egit/config", "/.hidden", "/models/m/.git/"]) {
    const r = await get(port, path);
    check(`GET ${path} is 404 (no path segment may start with ".")`, r.status === 404 && !secret(r), describe(r));
  }
  for (const link of ["passwd", "outside", "relative-outside"]) {
    const r = await get(port, `/models/m/${link}`);
    check(`a symlink in --models leading outside it (${link}) is 404`, r.status === 404 && !r.body.includes("root:") && !r.body.includes("outside the models"), describe(r));
  }
  const cfg = await get(port, "/models/hub/models--kyutai--tiny/snapshots/0123abc/config.json");
  check(
    "a Hugging Face cache's snapshots/REV/config.json -> ../../blobs/HASH is served, typed by its name (application/json)",
    cfg.status === 200 && cfg.body.toString() === CONFIG && cfg.headers["content-type"] === "application/json",
    describe(cfg),
  );
  const blobRange = await get(port, "/models/hub/models--kyutai--tiny/snapshots/0123abc/model.safetensors", { headers: { range: "bytes=100-199" } });
  check("Range through a Hugging Face cache link is 206 with the blob's bytes", blobRange.status === 206 && blobRange.body.equals(DATA.subarray(100, 200)), describe(blobRange));
  for (const h of ["attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example", "localhost.attacker.example", "[::2]", "10.0.0.1"]) {
    const r = await get(port, "/models/m/model.safetensors", { host: h });
    check(`Host: ${h} is 421 with a plain message (DNS rebinding)`, r.status === 421 && /text\/plain/.test(r.headers["content-type"]) && !r.body.equals(DATA), describe(r));
  }
  for (const h of ["localhost", "localhost:1234", "127.0.0.1", "127.8.9.10:80", "[::1]", "[::1]:8000", "LOCALHOST:8000"]) {
    const r = await get(port, "/models/m/model.safetensors", { host: h });
    check(`Host: ${h} (loopback) is 200`, r.status === 200 && r.body.equals(DATA), describe(r));
  }
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"]) {
    const r = await get(port, "/models/m/model.safetensors", { method });
    check(`${method} is 405 with Allow: GET, HEAD and not the file`, r.status === 405 && r.headers.allow === "GET, HEAD" && !r.body.equals(DATA), describe(r));
  }
  const paths = [
    ["/models/m/%zz", 400, "bad percent-encoding"],
    ["/models/m/%2e%2e/%2e%2e/outside.txt", 400, "encoded .."],
    ["/models/m/../../outside.txt", 400, "raw .."],
    ["/models/m/./model.safetensors", 400, "raw ."],
    ["/models/m%2fmodel.safetensors", 400, "encoded /"],
    ["/models/m/..%5c..%5coutside.txt", 400, "encoded backslash"],
    ["/models\\m\\model.safetensors", 400, "raw backslash"],
    ["/models/m/model.safetensors%00.png", 400, "NUL"],
    ["/models//m/model.safetensors", 400, "empty segment"],
    ["/models/m/model.safetensor%73", 200, "an encoded plain letter decodes"],
    ["/models/m/100%25%20real.txt", 200, "a file named with % and a space"],
    ["/models/m/model.safetensors?x=1#y", 200, "a query string is not part of the path"],
  ];
  for (const [path, want, what] of paths) {
    const r = await get(port, path);
    check(`GET ${path} is ${want} (${what})`, r.status === want && (want !== 200 || r.body.length > 0) && !r.body.includes("outside the models"), describe(r));
  }
  const fifo = await get(port, "/models/m/fifo", { timeout: 5000 });
  check("a FIFO in --models is 404 at once (never opened)", fifo.status === 404, describe(fifo));
  const s = await get(port, "/models/m/sock");
  check("a Unix socket in --models is 404", s.status === 404 || s.status === 500, describe(s));
  for (const [path, what] of [["/models/", "--models itself"], ["/models/m/", "a model directory"], ["/models/m", "a directory without /"], ["/pkg/", "a folder of the app"]]) {
    const r = await get(port, path);
    check(`GET ${path} is 404 (${what}: no listings)`, r.status === 404 && !/model\.safetensors|parle_bg/.test(r.body.toString()), describe(r));
  }
}

async function typeChecks(port) {
  const index = await get(port, "/");
  check("GET / is web/index.html as text/html", index.status === 200 && /^text\/html/.test(index.headers["content-type"]) && index.body.includes("<title>parle"), describe(index));
  const q = await get(port, "/?model=/models/m/&autoload");
  check("GET /?query is web/index.html too", q.status === 200 && q.body.equals(index.body), describe(q));
  for (const [f, type] of [["main.js", "text/javascript"], ["manifest.webmanifest", "application/manifest+json"], ["style.css", "text/css"], ["icon.svg", "image/svg+xml"], ["icon-192.png", "image/png"]]) {
    const r = await get(port, `/${f}`, { method: "HEAD" });
    check(`web/${f} is ${type}`, r.status === 200 && r.headers["content-type"]?.split(";")[0] === type, describe(r));
  }
  for (const [f, type] of Object.entries(TYPED)) {
    const r = await get(port, `/models/m/${f}`);
    check(`${f} is ${type}`, r.status === 200 && r.headers["content-type"]?.split(";")[0] === type && r.body.toString() === `${f}\n`, describe(r));
  }
}

async function headerChecks(port) {
  const responses = {
    "a file (200)": await get(port, "/models/m/model.safetensors"),
    "a range (206)": await get(port, "/models/m/model.safetensors", { headers: { range: "bytes=0-1" } }),
    "not modified (304)": await get(port, "/"),
    "a bad path (400)": await get(port, "/%zz"),
    "not found (404)": await get(port, "/nope.js"),
    "a method (405)": await get(port, "/", { method: "POST" }),
    "416": await get(port, "/models/m/model.safetensors", { headers: { range: "bytes=5000-" } }),
    "a foreign Host (421)": await get(port, "/", { host: "attacker.example" }),
  };
  responses["not modified (304)"] = await get(port, "/", { headers: { "if-none-match": responses["not modified (304)"].headers.etag } });
  for (const [what, r] of Object.entries(responses)) {
    const h = r.headers ?? {};
    const csp = h["content-security-policy"] ?? "";
    const ok =
      h["x-content-type-options"] === "nosniff" &&
      h["permissions-policy"] === "microphone=(self)" &&
      h["referrer-policy"] === "no-referrer" &&
      /script-src 'self' 'wasm-unsafe-eval'(;|$)/.test(csp) &&
      /connect-src 'self' https:(;|$)/.test(csp) &&
      /default-src 'self'/.test(csp) &&
      !/unsafe-inline|'unsafe-eval'|blob:|data:|\*/.test(csp);
    check(`${what}: nosniff, Permissions-Policy microphone=(self), Referrer-Policy no-referrer, a CSP of the app's own scripts + wasm`, ok, `${r.status}: ${csp}`);
  }
}

async function bigFileChecks(child) {
  const { port } = child;
  const url = "/models/big/model.safetensors";
  const t0 = performance.now();
  const head = await get(port, url, { method: "HEAD" });
  const ms = performance.now() - t0;
  check(`HEAD of a 3 GiB file answers from stat in well under a second (${ms.toFixed(0)} ms; at most 500)`, head.status === 200 && head.headers["content-length"] === String(BIG) && head.headers["accept-ranges"] === "bytes" && ms < 500, describe(head));
  for (const at of MARKS) {
    const r = await get(port, url, { headers: { range: `bytes=${at}-${at + 99}` } });
    const want = Buffer.alloc(100);
    want.write(`mark@${at}`);
    check(`Range at ${at} of the 3 GiB file returns its 100 bytes`, r.status === 206 && r.body.equals(want) && r.headers["content-range"] === `bytes ${at}-${at + 99}/${BIG}`, describe(r));
  }
  // Load: 320 Range reads of 256 KiB at pseudo-random offsets, 64 at a time, within 60 s.
  const before = openFiles(child.proc.pid);
  const TOTAL = 320;
  const PARALLEL = 64;
  const LEN = 256 * 1024;
  let next = 0;
  let good = 0;
  const bad = [];
  const tLoad = performance.now();
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next < TOTAL) {
        const i = next++;
        const start = Math.floor(((i * 2654435761) % 4096) / 4096 * (BIG - LEN));
        const r = await get(port, url, { headers: { range: `bytes=${start}-${start + LEN - 1}` }, timeout: 60000 });
        if (r.status === 206 && r.body.length === LEN && r.headers["content-range"] === `bytes ${start}-${start + LEN - 1}/${BIG}`) good++;
        else bad.push(`${start}: ${describe(r)}`);
      }
    }),
  );
  const loadS = (performance.now() - tLoad) / 1000;
  check(`${TOTAL} Range reads of 256 KiB, ${PARALLEL} at a time, all 206 with their bytes within 60 s (${loadS.toFixed(1)} s)`, good === TOTAL && loadS < 60, bad.slice(0, 3).join("; "));
  const after = await settleFds(child.proc.pid, before);
  check(`after the load the server holds no more descriptors than before (${before} → ${after})`, after <= before);

  // 200 downloads of the whole file dropped after their first chunk, 20 at a time.
  const beforeAbort = openFiles(child.proc.pid);
  const statuses = [];
  for (let k = 0; k < 200; k += 20) statuses.push(...(await Promise.all(Array.from({ length: 20 }, () => abortAfterFirstChunk(port, url)))));
  const afterAbort = await settleFds(child.proc.pid, beforeAbort);
  check(`200 downloads aborted mid-transfer: each had started (200) and no file stays open (${beforeAbort} → ${afterAbort} descriptors)`, statuses.every((s) => s === 200) && afterAbort <= beforeAbort, `statuses: ${[...new Set(statuses)].join(", ")}`);
  const alive = await get(port, "/models/m/model.safetensors");
  check("the server still answers after the load and the aborts", alive.status === 200 && alive.body.equals(DATA) && child.exit === null, describe(alive));
}

// With 64 descriptors for the whole process, 100 parallel downloads run out of them: the requests
// that cannot get a socket or a file fail (500 or a refused connection), the server lives on.
async function lowUlimitChecks() {
  const child = await serveChild(["--port", "0", "--models", models], { ulimit: 64 });
  try {
    const url = "/models/big/model.safetensors";
    // Hold 100 downloads open without reading them (each holds a socket and, once open, the file).
    const held = [];
    const outcomes = await Promise.all(
      Array.from(
        { length: 100 },
        () =>
          new Promise((ok) => {
            const req = request({ host: "127.0.0.1", port: child.port, path: url, agent: false, timeout: 10000 }, (res) => {
              held.push(req);
              res.pause();
              ok(res.statusCode);
            });
            req.on("timeout", () => req.destroy(new Error("timeout")));
            req.on("error", (e) => ok(e.code ?? e.message));
            req.end();
          }),
      ),
    );
    for (const r of held) r.destroy();
    const counts = {};
    for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1;
    const summary = Object.entries(counts).map(([k, v]) => `${k}: ${v}`).join(", ");
    check(
      "ulimit -n 64 and 100 parallel downloads: the limit is reached (not all are 200), every accepted request is answered (200 or 500), none hangs",
      (counts[200] ?? 0) < 100 && !counts.timeout && Object.keys(counts).every((k) => ["200", "500", "ECONNRESET", "EPIPE"].includes(k)),
      summary,
    );
    await sleep(500);
    let again = { error: "not tried" };
    for (let i = 0; i < 20 && again.status !== 200; i++) {
      again = await get(child.port, "/models/m/model.safetensors");
      if (again.status !== 200) await sleep(250);
    }
    check("with ulimit -n 64, after running out of descriptors the server lives and answers 200 again", child.exit === null && again.status === 200 && again.body.equals(DATA), `${describe(again)}; exit ${child.exit}; ${child.err.trim().split("\n").slice(-2).join(" | ")}`);
  } finally {
    child.stop();
  }
}

async function cliChecks() {
  for (const args of [["--port", "abc"], ["--port", "70000"], ["--port", "1.5"], ["--port", "-1"], ["--bogus"], ["--models"], ["extra"]]) {
    const r = runCli(args);
    check(`serve.mjs ${args.join(" ")} exits 2 with a usage message`, r.code === 2 && /usage: node scripts\/serve\.mjs/.test(r.err), `exit ${r.code}: ${r.err.split("\n")[0]}`);
  }
  const nodir = runCli(["--port", "0", "--models", join(tmp, "none")]);
  check("--models of a missing folder exits 2 naming it", nodir.code === 2 && nodir.err.includes("not a directory"), `exit ${nodir.code}: ${nodir.err.split("\n")[0]}`);
  const env = spawnSync(process.execPath, [SERVE], { encoding: "utf8", timeout: 15000, env: { ...process.env, PORT: "x" } });
  check("PORT=x exits 2 with a usage message", env.status === 2 && /PORT must be an integer/.test(env.stderr), env.stderr.split("\n")[0]);

  // --host 0.0.0.0: a warning about secure contexts and one usable URL per interface address.
  const child = await serveChild(["--port", "0", "--host", "0.0.0.0"]);
  try {
    const urls = [...child.out.matchAll(/parle is at (\S+)/g)].map((x) => x[1]);
    const v4 = Object.values(networkInterfaces())
      .flat()
      .filter((a) => a.family === "IPv4")
      .map((a) => a.address);
    check(
      "--host 0.0.0.0 warns that microphones and WebGPU need a secure context (https or localhost)",
      /warning: listening on 0\.0\.0\.0/.test(child.err) && /secure context/.test(child.err) && /https/.test(child.err) && /localhost/.test(child.err),
      child.err.trim().split("\n")[0],
    );
    check(
      "--host 0.0.0.0 prints one URL per IPv4 interface address, none with 0.0.0.0 or :::",
      urls.length === v4.length && v4.every((a) => urls.includes(`http://${a}:${child.port}/`)) && !child.out.includes("0.0.0.0") && !child.out.includes(":::"),
      urls.join(" "),
    );
    const other = v4.find((a) => !a.startsWith("127."));
    if (other) {
      // Ask 127.0.0.1 under the interface's name: a printed URL's Host is answered.
      const r = await get(child.port, "/", { host: `${other}:${child.port}` });
      check(`--host 0.0.0.0 answers Host: ${other} (a printed URL)`, r.status === 200, describe(r));
    }
    const foreign = await get(child.port, "/", { host: "attacker.example" });
    check("--host 0.0.0.0 still refuses Host: attacker.example", foreign.status === 421, describe(foreign));
  } finally {
    child.stop();
  }
  const named = await serveChild(["--port", "0", "--host", "127.0.0.1"]);
  try {
    check("--host 127.0.0.1 prints no warning", !/warning: listening/.test(named.err), named.err.trim());
  } finally {
    named.stop();
  }
}

// In this process: onRequest sees requests first and may answer; read errors become a 500 (before
// the headers) or a cut connection (after), never a crash.
async function inProcessChecks() {
  const web = join(tmp, "web");
  mkdirSync(join(web, "sub"), { recursive: true });
  writeFileSync(join(web, "index.html"), "<!doctype html><title>t</title>");
  writeFileSync(join(web, "sub", "f.txt"), "x".repeat(200000));
  const seen = [];
  const server = await startServer({
    web,
    mounts: { "/m/": m },
    onRequest(req, res) {
      seen.push(req.url);
      if (req.url === "/__hook") {
        res.writeHead(200, { "content-type": "text/plain" }).end("hooked");
        return true;
      }
      return false;
    },
  });
  const p = server.address().port;
  try {
    const hook = await get(p, "/__hook");
    check("onRequest sees each request and can answer it (with the security headers)", hook.body?.toString() === "hooked" && hook.headers["x-content-type-options"] === "nosniff" && seen.includes("/__hook"), describe(hook));
    const mounted = await get(p, "/m/model.safetensors");
    check("startServer's mounts serve a folder at a prefix", mounted.status === 200 && mounted.body.equals(DATA), describe(mounted));
    const sub = await get(p, "/sub/");
    check("startServer's web folder: a subdirectory is 404", sub.status === 404, describe(sub));

    const real = fs.createReadStream;
    try {
      // The file cannot be read at all: 500 with a plain message.
      fs.createReadStream = () => {
        const s = new Readable({ read() {} });
        process.nextTick(() => s.destroy(Object.assign(new Error("injected EIO"), { code: "EIO" })));
        return s;
      };
      const r500 = await get(p, "/sub/f.txt");
      check("a read error before any byte is sent is 500 with a plain message", r500.status === 500 && /text\/plain/.test(r500.headers["content-type"]), describe(r500));
      // The read fails after the first chunk went out: the connection is cut (the client sees an error, not a whole file).
      fs.createReadStream = (path, opts) => {
        const s = real(path, opts);
        let n = 0;
        const t = new Readable({ read() {} });
        s.on("data", (d) => {
          if (n++ === 0) t.push(d);
          else {
            s.destroy();
            t.destroy(Object.assign(new Error("injected EIO"), { code: "EIO" }));
          }
        });
        t._destroy = (e, cb) => {
          s.destroy();
          cb(e);
        };
        return t;
      };
      const cut = await get(p, "/sub/f.txt");
      check("a read error after the headers cuts the connection", Boolean(cut.error) || (cut.body && cut.body.length < 200000), describe(cut));
    } finally {
      fs.createReadStream = real;
    }
    const after = await get(p, "/sub/f.txt");
    check("the in-process server still serves after the read errors", after.status === 200 && after.body.length === 200000, describe(after));
  } finally {
    await new Promise((ok) => server.close(ok));
  }
}

// ---- main ----------------------------------------------------------------------------------------

async function main() {
  const t0 = Date.now();
  let child;
  try {
    child = await serveChild(["--port", "0", "--models", models]);
    await rangeChecks(child.port);
    await validatorChecks(child.port);
    await refusalChecks(child.port);
    await typeChecks(child.port);
    await headerChecks(child.port);
    await bigFileChecks(child);
    check("the server never exited and reported no internal error", child.exit === null && !/internal error|server error/.test(child.err), `exit ${child.exit}; ${child.err.trim()}`);
  } catch (e) {
    check("the server checks ran to the end", false, e.stack ?? String(e));
  } finally {
    child?.stop();
  }
  for (const part of [lowUlimitChecks, cliChecks, inProcessChecks]) {
    try {
      await part();
    } catch (e) {
      check(`${part.name} ran to the end`, false, e.stack ?? String(e));
    }
  }
  sock.close();
  rmSync(tmp, { recursive: true, force: true });
  console.log(`(${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  console.log(`server: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main();
