// The meters view: assets declared above the grid's approval limits wait here for the operator
// (approve, perhaps at a lower rating, or refuse), and readings flagged as implausible hold their
// statement's payout until the operator settles them at their bound or accepts them.

import { h, short, table, when } from "./util.js";

let message = "";

function panel(id, title, ...children) {
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

async function decide(ctx, path, body, done) {
  try {
    await ctx.api(path, { method: "POST", body: JSON.stringify(body) });
    message = done;
  } catch (err) {
    message = `Not done: ${err.message || err}`;
  }
  ctx.refresh();
}

function assetActions(row, ctx) {
  const label = `${row.name} ${row.asset}`;
  const power = h("input", { type: "number", min: "1", max: String(row.declared_power_w || ""), inputmode: "numeric", placeholder: "as declared", "aria-label": `Approved rating (W) of ${label}`, class: "rating" });
  const approve = h("button", { type: "button" }, "Approve");
  const refuse = h("button", { type: "button", class: "secondary" }, "Refuse");
  approve.setAttribute("aria-label", `Approve ${label}`);
  refuse.setAttribute("aria-label", `Refuse ${label}`);
  const who = { participant: row.participant, asset: row.asset };
  approve.addEventListener("click", () => {
    const body = { ...who, approve: true };
    if (power.value) body.power_w = Number(power.value);
    decide(ctx, "meters/assets", body, `Approved ${label}.`);
  });
  refuse.addEventListener("click", () => decide(ctx, "meters/assets", { ...who, approve: false }, `Refused ${label}.`));
  return h("div", { class: "copy-row" }, power, approve, refuse);
}

function flagActions(row, ctx) {
  if (row.decision) return h("span", { class: "badge done" }, row.decision === "bound" ? "settled at bound" : "reading accepted");
  const label = `${row.name} ${row.asset} ${row.interval}`;
  const who = { participant: row.participant, asset: row.asset, interval: row.interval };
  const bound = h("button", { type: "button" }, "Pay at bound");
  const accept = h("button", { type: "button", class: "secondary" }, "Accept reading");
  bound.setAttribute("aria-label", `Pay at bound: ${label}`);
  accept.setAttribute("aria-label", `Accept reading: ${label}`);
  bound.addEventListener("click", () => decide(ctx, "meters/flags", { ...who, decision: "bound" }, `Released ${label} at its bound.`));
  accept.addEventListener("click", () => decide(ctx, "meters/flags", { ...who, decision: "reading" }, `Accepted ${label}.`));
  return h("div", { class: "copy-row" }, bound, accept);
}

export function meters(data, ctx) {
  const status = h("p", { id: "meters-message", role: "status", "aria-live": "polite" }, message);
  return [
    status,
    panel(
      "h-waiting",
      "Assets waiting for approval",
      h("p", {}, "Declared above what the grid approves on a household's word ([grid.meters.approval]); their readings and orders are refused until you decide. Approve at a lower rating if an inspection found less."),
      table(
        `${data.waiting.length} assets waiting`,
        [
          { label: "Household", value: (r) => h("span", { title: r.participant }, r.name) },
          { label: "Asset", value: (r) => `${r.asset} (${r.kind || r.category})` },
          { label: "Declared", value: (r) => `${r.declared_power_w ?? "–"} W${r.declared_capacity_wh ? `, ${r.declared_capacity_wh} Wh` : ""}`, num: true },
          { label: "Why", value: (r) => r.reason },
          { label: "Decision", value: (r) => assetActions(r, ctx) },
        ],
        data.waiting,
        { empty: "No asset waits for approval." },
      ),
    ),
    panel(
      "h-flags",
      "Flagged readings",
      h("p", {}, "Implausible readings are kept as sent and settled at their plausible bound; the payout of their statement waits for you."),
      table(
        `${data.flags.length} flagged readings (newest first)`,
        [
          { label: "Household", value: (r) => h("span", { title: r.participant }, r.name) },
          { label: "Asset", value: (r) => r.asset },
          { label: "Interval", value: (r) => when(r.interval) },
          { label: "Reading", value: (r) => `${r.reading_wh} Wh`, num: true },
          { label: "Settled at", value: (r) => `${r.bound_wh} Wh`, num: true },
          { label: "Rule", value: (r) => h("span", { class: "badge overdue", title: r.reason }, r.code) },
          { label: "Statement", value: (r) => (r.statement ? h("span", { class: "mono", title: r.statement }, short(r.statement, 12, 4)) : "not issued yet") },
          { label: "Decision", value: (r) => flagActions(r, ctx) },
        ],
        data.flags,
        { empty: "No reading flagged." },
      ),
    ),
  ];
}
