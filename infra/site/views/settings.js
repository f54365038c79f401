// Publishing settings: General (destination per item type, the ledger's own choices), Bank match
// (Xero and Sage only), Tax (default tax rate from the imported list), Automatic publishing.
import { ApiError } from "../api.js";
import { DESTINATIONS, ITEM_TYPES } from "../labels.js";
import { clear, h, notice, uid } from "../ui.js";
import { busy } from "./common.js";

export async function render(ctx, main) {
  const connection = ctx.connection;
  if (!connection || connection.status === "pending_organisation") {
    main.append(h("h1", {}, "Publishing settings"),
      notice("info", h("p", {}, "Connect your accounting software first: the settings depend on it. ", h("a", { href: "#/connections" }, "Go to Connections"))));
    return;
  }
  const provider = ctx.provider(connection.provider);
  const ledger = provider.display_name;
  const admin = ctx.user.isAdmin;
  // The tax rates fill in when they arrive: the settings do not wait for the lists.
  const taxRequest = ctx.api.get("/v1/lists/tax_rates", { status: "active", limit: 500 }).catch((error) => ({ error }));
  const current = await ctx.api.get("/v1/connection/settings");
  main.append(h("h1", {}, `Publishing settings — ${ledger}`),
    h("p", { class: "lead" }, `How ledgerlink publishes items to ${connection.organisation?.name || ledger}.`));
  if (!admin) main.append(notice("info", h("p", {}, "You can see these settings but not change them: only an Admin can.")));

  const out = h("div", { id: "settings-messages" });
  const fields = {};
  const inlineErrors = {};
  const disabled = !admin;

  // General
  const general = h("fieldset", { class: "group" }, h("legend", {}, h("h2", {}, "General")),
    h("p", { class: "hint" }, `Where each kind of item goes by default. Only ${ledger}'s own choices are offered.`));
  for (const [itemType, choices] of Object.entries(provider.destinations || {})) {
    const id = uid(`destination-${itemType}`);
    const chosen = current.destinations?.[itemType] || provider.default_destinations?.[itemType];
    const select = h("select", { id, name: `destinations.${itemType}`, disabled, testid: `destination-${itemType}` },
      choices.map((choice) => h("option", { value: choice, selected: choice === chosen }, DESTINATIONS[choice] || choice)));
    fields[`destinations.${itemType}`] = select;
    general.append(fieldRow(id, ITEM_TYPES[itemType] || itemType, select, inlineErrors, `destinations.${itemType}`));
  }

  // Bank match: only where the ledger has it.
  let bankMatch = null;
  const bank = h("fieldset", { class: "group", testid: "bank-match-section" }, h("legend", {}, h("h2", {}, "Bank match")));
  if (provider.bank_match) {
    const id = uid("bank-match");
    bankMatch = h("input", { type: "checkbox", id, name: "bank_match", checked: !!current.bank_match, disabled, testid: "bank-match", "aria-describedby": `${id}-hint` });
    fields.bank_match = bankMatch;
    bank.append(
      h("p", { class: "hint", id: `${id}-hint` }, `Paid items are published with a payment in the matched ${ledger} bank account, so ${ledger}'s reconciliation pairs them with the bank line.`),
      checkRow(id, "Match paid items to the bank account", bankMatch, inlineErrors, "bank_match"));
  } else {
    bank.append(h("p", { testid: "bank-match-unavailable" }, `${ledger} has no bank match: paid items are published as paid, without matching a bank line. Bank match is available for Xero and Sage.`));
    const slot = h("p", { class: "field-error", id: uid("bank-error"), hidden: true });
    inlineErrors.bank_match = { slot, control: null };
    bank.append(slot);
  }

  // Tax
  const taxId = uid("tax");
  const taxSelect = h("select", { id: taxId, name: "default_tax_rate", disabled, testid: "default-tax-rate", "aria-describedby": `${taxId}-hint ${taxId}-state`, "data-loaded": "false" },
    h("option", { value: "" }, "No default: use the supplier rule or the category's tax"),
    current.default_tax_rate ? h("option", { value: current.default_tax_rate, selected: true }, "The saved tax rate (loading its name…)") : null);
  fields.default_tax_rate = taxSelect;
  const taxState = h("p", { class: "hint", id: `${taxId}-state`, role: "status" }, "Loading the imported tax rates…");
  const tax = h("fieldset", { class: "group" }, h("legend", {}, h("h2", {}, "Tax")),
    h("p", { class: "hint", id: `${taxId}-hint` }, "Applied when nothing else says which tax rate to use. It never overwrites a supplier rule or a manual edit."),
    fieldRow(taxId, "Default tax rate", taxSelect, inlineErrors, "default_tax_rate"), taxState);
  taxRequest.then((taxPage) => {
    const rates = taxPage.error ? [] : taxPage.records;
    const chosen = taxSelect.value;
    clear(taxSelect, h("option", { value: "" }, "No default: use the supplier rule or the category's tax"),
      rates.map((rate) => h("option", { value: rate.id, selected: rate.id === chosen },
        `${rate.name}${rate.rate !== null && rate.rate !== undefined ? ` (${rate.rate}%)` : ""}`)));
    if (chosen && !rates.some((rate) => rate.id === chosen)) {
      taxSelect.append(h("option", { value: chosen, selected: true }, "The saved tax rate (no longer imported)"));
    }
    taxState.textContent = taxPage.error
      ? `The tax rates could not be loaded: ${taxPage.error.message}`
      : rates.length ? `${rates.length} active tax rates imported from ${ledger}.`
        : `The tax rates are still being imported from ${ledger}: reload this page in a moment.`;
    taxSelect.dataset.loaded = "true";
  });

  // Automatic publishing
  const autoId = uid("auto");
  const auto = h("input", { type: "checkbox", id: autoId, name: "auto_publish", checked: !!current.auto_publish, disabled, testid: "auto-publish", "aria-describedby": `${autoId}-hint` });
  fields.auto_publish = auto;
  const automatic = h("fieldset", { class: "group" }, h("legend", {}, h("h2", {}, "Automatic publishing")),
    h("p", { class: "hint", id: `${autoId}-hint` }, "Items from a supplier whose rule sets a category are published as soon as they are captured."),
    checkRow(autoId, "Publish automatically once a supplier has a category rule", auto, inlineErrors, "auto_publish"));

  const save = admin ? h("button", { type: "submit", class: "primary", testid: "save-settings" }, "Save settings") : null;
  const form = h("form", { class: "stack settings", novalidate: true }, general, bank, tax, automatic, out, save ? h("div", { class: "actions" }, save) : null);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!admin) return;
    clear(out);
    for (const { slot, control } of Object.values(inlineErrors)) {
      slot.hidden = true;
      slot.textContent = "";
      control?.removeAttribute("aria-invalid");
    }
    const body = {
      destinations: Object.fromEntries(Object.keys(provider.destinations || {}).map((type) => [type, fields[`destinations.${type}`].value])),
      bank_match: bankMatch ? bankMatch.checked : !!current.bank_match,
      default_tax_rate: taxSelect.value || null,
      auto_publish: auto.checked,
    };
    await busy(save, async () => {
      try {
        const saved = await ctx.api.put("/v1/connection/settings", body);
        Object.assign(current, saved);
        await ctx.reloadConnection();
        out.append(h("div", { class: "notice notice-success", role: "status", testid: "settings-saved" }, h("p", {}, "Settings saved.")));
      } catch (error) {
        showError(error, out, inlineErrors);
      }
    });
  });
  main.append(form);
}

function fieldRow(id, label, control, inlineErrors, name) {
  const slot = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  inlineErrors[name] = { slot, control };
  return h("div", { class: "field" }, h("label", { for: id }, label), slot, control);
}

function checkRow(id, label, control, inlineErrors, name) {
  const slot = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  inlineErrors[name] = { slot, control };
  return h("div", { class: "field" }, slot, h("div", { class: "choice" }, control, h("label", { for: id }, label)));
}

function showError(error, out, inlineErrors) {
  const message = error instanceof ApiError ? error.message : String(error.message || error);
  const target = error.field ? inlineErrors[error.field] : null;
  const summary = h("div", { class: "notice notice-error", role: "alert", testid: "settings-error", "data-field": error.field || null, "data-code": error.code || null },
    h("h2", { class: "notice-title" }, "The settings were not saved"),
    h("p", {}, message));
  if (target) {
    target.slot.hidden = false;
    target.slot.textContent = message;
    if (target.control) {
      target.control.setAttribute("aria-invalid", "true");
      const described = new Set((target.control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
      described.add(target.slot.id);
      target.control.setAttribute("aria-describedby", [...described].join(" "));
      summary.append(h("p", {}, h("a", { href: `#${target.control.id}`, onclick: (event) => { event.preventDefault(); target.control.focus(); } }, "Go to the field")));
    }
  }
  out.append(summary);
}
