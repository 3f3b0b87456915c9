// The invitations view: issue invitations (each shown once as its link and QR code, codes are
// stored only as hashes), revoke one by its code or link, and the latest issued with their state.

import { h, table, when } from "./util.js";

// New invitations stay on the page across live refreshes until the operator is done with them.
let issued = null;
let message = "";

function panel(id, title, ...children) {
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

function field(id, label, control, hint) {
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null);
}

function options(values, selected) {
  return values.map(([value, label]) => h("option", { value, selected: value === selected }, label));
}

const EXPIRY = [
  ["86400", "1 day"],
  ["604800", "7 days"],
  ["2592000", "30 days"],
  ["7776000", "90 days"],
];

function issueForm(data, ctx) {
  const zone = h("select", { id: "invite-zone", name: "zone" }, options(data.zones.map((z) => [z.id, z.id === data.join_zone ? `${z.name} (default)` : z.name]), data.join_zone));
  const role = h("select", { id: "invite-role", name: "role" }, options([["", "any (prosumer)"], ["consumer", "consumer"], ["producer", "producer"], ["prosumer", "prosumer"]], ""));
  const expires = h("select", { id: "invite-expires", name: "expires" }, options(EXPIRY, "604800"));
  const count = h("input", { id: "invite-count", name: "count", type: "number", min: "1", max: String(data.max_issue), value: "1", required: true, inputmode: "numeric" });
  const status = h("p", { id: "invite-message", role: "status", "aria-live": "polite" }, message);
  const form = h(
    "form",
    { id: "invite-form", class: "invite-form" },
    field("invite-zone", "Zone", zone),
    field("invite-role", "Role", role),
    field("invite-expires", "Valid for", expires),
    field("invite-count", "How many", count),
    h("button", { type: "submit" }, "Issue"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "Issuing…";
    const body = { zone: zone.value, expires_in_seconds: Number(expires.value), count: Number(count.value) };
    if (role.value) body.role = role.value;
    try {
      issued = await ctx.api("invitations", { method: "POST", body: JSON.stringify(body) });
      message = `${issued.invitations.length} issued: hand each to one household.`;
    } catch (err) {
      message = `Not issued: ${err.message || err}`;
    }
    ctx.refresh();
  });
  return [form, status];
}

function noPublicUrl() {
  return h(
    "div",
    { class: "notice", role: "note" },
    h("p", {}, "This grid has no public URL, so invitations are bare codes: households must also be told the address they reach the grid at. For links and QR codes, set it in the grid's config and restart the server:"),
    h("pre", {}, "[grid]\npublic_url = \"https://…\"   # the address households reach the grid at"),
  );
}

function issuedList(ctx) {
  const items = issued.invitations.map((inv, i) => {
    const shown = inv.link || inv.code;
    const id = `issued-${i}`;
    const qr = inv.qr_svg
      ? h("img", { class: "qr", src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(inv.qr_svg)}`, alt: `QR code of the invitation link ${i + 1}`, width: "220", height: "220" })
      : null;
    const copy = h("button", { type: "button", class: "secondary" }, "Copy");
    const copied = h("span", { role: "status", "aria-live": "polite", class: "copied" });
    const box = h("input", { id, type: "text", readonly: true, value: shown, class: "mono invitation-link", spellcheck: "false" });
    copy.addEventListener("click", async () => {
      box.select();
      try {
        await navigator.clipboard.writeText(shown);
        copied.textContent = "Copied";
      } catch {
        copied.textContent = "Selected: copy it yourself";
      }
    });
    return h(
      "li",
      { class: "issued" },
      qr,
      h(
        "div",
        {},
        h("label", { for: id }, inv.link ? `Invitation link ${i + 1}` : `Invitation code ${i + 1}`),
        h("div", { class: "copy-row" }, box, copy, copied),
        h("p", { class: "detail" }, `Zone ${inv.zone || "default"}, role ${inv.role || "any"}, valid until ${when(inv.expires_at)}.`),
      ),
    );
  });
  const done = h("button", { type: "button", class: "secondary" }, "Done: hide these");
  done.addEventListener("click", () => {
    issued = null;
    message = "";
    ctx.refresh();
  });
  return panel(
    "h-issued",
    "New invitations",
    h("p", {}, "Shown this once: the grid keeps only a hash of each code. The household pastes the link into Home Assistant (Add integration → P2P Energy) or scans the QR code; opened in a browser, the link explains the steps."),
    h("ol", { class: "issued-list" }, items),
    done,
  );
}

function revokeForm(ctx) {
  const code = h("input", { id: "revoke-code", name: "code", type: "text", required: true, autocomplete: "off", spellcheck: "false", class: "mono" });
  const status = h("p", { id: "revoke-message", role: "status", "aria-live": "polite" });
  const form = h("form", { id: "revoke-form", class: "invite-form" }, field("revoke-code", "Code or link of an unused invitation", code), h("button", { type: "submit", class: "secondary" }, "Revoke"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const answer = await ctx.api("invitations/revoke", { method: "POST", body: JSON.stringify({ code: code.value }) });
      message = `Revoked ${answer.revoked}.`;
      ctx.refresh();
    } catch (err) {
      status.textContent = `Not revoked: ${err.message || err}`;
    }
  });
  return [form, status];
}

export function invitations(data, ctx) {
  const out = [];
  if (issued) out.push(issuedList(ctx));
  out.push(panel("h-issue", "Invite households", data.public_url ? null : noPublicUrl(), ...issueForm(data, ctx)));
  out.push(
    panel(
      "h-latest",
      "Latest invitations",
      table(
        `The ${data.invitations.length} latest of ${data.total} invitations (codes are kept only as hashes: each is shown by its first four characters)`,
        [
          { label: "Code", value: (r) => h("span", { class: "mono" }, `${r.hint}-…`) },
          { label: "State", value: (r) => h("span", { class: `badge invitation-${r.state}` }, r.state) },
          { label: "Zone", value: (r) => r.zone || "default" },
          { label: "Role", value: (r) => r.role || "any" },
          { label: "Issued", value: (r) => when(r.created_at) },
          { label: "Expires", value: (r) => (r.expires_at ? when(r.expires_at) : "never") },
        ],
        data.invitations,
        { empty: "No invitation issued yet." },
      ),
      ...revokeForm(ctx),
    ),
  );
  return out;
}
