// Service worker: keeps the app shell (page, scripts, worklets, wasm package, icons) in the Cache
// Storage so that the page opens offline. Network first, so a new build shows on the next load
// when online; the cache answers when the network does not. Model weights are not handled here:
// the engine worker keeps them in the Origin Private File System (web/store.js), and a model
// stored there loads with no request at all.

const CACHE = "parle-shell-v3";
const SHELL = [
  "./",
  "index.html",
  "style.css",
  "main.js",
  "parle.js",
  "store.js",
  "format.js",
  "worker.js",
  "capture-worklet.js",
  "playback-worklet.js",
  "resample.js",
  "manifest.webmanifest",
  "icon.svg",
  "icon-192.png",
  "icon-512.png",
  "pkg/parle.js",
  "pkg/parle_bg.wasm",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      // One missing file (say, an unbuilt wasm package) must not stop the rest being cached.
      const results = await Promise.allSettled(SHELL.map((url) => cache.add(url)));
      results.forEach((r, i) => {
        if (r.status === "rejected") console.warn(`parle: not cached for offline use: ${SHELL[i]} (${r.reason})`);
      });
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) {
        if (key.startsWith("parle-shell-") && key !== CACHE) await caches.delete(key);
      }
      await self.clients.claim();
    })(),
  );
});

const shellUrls = new Set(SHELL.map((u) => new URL(u, self.registration.scope).href));

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  url.search = "";
  if (req.method !== "GET" || !shellUrls.has(url.href)) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const res = await fetch(req);
        if (res.ok) await cache.put(url.href, res.clone());
        return res;
      } catch (e) {
        const hit = await cache.match(url.href);
        if (hit) return hit;
        throw e;
      }
    })(),
  );
});
