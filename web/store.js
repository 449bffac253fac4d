// Model files for the engine worker: downloads into the Origin Private File System (OPFS) with
// progress and resumption, and readers that hand the engine one byte range at a time.
//
// A model is a directory URL laid out like a Kyutai Hugging Face repo. Its files go to
// OPFS:/parle-models/<key>/ with a manifest.json saying which file plays which part, each file's
// size and ETag, and which files are complete. A model whose manifest says every file is complete
// opens with no network request at all (offline, second visit). A partial file is resumed with an
// HTTP Range request (If-Range: its ETag) on the next try.
//
// Where OPFS sync access handles are missing, files go to the Cache Storage instead (no
// resumption there) and are read back through Blob slices.
//
// Every reader is `{ name, size, readInto(dest: Uint8Array, at: number) → bytesRead }`, the shape
// the wasm side expects (crate/web/source.rs), and synchronous: this module only runs in a worker.

import { formatBytes } from "./format.js";

// Published file names, in the order they are looked for (crate/session/dir.rs and the weights
// readers use the same lists).
export const LM_NAMES = ["model.safetensors", "model.q8.safetensors", "model.q4.safetensors", "model.q8.gguf"];
export const MIMI_NAMES = ["tokenizer-e351c8d8-checkpoint125.safetensors", "mimi.safetensors"];
export const TOKENIZER_NAMES = ["tokenizer_spm_32k_3.model", "tokenizer.model"];

const ROOT_DIR = "parle-models";
const RETRIES = 3;

export class StoreError extends Error {
  constructor(code, message, file) {
    super(message);
    this.code = code;
    if (file) this.file = file;
  }
}

export function opfsAvailable() {
  return typeof navigator.storage?.getDirectory === "function" && typeof FileSystemSyncAccessHandle !== "undefined";
}


// A directory name for a model URL: readable and collision-free (a hash of the whole URL).
function keyOf(url) {
  let h = 0x811c9dc5;
  for (let i = 0; i < url.length; i++) h = Math.imul(h ^ url.charCodeAt(i), 0x01000193) >>> 0;
  const tail = url.replace(/^[a-z]+:\/\//, "").replace(/[^A-Za-z0-9._-]+/g, "_").slice(-80);
  return `${tail}-${h.toString(16).padStart(8, "0")}`;
}

// ---- readers -------------------------------------------------------------------------------

// A reader over an open OPFS sync access handle.
function handleReader(name, handle, onRead) {
  const size = handle.getSize();
  return {
    name,
    size,
    readInto(dest, at) {
      const n = handle.read(dest, { at });
      onRead?.(n);
      return n;
    },
  };
}

// A reader over a Blob or File (FileReaderSync exists in workers only).
export function blobReader(name, blob, onRead) {
  const frs = new FileReaderSync();
  return {
    name,
    size: blob.size,
    readInto(dest, at) {
      const buf = frs.readAsArrayBuffer(blob.slice(at, at + dest.length));
      dest.set(new Uint8Array(buf));
      onRead?.(buf.byteLength);
      return buf.byteLength;
    },
  };
}

// ---- OPFS helpers ------------------------------------------------------------------------------

async function modelsRoot() {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(ROOT_DIR, { create: true });
}

async function readJson(dir, name) {
  try {
    const f = await (await dir.getFileHandle(name)).getFile();
    return JSON.parse(await f.text());
  } catch {
    return null;
  }
}

async function writeJson(dir, name, value) {
  const h = await (await dir.getFileHandle(name, { create: true })).createSyncAccessHandle();
  try {
    const bytes = new TextEncoder().encode(JSON.stringify(value, null, 1));
    h.truncate(0);
    h.write(bytes, { at: 0 });
    h.flush();
  } finally {
    h.close();
  }
}

async function fileSize(dir, name) {
  try {
    return (await (await dir.getFileHandle(name)).getFile()).size;
  } catch {
    return 0;
  }
}

// ---- the network -------------------------------------------------------------------------------

function httpError(file, url, res) {
  const hint =
    res.status === 404
      ? "the file is not there: check the model URL"
      : res.status === 401 || res.status === 403
        ? "access denied: the repository may be gated or private"
        : "the server refused the request";
  return new StoreError("download", `${file}: HTTP ${res.status} ${res.statusText} from ${url} (${hint})`, file);
}

async function netFetch(file, url, init) {
  try {
    return await fetch(url, { cache: "no-store", ...init });
  } catch (e) {
    throw new StoreError(
      "download",
      `${file}: the request to ${url} failed (${e?.message ?? e}): you may be offline, or the server does not allow this page to read it (CORS)`,
      file,
    );
  }
}

function contentLength(res) {
  const v = res.headers.get("content-length") ?? res.headers.get("x-linked-size");
  const n = v === null ? NaN : Number(v);
  return Number.isFinite(n) ? n : null;
}

// HEAD: does the file exist, and how big is it?
async function probe(base, name) {
  const url = new URL(name, base).href;
  const res = await netFetch(name, url, { method: "HEAD" });
  if (res.status === 404 || res.status === 410) return null;
  if (!res.ok) throw httpError(name, url, res);
  return { name, url, size: contentLength(res), etag: res.headers.get("etag") };
}

async function firstOf(base, names) {
  for (const n of names) {
    const p = await probe(base, n);
    if (p) return p;
  }
  return null;
}

async function named(base, cfg, key) {
  const v = cfg?.[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new StoreError("config", `config.json: "${key}" must be a file name, got ${JSON.stringify(v)}`, "config.json");
  const name = v.split("/").pop();
  const p = await probe(base, name);
  if (!p) throw new StoreError("download", `${name}: named by "${key}" in config.json but not found at ${new URL(name, base).href}`, name);
  return p;
}

// Which file plays which part (the rules of crate/session/dir.rs, over HTTP).
async function resolveRemote(base, mimiOnly) {
  const cfgUrl = new URL("config.json", base).href;
  const res = await netFetch("config.json", cfgUrl);
  let config = null;
  if (res.ok) config = await res.text();
  else if (res.status !== 404 && res.status !== 410) throw httpError("config.json", cfgUrl, res);
  let cfg = null;
  if (config !== null) {
    try {
      cfg = JSON.parse(config);
    } catch (e) {
      throw new StoreError("config", `config.json at ${cfgUrl} is not valid JSON (${e.message})`, "config.json");
    }
    if (typeof cfg !== "object" || cfg === null || Array.isArray(cfg)) {
      throw new StoreError("config", `config.json at ${cfgUrl} is not a JSON object`, "config.json");
    }
  }
  let lm = await named(base, cfg, "moshi_name");
  if (lm === undefined) lm = await firstOf(base, LM_NAMES);
  let mimi = await named(base, cfg, "mimi_name");
  if (mimi === undefined) mimi = await firstOf(base, MIMI_NAMES);
  let tokenizer = await named(base, cfg, "tokenizer_name");
  if (tokenizer === undefined) tokenizer = await firstOf(base, TOKENIZER_NAMES);
  // Only one weight file: Mimi's own directory (the loopback).
  if (!mimi && lm) [mimi, lm] = [lm, null];
  if (!mimi) {
    throw new StoreError(
      "download",
      `${base} holds no model weights (looked for ${[...LM_NAMES, ...MIMI_NAMES].join(", ")})`,
      "model.safetensors",
    );
  }
  if (mimiOnly) lm = null;
  if (!lm) tokenizer = null;
  const parts = { mimi, lm, tokenizer };
  return { config, parts };
}

// ---- downloading ------------------------------------------------------------------------------

// Bytes per second over the last few seconds of (time, bytes) samples.
function rateWindow(windowMs = 3000) {
  const samples = [];
  return (now, loaded) => {
    samples.push([now, loaded]);
    while (samples.length > 2 && now - samples[0][0] > windowMs) samples.shift();
    const [t0, b0] = samples[0];
    return now > t0 ? ((loaded - b0) * 1000) / (now - t0) : 0;
  };
}

// Progress of one file: bytes, rate over the last few seconds, time left.
function progressMeter(file, total, onProgress) {
  const rateOf = rateWindow();
  let last = 0;
  return (loaded, force = false) => {
    const now = performance.now();
    if (!force && now - last < 100) return;
    last = now;
    const rate = rateOf(now, loaded);
    const eta = rate > 0 && total ? (total - loaded) / rate : null;
    onProgress?.({ phase: "download", file, loaded, total, rate, eta });
  };
}

// Progress over all of a model's files: each download event gains `overall: { loaded, total,
// rate, eta }`, counting the files already stored (`stored(part)`) as loaded. `total` is null
// when a server did not say a file's size.
function overallProgress(parts, stored, onProgress) {
  const sizeKnown = parts.every((p) => p.size != null);
  const total = sizeKnown ? parts.reduce((s, p) => s + p.size, 0) : null;
  const have = new Map(parts.map((p) => [p.name, stored(p) ? p.size ?? 0 : 0]));
  const rateOf = rateWindow();
  return (e) => {
    if (e.phase === "download") {
      have.set(e.file, e.loaded);
      let loaded = 0;
      for (const n of have.values()) loaded += n;
      const rate = rateOf(performance.now(), loaded);
      const eta = rate > 0 && total ? Math.max(0, total - loaded) / rate : null;
      e = { ...e, overall: { loaded, total, rate, eta } };
    }
    onProgress?.(e);
  };
}

// Download `part` into `dir`, resuming a partial file. The manifest records its ETag and size
// before the first byte is written, so a later visit knows whether a Range request may continue.
async function download(dir, manifest, part, onProgress) {
  const { name, url } = part;
  const handle = await (await dir.getFileHandle(name, { create: true })).createSyncAccessHandle();
  try {
    let have = handle.getSize();
    const meter = progressMeter(name, part.size, onProgress);
    for (let attempt = 0; ; attempt++) {
      const prev = manifest.sizes[name];
      const headers = {};
      if (have > 0 && prev && have < prev.size) {
        headers.Range = `bytes=${have}-`;
        if (prev.etag) headers["If-Range"] = prev.etag;
      } else if (have > 0) {
        handle.truncate(0);
        have = 0;
      }
      const res = await netFetch(name, url, { headers });
      let total;
      if (res.status === 206) {
        const m = /bytes (\d+)-\d+\/(\d+)/.exec(res.headers.get("content-range") ?? "");
        if (!m || Number(m[1]) !== have) {
          // Not the range asked for: start again from the beginning.
          await res.body?.cancel();
          handle.truncate(0);
          have = 0;
          manifest.sizes[name] = null;
          continue;
        }
        total = Number(m[2]);
      } else if (res.ok) {
        if (have > 0) handle.truncate(0);
        have = 0;
        total = contentLength(res);
      } else if (res.status === 416 && prev && have === prev.size) {
        total = have;
      } else {
        throw httpError(name, url, res);
      }
      manifest.sizes[name] = { size: total, etag: res.headers.get("etag") };
      manifest.complete[name] = false;
      await writeJson(dir, "manifest.json", manifest);
      meter(have, true);
      try {
        if (res.body && have !== total) {
          const reader = res.body.getReader();
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            handle.write(value, { at: have });
            have += value.length;
            meter(have);
          }
        }
        handle.flush();
        if (total !== null && have !== total) throw new Error(`the connection closed after ${have} of ${total} bytes`);
        meter(have, true);
        manifest.sizes[name] = { size: have, etag: res.headers.get("etag") };
        manifest.complete[name] = true;
        await writeJson(dir, "manifest.json", manifest);
        return;
      } catch (e) {
        handle.flush();
        if (e instanceof StoreError && e.code === "quota") throw e;
        if (e?.name === "QuotaExceededError") {
          throw new StoreError("quota", `${name}: the browser's storage for this site is full after ${formatBytes(have)} (${e.message}). Delete cached models or free disk space.`, name);
        }
        if (attempt >= RETRIES) {
          throw new StoreError(
            "download",
            `${name}: the download failed after ${formatBytes(have)} of ${formatBytes(total)} (${e?.message ?? e}). Load the model again to resume where it stopped.`,
            name,
          );
        }
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
      }
    }
  } finally {
    handle.close();
  }
}

// Refuse a download that will not fit, before it starts.
async function checkQuota(needed) {
  if (!navigator.storage?.estimate || needed <= 0) return;
  const { quota, usage } = await navigator.storage.estimate();
  if (quota === undefined) return;
  const free = quota - (usage ?? 0);
  if (needed > free) {
    throw new StoreError(
      "quota",
      `This model needs ${formatBytes(needed)} more storage, but the browser lets this site store only ${formatBytes(free)} more ` +
        `(quota ${formatBytes(quota)}, ${formatBytes(usage ?? 0)} used). Free disk space, delete cached models, or pick a smaller model.`,
    );
  }
}

// ---- opening a model ----------------------------------------------------------------------------

// Open the model at `base` (an absolute directory URL), downloading what OPFS does not hold yet.
// Returns { config, files: { mimi, lm, tokenizer } (readers), close(), fromCache, bytes }.
// `mimiOnly`: only the codec (the loopback), even from a Moshi repository.
export async function openUrlModel(base, opts = {}) {
  try {
    return await openUrlModelInner(base, opts);
  } catch (e) {
    if (e?.name === "QuotaExceededError") {
      throw new StoreError(
        "quota",
        `The browser's storage for this site is full (${e.message}). Free disk space, delete downloaded models, or pick a smaller model.`,
      );
    }
    throw e;
  }
}

async function openUrlModelInner(base, { onProgress, storage, mimiOnly = false }) {
  if (storage === "cache" || !opfsAvailable()) return openCachedModel(base, { onProgress, mimiOnly });
  const root = await modelsRoot();
  const dir = await root.getDirectoryHandle(keyOf(mimiOnly ? `${base}#mimi` : base), { create: true });
  let manifest = await readJson(dir, "manifest.json");
  const complete = (m) =>
    m && Object.values(m.parts).every((p) => !p || (m.complete[p.name] && m.sizes[p.name]));
  // Trust the manifest only if every file is there at its recorded size (storage can be evicted).
  let intact = complete(manifest);
  for (const p of intact ? Object.values(manifest.parts) : []) {
    if (p && (await fileSize(dir, p.name)) !== manifest.sizes[p.name].size) {
      intact = false;
      manifest.complete[p.name] = false;
    }
  }
  let fromCache = true;
  if (!intact) {
    fromCache = false;
    const { config, parts } = await resolveRemote(base, mimiOnly);
    const old = manifest;
    manifest = { url: base, config, parts, sizes: {}, complete: {}, saved: Date.now() };
    // Keep what a previous try knew about partial files, so that they resume.
    for (const p of Object.values(parts)) {
      if (!p) continue;
      const before = old?.sizes?.[p.name];
      if (before && (!p.etag || !before.etag || p.etag === before.etag)) manifest.sizes[p.name] = before;
      if (old?.complete?.[p.name] && before && before.size === p.size) manifest.complete[p.name] = true;
    }
    const todo = Object.values(parts).filter((p) => p && !manifest.complete[p.name]);
    let needed = 0;
    for (const p of todo) needed += Math.max(0, (p.size ?? 0) - (await fileSize(dir, p.name)));
    await checkQuota(needed);
    await writeJson(dir, "manifest.json", manifest);
    const overall = overallProgress(Object.values(parts).filter(Boolean), (p) => manifest.complete[p.name], onProgress);
    for (const p of todo) await download(dir, manifest, p, overall);
  }
  const opened = [];
  const files = {};
  try {
    for (const [role, p] of Object.entries(manifest.parts)) {
      if (!p) {
        files[role] = null;
        continue;
      }
      const h = await (await dir.getFileHandle(p.name)).createSyncAccessHandle();
      opened.push(h);
      files[role] = handleReader(p.name, h, gpuMeter(p.name, h.getSize(), onProgress));
    }
  } catch (e) {
    opened.forEach((h) => h.close());
    throw new StoreError("storage", `the cached model could not be opened (${e?.message ?? e}); delete it and load it again`);
  }
  return {
    config: manifest.config,
    files,
    fromCache,
    bytes: Object.values(files).reduce((s, f) => s + (f?.size ?? 0), 0),
    close: () => opened.forEach((h) => h.close()),
  };
}

// Progress of the upload to the GPU (bytes of a file read by the engine so far).
function gpuMeter(file, total, onProgress) {
  let loaded = 0;
  let last = 0;
  return (n) => {
    loaded += n;
    const now = performance.now();
    if (now - last > 100 || loaded >= total) {
      last = now;
      onProgress?.({ phase: "gpu", file, loaded: Math.min(loaded, total), total });
    }
  };
}

// The Cache Storage fallback: the whole file is one cached response, read back as a Blob.
async function openCachedModel(base, { onProgress, mimiOnly }) {
  const cache = await caches.open("parle-models-v1");
  const manifestUrl = new URL(mimiOnly ? "parle-manifest-mimi.json" : "parle-manifest.json", base).href;
  let manifest = null;
  const hit = await cache.match(manifestUrl);
  if (hit) manifest = await hit.json();
  let fromCache = !!manifest;
  if (!manifest) {
    const { config, parts } = await resolveRemote(base, mimiOnly);
    manifest = { url: base, config, parts };
    let needed = 0;
    for (const p of Object.values(parts)) if (p && !(await cache.match(p.url))) needed += p.size ?? 0;
    await checkQuota(needed);
    const cached = new Set();
    for (const p of Object.values(parts)) if (p && (await cache.match(p.url))) cached.add(p.name);
    const overall = overallProgress(Object.values(parts).filter(Boolean), (p) => cached.has(p.name), onProgress);
    for (const p of Object.values(parts)) {
      if (!p || cached.has(p.name)) continue;
      const res = await netFetch(p.name, p.url);
      if (!res.ok) throw httpError(p.name, p.url, res);
      const total = contentLength(res);
      const meter = progressMeter(p.name, total, overall);
      let loaded = 0;
      const counted = res.body.pipeThrough(
        new TransformStream({
          transform(chunk, ctl) {
            loaded += chunk.length;
            meter(loaded);
            ctl.enqueue(chunk);
          },
        }),
      );
      try {
        await cache.put(p.url, new Response(counted, { headers: res.headers }));
      } catch (e) {
        await cache.delete(p.url);
        const code = e?.name === "QuotaExceededError" ? "quota" : "download";
        throw new StoreError(code, `${p.name}: the download failed after ${formatBytes(loaded)} (${e?.message ?? e})`, p.name);
      }
      meter(loaded, true);
    }
    await cache.put(manifestUrl, new Response(JSON.stringify(manifest), { headers: { "content-type": "application/json" } }));
  }
  const files = {};
  for (const [role, p] of Object.entries(manifest.parts)) {
    if (!p) {
      files[role] = null;
      continue;
    }
    const res = await cache.match(p.url);
    if (!res) throw new StoreError("storage", `${p.name}: missing from the cache; load the model again`, p.name);
    const blob = await res.blob();
    files[role] = blobReader(p.name, blob, gpuMeter(p.name, blob.size, onProgress));
  }
  return {
    config: manifest.config,
    files,
    fromCache,
    bytes: Object.values(files).reduce((s, f) => s + (f?.size ?? 0), 0),
    close() {},
  };
}

// Local files the user picked (a folder through the file input, or File System Access): the
// same part rules by name; nothing is copied or uploaded.
export async function openLocalModel(entries, { onProgress, mimiOnly = false } = {}) {
  // entries: [{ name, file: File }]
  const byName = new Map(entries.map((e) => [e.name.split("/").pop(), e.file]));
  let config = null;
  if (byName.has("config.json")) config = await byName.get("config.json").text();
  let cfg = null;
  if (config !== null) {
    try {
      cfg = JSON.parse(config);
    } catch (e) {
      throw new StoreError("config", `config.json is not valid JSON (${e.message})`, "config.json");
    }
  }
  const pick = (key, names) => {
    const v = cfg?.[key];
    if (typeof v === "string") {
      const n = v.split("/").pop();
      if (!byName.has(n)) throw new StoreError("download", `${n}: named by "${key}" in config.json but not among the files picked`, n);
      return n;
    }
    return names.find((n) => byName.has(n)) ?? null;
  };
  let lm = pick("moshi_name", LM_NAMES);
  let mimi = pick("mimi_name", MIMI_NAMES);
  let tokenizer = pick("tokenizer_name", TOKENIZER_NAMES);
  if (!mimi && lm) [mimi, lm] = [lm, null];
  if (mimiOnly) lm = null;
  if (!mimi) {
    throw new StoreError(
      "download",
      `the files picked hold no model weights (looked for ${[...LM_NAMES, ...MIMI_NAMES].join(", ")}; got ${[...byName.keys()].join(", ") || "nothing"})`,
    );
  }
  if (!lm) tokenizer = null;
  const reader = (n) => (n ? blobReader(n, byName.get(n), gpuMeter(n, byName.get(n).size, onProgress)) : null);
  const files = { mimi: reader(mimi), lm: reader(lm), tokenizer: reader(tokenizer) };
  return {
    config,
    files,
    fromCache: true,
    bytes: Object.values(files).reduce((s, f) => s + (f?.size ?? 0), 0),
    close() {},
  };
}

// What loading `base` would take, asked of the server before any download (config.json and a
// HEAD per file): { config (text or null), files: [{ role, name, size, stored }] } where `size`
// is null when the server does not say it and `stored` is the bytes already in OPFS.
export async function inspectUrlModel(base, { mimiOnly = false } = {}) {
  const { config, parts } = await resolveRemote(base, mimiOnly);
  let dir = null;
  if (opfsAvailable()) {
    try {
      dir = await (await modelsRoot()).getDirectoryHandle(keyOf(mimiOnly ? `${base}#mimi` : base));
    } catch {
      dir = null; // nothing stored for this model yet
    }
  }
  const manifest = dir ? await readJson(dir, "manifest.json") : null;
  const files = [];
  for (const [role, p] of Object.entries(parts)) {
    if (!p) continue;
    const have = dir ? await fileSize(dir, p.name) : 0;
    const stored = manifest?.complete?.[p.name] ? have : Math.min(have, p.size ?? 0);
    files.push({ role, name: p.name, size: p.size, stored });
  }
  return { config, files };
}

// Models held in OPFS: [{ url, bytes, complete }].
export async function listCached() {
  const out = [];
  if (!opfsAvailable()) return out;
  const root = await modelsRoot();
  for await (const [key, h] of root.entries()) {
    if (h.kind !== "directory") continue;
    const m = await readJson(h, "manifest.json");
    let bytes = 0;
    for await (const [n, f] of h.entries()) if (f.kind === "file" && n !== "manifest.json") bytes += (await f.getFile()).size;
    const complete = !!m && Object.values(m.parts).every((p) => !p || m.complete[p.name]);
    out.push({ url: m?.url ?? key, key, bytes, complete });
  }
  return out;
}

// Forget one model (by URL), or every model.
export async function deleteCached(url) {
  if (opfsAvailable()) {
    const root = await navigator.storage.getDirectory();
    if (url) {
      const models = await modelsRoot();
      await models.removeEntry(keyOf(url), { recursive: true }).catch(() => {});
      await models.removeEntry(keyOf(`${url}#mimi`), { recursive: true }).catch(() => {});
    } else {
      await root.removeEntry(ROOT_DIR, { recursive: true }).catch(() => {});
    }
  }
  if (typeof caches !== "undefined") {
    if (url) {
      const cache = await caches.open("parle-models-v1");
      for (const req of await cache.keys()) if (req.url.startsWith(url)) await cache.delete(req);
    } else {
      await caches.delete("parle-models-v1");
    }
  }
}
