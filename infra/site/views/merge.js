// Merge Lists: after Change connection (or reconnecting with kept lists), map what rules and
// waiting items use in the previous lists onto the new ones: the proposal per list with reasons and
// scores, overrides, skip per list, apply, undo.
import { ApiError } from "../api.js";
import { LISTS } from "../labels.js";
import { clear, formatDateTime, h, humanise, notice, table, uid } from "../ui.js";
import { busy } from "./common.js";

const LIST_NAMES = { ...LISTS };
const REASONS = {
  same_code: "Same code",
  same_name: "Same name",
  similar_name: "Similar name",
  same_rate: "Same rate",
  unmatched: "No match found",
};
// The last merge applied from this browser, per business: the API keeps it undoable for seven days,
// and this is how the page offers that undo after the person has moved on.
const LAST_MERGE_KEY = "ledgerlink.last_merge";

function plural(count, one, many = `${one}s`) {
  return `${count ?? 0} ${count === 1 ? one : many}`;
}

function lastMerge(ctx) {
  try {
    const saved = JSON.parse(localStorage.getItem(`${LAST_MERGE_KEY}.${ctx.user.businessId}`) || "null");
    return saved && new Date(saved.undo_until) > new Date() ? saved : null;
  } catch {
    return null;
  }
}

function rememberMerge(ctx, applied) {
  const key = `${LAST_MERGE_KEY}.${ctx.user.businessId}`;
  if (applied) localStorage.setItem(key, JSON.stringify({ proposal_id: applied.proposal_id, undo_until: applied.undo_until, applied_at: applied.applied_at }));
  else localStorage.removeItem(key);
}

const TOTALS = [["same_code", "same code"], ["same_name", "same name"], ["similar_name", "similar name"], ["same_rate", "same rate"], ["unmatched", "unmatched"]];

export async function render(ctx, main) {
  main.append(h("h1", {}, "Merge Lists"));
  const connection = ctx.connection;
  if (!connection || connection.status === "pending_organisation") {
    main.append(notice("info", "Connect your accounting software first: Merge Lists moves your rules onto the new connection's lists."));
    return;
  }
  const ledger = ctx.provider(connection.provider).display_name;
  const previous = connection.previous;
  main.append(h("p", { class: "lead" },
    previous
      ? `Your supplier rules and waiting items still point at the lists of ${previous.organisation?.name || "the previous connection"} (${ctx.provider(previous.provider).display_name}). Merge Lists proposes the matching entries in ${connection.organisation?.name || ledger}'s lists; check them, change any, skip lists you want to leave, then apply. You can undo for 7 days.`
      : "Merge Lists maps your rules onto newly imported lists after Change connection, or after disconnecting with kept lists and connecting again."),
    connection.merge_pending ? notice("info", h("p", { testid: "merge-pending" }, "A merge is waiting: your rules still use the previous lists.")) : null);
  if (!ctx.user.isAdmin) {
    main.append(h("p", {}, "Only an Admin can merge lists."));
    return;
  }
  const out = h("div", { testid: "merge-out" });
  const earlier = lastMerge(ctx);
  if (earlier && !connection.merge_pending) {
    const result = h("div");
    main.append(h("section", { class: "card", "aria-labelledby": "last-merge-heading", testid: "merge-last" },
      h("h2", { id: "last-merge-heading" }, "The last merge"),
      h("p", {}, `Applied on ${formatDateTime(earlier.applied_at)}; it can be undone until ${formatDateTime(earlier.undo_until)}.`),
      result, h("div", { class: "actions" }, undoButton(ctx, result, earlier.proposal_id))));
  }
  const prepare = h("button", { type: "button", class: "primary", testid: "merge-preview" }, "Prepare the proposal");
  main.append(h("div", { class: "actions" }, prepare), out);
  prepare.addEventListener("click", () => busy(prepare, async () => {
    clear(out);
    try {
      const proposal = await ctx.api.post("/v1/connection/merge-lists/preview", {});
      await renderProposal(ctx, out, proposal);
    } catch (error) {
      out.append(h("div", { class: "notice notice-error", role: "alert", testid: "merge-error" }, h("p", {}, error.message)));
    }
  }));
}

function listsOf(proposal) {
  const lists = proposal.lists || [];
  const entries = Array.isArray(lists) ? lists.map((list) => [list.list_type, list]) : Object.entries(lists);
  return entries.map(([type, list]) => ({ type, entries: list.entries || [], totals: list.totals || {} }));
}

function describe(code, name) {
  return [code, name].filter(Boolean).join(" ");
}

function totalsText(totals, count) {
  const parts = TOTALS.filter(([key]) => totals[key]).map(([key, label]) => `${totals[key]} ${label}`);
  if (totals.shared) parts.push(`${totals.shared} sharing a new entry`);
  const entries = totals.entries ?? count;
  return `${entries} ${entries === 1 ? "entry" : "entries"} in use${parts.length ? `: ${parts.join(", ")}` : ""}.`;
}

async function candidatesFor(ctx, type) {
  try {
    const page = await ctx.api.get(`/v1/lists/${type}`, { status: "active", limit: 500 });
    return page.records;
  } catch {
    return [];
  }
}

async function renderProposal(ctx, out, proposal) {
  const lists = listsOf(proposal);
  const used = lists.filter((list) => list.entries.length);
  if (!used.length) {
    clear(out, h("div", { class: "notice notice-info", role: "status", testid: "merge-nothing" },
      h("p", {}, "Nothing to merge: no rule or waiting item uses the previous lists.")));
    return;
  }
  const form = h("form", { class: "stack", testid: "merge-proposal" },
    h("p", { testid: "merge-summary" }, `${plural(proposal.rules, "rule")} and ${plural(proposal.items, "waiting item")} ${proposal.rules + proposal.items === 1 ? "refers" : "refer"} to the previous lists. Each entry below is matched to the new lists; change a match with its menu, or skip a whole list to leave it as it is.`));
  const selects = [];
  const skips = {};
  for (const list of used) {
    const candidates = await candidatesFor(ctx, list.type);
    const name = LIST_NAMES[list.type] || humanise(list.type);
    const skipId = uid(`skip-${list.type}`);
    const skip = h("input", { type: "checkbox", id: skipId, testid: `merge-skip-${list.type}` });
    skips[list.type] = skip;
    const rows = list.entries.map((entry) => {
      const old = describe(entry.old_code, entry.old_name) || entry.old_id;
      const selectId = uid("override");
      const options = new Map();
      if (entry.new_id) options.set(entry.new_id, describe(entry.new_code, entry.new_name) || entry.new_id);
      for (const candidate of candidates) if (!options.has(candidate.id)) options.set(candidate.id, describe(candidate.code, candidate.name));
      const select = h("select", { id: selectId, "data-old": entry.old_id, "data-proposed": entry.new_id || "", testid: "merge-override" },
        h("option", { value: "", selected: !entry.new_id }, "Leave unmatched"),
        [...options].map(([id, text]) => h("option", { value: id, selected: entry.new_id === id }, text)));
      selects.push({ select, list: list.type });
      const score = entry.score === undefined || entry.score === null ? "" : `${Math.round(Number(entry.score) * 100)}%`;
      const use = [entry.rules ? `${entry.rules} ${entry.rules === 1 ? "rule" : "rules"}` : null, entry.items ? `${entry.items} ${entry.items === 1 ? "item" : "items"}` : null].filter(Boolean).join(", ");
      const doubtful = entry.reason === "same_code" && entry.score !== null && entry.score !== undefined && Number(entry.score) < 0.6
        ? h("p", { class: "hint", testid: "merge-doubtful" }, "Same code, but the names differ: check this match.")
        : null;
      const shared = (entry.shared_with || []).length
        ? h("p", { class: "hint" }, `Also proposed for ${entry.shared_with.length} other ${entry.shared_with.length === 1 ? "entry" : "entries"}: both would use the same new entry.`)
        : null;
      return h("tr", { testid: "merge-entry" },
        h("th", { scope: "row" }, old, use ? h("span", { class: "hint-inline" }, ` (used by ${use})`) : null),
        h("td", {}, h("label", { for: selectId, class: "visually-hidden" }, `New entry for ${old}`), select, doubtful, shared),
        h("td", { testid: "merge-reason" }, REASONS[entry.reason] || humanise(entry.reason)),
        h("td", {}, score));
    });
    form.append(h("section", { class: "card", "aria-labelledby": `${skipId}-heading`, testid: `merge-list-${list.type}` },
      h("h2", { id: `${skipId}-heading` }, name),
      h("p", { class: "hint" }, totalsText(list.totals, list.entries.length)),
      h("div", { class: "choice" }, skip, h("label", { for: skipId }, `Skip ${name.toLowerCase()}: leave their references as they are`)),
      h("div", { class: "table-wrap" }, h("table", {},
        h("caption", {}, `${name}: proposed matches`),
        h("thead", {}, h("tr", {}, ["Previous entry", "New entry", "Reason", "Score"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows)))));
  }
  const result = h("div");
  const apply = h("button", { type: "submit", class: "primary", testid: "merge-apply" }, "Apply the merge");
  form.append(result, h("div", { class: "actions" }, apply));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(result);
    const overrides = {};
    for (const { select, list } of selects) {
      if (skips[list].checked) continue;
      if (select.value !== select.dataset.proposed) overrides[select.dataset.old] = select.value || null;
    }
    const skip = Object.entries(skips).filter(([, box]) => box.checked).map(([type]) => type);
    await busy(apply, async () => {
      try {
        const applied = await ctx.api.post("/v1/connection/merge-lists/apply", { proposal_id: proposal.proposal_id, overrides, skip });
        await ctx.reloadConnection();
        apply.hidden = true;
        renderApplied(ctx, result, proposal, applied);
      } catch (error) {
        result.append(h("div", { class: "notice notice-error", role: "alert", testid: "merge-error" }, h("p", {},
          error instanceof ApiError && error.status === 409 ? `${error.message} Prepare the proposal again.` : error.message)));
      }
    });
  });
  clear(out, form);
}

function undoButton(ctx, result, proposalId) {
  const undo = h("button", { type: "button", class: "secondary", testid: "merge-undo" }, "Undo the merge");
  undo.addEventListener("click", () => busy(undo, async () => {
    try {
      const undone = await ctx.api.post("/v1/connection/merge-lists/undo", { proposal_id: proposalId });
      rememberMerge(ctx, null);
      await ctx.reloadConnection();
      undo.hidden = true;
      clear(result, h("div", { class: "notice notice-success", role: "status", testid: "merge-undone" },
        h("p", {}, `The merge was undone: ${plural(undone.rules_restored, "rule")} and ${plural(undone.items_restored, "item")} point at the previous lists again.${undone.kept ? ` ${plural(undone.kept, "entry", "entries")} changed since the merge ${undone.kept === 1 ? "was" : "were"} left as ${undone.kept === 1 ? "it is" : "they are"}.` : ""}`)));
    } catch (error) {
      if (error instanceof ApiError && error.status === 409) rememberMerge(ctx, null);
      clear(result, h("div", { class: "notice notice-error", role: "alert", testid: "merge-error" }, h("p", {}, error.message)));
    }
  }));
  return undo;
}

function renderApplied(ctx, result, proposal, applied) {
  const outcomes = Object.entries(applied.lists || {});
  rememberMerge(ctx, applied);
  const undo = undoButton(ctx, result, proposal.proposal_id);
  clear(result,
    h("div", { class: "notice notice-success", role: "status", testid: "merge-applied" },
      h("p", {}, `The merge was applied: ${plural(applied.rules_rewritten, "rule")} and ${plural(applied.items_rewritten, "waiting item")} now use the new lists${applied.rules_linked ? `; ${plural(applied.rules_linked, "rule")} now ${applied.rules_linked === 1 ? "names" : "name"} an imported contact` : ""}.`),
      applied.destinations_cleared ? h("p", {}, `${plural(applied.destinations_cleared, "destination")} the new ledger does not have ${applied.destinations_cleared === 1 ? "was" : "were"} cleared: those rules use the publishing settings' destination now.`) : null,
      applied.undo_until ? h("p", {}, `You can undo it until ${formatDateTime(applied.undo_until)}.`) : null),
    outcomes.length ? table({
      caption: "What the merge did per list", testid: "merge-outcomes",
      columns: ["List", "Mapped", "Unmatched", "Skipped"],
      rows: outcomes.map(([type, outcome]) => [LIST_NAMES[type] || humanise(type), String(outcome.mapped ?? 0), String(outcome.unmatched ?? 0), outcome.skipped ? "Skipped" : "No"]),
    }) : null,
    h("div", { class: "actions" }, undo));
}
