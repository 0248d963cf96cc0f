// Smart charging, shared by the owner pages and the operator console: the plan chart (currents per period as
// step lines, the price on a second axis), the plan's words, and forms whose 422 errors land next to the field.
import { ApiError } from "./api.js";
import { fmtNumber, h, notice, setText } from "./ui.js";

export const PHASE_COLOURS = { A: "#1f4fbf", B: "#1a7f45", C: "#8e44ad" };
const PRICE_COLOUR = "#b35c00";
const LIMIT_COLOUR = "#b3261e";

export function errText(err) {
  return err instanceof ApiError ? err.message : String((err && err.message) || err);
}

export function amps(value, digits = 0) {
  return value === null || value === undefined ? "–" : `${fmtNumber(value, digits)} A`;
}

export function kwh(value) {
  return value === null || value === undefined ? "–" : `${fmtNumber(value, 1)} kWh`;
}

export const OBJECTIVES = [
  ["cheapest", "Cheapest hours"],
  ["max_energy", "Fastest (as much as possible, early)"],
];

export function objectiveWords(objective) {
  const found = OBJECTIVES.find(([key]) => key === objective);
  return found ? found[1] : objective || "–";
}

/** "Now 16 A" / "Paused" / "Not steered", with a symbol, for a planned session. */
export function nowWords(s) {
  if (s.control === "station offline") return ["○", "Station offline"];
  if (s.control === "not controllable") return ["!", "Not steered: the station refuses charging profiles"];
  if (s.current_a === null || s.current_a === undefined) return ["…", "Waiting for the plan"];
  if (s.current_a <= 0) return ["⏸", "Paused"];
  return ["⚡", `Charging at ${fmtNumber(s.current_a)} A`];
}

/** The plan's reasons as one sentence, first letter capitalised. */
export function reasonsText(reasons) {
  const text = (reasons || []).filter(Boolean).join("; ");
  return text ? text[0].toUpperCase() + text.slice(1) + "." : "";
}

/** An ISO time as the value of an <input type="datetime-local"> in the browser's zone ("2026-11-24T07:00"). */
export function localInputValue(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A datetime-local value with the browser's UTC offset at that moment: "2026-11-24T07:00:00+01:00". */
export function withOffset(value) {
  const d = new Date(value); // a date-time without zone is local time
  if (!value || Number.isNaN(d.getTime())) return null;
  const minutes = -d.getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const abs = Math.abs(minutes);
  const pad = (n) => String(n).padStart(2, "0");
  const base = value.length === 16 ? `${value}:00` : value;
  return `${base}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** The browser's IANA time zone, e.g. Europe/Berlin. */
export function browserZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

/**
 * A labelled field with an error slot under it, tied to the control by aria-describedby.
 * Returns {node, control, error(text), clear()}.
 */
export function field(id, label, control, hint = "") {
  control.id = id;
  const slot = h("p", { class: "field-error", id: `${id}-error`, role: "alert", hidden: true });
  const hintNode = hint ? h("p", { class: "o-hint muted", id: `${id}-hint` }, hint) : null;
  control.setAttribute("aria-describedby", [hint ? `${id}-hint` : "", `${id}-error`].filter(Boolean).join(" "));
  const node = h("div", { class: "o-field plan-field" }, h("label", { for: id }, label), control, hintNode, slot);
  return {
    node,
    control,
    error(text) {
      slot.replaceChildren(h("span", { "aria-hidden": "true" }, "⚠ "), text);
      slot.hidden = false;
      control.setAttribute("aria-invalid", "true");
    },
    clear() {
      slot.replaceChildren();
      slot.hidden = true;
      control.removeAttribute("aria-invalid");
    },
  };
}

/**
 * Show an API error next to the fields it names: `fields` maps a field path ("departure", "limits.max_a") to a
 * field(); the longest matching prefix wins. What matches no field goes to `general` (a node). Returns the
 * first field that got an error (to focus it).
 */
export function showErrors(err, fields, general) {
  for (const f of Object.values(fields)) f.clear();
  general.replaceChildren();
  const pairs = err instanceof ApiError ? err.fields() : [];
  let first = null;
  const rest = [];
  for (const [path, msg] of pairs) {
    const key = Object.keys(fields)
      .filter((k) => path === k || path.startsWith(`${k}.`))
      .sort((a, b) => b.length - a.length)[0];
    if (key) {
      fields[key].error(msg);
      first = first || fields[key];
    } else {
      rest.push(path ? `${path}: ${msg}` : msg);
    }
  }
  if (!pairs.length) rest.push(errText(err));
  if (rest.length) general.replaceChildren(notice(rest.join("; "), "error"));
  if (first) first.control.focus();
  return first;
}

export function clearErrors(fields, general) {
  for (const f of Object.values(fields)) f.clear();
  general.replaceChildren();
}

/**
 * A uPlot chart of a plan: step lines of currents (A, left axis) per period and the price (right axis).
 * update({start, period_s, prices, lines: [{label, values, stroke, dash}]}) redraws; destroy() ends it.
 */
export function planChart({ label, testid }) {
  const box = h("div", { class: "plan-chart", role: "img", "aria-label": label, "data-testid": testid, "data-points": "0" });
  const summary = h("p", { class: "plan-chart-summary muted" });
  const node = h("div", { class: "plan-chart-wrap" }, box, summary);
  let plot = null;
  let shape = "";
  let last = null;
  const resize = new ResizeObserver(() => {
    if (plot) plot.setSize(size());
  });
  resize.observe(box);

  function size() {
    const width = Math.max(220, Math.floor(box.clientWidth || node.clientWidth || 320));
    return { width, height: window.innerWidth < 600 ? 220 : 300 };
  }

  function update(data) {
    last = data;
    if (typeof uPlot === "undefined") {
      box.replaceChildren(notice("The chart library did not load.", "error"));
      return;
    }
    const n = (data.prices || []).length || Math.max(0, ...data.lines.map((l) => l.values.length));
    const t0 = Date.parse(data.start) / 1000;
    const xs = [];
    for (let i = 0; i <= n; i++) xs.push(t0 + i * data.period_s);
    const extend = (values) => {
      const out = [];
      for (let i = 0; i < n; i++) out.push(values[i] ?? null);
      out.push(n ? out[n - 1] : null); // the last period's step runs to the end of the horizon
      return out;
    };
    const stepped = uPlot.paths && uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined;
    const series = [{ value: (u, t) => (t === null ? "–" : new Date(t * 1000).toLocaleString()) }];
    const columns = [xs];
    for (const line of data.lines) {
      series.push({
        label: line.label,
        scale: "A",
        stroke: line.stroke,
        width: line.width || 2,
        dash: line.dash,
        fill: line.fill,
        paths: stepped,
        points: { show: false },
        value: (u, y) => (y === null || y === undefined ? "–" : `${fmtNumber(y, 1)} A`),
      });
      columns.push(extend(line.values));
    }
    const hasPrices = (data.prices || []).some((p) => p !== null && p !== undefined);
    if (hasPrices) {
      series.push({
        label: "Price per kWh",
        scale: "price",
        stroke: PRICE_COLOUR,
        width: 1.5,
        dash: [6, 4],
        paths: stepped,
        points: { show: false },
        value: (u, y) => (y === null || y === undefined ? "–" : fmtNumber(y, 3)),
      });
      columns.push(extend(data.prices));
    }
    const newShape = series.map((s) => s.label || "x").join("|");
    box.setAttribute("data-points", String(n));
    if (plot && newShape === shape) {
      plot.setData(columns);
    } else {
      if (plot) plot.destroy();
      box.replaceChildren();
      shape = newShape;
      const axis = { stroke: "#5a6478", grid: { stroke: "#e6eaf0" }, ticks: { stroke: "#e6eaf0" } };
      const axes = [axis, { ...axis, scale: "A", label: "A", size: 48 }];
      if (hasPrices) axes.push({ ...axis, scale: "price", side: 1, label: "Price", size: 56, grid: { show: false } });
      plot = new uPlot(
        {
          ...size(),
          series,
          scales: {
            x: { time: true },
            A: { range: (u, min, max) => [0, Math.max(1, max || 0) * 1.1] },
            price: { range: (u, min, max) => [Math.min(0, min || 0), Math.max(0.01, max || 0) * 1.15] },
          },
          axes,
          cursor: { drag: { x: false, y: false } },
          legend: { live: true },
        },
        columns,
        box,
      );
    }
    const hours = (n * data.period_s) / 3600;
    setText(
      summary,
      `${fmtNumber(n)} periods of ${fmtNumber(data.period_s / 60)} min, the next ${fmtNumber(hours, hours < 10 ? 1 : 0)} h` +
        (hasPrices ? "; dashed: the price per kWh (right axis)." : "."),
    );
  }

  return {
    node,
    box,
    update,
    redraw: () => last && update(last),
    destroy() {
      resize.disconnect();
      if (plot) plot.destroy();
      plot = null;
    },
  };
}

/** The plan chart of a site: load per phase (step lines) against the connection's limit, with the price. */
export function sitePlanLines(plan) {
  const lines = [];
  const phases = Object.keys(plan.load_a || {}).sort();
  // equal loads on the three phases lie on one another: A widest, C thinnest, so each still shows
  const widths = { A: 5, B: 3, C: 1.5 };
  for (const p of phases) {
    lines.push({ label: `Load phase ${p}`, values: plan.load_a[p], stroke: PHASE_COLOURS[p] || "#1f4fbf", width: widths[p] || 2 });
  }
  const limits = plan.limit_a || [];
  const n = (plan.prices || []).length;
  if (limits.length && limits.every((a) => a === limits[0])) {
    lines.push({ label: "Limit", values: new Array(n).fill(limits[0]), stroke: "#b3261e", dash: [2, 3], width: 1.5 });
  } else {
    limits.forEach((a, i) => lines.push({
      label: `Limit phase ${"ABC"[i]}`, values: new Array(n).fill(a), stroke: PHASE_COLOURS["ABC"[i]], dash: [2, 3], width: 1,
    }));
  }
  return lines;
}
