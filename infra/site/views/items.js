// Items: their publishing status, the ledger link, the last error with its fix, and the preview
// of what would be sent with where each value came from.
import { DESTINATIONS, ITEM_STATUSES, ITEM_TYPES, SOURCES } from "../labels.js";
import { clear, formatDateTime, h, notice, table, uid } from "../ui.js";
import { busy } from "./common.js";

export async function render(ctx, main, params) {
  if (params[0]) return renderItem(ctx, main, params[0]);
  return renderIndex(ctx, main);
}

function openForm(ctx) {
  const id = uid("item-id");
  const input = h("input", { id, name: "item_id", required: true, testid: "item-id", autocomplete: "off" });
  const form = h("form", { class: "toolbar", "aria-label": "Open an item" },
    h("div", { class: "field" }, h("label", { for: id }, "Item id"), input),
    h("button", { type: "submit", class: "secondary", testid: "item-open" }, "Open item"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) ctx.navigate(`#/items/${encodeURIComponent(input.value.trim())}`);
  });
  return form;
}

async function renderIndex(ctx, main) {
  main.append(h("h1", {}, "Items"), h("p", { class: "lead" }, "Captured receipts, bills, sales invoices and expense claims, and where each one is in publishing."));
  const statusId = uid("status");
  const select = h("select", { id: statusId, name: "status", testid: "items-status" },
    h("option", { value: "" }, "Any status"),
    Object.entries(ITEM_STATUSES).map(([value, label]) => h("option", { value }, label)));
  const filter = h("form", { class: "toolbar", "aria-label": "Filter items" },
    h("div", { class: "field" }, h("label", { for: statusId }, "Status"), select),
    h("button", { type: "submit", class: "secondary" }, "Show"));
  const results = h("div", { testid: "items-results" });
  main.append(filter, results, h("h2", {}, "Open an item by its id"), openForm(ctx));
  const load = async () => {
    clear(results, h("p", { role: "status" }, "Loading…"));
    try {
      const page = await ctx.api.get("/v1/items", { status: select.value });
      const records = page.items || page.records || [];
      clear(results, records.length
        ? table({
          caption: "Items", testid: "items-table",
          columns: ["Item", "Type", "Supplier or customer", "Gross", "Status", "Ledger"],
          rows: records.map((stored) => {
            const item = stored.item || stored;
            return [h("a", { href: `#/items/${encodeURIComponent(item.id)}` }, item.id), ITEM_TYPES[item.type] || item.type,
              (item.supplier || item.customer || item.claimant || {}).name || "", `${item.totals?.gross ?? ""} ${item.currency || ""}`,
              ITEM_STATUSES[stored.status] || stored.status || "", stored.remote_url ? h("a", { href: stored.remote_url, rel: "noopener", target: "_blank" }, "Open", h("span", { class: "visually-hidden" }, ` ${item.id} in the ledger (new tab)`)) : ""];
          }),
        })
        : h("p", {}, "No items with that status."));
    } catch (error) {
      clear(results, notice("error", error.message));
    }
  };
  filter.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  await load();
}

async function renderItem(ctx, main, itemId) {
  let stored;
  try {
    stored = await ctx.api.get(`/v1/items/${encodeURIComponent(itemId)}`);
  } catch (error) {
    main.append(h("h1", {}, `Item ${itemId}`), notice("error", error.message), h("p", {}, h("a", { href: "#/items" }, "Back to items")));
    return;
  }
  const item = stored.item;
  const ledger = ctx.connection ? ctx.provider(ctx.connection.provider).display_name : "the ledger";
  const party = item.supplier || item.customer || item.claimant || {};
  main.append(h("h1", {}, `Item ${item.id}`), h("p", {}, h("a", { href: "#/items" }, "Back to items")));
  main.append(h("dl", { class: "facts", testid: "item-facts" },
    h("dt", {}, "Status"), h("dd", { testid: "item-status" }, ITEM_STATUSES[stored.status] || stored.status),
    h("dt", {}, "Type"), h("dd", {}, ITEM_TYPES[item.type] || item.type),
    h("dt", {}, item.type === "sales" ? "Customer" : item.type === "expense_claim" ? "Claimant" : "Supplier"), h("dd", {}, party.name || ""),
    h("dt", {}, "Date"), h("dd", {}, item.date),
    h("dt", {}, "Reference"), h("dd", {}, item.reference || "none"),
    h("dt", {}, "Total"), h("dd", {}, `${Number(item.totals.gross).toFixed(2)} ${item.currency} (net ${Number(item.totals.net).toFixed(2)}, tax ${Number(item.totals.tax).toFixed(2)})`),
    h("dt", {}, "In the ledger"), h("dd", {}, stored.remote_url
      ? h("a", { href: stored.remote_url, target: "_blank", rel: "noopener", testid: "item-ledger-link" }, `Open in ${ledger}`, h("span", { class: "visually-hidden" }, " (new tab)"))
      : stored.remote_id ? `Published as ${stored.remote_id}` : "Not published yet")));
  if (stored.last_error) {
    const error = stored.last_error;
    main.append(h("section", { class: "card notice-error-card", "aria-labelledby": "error-heading", testid: "item-error" },
      h("h2", { id: "error-heading" }, "Why it was not published"),
      h("p", {}, sentence(error.message)),
      error.ledger_message ? h("figure", {}, h("figcaption", {}, `${ledger}'s own words:`), h("blockquote", {}, error.ledger_message)) : null,
      error.hint ? h("p", { testid: "item-fix" }, h("strong", {}, "How to fix it: "), error.hint) : null));
  }
  if (stored.attempts?.length) {
    main.append(table({
      caption: "Publishing attempts", testid: "item-attempts",
      columns: ["When", "Revision", "Outcome", "Details"],
      rows: stored.attempts.map((attempt) => [formatDateTime(attempt.at), String(attempt.revision), attempt.outcome, attempt.message || ""]),
    }));
  }
  const out = h("div", { testid: "item-preview-out" });
  const previewButton = h("button", { type: "button", class: "secondary", testid: "item-preview-button" }, "Preview what will be sent");
  previewButton.addEventListener("click", () => busy(previewButton, async () => {
    clear(out);
    try {
      const result = await ctx.api.post(`/v1/items/${encodeURIComponent(item.id)}/preview`, {});
      out.append(previewTable(item, result.plan));
    } catch (error) {
      out.append(notice("error", error.message));
    }
  }));
  // Standard users see items read-only here (the capture product is where they publish from).
  if (ctx.user.isAdmin && ["waiting", "rejected", "failed"].includes(stored.status)) {
    main.append(await codingSection(ctx, item), publishSection(ctx, item, stored));
  }
  main.append(h("section", { class: "card", "aria-labelledby": "preview-heading" },
    h("h2", { id: "preview-heading" }, "Preview"),
    h("p", {}, "What ledgerlink would send, value by value, and where each value came from: an edit by hand, a supplier rule, the capture, the connection's settings or the ledger's own defaults."),
    h("div", { class: "actions" }, previewButton), out));
}

// The coding of each line, changed by hand: the fix for a refused category or tax rate. A change
// made here counts as a person's edit and wins over any rule or default.
async function codingSection(ctx, item) {
  const [categories, taxRates] = await Promise.all([
    ctx.api.get("/v1/lists/categories", { status: "active", usable_for: item.type, limit: 500 }),
    ctx.api.get("/v1/lists/tax_rates", { status: "active", limit: 500 }),
  ]);
  const out = h("div");
  const rows = item.lines.map((line, index) => {
    const choose = (records, current, label, testid) => {
      const id = uid(testid);
      const known = records.some((record) => record.id === current);
      const select = h("select", { id, testid },
        h("option", { value: "", selected: !current }, "Not set: a rule or the defaults decide"),
        current && !known ? h("option", { value: current, selected: true }, "The current choice (archived or no longer imported)") : null,
        records.map((record) => h("option", { value: record.id, selected: record.id === current }, [record.code, record.name].filter(Boolean).join(" "))));
      return { select, field: h("div", { class: "field" }, h("label", { for: id }, `Line ${index + 1} ${label}`), select) };
    };
    const category = choose(categories.records, line.category, "category", "edit-category");
    const tax = choose(taxRates.records, line.tax_rate, "tax rate", "edit-tax-rate");
    return { category, tax, view: h("fieldset", { class: "group" }, h("legend", {}, `Line ${index + 1}: ${line.description}`), category.field, tax.field) };
  });
  const save = h("button", { type: "submit", class: "secondary", testid: "edit-save" }, "Save the coding");
  const form = h("form", { class: "stack" }, rows.map((row) => row.view), out, h("div", { class: "actions" }, save));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(save, async () => {
      clear(out);
      const lines = item.lines.map((line, index) => ({
        ...line, category: rows[index].category.select.value || null, tax_rate: rows[index].tax.select.value || null,
      }));
      try {
        await ctx.api.patch(`/v1/items/${encodeURIComponent(item.id)}`, { lines });
        ctx.flash = { kind: "success", text: "Coding saved: check the preview, then publish." };
        ctx.rerender();
      } catch (error) {
        out.append(h("div", { class: "notice notice-error", role: "alert", testid: "edit-error" }, h("p", {}, error.message)));
      }
    });
  });
  return h("section", { class: "card", "aria-labelledby": "coding-heading" },
    h("h2", { id: "coding-heading" }, "Coding"),
    h("p", {}, "The category and tax rate of each line. Change them here to fix what the ledger refused; your choice wins over supplier rules and defaults."),
    form);
}

// Waiting, refused or given-up items can be sent (again) once fixed; the publisher does the rest.
function publishSection(ctx, item, stored) {
  const out = h("div");
  const button = h("button", { type: "button", class: "primary", testid: "item-publish" },
    stored.status === "waiting" ? "Publish" : "Publish again");
  button.addEventListener("click", () => busy(button, async () => {
    clear(out);
    try {
      const queued = await ctx.api.post(`/v1/items/${encodeURIComponent(item.id)}/publish`, {});
      button.hidden = true;
      out.append(h("div", { class: "notice notice-success", role: "status", testid: "item-queued" },
        h("p", {}, `${ITEM_STATUSES[queued.status] || queued.status}: ledgerlink publishes it in a moment. `,
          h("a", { href: `#/items/${encodeURIComponent(item.id)}`, onclick: (event) => { event.preventDefault(); ctx.rerender(); } }, "Show its status now"))));
    } catch (error) {
      out.append(notice("error", error.message));
    }
  }));
  return h("section", { class: "card", "aria-labelledby": "publish-heading" },
    h("h2", { id: "publish-heading" }, "Publish"),
    h("p", {}, stored.status === "waiting"
      ? "This item has not been sent to the ledger. Check the preview below, then publish it."
      : "Fix what the ledger refused (see above), then publish it again. It is sent once: a retry never creates a second copy."),
    h("div", { class: "actions" }, button), out);
}

function resolved(value) {
  if (!value) return ["", ""];
  const text = [value.code, value.name].filter(Boolean).join(" ") || value.remote_id || value.record_id || "—";
  return [text, SOURCES[value.source] || value.source || ""];
}

function sentence(text) {
  const trimmed = String(text || "").trim();
  return /[.!?]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

function money(value) {
  return value === null || value === undefined ? "" : Number(value).toFixed(2);
}

// The plan carries a source for every list reference; the other values' sources follow from the
// coding order (an edit or the capture, then a supplier rule, then the settings, then the ledger).
function destinationSource(item) {
  if (!item.destination) return "Supplier rule, else the connection's settings, else the ledger's default";
  return (item.edited_fields || []).includes("destination") ? SOURCES.manual_edit : SOURCES.captured;
}

function previewTable(item, plan) {
  const captured = SOURCES.captured;
  const rows = [
    ["Destination", DESTINATIONS[plan.destination] || plan.destination || "", destinationSource(item)],
    ["Contact", ...resolved(plan.contact)],
    ["Date", plan.date, captured],
    ["Due date", plan.due_date || "none", captured],
    ["Reference", plan.reference || "none", captured],
    ["Amounts", `${money(plan.gross)} ${plan.currency} (net ${money(plan.net)}, tax ${money(plan.tax)})`, captured],
  ];
  if (plan.paid_on) {
    rows.push(["Paid", `on ${plan.paid_on}${plan.payment_method ? ` by ${plan.payment_method}` : ""}`, captured]);
    rows.push(["Bank match", plan.bank_match ? "Yes: the payment is matched to the bank line" : "No", "Connection's settings"]);
  }
  if (plan.bank_account) rows.push(["Bank account", ...resolved(plan.bank_account)]);
  (plan.lines || []).forEach((line, index) => {
    const prefix = `Line ${index + 1}`;
    rows.push([`${prefix}`, `${line.description}: ${money(line.amount)} + tax ${money(line.tax_amount)}`, captured]);
    for (const [key, label] of [["category", "category"], ["tax_rate", "tax rate"], ["project", "project"], ["project_2", "project 2"], ["product", "product"]]) {
      if (line[key]) rows.push([`${prefix} ${label}`, ...resolved(line[key])]);
    }
  });
  rows.push(["Document", plan.document ? plan.document.file_name : "none", captured]);
  const problems = plan.problems || [];
  return h("div", { testid: "item-preview" },
    table({ caption: "What would be sent", columns: ["Field", "Value", "Where it came from"], rows }),
    problems.length
      ? h("div", { class: "notice notice-error", role: "alert" }, h("h3", {}, "Problems to fix before publishing"),
        h("ul", {}, problems.map((problem) => h("li", { testid: "preview-problem" }, `${sentence(problem.message)} `, h("strong", {}, "How to fix it: "), problem.hint))))
      : h("p", { class: "notice notice-success", role: "status" }, "Ready to publish: nothing stops it."));
}
