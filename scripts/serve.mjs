#!/usr/bin/env node
// Serve the app (web/) on 127.0.0.1 with sirv: Range requests, ETags and the right MIME types
// (application/wasm, application/manifest+json, text/javascript).
//
//   node scripts/serve.mjs [--port 8000] [--host 127.0.0.1] [--models DIR]
//
// --models DIR exposes a local folder of model directories at /models/ (so DIR/moshiko-mlx-q4/
// is http://127.0.0.1:8000/models/moshiko-mlx-q4/), for the page's "custom URL" or presets.
// `npm start` builds the wasm package first, then runs this.
//
// The page tests import startServer() to serve fixtures with a request log and fault injection.

import { createServer } from "node:http";
import { existsSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import sirv from "sirv";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Start a server. `mounts` maps a URL prefix ("/models/") to a directory; `web` is served at "/".
 * `onRequest(req, res)` sees every request first (logging); if it returns true it has answered.
 * Resolves to the http.Server (listening; `server.address().port`).
 */
export function startServer({ web = join(ROOT, "web"), mounts = {}, port = 0, host = "127.0.0.1", onRequest } = {}) {
  // Model files (.safetensors, .gguf, .model) have no registered type: say what they are.
  const setHeaders = (res, pathname) => {
    if (/\.(safetensors|gguf|model|bin)$/.test(pathname)) res.setHeader("content-type", "application/octet-stream");
  };
  const opts = { dev: true, etag: true, dotfiles: false, setHeaders };
  const app = sirv(web, opts);
  const extra = Object.entries(mounts).map(([prefix, dir]) => [prefix.endsWith("/") ? prefix : `${prefix}/`, sirv(dir, opts)]);
  const server = createServer((req, res) => {
    if (onRequest?.(req, res)) return;
    const notFound = () => {
      res.statusCode = 404;
      res.end("not found");
    };
    for (const [prefix, handler] of extra) {
      if (req.url.startsWith(prefix)) {
        req.url = req.url.slice(prefix.length - 1);
        return handler(req, res, notFound);
      }
    }
    app(req, res, notFound);
  });
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, host, () => ok(server));
  });
}

async function main() {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : dflt;
  };
  const port = Number(opt("port", process.env.PORT ?? 8000));
  const host = opt("host", "127.0.0.1");
  const models = opt("models");
  const mounts = {};
  if (models) {
    const dir = resolve(models);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      console.error(`--models ${models}: not a directory`);
      process.exit(2);
    }
    mounts["/models/"] = dir;
  }
  if (!existsSync(join(ROOT, "web", "pkg", "parle_bg.wasm"))) {
    console.warn("warning: web/pkg/ has no wasm package yet: run `npm run build:wasm` (npm start does).");
  }
  const server = await startServer({
    port,
    host,
    mounts,
    onRequest(req) {
      if (process.env.PARLE_LOG_REQUESTS) console.log(req.method, req.url, req.headers.range ?? "");
      return false;
    },
  });
  const url = `http://${host}:${server.address().port}/`;
  console.log(`parle is at ${url}`);
  if (models) console.log(`models from ${resolve(models)} at ${url}models/`);
  console.log("Open it in a browser with WebGPU (Chrome/Edge 113+; on Linux: chrome://flags/#enable-unsafe-webgpu). Ctrl+C stops.");
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
