// TripSage Sync service worker: the page opens offline.
//
// Network first, cache as the fallback: online, every load gets the current
// page and modules (and refreshes the cache); offline, the cached copies
// answer, and any page of the app (/, /app, /trips/{id}) gets the one shell.
// Only the app shell is cached; /api/* and WebSockets are never touched.
const CACHE = "tripsage-shell-v1";
const SHELL = ["/app", "/static/app.js", "/static/client.js", "/static/style.css"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function isShell(url, request) {
  if (url.origin !== self.location.origin || request.method !== "GET") return false;
  if (request.mode === "navigate") return !url.pathname.startsWith("/api/");
  return url.pathname.startsWith("/static/");
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (!isShell(url, request)) return;
  const key = request.mode === "navigate" ? "/app" : url.pathname;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(key, copy)));
        }
        return response;
      })
      .catch(async () => {
        const cached = await caches.match(key);
        return cached || Response.error();
      }),
  );
});
