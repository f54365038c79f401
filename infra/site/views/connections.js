// Connections: the five ledgers, connecting (consent pages, KashFlow's login), the organisation
// choice, the confirmation, and the Manage menu with its panels (refresh, reconnect, change, disconnect).
import { ApiError } from "../api.js";
import { LISTS, LIST_ORDER, STATUSES, callbackMessage, connectSteps, features } from "../labels.js";
import { clear, formatDateTime, h, notice, table, uid } from "../ui.js";
import { busy, credentialsOf, freshnessTable, loginFields } from "./common.js";

export async function render(ctx, main, params, key) {
  const connection = ctx.connection;
  main.append(h("h1", {}, "Connections"),
    h("p", { class: "lead" }, "Business settings › Connections: the accounting software ledgerlink publishes your items to."));
  const returned = ctx.returned;
  ctx.returned = null;
  if (returned) {
    const shown = await handleReturn(ctx, main, returned);
    if (shown) return;
  }
  if (key === "connect" && params[0] && !connection) {
    renderConnectPanel(ctx, main, ctx.provider(params[0]));
    return;
  }
  if (!connection) {
    renderLedgers(ctx, main);
    return;
  }
  if (connection.status === "pending_organisation") {
    await renderOrganisationChoice(ctx, main);
    return;
  }
  const panel = params[0];
  if (panel === "refresh") await renderRefresh(ctx, main);
  else if (panel === "reconnect") renderReauthorise(ctx, main, "reconnect");
  else if (panel === "change") renderReauthorise(ctx, main, "change");
  else if (panel === "disconnect") renderDisconnect(ctx, main);
  else renderConnected(ctx, main);
}

// --- coming back from a ledger's sign-in --------------------------------------------------------

async function handleReturn(ctx, main, { flow, status }) {
  const connection = ctx.connection;
  const ledger = connection ? ctx.provider(connection.provider).display_name : "The ledger";
  if (status === "choose_organisation" || (connection && connection.status === "pending_organisation")) {
    await renderOrganisationChoice(ctx, main);
    return true;
  }
  if (status === "connected" && connection) {
    renderConfirmation(ctx, main, flow);
    return true;
  }
  if (status === "reconnected" && connection) {
    main.append(notice("success", h("p", {},
      `Reconnected to ${connection.organisation?.name || ledger}. Items held while the connection was down are published now.`)));
    return false;
  }
  main.append(h("div", { class: "notice notice-error", role: "alert", testid: "callback-error" },
    h("p", {}, callbackMessage(status, ledger, connection?.organisation?.name))));
  return false;
}

// --- not connected: the five ledgers and the connect panel ---------------------------------------

function renderLedgers(ctx, main) {
  const admin = ctx.user.isAdmin;
  const section = h("section", { "aria-labelledby": "software-heading", class: "card" },
    h("h2", { id: "software-heading" }, "Accounting software"),
    h("p", {}, admin
      ? "Choose the accounting software this business keeps its books in."
      : "No accounting software is connected. Only an Admin of this business can connect it."));
  const list = h("ul", { class: "ledger-grid", testid: "ledger-list" });
  for (const provider of ctx.providers) {
    const headingId = `ledger-${provider.provider}`;
    list.append(h("li", { class: "ledger", "aria-labelledby": headingId },
      h("h3", { id: headingId }, provider.display_name),
      h("ul", { class: "features" }, features(provider).map((text) => h("li", {}, text))),
      admin ? h("button", {
        type: "button", class: "primary", testid: `connect-${provider.provider}`,
        onclick: () => ctx.navigate(`#/connect/${provider.provider}`),
      }, "Connect ", h("span", { class: "visually-hidden" }, provider.display_name)) : null));
  }
  section.append(list);
  main.append(section);
}

function renderConnectPanel(ctx, main, provider) {
  const ledger = provider.display_name;
  const direct = provider.auth_style === "session_login";
  const out = h("div", { class: "out" });
  const steps = h("ol", { class: "steps", testid: "connect-steps" }, connectSteps(provider).map((step) => h("li", {}, step)));
  const submit = h("button", { type: "submit", class: "primary", testid: "connect-software" }, "Connect software");
  const form = h("form", { class: "stack", novalidate: direct ? null : true }, direct ? loginFields(ledger) : null,
    h("div", { class: "actions" }, submit, h("a", { href: "#/connections", class: "button secondary" }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(out);
    await busy(submit, async () => {
      try {
        if (direct) {
          const started = await ctx.api.post("/v1/connection", { provider: provider.provider, credentials: credentialsOf(form) });
          ctx.connection = started.connection;
          await ctx.reloadConnection();
          clear(main, h("h1", {}, "Connections"));
          if (ctx.connection?.status === "pending_organisation") await renderOrganisationChoice(ctx, main);
          else renderConfirmation(ctx, main, "connect");
          main.querySelector("h2")?.setAttribute("tabindex", "-1");
          main.querySelector("h2")?.focus();
          return;
        }
        const started = await ctx.api.post("/v1/connection", { provider: provider.provider, return_url: ctx.returnUrl("connect") });
        window.location.assign(started.authorize_url);
      } catch (error) {
        out.append(errorNotice(error));
      }
    });
  });
  main.append(h("section", { class: "card panel", "aria-labelledby": "connect-heading", testid: "connect-panel" },
    h("h2", { id: "connect-heading" }, `Connect ${ledger}`),
    h("p", {}, direct ? `${ledger} connects with its own login. What happens:` : `You will leave this page to sign in to ${ledger}. What happens:`),
    steps, out, form));
}

function errorNotice(error) {
  const message = error instanceof ApiError ? error.message : String(error.message || error);
  return h("div", { class: "notice notice-error", role: "alert", testid: "form-error" }, h("p", {}, message));
}

// --- organisation choice and confirmation ----------------------------------------------------------

async function renderOrganisationChoice(ctx, main) {
  const connection = ctx.connection;
  const ledger = ctx.provider(connection?.provider).display_name;
  const section = h("section", { class: "card panel", "aria-labelledby": "organisation-heading" },
    h("h2", { id: "organisation-heading" }, "Choose the organisation"));
  main.append(section);
  if (!ctx.user.isAdmin) {
    section.append(h("p", {}, `${ledger} is waiting for an Admin to choose the organisation to connect.`));
    return;
  }
  const { organisations } = await ctx.api.get("/v1/connection/organisations");
  const out = h("div");
  const submit = h("button", { type: "submit", class: "primary", testid: "organisation-continue" }, "Continue");
  const fieldset = h("fieldset", {}, h("legend", {}, `Which ${ledger} organisation should ledgerlink publish to?`),
    organisations.map((organisation) => {
      const id = uid("organisation");
      return h("div", { class: "choice" },
        h("input", { type: "radio", id, name: "organisation_id", value: organisation.id, required: true, testid: "organisation-option" }),
        h("label", { for: id }, organisation.name));
    }));
  const form = h("form", { class: "stack" },
    h("p", {}, `Your ${ledger} sign-in covers ${organisations.length} organisations. ledgerlink connects one business to one organisation.`),
    fieldset, out, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(out);
    const chosen = new FormData(form).get("organisation_id");
    if (!chosen) {
      out.append(h("div", { class: "notice notice-error", role: "alert" }, h("p", {}, "Choose an organisation to continue.")));
      fieldset.querySelector("input")?.focus();
      return;
    }
    await busy(submit, async () => {
      try {
        ctx.connection = await ctx.api.post("/v1/connection/organisation", { organisation_id: chosen });
        await ctx.reloadConnection();
        clear(main, h("h1", {}, "Connections"));
        renderConfirmation(ctx, main, "connect");
        main.querySelector("h2")?.setAttribute("tabindex", "-1");
        main.querySelector("h2")?.focus();
      } catch (error) {
        out.append(errorNotice(error));
      }
    });
  });
  section.append(form);
}

function renderConfirmation(ctx, main, flow) {
  const connection = ctx.connection;
  const ledger = ctx.provider(connection.provider).display_name;
  const organisation = connection.organisation?.name || "your organisation";
  const finish = h("button", { type: "button", class: "primary", testid: "finish", onclick: () => ctx.navigate("#/settings") }, "Finish");
  main.append(h("section", { class: "card panel", "aria-labelledby": "confirm-heading", testid: "confirmation" },
    h("h2", { id: "confirm-heading" }, `${ledger} is connected`),
    h("p", { testid: "confirmation-text" }, `ledgerlink is connected to ${organisation} in ${ledger} and is importing its six lists: ${LIST_ORDER.map((t) => LISTS[t].toLowerCase()).join(", ")}.`),
    flow === "change" || connection.merge_pending
      ? h("p", {}, "Your supplier rules still point at the previous connection's lists. After checking the settings, use ",
        h("a", { href: "#/merge" }, "Merge Lists"), " to move them onto the new lists.")
      : null,
    h("p", {}, "Next, check the publishing settings: where each kind of item goes, the default tax rate and automatic publishing."),
    h("div", { class: "actions" }, finish)));
}

// --- connected: the card, the Manage menu ----------------------------------------------------------

function renderConnected(ctx, main) {
  const connection = ctx.connection;
  const provider = ctx.provider(connection.provider);
  const admin = ctx.user.isAdmin;
  const card = h("section", { class: "card", "aria-labelledby": "connected-heading", testid: "connected-card" });
  const header = h("div", { class: "card-header" },
    h("div", {},
      h("h2", { id: "connected-heading" }, provider.display_name),
      h("p", { testid: "connected-organisation" }, connection.organisation ? `Organisation: ${connection.organisation.name}` : "No organisation chosen yet")));
  if (admin) header.append(manageMenu(ctx));
  const freshness = h("div", { testid: "freshness" }, freshnessTable(connection));
  card.append(header,
    h("dl", { class: "facts" },
      h("dt", {}, "Status"), h("dd", { testid: "connected-status" }, `${statusText(connection)} (since ${formatDateTime(connection.status_since)})`),
      connection.previous ? [h("dt", {}, "Previous connection"), h("dd", {},
        `${ctx.provider(connection.previous.provider).display_name} — ${connection.previous.organisation?.name || "unknown"}, ended by ${connection.previous.ended_by} on ${formatDateTime(connection.previous.ended_at)}${connection.previous.lists_kept ? " (lists kept)" : ""}`)] : null),
    freshness);
  watchFirstImport(ctx, freshness);
  if (!admin) card.append(h("p", { class: "hint" }, "You can see this connection but not change it: only an Admin can manage it."));
  main.append(card);
  const others = ctx.providers.filter((p) => p.provider !== connection.provider);
  main.append(h("section", { class: "card", "aria-labelledby": "others-heading" },
    h("h2", { id: "others-heading" }, "Other accounting software"),
    h("p", {}, `${others.map((p) => p.display_name).join(", ")}. A business connects one ledger at a time: to switch, disconnect ${provider.display_name} first (keep your lists to merge your rules afterwards).`)));
}

function statusText(connection) {
  const label = STATUSES[connection.status] || connection.status;
  const reason = connection.status_reason || "";
  if (reason.toLowerCase().startsWith(label.toLowerCase())) return reason.charAt(0).toUpperCase() + reason.slice(1);
  return reason ? `${label} — ${reason}` : label;
}

function importing(connection) {
  const lists = Object.values(connection?.lists || {});
  return connection?.status === "connected" && (lists.length < LIST_ORDER.length || lists.some((entry) => !entry.refreshed_at));
}

// While the first import runs, the table fills in as each list arrives.
function watchFirstImport(ctx, slot) {
  if (!importing(ctx.connection)) return;
  const poll = async () => {
    if (!slot.isConnected) return; // the person moved on
    const connection = await ctx.reloadConnection();
    if (!slot.isConnected || !connection) return;
    clear(slot, freshnessTable(connection));
    if (importing(connection)) setTimeout(poll, 2000);
  };
  setTimeout(poll, 2000);
}

function manageMenu(ctx) {
  const listId = uid("manage");
  const toggle = h("button", { type: "button", class: "secondary menu-toggle", "aria-expanded": "false", "aria-controls": listId, testid: "manage-menu" },
    "Manage", h("span", { "aria-hidden": "true" }, " ▾"));
  const close = (focusToggle) => {
    list.hidden = true;
    toggle.setAttribute("aria-expanded", "false");
    if (focusToggle) toggle.focus();
  };
  const item = (label, testid, action) => h("li", {}, h("button", { type: "button", class: "menu-item", testid, onclick: () => { close(false); action(); } }, label));
  const list = h("ul", { id: listId, class: "menu-list", hidden: true },
    item("Settings", "manage-settings", () => ctx.navigate("#/settings")),
    item("Reconnect", "manage-reconnect", () => ctx.navigate("#/connections/reconnect")),
    item("Refresh integration data", "manage-refresh", () => { ctx.startRefresh = true; ctx.navigate("#/connections/refresh"); }),
    item("Change connection", "manage-change", () => ctx.navigate("#/connections/change")),
    item("Disconnect", "manage-disconnect", () => ctx.navigate("#/connections/disconnect")),
    item("Merge Lists", "manage-merge", () => ctx.navigate("#/merge")));
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") === "true";
    if (open) close(false);
    else {
      list.hidden = false;
      toggle.setAttribute("aria-expanded", "true");
    }
  });
  const wrapper = h("div", { class: "menu" }, toggle, list);
  wrapper.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !list.hidden) close(true);
  });
  wrapper.addEventListener("focusout", (event) => {
    if (!list.hidden && event.relatedTarget && !wrapper.contains(event.relatedTarget)) close(false);
  });
  return wrapper;
}

function backLink() {
  return h("p", {}, h("a", { href: "#/connections" }, "Back to the connection"));
}

// --- Refresh integration data ---------------------------------------------------------------------
// POST /v1/connection/refresh queues a refresh (or joins the one under way); GET /v1/connection then
// carries that refresh's state, so the page follows it to its end: done, or refused and why.

const POLL_MS = 1000;
// A refresh that waits for a ledger's rate limit can take minutes: the page stops watching (the
// refresh carries on by itself) rather than keep a spinner up for ever.
const WATCH_LIMIT_MS = 180_000;

async function renderRefresh(ctx, main) {
  const connection = ctx.connection;
  const provider = ctx.provider(connection.provider);
  const ledger = provider.display_name;
  const section = h("section", { class: "card panel", "aria-labelledby": "refresh-heading", testid: "refresh-panel" },
    h("h2", { id: "refresh-heading" }, "Refresh integration data"),
    h("p", {}, `Fetch what changed in ${ledger} since the last refresh: categories, suppliers and customers, tax rates, products and services, projects and bank accounts.`));
  const out = h("div");
  const start = h("button", { type: "button", class: "primary", testid: "refresh-start" }, "Refresh now");
  const beforeTable = h("div", {}, freshnessTable(connection, { caption: "Lists before this refresh", testid: "refresh-before" }));
  section.append(out, h("div", { class: "actions" }, start), beforeTable, backLink());
  main.append(section);
  const wanted = (provider.lists?.length ? provider.lists : LIST_ORDER).filter((type) => LIST_ORDER.includes(type));
  const run = async () => {
    clear(out);
    let started;
    try {
      started = await ctx.api.post("/v1/connection/refresh", {});
    } catch (error) {
      out.append(errorNotice(error));
      return;
    }
    const progress = h("progress", { max: String(wanted.length), "aria-labelledby": "refresh-progress-label", testid: "refresh-progress" });
    const label = h("p", { id: "refresh-progress-label", role: "status", testid: "refresh-state" });
    out.append(h("div", { class: "progress" }, label, progress));
    const ours = started.refresh.refresh_id;
    let refresh = started.refresh;
    const until = Date.now() + WATCH_LIMIT_MS;
    for (;;) {
      const done = (refresh.lists_done || []).filter((type) => wanted.includes(type)).length;
      // Lists are recorded as each delivery of the refresh ends: until then the bar is indeterminate.
      const ended = refresh.state === "done" || refresh.state === "failed";
      if (done || ended) progress.value = refresh.state === "done" ? wanted.length : done;
      label.textContent = refreshStateText(refresh, started.joined, ledger, done, wanted.length);
      if (ended) break;
      if (Date.now() > until) {
        label.textContent = `${label.textContent} It is taking a while: it carries on by itself, and the freshness on the Connections page shows when it is done.`;
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      const current = await ctx.reloadConnection();
      if (!section.isConnected) return; // the person moved on
      if (!current) {
        clear(out, notice("info", h("p", {}, "The connection was removed meanwhile.")));
        return;
      }
      // Another refresh on the record: ours ended (and a later one, scheduled, has started).
      refresh = current.refresh && current.refresh.refresh_id !== ours
        ? { ...refresh, state: "done" }
        : current.refresh || refresh;
    }
    clear(beforeTable);
    const current = ctx.connection;
    if (refresh.state === "failed") {
      const refused = current.status === "needs_reconnect";
      out.append(h("div", { class: "notice notice-error", role: "alert", testid: "refresh-failed" },
        h("p", {}, refused
          ? `${ledger} refused the refresh: ${ledger} no longer lets ledgerlink in (${current.status_reason}). Your lists are kept as they were. `
          : `${ledger} refused part of the refresh (${refresh.last_error}). The lists it finished are updated; the next refresh tries the rest again.`,
        refused ? h("a", { href: "#/connections/reconnect", testid: "refresh-reconnect" }, `Reconnect ${ledger}`) : null)));
    } else {
      out.append(h("div", { class: "notice notice-success", role: "status", testid: "refresh-done" },
        h("p", {}, `Integration data refreshed from ${ledger} at ${formatDateTime(refresh.finished_at || latest(current))}.`)));
    }
    out.append(countsTable(current));
  };
  start.addEventListener("click", () => busy(start, run));
  if (ctx.startRefresh) {
    ctx.startRefresh = false;
    busy(start, run);
  }
}

function refreshStateText(refresh, joined, ledger, done, total) {
  const lists = `${done} of ${total} lists done`;
  switch (refresh.state) {
    case "queued":
      return joined ? `A refresh was already queued: following it. ${lists}.` : `Refresh queued: it starts in a moment. ${lists}.`;
    case "running":
      return `${joined ? "A refresh was already running: following it. " : ""}Fetching what changed in ${ledger}… ${lists}.`;
    case "waiting":
      return `Paused: ${refresh.last_error || `${ledger} asked ledgerlink to wait`}. ${lists}; it carries on by itself${refresh.resume_at ? ` at ${formatTime(refresh.resume_at)}` : ""}.`;
    case "done":
      return `Refreshed: all ${total} lists done.`;
    case "failed":
      return `Stopped: ${lists}.`;
    default:
      return `${refresh.state}: ${lists}.`;
  }
}

function formatTime(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function latest(connection) {
  const times = Object.values(connection?.lists || {}).map((entry) => entry.refreshed_at).filter(Boolean).sort();
  return times.at(-1) || null;
}

function countsTable(connection) {
  const lists = connection.lists || {};
  const rows = LIST_ORDER.filter((type) => lists[type]).map((type) => {
    const entry = lists[type];
    const counts = entry.last_counts || {};
    return [LISTS[type], String(entry.record_count ?? 0), String(counts.added ?? 0), String(counts.changed ?? 0),
      String(counts.archived ?? 0), String(counts.deleted ?? 0), formatDateTime(entry.refreshed_at)];
  });
  return table({ caption: "Freshness and counts per list", columns: ["List", "Records", "Added", "Changed", "Archived", "Deleted", "Refreshed"], rows, testid: "refresh-counts" });
}

// --- Reconnect and Change connection ----------------------------------------------------------------

function renderReauthorise(ctx, main, purpose) {
  const connection = ctx.connection;
  const provider = ctx.provider(connection.provider);
  const ledger = provider.display_name;
  const organisation = connection.organisation?.name || "the connected organisation";
  const direct = provider.auth_style === "session_login";
  const change = purpose === "change";
  const heading = change ? "Change connection" : `Reconnect ${ledger}`;
  const text = change
    ? `Connect another ${ledger} organisation instead of ${organisation}. The current lists are kept, so you can merge your supplier rules onto the new organisation's lists afterwards (Merge Lists).`
    : `Sign in to ${ledger} again and choose ${organisation}: the same organisation. Items held while the connection was down are published once it is back.`;
  const out = h("div");
  const submit = h("button", { type: "submit", class: "primary", testid: `${purpose}-continue` },
    direct ? (change ? "Change connection" : "Reconnect") : `Continue to ${ledger}`);
  const form = h("form", { class: "stack" }, direct ? loginFields(ledger) : null,
    h("div", { class: "actions" }, submit, h("a", { href: "#/connections", class: "button secondary" }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(out);
    await busy(submit, async () => {
      try {
        const body = direct ? { credentials: credentialsOf(form) } : { return_url: ctx.returnUrl(purpose) };
        const started = await ctx.api.post(`/v1/connection/${purpose}`, body);
        if (started.authorize_url) {
          window.location.assign(started.authorize_url);
          return;
        }
        await ctx.reloadConnection();
        clear(main, h("h1", {}, "Connections"));
        if (change) {
          if (ctx.connection?.status === "pending_organisation") await renderOrganisationChoice(ctx, main);
          else renderConfirmation(ctx, main, "change");
        } else {
          main.append(notice("success", h("p", {}, `Reconnected to ${ctx.connection.organisation?.name || ledger}.`)));
          renderConnected(ctx, main);
        }
        main.querySelector("h2")?.setAttribute("tabindex", "-1");
        main.querySelector("h2")?.focus();
      } catch (error) {
        out.append(errorNotice(error));
      }
    });
  });
  main.append(h("section", { class: "card panel", "aria-labelledby": "reauth-heading", testid: `${purpose}-panel` },
    h("h2", { id: "reauth-heading" }, heading), h("p", {}, text), out, form));
}

// --- Disconnect -------------------------------------------------------------------------------------

function renderDisconnect(ctx, main) {
  const connection = ctx.connection;
  const ledger = ctx.provider(connection.provider).display_name;
  const organisation = connection.organisation?.name || "the organisation";
  const out = h("div");
  const keepId = uid("keep");
  const submit = h("button", { type: "submit", class: "danger", testid: "confirm-disconnect" }, "Disconnect");
  const form = h("form", { class: "stack" },
    h("div", { class: "choice" },
      h("input", { type: "checkbox", id: keepId, name: "keep_lists", checked: true, testid: "keep-lists", "aria-describedby": `${keepId}-hint` }),
      h("label", { for: keepId }, "Keep my lists")),
    h("p", { class: "hint", id: `${keepId}-hint` }, "Kept lists let you merge your supplier rules onto your next connection (Merge Lists). Untick to delete them now."),
    h("div", { class: "actions" }, submit, h("a", { href: "#/connections", class: "button secondary" }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(out);
    const keep = form.querySelector(`#${keepId}`).checked;
    await busy(submit, async () => {
      try {
        const result = await ctx.api.delete("/v1/connection", { keep_lists: keep ? "true" : "false" });
        await ctx.reloadConnection();
        ctx.flash = {
          kind: "success",
          text: `Disconnected from ${ledger} (${organisation}). ${result.lists_kept ? "Your lists were kept for Merge Lists." : "Its lists were deleted."}`,
        };
        ctx.navigate("#/connections");
      } catch (error) {
        out.append(errorNotice(error));
      }
    });
  });
  main.append(h("section", { class: "card panel", "aria-labelledby": "disconnect-heading", testid: "disconnect-panel" },
    h("h2", { id: "disconnect-heading" }, `Disconnect ${ledger}?`),
    h("p", {}, `ledgerlink stops publishing to ${organisation} and withdraws its access at ${ledger}. Items not yet published wait until you connect again.`),
    out, form));
}
