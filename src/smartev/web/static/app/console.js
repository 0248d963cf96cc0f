// Operator console: fleet overview (counts, map, table, registration), a car's signals and telemetry errors,
// ingest health and charging stations. Every page builds its DOM at once, loads its data in the background and
// returns a cleanup function that stops its timers, streams, requests and maps.
import { api, ApiError, stream, webConfig } from "./api.js";
import { fmtAgo, fmtDuration, fmtNumber, fmtTime, h, notice, perFrame, setText } from "./ui.js";
import {
  amps, browserZone, clearErrors, field, kwh, nowWords, objectiveWords, OBJECTIVES, planChart, reasonsText, showErrors,
  sitePlanLines,
} from "./plan.js";

const PAGE_SIZE = 50;
const KNOWN_MODELS = ["smartev S1", "smartev X1", "smartev V1"];
const STATES = {
  driving: { word: "Driving", symbol: "▶" },
  charging: { word: "Charging", symbol: "⚡" },
  parked: { word: "Parked", symbol: "P" },
  offline: { word: "Offline", symbol: "○" },
};

export function register(route) {
  route("/fleet", fleetPage, { staff: true, title: "Fleet" });
  route("/cars/:vin/signals", signalsPage, { staff: true, title: "Signals" });
  route("/cars/:vin/errors", errorsPage, { staff: true, title: "Telemetry errors" });
  route("/ingest", ingestPage, { staff: true, title: "Ingest health" });
  route("/charging", chargingPage, { staff: true, title: "Charging" });
  route("/sites", sitesPage, { staff: true, title: "Sites" });
  route("/sites/:id", sitePage, { staff: true, title: "Site" });
}

// --- shared helpers ---

function errorText(err) {
  return err instanceof ApiError ? err.message : String((err && err.message) || err);
}

function isAbort(err) {
  return err && err.name === "AbortError";
}

/** A slot that shows one error in words (announced once, not again on every refresh) or nothing. */
function errorSlot() {
  const node = h("div", { class: "console-errors" });
  return {
    node,
    show(err, prefix = "") {
      const text = prefix + errorText(err);
      if (node.dataset.text === text) return;
      node.dataset.text = text;
      node.replaceChildren(notice(text, "error"));
    },
    clear() {
      if (!node.dataset.text) return;
      delete node.dataset.text;
      node.replaceChildren();
    },
  };
}

/**
 * Run fn every `ms` while the page is visible (paused in a background tab, run at once when it shows again).
 * A run never overlaps the previous one. Returns stop().
 */
function every(ms, fn) {
  let timer = null;
  let running = false;
  let stopped = false;
  async function tick() {
    timer = null;
    if (stopped) return;
    if (!document.hidden && !running) {
      running = true;
      try {
        await fn();
      } catch (err) {
        if (!isAbort(err)) console.error(err);
      } finally {
        running = false;
      }
    }
    if (!stopped && !document.hidden && !timer) timer = setTimeout(tick, ms);
  }
  function onVisibility() {
    if (!document.hidden && !timer && !running && !stopped) tick();
  }
  document.addEventListener("visibilitychange", onVisibility);
  timer = setTimeout(tick, ms);
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisibility);
  };
}

/** Call fn on every item, a few milliseconds of work at a time, yielding to the page in between. */
function inSlices(items, fn, stopped = () => false, budgetMs = 8) {
  return new Promise((resolve) => {
    let i = 0;
    const step = () => {
      if (stopped()) return resolve();
      const end = performance.now() + budgetMs;
      while (i < items.length && performance.now() < end) fn(items[i++]);
      if (i < items.length) setTimeout(step, 0);
      else resolve();
    };
    step();
  });
}

function debounce(fn, ms) {
  let timer = null;
  const run = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  run.cancel = () => clearTimeout(timer);
  return run;
}

/** "21 Nov, 17:18" — short enough for a table cell; the full time goes in a title. */
function fmtShort(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}

function carHref(vin, sub = "") {
  return `#/cars/${encodeURIComponent(vin)}${sub}`;
}

function stateBadge(state) {
  const s = STATES[state] || { word: state || "Unknown", symbol: "?" };
  return h("span", { class: `fstate fstate-${state || "unknown"}` }, h("span", { "aria-hidden": "true" }, `${s.symbol} `), s.word);
}

function tile(label, testid, extraClass = "") {
  const value = h("div", { class: "value", "data-testid": testid }, "–");
  const detail = h("div", { class: "detail muted" });
  const node = h("div", { class: `tile ${extraClass}`.trim() }, h("div", { class: "label" }, label), value, detail);
  return { node, value, detail };
}

function table(headers, { caption, testid, stack = false } = {}) {
  const tbody = h("tbody", { role: stack ? "rowgroup" : null });
  const node = h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption ? `${caption}: table` : "Table" },
    h(
      "table",
      // explicit roles on a stacked table: phones show its rows as cards (display: block), which would
      // otherwise cost the table its semantics in some browsers
      { "data-testid": testid, class: stack ? "stack" : null, role: stack ? "table" : null },
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h(
        "thead",
        { role: stack ? "rowgroup" : null },
        h(
          "tr",
          { role: stack ? "row" : null },
          headers.map((x) => (x instanceof Node ? x : h("th", { scope: "col", role: stack ? "columnheader" : null }, x))),
        ),
      ),
      tbody,
    ),
  );
  return { node, tbody };
}

function emptyRow(cols, text) {
  return h("tr", { class: "empty", role: "row" }, h("td", { colspan: String(cols), class: "muted", role: "cell" }, text));
}

/** A Leaflet map in `el` with the configured tiles (none when the platform has no tile server). */
async function makeMap(el, { center = [52.52, 13.405], zoom = 11 } = {}) {
  if (!window.L) throw new Error("the map library did not load");
  let config = { tile_url: "", tile_attribution: "", tile_max_zoom: 19 };
  try {
    config = await webConfig();
  } catch (err) {
    console.warn("no web config; map without tiles", err);
  }
  const map = window.L.map(el, { preferCanvas: true, zoomControl: true, worldCopyJump: false }).setView(center, zoom);
  if (config.tile_url) {
    window.L.tileLayer(config.tile_url, {
      attribution: config.tile_attribution || "",
      maxZoom: config.tile_max_zoom || 19,
    }).addTo(map);
  } else {
    map.setMaxZoom(config.tile_max_zoom || 19);
  }
  return map;
}

// --- #/fleet ---

const SORTS = [
  ["vin", "VIN"],
  ["model", "Model"],
  ["owner", "Owner"],
  ["state", "State"],
  ["soc", "SoC"],
  [null, "Range"],
  ["speed", "Speed"],
  ["last_seen", "Last seen"],
];

function fleetPage(main) {
  const abort = new AbortController();
  const stops = [];
  let dead = false;
  let map = null;

  // counts
  const counts = {
    total: tile("Cars", "count-total"),
    online: tile("Online", "count-online", "tile-online"),
    offline: tile("Offline", "count-offline", "tile-offline"),
    driving: tile("Driving", "count-driving"),
    charging: tile("Charging", "count-charging"),
    parked: tile("Parked", "count-parked"),
  };
  const countErrors = errorSlot();
  async function loadSummary() {
    try {
      const s = await api("/api/v1/fleet/summary", { signal: abort.signal });
      if (dead) return;
      for (const [key, t] of Object.entries(counts)) setText(t.value, fmtNumber(s[key]));
      const pct = (n) => (s.total ? `${fmtNumber((100 * (n || 0)) / s.total)} % of cars` : "");
      setText(counts.online.detail, pct(s.online));
      setText(counts.offline.detail, pct(s.offline));
      countErrors.clear();
    } catch (err) {
      if (!isAbort(err) && !dead) countErrors.show(err, "Counts: ");
    }
  }

  // map
  const mapEl = h("div", {
    class: "map big",
    "data-testid": "fleet-map",
    role: "region",
    "aria-label": "Fleet map (the table below lists the same cars)",
  });
  const mapInfo = h("p", { class: "muted map-info" }, "Loading positions…");
  const mapErrors = errorSlot();
  const legend = h(
    "p",
    { class: "legend" },
    Object.keys(STATES).flatMap((key) => [stateBadge(key), " "]),
    h("span", { class: "muted" }, "· a number is a group of cars: zoom in or select it"),
  );
  const markers = new Map(); // vin -> L.Marker
  let cluster = null;
  let icons = null;
  let fitted = false;

  function pinIcons() {
    const out = {};
    for (const [key, s] of Object.entries(STATES)) {
      out[key] = window.L.divIcon({
        className: `fleet-pin fleet-pin-${key}`,
        html: s.symbol,
        iconSize: [20, 20],
        iconAnchor: [10, 10],
        popupAnchor: [0, -10],
      });
    }
    out.unknown = window.L.divIcon({ className: "fleet-pin", html: "?", iconSize: [20, 20], iconAnchor: [10, 10] });
    return out;
  }

  function markerFor(vin, lat, lon, state) {
    const m = window.L.marker([lat, lon], {
      icon: icons[state] || icons.unknown,
      keyboard: false,
      title: `${vin} · ${(STATES[state] || {}).word || state}`,
    });
    m.vin = vin;
    m.carState = state;
    return m;
  }

  function openCarPopup(layer) {
    const vin = layer.vin;
    const content = h(
      "div",
      { class: "fleet-popup" },
      h("strong", {}, vin),
      h("br"),
      stateBadge(layer.carState),
      h("br"),
      h("a", { href: carHref(vin) }, `Open car ${vin}`),
    );
    window.L.popup({ offset: [0, -8] }).setLatLng(layer.getLatLng()).setContent(content).openOn(map);
  }

  /** Apply the newest positions: move, restyle, add and remove markers; never rebuild the layer. */
  async function applyPositions(rows) {
    if (!fitted && rows.length) {
      // before the markers go in, so the cluster group clusters once at the final zoom
      fitted = true;
      let s = 90, n = -90, w = 180, e = -180;
      for (const [, lat, lon] of rows) {
        if (typeof lat !== "number" || typeof lon !== "number") continue;
        if (lat < s) s = lat;
        if (lat > n) n = lat;
        if (lon < w) w = lon;
        if (lon > e) e = lon;
      }
      if (s <= n) map.fitBounds([[s, w], [n, e]], { padding: [20, 20], maxZoom: 15, animate: false });
    }
    const seen = new Set();
    const added = [];
    const moved = [];
    for (const row of rows) {
      const [vin, lat, lon, state] = row;
      if (typeof lat !== "number" || typeof lon !== "number") continue;
      seen.add(vin);
      const m = markers.get(vin);
      if (!m) {
        const fresh = markerFor(vin, lat, lon, state);
        markers.set(vin, fresh);
        added.push(fresh);
        continue;
      }
      const at = m.getLatLng();
      if (Math.abs(at.lat - lat) > 1e-7 || Math.abs(at.lng - lon) > 1e-7) moved.push([m, lat, lon]);
      if (m.carState !== state) {
        m.carState = state;
        m.options.title = `${vin} · ${(STATES[state] || {}).word || state}`;
        m.setIcon(icons[state] || icons.unknown);
      }
    }
    const gone = [];
    for (const [vin, m] of markers) {
      if (!seen.has(vin)) {
        gone.push(m);
        markers.delete(vin);
      }
    }
    if (gone.length) cluster.removeLayers(gone);
    if (added.length) cluster.addLayers(added); // chunked by the cluster group
    // a moved marker is re-filed by the cluster group (remove + add, ~0.2 ms each): a few thousand of them
    // are moved in slices of a few ms so the page never stalls
    await inSlices(moved, ([m, lat, lon]) => m.setLatLng([lat, lon]), () => dead);
    if (dead) return;
    setText(
      mapInfo,
      `${fmtNumber(markers.size)} ${markers.size === 1 ? "car" : "cars"} with a known position · updated ${new Date().toLocaleTimeString()}`,
    );
  }

  async function loadPositions() {
    if (!cluster) return;
    try {
      const answer = await api("/api/v1/fleet/positions", { signal: abort.signal });
      if (dead) return;
      await applyPositions(answer.rows || []);
      mapErrors.clear();
    } catch (err) {
      if (!isAbort(err) && !dead) mapErrors.show(err, "Map: ");
    }
  }

  async function startMap() {
    try {
      map = await makeMap(mapEl);
      if (dead) {
        map.remove();
        return;
      }
      icons = pinIcons();
      cluster = window.L.markerClusterGroup({
        chunkedLoading: true,
        animate: false, // cluster animations force a layout per moved marker: too slow for thousands
        chunkInterval: 40,
        chunkDelay: 20,
        showCoverageOnHover: false,
        removeOutsideVisibleBounds: true,
      });
      cluster.on("click", (e) => openCarPopup(e.layer));
      map.addLayer(cluster);
      await loadPositions();
      stops.push(every(15000, loadPositions));
    } catch (err) {
      if (!dead) mapErrors.show(err, "Map: ");
    }
  }

  // table
  const query = { q: "", state: "", sort: "vin", order: "asc", offset: 0 };
  const search = h("input", { id: "fleet-search", type: "search", autocomplete: "off", placeholder: "VIN, model or owner email" });
  const stateSelect = h(
    "select",
    { id: "fleet-state" },
    h("option", { value: "" }, "All states"),
    Object.entries(STATES).map(([key, s]) => h("option", { value: key }, s.word)),
  );
  const prev = h("button", { type: "button", class: "secondary", disabled: true }, "Previous");
  const next = h("button", { type: "button", class: "secondary", disabled: true }, "Next");
  const pageStatus = h("p", { class: "page-status", role: "status", "aria-live": "polite" }, "Loading cars…");
  const sortButtons = new Map();
  const headers = SORTS.map(([key, label]) => {
    if (!key) return h("th", { scope: "col" }, label);
    const arrow = h("span", { class: "sort-arrow", "aria-hidden": "true" });
    const button = h("button", { type: "button", onclick: () => sortBy(key) }, label, arrow);
    const th = h("th", { scope: "col", "aria-sort": "none" }, button);
    sortButtons.set(key, { th, arrow });
    return th;
  });
  const carsTable = table(headers, { caption: "Cars", testid: "fleet-table" });
  const tableErrors = errorSlot();
  let tableSeq = 0;
  let tableAbort = null;
  let rowRefs = []; // [{vin, cells}]

  function paintSort() {
    for (const [key, { th, arrow }] of sortButtons) {
      const active = key === query.sort;
      th.setAttribute("aria-sort", active ? (query.order === "asc" ? "ascending" : "descending") : "none");
      setText(arrow, active ? (query.order === "asc" ? " ▲" : " ▼") : "");
    }
  }

  function sortBy(key) {
    if (query.sort === key) query.order = query.order === "asc" ? "desc" : "asc";
    else {
      query.sort = key;
      query.order = "asc";
    }
    query.offset = 0;
    paintSort();
    loadTable();
  }

  function rowCells(car) {
    return [
      car.vin,
      car.model || "–",
      car.owner || "–",
      car.state,
      car.soc === null || car.soc === undefined ? "–" : `${fmtNumber(car.soc)} %`,
      car.range_km === null || car.range_km === undefined ? "–" : `${fmtNumber(car.range_km)} km`,
      car.speed === null || car.speed === undefined ? "–" : `${fmtNumber(car.speed)} km/h`,
      car.last_seen,
    ];
  }

  function buildRow(car) {
    const cells = [
      h("td", {}, h("a", { href: carHref(car.vin) }, car.vin)),
      h("td"),
      h("td"),
      h("td"),
      h("td", { class: "num" }),
      h("td", { class: "num" }),
      h("td", { class: "num" }),
      h("td"),
    ];
    const ref = { vin: car.vin, cells, state: null };
    updateRow(ref, car);
    return { tr: h("tr", {}, cells), ref };
  }

  function updateRow(ref, car) {
    const values = rowCells(car);
    for (const i of [1, 2, 4, 5, 6]) setText(ref.cells[i], values[i]);
    if (ref.state !== car.state) {
      ref.state = car.state;
      ref.cells[3].replaceChildren(stateBadge(car.state));
    }
    setText(ref.cells[7], car.last_seen ? fmtAgo(car.last_seen) : "never");
    if (car.last_seen) ref.cells[7].title = fmtTime(car.last_seen);
  }

  function paintTable(answer) {
    const items = answer.items || [];
    const total = answer.total || 0;
    const same = items.length === rowRefs.length && items.every((c, i) => c.vin === rowRefs[i].vin);
    if (same) {
      items.forEach((car, i) => updateRow(rowRefs[i], car));
    } else if (!items.length) {
      rowRefs = [];
      carsTable.tbody.replaceChildren(
        emptyRow(SORTS.length, query.q || query.state ? "No cars match the search." : "No cars are registered yet."),
      );
    } else {
      const built = items.map(buildRow);
      rowRefs = built.map((b) => b.ref);
      carsTable.tbody.replaceChildren(...built.map((b) => b.tr));
    }
    if (query.offset > 0 && query.offset >= total && total > 0) {
      // the last page emptied meanwhile: go to the new last page
      query.offset = Math.max(0, Math.floor((total - 1) / PAGE_SIZE) * PAGE_SIZE);
      loadTable();
      return;
    }
    const from = items.length ? query.offset + 1 : 0;
    const to = query.offset + items.length;
    setText(
      pageStatus,
      items.length ? `${fmtNumber(from)}–${fmtNumber(to)} of ${fmtNumber(total)}` : `0 of ${fmtNumber(total)}`,
    );
    prev.disabled = query.offset <= 0;
    next.disabled = query.offset + PAGE_SIZE >= total;
  }

  async function loadTable({ quiet = false } = {}) {
    const seq = ++tableSeq;
    if (tableAbort) tableAbort.abort();
    tableAbort = new AbortController();
    const onPageAbort = () => tableAbort && tableAbort.abort();
    abort.signal.addEventListener("abort", onPageAbort, { once: true });
    const params = new URLSearchParams({
      sort: query.sort,
      order: query.order,
      limit: String(PAGE_SIZE),
      offset: String(query.offset),
    });
    if (query.q) params.set("q", query.q);
    if (query.state) params.set("state", query.state);
    if (!quiet) carsTable.node.setAttribute("aria-busy", "true");
    try {
      const answer = await api(`/api/v1/fleet/vehicles?${params}`, { signal: tableAbort.signal });
      if (dead || seq !== tableSeq) return;
      paintTable(answer);
      tableErrors.clear();
    } catch (err) {
      if (!isAbort(err) && !dead && seq === tableSeq) {
        tableErrors.show(err, "Cars: ");
        setText(pageStatus, "Cars could not be loaded");
      }
    } finally {
      abort.signal.removeEventListener("abort", onPageAbort);
      if (seq === tableSeq) carsTable.node.removeAttribute("aria-busy");
    }
  }

  const searchLater = debounce(() => {
    const q = search.value.trim();
    if (q === query.q) return;
    query.q = q;
    query.offset = 0;
    loadTable();
  }, 300);
  search.addEventListener("input", searchLater);
  search.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      searchLater.cancel();
      query.q = search.value.trim();
      query.offset = 0;
      loadTable();
    }
  });
  stateSelect.addEventListener("change", () => {
    query.state = stateSelect.value;
    query.offset = 0;
    loadTable();
  });
  prev.addEventListener("click", () => {
    query.offset = Math.max(0, query.offset - PAGE_SIZE);
    loadTable();
  });
  next.addEventListener("click", () => {
    query.offset += PAGE_SIZE;
    loadTable();
  });
  paintSort();

  // registration
  const registerForm = registerCarForm(() => {
    loadSummary();
    loadTable();
    loadPositions();
  });

  main.replaceChildren(
    h("h1", {}, "Fleet"),
    h("section", { "aria-labelledby": "fleet-counts-h" },
      h("h2", { id: "fleet-counts-h", class: "sr-only" }, "Counts"),
      countErrors.node,
      h("div", { class: "tiles fleet-tiles" }, Object.values(counts).map((t) => t.node)),
    ),
    h("section", { class: "card", "aria-labelledby": "fleet-map-h" },
      h("h2", { id: "fleet-map-h" }, "Map"),
      // the map holds a tab stop per visible group of cars: let keyboard users jump past it
      h("button", { type: "button", class: "skip-map secondary", onclick: () => search.focus() }, "Skip the map to the cars table"),
      mapErrors.node,
      mapEl,
      legend,
      mapInfo,
    ),
    h("section", { class: "card", "aria-labelledby": "fleet-cars-h" },
      h("h2", { id: "fleet-cars-h" }, "Cars"),
      h("div", { class: "toolbar" },
        h("div", { class: "field grow" }, h("label", { for: "fleet-search" }, "Search cars"), search),
        h("div", { class: "field" }, h("label", { for: "fleet-state" }, "State"), stateSelect),
      ),
      tableErrors.node,
      carsTable.node,
      h("div", { class: "pager" }, prev, pageStatus, next),
    ),
    registerForm,
  );

  loadSummary();
  loadTable();
  startMap();
  stops.push(every(5000, loadSummary));
  stops.push(every(15000, () => loadTable({ quiet: true })));

  return () => {
    dead = true;
    abort.abort();
    searchLater.cancel();
    for (const stop of stops) stop();
    if (map) map.remove();
    markers.clear();
  };
}

function registerCarForm(onRegistered) {
  const vin = h("input", {
    id: "reg-vin", name: "vin", required: true, maxlength: "17", autocomplete: "off", spellcheck: "false",
    "aria-describedby": "reg-vin-hint", class: "mono",
  });
  const model = h("input", { id: "reg-model", name: "model", required: true, list: "reg-models", value: KNOWN_MODELS[0], autocomplete: "off" });
  const owner = h("input", { id: "reg-owner", name: "owner", type: "email", required: true, autocomplete: "off" });
  const button = h("button", { type: "submit" }, "Register car");
  const result = h("div", { class: "register-result" });
  const form = h(
    "form",
    { class: "register-form" },
    h("div", { class: "field" }, h("label", { for: "reg-vin" }, "VIN"), vin,
      h("p", { id: "reg-vin-hint", class: "hint muted" }, "17 characters with a valid check digit")),
    h("div", { class: "field" }, h("label", { for: "reg-model" }, "Model"), model,
      h("datalist", { id: "reg-models" }, KNOWN_MODELS.map((m) => h("option", { value: m })))),
    h("div", { class: "field" }, h("label", { for: "reg-owner" }, "Owner email"), owner),
    h("div", { class: "field actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    result.replaceChildren(notice("Registering…", "info"));
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      const car = await api("/api/v1/vehicles", {
        method: "POST",
        body: { vin: vin.value.trim().toUpperCase(), model: model.value.trim(), owner: owner.value.trim() },
      });
      const password = h("code", { "data-testid": "mqtt-password" }, car.mqtt_password);
      const copyStatus = h("span", { role: "status", class: "muted" });
      const copy = h("button", { type: "button", class: "secondary" }, "Copy password");
      copy.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(car.mqtt_password);
          setText(copyStatus, "Copied.");
        } catch {
          setText(copyStatus, "Copying is not allowed here: select the password and copy it by hand.");
        }
      });
      result.replaceChildren(
        notice(`Registered ${car.vin} (${car.model}) for ${car.owner || owner.value}.`, "ok"),
        h("div", { class: "credentials" },
          h("h3", {}, `MQTT credentials of ${car.vin}`),
          h("p", { class: "notice error once", role: "note" },
            "The password is shown only this once: copy it into the car now. It cannot be shown again."),
          h("dl", {},
            h("dt", {}, "MQTT URL"), h("dd", {}, h("code", { "data-testid": "mqtt-url" }, car.mqtt_url)),
            h("dt", {}, "Username"), h("dd", {}, h("code", { "data-testid": "mqtt-username" }, car.mqtt_username)),
            h("dt", {}, "Password"), h("dd", {}, password),
          ),
          h("p", {}, copy, " ", copyStatus),
          h("p", {}, h("a", { href: carHref(car.vin) }, `Open car ${car.vin}`)),
        ),
      );
      vin.value = "";
      onRegistered();
    } catch (err) {
      result.replaceChildren(notice(`The car was not registered: ${errorText(err)}`, "error"));
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "fleet-register-h" },
    h("h2", { id: "fleet-register-h" }, "Register a car"),
    form,
    result,
  );
}

// --- #/cars/:vin/signals ---

let catalogPromise = null;
function catalog() {
  if (!catalogPromise) {
    catalogPromise = api("/api/v1/signals?limit=2000")
      .then((rows) => new Map(rows.map((s) => [s.path, s])))
      .catch((err) => {
        catalogPromise = null;
        throw err;
      });
  }
  return catalogPromise;
}

/** Time of day for today's timestamps, date and time for older ones. */
function fmtStamp(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "–";
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

function fmtSignal(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    return Number.isInteger(value) ? value.toLocaleString() : value.toLocaleString(undefined, { maximumFractionDigits: 4 });
  }
  if (Array.isArray(value)) return value.length ? value.join(", ") : "(none)";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function signalsPage(main, { vin }) {
  const abort = new AbortController();
  let dead = false;
  const signals = new Map(); // path -> {value, ts, at (ms)}
  const leaves = new Map(); // path -> {value, ts} elements of the shown tree
  const dirty = new Set();
  let units = new Map();
  let filter = "";
  let structureChanged = false;

  const search = h("input", { id: "signal-search", type: "search", autocomplete: "off", placeholder: "e.g. Speed, Cabin.HVAC, Tire" });
  const live = h("p", { class: "live-state", role: "status" }, "Connecting…");
  const countLine = h("p", { class: "muted" });
  const tree = h("div", { class: "vss-tree", "data-testid": "signal-tree" });
  const errors = errorSlot();
  const expand = h("button", { type: "button", class: "secondary" }, "Expand all");
  const collapse = h("button", { type: "button", class: "secondary" }, "Collapse all");
  const closed = new Set(); // branches the user folded stay folded when the tree is redrawn
  expand.addEventListener("click", () => tree.querySelectorAll("details").forEach((d) => (d.open = true)));
  collapse.addEventListener("click", () => tree.querySelectorAll("details").forEach((d) => (d.open = false)));
  tree.addEventListener(
    "toggle",
    (ev) => {
      const branch = ev.target.dataset && ev.target.dataset.branch;
      if (!branch) return;
      if (ev.target.open) closed.delete(branch);
      else closed.add(branch);
    },
    true,
  );

  function merge(path, entry) {
    const at = Date.parse(entry.ts);
    const old = signals.get(path);
    if (old && old.at > at) return;
    if (!old) structureChanged = true;
    signals.set(path, { value: entry.value, ts: entry.ts, at });
    dirty.add(path);
  }

  function matches(path) {
    if (!filter) return true;
    const p = path.toLowerCase();
    return filter.split(/\s+/).every((word) => p.includes(word));
  }

  function leafNode(path, name) {
    const s = signals.get(path);
    const unit = units.get(path)?.unit;
    const valueEl = h("span", { class: "vss-value" }, fmtSignal(s.value));
    const tsEl = h("time", { class: "vss-ts muted", datetime: s.ts }, fmtStamp(s.ts));
    leaves.set(path, { valueEl, tsEl });
    const info = units.get(path);
    return h(
      "li",
      { class: "vss-leaf", "data-path": path },
      h("span", { class: "vss-name", title: info?.description ? `${path}: ${info.description}` : path }, name),
      h("span", { class: "vss-reading" }, valueEl, unit ? h("span", { class: "vss-unit" }, ` ${unit}`) : null),
      tsEl,
    );
  }

  function rebuild() {
    leaves.clear();
    const paths = [...signals.keys()].filter(matches).sort();
    setText(
      countLine,
      filter
        ? `${paths.length} of ${signals.size} signals match “${search.value.trim()}”`
        : `${signals.size} signals`,
    );
    if (!paths.length) {
      tree.replaceChildren(
        h("p", { class: "muted" }, signals.size ? "No signal matches the search." : "The car has not sent any signal yet."),
      );
      return;
    }
    // nested branches: {children: Map(name -> node), leaves: [[path, name]]}
    const root = { children: new Map(), leaves: [] };
    for (const path of paths) {
      const parts = path.split(".");
      let node = root;
      for (const part of parts.slice(0, -1)) {
        if (!node.children.has(part)) node.children.set(part, { children: new Map(), leaves: [] });
        node = node.children.get(part);
      }
      node.leaves.push([path, parts[parts.length - 1]]);
    }
    const count = (node) => node.leaves.length + [...node.children.values()].reduce((n, c) => n + count(c), 0);
    // a branch whose only content is one branch shows as one line: "Chassis.Axle"
    const squash = (node) => {
      const children = new Map();
      for (const [name, child] of node.children) {
        let label = name;
        let inner = child;
        while (!inner.leaves.length && inner.children.size === 1) {
          const [[nextName, next]] = inner.children.entries();
          label += `.${nextName}`;
          inner = next;
        }
        children.set(label, inner);
        squash(inner);
      }
      node.children = children;
    };
    squash(root);
    const render = (node, prefix) =>
      h(
        "ul",
        {},
        [...node.children.entries()].map(([name, child]) =>
          h(
            "li",
            { class: "vss-branch" },
            h(
              "details",
              { open: !closed.has(prefix + name), "data-branch": prefix + name },
              h("summary", {}, name, h("span", { class: "muted" }, ` · ${count(child)}`)),
              render(child, `${prefix}${name}.`),
            ),
          ),
        ),
        node.leaves.map(([path, name]) => leafNode(path, name)),
      );
    tree.replaceChildren(render(root, ""));
  }

  const paint = perFrame(() => {
    if (dead) return;
    if (structureChanged) {
      structureChanged = false;
      dirty.clear();
      rebuild();
      return;
    }
    for (const path of dirty) {
      const leaf = leaves.get(path);
      const s = signals.get(path);
      if (!leaf || !s) continue;
      setText(leaf.valueEl, fmtSignal(s.value));
      setText(leaf.tsEl, fmtStamp(s.ts));
      leaf.tsEl.setAttribute("datetime", s.ts);
    }
    dirty.clear();
  });

  const refilter = debounce(() => {
    filter = search.value.trim().toLowerCase();
    structureChanged = true;
    paint();
  }, 150);
  search.addEventListener("input", refilter);

  let online = null;
  let streamState = "connecting";
  function paintLive() {
    const link = streamState === "live" ? "Live" : streamState === "reconnecting" ? "Reconnecting…" : streamState === "refused" ? "Live updates refused" : "Connecting…";
    const car = online === null ? "" : online ? " · car online" : " · car offline";
    setText(live, link + car);
    live.className = `live-state ${streamState === "live" ? "is-live" : "is-waiting"}`;
  }

  const feed = stream(
    `/api/v1/vehicles/${encodeURIComponent(vin)}/live`,
    (kind, data) => {
      if (kind === "signals" && data.signals) {
        for (const [path, entry] of Object.entries(data.signals)) merge(path, entry);
        paint();
      } else if (kind === "connectivity") {
        online = !!data.online;
        paintLive();
      }
    },
    (state) => {
      streamState = state;
      paintLive();
    },
  );

  async function load() {
    try {
      const [state, info] = await Promise.all([
        api(`/api/v1/vehicles/${encodeURIComponent(vin)}/state`, { signal: abort.signal }),
        catalog().catch(() => new Map()),
      ]);
      if (dead) return;
      units = info;
      online = !!state.online;
      for (const [path, entry] of Object.entries(state.signals || {})) merge(path, entry);
      structureChanged = true;
      paintLive();
      paint();
      errors.clear();
    } catch (err) {
      if (!isAbort(err) && !dead) {
        errors.show(err);
        setText(countLine, "");
        tree.replaceChildren();
      }
    }
  }

  main.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: carHref(vin) }, `← Car ${vin}`), " · ", h("a", { href: carHref(vin, "/errors") }, "Telemetry errors")),
    h("h1", {}, "Signals"),
    h("p", { class: "muted subtitle" }, "Live values of car ", h("span", { class: "mono" }, vin), " as the platform's twin holds them"),
    errors.node,
    h("div", { class: "card" },
      h("div", { class: "toolbar" },
        h("div", { class: "field grow" }, h("label", { for: "signal-search" }, "Search signals"), search),
        h("div", { class: "field buttons" }, expand, collapse),
      ),
      live,
      countLine,
      tree,
    ),
  );
  load();

  return () => {
    dead = true;
    abort.abort();
    feed.close();
    refilter.cancel();
  };
}

// --- #/cars/:vin/errors ---

function errorsPage(main, { vin }) {
  const abort = new AbortController();
  let dead = false;
  const errors = errorSlot();
  const status = h("p", { role: "status", class: "muted" }, "Loading…");
  const list = table(["At", "Seq", "Path", "Reason"], { caption: `Telemetry errors of ${vin}`, testid: "telemetry-errors" });
  const refresh = h("button", { type: "button", class: "secondary" }, "Refresh");

  async function load() {
    refresh.disabled = true;
    try {
      const rows = await api(`/api/v1/vehicles/${encodeURIComponent(vin)}/telemetry-errors`, { signal: abort.signal });
      if (dead) return;
      errors.clear();
      if (!rows.length) {
        list.tbody.replaceChildren(emptyRow(4, "No telemetry errors: everything this car sent was accepted."));
        setText(status, "No telemetry errors");
      } else {
        list.tbody.replaceChildren(
          ...rows.map((r) =>
            h(
              "tr",
              {},
              h("td", {}, h("time", { datetime: r.at, title: fmtAgo(r.at) }, fmtTime(r.at))),
              h("td", { class: "num" }, r.seq === null || r.seq === undefined ? "–" : String(r.seq)),
              h("td", { class: "mono" }, r.path || "–"),
              h("td", { class: "wrap" }, r.reason || "–"),
            ),
          ),
        );
        setText(status, `${fmtNumber(rows.length)} ${rows.length === 1 ? "error" : "errors"}, newest first · loaded ${new Date().toLocaleTimeString()}`);
      }
    } catch (err) {
      if (!isAbort(err) && !dead) {
        errors.show(err);
        setText(status, "");
      }
    } finally {
      refresh.disabled = false;
    }
  }
  refresh.addEventListener("click", () => {
    delete errors.node.dataset.text;
    load();
  });

  main.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: carHref(vin) }, `← Car ${vin}`), " · ", h("a", { href: carHref(vin, "/signals") }, "Signals")),
    h("h1", {}, "Telemetry errors"),
    h("p", { class: "muted subtitle" }, "Signals the platform refused from car ", h("span", { class: "mono" }, vin), " (unknown path, wrong type, out of range …)."),
    errors.node,
    h("div", { class: "card" }, h("div", { class: "toolbar center" }, refresh, status), list.node),
  );
  load();
  return () => {
    dead = true;
    abort.abort();
  };
}

// --- #/ingest ---

function okText(part) {
  if (!part) return { text: "Unknown", ok: null };
  return part.ok ? { text: "OK", ok: true } : { text: "Failing", ok: false };
}

function ingestPage(main) {
  const abort = new AbortController();
  let dead = false;
  const overall = h("p", { class: "health-overall", role: "status", "data-testid": "health-status" }, "Loading…");
  const tiles = {
    messages: tile("Messages / s", "ingest-messages"),
    signals: tile("Signals / s", "ingest-signals"),
    queue: tile("Queue depth", "ingest-queue"),
    ingest: tile("Ingest", "ingest-state"),
    database: tile("Database", "database-state"),
    broker: tile("Broker", "broker-state"),
    cars: tile("Cars online", "cars-online"),
    stations: tile("Stations online", "stations-connected"),
  };
  const rejected = table(["Reason", "Rejected signals"], { caption: "Rejected signals by reason", testid: "rejected-signals" });
  const counters = table(["Counter", "Value"], { caption: "Counters", testid: "ingest-counters" });
  const updated = h("p", { class: "muted" });
  const errors = errorSlot();
  let rejectedKey = "";
  let countersKey = "";

  function paintHealth(body, httpStatus) {
    const ok = body.status === "ok";
    setText(
      overall,
      ok
        ? "All systems OK"
        : `Failing (HTTP ${httpStatus}): ${["database", "broker", "ingest"]
            .filter((k) => body[k] && !body[k].ok)
            .map((k) => `${k} — ${body[k].reason || "no reason given"}`)
            .join("; ") || body.status}`,
    );
    overall.className = `health-overall ${ok ? "health-ok" : "health-fail"}`;
    const ing = body.ingest || {};
    setText(tiles.messages.value, fmtNumber(ing.messages_per_s, 1));
    setText(tiles.signals.value, fmtNumber(ing.signals_per_s, 1));
    setText(tiles.queue.value, fmtNumber(ing.queue_depth));
    setText(tiles.queue.detail, ing.last_commit_ms ? `last commit ${fmtAgo(new Date(ing.last_commit_ms).toISOString())}` : "no commit yet");
    for (const [key, t, extra] of [
      ["ingest", tiles.ingest, ""],
      ["database", tiles.database, body.database?.backend ? `backend ${body.database.backend}` : ""],
      ["broker", tiles.broker, body.broker?.url || ""],
    ]) {
      const part = body[key];
      const { text, ok: good } = okText(part);
      setText(t.value, `${good === false ? "✕" : good ? "✓" : "?"} ${text}`);
      t.node.classList.toggle("tile-ok", good === true);
      t.node.classList.toggle("tile-fail", good === false);
      setText(t.detail, part && part.reason ? part.reason : extra);
    }
    const v = body.vehicles || {};
    setText(tiles.cars.value, `${fmtNumber(v.online)} of ${fmtNumber(v.registered)}`);
    const o = body.ocpp || {};
    setText(tiles.stations.value, fmtNumber(o.connected));
    setText(tiles.stations.detail, o.writes_failing ? "⚠ charging data is not being written" : "");

    const reasons = Object.entries(ing.rejected_signals_by_reason || {}).sort((a, b) => b[1] - a[1]);
    const rKey = JSON.stringify(reasons);
    if (rKey !== rejectedKey) {
      rejectedKey = rKey;
      rejected.tbody.replaceChildren(
        ...(reasons.length
          ? reasons.map(([reason, n]) => h("tr", {}, h("td", {}, reason.replaceAll("_", " ")), h("td", { class: "num" }, fmtNumber(n))))
          : [emptyRow(2, "No signals rejected.")]),
      );
    }
    const counts = [
      ...Object.entries(ing.counters || {}).map(([k, n]) => [`ingest: ${k.replaceAll("_", " ")}`, n]),
      ...Object.entries(body.broker?.counters || {}).map(([k, n]) => [`broker: ${k.replaceAll("_", " ")}`, n]),
      ...Object.entries(body.broker?.embedded || {}).map(([k, n]) => [`embedded broker: ${k.replaceAll("_", " ")}`, n]),
      ...Object.entries(body.commands || {}).map(([k, n]) => [`commands: ${k.replaceAll("_", " ")}`, n]),
    ];
    const cKey = JSON.stringify(counts);
    if (cKey !== countersKey) {
      countersKey = cKey;
      counters.tbody.replaceChildren(
        ...(counts.length
          ? counts.map(([k, n]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, typeof n === "number" ? fmtNumber(n) : String(n))))
          : [emptyRow(2, "No counters yet.")]),
      );
    }
    setText(updated, `Updated ${new Date().toLocaleTimeString()} · version ${body.version || "?"}`);
  }

  async function load() {
    let response;
    try {
      // fetched by hand: a failing platform answers 503 with the same body, which is the news to show
      response = await fetch("/api/v1/health", { headers: { Accept: "application/json" }, signal: abort.signal, cache: "no-store" });
    } catch (err) {
      if (isAbort(err) || dead) return;
      errors.show(new ApiError(0, "the platform cannot be reached; check your connection"));
      setText(overall, "Unknown: the platform cannot be reached");
      overall.className = "health-overall health-fail";
      return;
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (dead) return;
    if (!body || typeof body !== "object" || !("status" in body)) {
      errors.show(new ApiError(response.status, `the health check answered ${response.status} without a report`));
      return;
    }
    errors.clear();
    paintHealth(body, response.status);
  }

  main.replaceChildren(
    h("h1", {}, "Ingest health"),
    errors.node,
    overall,
    h("div", { class: "tiles ingest-tiles" }, Object.values(tiles).map((t) => t.node)),
    updated,
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "ingest-rejected-h" },
        h("h2", { id: "ingest-rejected-h" }, "Rejected signals by reason"),
        rejected.node),
      h("section", { class: "card", "aria-labelledby": "ingest-counters-h" },
        h("h2", { id: "ingest-counters-h" }, "Counters"),
        counters.node),
    ),
  );
  load();
  const stop = every(2000, load);
  return () => {
    dead = true;
    stop();
    abort.abort();
  };
}

// --- #/charging ---

const CONNECTOR_SYMBOLS = {
  Available: "○",
  Preparing: "◔",
  Charging: "⚡",
  SuspendedEV: "❚❚",
  SuspendedEVSE: "❚❚",
  Finishing: "◕",
  Occupied: "●",
  Reserved: "◆",
  Unavailable: "✕",
  Faulted: "⚠",
};

const STATION_STATES = {
  online: { word: "Online", symbol: "●" },
  offline: { word: "Offline", symbol: "○" },
  faulted: { word: "Faulted", symbol: "⚠" },
};

function chargingPage(main) {
  const abort = new AbortController();
  let dead = false;
  const stops = [];
  const stations = new Map(); // id -> {data, refs}
  const sessions = new Map(); // `${station}/${tx}` -> {data, refs}
  const dirtyStations = new Set();
  const dirtySessions = new Set();
  let tags = [];
  let polling = null;

  const stationErrors = errorSlot();
  const sessionErrors = errorSlot();
  const liveLine = h("p", { class: "live-state", role: "status" }, "Connecting to live updates…");
  const stationTable = table(["Station", "Status", "Connectors", "Details", "Last heartbeat", "Remote control"], {
    caption: "Stations",
    testid: "stations-table",
    stack: true, // one card per station on phones
  });
  const sessionTable = table(
    ["Status", "Station", "EVSE", "Car or id tag", "Started", "Duration", "Energy", "Power", "Cost"],
    { caption: "Charging sessions, active first", testid: "sessions-table" },
  );
  const sessionsInfo = h("p", { class: "muted" });
  const sessionResult = h("div", { class: "station-result", "data-testid": "session-result" });
  const tagList = h("datalist", { id: "charging-tags" });

  function stationState(data) {
    if (!data.online) return "offline";
    return (data.connectors || []).some((c) => c.status === "Faulted") ? "faulted" : "online";
  }

  function connectorsNode(data) {
    const list = (data.connectors || []).filter((c) => c.evse_id > 0);
    if (!list.length) return h("span", { class: "muted" }, "none reported");
    return h(
      "ul",
      { class: "connectors" },
      list.map((c) =>
        h(
          "li",
          {
            class: `connector connector-${String(c.status || "unknown").toLowerCase()}`,
            "data-testid": `connector-${data.id}-${c.evse_id}-${c.connector_id}`,
          },
          h("span", { "aria-hidden": "true" }, `${CONNECTOR_SYMBOLS[c.status] || "?"} `),
          `EVSE ${c.evse_id}${c.connector_id > 1 ? `/${c.connector_id}` : ""}: ${c.status || "unknown"}`,
          c.status === "Faulted" && c.error_code && c.error_code !== "NoError" ? ` (${c.error_code})` : "",
        ),
      ),
    );
  }

  function paintStation(entry) {
    const { data, refs } = entry;
    const state = stationState(data);
    const s = STATION_STATES[state];
    refs.status.replaceChildren(h("span", { class: `sstate sstate-${state}` }, h("span", { "aria-hidden": "true" }, `${s.symbol} `), s.word));
    refs.connectors.replaceChildren(connectorsNode(data));
    setText(refs.heartbeat, data.last_heartbeat ? fmtAgo(data.last_heartbeat) : "never");
    if (data.last_heartbeat) refs.heartbeat.title = fmtTime(data.last_heartbeat);
    const evses = [...new Set((data.connectors || []).filter((c) => c.evse_id > 0).map((c) => c.evse_id))].sort((a, b) => a - b);
    const have = [...refs.evse.options].slice(1).map((o) => Number(o.value));
    if (JSON.stringify(have) !== JSON.stringify(evses)) {
      const keep = refs.evse.value;
      refs.evse.replaceChildren(h("option", { value: "" }, "Any free"), ...evses.map((e) => h("option", { value: String(e) }, `EVSE ${e}`)));
      refs.evse.value = evses.includes(Number(keep)) ? keep : "";
    }
  }

  function stationRow(data) {
    const id = data.id;
    const slug = id.replace(/[^A-Za-z0-9_-]/g, "_");
    const input = h("input", {
      id: `start-who-${slug}`,
      list: "charging-tags",
      autocomplete: "off",
      spellcheck: "false",
      class: "mono",
    });
    const evse = h("select", { id: `start-evse-${slug}` }, h("option", { value: "" }, "Any free"));
    const start = h("button", { type: "submit", "aria-label": `Start charging on ${id}` }, "Start charging");
    const stop = h("button", { type: "button", class: "secondary", "aria-label": `Stop charging on ${id}` }, "Stop charging");
    const result = h("div", { class: "station-result", "data-testid": `station-result-${id}` });
    const form = h(
      "form",
      { class: "start-form", "aria-label": `Start charging on ${id}` },
      h("div", { class: "field" }, h("label", { for: `start-who-${slug}` }, "Car VIN or id tag"), input),
      h("div", { class: "field evse" }, h("label", { for: `start-evse-${slug}` }, "EVSE"), evse),
      h("div", { class: "field buttons" }, start, stop),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      remoteStart(id, input.value.trim(), evse.value, start, result);
    });
    stop.addEventListener("click", () => remoteStop(id, null, stop, result));
    const refs = {
      status: h("td", { role: "cell", "data-label": "Status" }),
      connectors: h("td", { role: "cell", class: "wrap", "data-label": "Connectors" }),
      heartbeat: h("td", { role: "cell", "data-label": "Last heartbeat" }),
      evse,
    };
    const tr = h(
      "tr",
      { role: "row", "data-testid": `station-${id}` },
      h("th", { scope: "row", role: "rowheader", class: "mono station-id" }, id),
      refs.status,
      refs.connectors,
      h("td", { role: "cell", class: "wrap small", "data-label": "Details" },
        [data.protocol, [data.vendor, data.model].filter(Boolean).join(" ")].filter(Boolean).join(" · ") || "–",
        data.tariff ? h("div", { class: "muted" }, `tariff ${data.tariff}`) : null,
        data.owner ? h("div", { class: "muted" }, `home charger of ${data.owner}`) : null),
      refs.heartbeat,
      h("td", { role: "cell", class: "actions", "data-label": "Remote control" }, form, result),
    );
    return { tr, refs };
  }

  function isVinLike(text) {
    return /^[A-HJ-NPR-Z0-9]{17}$/i.test(text);
  }

  async function remoteStart(id, who, evse, button, result) {
    if (!who) {
      result.replaceChildren(notice(`Enter a car VIN or an id tag to start charging on ${id}.`, "error"));
      return;
    }
    const tag = tags.find((t) => t.tag === who);
    const body = tag && tag.kind !== "vin" ? { id_tag: who } : isVinLike(who) ? { vin: who.toUpperCase() } : { id_tag: who };
    if (evse) body.evse_id = Number(evse);
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    result.replaceChildren(notice(`Starting charging on ${id} for ${who}…`, "info"));
    try {
      const answer = await api(`/api/v1/stations/${encodeURIComponent(id)}/remote-start`, { method: "POST", body, signal: abort.signal });
      if (dead) return;
      const accepted = answer.status === "Accepted";
      result.replaceChildren(
        accepted
          ? notice(`Start on ${id}: the station accepted it (${who}).`, "ok")
          : notice(`Start on ${id}: the station answered ${answer.status}.`, "error"),
      );
      if (accepted) scheduleSessions();
    } catch (err) {
      if (!isAbort(err) && !dead) result.replaceChildren(notice(`Start on ${id} failed: ${errorText(err)}`, "error"));
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  async function remoteStop(id, transactionId, button, result) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    const what = transactionId ? `session ${transactionId} on ${id}` : `charging on ${id}`;
    result.replaceChildren(notice(`Stopping ${what}…`, "info"));
    try {
      const answer = await api(`/api/v1/stations/${encodeURIComponent(id)}/remote-stop`, {
        method: "POST",
        body: transactionId ? { transaction_id: transactionId } : {},
        signal: abort.signal,
      });
      if (dead) return;
      const accepted = answer.status === "Accepted";
      const tx = answer.detail?.transaction_id;
      result.replaceChildren(
        accepted
          ? notice(`Stop on ${id}: the station accepted it${tx ? ` (transaction ${tx})` : ""}.`, "ok")
          : notice(`Stop on ${id}: the station answered ${answer.status}.`, "error"),
      );
      if (accepted) scheduleSessions();
    } catch (err) {
      if (!isAbort(err) && !dead) result.replaceChildren(notice(`Stop on ${id} failed: ${errorText(err)}`, "error"));
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  async function loadStations() {
    try {
      const rows = await api("/api/v1/stations", { signal: abort.signal });
      if (dead) return;
      stationErrors.clear();
      const ids = new Set(rows.map((r) => r.id));
      let order = false;
      for (const data of rows) {
        const entry = stations.get(data.id);
        if (entry) {
          entry.data = data;
          paintStation(entry);
        } else {
          const built = stationRow(data);
          const fresh = { data, refs: built.refs, tr: built.tr };
          stations.set(data.id, fresh);
          paintStation(fresh);
          order = true;
        }
      }
      for (const id of [...stations.keys()]) {
        if (!ids.has(id)) {
          stations.get(id).tr.remove();
          stations.delete(id);
        }
      }
      if (order || stationTable.tbody.querySelector("tr.empty")) {
        const sorted = [...stations.values()].sort((a, b) => a.data.id.localeCompare(b.data.id));
        stationTable.tbody.replaceChildren(...(sorted.length ? sorted.map((e) => e.tr) : [emptyRow(6, "No stations are registered yet.")]));
      }
    } catch (err) {
      if (!isAbort(err) && !dead) stationErrors.show(err, "Stations: ");
    }
  }

  async function loadTags() {
    try {
      tags = await api("/api/v1/id-tags", { signal: abort.signal });
      if (dead) return;
      tagList.replaceChildren(
        ...tags
          .filter((t) => !t.blocked)
          .map((t) => h("option", { value: t.tag }, t.kind === "vin" ? `car ${t.tag}${t.owner ? ` · ${t.owner}` : ""}` : `${t.kind} card${t.owner ? ` · ${t.owner}` : ""}`)),
      );
    } catch (err) {
      if (!isAbort(err)) console.warn("id tags not loaded", err);
    }
  }

  function sessionKey(station, tx) {
    return `${station}/${tx}`;
  }

  function paintSession(entry) {
    const { data, refs } = entry;
    const active = data.status === "active";
    refs.badge.replaceChildren(
      h("span", { class: active ? "sess sess-active" : "sess sess-ended" }, h("span", { "aria-hidden": "true" }, active ? "⚡ " : "✓ "), active ? "Active" : "Ended"),
    );
    const duration = active ? (Date.now() - Date.parse(data.start)) / 1000 : data.duration_s;
    setText(refs.duration, fmtDuration(duration));
    setText(refs.energy, data.energy_wh === null || data.energy_wh === undefined ? "–" : `${fmtNumber(data.energy_wh / 1000, 2)} kWh`);
    setText(refs.power, active && data.power_w !== null && data.power_w !== undefined ? `${fmtNumber(data.power_w / 1000, 1)} kW` : "–");
    setText(refs.cost, data.cost !== null && data.cost !== undefined ? `${data.cost}${data.currency ? ` ${data.currency}` : ""}` : "–");
    setText(refs.reason, !active && data.stop_reason ? data.stop_reason : "");
    refs.stop.hidden = !active;
  }

  function sessionRow(data) {
    const who = data.vin
      ? h("a", { href: carHref(data.vin), class: "mono" }, data.vin)
      : h("span", { class: "mono" }, data.id_tag || "–");
    const stop = h("button", {
      type: "button",
      class: "secondary small",
      "aria-label": `Stop session ${data.transaction_id} on ${data.station}`,
    }, "Stop");
    stop.addEventListener("click", () => remoteStop(data.station, data.transaction_id, stop, sessionResult));
    const refs = {
      badge: h("span"),
      duration: h("td", { class: "num" }),
      energy: h("td", { class: "num" }),
      power: h("td", { class: "num" }),
      cost: h("td", { class: "num" }),
      reason: h("span", { class: "muted small stop-reason" }),
      stop,
    };
    const tr = h(
      "tr",
      {},
      h("td", { class: "sess-status" }, refs.badge, " ", stop, refs.reason),
      h("td", { class: "mono" }, data.station),
      h("td", { class: "num" }, String(data.evse_id)),
      h("td", {}, who),
      h("td", { title: fmtTime(data.start) }, fmtShort(data.start)),
      refs.duration,
      refs.energy,
      refs.power,
      refs.cost,
    );
    return { tr, refs };
  }

  let sessionsSeq = 0;
  async function loadSessions() {
    const seq = ++sessionsSeq;
    try {
      const [active, ended] = await Promise.all([
        api("/api/v1/charging-sessions?status=active&limit=500", { signal: abort.signal }),
        api("/api/v1/charging-sessions?status=ended&limit=50", { signal: abort.signal }),
      ]);
      if (dead || seq !== sessionsSeq) return;
      sessionErrors.clear();
      sessions.clear();
      const rows = [...active, ...ended].map((data) => {
        const built = sessionRow(data);
        const entry = { data, refs: built.refs, tr: built.tr };
        sessions.set(sessionKey(data.station, data.transaction_id), entry);
        paintSession(entry);
        return built.tr;
      });
      sessionTable.tbody.replaceChildren(...(rows.length ? rows : [emptyRow(9, "No charging sessions yet.")]));
      setText(sessionsInfo, `${fmtNumber(active.length)} active · the ${fmtNumber(ended.length)} most recent ended sessions below them`);
    } catch (err) {
      if (!isAbort(err) && !dead) sessionErrors.show(err, "Sessions: ");
    }
  }
  const scheduleSessions = debounce(loadSessions, 800);

  const paint = perFrame(() => {
    if (dead) return;
    for (const id of dirtyStations) {
      const entry = stations.get(id);
      if (entry) paintStation(entry);
    }
    dirtyStations.clear();
    for (const key of dirtySessions) {
      const entry = sessions.get(key);
      if (entry) paintSession(entry);
    }
    dirtySessions.clear();
  });

  function onEvent(kind, data) {
    const entry = stations.get(data.station_id);
    if (kind === "station") {
      if (!entry) return scheduleStations();
      entry.data.online = !!data.online;
      dirtyStations.add(data.station_id);
    } else if (kind === "connector") {
      if (!entry) return scheduleStations();
      const list = entry.data.connectors || (entry.data.connectors = []);
      let c = list.find((x) => x.evse_id === data.evse_id && x.connector_id === data.connector_id);
      if (!c) {
        c = { evse_id: data.evse_id, connector_id: data.connector_id };
        list.push(c);
        list.sort((a, b) => a.evse_id - b.evse_id || a.connector_id - b.connector_id);
      }
      c.status = data.status;
      if (data.status !== "Faulted") c.error_code = null;
      c.updated_at = new Date().toISOString();
      dirtyStations.add(data.station_id);
    } else if (kind === "session") {
      const key = sessionKey(data.station_id, data.transaction_id);
      const s = sessions.get(key);
      if (data.status === "updated" && s) {
        for (const field of ["energy_wh", "power_w", "cost"]) if (data[field] !== undefined) s.data[field] = data[field];
        dirtySessions.add(key);
      } else {
        scheduleSessions();
      }
    }
    paint();
  }
  const scheduleStations = debounce(loadStations, 800);

  function startPolling(reason) {
    if (polling) return;
    setText(liveLine, `${reason}: refreshing every 10 s instead.`);
    liveLine.className = "live-state is-waiting";
    polling = every(10000, async () => {
      await loadStations();
      await loadSessions();
    });
    stops.push(polling);
  }

  const feed = stream("/api/v1/stations/live", onEvent, (state, code) => {
    if (dead) return;
    if (state === "live") {
      setText(liveLine, "Live: station and connector changes show as they happen.");
      liveLine.className = "live-state is-live";
    } else if (state === "refused") {
      startPolling(`Live updates are not available (the platform answered ${code})`);
    } else {
      setText(liveLine, "Live updates interrupted: reconnecting…");
      liveLine.className = "live-state is-waiting";
      if (state === "reconnecting") {
        // catch up with what happened while the stream was down
        scheduleStations();
        scheduleSessions();
      }
    }
  });

  // "5 min ago" and active sessions' durations move on
  stops.push(
    every(30000, async () => {
      for (const id of stations.keys()) dirtyStations.add(id);
      for (const [key, entry] of sessions) if (entry.data.status === "active") dirtySessions.add(key);
      paint();
    }),
  );

  main.replaceChildren(
    h("h1", {}, "Charging"),
    liveLine,
    tagList,
    h("section", { class: "card", "aria-labelledby": "charging-stations-h" },
      h("h2", { id: "charging-stations-h" }, "Stations"),
      h("p", { class: "muted" }, "Start: give a car's VIN (the car must be plugged in) or an id tag; stop ends the station's active session."),
      stationErrors.node,
      stationTable.node,
    ),
    h("section", { class: "card", "aria-labelledby": "charging-sessions-h" },
      h("h2", { id: "charging-sessions-h" }, "Sessions"),
      sessionsInfo,
      sessionResult,
      sessionErrors.node,
      sessionTable.node,
    ),
  );
  stationTable.tbody.replaceChildren(emptyRow(6, "Loading stations…"));
  sessionTable.tbody.replaceChildren(emptyRow(9, "Loading sessions…"));
  loadTags();
  loadStations();
  loadSessions();

  return () => {
    dead = true;
    abort.abort();
    feed.close();
    scheduleSessions.cancel();
    scheduleStations.cancel();
    for (const stop of stops) stop();
  };
}

// --- #/sites and #/sites/:id: smart charging ---

function flatLimits(node, depth = 0, out = []) {
  out.push({ node, depth });
  for (const c of node.circuits || []) flatLimits(c, depth + 1, out);
  return out;
}

function limitWords(node) {
  const caps = node.phase_max_a ? ` · phase caps A ${fmtNumber(node.phase_max_a[0])} / B ${fmtNumber(node.phase_max_a[1])} / C ${fmtNumber(node.phase_max_a[2])} A` : "";
  return `${amps(node.max_a)} per phase${caps}`;
}

function sitesPage(main) {
  const abort = new AbortController();
  let dead = false;
  const errors = errorSlot();
  const sitesTable = table(["Site", "Name", "Owner", "Objective", "Tariff", "Connection limit", "Stations"], {
    caption: "Sites",
    testid: "sites-table",
  });
  sitesTable.tbody.replaceChildren(emptyRow(7, "Loading sites…"));

  async function load() {
    try {
      const sites = await api("/api/v1/sites", { signal: abort.signal });
      if (dead) return;
      errors.clear();
      sitesTable.tbody.replaceChildren(
        ...(sites.length
          ? sites.map((s) => {
              const online = s.stations.filter((w) => w.online).length;
              return h("tr", {},
                h("td", {}, h("a", { href: `#/sites/${encodeURIComponent(s.id)}`, class: "mono" }, s.id)),
                h("td", {}, s.name),
                h("td", {}, s.owner || "–"),
                h("td", {}, objectiveWords(s.objective)),
                h("td", {}, s.tariff || "–"),
                h("td", { class: "num" }, amps(s.limits.max_a)),
                h("td", { class: "num" }, `${fmtNumber(s.stations.length)} (${fmtNumber(online)} online)`));
            })
          : [emptyRow(7, "No sites yet: create one below.")]),
      );
    } catch (err) {
      if (!isAbort(err) && !dead) errors.show(err, "Sites: ");
    }
  }

  // a new site
  const id = field("site-id", "Site id", h("input", { type: "text", maxlength: "48", autocomplete: "off", class: "mono" }),
    "Letters, digits and _-.: e.g. depot-north");
  const name = field("site-name", "Name", h("input", { type: "text", maxlength: "100", autocomplete: "off" }));
  const limit = field("site-limit", "Connection limit (A per phase)", h("input", { type: "number", min: "1", step: "1", value: "63" }));
  const objective = field("site-objective", "Objective", h("select", {}, OBJECTIVES.map(([k, l]) => h("option", { value: k }, l))));
  objective.control.value = "max_energy";
  const tariff = field("site-tariff", "Tariff", h("select", {}, h("option", { value: "" }, "No tariff")));
  const zone = field("site-zone", "Time zone", h("input", { type: "text", value: browserZone(), autocomplete: "off" }));
  const msg = h("div", { "aria-live": "polite" });
  const create = h("button", { type: "submit" }, "Create site");
  const form = h("form", { class: "register-form", "aria-label": "Create a site", novalidate: true },
    id.node, name.node, limit.node, objective.node, tariff.node, zone.node, h("div", { class: "field actions" }, create));
  const fields = { id, name, limits: limit, objective, tariff, timezone: zone };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(fields, msg);
    create.disabled = true;
    try {
      const made = await api("/api/v1/sites", {
        method: "POST",
        body: {
          id: id.control.value.trim(),
          name: name.control.value.trim() || id.control.value.trim(),
          limits: { id: "connection", max_a: Number(limit.control.value), circuits: [] },
          objective: objective.control.value,
          tariff: tariff.control.value || null,
          timezone: zone.control.value.trim() || "UTC",
        },
        signal: abort.signal,
      });
      location.hash = `#/sites/${encodeURIComponent(made.id)}`;
    } catch (err) {
      if (!isAbort(err) && !dead) showErrors(err, fields, msg);
    } finally {
      create.disabled = false;
    }
  });
  api("/api/v1/tariffs", { signal: abort.signal })
    .then((tariffs) => tariff.control.append(...tariffs.map((t) => h("option", { value: t.name }, t.name))))
    .catch((err) => isAbort(err) || console.warn("tariffs not loaded", err));

  main.replaceChildren(
    h("h1", {}, "Sites"),
    h("p", { class: "muted" }, "Smart charging: each site shares its connection between the cars charging there."),
    errors.node,
    h("section", { class: "card", "aria-labelledby": "sites-h" }, h("h2", { id: "sites-h" }, "Sites"), sitesTable.node),
    h("section", { class: "card", "aria-labelledby": "site-new-h" }, h("h2", { id: "site-new-h" }, "New site"), form, msg),
  );
  load();
  const stop = every(15000, load);
  return () => {
    dead = true;
    abort.abort();
    stop();
  };
}

async function sitePage(main, { id }) {
  const abort = new AbortController();
  const enc = encodeURIComponent(id);
  let dead = false;
  let [site, stations, tariffs] = await Promise.all([
    api(`/api/v1/sites/${enc}`, { signal: abort.signal }),
    api("/api/v1/stations", { signal: abort.signal }),
    api("/api/v1/tariffs", { signal: abort.signal }),
  ]);
  document.title = `${site.name} · Sites · smartev`;

  // --- plan
  const planErrors = errorSlot();
  const planInfo = h("p", { class: "muted", "data-testid": "plan-info" }, "Loading the plan…");
  const chart = planChart({ label: `Plan of ${site.name}: load per phase against the site limit, with the price`, testid: "site-plan-chart" });
  const sessionsTable = table(
    ["Station", "Car", "Control", "Now", "Sent", "Applied", "Wanted", "Planned", "Departure", "Why"],
    { caption: "Planned sessions", testid: "plan-sessions", stack: true },
  );
  sessionsTable.tbody.replaceChildren(emptyRow(10, "Loading…"));

  function sessionRow(s) {
    const [symbol, words] = nowWords(s);
    const cell = (label, content, cls = "") => h("td", { role: "cell", "data-label": label, class: cls || null }, content);
    return h("tr", { role: "row", "data-testid": `plan-session-${s.session_id}` },
      cell("Station", h("span", { class: "mono" }, `${s.station_id} · EVSE ${s.evse_id}`)),
      cell("Car", s.vin ? h("a", { href: carHref(s.vin), class: "mono" }, s.vin) : "–"),
      cell("Control", h("span", { class: `plan-control plan-control-${s.control.replace(/\s+/g, "-")}` },
        h("span", { "aria-hidden": "true" }, `${symbol} `), s.control === "planned" ? (s.current_a > 0 ? "Planned" : "Paused") : words)),
      cell("Now", amps(s.current_a), "num"),
      cell("Sent", amps(s.sent_a), "num"),
      cell("Applied", amps(s.applied_a, 1), "num"),
      cell("Wanted", kwh(s.energy_wanted_kwh), "num"),
      cell("Planned", kwh(s.energy_planned_kwh), "num"),
      cell("Departure", h("span", { title: fmtTime(s.departure) }, fmtShort(s.departure))),
      cell("Why", reasonsText(s.reasons), "wrap"));
  }

  async function loadPlan() {
    try {
      const plan = await api(`/api/v1/sites/${enc}/plan`, { signal: abort.signal });
      if (dead) return;
      planErrors.clear();
      setText(planInfo,
        `Planned ${new Date(plan.planned_at).toLocaleTimeString()} by ${plan.solver} in ${fmtNumber(plan.solve_s * 1000)} ms · ` +
        `${objectiveWords(plan.objective)} · limit ${plan.limit_a.map((a, i) => `${"ABC"[i]} ${fmtNumber(a)}`).join(" / ")} A · ` +
        `${fmtNumber(plan.sessions.length)} ${plan.sessions.length === 1 ? "session" : "sessions"}`);
      chart.update({ start: plan.start, period_s: plan.period_s, prices: plan.prices, lines: sitePlanLines(plan) });
      sessionsTable.tbody.replaceChildren(
        ...(plan.sessions.length ? plan.sessions.map(sessionRow) : [emptyRow(10, "No car is charging at this site.")]),
      );
    } catch (err) {
      if (!isAbort(err) && !dead) planErrors.show(err, "Plan: ");
    }
  }

  // --- limits and settings
  const limitsTree = h("div", { class: "limit-tree", "data-testid": "limit-tree" });
  const settingsBox = h("div");
  const settingsMsg = h("div", { "aria-live": "polite" });

  function drawTree() {
    const hanging = (nodeId, root) =>
      site.stations.filter((w) => (w.circuit || null) === (root ? null : nodeId) || (root && w.circuit === nodeId));
    const li = (node, root) => {
      const here = hanging(node.id, root);
      return h("li", {},
        h("span", { class: "limit-node" }, h("strong", { class: "mono" }, node.id), root ? " (connection)" : "", ` · ${limitWords(node)}`),
        here.length ? h("span", { class: "muted small" }, ` · stations: ${here.map((w) => w.station_id).join(", ")}`) : null,
        (node.circuits || []).length ? h("ul", {}, node.circuits.map((c) => li(c, false))) : null);
    };
    limitsTree.replaceChildren(h("ul", {}, li(site.limits, true)));
  }

  function drawSettings() {
    const f = {
      name: field("set-name", "Name", h("input", { type: "text", maxlength: "100", value: site.name })),
      objective: field("set-objective", "Objective", h("select", {},
        OBJECTIVES.map(([k, l]) => h("option", { value: k, selected: k === site.objective }, l)))),
      tariff: field("set-tariff", "Tariff", h("select", {}, h("option", { value: "" }, "No tariff"),
        tariffs.map((t) => h("option", { value: t.name, selected: t.name === site.tariff }, t.name)))),
      ready_by: field("set-ready", "Ready by (empty: none)", h("input", { type: "time", value: site.ready_by || "" })),
      target_soc: field("set-target", "Default target charge (%)", h("input", { type: "number", min: "1", max: "100", step: "1", value: String(site.target_soc) })),
      default_stay_h: field("set-stay", "Default stay (h)", h("input", { type: "number", min: "0.5", max: "168", step: "0.5", value: String(site.default_stay_h) })),
      default_energy_kwh: field("set-energy", "Default energy (kWh)", h("input", { type: "number", min: "0", max: "500", step: "1", value: String(site.default_energy_kwh) })),
      voltage_v: field("set-voltage", "Voltage (V)", h("input", { type: "number", min: "1", max: "1000", step: "1", value: String(site.voltage_v) })),
      timezone: field("set-zone", "Time zone", h("input", { type: "text", value: site.timezone })),
    };
    const limitFields = flatLimits(site.limits).map(({ node, depth }, i) => ({
      node,
      f: field(`set-limit-${i}`, depth === 0 ? `Connection ${node.id}: max (A)` : `Circuit ${node.id}: max (A)`,
        h("input", { type: "number", min: "0", step: "1", value: String(node.max_a) })),
    }));
    const save = h("button", { type: "submit" }, "Save settings");
    const form = h("form", { class: "register-form", "aria-label": "Site settings", novalidate: true },
      ...Object.values(f).map((x) => x.node), ...limitFields.map((x) => x.f.node),
      h("div", { class: "field actions" }, save));
    const errorFields = { ...f, limits: limitFields[0].f };
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(errorFields, settingsMsg);
      const copy = (node) => ({
        ...node,
        max_a: Number(limitFields.find((x) => x.node === node).f.control.value),
        circuits: (node.circuits || []).map(copy),
      });
      save.disabled = true;
      try {
        site = await api(`/api/v1/sites/${enc}`, {
          method: "PUT",
          signal: abort.signal,
          body: {
            name: f.name.control.value.trim(),
            limits: copy(site.limits),
            objective: f.objective.control.value,
            tariff: f.tariff.control.value || null,
            ready_by: f.ready_by.control.value || null,
            target_soc: Number(f.target_soc.control.value),
            default_stay_h: Number(f.default_stay_h.control.value),
            default_energy_kwh: Number(f.default_energy_kwh.control.value),
            voltage_v: Number(f.voltage_v.control.value),
            timezone: f.timezone.control.value.trim(),
          },
        });
        if (dead) return;
        setText(heading, site.name);
        drawTree();
        settingsMsg.replaceChildren(notice("Saved; the site is re-planned.", "ok"));
        loadPlan();
      } catch (err) {
        if (!isAbort(err) && !dead) showErrors(err, errorFields, settingsMsg);
      } finally {
        save.disabled = false;
      }
    });
    settingsBox.replaceChildren(form);
  }

  // --- stations wiring
  const wiringTable = table(["Station", "Circuit", "Phases", "Max", "Min", "Online", "Controllable", "Remove"], {
    caption: "Stations of the site",
    testid: "site-stations",
    stack: true,
  });
  const wiringMsg = h("div", { "aria-live": "polite" });
  const addBox = h("div");

  function drawWiring() {
    const cell = (label, content, cls = "") => h("td", { role: "cell", "data-label": label, class: cls || null }, content);
    wiringTable.tbody.replaceChildren(
      ...(site.stations.length
        ? site.stations.map((w) => {
            const remove = h("button", { type: "button", class: "secondary small", "aria-label": `Remove ${w.station_id} from the site` }, "Remove");
            remove.addEventListener("click", () => unwire(w.station_id, remove));
            return h("tr", { role: "row", "data-testid": `site-station-${w.station_id}` },
              h("th", { scope: "row", role: "rowheader", class: "mono" }, w.station_id),
              cell("Circuit", w.circuit || `${site.limits.id} (connection)`),
              cell("Phases", w.phases),
              cell("Max", amps(w.max_a), "num"),
              cell("Min", amps(w.min_a), "num"),
              cell("Online", h("span", { class: w.online ? "state-online" : "state-offline" }, w.online ? "Online" : "Offline")),
              cell("Controllable", w.controllable ? "✓ Yes" : `✕ No: ${w.reason || "refuses charging profiles"}`, "wrap"),
              cell("Remove", remove));
          })
        : [emptyRow(8, "No stations in this site yet.")]),
    );
    const wired = new Set(site.stations.map((w) => w.station_id));
    const free = stations.filter((s) => !wired.has(s.id));
    if (!free.length) {
      addBox.replaceChildren(h("p", { class: "muted" }, "Every station you can see is in this site."));
      return;
    }
    const f = {
      station: field("wire-station", "Station", h("select", {}, free.map((s) => h("option", { value: s.id }, `${s.id}${s.online ? "" : " (offline)"}`)))),
      circuit: field("wire-circuit", "Hangs from", h("select", {}, flatLimits(site.limits).map(({ node, depth }) =>
        h("option", { value: depth === 0 ? "" : node.id }, `${"· ".repeat(depth)}${node.id}${depth === 0 ? " (connection)" : ""}`)))),
      phases: field("wire-phases", "Phases", h("select", {}, ["ABC", "A", "B", "C"].map((p) => h("option", { value: p }, p)))),
      max_a: field("wire-max", "Max current (A)", h("input", { type: "number", min: "1", step: "1", value: "32" })),
      min_a: field("wire-min", "Min current (A)", h("input", { type: "number", min: "0", step: "1", value: "6" })),
    };
    const add = h("button", { type: "submit" }, "Add station");
    const form = h("form", { class: "register-form", "aria-label": "Add a station to the site", novalidate: true },
      ...Object.values(f).map((x) => x.node), h("div", { class: "field actions" }, add));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(f, wiringMsg);
      add.disabled = true;
      const stationId = f.station.control.value;
      try {
        site = await api(`/api/v1/sites/${enc}/stations/${encodeURIComponent(stationId)}`, {
          method: "PUT",
          signal: abort.signal,
          body: {
            circuit: f.circuit.control.value || null,
            phases: f.phases.control.value,
            max_a: Number(f.max_a.control.value),
            min_a: Number(f.min_a.control.value),
          },
        });
        if (dead) return;
        drawWiring();
        drawTree();
        wiringMsg.replaceChildren(notice(`${stationId} is in the site now.`, "ok"));
        loadPlan();
      } catch (err) {
        if (!isAbort(err) && !dead) showErrors(err, f, wiringMsg);
        add.disabled = false;
      }
    });
    addBox.replaceChildren(h("h3", {}, "Add a station"), form);
  }

  async function unwire(stationId, button) {
    button.disabled = true;
    try {
      await api(`/api/v1/sites/${enc}/stations/${encodeURIComponent(stationId)}`, { method: "DELETE", signal: abort.signal });
      site = await api(`/api/v1/sites/${enc}`, { signal: abort.signal });
      if (dead) return;
      drawWiring();
      drawTree();
      wiringMsg.replaceChildren(notice(`${stationId} was taken out of the site.`, "ok"));
      loadPlan();
    } catch (err) {
      if (!isAbort(err) && !dead) wiringMsg.replaceChildren(notice(`${stationId}: ${errorText(err)}`, "error"));
      button.disabled = false;
    }
  }

  async function refreshSite() {
    try {
      const fresh = await api(`/api/v1/sites/${enc}`, { signal: abort.signal });
      if (dead) return;
      const before = JSON.stringify(site.stations);
      site = { ...site, stations: fresh.stations };
      if (JSON.stringify(site.stations) !== before && !wiringTable.node.contains(document.activeElement)) drawWiring();
    } catch (err) {
      if (!isAbort(err)) console.warn("site not refreshed", err);
    }
  }

  const heading = h("span", {}, site.name);
  main.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "#/sites" }, "← Sites")),
    h("h1", {}, heading, h("span", { class: "h1-sub muted mono" }, site.id)),
    h("p", { class: "subtitle muted" }, `${objectiveWords(site.objective)}${site.tariff ? ` · tariff ${site.tariff}` : ""}${site.owner ? ` · home of ${site.owner}` : ""}`),
    h("section", { class: "card", "aria-labelledby": "site-plan-h" },
      h("h2", { id: "site-plan-h" }, "Plan"), planInfo, planErrors.node, chart.node,
      h("h3", {}, "Sessions"), sessionsTable.node),
    h("section", { class: "card", "aria-labelledby": "site-stations-h" },
      h("h2", { id: "site-stations-h" }, "Stations"), wiringTable.node, wiringMsg, addBox),
    h("section", { class: "card", "aria-labelledby": "site-limits-h" },
      h("h2", { id: "site-limits-h" }, "Limits and settings"), limitsTree, settingsBox, settingsMsg),
  );
  drawTree();
  drawSettings();
  drawWiring();
  await loadPlan();
  const stop = every(12000, async () => {
    await refreshSite();
    await loadPlan();
  });
  return () => {
    dead = true;
    abort.abort();
    stop();
    chart.destroy();
  };
}
