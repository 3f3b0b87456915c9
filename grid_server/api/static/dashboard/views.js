// The dashboard's views: each turns the JSON of /dashboard/api/<view> into DOM.

import { curveChart, DASHES, flowChart, lineChart, PALETTE, stackedBars } from "./charts.js";
import {
  currency,
  dataTable,
  duration,
  energy,
  h,
  hhmm,
  ledgerAmount,
  money,
  parseTime,
  percent,
  price,
  priceUnit,
  short,
  table,
  when,
} from "./util.js";

const QUARTER = 15 * 60 * 1000;

function card(label, value, detail, attrs = {}) {
  return h("div", { class: "card", ...attrs }, h("h3", {}, label), h("p", { class: "value" }, value), detail ? h("p", { class: "detail" }, detail) : null);
}

function panel(title, ...children) {
  const id = `h-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

function figure(caption, chart, legend, tableEl) {
  return h("figure", { class: "chart-figure" }, h("figcaption", {}, caption), chart, legend, tableEl);
}

function legend(items) {
  return h(
    "ul",
    { class: "legend", "aria-hidden": "true" },
    items.map((item) =>
      h("li", { class: item.cls }, h("span", { class: `swatch ${item.kind || "line"}${item.dash ? " dashed" : ""}` }), item.name),
    ),
  );
}

function zoneName(zones, id) {
  const zone = zones.find((z) => z.id === id);
  return zone ? zone.name : id;
}

function status(text, kind) {
  return h("span", { class: `badge ${kind || text}` }, text.replace(/_/g, " "));
}

// --- overview ------------------------------------------------------------------------

export function overview(data, ctx) {
  const zones = data.grid.zones;
  const current = data.current;
  const totals = data.totals;
  const series = data.series;
  const traded = totals.local_wh + totals.from_utility_wh + totals.to_utility_wh;
  // The current interval and the next gate closure follow the grid's clock between
  // updates (they are pure functions of the time and the grid's parameters).
  const lengthMs = data.grid.interval_minutes * 60_000;
  const gateMs = data.grid.gate_closure_seconds * 1000;
  const intervalValue = h("span", {}, "");
  const intervalDetail = h("span", {}, "");
  const countdown = h("span", { class: "countdown" }, "");
  const gateDetail = h("span", {}, "");
  const update = () => {
    const now = ctx.gridNow();
    const start = Math.floor(now / lengthMs) * lengthMs;
    intervalValue.textContent = `${hhmm(start)}–${hhmm(start + lengthMs)}`;
    const known = start === parseTime(current.interval) ? `, ${current.state}` : "";
    intervalDetail.textContent = `UTC${known}`;
    // The next interval still taking orders: after the last whose gate has closed.
    const next = Math.floor((now + gateMs) / lengthMs) * lengthMs + lengthMs;
    countdown.textContent = duration((next - gateMs - now) / 1000);
    gateDetail.textContent = `until orders for ${hhmm(next)} UTC close at ${hhmm(next - gateMs)} UTC`;
  };
  update();
  ctx.onTick(update);

  const cards = h(
    "div",
    { class: "cards" },
    card("Current interval", intervalValue, intervalDetail, { id: "current-interval" }),
    card("Gate closure", countdown, gateDetail, { id: "gate-closure" }),
    card(
      "Participants",
      String(data.participants.active),
      `${data.participants.total} registered in ${zones.length} zone${zones.length === 1 ? "" : "s"}`,
    ),
    card(
      "Community savings",
      money(totals.savings_micro),
      `against feed-in and retail prices, ${money(Math.trunc(data.window_savings_nano / 1000))} in the last ${data.window.hours} h`,
      { id: "savings" },
    ),
    card(
      "Matched locally",
      energy(totals.local_wh),
      `${percent(totals.local_wh, traded)} of traded energy; ${energy(totals.from_utility_wh)} from and ${energy(totals.to_utility_wh)} to the utility`,
      { id: "local-energy" },
    ),
    ...sharingCards(data),
    card(
      "Intervals",
      String(totals.intervals_cleared),
      `cleared, ${totals.intervals_settled} settled; last ${totals.last_cleared ? when(totals.last_cleared) : "none yet"}`,
      { id: "intervals-cleared" },
    ),
  );

  const out = [panel("Now", cards)];
  const charts = h("div", { class: "charts" });
  if (series.length) {
    charts.append(priceFigure(data), energyFigure(data), savingsFigure(data));
  } else {
    charts.append(h("p", { class: "empty" }, `No interval cleared in the last ${data.window.hours} hours yet. Charts appear with the first market result.`));
  }
  charts.append(
    h(
      "div",
      { class: "chart-figure" },
      h("h3", { class: "figure-title" }, "Participants by zone"),
      table(
        "Registered participants per zone and role",
        [
          { label: "Zone", value: (r) => zoneName(zones, r.zone) },
          { label: "Consumers", value: (r) => r.consumer, num: true },
          { label: "Producers", value: (r) => r.producer, num: true },
          { label: "Prosumers", value: (r) => r.prosumer, num: true },
          { label: "Active", value: (r) => r.active, num: true },
          { label: "Suspended", value: (r) => r.inactive, num: true },
        ],
        data.participants.by_zone,
      ),
    ),
  );
  out.push(panel(`The last ${data.window.hours} hours`, charts));
  out.push(
    h(
      "p",
      { class: "note" },
      "Community savings: what sellers received above the feed-in price plus what buyers paid below the retail price, for every matched trade, at the prices in force in each interval (exact, from the fills and zone prices). Link fees are not savings.",
    ),
  );
  return out;
}

// Sharing after delivery (docs/developers/sharing.md): only on grids that share.
function sharingCards(data) {
  const sharing = data.grid.sharing;
  if (!sharing || !sharing.enabled) return [];
  const totals = data.totals;
  const inWindow = data.series.reduce((a, p) => a + p.shared_wh, 0);
  return [
    card(
      "Shared after delivery",
      energy(totals.shared_wh),
      `${energy(inWindow)} in the last ${data.window.hours} h (${sharing.key} key); with what the market matched ${energy(totals.neighbourhood_wh)} stayed in the neighbourhood`,
      { id: "shared-energy" },
    ),
  ];
}

function priceFigure(data) {
  const zones = data.grid.zones;
  const ids = zones.map((z) => z.id).filter((id) => data.series.some((p) => id in p.price_ticks));
  const series = ids.map((id, i) => ({
    name: zoneName(zones, id),
    cls: PALETTE[i % PALETTE.length],
    dash: DASHES[i % DASHES.length],
    points: data.series.filter((p) => id in p.price_ticks).map((p) => [parseTime(p.interval), p.price_ticks[id]]),
  }));
  const last = data.series[data.series.length - 1];
  const chart = lineChart({
    title: `Local price per zone (${priceUnit()})`,
    desc: `Clearing price of each zone in every cleared interval of the last ${data.window.hours} hours, between the feed-in and the retail price. Latest: ${ids.map((id) => `${zoneName(zones, id)} ${price(last.price_ticks[id] ?? 0)}`).join(", ")}.`,
    series,
    refs: [
      { name: "retail", value: last.retail_ticks, cls: "retail" },
      { name: "feed-in", value: last.feed_in_ticks, cls: "feed-in" },
    ],
    yFormat: price,
    xFormat: hhmm,
    step: QUARTER,
  });
  chart.id = "price-chart";
  const columns = [{ label: "Interval (UTC)", value: (p) => when(p.interval) }].concat(
    ids.map((id) => ({ label: zoneName(zones, id), value: (p) => (id in p.price_ticks ? price(p.price_ticks[id]) : "–"), num: true })),
  );
  return figure(
    `Local price per zone, ${priceUnit()}`,
    chart,
    legend([...series.map((se) => ({ name: se.name, cls: se.cls, dash: se.dash })), { name: "retail / feed-in", cls: "ref", dash: true }]),
    dataTable("prices", `Clearing prices per zone (${priceUnit()})`, columns, data.series.slice().reverse()),
  );
}

function energyFigure(data) {
  const sharing = data.grid.sharing && data.grid.sharing.enabled;
  const layers = {
    up: [
      { name: "matched locally", cls: "local" },
      ...(sharing ? [{ name: "shared after delivery", cls: "shared" }] : []),
      { name: "bought from the utility", cls: "from-utility" },
    ],
    down: [{ name: "sold to the utility", cls: "to-utility" }],
  };
  const sharedText = sharing ? `, ${energy(data.series.reduce((a, p) => a + p.shared_wh, 0))} shared after delivery` : "";
  const chart = stackedBars({
    title: "Energy matched locally and traded with the utility (kWh)",
    desc: `Per interval: energy neighbours traded with each other${sharing ? ", shared after delivery (once settled)" : ""} and bought from the utility (above the axis), and sold to the utility (below). In the window: ${energy(data.series.reduce((a, p) => a + p.local_wh, 0))} matched locally${sharedText}.`,
    bars: data.series.map((p) => ({
      t: parseTime(p.interval),
      up: sharing ? [p.local_wh, p.shared_wh, p.from_utility_wh] : [p.local_wh, p.from_utility_wh],
      down: [p.to_utility_wh],
    })),
    layers,
    yFormat: (v) => (v / 1000).toFixed(Math.abs(v) >= 10_000 ? 0 : 1),
    xFormat: hhmm,
    step: QUARTER,
  });
  chart.id = "energy-chart";
  return figure(
    "Energy per interval, kWh",
    chart,
    legend([...layers.up, ...layers.down].map((l) => ({ ...l, kind: "box" }))),
    dataTable(
      "energy",
      "Energy per interval",
      [
        { label: "Interval (UTC)", value: (p) => when(p.interval) },
        { label: "Matched locally", value: (p) => energy(p.local_wh), num: true },
        ...(sharing ? [{ label: "Shared after delivery", value: (p) => energy(p.shared_wh), num: true }] : []),
        { label: "From the utility", value: (p) => energy(p.from_utility_wh), num: true },
        { label: "To the utility", value: (p) => energy(p.to_utility_wh), num: true },
      ],
      data.series.slice().reverse(),
    ),
  );
}

function savingsFigure(data) {
  let sum = 0;
  const points = data.series.map((p) => {
    sum += p.savings_nano;
    return [parseTime(p.interval), sum / 1000];
  });
  const chart = lineChart({
    title: `Community savings in the window (${currency()})`,
    desc: `Savings against the status quo, added up over the last ${data.window.hours} hours: ${money(sum / 1000)}.`,
    series: [{ name: "savings", cls: "savings", points }],
    yFormat: (v) => (v / 1_000_000).toFixed(2),
    xFormat: hhmm,
    step: QUARTER,
  });
  chart.id = "savings-chart";
  return figure(
    `Community savings, cumulative over the window, ${currency()}`,
    chart,
    null,
    dataTable(
      "savings",
      "Savings per interval",
      [
        { label: "Interval (UTC)", value: (p) => when(p.interval) },
        { label: "Savings", value: (p) => money(p.savings_nano / 1000, { precise: true }), num: true },
      ],
      data.series.slice().reverse(),
    ),
  );
}

// --- market --------------------------------------------------------------------------

export function market(data, ctx) {
  const zones = data.zones;
  const nav = h(
    "div",
    { class: "interval-nav" },
    h(
      "button",
      { type: "button", class: "secondary", disabled: !data.previous, onclick: () => ctx.go(`market/${data.previous}`) },
      "← Earlier",
    ),
    h("label", { for: "interval-select" }, "Interval"),
    h(
      "select",
      { id: "interval-select", onchange: (e) => ctx.go(`market/${e.target.value}`) },
      (data.recent.includes(data.interval) ? data.recent : [data.interval, ...data.recent]).map((t) =>
        h("option", { value: t, selected: t === data.interval }, when(t)),
      ),
    ),
    h("button", { type: "button", class: "secondary", disabled: !data.next, onclick: () => ctx.go(`market/${data.next}`) }, "Later →"),
    h("button", { type: "button", class: "secondary", onclick: () => ctx.go("market") }, "Latest"),
  );
  const facts = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "State"),
    h("dd", {}, status(data.state)),
    h("dt", {}, "Gate closure"),
    h("dd", {}, when(data.gate_closure)),
    h("dt", {}, "Orders"),
    h("dd", {}, data.orders ?? zones.reduce((a, z) => a + z.orders.buy + z.orders.sell, 0)),
    h("dt", {}, "Utility prices"),
    h("dd", {}, `retail ${price(data.retail_ticks)}, feed-in ${price(data.feed_in_ticks)} ${priceUnit()}`),
    data.welfare !== null ? [h("dt", {}, "Welfare"), h("dd", {}, `${Number(data.welfare).toFixed(4)} ${currency()}`)] : null,
    data.clearing_ms !== null ? [h("dt", {}, "Clearing took"), h("dd", {}, `${data.clearing_ms} ms`)] : null,
  );
  const curves = h("div", { class: "charts" });
  for (const zone of zones) {
    const r = zone.result;
    const chart = curveChart({
      title: `${zone.name}: supply and demand`,
      desc: r
        ? `Sell and buy orders of ${zone.name} as step curves. Cleared at ${price(r.price_ticks)} ${priceUnit()}: participants sold ${energy(r.sold_wh)} and bought ${energy(r.bought_wh)}; the utility bought ${energy(r.utility_buy_wh)} and sold ${energy(r.utility_sell_wh)}.`
        : `Sell and buy orders of ${zone.name}; not cleared yet.`,
      supply: zone.supply,
      demand: zone.demand,
      retail: data.retail_ticks,
      feedIn: data.feed_in_ticks,
      result: r,
      yFormat: price,
      xFormat: energy,
    });
    chart.classList.add("zone-curve");
    chart.dataset.zone = zone.id;
    const rows = [
      ...zone.supply.map((p, i) => ({ side: "sell", price: p[0], wh: p[1] - (i ? zone.supply[i - 1][1] : 0), cum: p[1] })),
      ...zone.demand.map((p, i) => ({ side: "buy", price: p[0], wh: p[1] - (i ? zone.demand[i - 1][1] : 0), cum: p[1] })),
    ];
    const summary = r
      ? h(
          "p",
          { class: "detail" },
          `Price ${price(r.price_ticks)} ${priceUnit()} · sold ${energy(r.sold_wh)} · bought ${energy(r.bought_wh)} · utility bought ${energy(r.utility_buy_wh)}, sold ${energy(r.utility_sell_wh)}`,
          zone.parent ? ` · ${r.flow_to_parent_wh >= 0 ? "exported" : "imported"} ${energy(Math.abs(r.flow_to_parent_wh))}` : "",
        )
      : h("p", { class: "detail" }, `${zone.orders.sell} sell and ${zone.orders.buy} buy orders; not cleared yet`);
    curves.append(
      figure(
        `${zone.name}`,
        chart,
        h("div", {}, legend([
          { name: "supply (sell orders)", cls: "supply" },
          { name: "demand (buy orders)", cls: "demand" },
          { name: "clearing price", cls: "clearing" },
          { name: "sold", cls: "clearing", kind: "ring" },
          { name: "bought", cls: "clearing", kind: "dot" },
          { name: "retail / feed-in", cls: "ref", dash: true },
        ]), summary),
        dataTable(
          `curve-${zone.id}`,
          `Order steps in ${zone.name}`,
          [
            { label: "Side", value: (o) => o.side },
            { label: `Price (${priceUnit()})`, value: (o) => price(o.price), num: true },
            { label: "Energy", value: (o) => energy(o.wh), num: true },
            { label: "Cumulative", value: (o) => energy(o.cum), num: true },
          ],
          rows,
        ),
      ),
    );
  }
  const out = [panel("Interval", nav, facts), panel("Supply and demand per zone", curves)];
  if (data.links.length) {
    const links = data.links.map((l) => ({
      label: l.name,
      flow: l.flow_to_parent_wh ?? 0,
      up: l.capacity_up_wh,
      down: l.capacity_down_wh,
    }));
    const chart = flowChart({
      title: "Link flows against capacities",
      desc: "Energy over each zone's link to its parent in this interval; the track is the link's capacity (down to the left, up to the right).",
      links,
      format: energy,
    });
    chart.id = "flow-chart";
    out.push(
      panel(
        "Link flows",
        figure(
          "Flow over each link (right: up to the parent, left: down from it), against its capacity",
          chart,
          legend([
            { name: "flow", cls: "flow", kind: "box" },
            { name: "capacity", cls: "capacity", kind: "box" },
          ]),
          dataTable(
            "links",
            "Link flows",
            [
              { label: "Link", value: (l) => `${l.name} → ${zoneName(zones, l.parent)}` },
              { label: "Flow up", value: (l) => (l.flow_to_parent_wh === null ? "–" : energy(l.flow_to_parent_wh)), num: true },
              { label: "Capacity up", value: (l) => (l.capacity_up_wh === null ? "unlimited" : energy(l.capacity_up_wh)), num: true },
              { label: "Capacity down", value: (l) => (l.capacity_down_wh === null ? "unlimited" : energy(l.capacity_down_wh)), num: true },
              { label: `Fee (${priceUnit()})`, value: (l) => l.fee, num: true },
            ],
            data.links,
          ),
        ),
      ),
    );
  }
  out.push(
    panel(
      "Fills",
      h("p", { class: "detail" }, data.fills_total > data.fills.length ? `The ${data.fills.length} largest of ${data.fills_total} fills.` : `${data.fills_total} fills.`),
      table(
        "Fills of the interval",
        [
          { label: "Household", value: (f) => f.name },
          { label: "Zone", value: (f) => zoneName(zones, f.zone) },
          { label: "Side", value: (f) => f.side },
          { label: "Order", value: (f) => f.order_id },
          { label: "Ordered", value: (f) => energy(f.energy_wh), num: true },
          { label: "Filled", value: (f) => energy(f.filled_wh), num: true },
          { label: `Limit (${priceUnit()})`, value: (f) => f.limit_price, num: true },
          { label: `Price (${priceUnit()})`, value: (f) => f.price, num: true },
        ],
        data.fills,
        { empty: data.state === "open" ? "Not cleared yet." : "No fills in this interval." },
      ),
    ),
  );
  return out;
}

// --- participants --------------------------------------------------------------------

export function participants(data, ctx, detail) {
  const out = [];
  if (detail) out.push(participantDetail(detail, ctx));
  out.push(
    panel(
      "Households",
      h(
        "p",
        { class: "detail" },
        `${data.total} households${data.total > data.participants.length ? `, showing ${data.offset + 1}–${data.offset + data.participants.length}` : ""}. Energy traded in the market; net money settled (positive: paid, negative: earned); savings against the utility's prices.`,
      ),
      data.total > data.limit ? pager(data, ctx) : null,
      table(
        "Households: energy, money, savings and statements",
        [
          { label: "Household", value: (p) => h("a", { href: `#participants/${p.address}` }, p.name) },
          { label: "Zone", value: (p) => p.zone },
          { label: "Role", value: (p) => p.role },
          { label: "Bought", value: (p) => energy(p.bought_wh), num: true },
          { label: "Sold", value: (p) => energy(p.sold_wh), num: true },
          { label: "Shortfall (retail)", value: (p) => energy(p.shortfall_wh), num: true },
          { label: "Surplus (feed-in)", value: (p) => energy(p.surplus_wh), num: true },
          ...(data.participants.some((p) => p.shared_in_wh || p.shared_out_wh)
            ? [{ label: "Shared after delivery (in / out)", value: (p) => `${energy(p.shared_in_wh)} / ${energy(p.shared_out_wh)}`, num: true }]
            : []),
          { label: "Net paid / earned", value: (p) => h("span", { class: p.net_micro > 0 ? "cost" : p.net_micro < 0 ? "earning" : null }, p.net_micro > 0 ? `paid ${money(p.net_micro)}` : p.net_micro < 0 ? `earned ${money(-p.net_micro)}` : money(0)), num: true },
          { label: "Savings", value: (p) => money(p.savings_micro), num: true },
          { label: "Statements", value: (p) => statementsCell(p.statements), num: true },
          { label: "Status", value: (p) => status(p.status) },
        ],
        data.participants,
        { empty: "No household has joined yet." },
      ),
    ),
  );
  return out;
}

function pager(data, ctx) {
  const page = Math.floor(data.offset / data.limit) + 1;
  const pages = Math.ceil(data.total / data.limit);
  return h(
    "nav",
    { class: "interval-nav", "aria-label": "Pages of households" },
    h("button", { type: "button", class: "secondary", disabled: page <= 1, onclick: () => ctx.go(`participants/page/${page - 1}`) }, "← Previous"),
    h("span", {}, `page ${page} of ${pages}`),
    h("button", { type: "button", class: "secondary", disabled: page >= pages, onclick: () => ctx.go(`participants/page/${page + 1}`) }, "Next →"),
  );
}

function statementsCell(st) {
  if (!st.count) return "–";
  const parts = [`${st.paid}/${st.count} paid`];
  if (st.overdue) parts.push(`${st.overdue} overdue`);
  return h("span", { class: st.overdue ? "overdue" : null }, parts.join(", "));
}

function participantDetail(d, ctx) {
  const p = d.participant;
  return panel(
    `Household: ${p.name}`,
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Address"),
      h("dd", { class: "mono" }, p.address),
      h("dt", {}, "Zone and role"),
      h("dd", {}, `${p.zone}, ${p.role}, ${p.status}`),
      h("dt", {}, "Joined"),
      h("dd", {}, when(p.joined_at)),
      h("dt", {}, "Wallet (local ledger)"),
      h("dd", {}, d.balance_micro === null ? "–" : money(d.balance_micro)),
      h("dt", {}, "Savings"),
      h("dd", {}, money(p.savings_micro, { precise: true })),
    ),
    table(
      `Statements of ${p.name}`,
      [
        { label: "Period (UTC)", value: (st) => `${when(st.period_start)} – ${hhmm(parseTime(st.period_end))}` },
        { label: "Amount", value: (st) => (st.amount_due_micro >= 0 ? `owes ${money(st.amount_due_micro)}` : `is owed ${money(-st.amount_due_micro)}`), num: true },
        { label: "Paid", value: (st) => money(Math.abs(st.paid_micro)), num: true },
        { label: "Status", value: (st) => h("span", {}, status(st.status), st.overdue ? status("overdue") : null) },
        { label: "Due", value: (st) => when(st.due_at) },
        { label: "Transactions", value: (st) => (st.payments.length ? st.payments.map((x) => h("div", { class: "mono", title: x.tx_id }, `${x.direction === "in" ? "paid" : "paid out"} ${money(x.amount)} · ${short(x.tx_id)}`)) : "–") },
      ],
      d.statements,
      { empty: "No statements yet." },
    ),
    h("p", {}, h("a", { href: "#participants" }, "Back to all households")),
  );
}

// --- payments ------------------------------------------------------------------------

// What payouts to producers need now against the grid's account (and how to fund it).
function payoutCard(o) {
  if (!o) return null;
  const value = o.lacks === null ? "–" : o.lacks > 0 ? `lacks ${ledgerAmount(o.lacks, o.unit)}` : "funded";
  const detail = `${ledgerAmount(o.payable_now, o.unit)} payable now, ${ledgerAmount(o.owed_to_producers, o.unit)} owed to producers in all`;
  return h(
    "div",
    { class: `card${o.lacks > 0 ? " short" : ""}`, id: "payout-outlook" },
    h("h3", {}, "Payouts"),
    h("p", { class: "value" }, value),
    h("p", { class: "detail" }, detail),
    o.funding ? h("p", { class: "detail mono" }, o.funding) : null,
  );
}

export function payments(data) {
  const l = data.ledger;
  const st = data.statements;
  const count = (k) => (st[k] ? st[k].count : 0);
  const open = count("issued") + count("partially_paid");
  const cards = h(
    "div",
    { class: "cards" },
    card("Ledger", l.kind === "local" ? "local ledger" : "IOTA", `grid account ${short(l.address)}`),
    card("Grid balance", l.grid_balance === null ? "–" : ledgerAmount(l.grid_balance, l.unit), `${l.entries} ledger entries, ${l.accounts} funded accounts`),
    card("Money on the ledger", ledgerAmount(l.balances_total, l.unit), `minted ${ledgerAmount(l.minted, l.unit)}`),
    card("Statements", `${count("paid")} paid`, `${open} open, ${data.overdue.length} overdue`, { id: "statement-counts" }),
    payoutCard(data.payout_outlook),
  );
  const name = (n, address) => (n ? n : h("span", { class: "mono" }, short(address)));
  return [
    panel("Ledger", cards),
    panel(
      "Overdue statements",
      table(
        "Statements owed to the grid and past due",
        [
          { label: "Household", value: (o) => o.name },
          { label: "Statement", value: (o) => h("span", { class: "mono" }, o.statement) },
          { label: "Due", value: (o) => when(o.due_at) },
          { label: "Overdue by", value: (o) => duration(o.overdue_seconds), num: true },
          { label: "Owed", value: (o) => money(o.amount_due_micro - o.paid_micro), num: true },
        ],
        data.overdue,
        { empty: "No statement is overdue." },
      ),
    ),
    panel(
      "Recent transfers",
      table(
        "The latest entries of the local ledger",
        [
          { label: "#", value: (e) => e.index, num: true },
          { label: "Transaction id", value: (e) => h("span", { class: "mono", title: e.tx_id }, short(e.tx_id, 14, 6)) },
          { label: "Kind", value: (e) => e.kind },
          { label: "From", value: (e) => (e.sender ? name(e.sender_name, e.sender) : "minted") },
          { label: "To", value: (e) => name(e.recipient_name, e.recipient) },
          { label: "Amount", value: (e) => ledgerAmount(e.amount, l.unit), num: true },
          { label: "Memo", value: (e) => e.memo || "" },
          { label: "Time", value: (e) => when(e.time) },
        ],
        data.transfers,
        { empty: l.kind === "local" ? "No transfer yet." : "Payments go over IOTA: see the payments below." },
      ),
    ),
    panel(
      "Payments received",
      table(
        "Statement payments the grid recorded",
        [
          { label: "Household", value: (p) => p.name },
          { label: "Transaction id", value: (p) => h("span", { class: "mono", title: p.tx_id }, short(p.tx_id, 14, 6)) },
          { label: "Statement", value: (p) => h("span", { class: "mono" }, p.statement) },
          { label: "Credited", value: (p) => ledgerAmount(p.credited, p.unit), num: true },
          { label: "Recorded", value: (p) => when(p.recorded_at) },
        ],
        data.payments,
        { empty: "No payment yet." },
      ),
    ),
    panel(
      "Payouts to producers",
      table(
        "Payouts the grid made",
        [
          { label: "Household", value: (p) => p.name },
          { label: "Transaction id", value: (p) => h("span", { class: "mono", title: p.tx_id }, short(p.tx_id, 14, 6)) },
          { label: "Amount", value: (p) => ledgerAmount(p.amount, p.unit), num: true },
          { label: "State", value: (p) => status(p.state) },
          { label: "Completed", value: (p) => when(p.completed_at) },
        ],
        data.payouts,
        { empty: "No payout yet." },
      ),
    ),
    panel(
      "Balances",
      table(
        "The largest balances on the local ledger",
        [
          { label: "Account", value: (b) => name(b.name, b.address) },
          { label: "Address", value: (b) => h("span", { class: "mono", title: b.address }, short(b.address)) },
          { label: "Balance", value: (b) => ledgerAmount(b.balance, l.unit), num: true },
        ],
        data.balances,
        { empty: "No funded account." },
      ),
    ),
  ];
}

// --- audit ---------------------------------------------------------------------------

export function audit(data) {
  const a = data.anchoring;
  const cards = h(
    "div",
    { class: "cards" },
    card("Chain head", data.head ? `entry ${data.head.seq}` : "empty", data.head ? h("span", { class: "mono", title: data.head.hash }, short(data.head.hash, 16, 8)) : null, { id: "chain-head" }),
    card("Interval roots", String(data.roots_total), data.roots.length ? `last closes ${when(data.roots[0].interval_to)}` : "none closed yet"),
    card(
      "Anchoring",
      a.enabled ? `${a.anchors} anchors` : "not anchored",
      a.enabled
        ? `${a.waiting_roots} roots waiting${a.pending_attempts ? `, ${a.pending_attempts} attempts in flight` : ""}`
        : "roots are published at /api/v1/audit/roots (anchoring needs the IOTA ledger)",
    ),
    card(
      "Last verification",
      data.verification ? (data.verification.ok ? "OK" : "INCONSISTENT") : "not recorded",
      data.verification
        ? `${when(data.verification.at)}: entries ${data.verification.first_seq}–${data.verification.last_seq}` +
            (data.verification.problem ? ` (${data.verification.problem})` : "")
        : h("span", {}, "run ", h("code", {}, "p2p-grid audit verify")),
      { id: "last-verification" },
    ),
  );
  return [
    panel("Audit trail", cards),
    panel(
      "Interval roots",
      table(
        "The latest Merkle roots over the log",
        [
          { label: "Root entry", value: (r) => r.seq, num: true },
          { label: "Intervals (UTC)", value: (r) => `${when(r.interval_from)} – ${hhmm(parseTime(r.interval_to))}` },
          { label: "Entries", value: (r) => (r.entries ? `${r.first_seq}–${r.last_seq}` : "none"), num: true },
          { label: "Root", value: (r) => h("span", { class: "mono", title: r.root }, short(r.root, 12, 6)) },
          { label: "Anchor", value: (r) => (r.anchor ? h("span", { class: "mono", title: r.anchor.digest }, `${r.anchor.network || r.anchor.ledger} ${short(r.anchor.digest, 8, 4)}`) : a.enabled ? status("waiting") : "–") },
        ],
        data.roots,
        { empty: "No interval has been closed yet." },
      ),
    ),
    panel(
      "Latest log entries",
      table(
        "The newest entries of the hash chain",
        [
          { label: "Entry", value: (e) => e.seq, num: true },
          { label: "Kind", value: (e) => e.kind },
          { label: "Reference", value: (e) => h("span", { class: "mono", title: e.ref }, short(e.ref, 18, 6)) },
          { label: "Hash", value: (e) => h("span", { class: "mono", title: e.hash }, short(e.hash, 12, 6)) },
          { label: "Time", value: (e) => when(e.created_at) },
        ],
        data.entries,
      ),
    ),
  ];
}
