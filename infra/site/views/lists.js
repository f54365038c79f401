// The six imported lists: search, archived toggle, paging.
import { ApiError } from "../api.js";
import { ITEM_TYPES, LISTS, LIST_ORDER } from "../labels.js";
import { clear, formatDateTime, h, notice, table, uid } from "../ui.js";

const PAGE_SIZE = 50;

const COLUMNS = {
  categories: [["Type", (r) => r.account_type], ["Codes items of type", (r) => (r.usable_for || []).map((t) => ITEM_TYPES[t] || t).join(", ")], ["Default tax", (r) => r.default_tax_code]],
  contacts: [["Supplier", (r) => yesNo(r.is_supplier)], ["Customer", (r) => yesNo(r.is_customer)], ["Email", (r) => r.email]],
  tax_rates: [["Rate", (r) => (r.rate === null || r.rate === undefined ? "" : `${r.rate}%`)], ["Applies to", (r) => (r.applies_to || []).map((t) => ITEM_TYPES[t] || t).join(", ")]],
  items: [["Purchase price", (r) => money(r.purchase_price)], ["Sales price", (r) => money(r.sales_price)]],
  projects: [["Dimension", (r) => (r.dimension ? `${r.dimension}: ${r.dimension_name || ""}` : "")]],
  bank_accounts: [["Account type", (r) => r.bank_account_type], ["Currency", (r) => r.currency], ["Number", (r) => r.account_number]],
};

function yesNo(value) { return value === true ? "Yes" : value === false ? "No" : ""; }
function money(value) { return value === null || value === undefined ? "" : Number(value).toFixed(2); }

export async function render(ctx, main, params) {
  const type = LIST_ORDER.includes(params[0]) ? params[0] : "categories";
  main.append(h("h1", {}, `Lists — ${LISTS[type]}`),
    h("p", { class: "lead" }, "The lists imported from your accounting software, as items are coded with them. Read-only: change them in the ledger, then refresh."));
  main.append(h("nav", { "aria-label": "Lists", class: "tabs" },
    h("ul", {}, LIST_ORDER.map((key) => h("li", {}, h("a", { href: `#/lists/${key}`, "aria-current": key === type ? "page" : null, testid: `list-tab-${key}` }, LISTS[key]))))));
  if (!ctx.connection) {
    main.append(notice("info", "No accounting software is connected, so there are no lists to show."));
    return;
  }
  const searchId = uid("search");
  const archivedId = uid("archived");
  const search = h("input", { type: "search", id: searchId, name: "q", testid: "list-search" });
  const archived = h("input", { type: "checkbox", id: archivedId, name: "archived", testid: "list-archived" });
  const form = h("form", { class: "toolbar", role: "search", "aria-label": `Search ${LISTS[type].toLowerCase()}` },
    h("div", { class: "field" }, h("label", { for: searchId }, "Search by name or code"), search),
    h("div", { class: "choice" }, archived, h("label", { for: archivedId }, "Include archived")),
    h("button", { type: "submit", class: "secondary", testid: "list-search-submit" }, "Search"));
  const results = h("div", { testid: "list-results" });
  main.append(form, results);
  const cursors = [null];
  const load = async (index) => {
    const query = { status: archived.checked ? "all" : "active", q: search.value.trim(), limit: PAGE_SIZE, cursor: cursors[index] };
    clear(results, h("p", { role: "status" }, "Loading…"));
    let page;
    try {
      page = await ctx.api.get(`/v1/lists/${type}`, query);
    } catch (error) {
      clear(results, notice("error", error instanceof ApiError ? error.message : String(error)));
      return;
    }
    if (page.next_cursor) cursors[index + 1] = page.next_cursor;
    const extra = COLUMNS[type] || [];
    const rows = page.records.map((record) => [
      record.name, record.code || "", record.status === "archived" ? "Archived" : "Active",
      ...extra.map(([, get]) => get(record) || ""),
    ]);
    const summary = h("p", { role: "status", testid: "list-summary" },
      `${rows.length} ${rows.length === 1 ? "record" : "records"} on this page${query.q ? ` matching “${query.q}”` : ""}${archived.checked ? ", archived included" : ""}. Refreshed ${formatDateTime(page.refreshed_at)}.`);
    const pager = h("div", { class: "actions" },
      index > 0 ? h("button", { type: "button", class: "secondary", onclick: () => load(index - 1) }, "Previous page") : null,
      page.next_cursor ? h("button", { type: "button", class: "secondary", testid: "list-next", onclick: () => load(index + 1) }, "Next page") : null);
    clear(results, summary,
      rows.length
        ? table({ caption: LISTS[type], columns: ["Name", "Code", "Status", ...extra.map(([label]) => label)], rows, testid: "list-table" })
        : h("p", {}, "Nothing to show."),
      pager);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    cursors.length = 1;
    load(0);
  });
  archived.addEventListener("change", () => {
    cursors.length = 1;
    load(0);
  });
  await load(0);
}
