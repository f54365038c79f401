// Pieces several views share.
import { LISTS, LIST_ORDER } from "../labels.js";
import { formatDateTime, h, notice, table, uid } from "../ui.js";

// A labelled text input with an optional hint.
export function field({ label, name, type = "text", required = true, autocomplete, testid, hint, value }) {
  const id = uid(name);
  const hintId = hint ? `${id}-hint` : null;
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    h("input", { id, name, type, required, autocomplete, testid, value, "aria-describedby": hintId }));
}

// The login KashFlow (and any ledger without OAuth) takes instead of a consent page.
export function loginFields(ledger) {
  return h("fieldset", {},
    h("legend", {}, `Your ${ledger} login`),
    field({ label: "Username", name: "username", autocomplete: "username", testid: "login-username" }),
    field({ label: "Password", name: "password", type: "password", autocomplete: "current-password", testid: "login-password" }),
    field({ label: "Memorable word", name: "memorable_word", type: "password", autocomplete: "off", testid: "login-memorable-word",
      hint: `The memorable word you set in ${ledger}.` }));
}

export function credentialsOf(form) {
  const data = new FormData(form);
  return { username: data.get("username"), password: data.get("password"), memorable_word: data.get("memorable_word") };
}

export function freshnessTable(connection, { caption = "Imported lists", testid = "lists-freshness" } = {}) {
  const lists = connection.lists || {};
  const rows = LIST_ORDER.filter((type) => lists[type]).map((type) => {
    const entry = lists[type];
    const counts = entry.last_counts || {};
    return [
      h("a", { href: `#/lists/${type}` }, LISTS[type]),
      String(entry.record_count ?? 0),
      formatDateTime(entry.refreshed_at),
      `${counts.added ?? 0} added, ${counts.changed ?? 0} changed, ${counts.archived ?? 0} archived, ${counts.deleted ?? 0} deleted`,
      entry.last_error ? h("span", { class: "text-bad" }, entry.last_error) : "OK",
    ];
  });
  const done = LIST_ORDER.filter((type) => lists[type]?.refreshed_at).length;
  const progress = done < LIST_ORDER.length
    ? h("p", { role: "status", testid: "import-progress" }, `Importing the lists: ${done} of ${LIST_ORDER.length} done so far.`)
    : null;
  if (!rows.length) return h("div", {}, progress);
  return h("div", {}, progress, table({ caption, columns: ["List", "Records", "Last refreshed", "Last changes", "Problems"], rows, testid }));
}

// Runs `work` with the button busy, showing errors in `out`.
export async function busy(button, work) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-disabled", "true");
  button.textContent = `${label}…`;
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-disabled");
    button.textContent = label;
  }
}
