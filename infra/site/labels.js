// Plain-language names for the API's codes.

export const ITEM_TYPES = {
  cost: "Cost items (receipts and bills)",
  sales: "Sales items (sales invoices)",
  expense_claim: "Expense claims",
};

export const DESTINATIONS = {
  bill_draft: "Bill, saved as a draft",
  bill_awaiting_approval: "Bill, awaiting approval",
  bill_awaiting_payment: "Bill, awaiting payment",
  spend_money: "Spend Money (paid from a bank account)",
  invoice_draft: "Sales invoice, saved as a draft",
  invoice_awaiting_approval: "Sales invoice, awaiting approval",
  invoice_awaiting_payment: "Sales invoice, awaiting payment",
  classic_expense_claim: "Expense claim",
  bill_to_employee: "Bill to the employee",
  bill: "Bill",
  expense: "Expense",
  sales_invoice: "Sales invoice",
  purchase_invoice: "Purchase invoice",
  purchase_quick_entry: "Purchase quick entry",
  other_payment: "Other payment",
  bank_transaction_explanation: "Bank transaction explanation",
  paid_purchase: "Paid purchase",
  purchase_from_claimant: "Purchase from the claimant",
};

export const LISTS = {
  categories: "Categories",
  contacts: "Suppliers and customers",
  tax_rates: "Tax rates",
  items: "Products and services",
  projects: "Projects",
  bank_accounts: "Bank accounts",
};
export const LIST_ORDER = Object.keys(LISTS);

export const SOURCES = {
  manual_edit: "Edited by hand",
  supplier_rule: "Supplier rule",
  captured: "As captured",
  connection_default: "Connection default (settings)",
  ledger_default: "Ledger default (imported lists)",
  missing: "Missing",
};

export const STATUSES = {
  pending_organisation: "Waiting for the organisation choice",
  connected: "Connected",
  refresh_failing: "Refresh failing",
  needs_reconnect: "Needs reconnecting",
  disconnected: "Disconnected",
};

export const ITEM_STATUSES = {
  waiting: "Waiting",
  queued: "Queued",
  published: "Published",
  rejected: "Rejected",
  retrying: "Retrying",
  held: "Held until reconnected",
  failed: "Failed",
};

// What connecting each ledger involves, step by step.
export function connectSteps(provider) {
  const name = provider.display_name;
  if (provider.auth_style === "session_login") {
    return [
      `Enter your ${name} username, password and memorable word below: ${name} has no separate consent page.`,
      "ledgerlink signs in, connects your company and starts importing its six lists.",
      "Check the publishing settings.",
    ];
  }
  const steps = [`Sign in to ${name} on its own page and allow ledgerlink to access your books.`];
  if (provider.organisation_choice) {
    steps.push(`Choose the organisation there. If you allow several, you pick the one to connect back here.`);
  } else {
    steps.push(`Choose the company to connect on ${name}'s page.`);
  }
  steps.push("Back here, confirm, then check the publishing settings.");
  return steps;
}

export function features(provider) {
  const items = [];
  items.push(provider.auth_style === "session_login" ? "Connects with its own login" : `Signs in on ${provider.display_name}'s page`);
  if (provider.organisation_choice) items.push("Several organisations to choose from");
  items.push(provider.bank_match ? "Bank match for paid items" : "No bank match");
  items.push(provider.native_expense_claims ? "Native expense claims" : "Expense claims as purchases");
  if (provider.batch_size > 1) items.push(`Publishes in batches of ${provider.batch_size}`);
  return items;
}

export function callbackMessage(status, ledger, organisation) {
  switch (status) {
    case "denied":
      return `${ledger} did not grant access, so nothing changed. You can try again.`;
    case "wrong_organisation":
      return `You signed in to a different organisation. Nothing was changed: reconnect and choose ${organisation || "the connected organisation"}, or use Change connection to switch.`;
    case "same_organisation":
      return "You chose the organisation that is already connected. To switch, choose another organisation; to renew access, use Reconnect.";
    case "connection_exists":
      return "This business is already connected: use Change connection, or disconnect first.";
    case "invalid_connection_state":
      return "The connection changed while you were signing in. Start again.";
    default:
      return `The sign-in did not complete (${status}). Start again.`;
  }
}
