// Owner app: my cars, one car live (gauge, state, map, commands), its history and charge sessions, settings.
// Contract: /tmp/web-contract.md. Live pages keep a state object, apply events to it and redraw with perFrame,
// touching only text nodes and attributes whose value changed.
import { api, ApiError, stream, webConfig, setToken } from "./api.js";
import { h, notice, fmtNumber, fmtDuration, fmtTime, fmtAgo, perFrame, setText } from "./ui.js";
import { isStaff, navigate, me } from "./app.js";
import {
  amps, browserZone, clearErrors, field, kwh, localInputValue, nowWords, objectiveWords, OBJECTIVES, PHASE_COLOURS,
  planChart, reasonsText, showErrors, sitePlanLines, withOffset,
} from "./plan.js";

// --- VSS paths the pages read ------------------------------------------------------------------------------
const BAT = "Vehicle.Powertrain.TractionBattery";
const AXLE = "Vehicle.Chassis.Axle";
export const VSS = {
  speed: "Vehicle.Speed",
  moving: "Vehicle.IsMoving",
  lat: "Vehicle.CurrentLocation.Latitude",
  lon: "Vehicle.CurrentLocation.Longitude",
  heading: "Vehicle.CurrentLocation.Heading",
  odometer: "Vehicle.TraveledDistance",
  range: "Vehicle.Powertrain.Range",
  soc: `${BAT}.StateOfCharge.Current`,
  batteryTemp: `${BAT}.Temperature.Average`,
  power: `${BAT}.CurrentPower`,
  charging: `${BAT}.Charging.IsCharging`,
  plugged: `${BAT}.Charging.ChargingPort.AnyPosition.IsChargingCableConnected`,
  limit: `${BAT}.Charging.ChargeLimit`,
  ttc: `${BAT}.Charging.TimeToComplete`,
  cabin: "Vehicle.Cabin.HVAC.AmbientAirTemperature",
  target: "Vehicle.Cabin.HVAC.Station.Row1.Driver.Temperature",
  climate: "Vehicle.Cabin.HVAC.IsAirConditioningActive",
  outside: "Vehicle.Exterior.AirTemperature",
  locked: "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked",
  lowVoltage: "Vehicle.LowVoltageBattery.CurrentVoltage",
};
const TYRES = [
  ["front-left", "Front left", `${AXLE}.Row1.Wheel.Left.Tire`],
  ["front-right", "Front right", `${AXLE}.Row1.Wheel.Right.Tire`],
  ["rear-left", "Rear left", `${AXLE}.Row2.Wheel.Left.Tire`],
  ["rear-right", "Rear right", `${AXLE}.Row2.Wheel.Right.Tire`],
];

const FINAL = new Set(["succeeded", "failed", "expired", "rejected"]);
const SVG_NS = "http://www.w3.org/2000/svg";

// --- small helpers -----------------------------------------------------------------------------------------
function errText(err) {
  return err instanceof ApiError ? err.message : String((err && err.message) || err);
}

function num(value) {
  if (typeof value === "boolean") return value ? 1 : 0;
  if (typeof value !== "number" || !Number.isFinite(value)) return null;
  return value;
}

function setAttr(node, name, value) {
  if (value === null || value === undefined) {
    if (node.hasAttribute(name)) node.removeAttribute(name);
    return;
  }
  const text = String(value);
  if (node.getAttribute(name) !== text) node.setAttribute(name, text);
}

function setClass(node, name, on) {
  if (node.classList.contains(name) !== !!on) node.classList.toggle(name, !!on);
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function tsMs(iso) {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? t : 0;
}

function clock(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

function temp(value) {
  const v = num(value);
  return v === null ? "–" : `${fmtNumber(v, 1)} °C`;
}

function km(metres) {
  const v = num(metres);
  return v === null ? "–" : `${fmtNumber(v / 1000, 0)} km`;
}

function money(cost, currency) {
  if (cost === null || cost === undefined || cost === "") return "–";
  const n = Number(cost);
  if (currency && Number.isFinite(n)) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(n);
    } catch {
      /* not an ISO currency: fall through */
    }
  }
  return currency ? `${cost} ${currency}` : String(cost);
}

/** A car's state in one word, from its signals. */
function carState(online, signals) {
  const v = (p) => signals[p] && signals[p].value;
  if (!online) return "offline";
  if (v(VSS.charging)) return "charging";
  if ((num(v(VSS.speed)) || 0) >= 1) return "driving"; // the same rule as the fleet API (vehicles/fleet.py)
  return "parked";
}

const STATE_WORDS = {
  driving: ["➤", "Driving"],
  charging: ["⚡", "Charging"],
  parked: ["P", "Parked"],
  offline: ["○", "Offline"],
};

function connectivityText(online, lastSeen) {
  return online ? "Online" : `Offline · last seen ${fmtAgo(lastSeen)}`;
}

function socLevel(soc) {
  if (soc === null) return "unknown";
  if (soc < 20) return "low";
  if (soc < 50) return "mid";
  return "high";
}

/** An SVG ring gauge (270° arc) for the state of charge: returns {root, update(soc, limit, charging)}. */
function socGauge({ size = "big", label = "State of charge" } = {}) {
  const track = svg("circle", {
    class: "gauge-track", cx: "60", cy: "60", r: "50", pathLength: "100", "stroke-dasharray": "75 100",
  });
  const arc = svg("circle", {
    class: "gauge-arc", cx: "60", cy: "60", r: "50", pathLength: "100", "stroke-dasharray": "0 100",
  });
  const tick = svg("line", { class: "gauge-limit", x1: "60", y1: "4", x2: "60", y2: "18" });
  const tickGroup = svg("g", { class: "gauge-limit-group", visibility: "hidden" }, tick);
  const ring = svg("svg", { viewBox: "0 0 120 120", class: "gauge-svg", "aria-hidden": "true", focusable: "false" },
    svg("g", { transform: "rotate(135 60 60)" }, track, arc), tickGroup);
  const value = h("span", { class: "gauge-value", "data-testid": size === "big" ? "soc" : null }, "–");
  const sub = h("span", { class: "gauge-sub", "aria-hidden": "true" }, "");
  const root = h("div", {
    class: `gauge gauge-${size} level-unknown`,
    role: "meter",
    "aria-label": label,
    "aria-valuemin": "0",
    "aria-valuemax": "100",
  }, ring, h("span", { class: "gauge-centre" }, value, sub));
  function update(soc, limit = null, charging = false) {
    const level = socLevel(soc);
    for (const l of ["unknown", "low", "mid", "high"]) setClass(root, `level-${l}`, l === level);
    setClass(root, "is-charging", charging);
    if (soc === null) {
      setAttr(root, "aria-valuenow", null);
      setAttr(root, "aria-valuetext", "unknown");
      setText(value, "–");
      setText(sub, "");
      setAttr(arc, "stroke-dasharray", "0 100");
      return;
    }
    const rounded = Math.round(soc);
    setAttr(root, "aria-valuenow", rounded);
    const words = [`${rounded} percent`];
    if (level === "low") words.push("low");
    if (charging) words.push("charging");
    setAttr(root, "aria-valuetext", words.join(", "));
    setText(value, `${rounded}%`);
    setText(sub, charging ? "⚡ charging" : level === "low" ? "⚠ low" : "");
    setAttr(arc, "stroke-dasharray", `${(Math.min(Math.max(soc, 0), 100) * 0.75).toFixed(2)} 100`);
    const lim = num(limit);
    if (lim !== null && lim > 0 && lim < 100) {
      setAttr(tickGroup, "visibility", "visible");
      setAttr(tickGroup, "transform", `rotate(${(-135 + 2.7 * lim).toFixed(1)} 60 60)`);
    } else {
      setAttr(tickGroup, "visibility", "hidden");
    }
  }
  return { root, update };
}

const ICONS = {
  lock: ["M6 11h12v9H6z", "M8.5 11V8a3.5 3.5 0 0 1 7 0v3"],
  unlock: ["M6 11h12v9H6z", "M8.5 11V8a3.5 3.5 0 0 1 6.8-1.2"],
  horn: ["M4 10v4h3l5 4V6l-5 4z", "M15.5 9.5a3.5 3.5 0 0 1 0 5", "M18 7a7 7 0 0 1 0 10"],
  plug: ["M9 3v5", "M15 3v5", "M7 8h10v3a5 5 0 0 1-10 0z", "M12 16v5"],
};

/** A small line icon (decorative: hidden from screen readers, the words next to it say the same). */
function icon(name) {
  return svg("svg", { viewBox: "0 0 24 24", class: `o-icon o-icon-${name}`, "aria-hidden": "true", focusable: "false" },
    ...ICONS[name].map((d) => svg("path", { d })));
}

/** Show a symbol (an icon name from ICONS, or a text character) in node, only when it changed. */
function setSymbol(node, symbol) {
  if (node.dataset.symbol === symbol) return;
  node.dataset.symbol = symbol;
  if (!symbol) node.replaceChildren();
  else node.replaceChildren(ICONS[symbol] ? icon(symbol) : symbol);
}

function backLink(href, text) {
  return h("a", { class: "o-back", href }, h("span", { "aria-hidden": "true" }, "← "), text);
}

// --- #/cars -------------------------------------------------------------------------------------------------
async function loadCarList() {
  try {
    const answer = await api("/api/v1/fleet/vehicles?limit=100&sort=vin&order=asc");
    return { total: answer.total, items: answer.items };
  } catch (err) {
    if (!(err instanceof ApiError) || (err.status !== 404 && err.status !== 405)) throw err;
  }
  // Fallback while /fleet/vehicles is not there: the plain list, state read for the first few cars.
  const cars = await api("/api/v1/vehicles");
  const items = cars.slice(0, 100).map((c) => ({ ...c, state: c.online ? null : "offline", soc: null }));
  const wanted = items.slice(0, 30);
  let next = 0;
  async function worker() {
    while (next < wanted.length) {
      const car = wanted[next++];
      try {
        const st = await api(`/api/v1/vehicles/${encodeURIComponent(car.vin)}/state`);
        const s = st.signals || {};
        car.soc = s[VSS.soc] ? num(s[VSS.soc].value) : null;
        car.range_km = s[VSS.range] && num(s[VSS.range].value) !== null ? s[VSS.range].value / 1000 : null;
        car.state = carState(st.online, s);
        car.online = st.online;
        car.last_seen = st.last_seen || car.last_seen;
      } catch {
        /* leave the car without details */
      }
    }
  }
  await Promise.all([worker(), worker(), worker(), worker()]);
  return { total: cars.length, items };
}

function carCard(car) {
  const gauge = socGauge({ size: "small", label: `State of charge, ${car.vin}` });
  const stateSymbol = h("span", { class: "state-symbol", "aria-hidden": "true" });
  const stateWord = h("span", { class: "state-word" });
  const conn = h("span", { class: "conn" });
  const range = h("span", { class: "range" });
  const node = h(
    "li",
    { class: "card car-card" },
    h("a", { class: "car-link", href: `#/cars/${encodeURIComponent(car.vin)}` },
      h("span", { class: "car-model" }, car.model || "Car"),
      " ",
      h("span", { class: "car-vin" }, car.vin)),
    h("div", { class: "car-card-body" },
      gauge.root,
      h("div", { class: "car-card-facts" },
        h("p", { class: "car-state" }, stateSymbol, " ", stateWord),
        h("p", { class: "muted" }, conn),
        h("p", {}, range))),
  );
  function update(c) {
    gauge.update(num(c.soc), null, c.state === "charging");
    const st = c.state || (c.online ? null : "offline");
    const [sym, word] = STATE_WORDS[st] || ["", c.online ? "Online" : "Offline"];
    setText(stateSymbol, sym);
    setText(stateWord, word);
    for (const s of Object.keys(STATE_WORDS)) setClass(node, `car-${s}`, s === st);
    setText(conn, connectivityText(c.online, c.last_seen));
    setClass(conn, "state-online", c.online);
    setClass(conn, "state-offline", !c.online);
    setText(range, num(c.range_km) !== null ? `Range ${fmtNumber(c.range_km, 0)} km` : "");
  }
  update(car);
  return { node, update, car };
}

async function carsPage(main) {
  const status = h("p", { class: "muted", role: "status" });
  const list = h("ul", { class: "car-list" });
  const errors = h("div");
  main.replaceChildren(h("h1", {}, "My cars"), errors, status, list);
  const cards = new Map();
  let timer = null;
  let stopped = false;

  async function refresh(first) {
    let answer;
    try {
      answer = await loadCarList();
    } catch (err) {
      if (first) throw err;
      errors.replaceChildren(notice(`Could not refresh the cars: ${errText(err)}`, "error"));
      return;
    }
    if (stopped) return;
    errors.replaceChildren();
    const { total, items } = answer;
    if (!items.length) {
      list.replaceChildren();
      status.replaceChildren(notice("No cars yet. Ask your operator to register your car.", "info"));
      return;
    }
    status.replaceChildren(
      total > items.length
        ? `Showing the first ${items.length} of ${fmtNumber(total)} cars; the Fleet page lists them all.`
        : `${items.length} ${items.length === 1 ? "car" : "cars"}`,
    );
    const seen = new Set();
    const order = [];
    for (const car of items) {
      seen.add(car.vin);
      let card = cards.get(car.vin);
      if (card) card.update(car);
      else cards.set(car.vin, (card = carCard(car)));
      order.push(card.node);
    }
    for (const [vin, card] of cards) if (!seen.has(vin)) (card.node.remove(), cards.delete(vin));
    order.forEach((node, i) => {
      if (list.children[i] !== node) list.insertBefore(node, list.children[i] || null);
    });
  }

  await refresh(true);
  timer = setInterval(() => refresh(false), 15000);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

// --- #/cars/:vin --------------------------------------------------------------------------------------------
const COMMAND_WORDS = { queued: "pending", delivered: "pending" };

function commandText(label, status, detail) {
  const word = COMMAND_WORDS[status] || status;
  if (word === "pending") return `${label}: pending…`;
  if ((word === "failed" || word === "rejected") && detail) return `${label}: ${word} — ${detail}`;
  return `${label}: ${word}`;
}

function tile(label, testid, extra = {}) {
  const value = h("span", { class: "value", "data-testid": testid }, "–");
  const symbol = h("span", { class: "symbol", "aria-hidden": "true" });
  const note = h("span", { class: "note" });
  const node = h("div", { class: `tile ${extra.class || ""}` },
    h("span", { class: "label" }, label), h("span", { class: "value-row" }, symbol, value), note);
  return { node, value, symbol, note };
}

export async function renderCarPage(main, vin, { extraLinks = [] } = {}) {
  const enc = encodeURIComponent(vin);
  const here = location.hash;
  const [car, initial] = await Promise.all([
    api(`/api/v1/vehicles/${enc}`),
    api(`/api/v1/vehicles/${enc}/state`),
  ]);
  if (location.hash !== here) return null; // the user went on while we waited: do not draw over the next page
  document.title = `${car.model} ${car.vin} · smartev`;

  // state the page draws from
  const sig = {};
  let online = !!initial.online;
  let lastSeen = initial.last_seen || car.last_seen || null;
  let newestTs = null;
  const cleanups = [];
  let gone = false;

  function merge(signals) {
    for (const [path, entry] of Object.entries(signals || {})) {
      const prev = sig[path];
      if (prev && tsMs(prev.ts) > tsMs(entry.ts)) continue;
      sig[path] = entry;
      if (tsMs(entry.ts) > tsMs(newestTs)) newestTs = entry.ts;
    }
    if (tsMs(newestTs) > tsMs(lastSeen)) lastSeen = newestTs;
  }
  merge(initial.signals);
  const v = (path) => (sig[path] ? sig[path].value : null);

  // --- header
  const connSymbol = h("span", { class: "conn-symbol", "aria-hidden": "true" });
  const conn = h("span", { "data-testid": "connectivity" }, "–");
  const liveState = h("span", { class: "live-state muted" }, "");
  const announce = h("span", { class: "sr-only", role: "status" }); // connectivity changes, for screen readers
  const lastUpdate = h("time", { "data-testid": "last-update" }, "–");
  const links = [
    h("a", { href: `#/cars/${enc}/history` }, "History"),
    h("a", { href: `#/cars/${enc}/charging` }, "Charging sessions"),
  ];
  if (isStaff()) {
    links.push(h("a", { href: `#/cars/${enc}/signals` }, "Signals"));
    links.push(h("a", { href: `#/cars/${enc}/errors` }, "Telemetry errors"));
  }
  for (const l of extraLinks) links.push(h("a", { href: l.href }, l.text));
  const header = h("div", { class: "car-head" },
    h("div", {},
      backLink("#/cars", "My cars"),
      h("h1", {}, h("span", { class: "car-model" }, car.model), " ", h("span", { class: "car-vin" }, car.vin))),
    h("p", { class: "car-status" },
      h("span", { class: "conn-wrap" }, connSymbol, conn),
      h("span", { class: "sep", "aria-hidden": "true" }, " · "),
      h("span", {}, "Updated ", lastUpdate),
      liveState,
      announce),
    h("nav", { class: "car-links", "aria-label": "This car" }, h("ul", {}, links.map((a) => h("li", {}, a)))));

  // --- battery hero
  const gauge = socGauge({ size: "big", label: "State of charge" });
  const range = h("span", { class: "big-value", "data-testid": "range" }, "–");
  const chargingSymbol = h("span", { class: "symbol", "aria-hidden": "true" });
  const charging = h("span", { "data-testid": "charging" }, "–");
  const power = h("span", { class: "muted power" });
  const limitText = h("span", {}, "–");
  const lowBattery = h("p", { class: "notice error low-battery", hidden: true }, "Battery low: charge soon.");
  const hero = h("section", { class: "card hero", "aria-labelledby": "battery-h" },
    h("h2", { id: "battery-h" }, "Battery"),
    h("div", { class: "hero-body" },
      gauge.root,
      h("dl", { class: "hero-facts" },
        h("div", {}, h("dt", {}, "Range"), h("dd", {}, range)),
        h("div", {}, h("dt", {}, "Charging"), h("dd", {}, chargingSymbol, charging, power)),
        h("div", {}, h("dt", {}, "Charge limit"), h("dd", {}, limitText)))),
    lowBattery);

  // --- status tiles
  const lockTile = tile("Doors", "lock", { class: "lock-tile" });
  const speedTile = tile("Speed", "speed");
  const odoTile = tile("Odometer", "odometer");
  const cabinTile = tile("Cabin", "cabin-temp");
  const outsideTile = tile("Outside", "outside-temp");
  const batteryTempTile = tile("Battery temperature", "battery-temp");
  const details = h("section", { class: "card", "aria-labelledby": "status-h" },
    h("h2", { id: "status-h" }, "Status"),
    h("div", { class: "tiles car-tiles" },
      lockTile.node, speedTile.node, odoTile.node, cabinTile.node, outsideTile.node, batteryTempTile.node));

  // --- tyres
  const tyreTiles = TYRES.map(([key, label, base]) => ({ key, base, t: tile(label, `tyre-${key}`, { class: `tyre tyre-${key}` }) }));
  const tyres = h("section", { class: "card", "aria-labelledby": "tyres-h" },
    h("h2", { id: "tyres-h" }, "Tyre pressure"),
    h("div", { class: "tyre-grid" },
      tyreTiles.map((x) => x.t.node),
      h("div", { class: "tyre-car", "aria-hidden": "true" },
        svg("svg", { viewBox: "0 0 60 120", class: "car-outline" },
          svg("rect", { x: "8", y: "4", width: "44", height: "112", rx: "18" }),
          svg("rect", { x: "14", y: "28", width: "32", height: "20", rx: "5", class: "glass" }),
          svg("rect", { x: "14", y: "82", width: "32", height: "14", rx: "5", class: "glass" })))));

  // --- map
  const mapEl = h("div", {
    class: "map car-map", "data-testid": "car-map", role: "region", "aria-label": "Map of the car's position",
  });
  const follow = h("input", { type: "checkbox", id: "follow-car", checked: true });
  const position = h("p", { class: "muted position-text" }, "Position unknown");
  const mapCard = h("section", { class: "card map-card", "aria-labelledby": "map-h" },
    h("div", { class: "map-head" },
      h("h2", { id: "map-h" }, "Location"),
      h("span", { class: "o-check" }, follow, h("label", { for: "follow-car" }, "Follow the car"))),
    mapEl, position);

  // --- commands
  const cmdStatus = h("p", { class: "command-status muted", "data-testid": "command-status", role: "status" },
    "No command sent yet.");
  const cmdErrors = h("div", { class: "command-errors" });
  const offlineHint = h("p", { class: "notice info", hidden: true },
    "The car is offline: commands wait for it and expire if it does not come back in time.");
  const targetInput = h("input", {
    id: "climate-target", type: "number", min: "15", max: "30", step: "0.5", inputmode: "decimal",
  });
  const limitInput = h("input", { id: "charge-limit", type: "number", min: "50", max: "100", step: "1", inputmode: "numeric" });
  if (num(v(VSS.target)) !== null) targetInput.value = String(v(VSS.target));
  else targetInput.value = "21";
  if (num(v(VSS.limit)) !== null) limitInput.value = String(v(VSS.limit));
  else limitInput.value = "80";

  const btn = (text, cls, symbol) =>
    h("button", { type: "button", class: `cmd ${cls || ""}` },
      symbol ? h("span", { class: "cmd-symbol", "aria-hidden": "true" }, ICONS[symbol] ? icon(symbol) : symbol) : null,
      text);
  const bLock = btn("Lock", "", "lock");
  const bUnlock = btn("Unlock", "secondary", "unlock");
  const bHonk = btn("Honk & flash", "secondary", "horn");
  const bClimateOn = btn("Climate on", "", "❄");
  const bClimateOff = btn("Climate off", "secondary", "");
  const bStart = btn("Start charging", "", "⚡");
  const bStop = btn("Stop charging", "secondary", "");
  const bLimit = btn("Set charge limit", "secondary", "");
  const climateState = h("span", { class: "muted" }, "");

  const commands = h("section", { class: "card commands", "aria-labelledby": "cmd-h" },
    h("h2", { id: "cmd-h" }, "Commands"),
    offlineHint,
    h("div", { class: "cmd-group" },
      h("h3", {}, "Doors"),
      h("div", { class: "cmd-row" }, bLock, bUnlock, bHonk)),
    h("div", { class: "cmd-group" },
      h("h3", {}, "Climate ", climateState),
      h("div", { class: "cmd-row" },
        h("div", { class: "o-field" }, h("label", { for: "climate-target" }, "Target temperature (°C)"), targetInput),
        bClimateOn, bClimateOff)),
    h("div", { class: "cmd-group" },
      h("h3", {}, "Charging"),
      h("div", { class: "cmd-row" }, bStart, bStop),
      h("div", { class: "cmd-row" },
        h("div", { class: "o-field" }, h("label", { for: "charge-limit" }, "Charge limit (%)"), limitInput),
        bLimit)),
    cmdStatus,
    cmdErrors);

  const planCard = chargingPlanCard(vin);
  cleanups.push(planCard.stop);

  main.replaceChildren(
    header,
    h("div", { class: "car-layout" },
      h("div", { class: "col-a" }, hero, planCard.node, commands),
      h("div", { class: "col-b" }, mapCard, details, tyres)),
  );

  // --- drawing -------------------------------------------------------------------------------------------
  let map = null;
  let marker = null;
  let arrow = null;
  let lastPos = null;

  function drawConnectivity() {
    setText(conn, connectivityText(online, lastSeen));
    setText(connSymbol, online ? "● " : "○ ");
    setClass(conn.parentNode, "is-online", online);
    setClass(conn.parentNode, "is-offline", !online);
    offlineHint.hidden = online;
  }

  function draw() {
    if (gone) return;
    const soc = num(v(VSS.soc));
    const isCharging = v(VSS.charging) === true;
    const plugged = v(VSS.plugged) === true;
    gauge.update(soc, v(VSS.limit), isCharging);
    lowBattery.hidden = !(soc !== null && soc < 20 && !isCharging);
    setText(range, km(v(VSS.range)));

    let chargeWords = "Not charging";
    let chargeSym = "";
    if (isCharging) {
      const ttc = num(v(VSS.ttc));
      chargeWords = ttc ? `Charging · ${fmtDuration(ttc)} to full` : "Charging";
      chargeSym = "⚡";
    } else if (plugged) {
      chargeWords = "Plugged in";
      chargeSym = "plug";
    }
    setText(charging, chargeWords);
    setSymbol(chargingSymbol, chargeSym);
    const p = num(v(VSS.power));
    setText(power, isCharging && p !== null ? `${fmtNumber(Math.abs(p) / 1000, 1)} kW` : "");
    const lim = num(v(VSS.limit));
    setText(limitText, lim === null ? "–" : `${fmtNumber(lim)}%`);

    const locked = v(VSS.locked);
    setText(lockTile.value, locked === true ? "Locked" : locked === false ? "Unlocked" : "–");
    setSymbol(lockTile.symbol, locked === true ? "lock" : locked === false ? "unlock" : "");
    setClass(lockTile.node, "is-unlocked", locked === false);

    const speed = num(v(VSS.speed));
    setText(speedTile.value, speed === null ? "–" : `${fmtNumber(speed, 0)} km/h`);
    setText(speedTile.note, v(VSS.moving) === true ? "Moving" : speed === null ? "" : "Standing still");
    setText(odoTile.value, km(v(VSS.odometer)));
    setText(cabinTile.value, temp(v(VSS.cabin)));
    const climateOn = v(VSS.climate) === true;
    const target = num(v(VSS.target));
    const climateWords = climateOn ? `Climate on${target !== null ? ` · target ${fmtNumber(target, 1)} °C` : ""}` : "Climate off";
    setText(cabinTile.note, v(VSS.climate) === null ? "" : climateWords);
    setText(climateState, v(VSS.climate) === null ? "" : `(${climateOn ? "on" : "off"})`);
    setText(outsideTile.value, temp(v(VSS.outside)));
    setText(batteryTempTile.value, temp(v(VSS.batteryTemp)));

    for (const { base, t } of tyreTiles) {
      const kpa = num(v(`${base}.Pressure`));
      const low = v(`${base}.IsPressureLow`) === true;
      setText(t.value, kpa === null ? "–" : low ? `${fmtNumber(kpa)} kPa · Low pressure` : `${fmtNumber(kpa)} kPa`);
      setText(t.symbol, low ? "⚠" : "");
      setText(t.note, kpa === null ? "" : `${fmtNumber(kpa / 100, 1)} bar`);
      setClass(t.node, "is-low", low);
    }

    drawConnectivity();
    setText(lastUpdate, clock(newestTs));
    setAttr(lastUpdate, "datetime", newestTs);

    const lat = num(v(VSS.lat));
    const lon = num(v(VSS.lon));
    if (lat !== null && lon !== null) {
      setText(position, `${fmtNumber(lat, 5)}, ${fmtNumber(lon, 5)}${v(VSS.moving) === true ? " · moving" : ""}`);
      if (map) moveMarker(lat, lon, num(v(VSS.heading)) || 0);
    }
  }
  const redraw = perFrame(draw);

  // --- map -----------------------------------------------------------------------------------------------
  function moveMarker(lat, lon, heading) {
    const pos = [lat, lon];
    if (!marker) {
      arrow = h("span", { class: "car-arrow" },
        svg("svg", { viewBox: "0 0 32 32", "aria-hidden": "true", focusable: "false" },
          svg("circle", { cx: "16", cy: "16", r: "14", class: "car-dot" }),
          svg("path", { d: "M16 6 L23 24 L16 20 L9 24 Z", class: "car-pointer" })));
      const icon = L.divIcon({ html: arrow, className: "car-marker", iconSize: [32, 32], iconAnchor: [16, 16] });
      marker = L.marker(pos, { icon, title: `${car.model} ${car.vin}`, alt: "Car position", keyboard: false }).addTo(map);
      map.setView(pos, Math.max(map.getZoom() || 0, 15), { animate: false });
    } else if (!lastPos || lastPos[0] !== lat || lastPos[1] !== lon) {
      marker.setLatLng(pos);
      if (follow.checked) {
        const inner = map.getBounds().pad(-0.25);
        if (!inner.contains(pos)) map.panTo(pos, { animate: true, duration: 0.5 });
      }
    }
    const rot = `rotate(${Math.round(heading)}deg)`;
    if (arrow.style.transform !== rot) arrow.style.transform = rot;
    lastPos = pos;
  }

  async function makeMap() {
    if (typeof L === "undefined") {
      mapEl.replaceChildren(notice("The map library did not load.", "error"));
      return;
    }
    let cfg = { tile_url: "", tile_attribution: "", tile_max_zoom: 19 };
    try {
      cfg = { ...cfg, ...(await webConfig()) };
    } catch (err) {
      console.warn("web config not available; map without tiles", err);
    }
    if (gone) return;
    const maxZoom = cfg.tile_max_zoom || 19;
    map = L.map(mapEl, { maxZoom, zoomControl: true, attributionControl: true });
    if (cfg.tile_url) {
      L.tileLayer(cfg.tile_url, { maxZoom, attribution: cfg.tile_attribution || "" }).addTo(map);
    } else {
      mapEl.classList.add("no-tiles");
    }
    map.setView([52.52, 13.405], 11);
    map.on("dragstart", () => {
      if (follow.checked) follow.checked = false;
    });
    follow.addEventListener("change", () => {
      if (follow.checked && lastPos) map.panTo(lastPos);
    });
    draw();
  }

  // --- commands ------------------------------------------------------------------------------------------
  const open = new Map(); // id → {label, button, timer}
  const early = new Map(); // status seen on the stream before the POST answered
  let latestId = null;

  function showCommand(label, status, detail) {
    const word = COMMAND_WORDS[status] || status;
    setText(cmdStatus, commandText(label, status, detail));
    cmdStatus.className = `command-status status-${word}`;
  }

  function finish(entry) {
    clearInterval(entry.timer);
    open.delete(entry.id);
    const hadFocus = document.activeElement === entry.button || document.activeElement === document.body;
    if (![...open.values()].some((e) => e.button === entry.button)) {
      entry.button.disabled = false;
      entry.button.removeAttribute("aria-busy");
    }
    if (hadFocus && !gone) entry.button.focus({ preventScroll: true });
  }

  function applyCommand(id, status, detail) {
    const entry = open.get(id);
    if (!entry) {
      if (early.size < 200) early.set(id, { status, detail });
      return;
    }
    if (entry.id === latestId || FINAL.has(status)) showCommand(entry.label, status, detail);
    if (FINAL.has(status)) {
      finish(entry);
      if (status === "succeeded" && !streamLive) reread();
    }
  }

  async function send(button, label, name, args) {
    cmdErrors.replaceChildren();
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    showCommand(label, "queued");
    let answer;
    try {
      answer = await api(`/api/v1/vehicles/${enc}/commands`, { method: "POST", body: { name, args } });
    } catch (err) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      if (gone) return;
      setText(cmdStatus, `${label}: not sent`);
      cmdStatus.className = "command-status status-failed";
      cmdErrors.replaceChildren(notice(`${label} was not sent: ${errText(err)}`, "error"));
      button.focus({ preventScroll: true });
      return;
    }
    if (gone) return;
    const entry = { id: answer.id, label, button, timer: null };
    open.set(answer.id, entry);
    latestId = answer.id;
    entry.timer = setInterval(async () => {
      try {
        const c = await api(`/api/v1/vehicles/${enc}/commands/${encodeURIComponent(entry.id)}`);
        if (!gone && open.has(entry.id)) applyCommand(entry.id, c.status, c.detail);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) finish(entry);
      }
    }, 2000);
    const first = early.get(answer.id);
    early.delete(answer.id);
    applyCommand(answer.id, answer.status, answer.detail);
    if (first && open.has(answer.id)) applyCommand(answer.id, first.status, first.detail);
  }

  function checked(input, what) {
    if (input.value === "" || !input.checkValidity()) {
      cmdErrors.replaceChildren(
        notice(`${what}: enter a number from ${input.min} to ${input.max}.`, "error"));
      input.focus();
      return null;
    }
    return Number(input.value);
  }

  bLock.addEventListener("click", () => send(bLock, "Lock", "lock", {}));
  bUnlock.addEventListener("click", () => send(bUnlock, "Unlock", "unlock", {}));
  bHonk.addEventListener("click", () => send(bHonk, "Honk & flash", "honk_flash", {}));
  bClimateOn.addEventListener("click", () => {
    const t = checked(targetInput, "Target temperature");
    if (t !== null) send(bClimateOn, "Climate on", "climate", { on: true, target_temperature: t });
  });
  bClimateOff.addEventListener("click", () => send(bClimateOff, "Climate off", "climate", { on: false }));
  bStart.addEventListener("click", () => send(bStart, "Start charging", "charge", { action: "start" }));
  bStop.addEventListener("click", () => send(bStop, "Stop charging", "charge", { action: "stop" }));
  bLimit.addEventListener("click", () => {
    const l = checked(limitInput, "Charge limit");
    if (l !== null) send(bLimit, "Set charge limit", "charge", { limit: Math.round(l) });
  });
  for (const input of [targetInput, limitInput]) {
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") (input === targetInput ? bClimateOn : bLimit).click();
    });
  }

  // --- live ----------------------------------------------------------------------------------------------
  let everLive = false;
  let dropped = false;
  let streamLive = false;

  async function reread() {
    try {
      const st = await api(`/api/v1/vehicles/${enc}/state`);
      if (gone) return;
      online = !!st.online;
      if (tsMs(st.last_seen) > tsMs(lastSeen)) lastSeen = st.last_seen;
      merge(st.signals);
      redraw();
    } catch {
      /* the next event or poll brings the news */
    }
  }
  const live = stream(
    `/api/v1/vehicles/${enc}/live`,
    (kind, data) => {
      if (gone) return;
      if (kind === "signals") {
        merge(data.signals);
        redraw();
      } else if (kind === "connectivity") {
        const was = online;
        online = !!data.online;
        if (was !== online) setText(announce, online ? "The car is online again." : "The car went offline.");
        if (tsMs(data.at) > tsMs(lastSeen)) lastSeen = data.at;
        redraw();
      } else if (kind === "command") {
        applyCommand(data.id, data.status, data.detail);
      }
    },
    async (state) => {
      if (gone) return;
      if (state === "live") {
        streamLive = true;
        setText(liveState, "");
        // events were missed while the stream was down: read the whole twin again
        if (everLive && dropped) reread();
        everLive = true;
        dropped = false;
      } else if (state === "reconnecting") {
        streamLive = false;
        dropped = true;
        setText(liveState, " · reconnecting…");
      } else if (state === "refused") {
        streamLive = false;
        setText(liveState, " · live updates refused");
      }
    },
  );
  cleanups.push(() => live.close());

  // "last seen 5 min ago" ages without events; without the stream, the twin is read every 5 s instead
  const ager = setInterval(() => {
    if (!online) drawConnectivity();
    if (!streamLive) reread();
  }, 5000);
  cleanups.push(() => clearInterval(ager));

  draw();
  await makeMap();

  const cleanup = () => {
    if (gone) return;
    gone = true;
    for (const c of cleanups) c();
    for (const entry of open.values()) clearInterval(entry.timer);
    open.clear();
    if (map) map.remove();
    map = null;
  };
  if (location.hash !== here) {
    cleanup(); // left while the map was being made
    return null;
  }
  return cleanup;
}

// --- #/cars/:vin/history -------------------------------------------------------------------------------------
const PRESETS = [
  { label: "Speed", path: VSS.speed, unit: "km/h" },
  { label: "State of charge", path: VSS.soc, unit: "%" },
  { label: "Range", path: VSS.range, unit: "km", scale: 0.001 },
  { label: "Battery power", path: VSS.power, unit: "kW", scale: 0.001 },
  { label: "Battery temperature", path: VSS.batteryTemp, unit: "°C" },
  { label: "Cabin temperature", path: VSS.cabin, unit: "°C" },
  { label: "Outside temperature", path: VSS.outside, unit: "°C" },
  { label: "Charging (on/off)", path: VSS.charging, unit: "", bool: true },
  { label: "Charge limit", path: VSS.limit, unit: "%" },
  { label: "Time to full charge", path: VSS.ttc, unit: "min", scale: 1 / 60 },
  { label: "Odometer", path: VSS.odometer, unit: "km", scale: 0.001 },
  { label: "12 V battery voltage", path: VSS.lowVoltage, unit: "V" },
  { label: "Doors locked (yes/no)", path: VSS.locked, unit: "", bool: true },
  ...TYRES.map(([, label, base]) => ({ label: `${label} tyre pressure`, path: `${base}.Pressure`, unit: "kPa" })),
];

const PERIODS = [
  ["1h", "Last hour", 3600],
  ["6h", "Last 6 hours", 6 * 3600],
  ["24h", "Last 24 hours", 86400],
  ["7d", "Last 7 days", 7 * 86400],
  ["30d", "Last 30 days", 30 * 86400],
];

let lastHistoryChoice = { path: VSS.speed, period: "1h" };

async function describeSignal(path) {
  const preset = PRESETS.find((p) => p.path === path);
  if (preset) return preset;
  try {
    const found = await api(`/api/v1/signals?q=${encodeURIComponent(path)}&limit=50`);
    const info = found.find((s) => s.path === path);
    if (info) return { label: path, path, unit: info.unit || "", bool: info.datatype === "boolean" };
  } catch {
    /* the history call will say what is wrong */
  }
  return { label: path, path, unit: "" };
}

async function historyPage(main, { vin }) {
  const enc = encodeURIComponent(vin);
  const signal = h("select", { id: "hist-signal" },
    PRESETS.map((p) => h("option", { value: p.path }, p.unit ? `${p.label} (${p.unit})` : p.label)));
  const other = h("input", {
    id: "hist-other", type: "text", list: "hist-paths", autocomplete: "off", spellcheck: "false",
    placeholder: "e.g. Vehicle.Powertrain.TractionBattery.StateOfHealth",
  });
  const paths = h("datalist", { id: "hist-paths" });
  const period = h("select", { id: "hist-period" }, PERIODS.map(([key, label]) => h("option", { value: key }, label)));
  const show = h("button", { type: "submit" }, "Show");
  if (PRESETS.some((p) => p.path === lastHistoryChoice.path)) signal.value = lastHistoryChoice.path;
  else other.value = lastHistoryChoice.path;
  period.value = lastHistoryChoice.period;

  const form = h("form", { class: "card history-form" },
    h("div", { class: "o-field" }, h("label", { for: "hist-signal" }, "Signal"), signal),
    h("div", { class: "o-field o-grow" },
      h("label", { for: "hist-other" }, "Other signal (VSS path)"), other, paths,
      h("p", { class: "o-hint muted", id: "hist-other-hint" }, "When filled in, used instead of the list.")),
    h("div", { class: "o-field" }, h("label", { for: "hist-period" }, "Period"), period),
    h("div", { class: "o-field o-submit" }, show));
  other.setAttribute("aria-describedby", "hist-other-hint");

  const title = h("h2", { id: "plot-h" }, "");
  const messages = h("div", { "aria-live": "polite" });
  const plotBox = h("div", {
    class: "history-plot", role: "img", "data-testid": "history-plot", "data-points": "0",
    "aria-label": "History",
  });
  const summary = h("p", { class: "history-summary" });
  const chartCard = h("section", { class: "card", "aria-labelledby": "plot-h" }, title, messages, plotBox, summary);

  main.replaceChildren(
    backLink(`#/cars/${enc}`, vin),
    h("h1", {}, "History"),
    form,
    chartCard,
  );

  let plot = null;
  let request = 0;
  let gone = false;

  const resize = new ResizeObserver(() => {
    if (plot) plot.setSize({ width: plotWidth(), height: plotHeight() });
  });
  resize.observe(plotBox);
  function plotWidth() {
    return Math.max(200, Math.floor(plotBox.clientWidth || chartCard.clientWidth - 32));
  }
  function plotHeight() {
    return window.innerWidth < 600 ? 240 : 340;
  }

  // VSS path suggestions from the catalog
  let suggestTimer = null;
  other.addEventListener("input", () => {
    clearTimeout(suggestTimer);
    const q = other.value.trim();
    if (q.length < 3) return;
    suggestTimer = setTimeout(async () => {
      try {
        const found = await api(`/api/v1/signals?q=${encodeURIComponent(q)}&limit=30`);
        if (gone) return;
        paths.replaceChildren(...found
          .filter((s) => s.type !== "branch")
          .map((s) => h("option", { value: s.path }, s.unit ? `${s.path} (${s.unit})` : s.path)));
      } catch {
        /* suggestions are optional */
      }
    }, 250);
  });

  async function load() {
    const mine = ++request;
    const path = other.value.trim() || signal.value;
    const [key, periodLabel, seconds] = PERIODS.find((p) => p[0] === period.value) || PERIODS[0];
    lastHistoryChoice = { path, period: key };
    messages.replaceChildren(h("p", { class: "muted", role: "status" }, "Loading…"));
    show.disabled = true;
    show.setAttribute("aria-busy", "true");
    try {
      const info = await describeSignal(path);
      const end = new Date();
      const start = new Date(end.getTime() - seconds * 1000);
      const interval = `${Math.max(1, Math.round(seconds / 600))}s`;
      const q = new URLSearchParams({ path, start: start.toISOString(), end: end.toISOString(), interval });
      const data = await api(`/api/v1/vehicles/${enc}/history?${q}`);
      if (mine !== request || gone) return;
      drawHistory(info, periodLabel, data, start, end);
    } catch (err) {
      if (mine !== request || gone) return;
      destroyPlot();
      plotBox.setAttribute("data-points", "0");
      plotBox.setAttribute("aria-label", `History of ${path}`);
      setText(title, path);
      summary.replaceChildren();
      messages.replaceChildren(notice(errText(err), "error"));
    } finally {
      if (mine === request) {
        show.disabled = false;
        show.removeAttribute("aria-busy");
      }
    }
  }

  function destroyPlot() {
    if (plot) plot.destroy();
    plot = null;
    plotBox.replaceChildren();
  }

  function drawHistory(info, periodLabel, data, start, end) {
    const scale = info.scale || 1;
    const xs = [];
    const ys = [];
    let nonNumeric = 0;
    let bool = !!info.bool;
    for (const p of data.points || []) {
      const t = tsMs(p.ts) / 1000;
      let y = null;
      if (typeof p.value === "boolean") {
        bool = true;
        y = p.value ? 1 : 0;
      } else if (typeof p.value === "number" && Number.isFinite(p.value)) {
        y = p.value * scale;
      } else if (p.value !== null && p.value !== undefined) {
        nonNumeric++;
      }
      xs.push(t);
      ys.push(y);
    }
    const unit = bool ? "" : info.unit || "";
    const name = info.label === info.path ? info.path : `${info.label}${unit ? ` (${unit})` : ""}`;
    setText(title, `${name} · ${periodLabel.toLowerCase()}`);
    plotBox.setAttribute("aria-label", `History of ${data.path || info.path}`);
    plotBox.setAttribute("data-points", String(xs.length));
    destroyPlot();
    const msgs = [];
    const values = ys.filter((y) => y !== null);
    if (!xs.length) {
      msgs.push(notice("No data in this period", "info"));
      summary.replaceChildren();
      plotBox.classList.add("empty");
      messages.replaceChildren(...msgs);
      return;
    }
    plotBox.classList.remove("empty");
    if (data.truncated) msgs.push(notice(`Only the first ${fmtNumber(xs.length)} points are shown.`, "info"));
    if (nonNumeric && !values.length) {
      msgs.push(notice("This signal is not a number, so it cannot be drawn; pick a numeric signal.", "info"));
    }
    messages.replaceChildren(...msgs);

    const fmtY = (y) => {
      if (y === null || y === undefined) return "–";
      if (bool) return y >= 0.5 ? "yes" : "no";
      return `${fmtNumber(y, Math.abs(y) < 10 ? 2 : 1)}${unit ? ` ${unit}` : ""}`;
    };
    const series = {
      label: info.label === info.path ? info.path.split(".").slice(-2).join(".") : info.label,
      stroke: "#1f4fbf",
      width: 2,
      fill: "rgba(31, 79, 191, 0.08)",
      points: { show: xs.length < 60 },
      spanGaps: false,
      value: (u, y) => fmtY(y),
    };
    if (bool && uPlot.paths && uPlot.paths.stepped) series.paths = uPlot.paths.stepped({ align: 1 });
    const yAxis = { size: 56, stroke: "#5a6478", grid: { stroke: "#e6eaf0" }, ticks: { stroke: "#e6eaf0" } };
    if (unit) yAxis.label = unit;
    if (bool) {
      yAxis.splits = () => [0, 1];
      yAxis.values = (u, splits) => splits.map((s) => (s === 1 ? "yes" : s === 0 ? "no" : ""));
    }
    const opts = {
      width: plotWidth(),
      height: plotHeight(),
      series: [{ value: (u, t) => (t === null ? "–" : new Date(t * 1000).toLocaleString()) }, series],
      scales: { x: xs.length > 1 ? { time: true } : { time: true, min: start.getTime() / 1000, max: end.getTime() / 1000 }, y: bool ? { range: [-0.1, 1.1] } : {} },
      axes: [{ stroke: "#5a6478", grid: { stroke: "#e6eaf0" }, ticks: { stroke: "#e6eaf0" } }, yAxis],
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
    };
    if (!bool) delete opts.scales.y;
    plot = new uPlot(opts, [xs, ys], plotBox);

    if (values.length) {
      const min = Math.min(...values);
      const max = Math.max(...values);
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      const agg = data.aggregate === "mean" ? " (each point is the mean of its interval)" : "";
      summary.replaceChildren(
        bool
          ? `${fmtNumber(values.filter((y) => y >= 0.5).length)} of ${fmtNumber(values.length)} points “yes”. `
          : `Minimum ${fmtY(min)}, mean ${fmtY(mean)}, maximum ${fmtY(max)}. `,
        `${fmtNumber(xs.length)} points from ${fmtTime(new Date(xs[0] * 1000).toISOString())} to ` +
          `${fmtTime(new Date(xs[xs.length - 1] * 1000).toISOString())}${agg}.`,
      );
    } else {
      summary.replaceChildren();
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load();
  });
  signal.addEventListener("change", () => {
    if (other.value.trim()) other.value = "";
  });

  await load();
  return () => {
    gone = true;
    request++;
    clearTimeout(suggestTimer);
    resize.disconnect();
    destroyPlot();
  };
}

// --- #/cars/:vin/charging ------------------------------------------------------------------------------------
function sessionStatus(s) {
  if (s.status === "active") return [`⚡`, "Charging"];
  const reason = s.stop_reason && s.stop_reason !== "Local" && s.stop_reason !== "EVDisconnected" ? ` (${s.stop_reason})` : "";
  return ["✓", `Ended${reason}`];
}

async function chargingPage(main, { vin }) {
  const enc = encodeURIComponent(vin);
  const body = h("tbody");
  const totals = h("p", { class: "muted", role: "status" });
  const errors = h("div");
  const table = h("table", { class: "sessions" },
    h("caption", { class: "sr-only" }, `Charge sessions of ${vin}, newest first`),
    h("thead", {}, h("tr", {},
      ["Started", "Station", "Energy (kWh)", "Cost", "Duration", "Battery", "Status"].map((t) => h("th", { scope: "col" }, t)))),
    body);
  const wrap = h("div", { class: "table-wrap card o-flush" }, table);
  main.replaceChildren(backLink(`#/cars/${enc}`, vin), h("h1", {}, "Charging sessions"), errors, totals, wrap);

  let timer = null;
  let gone = false;
  async function refresh(first) {
    let rows;
    try {
      rows = await api(`/api/v1/vehicles/${enc}/charging-sessions?limit=200`);
    } catch (err) {
      if (first) throw err;
      errors.replaceChildren(notice(errText(err), "error"));
      return;
    }
    if (gone) return;
    errors.replaceChildren();
    rows.sort((a, b) => (b.status === "active") - (a.status === "active") || tsMs(b.start) - tsMs(a.start));
    if (!rows.length) {
      wrap.hidden = true;
      totals.replaceChildren(notice("No charge sessions yet for this car.", "info"));
      return;
    }
    wrap.hidden = false;
    const now = Date.now();
    body.replaceChildren(...rows.map((s) => {
      const [sym, word] = sessionStatus(s);
      const duration = s.duration_s ?? (s.status === "active" ? (now - tsMs(s.start)) / 1000 : null);
      const battery = s.soc_start !== null && s.soc_start !== undefined
        ? `${fmtNumber(s.soc_start)}% → ${s.soc_stop !== null && s.soc_stop !== undefined ? `${fmtNumber(s.soc_stop)}%` : "…"}`
        : "–";
      return h("tr", { class: s.status === "active" ? "active" : "" },
        h("td", { "data-label": "Started" }, h("time", { datetime: s.start }, fmtTime(s.start))),
        h("td", { "data-label": "Station" }, `${s.station}${s.evse_id ? ` · ${s.evse_id}` : ""}`),
        h("td", { "data-label": "Energy (kWh)", class: "num" }, fmtNumber((s.energy_wh || 0) / 1000, 2)),
        h("td", { "data-label": "Cost", class: "num" }, money(s.cost, s.currency)),
        h("td", { "data-label": "Duration" }, duration === null ? "–" : fmtDuration(duration)),
        h("td", { "data-label": "Battery" }, battery),
        h("td", { "data-label": "Status", class: `session-${s.status}` },
          h("span", {}, h("span", { "aria-hidden": "true" }, `${sym} `), word)));
    }));
    const energy = rows.reduce((a, s) => a + (s.energy_wh || 0), 0) / 1000;
    const costs = {};
    for (const s of rows) if (s.cost && s.currency) costs[s.currency] = (costs[s.currency] || 0) + Number(s.cost);
    const costText = Object.entries(costs).map(([c, n]) => money(n.toFixed(2), c)).join(" + ");
    totals.replaceChildren(
      `${rows.length} ${rows.length === 1 ? "session" : "sessions"} · ${fmtNumber(energy, 1)} kWh` +
        (costText ? ` · ${costText}` : ""),
    );
    clearTimeout(timer);
    if (rows.some((s) => s.status === "active")) timer = setTimeout(() => refresh(false), 15000);
  }
  await refresh(true);
  return () => {
    gone = true;
    clearTimeout(timer);
  };
}

// --- the car's charging plan (smart charging) ----------------------------------------------------------------
/**
 * The "Charging plan" card of a car page: shown while the car has an active session at a station of a
 * smart-charging site. Now X A / paused and why, energy wanted vs planned, the planned current per period with
 * the price, and the driver's goal (ready by, target charge). Returns {node, stop}.
 */
function chargingPlanCard(vin) {
  const enc = encodeURIComponent(vin);
  const where = h("p", { class: "muted plan-where" });
  const nowSymbol = h("span", { class: "plan-symbol", "aria-hidden": "true" });
  const nowText = h("span", { "data-testid": "plan-now" });
  const reasons = h("p", { class: "plan-reasons", "data-testid": "plan-reasons" });
  const wanted = h("dd", { "data-testid": "plan-wanted" }, "–");
  const planned = h("dd", { "data-testid": "plan-planned" }, "–");
  const delivered = h("dd", {}, "–");
  const leaves = h("dd", { "data-testid": "plan-leaves" }, "–");
  const short = h("p", { class: "notice info plan-short", hidden: true });
  const capped = h("p", { class: "notice info", "data-testid": "plan-capped", hidden: true });
  const chart = planChart({ label: "Planned charging current per period, with the price", testid: "plan-chart" });

  const departure = field("plan-departure", "Ready by", h("input", { type: "datetime-local", step: "60" }),
    "When you leave; your phone's time zone.");
  const target = field("plan-target", "Target charge (%)",
    h("input", { type: "number", min: "1", max: "100", step: "1", inputmode: "numeric" }));
  const fields = { departure, target_soc: target };
  const formMsg = h("div", { class: "plan-form-msg", "aria-live": "polite" });
  const save = h("button", { type: "submit" }, "Save goal");
  const form = h("form", { class: "plan-form", "aria-label": "Your charging goal", novalidate: true },
    departure.node, target.node, h("div", { class: "o-field o-submit" }, save), formMsg);

  const node = h("section", { class: "card plan-card", "aria-labelledby": "plan-h", "data-testid": "charging-plan", hidden: true },
    h("h2", { id: "plan-h" }, "Charging plan"),
    where,
    h("p", { class: "plan-now" }, nowSymbol, nowText),
    reasons,
    h("dl", { class: "plan-facts" },
      h("div", {}, h("dt", {}, "Wanted"), wanted),
      h("div", {}, h("dt", {}, "Planned by departure"), planned),
      h("div", {}, h("dt", {}, "Delivered so far"), delivered),
      h("div", {}, h("dt", {}, "Leaves"), leaves)),
    short,
    capped,
    chart.node,
    form);

  let sessionId = null;
  let edited = false; // the driver is typing: the refresh must not overwrite the form
  let stopped = false;
  let timer = null;
  for (const f of [departure, target]) f.control.addEventListener("input", () => (edited = true));

  // A session at a station in no smart-charging site (or no longer charging) has a plan with no session.
  async function findPlan() {
    if (sessionId !== null) {
      const plan = await api(`/api/v1/charging-sessions/${sessionId}/plan`);
      if (plan.session) return plan;
      sessionId = null;
    }
    const sessions = await api(`/api/v1/vehicles/${enc}/charging-sessions?limit=10`);
    for (const s of sessions.filter((x) => x.status === "active")) {
      const plan = await api(`/api/v1/charging-sessions/${s.id}/plan`);
      if (plan.session) {
        sessionId = s.id;
        return plan;
      }
    }
    return null;
  }

  function draw(plan) {
    const s = plan.session;
    const [symbol, words] = nowWords(s);
    setText(where, `At ${s.station_id} · EVSE ${s.evse_id} · site ${plan.site_id}`);
    setText(nowSymbol, `${symbol} `);
    setText(nowText, words);
    node.classList.toggle("plan-paused", s.control === "planned" && !(s.current_a > 0));
    setText(reasons, reasonsText(s.reasons));
    setText(wanted, kwh(s.energy_wanted_kwh));
    setText(planned, kwh(s.energy_planned_kwh));
    setText(delivered, kwh(s.energy_delivered_kwh));
    setText(leaves, s.departure ? new Date(s.departure).toLocaleString(undefined, {
      weekday: "short", hour: "2-digit", minute: "2-digit",
    }) : "–");
    const asked = plan.goal && plan.goal.target_soc !== null && plan.goal.target_soc !== undefined ? plan.goal.target_soc : null;
    capped.hidden = !(asked !== null && s.target_soc !== null && s.target_soc < asked - 0.01);
    setText(capped, capped.hidden ? "" : `Your car's own charge limit is ${fmtNumber(s.target_soc)} %: the plan charges to that, not to ${fmtNumber(asked)} %. Raise the charge limit on the car to charge more.`);
    const gap = s.energy_wanted_kwh - s.energy_planned_kwh;
    short.hidden = !(s.control === "planned" && gap >= 0.05);
    setText(short, short.hidden ? "" : `The plan falls ${fmtNumber(gap, 1)} kWh short of what you want by then: leave later, or lower the target.`);
    chart.update({
      start: plan.start,
      period_s: plan.period_s,
      prices: plan.prices,
      lines: [{ label: "Planned current", values: s.currents_a, stroke: PHASE_COLOURS.A, fill: "rgba(31, 79, 191, 0.10)" }],
    });
    if (!edited) {
      const goal = plan.goal || {};
      departure.control.value = localInputValue(goal.departure || s.departure);
      const t = goal.target_soc ?? s.target_soc;
      target.control.value = t === null || t === undefined ? "" : String(Math.round(t));
    }
  }

  async function refresh() {
    clearTimeout(timer);
    timer = null;
    try {
      const plan = await findPlan();
      if (stopped) return;
      node.hidden = !plan;
      if (plan) {
        node.hidden = false;
        draw(plan);
      }
    } catch (err) {
      if (!stopped) console.warn("charging plan not loaded", err);
    }
    if (!stopped) timer = setTimeout(refresh, 15000);
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (sessionId === null) return;
    clearErrors(fields, formMsg);
    const body = {};
    if (departure.control.value) {
      body.departure = withOffset(departure.control.value);
      if (!body.departure) return departure.error("Enter a date and time.");
    }
    if (target.control.value !== "") {
      const t = Number(target.control.value);
      if (!Number.isFinite(t) || t < 1 || t > 100) {
        target.error("Enter a charge from 1 to 100 %.");
        target.control.focus();
        return;
      }
      body.target_soc = t;
    }
    save.disabled = true;
    save.setAttribute("aria-busy", "true");
    try {
      await api(`/api/v1/charging-sessions/${sessionId}/goal`, { method: "PUT", body });
      if (stopped) return;
      edited = false;
      formMsg.replaceChildren(notice("Saved: the plan follows your goal.", "ok"));
      await refresh();
    } catch (err) {
      if (!stopped) showErrors(err, fields, formMsg);
    } finally {
      save.disabled = false;
      save.removeAttribute("aria-busy");
    }
  });

  refresh();
  return {
    node,
    stop() {
      stopped = true;
      clearTimeout(timer);
      chart.destroy();
    },
  };
}

// --- #/home: the owner's home charging sites ----------------------------------------------------------------
let homeFlash = null; // a message for the next render of the page (after creating a site)

function slug(text) {
  return text.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 24) || "home";
}

function tariffSelect(tariffs, selected = null) {
  return h("select", {},
    h("option", { value: "" }, "No tariff (one price)"),
    tariffs.map((t) => h("option", { value: t.name, selected: t.name === selected }, t.name)));
}

function objectiveSelect(selected = "cheapest") {
  return h("select", {}, OBJECTIVES.map(([key, label]) => h("option", { value: key, selected: key === selected }, label)));
}

function homeSiteCard(site, stations, onChange) {
  const mine = new Set(site.stations.map((s) => s.station_id));
  const facts = h("dl", { class: "plan-facts" },
    h("div", {}, h("dt", {}, "House connection"), h("dd", {}, `${amps(site.limits.max_a)} per phase`)),
    h("div", {}, h("dt", {}, "Ready by"), h("dd", {}, site.ready_by ? `${site.ready_by} (${site.timezone})` : "–")),
    h("div", {}, h("dt", {}, "Target charge"), h("dd", {}, `${fmtNumber(site.target_soc)} %`)),
    h("div", {}, h("dt", {}, "Charging"), h("dd", {}, objectiveWords(site.objective))),
    h("div", {}, h("dt", {}, "Tariff"), h("dd", {}, site.tariff || "one price")));
  const chargers = h("ul", { class: "home-chargers" },
    site.stations.length
      ? site.stations.map((w) => h("li", { "data-testid": `home-charger-${w.station_id}` },
        h("strong", { class: "mono" }, w.station_id), ` · up to ${amps(w.max_a)} on ${w.phases} · `,
        h("span", { class: w.online ? "state-online" : "state-offline" }, w.online ? "online" : "offline"),
        w.controllable ? "" : ` · not steerable: ${w.reason || "the station refuses charging profiles"}`))
      : h("li", { class: "muted" }, "No charger in this site yet."));

  const free = stations.filter((s) => !mine.has(s.id));
  const msg = h("div");
  const idBase = `home-${slug(site.id)}`;
  let addForm = null;
  if (free.length) {
    const pick = field(`${idBase}-station`, "Charger", h("select", {}, free.map((s) => h("option", { value: s.id }, s.id))));
    const max = field(`${idBase}-max`, "Its maximum current (A)", h("input", { type: "number", min: "6", max: "63", step: "1", value: "16" }));
    const phases = field(`${idBase}-phases`, "Phases", h("select", {},
      h("option", { value: "ABC" }, "Three phases"), h("option", { value: "A" }, "One phase")));
    const add = h("button", { type: "submit", class: "secondary" }, "Add charger");
    addForm = h("form", { class: "plan-form", "aria-label": `Add a charger to ${site.name}`, novalidate: true },
      pick.node, max.node, phases.node, h("div", { class: "o-field o-submit" }, add), msg);
    addForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fields = { max_a: max, phases };
      clearErrors(fields, msg);
      add.disabled = true;
      try {
        await api(`/api/v1/sites/${encodeURIComponent(site.id)}/stations/${encodeURIComponent(pick.control.value)}`, {
          method: "PUT", body: { phases: phases.control.value, max_a: Number(max.control.value), min_a: 6 },
        });
        homeFlash = `Charger ${pick.control.value} added to ${site.name}.`;
        onChange();
      } catch (err) {
        showErrors(err, fields, msg);
        add.disabled = false;
      }
    });
  }

  const chart = planChart({ label: `Plan of ${site.name}: load per phase against the house connection, with the price`, testid: `site-chart-${site.id}` });
  const planText = h("ul", { class: "home-plan-sessions", "data-testid": `home-plan-${site.id}` });
  const planInfo = h("p", { class: "muted" });
  const node = h("section", { class: "card home-site", "aria-labelledby": `${idBase}-h`, "data-testid": `home-site-${site.id}` },
    h("h2", { id: `${idBase}-h` }, site.name),
    facts,
    h("h3", {}, "Chargers"),
    chargers,
    addForm,
    h("h3", {}, "Plan"),
    planInfo,
    planText,
    chart.node);

  async function loadPlan() {
    const plan = await api(`/api/v1/sites/${encodeURIComponent(site.id)}/plan`);
    setText(planInfo, plan.sessions.length ? `Planned ${new Date(plan.planned_at).toLocaleTimeString()}.` : "No car is charging here now.");
    planText.replaceChildren(...plan.sessions.map((s) => {
      const [symbol, words] = nowWords(s);
      return h("li", {}, h("span", { "aria-hidden": "true" }, `${symbol} `),
        `${s.station_id}: ${words}; ${kwh(s.energy_planned_kwh)} of ${kwh(s.energy_wanted_kwh)} wanted by ` +
        `${new Date(s.departure).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}. ${reasonsText(s.reasons)}`);
    }));
    chart.update({ start: plan.start, period_s: plan.period_s, prices: plan.prices, lines: sitePlanLines(plan) });
  }
  return { node, loadPlan, destroy: () => chart.destroy() };
}

async function homeChargingPage(main) {
  const [sites, stations, tariffs] = await Promise.all([
    api("/api/v1/sites"), api("/api/v1/stations"), api("/api/v1/tariffs"),
  ]);
  const flash = homeFlash;
  homeFlash = null;
  const rerender = () => navigate("/home");
  const cards = sites.map((s) => homeSiteCard(s, stations, rerender));

  // create a home site
  const name = field("home-name", "Name", h("input", { type: "text", maxlength: "100", value: "Home", autocomplete: "off" }));
  const limit = field("home-limit", "House connection limit (A per phase)",
    h("input", { type: "number", min: "6", max: "400", step: "1", value: "25", inputmode: "numeric" }),
    "The main fuse: what the house may draw in all, charging included.");
  const ready = field("home-ready", "Ready by", h("input", { type: "time", value: "07:00" }));
  const target = field("home-target", "Target charge (%)", h("input", { type: "number", min: "1", max: "100", step: "1", value: "80" }));
  const objective = field("home-objective", "Charge", objectiveSelect("cheapest"));
  const tariff = field("home-tariff", "Tariff", tariffSelect(tariffs));
  const zoneList = h("datalist", { id: "home-zones" },
    (typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : []).map((z) => h("option", { value: z })));
  const zone = field("home-zone", "Time zone", h("input", { type: "text", value: browserZone(), list: "home-zones", autocomplete: "off" }));
  const charger = field("home-charger", "Your charger", h("select", {},
    h("option", { value: "" }, "None yet"), stations.map((s) => h("option", { value: s.id }, s.id))));
  if (stations.length === 1) charger.control.value = stations[0].id;
  const chargerMax = field("home-charger-max", "Charger maximum current (A)",
    h("input", { type: "number", min: "6", max: "63", step: "1", value: "16" }));
  const msg = h("div", { "aria-live": "polite" });
  const create = h("button", { type: "submit" }, "Create home site");
  const form = h("form", { class: "card home-form", "aria-labelledby": "home-new-h", novalidate: true },
    h("h2", { id: "home-new-h" }, sites.length ? "Add another home" : "Set up home charging"),
    h("div", { class: "home-form-grid" },
      name.node, limit.node, ready.node, target.node, objective.node, tariff.node, zone.node, zoneList,
      charger.node, chargerMax.node),
    msg,
    create);
  const fields = {
    name, "limits.max_a": limit, limits: limit, ready_by: ready, target_soc: target, objective, tariff, timezone: zone,
    max_a: chargerMax, station: charger,
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(fields, msg);
    const label = name.control.value.trim();
    if (!label) return name.error("Give the site a name."), name.control.focus();
    const body = {
      id: `home-${slug(label)}-${Math.random().toString(36).slice(2, 7)}`,
      name: label,
      limits: { id: "house", max_a: Number(limit.control.value), circuits: [] },
      objective: objective.control.value,
      tariff: tariff.control.value || null,
      timezone: zone.control.value.trim() || browserZone(),
      ready_by: ready.control.value || null,
      target_soc: Number(target.control.value),
    };
    create.disabled = true;
    create.setAttribute("aria-busy", "true");
    let made = null;
    try {
      made = await api("/api/v1/sites", { method: "POST", body });
      if (charger.control.value) {
        await api(`/api/v1/sites/${encodeURIComponent(made.id)}/stations/${encodeURIComponent(charger.control.value)}`, {
          method: "PUT", body: { phases: "ABC", max_a: Number(chargerMax.control.value), min_a: 6 },
        });
      }
      homeFlash = `Home site “${made.name}” created${charger.control.value ? ` with ${charger.control.value}` : ""}.`;
      rerender();
    } catch (err) {
      if (made) {
        homeFlash = `Home site “${made.name}” created, but the charger was not added: ${errText(err)}`;
        rerender();
        return;
      }
      showErrors(err, fields, msg);
      create.disabled = false;
      create.removeAttribute("aria-busy");
    }
  });

  main.replaceChildren(...[
    h("h1", {}, "Home charging"),
    h("p", { class: "muted" },
      "Say what your house connection takes and when the car must be ready: the platform charges in the cheapest ",
      "hours (or as fast as it may) without tripping the main fuse."),
    flash ? notice(flash, flash.includes("not added") ? "error" : "ok") : null,
    sites.length ? null : notice("You have no home site yet.", "info"),
    ...cards.map((c) => c.node),
    stations.length ? null : notice("You have no charger of your own registered; ask your operator to register your wallbox.", "info"),
    form,
  ].filter(Boolean));

  let gone = false;
  let timer = null;
  async function loadPlans() {
    await Promise.all(cards.map((c) => c.loadPlan().catch((err) => console.warn("plan not loaded", err))));
    if (!gone) timer = setTimeout(loadPlans, 15000);
  }
  loadPlans();
  return () => {
    gone = true;
    clearTimeout(timer);
    for (const c of cards) c.destroy();
  };
}

// --- #/settings ----------------------------------------------------------------------------------------------
/** POST /users/me/password; a wrong current password is a 422 on that field (the login stays valid). */
async function changePassword(currentPassword, newPassword) {
  await api("/api/v1/users/me/password", {
    method: "POST",
    body: { current_password: currentPassword, new_password: newPassword },
  });
}

async function settingsPage(main) {
  // password
  const current = h("input", { id: "pw-current", type: "password", autocomplete: "current-password", required: true });
  const fresh = h("input", {
    id: "pw-new", type: "password", autocomplete: "new-password", required: true, minlength: "8", maxlength: "256",
    "aria-describedby": "pw-new-hint",
  });
  const pwMsg = h("div");
  const pwButton = h("button", { type: "submit" }, "Change password");
  const pwForm = h("form", { class: "card narrow", "aria-labelledby": "pw-h" },
    h("h2", { id: "pw-h" }, "Password"),
    h("label", { for: "pw-current" }, "Current password"), current,
    h("label", { for: "pw-new" }, "New password"), fresh,
    h("p", { class: "o-hint muted", id: "pw-new-hint" }, "At least 8 characters. You will log in again afterwards."),
    pwMsg,
    pwButton);

  pwForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    pwMsg.replaceChildren();
    if (!fresh.checkValidity()) {
      pwMsg.replaceChildren(notice("The new password needs at least 8 characters.", "error"));
      fresh.focus();
      return;
    }
    pwButton.disabled = true;
    try {
      await changePassword(current.value, fresh.value);
    } catch (err) {
      pwButton.disabled = false;
      pwMsg.replaceChildren(notice(errText(err), "error"));
      current.focus();
      return;
    }
    current.value = "";
    fresh.value = "";
    const text = "Password changed. You were logged out everywhere and your API tokens were revoked; log in again with the new password.";
    pwMsg.replaceChildren(notice(text, "ok"));
    // every token is revoked now: off to the login page, which then shows the same words
    setToken(null);
    window.addEventListener("hashchange", () => {
      const target = document.getElementById("main");
      if (target && location.hash === "#/login") target.prepend(notice(text, "ok"));
    }, { once: true });
    setTimeout(() => navigate("/login"), 1500);
  });

  // API tokens
  const tokenName = h("input", { id: "token-name", type: "text", maxlength: "100", required: true, autocomplete: "off" });
  const createBtn = h("button", { type: "submit" }, "Create token");
  const tokenMsg = h("div");
  const newToken = h("div", { class: "new-token", hidden: true });
  const tokenList = h("div", { class: "token-list" });
  const tokenForm = h("form", { class: "token-form" },
    h("div", { class: "o-field o-grow" }, h("label", { for: "token-name" }, "Token name"), tokenName),
    h("div", { class: "o-field o-submit" }, createBtn));
  const tokensCard = h("section", { class: "card", "aria-labelledby": "tok-h" },
    h("h2", { id: "tok-h" }, "API tokens"),
    h("p", { class: "muted token-help" },
      "Tokens let your own scripts use the smartev API as you. Send one as ",
      h("code", {}, "Authorization: Bearer <token>"), ". Revoke a token you no longer use; changing your password revokes them all."),
    tokenForm, tokenMsg, newToken, tokenList);

  main.replaceChildren(
    h("h1", {}, "Settings"),
    me ? h("p", { class: "muted" }, `Logged in as ${me.email} (${me.role}).`) : null,
    h("div", { class: "settings-grid" }, pwForm, tokensCard),
  );

  let gone = false;
  let shownTokenId = null;
  async function loadTokens() {
    let tokens;
    try {
      tokens = await api("/api/v1/users/me/api-tokens");
    } catch (err) {
      if (gone) return;
      tokenList.replaceChildren(notice(`Could not list your tokens: ${errText(err)}`, "error"));
      return;
    }
    if (gone) return;
    if (!tokens.length) {
      tokenList.replaceChildren(h("p", { class: "muted" }, "You have no API tokens."));
      return;
    }
    tokenList.replaceChildren(h("div", { class: "table-wrap" }, h("table", { class: "tokens" },
      h("caption", { class: "sr-only" }, "Your API tokens"),
      h("thead", {}, h("tr", {}, ["Name", "Starts with", "Created", "Last used", ""].map((t, i) =>
        h("th", { scope: "col" }, i === 4 ? h("span", { class: "sr-only" }, "Actions") : t)))),
      h("tbody", {}, tokens.map((t) => {
        const revoke = h("button", { type: "button", class: "secondary o-danger", "aria-label": `Revoke ${t.name}` }, "Revoke");
        revoke.addEventListener("click", () => revokeToken(t, revoke));
        return h("tr", {},
          h("td", { "data-label": "Name" }, t.name),
          h("td", { "data-label": "Starts with" }, h("code", {}, `${t.prefix}…`)),
          h("td", { "data-label": "Created" }, fmtTime(t.created_at)),
          h("td", { "data-label": "Last used" }, t.last_used_at ? fmtAgo(t.last_used_at) : "never"),
          h("td", { class: "o-revoke-cell" }, revoke));
      })))));
  }

  async function revokeToken(t, button) {
    button.disabled = true;
    tokenMsg.replaceChildren();
    try {
      await api(`/api/v1/users/me/api-tokens/${encodeURIComponent(t.id)}`, { method: "DELETE" });
      if (shownTokenId === t.id) {
        newToken.hidden = true;
        newToken.replaceChildren();
        shownTokenId = null;
      }
      tokenMsg.replaceChildren(notice(`Token “${t.name}” revoked; scripts using it no longer get in.`, "ok"));
    } catch (err) {
      button.disabled = false;
      tokenMsg.replaceChildren(notice(errText(err), "error"));
      return;
    }
    await loadTokens();
    tokenName.focus();
  }

  tokenForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    tokenMsg.replaceChildren();
    const name = tokenName.value.trim();
    if (!name) {
      tokenMsg.replaceChildren(notice("Give the token a name, e.g. the script that will use it.", "error"));
      tokenName.focus();
      return;
    }
    createBtn.disabled = true;
    try {
      const made = await api("/api/v1/users/me/api-tokens", { method: "POST", body: { name } });
      tokenName.value = "";
      const code = h("code", { "data-testid": "new-token", id: "new-token-value" }, made.token);
      const copy = h("button", { type: "button", class: "secondary" }, "Copy token");
      const copied = h("span", { role: "status", class: "muted" });
      copy.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(made.token);
          setText(copied, "Copied.");
        } catch {
          const range = document.createRange();
          range.selectNodeContents(code);
          const sel = getSelection();
          sel.removeAllRanges();
          sel.addRange(range);
          setText(copied, "Selected: press Ctrl+C (⌘C) to copy.");
        }
      });
      newToken.replaceChildren(
        notice(`Token “${made.name}” created. Copy it now: it is shown only once.`, "ok"),
        h("div", { class: "token-box" }, code),
        h("div", { class: "token-actions" }, copy, copied),
      );
      newToken.hidden = false;
      shownTokenId = made.id;
      copy.focus();
    } catch (err) {
      tokenMsg.replaceChildren(notice(errText(err), "error"));
    } finally {
      createBtn.disabled = false;
    }
    await loadTokens();
  });

  await loadTokens();
  return () => {
    gone = true;
  };
}

// --- routes -------------------------------------------------------------------------------------------------
export function register(route) {
  route("/cars", carsPage, { title: "My cars" });
  route("/cars/:vin", (main, { vin }) => renderCarPage(main, vin), { title: "Car" });
  route("/cars/:vin/history", historyPage, { title: "History" });
  route("/cars/:vin/charging", chargingPage, { title: "Charging sessions" });
  route("/home", homeChargingPage, { title: "Home charging" });
  route("/settings", settingsPage, { title: "Settings" });
}
