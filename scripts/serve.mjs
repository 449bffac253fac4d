#!/usr/bin/env node
// The app's local server: serves the app (web/) and, with --models DIR, a folder of model
// directories at /models/ (DIR/moshiko-mlx-q4/ is http://127.0.0.1:8000/models/moshiko-mlx-q4/),
// for the page's "custom URL" or presets. It is a local app and model host for the person at this
// machine, not a public web server.
//
//   node scripts/serve.mjs [--port 8000] [--host 127.0.0.1] [--models DIR]
//
// `npm start` builds the wasm package first, then runs this; `npm run serve` runs only this.
//
// Files are sent by `send` (the module Express's static files use: Range, HEAD without reading the
// body, conditional requests, 416/412/304, stream errors and closing the file when the client goes
// away). sirv, used before, crashed on some Range values and on unreadable files, served dotfiles
// in dev mode and read whole files for HEAD. Around `send` we do what it leaves to its caller or
// gets loosely: safe path decoding, no dotfiles, symbolic links only inside the served folder,
// regular files only (lib/url-path.mjs); Range and If-Range exactly as RFC 9110 says, with
// strong ETags (lib/http-range.mjs); loopback-only Host values against DNS rebinding
// (lib/host-check.mjs); GET and HEAD only; our own MIME table; security headers on every
// response; and a plain-text error for every failure (a cut connection once headers are out).
//
// The page tests import startServer() to serve fixtures with a request log and fault injection.

import { createServer } from "node:http";
import { existsSync, statSync } from "node:fs";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import send from "send";
import { extraHostNames, hostAllowed, isLoopbackName, isWildcard, listenUrls } from "./lib/host-check.mjs";
import { ifRangeAllows, parseRange, strongEtag } from "./lib/http-range.mjs";
import { fileInside, realFolder, requestPath } from "./lib/url-path.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

// The page loads only its own scripts, module worker, audio worklets and service worker, and
// instantiates wasm ('wasm-unsafe-eval'); it fetches models from here or from any https origin
// the user names (huggingface.co); it has no inline scripts or styles.
export const CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self'",
  "connect-src 'self' https:",
  "img-src 'self'",
  "media-src 'self'",
  "style-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS = {
  "Content-Security-Policy": CSP,
  "X-Content-Type-Options": "nosniff",
  "Permissions-Policy": "microphone=(self)",
  "Referrer-Policy": "no-referrer",
};

// By extension; anything else (model files: .safetensors, .gguf, .model, .bin) is bytes.
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".webmanifest": "application/manifest+json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".wav": "audio/wav",
  ".txt": "text/plain; charset=utf-8",
};

export const contentType = (name) => TYPES[extname(name).toLowerCase()] ?? "application/octet-stream";

/** A plain-text answer; once headers are out, the connection is cut instead. */
function plain(req, res, status, message, headers = {}) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  for (const name of res.getHeaderNames()) if (!(name in LOWER_SECURITY)) res.removeHeader(name);
  const body = Buffer.from(`${message}\n`);
  res.writeHead(status, { ...headers, "Content-Type": "text/plain; charset=utf-8", "Content-Length": body.length });
  res.end(req.method === "HEAD" ? undefined : body);
}
const LOWER_SECURITY = Object.fromEntries(Object.keys(SECURITY_HEADERS).map((k) => [k.toLowerCase(), true]));

/**
 * Start a server. `mounts` maps a URL prefix ("/models/") to a directory; `web` is served at "/"
 * ("/" itself is web/index.html; no other directory is listed). `onRequest(req, res)` sees every
 * request with an allowed Host first (logging, fault injection); if it returns true it has
 * answered. `host` is the address to listen on; Host headers other than loopback names and `host`
 * (for 0.0.0.0 or ::, this machine's addresses) are refused with 421.
 * Resolves to the http.Server (listening; `server.address().port`).
 */
export function startServer({ web = join(ROOT, "web"), mounts = {}, port = 0, host = "127.0.0.1", onRequest } = {}) {
  const webRoot = realFolder(web);
  const extra = Object.entries(mounts)
    .map(([prefix, dir]) => ({ segments: prefix.split("/").filter(Boolean), root: realFolder(dir) }))
    .sort((a, b) => b.segments.length - a.segments.length);
  const names = extraHostNames(host);

  async function handle(req, res) {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    if (!hostAllowed(req.headers.host, names)) {
      return plain(req, res, 421, `this server answers only to localhost, 127.0.0.1 or [::1]${names.size ? ` and ${[...names].join(", ")}` : ""}, not to Host: ${String(req.headers.host ?? "(none)").slice(0, 100)}`);
    }
    if (onRequest?.(req, res)) return;
    if (req.method !== "GET" && req.method !== "HEAD") return plain(req, res, 405, `${req.method} is not supported: this server only serves files (GET, HEAD)`, { Allow: "GET, HEAD" });
    const p = requestPath(req.url);
    if (p.status) return plain(req, res, p.status, p.message);
    const mount = extra.find((m) => m.segments.length <= p.segments.length && m.segments.every((s, i) => p.segments[i] === s));
    const root = mount ? mount.root : webRoot;
    let segments = mount ? p.segments.slice(mount.segments.length) : p.segments;
    if (!mount && segments.length === 0) segments = ["index.html"];
    else if (p.dir) return plain(req, res, 404, "not found (directories are not listed)");
    const file = await fileInside(root, segments);
    if (file.status) return plain(req, res, file.status, file.message);
    sendFile(req, res, file, segments[segments.length - 1]);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      console.error(`${req.method} ${req.url}: ${e.stack ?? e}`);
      plain(req, res, 500, "internal server error");
    });
  });
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, host, () => {
      server.off("error", fail);
      // After listening (e.g. EMFILE when accepting): say so, keep serving.
      server.on("error", (e) => console.error(`server error: ${e.message}`));
      ok(server);
    });
  });
}

// Decide Range and If-Range ourselves (lib/http-range.mjs), then hand `send` only a canonical
// single range (or none), so its own looser parsing never decides.
function sendFile(req, res, { path, stat }, name) {
  const etag = strongEtag(stat);
  const range = parseRange(req.headers.range, stat.size);
  const honour = range.kind !== "whole" && ifRangeAllows(req.headers["if-range"], etag, stat.mtimeMs);
  delete req.headers["if-range"];
  if (!honour) delete req.headers.range;
  else if (range.kind === "part") req.headers.range = `bytes=${range.start}-${range.end}`;
  else req.headers.range = `bytes=${stat.size}-`; // unsatisfiable: send answers 416 (after 304/412)
  // send decodes its path argument: give it the real path percent-encoded, segment by segment.
  const encoded = path.split(sep).map(encodeURIComponent).join("/");
  const stream = send(req, encoded, { dotfiles: "allow", index: false, etag: false, cacheControl: false, lastModified: true, acceptRanges: true });
  stream.on("headers", (r, _path, st) => {
    r.setHeader("ETag", strongEtag(st));
    r.setHeader("Content-Type", contentType(name));
    r.setHeader("Cache-Control", "no-cache");
  });
  stream.on("directory", () => plain(req, res, 404, "not found (directories are not listed)"));
  stream.on("error", (e) => {
    const status = e.status ?? e.statusCode ?? 500;
    if (status >= 500) console.error(`${req.method} ${req.url}: ${e.message}`);
    const headers = status === 416 ? { "Accept-Ranges": "bytes", "Content-Range": `bytes */${stat.size}` } : e.headers ?? {};
    plain(req, res, status, status === 416 ? `range not satisfiable: the file has ${stat.size} bytes` : status >= 500 ? "cannot read the file" : e.message, headers);
  });
  stream.pipe(res);
}

const USAGE = `usage: node scripts/serve.mjs [--port N] [--host ADDRESS] [--models DIR]
  (npm start -- [options] builds the wasm package first)
  --port N        the port, an integer 0-65535 (default: $PORT or 8000; 0 picks a free one)
  --host ADDRESS  the address to listen on (default 127.0.0.1). Another than a loopback address
                  makes this server reachable from other machines; browsers give microphones and
                  WebGPU only to secure contexts (https, or http on localhost)
  --models DIR    serve the model directories in DIR at /models/`;

function usage(message) {
  console.error(`serve.mjs: ${message}\n${USAGE}`);
  process.exit(2);
}

function parsePort(s, what) {
  if (!/^\d+$/.test(s) || Number(s) > 65535) usage(`${what} must be an integer from 0 to 65535, not "${s}"`);
  return Number(s);
}

async function main() {
  let values;
  try {
    ({ values } = parseArgs({ options: { port: { type: "string" }, host: { type: "string" }, models: { type: "string" }, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: false }));
  } catch (e) {
    usage(e.message);
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const port = values.port !== undefined ? parsePort(values.port, "--port") : process.env.PORT !== undefined ? parsePort(process.env.PORT, "PORT") : 8000;
  const host = values.host ?? "127.0.0.1";
  if (host === "") usage("--host must name an address");
  const mounts = {};
  if (values.models !== undefined) {
    const dir = resolve(values.models);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) usage(`--models ${values.models}: not a directory`);
    mounts["/models/"] = dir;
  }
  if (!existsSync(join(ROOT, "web", "pkg", "parle_bg.wasm"))) {
    console.warn("warning: web/pkg/ has no wasm package yet: run `npm run build:wasm` (npm start does).");
  }
  // One bad request must never end the server: report what escaped and go on.
  process.on("uncaughtException", (e) => console.error(`internal error (still serving): ${e.stack ?? e}`));
  process.on("unhandledRejection", (e) => console.error(`internal error (still serving): ${e?.stack ?? e}`));
  let server;
  try {
    server = await startServer({
      port,
      host,
      mounts,
      onRequest(req) {
        if (process.env.PARLE_LOG_REQUESTS) console.log(req.method, req.url, req.headers.range ?? "");
        return false;
      },
    });
  } catch (e) {
    console.error(`serve.mjs: cannot listen on ${host}:${port}: ${e.message}`);
    process.exit(1);
  }
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  if (!isLoopbackName(bare)) {
    console.warn(
      `warning: listening on ${isWildcard(bare) ? `${host} (every interface)` : host}: other machines can reach this server.\n` +
        "  Browsers give microphones and WebGPU only to secure contexts (https, or http on localhost),\n" +
        "  so on another machine the page needs https in front of this server. It is a local app and\n" +
        "  model host, not a public web server.",
    );
  }
  const urls = listenUrls(host, server.address().port);
  for (const url of urls) console.log(`parle is at ${url}`);
  if (values.models !== undefined) console.log(`models from ${resolve(values.models)} at ${urls[0]}models/`);
  console.log("Open it in a browser with WebGPU (Chrome/Edge 113+; on Linux: chrome://flags/#enable-unsafe-webgpu). Ctrl+C stops.");
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
