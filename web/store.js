// Model files for the engine worker: downloads into the Origin Private File System (OPFS) with
// progress and resumption, and readers that hand the engine one byte range at a time.
//
// A model is a directory URL laid out like a Kyutai Hugging Face repo. Its files go to
// OPFS:/parle-models/<key>/, where <key> is a SHA-256 of the model URL (a readable tail of the URL
// in front), with a manifest.json recording the URL it was made for, which file plays which part,
// and per file its size, validator (ETag / Last-Modified), SHA-256 when the host publishes one,
// what was verified ("sha256" or "size") and whether it is complete. A manifest made for another
// URL, or by an older version of parle, is never used: that store starts afresh. A model whose
// manifest says every file is complete (and whose files have their recorded sizes) opens with no
// network request at all (offline, second visit).
//
// Downloads are right or fail loudly:
// - a partial file is resumed with a Range request only while its validator still matches what
//   the server says (HEAD), and the 206's own validator and Content-Range total must match what
//   was stored, else the file starts again from byte 0;
// - a body is cut off, and the file refused, as soon as it exceeds its announced size (HEAD, or
//   the response's Content-Length / Content-Range); a file whose size nobody announces is refused
//   (so the quota check before the download always covers it);
// - where the server publishes the file's SHA-256 (X-Linked-Etag, or a strong ETag of 64 hex
//   digits from the server asked, not from a CDN it redirects to: see publishedSha256), the bytes
//   are hashed as they stream in (a resumed download first hashes the prefix already stored,
//   read back from OPFS once) and compared before the file counts as complete; a mismatch
//   downloads the file once more from 0, then fails with code "integrity" naming the file.
// Which file plays which part is not decided here: the wasm package's resolver (the rules of
// `parle`'s native loader, crate/weights/resolve.rs) says what to look for (`lookups`) and, given
// the names found, which is the LM, Mimi and the tokenizer and why (`resolve`), for remote
// repositories and local folders alike; it also rejects a config.json parle cannot run (a bad
// key, a file name that is not a plain name of the directory) before any file is requested. The
// worker passes it to the openers as `resolver`.
//
// Where OPFS sync access handles are missing, files go to the Cache Storage instead (no
// resumption there; the same size and hash checks) and are read back through Blob slices.
//
// Every reader is `{ name, size, readInto(dest: Uint8Array, at: number) → bytesRead }`, the shape
// the wasm side expects (crate/web/source.rs), and synchronous: this module only runs in a worker.
// Hashing needs the wasm package's `Sha256`: the worker passes `newHasher` to the openers.

import { formatBytes } from "./format.js";

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


// The version of the manifest this file writes; stores without it are from older versions.
const STORE_VERSION = 2;
const MANIFEST = "manifest.json";

// Names the store writes itself (the Cache Storage fallback's manifests, cached under the model's
// URL; the resolver refuses them, and OPFS's manifest.json, as model file names).
const CACHE_MANIFESTS = ["parle-manifest.json", "parle-manifest-mimi.json"];

// Ask the resolver (`fn`), turning its errors into StoreErrors: `config` for config.json, a
// missing file as a `download` error naming `where` (the model URL, or the files picked).
function asked(fn, where) {
  try {
    return fn();
  } catch (e) {
    const code = e?.code === "config" ? "config" : e?.code === "weights" ? "download" : (e?.code ?? "config");
    const message = String(e?.message ?? e);
    throw new StoreError(code, code === "download" ? `${where}: ${message}` : message, code === "config" ? "config.json" : undefined);
  }
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The OPFS directory name of a model URL: a readable tail of the URL, then the SHA-256 of the
// whole URL (`#mimi` appended for the codec-only store of a Moshi repository).
export async function storeKey(base, mimiOnly = false) {
  const url = mimiOnly ? `${base}#mimi` : base;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(url));
  const tail = url.replace(/^[a-z]+:\/\//, "").replace(/[^A-Za-z0-9._-]+/g, "_").slice(-40);
  return `${tail}-${hex(new Uint8Array(digest))}`;
}

// The directory name older versions used (FNV-1a-32 and the URL's last 80 characters: two URLs
// could share it). Only to find and delete their stores; never to open one.
function legacyKeyOf(url) {
  let h = 0x811c9dc5;
  for (let i = 0; i < url.length; i++) h = Math.imul(h ^ url.charCodeAt(i), 0x01000193) >>> 0;
  const tail = url.replace(/^[a-z]+:\/\//, "").replace(/[^A-Za-z0-9._-]+/g, "_").slice(-80);
  return `${tail}-${h.toString(16).padStart(8, "0")}`;
}

// A manifest this version wrote for exactly this URL (and mode).
function ownManifest(m, base, mimiOnly) {
  return !!m && m.version === STORE_VERSION && m.url === base && !!m.mimiOnly === !!mimiOnly && !!m.files && !!m.parts;
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
  return Number.isFinite(n) && n >= 0 ? n : null;
}

// The SHA-256 a response publishes for its content, else null: Hugging Face's X-Linked-Etag, or a
// strong ETag, when either is exactly 64 hex digits. Only from the server asked, not after a
// redirect: the ETag of a CDN that a `resolve` URL redirects to is its own (for Hugging Face's
// Xet storage also 64 hex digits, but not the file's SHA-256), and a browser never sees the
// redirect's own headers (where X-Linked-Etag is).
export function publishedSha256(res) {
  for (const h of res.redirected ? ["x-linked-etag"] : ["x-linked-etag", "etag"]) {
    const m = /^"?([0-9a-fA-F]{64})"?$/.exec(res.headers.get(h)?.trim() ?? "");
    if (m) return m[1].toLowerCase();
  }
  return null;
}

// What identifies one version of a file on the server.
function validatorOf(res) {
  return { etag: res.headers.get("etag"), lastModified: res.headers.get("last-modified") };
}

// Does `res` describe the version recorded in `rec`? Every validator both carry must be equal,
// and at least one must be carried by both.
function sameVersion(rec, v) {
  let compared = 0;
  for (const k of ["etag", "lastModified"]) {
    if (rec[k] && v[k]) {
      if (rec[k] !== v[k]) return false;
      compared++;
    }
  }
  return compared > 0;
}

// The validator to send in If-Range: a strong ETag, else the date (a weak ETag may not be used).
function ifRange(rec) {
  if (rec.etag && !rec.etag.startsWith("W/")) return rec.etag;
  return rec.lastModified ?? null;
}

// HEAD: does the file exist, how big is it, which version is it, and its SHA-256 if published?
async function probe(base, name) {
  const url = new URL(name, base).href;
  const res = await netFetch(name, url, { method: "HEAD" });
  if (res.status === 404 || res.status === 410) return null;
  if (!res.ok) throw httpError(name, url, res);
  return { name, url, size: contentLength(res), ...validatorOf(res), sha256: publishedSha256(res) };
}

// Which file plays which part: config.json, then a HEAD per name the resolver asks for (per part,
// until one is there), then the resolver's verdict over the names found.
async function resolveRemote(base, mimiOnly, resolver) {
  const cfgUrl = new URL("config.json", base).href;
  const res = await netFetch("config.json", cfgUrl);
  let config = null;
  if (res.ok) config = await res.text();
  else if (res.status !== 404 && res.status !== 410) throw httpError("config.json", cfgUrl, res);
  const found = new Map();
  let lm = false;
  for (const l of asked(() => resolver.lookups(config), base)) {
    // The tokenizer only matters beside an LM.
    if (l.role === "tokenizer" && (mimiOnly || !lm)) continue;
    for (const n of l.names) {
      const p = found.get(n) ?? (await probe(base, n));
      if (p) {
        found.set(n, p);
        if (l.role === "lm") lm = true;
        break;
      }
    }
  }
  const model = asked(() => resolver.resolve([...found.keys()], config, mimiOnly), base);
  const part = (pick) => (pick ? found.get(pick.name) : null);
  const parts = { mimi: part(model.mimi), lm: part(model.lm), tokenizer: part(model.tokenizer) };
  return { config, parts, model };
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

const HASH_CHUNK = 8 << 20; // bytes read back from OPFS at a time to hash a stored prefix

// Hash the first `n` bytes of an open file into a new hasher (a resumed download's prefix).
function hashStored(handle, n, newHasher) {
  const hasher = newHasher();
  const buf = new Uint8Array(Math.min(HASH_CHUNK, Math.max(1, n)));
  for (let at = 0; at < n; ) {
    const want = Math.min(buf.length, n - at);
    const got = handle.read(buf.subarray(0, want), { at });
    if (got <= 0) throw new Error(`reading back the stored file stopped at ${at} of ${n} bytes`);
    hasher.update(buf.subarray(0, got));
    at += got;
  }
  return hasher;
}

function dispose(hasher) {
  try {
    hasher?.free?.();
  } catch {}
}

// "bytes START-END/TOTAL" → { start, end, total }, or null.
function contentRange(res) {
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get("content-range")?.trim() ?? "");
  return m ? { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) } : null;
}

function sizeError(name, message) {
  return new StoreError("size", `${name}: ${message}`, name);
}

// The size a 200 response's body must have: what the HEAD announced, which the response's own
// Content-Length must agree with; a file nobody gives a size for is refused.
function expectedSize(part, res) {
  const told = contentLength(res);
  if (part.size != null && told != null && told !== part.size) {
    throw sizeError(
      part.name,
      `the server announced ${part.size} bytes (HEAD) but sends ${told} bytes (GET): the file changed or a proxy serves something else. The file is refused; load the model again.`,
    );
  }
  const size = part.size ?? told;
  if (size == null) {
    throw sizeError(
      part.name,
      `the server at ${part.url} does not say how big the file is (no Content-Length on HEAD or GET), so its download could not be checked against the storage quota or for completeness. It is refused: serve the file with a Content-Length.`,
    );
  }
  return size;
}

// Download `part` into `dir`, resuming a partial file whose record (manifest.files[name]) still
// describes the server's version. The record (size, validator, SHA-256) is written before the
// first byte of a response, so a later visit knows whether a Range request may continue.
// `newHasher()` gives an incremental SHA-256 (`update(bytes)`, `finish()` → hex).
async function download(dir, manifest, part, onProgress, newHasher) {
  const { name, url } = part;
  const handle = await (await dir.getFileHandle(name, { create: true })).createSyncAccessHandle();
  let hasher = null; // the SHA-256 of bytes [0, have) when the file has a published digest
  const save = () => writeJson(dir, MANIFEST, manifest);
  try {
    let have = handle.getSize();
    let rec = manifest.files[name];
    const meter = progressMeter(name, part.size ?? rec?.size ?? null, onProgress);
    let damaged = 0; // downloads that ended with the wrong SHA-256
    for (let attempt = 0; ; ) {
      // Resume only a prefix of a known size and version.
      if (have > 0 && !(rec && have < rec.size && ifRange(rec))) {
        handle.truncate(0);
        have = 0;
        dispose(hasher);
        hasher = null;
      }
      const headers = {};
      if (have > 0) {
        headers.Range = `bytes=${have}-`;
        headers["If-Range"] = ifRange(rec);
      }
      const res = await netFetch(name, url, { headers });
      let total;
      if (res.status === 206 && have > 0) {
        // Appended only if it is the rest of the very version stored.
        const cr = contentRange(res);
        if (!cr || cr.start !== have || cr.total !== rec.size || !sameVersion(rec, validatorOf(res))) {
          await res.body?.cancel();
          handle.truncate(0);
          have = 0;
          dispose(hasher);
          hasher = null;
          continue; // the whole file, from byte 0
        }
        total = cr.total;
      } else if (res.status === 416 && have > 0) {
        await res.body?.cancel();
        handle.truncate(0);
        have = 0;
        continue;
      } else if (res.status === 206) {
        await res.body?.cancel();
        throw new StoreError("download", `${name}: the server answered a request for the whole file with a part of it (206 from ${url})`, name);
      } else if (res.ok) {
        try {
          total = expectedSize(part, res);
        } catch (e) {
          await res.body?.cancel();
          throw e;
        }
        handle.truncate(0);
        have = 0;
        dispose(hasher);
        hasher = null;
        rec = { size: total, ...validatorOf(res), sha256: publishedSha256(res) ?? part.sha256 ?? null, verified: null, complete: false };
        manifest.files[name] = rec;
      } else {
        throw httpError(name, url, res);
      }
      if (part.size == null) await checkQuota(total - have);
      rec.complete = false;
      await save();
      if (rec.sha256 && newHasher && !hasher) hasher = hashStored(handle, have, newHasher);
      meter(have, true);
      try {
        if (res.body && have !== total) {
          const reader = res.body.getReader();
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            if (have + value.length > total) {
              await reader.cancel();
              throw sizeError(
                name,
                `the server sent more than the ${total} bytes it announced for this file (${url}). The file is refused; the server or a proxy serves something else.`,
              );
            }
            handle.write(value, { at: have });
            hasher?.update(value);
            have += value.length;
            meter(have);
          }
        }
        handle.flush();
        if (have !== total) throw new Error(`the connection closed after ${have} of ${total} bytes`);
      } catch (e) {
        handle.flush();
        if (e instanceof StoreError) {
          handle.truncate(0);
          delete manifest.files[name];
          await save();
          throw e;
        }
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
        attempt++;
        continue;
      }
      meter(have, true);
      if (hasher) {
        const got = hasher.finish();
        dispose(hasher);
        hasher = null;
        if (got !== rec.sha256) {
          handle.truncate(0);
          have = 0;
          delete manifest.files[name];
          await save();
          if (damaged++ === 0) continue; // once more, from byte 0
          throw new StoreError(
            "integrity",
            `${name} is damaged: its SHA-256 is ${got} but the server publishes ${rec.sha256} for it (${url}); downloaded twice with the same result. ` +
              "The file was deleted; the server or a proxy serves a corrupted copy.",
            name,
          );
        }
        rec.verified = "sha256";
      } else {
        rec.verified = "size";
      }
      rec.complete = true;
      await save();
      return;
    }
  } finally {
    dispose(hasher);
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

// Remove everything in a model's directory (a store made for another URL or by an older version).
async function clearDir(dir) {
  const names = [];
  for await (const [n] of dir.entries()) names.push(n);
  for (const n of names) await dir.removeEntry(n, { recursive: true });
}

// Is the stored file `name` (record `rec`) still the version the server describes in `p`?
function stillServed(rec, p) {
  if (!rec || (p.size != null && rec.size !== p.size)) return false;
  if (rec.sha256 && p.sha256 && rec.sha256 !== p.sha256) return false;
  return sameVersion(rec, p);
}

async function openUrlModelInner(base, { onProgress, storage, mimiOnly = false, newHasher, resolver }) {
  if (storage === "cache" || !opfsAvailable()) return openCachedModel(base, { onProgress, mimiOnly, newHasher, resolver });
  const root = await modelsRoot();
  const dir = await root.getDirectoryHandle(await storeKey(base, mimiOnly), { create: true });
  let manifest = await readJson(dir, MANIFEST);
  if (!ownManifest(manifest, base, mimiOnly)) {
    // Not stored for this URL by this version: start afresh.
    await clearDir(dir);
    manifest = null;
  }
  // Trust the manifest only if every file is complete at its recorded size (storage can be evicted).
  let intact = !!manifest && Object.values(manifest.parts).every((p) => !p || manifest.files[p.name]?.complete);
  for (const p of intact ? Object.values(manifest.parts) : []) {
    if (p && (await fileSize(dir, p.name)) !== manifest.files[p.name].size) {
      intact = false;
      manifest.files[p.name].complete = false;
    }
  }
  let fromCache = true;
  if (!intact) {
    fromCache = false;
    const { config, parts } = await resolveRemote(base, mimiOnly, resolver);
    const old = manifest;
    manifest = { version: STORE_VERSION, url: base, mimiOnly: !!mimiOnly, config, parts, files: {}, saved: Date.now() };
    // Keep what a previous try stored of the same version of a file: it resumes (or is done).
    for (const p of Object.values(parts)) {
      if (!p) continue;
      const before = old?.files?.[p.name];
      if (stillServed(before, p)) manifest.files[p.name] = { ...before, complete: !!before.complete && (await fileSize(dir, p.name)) === before.size };
    }
    const todo = Object.values(parts).filter((p) => p && !manifest.files[p.name]?.complete);
    let needed = 0;
    for (const p of todo) needed += Math.max(0, (p.size ?? 0) - (manifest.files[p.name] ? await fileSize(dir, p.name) : 0));
    await checkQuota(needed);
    await writeJson(dir, MANIFEST, manifest);
    const overall = overallProgress(Object.values(parts).filter(Boolean), (p) => manifest.files[p.name]?.complete, onProgress);
    for (const p of todo) await download(dir, manifest, p, overall, newHasher);
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
    verified: Object.fromEntries(Object.values(manifest.parts).filter(Boolean).map((p) => [p.name, manifest.files[p.name]?.verified ?? null])),
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

// One file into the Cache Storage: its body is counted (and hashed, when the host publishes its
// SHA-256) as it streams into the cache, cut off past its announced size; a wrong digest
// downloads it once more, then fails with "integrity". Returns the file's record.
async function cacheDownload(cache, part, onProgress, newHasher) {
  const { name, url } = part;
  for (let damaged = 0; ; damaged++) {
    const res = await netFetch(name, url);
    if (!res.ok || res.status === 206) throw httpError(name, url, res);
    let total;
    try {
      total = expectedSize(part, res);
    } catch (e) {
      await res.body?.cancel();
      throw e;
    }
    if (part.size == null) await checkQuota(total);
    const sha256 = publishedSha256(res) ?? part.sha256 ?? null;
    const hasher = sha256 && newHasher ? newHasher() : null;
    const meter = progressMeter(name, total, onProgress);
    let loaded = 0;
    let failure = null; // what stopped the stream (cache.put's rejection may not carry it)
    const fail = (e) => {
      failure = e;
      throw e;
    };
    const checked = res.body.pipeThrough(
      new TransformStream({
        transform(chunk, ctl) {
          if (loaded + chunk.length > total) {
            fail(sizeError(name, `the server sent more than the ${total} bytes it announced for this file (${url}). The file is refused; the server or a proxy serves something else.`));
          }
          hasher?.update(chunk);
          loaded += chunk.length;
          meter(loaded);
          ctl.enqueue(chunk);
        },
        flush() {
          if (loaded !== total) fail(new Error(`the connection closed after ${loaded} of ${total} bytes`));
        },
      }),
    );
    let digest = null;
    try {
      await cache.put(url, new Response(checked, { headers: res.headers }));
      digest = hasher?.finish() ?? null;
    } catch (err) {
      const e = failure ?? err;
      await cache.delete(url);
      if (e instanceof StoreError) throw e;
      const code = e?.name === "QuotaExceededError" ? "quota" : "download";
      throw new StoreError(code, `${name}: the download failed after ${formatBytes(loaded)} (${e?.message ?? e})`, name);
    } finally {
      dispose(hasher);
    }
    meter(loaded, true);
    if (digest === null || digest === sha256) {
      return { size: total, ...validatorOf(res), sha256, verified: digest ? "sha256" : "size", complete: true };
    }
    await cache.delete(url);
    if (damaged > 0) {
      throw new StoreError(
        "integrity",
        `${name} is damaged: its SHA-256 is ${digest} but the server publishes ${sha256} for it (${url}); downloaded twice with the same result. ` +
          "The file was deleted; the server or a proxy serves a corrupted copy.",
        name,
      );
    }
  }
}

// The Cache Storage fallback: the whole file is one cached response, read back as a Blob.
async function openCachedModel(base, { onProgress, mimiOnly, newHasher, resolver }) {
  const cache = await caches.open("parle-models-v1");
  const manifestUrl = new URL(CACHE_MANIFESTS[mimiOnly ? 1 : 0], base).href;
  let manifest = null;
  const hit = await cache.match(manifestUrl);
  if (hit) manifest = await hit.json().catch(() => null);
  if (!ownManifest(manifest, base, mimiOnly)) manifest = null;
  let fromCache = !!manifest;
  if (!manifest) {
    const { config, parts } = await resolveRemote(base, mimiOnly, resolver);
    manifest = { version: STORE_VERSION, url: base, mimiOnly: !!mimiOnly, config, parts, files: {} };
    // Files cached without this version's manifest are not trusted: fetched again.
    for (const p of Object.values(parts)) if (p) await cache.delete(p.url);
    let needed = 0;
    for (const p of Object.values(parts)) if (p) needed += p.size ?? 0;
    await checkQuota(needed);
    const overall = overallProgress(Object.values(parts).filter(Boolean), () => false, onProgress);
    for (const p of Object.values(parts)) if (p) manifest.files[p.name] = await cacheDownload(cache, p, overall, newHasher);
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
    if (blob.size !== manifest.files[p.name]?.size) {
      throw new StoreError("storage", `${p.name}: the cached copy has ${blob.size} bytes, not ${manifest.files[p.name]?.size}; delete the cached model and load it again`, p.name);
    }
    files[role] = blobReader(p.name, blob, gpuMeter(p.name, blob.size, onProgress));
  }
  return {
    config: manifest.config,
    files,
    fromCache,
    bytes: Object.values(files).reduce((s, f) => s + (f?.size ?? 0), 0),
    verified: Object.fromEntries(Object.values(manifest.parts).filter(Boolean).map((p) => [p.name, manifest.files[p.name]?.verified ?? null])),
    close() {},
  };
}

// Local files the user picked (a folder through the file input, or File System Access): the
// resolver's verdict over their names; nothing is copied or uploaded.
export async function openLocalModel(entries, { onProgress, mimiOnly = false, resolver } = {}) {
  // entries: [{ name, file: File }]
  const byName = new Map(entries.map((e) => [e.name.split("/").pop(), e.file]));
  let config = null;
  if (byName.has("config.json")) config = await byName.get("config.json").text();
  const model = asked(() => resolver.resolve([...byName.keys()], config, mimiOnly), "the files picked");
  const reader = (pick) => (pick ? blobReader(pick.name, byName.get(pick.name), gpuMeter(pick.name, byName.get(pick.name).size, onProgress)) : null);
  const files = { mimi: reader(model.mimi), lm: reader(model.lm), tokenizer: reader(model.tokenizer) };
  return {
    config,
    files,
    model,
    fromCache: true,
    bytes: Object.values(files).reduce((s, f) => s + (f?.size ?? 0), 0),
    close() {},
  };
}

// What loading `base` would take, asked of the server before any download (config.json and a
// HEAD per file): { config (text or null), model (the resolver's verdict: kind, io, sampling,
// lmSizes), files: [{ role, name, size, stored }] } where `size` is null when the server does not
// say it and `stored` is the bytes already in OPFS.
export async function inspectUrlModel(base, { mimiOnly = false, resolver } = {}) {
  const { config, parts, model } = await resolveRemote(base, mimiOnly, resolver);
  let dir = null;
  if (opfsAvailable()) {
    try {
      dir = await (await modelsRoot()).getDirectoryHandle(await storeKey(base, mimiOnly));
    } catch {
      dir = null; // nothing stored for this model yet
    }
  }
  let manifest = dir ? await readJson(dir, MANIFEST) : null;
  if (!ownManifest(manifest, base, mimiOnly)) manifest = null; // not used by load() either
  const files = [];
  for (const [role, p] of Object.entries(parts)) {
    if (!p) continue;
    const rec = manifest?.files?.[p.name];
    const have = rec && stillServed(rec, p) ? await fileSize(dir, p.name) : 0;
    const stored = rec?.complete ? have : Math.min(have, p.size ?? 0);
    files.push({ role, name: p.name, size: p.size, stored });
  }
  return { config, model, files };
}

// Models held in OPFS: [{ url, key, bytes, complete, legacy }]. `legacy`: a store from an older
// version of parle, never opened again (loading its URL downloads afresh) but listed so that it
// can be deleted.
export async function listCached() {
  const out = [];
  if (!opfsAvailable()) return out;
  const root = await modelsRoot();
  for await (const [key, h] of root.entries()) {
    if (h.kind !== "directory") continue;
    const m = await readJson(h, MANIFEST);
    let bytes = 0;
    for await (const [n, f] of h.entries()) if (f.kind === "file" && n !== MANIFEST) bytes += (await f.getFile()).size;
    const legacy = m?.version !== STORE_VERSION;
    const complete = !legacy && !!m.parts && Object.values(m.parts).every((p) => !p || m.files?.[p.name]?.complete);
    out.push({ url: typeof m?.url === "string" ? m.url : key, key, bytes, complete, legacy });
  }
  return out;
}

// Forget one model (by URL: its stores of this version and of older ones, found by their
// manifest's URL or their key), or every model.
export async function deleteCached(url) {
  if (opfsAvailable()) {
    const root = await navigator.storage.getDirectory();
    if (url) {
      const models = await modelsRoot();
      const keys = new Set([await storeKey(url), await storeKey(url, true), legacyKeyOf(url), legacyKeyOf(`${url}#mimi`), url]);
      const doomed = [];
      for await (const [key, h] of models.entries()) {
        if (h.kind !== "directory") continue;
        if (keys.has(key) || (await readJson(h, MANIFEST))?.url === url) doomed.push(key);
      }
      for (const key of doomed) await models.removeEntry(key, { recursive: true }).catch(() => {});
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
