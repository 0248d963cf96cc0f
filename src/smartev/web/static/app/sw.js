// Service worker: the app shell (pages, scripts, styles, icons) is cached so the app opens without a
// network; API calls and map tiles always go to the network (live data is never served stale).
const VERSION = "smartev-shell-v2";
const SHELL = [
  "./", "index.html", "app.js", "api.js", "ui.js", "owner.js", "console.js", "plan.js", "style.css", "owner.css", "console.css",
  "manifest.webmanifest", "icons/icon-192.png", "icons/icon-512.png",
  "vendor/leaflet/leaflet.js", "vendor/leaflet/leaflet.css",
  "vendor/markercluster/leaflet.markercluster.js", "vendor/markercluster/MarkerCluster.css",
  "vendor/markercluster/MarkerCluster.Default.css",
  "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(VERSION).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== VERSION).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!url.pathname.startsWith(new URL("./", self.location).pathname)) return;
  // network first, so a new release shows at once; the cache when the network is gone
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(VERSION).then((cache) => cache.put(event.request, copy));
        }
        return response;
      })
      .catch(() => caches.match(event.request, { ignoreSearch: true })),
  );
});
