// Small helpers shared by the dashboard's views: DOM building and number formats.
// Text always goes in through textContent (names come from households).

export const SVG_NS = "http://www.w3.org/2000/svg";

/** An HTML element: h("p", {class: "x"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, like h(). */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

let uid = 0;
export function nextId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

// --- formats -----------------------------------------------------------------------

export const TICKS = 1_000_000; // price ticks per currency unit per kWh
export const MICRO = 1_000_000; // micro-units per currency unit

export function energy(wh) {
  const v = Number(wh);
  const abs = Math.abs(v);
  if (abs >= 10_000_000) return `${(v / 1_000_000).toFixed(1)} MWh`;
  if (abs >= 10_000) return `${(v / 1000).toFixed(1)} kWh`;
  if (abs >= 1000) return `${(v / 1000).toFixed(2)} kWh`;
  return `${v} Wh`;
}

export function kwh(wh) {
  return Number(wh) / 1000;
}

let currencyCode = "EUR";
export function setCurrency(code) {
  currencyCode = code || "EUR";
}
export function currency() {
  return currencyCode;
}

const moneyFormats = new Map();
function moneyFormat(digits) {
  const key = `${currencyCode}/${digits}`;
  if (!moneyFormats.has(key)) {
    moneyFormats.set(
      key,
      new Intl.NumberFormat("en-GB", {
        style: "currency",
        currency: currencyCode,
        minimumFractionDigits: digits,
        maximumFractionDigits: digits,
      }),
    );
  }
  return moneyFormats.get(key);
}

/** Micro-units of the currency, to the cent (or to 4 digits for small amounts). */
export function money(micro, { precise = false } = {}) {
  const v = Number(micro) / MICRO;
  const digits = precise || (v !== 0 && Math.abs(v) < 0.1) ? 4 : 2;
  return moneyFormat(digits).format(v);
}

/** An amount in a ledger unit ("micro-EUR" or "nanos"). */
export function ledgerAmount(amount, unit) {
  if (unit && unit.startsWith("micro-")) return money(amount);
  return `${Number(amount).toLocaleString("en-GB")} ${unit || ""}`.trim();
}

export function price(ticks) {
  return `${(Number(ticks) / TICKS).toFixed(4)}`;
}

export function priceUnit() {
  return `${currencyCode}/kWh`;
}

export function percent(part, whole) {
  if (!whole) return "–";
  return `${Math.round((100 * part) / whole)} %`;
}

export function parseTime(iso) {
  return Date.parse(iso);
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** 10:15 (UTC). */
export function hhmm(ms) {
  const d = new Date(ms);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

/** 27 Nov 10:15 UTC */
export function when(iso) {
  if (!iso) return "–";
  const d = new Date(typeof iso === "number" ? iso : parseTime(iso));
  const month = d.toLocaleString("en-GB", { month: "short", timeZone: "UTC" });
  return `${d.getUTCDate()} ${month} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
}

export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 86_400) return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  return `${s} s`;
}

export function short(id, head = 10, tail = 6) {
  if (!id) return "–";
  return id.length <= head + tail + 1 ? id : `${id.slice(0, head)}…${id.slice(-tail)}`;
}

// --- tables ------------------------------------------------------------------------

/**
 * A table in a scrollable, keyboard-focusable region.
 * columns: [{label, value: row => text|Node, num: bool}]
 */
export function table(caption, columns, rows, { empty = "Nothing yet.", className = "" } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.map((row) =>
    h(
      "tr",
      {},
      columns.map((c, i) => {
        const value = c.value(row);
        const tag = i === 0 && c.rowHeader !== false ? "th" : "td";
        return h(tag, tag === "th" ? { scope: "row", class: c.num ? "num" : null } : { class: c.num ? "num" : null }, value);
      }),
    ),
  );
  const id = nextId("tbl");
  return h(
    "div",
    { class: `table-wrap ${className}`, role: "region", "aria-labelledby": id, tabindex: "0" },
    h("table", {}, h("caption", { id }, caption), h("thead", {}, head), h("tbody", {}, body)),
  );
}

/** A chart's data as a table, folded away under the chart. */
export function dataTable(key, caption, columns, rows) {
  return h(
    "details",
    { class: "data-table", "data-key": key },
    h("summary", {}, "Data table"),
    table(caption, columns, rows),
  );
}
