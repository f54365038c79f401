// The admin page: Business settings > Connections. Plain JavaScript modules, no build step.
import { Api, ApiError } from "./api.js";
import { Auth } from "./auth.js";
import { STATUSES } from "./labels.js";
import { clear, focusHeading, formatDay, formatDateTime, h, notice } from "./ui.js";
import * as connections from "./views/connections.js";
import * as items from "./views/items.js";
import * as lists from "./views/lists.js";
import * as merge from "./views/merge.js";
import * as settings from "./views/settings.js";

const ROUTES = {
  connections: { view: connections, title: "Connections", nav: "connections" },
  connect: { view: connections, title: "Connect accounting software", nav: "connections" },
  settings: { view: settings, title: "Publishing settings", nav: "settings" },
  lists: { view: lists, title: "Lists", nav: "lists" },
  items: { view: items, title: "Items", nav: "items" },
  merge: { view: merge, title: "Merge Lists", nav: "merge" },
};

const NAV = [
  ["connections", "Connections"],
  ["settings", "Publishing settings"],
  ["lists", "Lists"],
  ["items", "Items"],
  ["merge", "Merge Lists"],
];

const ctx = {
  config: null,
  auth: null,
  api: null,
  user: null,
  providers: [],
  connection: null, // null: no connection; undefined: not loaded
  connectionError: null,
  returned: null, // {flow, status} when the page just came back from a ledger's sign-in
  flash: null, // a one-time notice for the next view
  rendering: 0,

  provider(name) {
    return this.providers.find((provider) => provider.provider === name) || { provider: name, display_name: name };
  },

  // Where a ledger's sign-in comes back to: this page, saying what was going on.
  returnUrl(flow) {
    return `${window.location.origin}${window.location.pathname}?flow=${encodeURIComponent(flow)}`;
  },

  navigate(hash) {
    if (window.location.hash === hash) route();
    else window.location.hash = hash;
  },

  async reloadConnection() {
    try {
      this.connection = await this.api.get("/v1/connection");
      this.connectionError = null;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404 && error.code !== "route_not_found") {
        this.connection = null;
        this.connectionError = null;
      } else {
        this.connectionError = error;
      }
    }
    renderStatus();
    return this.connection;
  },

  rerender() { route(); },
};

async function boot() {
  const root = document.getElementById("app");
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    ctx.config = await response.json();
  } catch {
    clear(root, h("main", { id: "main" }, h("h1", {}, "ledgerlink"), notice("error", "The page's configuration could not be loaded.")));
    return;
  }
  ctx.auth = new Auth(ctx.config);
  try {
    await ctx.auth.completeSignIn();
  } catch (error) {
    ctx.flash = { kind: "error", text: error.message };
  }
  const params = new URLSearchParams(window.location.search);
  if (params.has("flow")) {
    ctx.returned = { flow: params.get("flow"), status: params.get("status") || "unknown" };
    history.replaceState(null, "", window.location.pathname + "#/connections");
  }
  if (!ctx.auth.token) {
    renderSignIn(root);
    return;
  }
  ctx.user = ctx.auth.user;
  ctx.api = new Api(ctx.config.api_url || "", () => ctx.auth.token, () => renderSignIn(root, "Your sign-in expired: sign in again."));
  renderShell(root);
  try {
    ctx.providers = (await ctx.api.get("/v1/providers")).providers;
  } catch (error) {
    ctx.flash = { kind: "error", text: `The list of accounting software could not be loaded: ${error.message}` };
  }
  await ctx.reloadConnection();
  ctx.freshlyLoaded = true;
  window.addEventListener("hashchange", route);
  if (!window.location.hash.startsWith("#/")) history.replaceState(null, "", "#/connections");
  route();
}

function renderSignIn(root, message) {
  const mode = ctx.config.auth?.mode || "dev";
  let form;
  if (mode === "cognito") {
    form = h("button", { type: "button", class: "primary", testid: "sign-in", onclick: () => ctx.auth.signIn() }, "Sign in");
  } else {
    form = h("form", { method: "get", action: ctx.config.auth?.sign_in_url || "dev-login", class: "stack" },
      h("p", {}, "Development sign-in for the local runtime: choose the business and the role to act as."),
      h("label", { for: "signin-business" }, "Business id"),
      h("input", { id: "signin-business", name: "business", required: true, value: "demo", autocomplete: "off" }),
      h("label", { for: "signin-role" }, "Role"),
      h("select", { id: "signin-role", name: "role" }, h("option", { value: "admin" }, "Admin"), h("option", { value: "standard" }, "Standard user")),
      h("button", { type: "submit", class: "primary", testid: "sign-in" }, "Sign in"));
  }
  document.title = "Sign in - ledgerlink";
  clear(root,
    h("header", { class: "site-header" }, h("p", { class: "brand" }, "ledgerlink")),
    h("main", { id: "main", class: "narrow" },
      h("h1", {}, "Sign in"),
      message ? notice("error", message) : null,
      ctx.flash ? notice(ctx.flash.kind, ctx.flash.text) : null,
      form));
}

function renderShell(root) {
  const user = ctx.user;
  const skip = h("a", { class: "skip-link", href: "#main", onclick: (event) => {
    event.preventDefault();
    document.getElementById("main").focus();
  } }, "Skip to content");
  clear(root,
    skip,
    h("header", { class: "site-header" },
      h("p", { class: "brand" }, "ledgerlink"),
      h("p", { class: "who", testid: "signed-in-as" },
        `Business ${user.businessId} · ${user.isAdmin ? "Admin" : "Standard user (read-only)"}`),
      h("button", { type: "button", class: "link-button", onclick: () => ctx.auth.signOut() }, "Sign out")),
    h("nav", { "aria-label": "Business settings", class: "site-nav" },
      h("ul", {}, NAV.map(([key, label]) => h("li", {}, h("a", { href: `#/${key}`, id: `nav-${key}`, testid: `nav-${key}` }, label))))),
    h("section", { class: "status-bar", "aria-label": "Connection status" },
      h("div", { id: "connection-status", testid: "connection-status", role: "status" }, "Loading the connection…")),
    h("main", { id: "main", tabindex: "-1" }));
}

function renderStatus() {
  const region = document.getElementById("connection-status");
  if (!region) return;
  const connection = ctx.connection;
  const admin = ctx.user?.isAdmin;
  const wayOut = (label, hash, testid) => h("a", { href: hash, class: "status-action", testid }, label);
  if (ctx.connectionError) {
    clear(region, h("span", { class: "badge badge-bad" }, "Unavailable"), ` ${ctx.connectionError.message} `,
      h("button", { type: "button", class: "link-button", onclick: () => ctx.reloadConnection() }, "Try again"));
    region.dataset.status = "error";
    return;
  }
  if (!connection) {
    region.dataset.status = "none";
    clear(region, h("span", { class: "badge badge-neutral" }, "Not connected"),
      " No accounting software is connected yet. ",
      admin ? wayOut("Connect your software", "#/connections", "status-connect") : "Ask an Admin to connect it.");
    return;
  }
  const ledger = ctx.provider(connection.provider).display_name;
  const organisation = connection.organisation?.name;
  const since = formatDay(connection.status_since);
  region.dataset.status = connection.status;
  const badgeClass = {
    connected: "badge-good", pending_organisation: "badge-warn", refresh_failing: "badge-warn",
    needs_reconnect: "badge-bad", disconnected: "badge-bad",
  }[connection.status] || "badge-neutral";
  const parts = [h("span", { class: `badge ${badgeClass}` }, STATUSES[connection.status] || connection.status), " "];
  switch (connection.status) {
    case "connected":
      parts.push(`${ledger}${organisation ? ` — ${organisation}` : ""}, since ${formatDateTime(connection.status_since)}.`);
      break;
    case "pending_organisation":
      parts.push(`${ledger}: choose which organisation to connect. `,
        admin ? wayOut("Choose the organisation", "#/connections", "status-choose") : "Ask an Admin to choose it.");
      break;
    case "refresh_failing":
      // The reason, in plain words first; the ledger's own words after, for whoever fixes it.
      parts.push(`${ledger} could not be reached to renew ledgerlink's access on ${since} — `,
        admin ? wayOut("Refresh now", "#/connections/refresh", "status-refresh") : "an Admin can refresh now",
        ". ", h("span", { class: "status-detail" },
          `ledgerlink keeps trying by itself and nothing is lost meanwhile. Details: ${connection.status_reason}.`));
      break;
    case "needs_reconnect":
      parts.push(`${ledger} refused the refresh on ${since} — `,
        admin ? wayOut("Reconnect", "#/connections/reconnect", "status-reconnect") : "ask an Admin to reconnect",
        ". ", h("span", { class: "status-detail", testid: "status-detail" },
          `${ledger} no longer lets ledgerlink in (its access was withdrawn or has run out), so the lists are not refreshed and items wait until you sign in to ${ledger} again. ${ledger} said: “${connection.status_reason}”.`));
      break;
    default:
      parts.push(`${ledger}: ${connection.status_reason}.`);
  }
  if (connection.merge_pending && connection.status === "connected") {
    parts.push(" Your rules still use the previous connection's lists: ",
      admin ? wayOut("Merge Lists", "#/merge", "status-merge") : "an Admin can merge them.");
  }
  clear(region, ...parts);
}

async function route() {
  const main = document.getElementById("main");
  if (!main) return;
  const hash = window.location.hash || "#/connections";
  if (hash === "#main") return;
  const [key, ...params] = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const entry = ROUTES[key] || ROUTES.connections;
  for (const [navKey] of NAV) {
    const link = document.getElementById(`nav-${navKey}`);
    if (link) {
      if (navKey === entry.nav) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }
  document.title = `${entry.title} - Business settings - ledgerlink`;
  const ticket = ++ctx.rendering;
  const container = h("div", { class: "view", "aria-busy": "true" });
  clear(main, container);
  if (ctx.flash) {
    container.append(notice(ctx.flash.kind, ctx.flash.text));
    ctx.flash = null;
  }
  const body = h("div");
  container.append(body);
  try {
    // Every page shows the connection as it is now (a refresh or another Admin may have changed it).
    if (!ctx.freshlyLoaded) await ctx.reloadConnection();
    ctx.freshlyLoaded = false;
    if (ticket !== ctx.rendering) return;
    await entry.view.render(ctx, body, params, key);
  } catch (error) {
    if (ticket !== ctx.rendering) return;
    body.append(notice("error", `Something went wrong: ${error.message}`));
  }
  if (ticket !== ctx.rendering) return;
  container.removeAttribute("aria-busy");
  // Move focus to the new page's heading, unless the person is already working in it (a page
  // that loads slowly must not pull focus away from a field they tabbed to meanwhile).
  if (!ctx.keepFocus && !container.contains(document.activeElement)) focusHeading(container);
  ctx.keepFocus = false;
}

boot();
