// Hand-written SVG charts: lines over time, stacked energy bars, order curves, link flows.
// Each returns an <svg role="img"> with a <title> and <desc>; the views put a data table
// next to every chart for screen readers and for exact numbers.

import { s, nextId } from "./util.js";

const W = 640;
const PAD = { left: 58, right: 14, top: 14, bottom: 30 };

export const PALETTE = ["c0", "c1", "c2", "c3", "c4", "c5"];
export const DASHES = [null, "6 3", "2 3", "8 3 2 3", "1 2", "10 4"];

function frame(title, desc, height, className) {
  const titleId = nextId("t");
  const descId = nextId("d");
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${height}`,
    class: `chart ${className}`,
    role: "img",
    "aria-labelledby": `${titleId} ${descId}`,
    preserveAspectRatio: "xMidYMid meet",
  });
  svg.append(s("title", { id: titleId }, title), s("desc", { id: descId }, desc));
  return svg;
}

/** Round tick values covering [lo, hi]. */
export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) {
    hi = lo + 1;
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((m) => raw <= m) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Number(v.toFixed(10)));
  }
  return out;
}

function scale(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

function yAxis(svg, y, values, format, x0, x1) {
  const g = s("g", { class: "axis y", "aria-hidden": "true" });
  for (const v of values) {
    const py = y(v);
    g.append(
      s("line", { x1: x0, x2: x1, y1: py, y2: py, class: "grid" }),
      s("text", { x: x0 - 6, y: py + 4, "text-anchor": "end" }, format(v)),
    );
  }
  svg.append(g);
}

function xAxis(svg, x, values, format, y0) {
  const g = s("g", { class: "axis x", "aria-hidden": "true" });
  for (const v of values) {
    const px = x(v);
    g.append(
      s("line", { x1: px, x2: px, y1: y0, y2: y0 + 4, class: "tick" }),
      s("text", { x: px, y: y0 + 17, "text-anchor": "middle" }, format(v)),
    );
  }
  svg.append(g);
}

function timeTicks(t0, t1, count = 6) {
  const quarter = 15 * 60 * 1000;
  const steps = [1, 2, 4, 8, 12, 24, 48, 96, 192].map((n) => n * quarter);
  const step = steps.find((st) => (t1 - t0) / st <= count) || steps[steps.length - 1];
  const out = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
  return out;
}

/**
 * Lines over time. series: [{name, cls, dash, points: [[ms, value]]}];
 * refs: horizontal reference lines [{name, value, cls}].
 */
export function lineChart({ title, desc, series, refs = [], yFormat, xFormat, height = 250, step = 0 }) {
  const svg = frame(title, desc, height, "line-chart");
  const xs = series.flatMap((se) => se.points.map((p) => p[0]));
  const ys = series.flatMap((se) => se.points.map((p) => p[1])).concat(refs.map((r) => r.value));
  const t0 = Math.min(...xs);
  const t1 = Math.max(...xs) + step;
  let lo = Math.min(...ys);
  let hi = Math.max(...ys);
  const margin = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
  lo -= margin;
  hi += margin;
  const yt = ticks(lo, hi);
  lo = Math.min(lo, yt[0]);
  hi = Math.max(hi, yt[yt.length - 1]);
  const x = scale(t0, t1, PAD.left, W - PAD.right);
  const y = scale(lo, hi, height - PAD.bottom, PAD.top);
  yAxis(svg, y, yt, yFormat, PAD.left, W - PAD.right);
  xAxis(svg, x, timeTicks(t0, t1), xFormat, height - PAD.bottom);
  for (const ref of refs) {
    const py = y(ref.value);
    svg.append(
      s("line", { x1: PAD.left, x2: W - PAD.right, y1: py, y2: py, class: `ref ${ref.cls}` }, s("title", {}, `${ref.name}: ${yFormat(ref.value)}`)),
      s("text", { x: W - PAD.right - 4, y: py - 4, "text-anchor": "end", class: `ref-label ${ref.cls}` }, ref.name),
    );
  }
  for (const se of series) {
    const g = s("g", { class: `series ${se.cls}`, "data-series": se.name });
    // Prices hold for a whole interval: draw steps, a point at each interval's start.
    let d = "";
    se.points.forEach(([t, v], i) => {
      const px = x(t);
      const py = y(v);
      d += i === 0 ? `M${px},${py}` : `H${px}V${py}`;
      if (step) d += `H${x(t + step)}`;
    });
    g.append(s("path", { d, class: "line", "stroke-dasharray": se.dash || null }));
    for (const [t, v] of se.points) {
      g.append(
        s("circle", { cx: x(t + step / 2), cy: y(v), r: 2.6, class: "point", "data-value": v }, s("title", {}, `${se.name}, ${xFormat(t)}: ${yFormat(v)}`)),
      );
    }
    svg.append(g);
  }
  return svg;
}

/**
 * Stacked bars per interval: `up` layers stack above zero, `down` below.
 * bars: [{t, up: [values], down: [values]}]; layers: {up: [{name, cls}], down: [...]}.
 */
export function stackedBars({ title, desc, bars, layers, yFormat, xFormat, step, height = 250 }) {
  const svg = frame(title, desc, height, "bar-chart");
  const t0 = Math.min(...bars.map((b) => b.t));
  const t1 = Math.max(...bars.map((b) => b.t)) + step;
  const hi = Math.max(1, ...bars.map((b) => b.up.reduce((a, v) => a + v, 0)));
  const lo = Math.min(0, ...bars.map((b) => -b.down.reduce((a, v) => a + v, 0)));
  const yt = ticks(lo, hi);
  const x = scale(t0, t1, PAD.left, W - PAD.right);
  const y = scale(Math.min(lo, yt[0]), Math.max(hi, yt[yt.length - 1]), height - PAD.bottom, PAD.top);
  yAxis(svg, y, yt, yFormat, PAD.left, W - PAD.right);
  xAxis(svg, x, timeTicks(t0, t1), xFormat, height - PAD.bottom);
  const width = Math.max(1, x(t0 + step) - x(t0) - 1);
  const groups = {};
  for (const layer of [...layers.up, ...layers.down]) {
    groups[layer.name] = s("g", { class: `layer ${layer.cls}`, "data-series": layer.name });
  }
  for (const bar of bars) {
    const px = x(bar.t) + 0.5;
    let base = 0;
    bar.up.forEach((v, i) => {
      if (v <= 0) return;
      const layer = layers.up[i];
      groups[layer.name].append(
        s("rect", { x: px, width, y: y(base + v), height: Math.max(0.5, y(base) - y(base + v)), class: "bar", "data-value": v }, s("title", {}, `${layer.name}, ${xFormat(bar.t)}: ${yFormat(v)}`)),
      );
      base += v;
    });
    base = 0;
    bar.down.forEach((v, i) => {
      if (v <= 0) return;
      const layer = layers.down[i];
      groups[layer.name].append(
        s("rect", { x: px, width, y: y(base), height: Math.max(0.5, y(base - v) - y(base)), class: "bar", "data-value": v }, s("title", {}, `${layer.name}, ${xFormat(bar.t)}: ${yFormat(v)}`)),
      );
      base -= v;
    });
  }
  svg.append(...Object.values(groups));
  svg.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0), class: "zero" }));
  return svg;
}

/**
 * Supply and demand step curves of one zone with the utility's prices and the clearing point.
 * supply/demand: [[price_ticks, cumulative_wh]] in merit order.
 */
export function curveChart({ title, desc, supply, demand, retail, feedIn, result, yFormat, xFormat, height = 260 }) {
  const svg = frame(title, desc, height, "curve-chart");
  const maxQ = Math.max(
    1,
    supply.length ? supply[supply.length - 1][1] : 0,
    demand.length ? demand[demand.length - 1][1] : 0,
    result ? Math.max(result.bought_wh, result.sold_wh) : 0,
  ) * 1.1;
  const prices = [retail, feedIn, ...supply.map((p) => p[0]), ...demand.map((p) => p[0])];
  if (result) prices.push(result.price_ticks);
  let lo = Math.min(...prices);
  let hi = Math.max(...prices);
  const margin = (hi - lo) * 0.08 || 10_000;
  lo = Math.max(0, lo - margin);
  hi += margin;
  const yt = ticks(lo, hi);
  const x = scale(0, maxQ, PAD.left, W - PAD.right);
  const y = scale(Math.min(lo, yt[0]), Math.max(hi, yt[yt.length - 1]), height - PAD.bottom, PAD.top);
  yAxis(svg, y, yt, yFormat, PAD.left, W - PAD.right);
  xAxis(svg, x, ticks(0, maxQ, 6).filter((v) => v <= maxQ), xFormat, height - PAD.bottom);
  const refs = [
    { name: "utility sells at retail", value: retail, cls: "retail" },
    { name: "utility buys at feed-in", value: feedIn, cls: "feed-in" },
  ];
  for (const ref of refs) {
    const py = y(ref.value);
    svg.append(
      s("line", { x1: PAD.left, x2: W - PAD.right, y1: py, y2: py, class: `ref ${ref.cls}` }, s("title", {}, `${ref.name}: ${yFormat(ref.value)}`)),
      s("text", { x: W - PAD.right - 4, y: py - 4, "text-anchor": "end", class: `ref-label ${ref.cls}` }, ref.name),
    );
  }
  const curve = (points, cls, name) => {
    const g = s("g", { class: `series ${cls}`, "data-series": name });
    if (!points.length) return g;
    let d = `M${x(0)},${y(points[0][0])}`;
    let prevQ = 0;
    for (const [p, q] of points) {
      d += `V${y(p)}H${x(q)}`;
      g.append(s("circle", { cx: x((prevQ + q) / 2), cy: y(p), r: 2.4, class: "point", "data-value": q - prevQ }, s("title", {}, `${name}: ${xFormat(q - prevQ)} at ${yFormat(p)}`)));
      prevQ = q;
    }
    g.prepend(s("path", { d, class: "line" }));
    return g;
  };
  svg.append(curve(supply, "supply", "supply (sell orders)"), curve(demand, "demand", "demand (buy orders)"));
  if (result) {
    const py = y(result.price_ticks);
    const g = s("g", { class: "clearing", "data-series": "clearing" });
    g.append(
      s("line", { x1: PAD.left, x2: W - PAD.right, y1: py, y2: py, class: "price" }),
      s("circle", { cx: x(result.sold_wh), cy: py, r: 5, class: "mark sold" }, s("title", {}, `sold ${xFormat(result.sold_wh)} at ${yFormat(result.price_ticks)}`)),
      s("circle", { cx: x(result.bought_wh), cy: py, r: 5, class: "mark bought" }, s("title", {}, `bought ${xFormat(result.bought_wh)} at ${yFormat(result.price_ticks)}`)),
      s("text", { x: PAD.left + 4, y: py - 5, class: "price-label" }, `clearing price ${yFormat(result.price_ticks)}`),
    );
    svg.append(g);
  }
  return svg;
}

/**
 * Flows over each link against its capacities: zero in the middle, up to the parent right.
 * links: [{label, flow, up, down}] (Wh; up/down capacities may be null: unlimited).
 */
export function flowChart({ title, desc, links, format }) {
  const row = 34;
  const height = PAD.top + row * links.length + 8;
  const svg = frame(title, desc, height, "flow-chart");
  const widest = Math.max(1, ...links.map((l) => Math.max(Math.abs(l.flow || 0), l.up || 0, l.down || 0)));
  const mid = (PAD.left + 110 + W - PAD.right) / 2;
  const half = (W - PAD.right - (PAD.left + 110)) / 2;
  const x = (v) => mid + (v / widest) * half;
  links.forEach((link, i) => {
    const top = PAD.top + i * row;
    const g = s("g", { class: "link", "data-series": link.label });
    g.append(s("text", { x: PAD.left + 100, y: top + 17, "text-anchor": "end", class: "label" }, link.label));
    const up = link.up ?? widest;
    const down = link.down ?? widest;
    g.append(
      s("rect", { x: x(-down), y: top + 4, width: x(up) - x(-down), height: 18, class: `capacity${link.up == null ? " unlimited" : ""}` }, s("title", {}, `capacity: ${link.down == null ? "unlimited" : format(link.down)} down, ${link.up == null ? "unlimited" : format(link.up)} up`)),
    );
    const flow = link.flow || 0;
    const a = x(Math.min(0, flow));
    const b = x(Math.max(0, flow));
    const full = (flow > 0 && link.up != null && flow >= link.up) || (flow < 0 && link.down != null && -flow >= link.down);
    g.append(
      s("rect", { x: a, y: top + 7, width: Math.max(1, b - a), height: 12, class: `flow ${flow >= 0 ? "up" : "down"}${full ? " full" : ""}`, "data-value": flow }, s("title", {}, `${link.label}: ${format(Math.abs(flow))} ${flow >= 0 ? "up to" : "down from"} the parent${full ? " (at capacity)" : ""}`)),
    );
    g.append(s("line", { x1: mid, x2: mid, y1: top + 2, y2: top + 24, class: "zero" }));
    svg.append(g);
  });
  return svg;
}
