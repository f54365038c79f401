"""The admin Connections page in headless Chromium, against `ledgerlink local` on loopback with
no auto-consent: every ledger is connected through its simulator's own consent page (KashFlow
through its login form on our page), as a person would.

Each flow saves screenshots under ``artifacts/screenshots/<flow>/`` (gitignored; the README says
where) and runs axe-core's WCAG 2 A and AA rules on every page of ours it shows (results in
``artifacts/axe-results.json``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import running_local

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("LEDGERLINK_CHROMIUM", "/usr/bin/chromium"))
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
AXE_RESULTS = ROOT / "artifacts" / "axe-results.json"
README_SCREENSHOT = ROOT / "docs" / "connections.png"
# What the machine guide says headless Chromium needs here: no sandbox as root, and none of the
# background calls to Google a closed network refuses.
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
LEDGERS = ["xero", "quickbooks", "sage", "freeagent", "kashflow"]
SIGN_IN = {"username": "admin@example.com", "password": "sandbox"}
KASHFLOW = {"username": "demo", "password": "demo-password", "memorable_word": "ledgerlink"}
DEMO = "Demo Company (UK)"
JOINERY = "Harbour & Finch Joinery Ltd"
TIMEOUT_MS = 20_000
SHARED_KASHFLOW_BUSINESS = "page-kashflow-shared"


# --- the runtime and the browser ------------------------------------------------------------------


@pytest.fixture(scope="module")
def local() -> Iterator[dict[str, str]]:
    """`ledgerlink local` as a user starts it, without --auto-consent."""
    with running_local(auto_consent=False) as urls:
        urls["base"] = urls["API"].removesuffix("/v1")
        # One business connected to KashFlow (its login, no consent page) right away, so its first
        # import runs while the first flows are busy with consent pages; flows that only read
        # lists share it (see kashflow_business).
        connect_kashflow_by_api(urls, SHARED_KASHFLOW_BUSINESS)
        yield urls


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the admin page's browser tests need it. Install "
            "Debian's package with `sudo apt-get install -y chromium` (.ci/run does this in CI), or point "
            "LEDGERLINK_CHROMIUM at another Chromium."
        )
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing ({AXE}): run `npm ci` at the repository root (make test does).")
    from playwright.sync_api import expect, sync_playwright

    # The local runtime runs one invocation per function at a time, so a page may wait behind a list
    # import: give assertions the same patience as actions.
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def axe_report() -> Iterator[dict[str, Any]]:
    report: dict[str, Any] = {}
    yield report
    AXE_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(AXE_RESULTS.read_text()) if AXE_RESULTS.is_file() else {}
    AXE_RESULTS.write_text(json.dumps({**previous, **report}, indent=2, sort_keys=True))


@dataclass
class Flow:
    """One person's browser session through one flow: screenshots and an accessibility audit of
    each page it shows."""

    name: str
    page: Any
    local: dict[str, str]
    report: dict[str, Any]
    step: int = 0
    violations: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    businesses: set[str] = field(default_factory=set)

    @property
    def base(self) -> str:
        return self.local["base"]

    def sign_in(self, business: str, role: str = "admin", *, shared: bool = False) -> None:
        if not shared:  # the flow's own business: disconnected when the flow ends
            self.businesses.add(business)
        self.page.goto(f"{self.base}/app/dev-login?business={business}&role={role}")
        self.expect(self.status()).not_to_contain_text("Loading")

    def by(self, testid: str) -> Any:
        return self.page.get_by_test_id(testid)

    def status(self) -> Any:
        return self.by("connection-status")

    @property
    def expect(self) -> Callable[..., Any]:
        from playwright.sync_api import expect

        return expect

    def shot(self, label: str, *, audit: bool = True) -> Path:
        """A screenshot of the whole page; with ``audit``, axe-core's WCAG 2 A/AA rules on it."""
        self.step += 1
        directory = SCREENSHOTS / self.name
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.step:02d}-{label}.png"
        self.page.wait_for_load_state("domcontentloaded")
        self.page.wait_for_function("() => !document.querySelector('[aria-busy=true]')")
        self.page.screenshot(path=str(path), full_page=True)
        if audit:
            self.audit(label)
        return path

    def audit(self, label: str) -> None:
        if not self.page.evaluate("() => typeof window.axe !== 'undefined'"):
            self.page.add_script_tag(path=str(AXE))
        result = self.page.evaluate(
            "async (tags) => { const r = await axe.run(document, {runOnly: {type: 'tag', values: tags}});"
            " return {passes: r.passes.length, incomplete: r.incomplete.length,"
            " violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " targets: v.nodes.map(n => n.target.join(' '))}))}; }",
            AXE_TAGS,
        )
        ours = self.page.url.startswith(self.base + "/app/")
        self.report[f"{self.name}/{self.step:02d}-{label}"] = {
            "url": re.sub(r"#id_token=.*", "", self.page.url.split("?")[0]),
            "page": "ledgerlink" if ours else "ledger simulator",
            **result,
        }
        # Every page a person meets on the way counts, the simulators' consent pages included.
        self.violations += [
            f"{label}: {v['id']} ({v['impact']}) {v['help']} at {v['targets']}" for v in result["violations"]
        ]

    def assert_accessible(self) -> None:
        assert not self.violations, "axe-core found WCAG 2 A/AA violations:\n" + "\n".join(self.violations)
        assert not self.page_errors, "the page raised errors:\n" + "\n".join(self.page_errors)

    # --- what a person does -------------------------------------------------------------------

    def consent(self, organisations: list[str]) -> None:
        """On the ledger's own consent page: sign in and choose ``organisations`` by name."""
        self.expect(self.by("consent-username")).to_be_visible()
        self.by("consent-username").fill(SIGN_IN["username"])
        self.by("consent-password").fill(SIGN_IN["password"])
        for option in self.by("consent-organisation").all():
            wanted = option.get_attribute("data-organisation-name") in organisations
            if option.get_attribute("type") == "checkbox":
                option.set_checked(wanted)
            elif wanted:
                option.check()
        self.shot("consent-page")
        self.by("consent-submit").click()
        self.page.wait_for_url(f"{self.base}/app/**")

    def open_manage(self, item: str) -> None:
        self.by("manage-menu").click()
        self.expect(self.by(item)).to_be_visible()
        self.by(item).click()

    def connect(self, provider: str, organisations: list[str] | None = None) -> None:
        """Connections → Connect → the steps → Connect software → the ledger → back, up to the
        confirmation (or the organisation choice, when the consent covered several)."""
        self.by(f"connect-{provider}").click()
        self.expect(self.by("connect-steps")).to_be_visible()
        if provider == "kashflow":
            self.by("login-username").fill(KASHFLOW["username"])
            self.by("login-password").fill(KASHFLOW["password"])
            self.by("login-memorable-word").fill(KASHFLOW["memorable_word"])
        self.shot(f"connect-{provider}-steps")
        self.by("connect-software").click()
        if provider != "kashflow":
            self.consent(organisations or [DEMO])
        self.expect(self.by("finish").or_(self.by("organisation-option").first)).to_be_visible()


@pytest.fixture
def flow(
    request: pytest.FixtureRequest, browser: Any, local: dict[str, str], axe_report: dict[str, Any]
) -> Iterator[Flow]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name.removeprefix("test_")).strip("-")
    shutil.rmtree(SCREENSHOTS / name, ignore_errors=True)
    current = Flow(name=name, page=page, local=local, report=axe_report)
    page.on("pageerror", lambda error: current.page_errors.append(str(error)))
    try:
        yield current
    finally:
        context.close()
        # Done with these businesses: disconnecting them turns their queued list imports into no-ops,
        # so the next flow does not wait behind them (the local runtime runs one refresh at a time).
        for business in current.businesses:
            api_for(local, business).delete("/v1/connection", params={"keep_lists": "false"})


def api_for(local: dict[str, str], business: str, role: str = "admin") -> httpx.Client:
    from sandbox.devauth import mint_token

    return httpx.Client(
        base_url=local["base"], headers={"Authorization": f"Bearer {mint_token(business, role)}"}, timeout=30
    )


def wait_for_import(api: httpx.Client, seconds: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection = api.get("/v1/connection").json()
        lists = connection.get("lists") or {}
        if len(lists) == 6 and all(entry["refreshed_at"] for entry in lists.values()):
            return connection
        time.sleep(0.5)
    pytest.fail("the first import of the six lists did not finish")


def connect_kashflow_by_api(local: dict[str, str], business: str) -> httpx.Client:
    api = api_for(local, business)
    started = api.post("/v1/connection", json={"provider": "kashflow", "credentials": KASHFLOW})
    assert started.status_code == 201, started.text
    return api


@pytest.fixture(scope="module")
def kashflow_business(local: dict[str, str]) -> str:
    """The business the runtime fixture connected to KashFlow, once its six lists are imported."""
    wait_for_import(api_for(local, SHARED_KASHFLOW_BUSINESS))
    return SHARED_KASHFLOW_BUSINESS


# --- the flows ------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", LEDGERS)
def test_connect_each_ledger_through_its_consent_page(flow: Flow, provider: str) -> None:
    flow.sign_in(f"page-{provider}")
    flow.expect(flow.status()).to_contain_text("Not connected")
    flow.expect(flow.by("ledger-list").locator(":scope > li")).to_have_count(5)
    flow.shot("connections")
    flow.connect(provider)
    if flow.by("organisation-option").count():  # Sage: the sign-in covers every business of the user
        flow.shot("organisation-choice")
        flow.page.get_by_label(DEMO).check()
        flow.by("organisation-continue").click()
    flow.expect(flow.by("confirmation-text")).to_contain_text(DEMO)
    flow.expect(flow.status()).to_contain_text("Connected")
    flow.shot("confirmation")
    flow.by("finish").click()
    flow.expect(flow.by("save-settings")).to_be_visible()
    flow.expect(flow.page.get_by_role("heading", level=1)).to_contain_text("Publishing settings")
    # Bank match is offered where the ledger has it (Xero and Sage), and explained elsewhere.
    if provider in ("xero", "sage"):
        flow.expect(flow.by("bank-match")).to_be_visible()
    else:
        flow.expect(flow.by("bank-match")).to_have_count(0)
        flow.expect(flow.by("bank-match-unavailable")).to_be_visible()
    flow.shot("settings")
    flow.assert_accessible()


def test_choose_between_two_xero_organisations(flow: Flow) -> None:
    flow.sign_in("page-xero-two")
    flow.connect("xero", organisations=[DEMO, JOINERY])
    options = flow.by("organisation-option")
    flow.expect(options).to_have_count(2)
    flow.expect(flow.status()).to_contain_text("choose which organisation")
    flow.shot("organisation-choice")
    flow.page.get_by_label(JOINERY).check()
    flow.by("organisation-continue").click()
    flow.expect(flow.by("confirmation-text")).to_contain_text(JOINERY)
    flow.shot("confirmation")
    flow.by("finish").click()
    # Xero has bank match, so its settings offer it.
    flow.expect(flow.by("bank-match")).to_be_visible()
    flow.shot("settings-with-bank-match")
    flow.page.goto(f"{flow.base}/app/#/connections")
    flow.expect(flow.by("connected-organisation")).to_contain_text(JOINERY)
    flow.expect(flow.status()).to_contain_text(f"Xero — {JOINERY}")
    flow.by("manage-menu").click()
    flow.expect(flow.by("manage-disconnect")).to_be_visible()
    assert flow.shot("manage-menu").is_file()
    # Reconnecting must land on the same organisation: the other one changes nothing and says why.
    flow.by("manage-reconnect").click()
    flow.by("reconnect-continue").click()
    flow.consent([DEMO])
    flow.expect(flow.by("callback-error")).to_contain_text("different organisation")
    flow.expect(flow.by("connected-organisation")).to_contain_text(JOINERY)
    flow.shot("reconnect-wrong-organisation")
    flow.assert_accessible()


def test_quickbooks_settings_save_and_bank_match_is_refused(flow: Flow, local: dict[str, str]) -> None:
    flow.sign_in("page-qbo-settings")
    flow.connect("quickbooks")
    flow.by("finish").click()
    wait_for_import(api_for(local, "page-qbo-settings"))
    flow.page.goto(f"{flow.base}/app/#/connections")
    flow.open_manage("manage-settings")
    flow.expect(flow.by("save-settings")).to_be_visible()
    # QuickBooks has no bank match: the page says so instead of offering it.
    flow.expect(flow.by("bank-match")).to_have_count(0)
    flow.expect(flow.by("bank-match-unavailable")).to_contain_text("Xero and Sage")
    # Only QuickBooks' own destinations are offered.
    cost = flow.by("destination-cost")
    assert cost.locator("option").evaluate_all("os => os.map(o => o.value)") == ["bill", "expense"]
    cost.select_option("expense")
    flow.expect(flow.by("default-tax-rate")).to_have_attribute("data-loaded", "true")
    taxes = flow.by("default-tax-rate").locator("option")
    assert taxes.count() > 1, "the imported tax rates are offered"
    chosen = taxes.nth(1).get_attribute("value")
    flow.by("default-tax-rate").select_option(chosen)
    flow.by("auto-publish").check()
    flow.shot("settings-changed")
    flow.by("save-settings").click()
    flow.expect(flow.by("settings-saved")).to_be_visible()
    flow.shot("settings-saved")
    flow.page.reload()
    flow.expect(flow.by("destination-cost")).to_have_value("expense")
    flow.expect(flow.by("default-tax-rate")).to_have_attribute("data-loaded", "true")
    flow.expect(flow.by("default-tax-rate")).to_have_value(chosen)
    flow.expect(flow.by("auto-publish")).to_be_checked()

    # A request asking QuickBooks for bank match (as an old page or another client might send):
    # the API refuses it and the page shows the API's own message.
    def ask_for_bank_match(route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        route.continue_(post_data=json.dumps({**body, "bank_match": True}))

    flow.page.route("**/v1/connection/settings", lambda route: (
        ask_for_bank_match(route) if route.request.method == "PUT" else route.continue_()
    ))  # fmt: skip
    flow.by("save-settings").click()
    error = flow.by("settings-error")
    flow.expect(error).to_be_visible()
    flow.expect(error).to_have_attribute("data-code", "bank_match_unsupported")
    flow.expect(error).to_have_attribute("data-field", "bank_match")
    flow.expect(error).to_contain_text("QuickBooks Online has no bank match")
    flow.shot("bank-match-refused")
    flow.page.unroute("**/v1/connection/settings")
    flow.assert_accessible()


def test_lists_viewer_search_and_archived(flow: Flow, local: dict[str, str], kashflow_business: str) -> None:
    api = api_for(local, kashflow_business)
    archived_in = {
        list_type: [r["name"] for r in api.get(f"/v1/lists/{list_type}", params={"status": "all", "limit": 500}).json()["records"] if r["status"] == "archived"]
        for list_type in ["categories", "contacts", "tax_rates", "items", "projects", "bank_accounts"]
    }  # fmt: skip
    with_archived_records = next(t for t, names in archived_in.items() if names)
    flow.sign_in(kashflow_business, shared=True)
    flow.page.goto(f"{flow.base}/app/#/lists/categories")
    rows = flow.by("list-table").locator("tbody tr")
    flow.expect(rows.first).to_be_visible()
    active = rows.count()
    flow.shot("categories")
    wanted = rows.nth(min(2, active - 1)).locator("th").inner_text()
    flow.by("list-search").fill(wanted)
    flow.by("list-search-submit").click()
    flow.expect(flow.by("list-summary")).to_contain_text(f"matching “{wanted}”")
    names = rows.locator("th").all_inner_texts()
    assert wanted in names and len(names) < active, names
    flow.shot("search")
    for list_type in ["contacts", "tax_rates", "items", "projects", "bank_accounts"]:
        flow.by(f"list-tab-{list_type}").click()
        flow.expect(flow.by("list-summary")).to_be_visible()
        flow.expect(flow.by(f"list-tab-{list_type}")).to_have_attribute("aria-current", "page")
        flow.shot(list_type)
    # Archived records show only with the toggle on, marked as archived.
    flow.by(f"list-tab-{with_archived_records}").click()
    flow.expect(flow.by("list-summary")).to_be_visible()
    flow.expect(rows.filter(has_text="Archived")).to_have_count(0)
    archived_name = archived_in[with_archived_records][0]
    flow.by("list-archived").check()
    flow.expect(flow.by("list-summary")).to_contain_text("archived included")
    flow.expect(rows.filter(has_text=archived_name).first).to_contain_text("Archived")
    flow.shot(f"{with_archived_records}-archived-included")
    flow.assert_accessible()


def test_refresh_shows_progress_then_freshness_and_counts(flow: Flow, kashflow_business: str) -> None:
    flow.sign_in(kashflow_business, shared=True)
    flow.expect(flow.by("lists-freshness")).to_be_visible()
    flow.shot("connected")
    before = api_for(flow.local, kashflow_business).get("/v1/connection").json()["lists"]
    flow.open_manage("manage-refresh")
    # The refresh's state is on screen while it runs (queued, running, paused for the ledger)...
    flow.expect(flow.by("refresh-state")).to_be_visible()
    flow.expect(flow.by("refresh-done")).to_be_visible(timeout=120_000)
    flow.shot("refresh-result")
    # ...then the bar is full and every list shows its freshness and counts, as the API has them.
    flow.expect(flow.by("refresh-state")).to_have_text("Refreshed: all 6 lists done.")
    assert flow.by("refresh-progress").evaluate("p => p.value === p.max")
    connection = api_for(flow.local, kashflow_business).get("/v1/connection").json()
    after = connection["lists"]
    assert all(after[t]["refreshed_at"] > before[t]["refreshed_at"] for t in before), (before, after)
    # What the page followed: the refresh on GET /v1/connection, and nothing of who asked for it.
    refresh = connection["refresh"]
    assert refresh["state"] == "done" and refresh["reason"] == "requested"
    assert sorted(refresh["lists_done"]) == sorted(before)
    assert "requested_by" not in refresh and "lease_until" not in refresh
    counts = flow.by("refresh-counts")
    flow.expect(counts.locator("tbody tr")).to_have_count(6)
    categories = counts.locator("tbody tr").filter(has_text="Categories")
    flow.expect(categories.locator("td").first).to_have_text(str(after["categories"]["record_count"]))
    flow.assert_accessible()


def test_change_connection_then_merge_lists(flow: Flow, local: dict[str, str]) -> None:
    flow.sign_in("page-change")
    flow.connect("quickbooks", organisations=[DEMO])
    flow.by("finish").click()
    api = api_for(local, "page-change")
    wait_for_import(api)
    # A supplier rule coded with the first company's lists: what Merge Lists must carry across.
    category = api.get("/v1/lists/categories", params={"usable_for": "cost", "limit": 500}).json()["records"][
        0
    ]
    tax = api.get("/v1/lists/tax_rates", params={"limit": 500}).json()["records"][0]
    rule = {"name": "Acme Supplies Ltd", "category": category["id"], "tax_rate": tax["id"]}
    assert api.put("/v1/rules/suppliers/acme", json=rule).status_code == 200

    flow.page.goto(f"{flow.base}/app/#/connections")
    flow.open_manage("manage-change")
    flow.expect(flow.by("change-panel")).to_be_visible()
    flow.shot("change-panel")
    flow.by("change-continue").click()
    flow.consent([JOINERY])
    flow.expect(flow.by("confirmation-text")).to_contain_text(JOINERY)
    flow.expect(flow.status()).to_contain_text("Merge Lists")
    flow.shot("changed")
    flow.by("finish").click()
    flow.expect(flow.by("save-settings")).to_be_visible()
    wait_for_import(api)

    flow.page.goto(f"{flow.base}/app/#/connections")
    flow.open_manage("manage-merge")
    flow.expect(flow.by("merge-pending")).to_be_visible()
    flow.by("merge-preview").click()
    flow.expect(flow.by("merge-proposal")).to_be_visible(timeout=60_000)
    categories = flow.by("merge-list-categories")
    flow.expect(categories.get_by_test_id("merge-entry")).to_have_count(1)
    flow.expect(categories.get_by_test_id("merge-entry")).to_contain_text(category["name"])
    flow.expect(categories.get_by_test_id("merge-reason")).not_to_be_empty()
    flow.expect(flow.by("merge-list-tax_rates")).to_be_visible()
    flow.shot("merge-proposal")
    # Override the category's match with another new category; skip the tax rates.
    override = categories.get_by_test_id("merge-override")
    proposed = override.get_attribute("data-proposed")
    values = [
        v
        for v in override.locator("option").evaluate_all("os => os.map(o => o.value)")
        if v and v != proposed
    ]
    override.select_option(values[0])
    flow.by("merge-skip-tax_rates").check()
    flow.shot("merge-overridden")
    flow.by("merge-apply").click()
    flow.expect(flow.by("merge-applied")).to_be_visible()
    flow.expect(flow.by("merge-outcomes")).to_contain_text("Skipped")
    flow.shot("merge-applied")
    merged = api.get("/v1/rules/suppliers/acme").json()["rule"]
    assert merged["category"] == values[0]
    assert merged["tax_rate"] == tax["id"]  # skipped: left as it was
    flow.expect(flow.by("merge-apply")).to_be_hidden()
    # Undo later, from another visit to Merge Lists.
    flow.page.goto(f"{flow.base}/app/#/connections")
    flow.expect(flow.by("connected-card")).to_be_visible()
    flow.page.goto(f"{flow.base}/app/#/merge")
    flow.expect(flow.by("merge-last")).to_be_visible()
    flow.by("merge-undo").click()
    flow.expect(flow.by("merge-undone")).to_be_visible()
    flow.shot("merge-undone")
    assert api.get("/v1/rules/suppliers/acme").json()["rule"]["category"] == category["id"]
    flow.assert_accessible()


def test_needs_reconnect_shows_the_reason_and_the_way_out(flow: Flow, local: dict[str, str]) -> None:
    flow.sign_in("page-reconnect")
    flow.connect("freeagent")
    flow.by("finish").click()
    api = api_for(local, "page-reconnect")
    wait_for_import(api)
    # FreeAgent withdraws the consent; the Admin asks for a refresh, which FreeAgent refuses.
    simulator = local["freeagent"]
    httpx.post(
        f"{simulator}/_sandbox/faults", json={"kind": "revoke", "path": "/v2/*", "count": 1}
    ).raise_for_status()
    flow.page.goto(f"{flow.base}/app/#/connections")
    flow.open_manage("manage-refresh")
    refused = flow.by("refresh-failed")
    flow.expect(refused).to_be_visible(timeout=60_000)
    flow.expect(refused).to_contain_text("FreeAgent refused the refresh")
    flow.expect(refused.get_by_test_id("refresh-reconnect")).to_be_visible()
    flow.expect(flow.by("refresh-counts").locator("tbody tr")).to_have_count(6)  # the lists are kept
    flow.shot("refresh-refused")
    assert api.get("/v1/connection").json()["status"] == "needs_reconnect"
    # The status bar says what happened, in plain words, and the way out.
    flow.page.goto(f"{flow.base}/app/#/connections")
    flow.expect(flow.status()).to_contain_text("FreeAgent refused the refresh on")
    flow.expect(flow.by("status-detail")).to_contain_text("no longer lets ledgerlink in")
    flow.expect(flow.by("connected-status")).to_contain_text("Needs reconnecting")
    flow.expect(flow.by("status-reconnect")).to_be_visible()
    flow.shot("needs-reconnect")
    flow.by("status-reconnect").click()
    flow.expect(flow.by("reconnect-panel")).to_contain_text(DEMO)
    flow.by("reconnect-continue").click()
    flow.consent([DEMO])
    flow.expect(flow.page.get_by_role("status").filter(has_text="Reconnected to")).to_be_visible()
    flow.expect(flow.status()).to_contain_text("Connected")
    flow.shot("reconnected")
    flow.assert_accessible()


def test_disconnect_keeping_lists(flow: Flow, local: dict[str, str]) -> None:
    flow.sign_in("page-disconnect")
    flow.connect("freeagent")
    flow.by("finish").click()
    flow.expect(flow.by("save-settings")).to_be_visible()
    flow.page.goto(f"{flow.base}/app/#/connections")
    flow.open_manage("manage-disconnect")
    flow.expect(flow.by("keep-lists")).to_be_checked()
    flow.shot("disconnect-confirmation")
    flow.by("confirm-disconnect").click()
    flow.expect(flow.page.get_by_role("status").filter(has_text="Your lists were kept")).to_be_visible()
    flow.expect(flow.status()).to_contain_text("Not connected")
    flow.expect(flow.by("connect-freeagent")).to_be_visible()
    flow.shot("disconnected")
    # The kept lists are offered for merging when the business connects again.
    api = connect_kashflow_by_api(local, "page-disconnect")
    again = api.get("/v1/connection").json()
    assert again["merge_pending"] and again["previous"]["lists_kept"]
    assert again["previous"]["ended_by"] == "disconnect"
    flow.page.reload()
    flow.expect(flow.status()).to_contain_text("Merge Lists")
    flow.shot("connected-again-merge-offered")
    flow.assert_accessible()


def test_standard_user_sees_everything_read_only_and_no_manage_menu(
    flow: Flow, local: dict[str, str], kashflow_business: str
) -> None:
    flow.sign_in(kashflow_business, role="standard", shared=True)
    flow.expect(flow.status()).to_contain_text("Connected")
    flow.expect(flow.by("signed-in-as")).to_contain_text("read-only")
    flow.expect(flow.by("connected-card")).to_be_visible()
    flow.expect(flow.by("manage-menu")).to_have_count(0)
    for item in [
        "manage-settings",
        "manage-reconnect",
        "manage-refresh",
        "manage-change",
        "manage-disconnect",
        "manage-merge",
    ]:
        flow.expect(flow.by(item)).to_have_count(0)
    flow.shot("connections")
    flow.page.goto(f"{flow.base}/app/#/settings")
    flow.expect(flow.by("destination-cost")).to_be_disabled()
    flow.expect(flow.by("save-settings")).to_have_count(0)
    flow.shot("settings-read-only")
    flow.page.goto(f"{flow.base}/app/#/merge")
    flow.expect(flow.page.get_by_text("Only an Admin can merge lists.")).to_be_visible()
    flow.expect(flow.by("merge-preview")).to_have_count(0)
    flow.shot("merge-read-only")
    # The API refuses a standard user on its own, whatever a page shows.
    refused = api_for(local, kashflow_business, "standard").delete("/v1/connection")
    assert refused.status_code == 403
    assert api_for(local, kashflow_business).get("/v1/connection").json()["status"] == "connected"
    flow.assert_accessible()


def test_items_view_status_ledger_link_error_and_preview(flow: Flow, local: dict[str, str]) -> None:
    flow.sign_in("demo")
    flow.connect("xero", organisations=[DEMO])
    flow.by("finish").click()
    api = api_for(local, "demo")
    wait_for_import(api)
    # The connection with its six lists imported and the Manage menu open (the README's picture).
    flow.page.goto(f"{flow.base}/app/#/connections")
    flow.expect(flow.by("lists-freshness").locator("tbody tr")).to_have_count(6)
    flow.by("manage-menu").click()
    flow.expect(flow.by("manage-merge")).to_be_visible()
    flow.shot("connected-with-lists")
    if os.environ.get("LEDGERLINK_UPDATE_DOCS_SCREENSHOT"):
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        flow.page.screenshot(path=str(README_SCREENSHOT))
    categories = api.get("/v1/lists/categories", params={"status": "all", "limit": 500}).json()["records"]
    taxes = api.get("/v1/lists/tax_rates", params={"limit": 500}).json()["records"]
    category = next(r for r in categories if r["code"] == "429")
    tax = next(r for r in taxes if r["code"] == "INPUT2")
    archived = next(r for r in categories if r["status"] == "archived" and "cost" in r["usable_for"])

    def item(item_id: str, category_id: str) -> dict[str, Any]:
        return {
            "id": item_id, "type": "cost", "supplier": {"name": "Avon Security & Sons"}, "date": "2026-11-02",
            "reference": f"REF-{item_id}", "currency": "GBP", "totals": {"net": 50.0, "tax": 10.0, "gross": 60.0},
            "lines": [{"description": "Alarm service", "amount": 50.0, "tax_amount": 10.0, "category": category_id, "tax_rate": tax["id"]}],
        }  # fmt: skip

    # One item captured and left waiting (a person publishes it from the page); one coded with an
    # archived category and sent straight away (refused, with its fix).
    assert (
        api.post("/v1/items", json={"item": item("page-1", category["id"]), "publish": False}).status_code
        == 201
    )
    assert (
        api.post("/v1/items", json={"item": item("page-2", archived["id"]), "publish": True}).status_code
        == 201
    )
    deadline = time.monotonic() + 60
    while (
        api.get("/v1/items/page-2").json()["status"] not in ("rejected", "failed")
        and time.monotonic() < deadline
    ):
        time.sleep(0.5)

    flow.page.goto(f"{flow.base}/app/#/items")
    table = flow.by("items-table")
    flow.expect(table.locator("tbody tr")).to_have_count(2)
    flow.expect(table.locator("tr").filter(has_text="page-1")).to_contain_text("Waiting")
    flow.expect(table.locator("tr").filter(has_text="page-2")).to_contain_text("Rejected")
    flow.shot("items")
    flow.by("item-id").fill("page-1")
    flow.by("item-open").click()
    flow.expect(flow.by("item-status")).to_have_text("Waiting")
    # The preview: what would be sent, and where each value came from.
    flow.by("item-preview-button").click()
    preview = flow.by("item-preview")
    flow.expect(preview).to_contain_text("Where it came from")
    flow.expect(preview.locator("tr").filter(has_text="Line 1 category")).to_contain_text("429")
    flow.expect(preview.locator("tr").filter(has_text="Line 1 category")).to_contain_text("As captured")
    flow.expect(preview.locator("tr").filter(has_text="Contact")).to_contain_text("Avon Security")
    flow.expect(preview).to_contain_text("Ready to publish")
    flow.shot("preview")
    flow.by("item-publish").click()
    flow.expect(flow.by("item-queued")).to_be_visible()
    deadline = time.monotonic() + 60
    while api.get("/v1/items/page-1").json()["status"] != "published" and time.monotonic() < deadline:
        time.sleep(0.5)
    flow.page.reload()
    flow.expect(flow.by("item-status")).to_have_text("Published")
    flow.expect(flow.by("item-ledger-link")).to_have_attribute("href", re.compile(r"^https?://"))
    flow.expect(flow.by("item-publish")).to_have_count(0)
    flow.shot("published-item")
    # The refused item: the ledger's reason in plain words, and how to fix it.
    flow.page.goto(f"{flow.base}/app/#/items/page-2")
    flow.expect(flow.by("item-status")).to_have_text("Rejected")
    flow.expect(flow.by("item-error")).to_contain_text(archived["name"])
    flow.expect(flow.by("item-fix")).to_contain_text("How to fix it")
    flow.expect(flow.by("item-publish")).to_have_text("Publish again")
    flow.by("item-preview-button").click()
    flow.expect(flow.by("preview-problem")).to_contain_text("How to fix it")
    flow.shot("refused-item")
    # The fix on the page: an active category, chosen by hand, then Publish again.
    flow.by("edit-category").select_option(category["id"])
    flow.by("edit-save").click()
    flow.expect(flow.page.get_by_role("status").filter(has_text="Coding saved")).to_be_visible()
    flow.by("item-preview-button").click()
    fixed = flow.by("item-preview").locator("tr").filter(has_text="Line 1 category")
    flow.expect(fixed).to_contain_text("429")
    flow.expect(fixed).to_contain_text("Edited by hand")
    flow.expect(flow.by("item-preview")).to_contain_text("Ready to publish")
    flow.shot("fixed-by-hand")
    flow.by("item-publish").click()
    flow.expect(flow.by("item-queued")).to_be_visible()
    deadline = time.monotonic() + 60
    while api.get("/v1/items/page-2").json()["status"] != "published" and time.monotonic() < deadline:
        time.sleep(0.5)
    flow.page.reload()
    flow.expect(flow.by("item-status")).to_have_text("Published")
    flow.expect(flow.by("item-error")).to_have_count(0)
    flow.shot("fixed-and-published")
    flow.assert_accessible()


def test_keyboard_alone_connects_manages_and_saves(flow: Flow) -> None:
    """Tab to each control, Enter or Space to use it: no mouse from sign-in to saved settings."""
    page = flow.page
    flow.sign_in("page-keyboard")

    def tab_to(testid: str, limit: int = 60) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement?.dataset?.testid") == testid:
                return
        pytest.fail(f"{testid} cannot be reached with Tab")

    tab_to("connect-kashflow")
    page.keyboard.press("Enter")
    flow.expect(flow.by("connect-steps")).to_be_visible()
    tab_to("login-username")
    page.keyboard.type(KASHFLOW["username"])
    page.keyboard.press("Tab")
    page.keyboard.type(KASHFLOW["password"])
    page.keyboard.press("Tab")
    page.keyboard.type(KASHFLOW["memorable_word"])
    tab_to("connect-software")
    flow.shot("keyboard-connect")
    page.keyboard.press("Enter")
    flow.expect(flow.by("finish")).to_be_visible()
    tab_to("finish")
    page.keyboard.press("Space")
    flow.expect(flow.by("save-settings")).to_be_visible()
    tab_to("auto-publish")
    page.keyboard.press("Space")
    flow.expect(flow.by("auto-publish")).to_be_checked()
    tab_to("save-settings")
    page.keyboard.press("Enter")
    flow.expect(flow.by("settings-saved")).to_be_visible()
    flow.shot("keyboard-saved")
    # The lists: a tab, a search with Enter, the archived toggle with Space.
    tab_to("nav-lists")
    page.keyboard.press("Enter")
    flow.expect(flow.by("list-tab-contacts")).to_be_visible()
    tab_to("list-tab-contacts")
    page.keyboard.press("Enter")
    flow.expect(flow.by("list-tab-contacts")).to_have_attribute("aria-current", "page")
    tab_to("list-search")
    page.keyboard.type("Ltd")
    page.keyboard.press("Enter")
    flow.expect(flow.by("list-summary")).to_contain_text("matching “Ltd”")
    tab_to("list-archived", limit=5)
    page.keyboard.press("Space")
    flow.expect(flow.by("list-summary")).to_contain_text("archived included")
    flow.shot("keyboard-lists")
    # The Manage menu: open with Enter, move with Tab, choose with Space, close with Escape.
    page.goto(f"{flow.base}/app/#/connections")
    flow.expect(flow.by("manage-menu")).to_be_visible()
    tab_to("manage-menu")
    page.keyboard.press("Enter")
    flow.expect(flow.by("manage-menu")).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Escape")
    flow.expect(flow.by("manage-menu")).to_have_attribute("aria-expanded", "false")
    assert page.evaluate("() => document.activeElement?.dataset?.testid") == "manage-menu"
    page.keyboard.press("Space")
    tab_to("manage-disconnect", limit=8)
    flow.shot("keyboard-manage-menu")
    page.keyboard.press("Space")
    flow.expect(flow.by("keep-lists")).to_be_visible()
    tab_to("keep-lists", limit=10)
    page.keyboard.press("Space")
    flow.expect(flow.by("keep-lists")).not_to_be_checked()
    tab_to("confirm-disconnect", limit=5)
    page.keyboard.press("Enter")
    flow.expect(flow.status()).to_contain_text("Not connected")
    flow.expect(page.get_by_role("status").filter(has_text="lists were deleted")).to_be_visible()
    flow.shot("keyboard-disconnected")
    flow.assert_accessible()


def test_dev_sign_in_page_picks_business_and_role(flow: Flow) -> None:
    """Locally, the page's own sign-in form picks the business and the role (the same token as
    `ledgerlink token`); signing out comes back to it."""
    flow.page.goto(f"{flow.base}/app/")
    flow.expect(flow.by("sign-in")).to_be_visible()
    flow.shot("sign-in")
    flow.page.get_by_label("Business id").fill("page-sign-in")
    flow.page.get_by_label("Role").select_option("standard")
    flow.by("sign-in").click()
    flow.expect(flow.by("signed-in-as")).to_have_text("Business page-sign-in · Standard user (read-only)")
    flow.expect(flow.status()).to_contain_text("Ask an Admin to connect it")
    flow.expect(flow.by("connect-xero")).to_have_count(0)
    flow.shot("signed-in-standard")
    flow.page.get_by_role("button", name="Sign out").click()
    flow.expect(flow.by("sign-in")).to_be_visible()
    flow.assert_accessible()


def test_hosted_sign_in_with_authorization_code_and_pkce(flow: Flow, local: dict[str, str]) -> None:
    """The AWS sign-in path (config.json mode "cognito"), against a stand-in for Cognito's hosted
    sign-in: the page sends the person there with a PKCE challenge, exchanges the code with the
    verifier, and calls the API with the ID token it got."""
    import base64
    import hashlib
    from urllib.parse import parse_qs, urlencode, urlsplit

    from sandbox.devauth import mint_token

    page = flow.page
    domain = "https://signin.ledgerlink.test"
    redirect_uri = f"{flow.base}/app/"
    config = {
        "api_url": flow.base,
        "auth": {"mode": "cognito", "domain": domain, "client_id": "page-client", "redirect_uri": redirect_uri,
                 "scopes": ["openid", "email", "profile"]},
    }  # fmt: skip
    seen: dict[str, Any] = {}

    def hosted_sign_in(route: Any) -> None:
        url = urlsplit(route.request.url)
        if url.path == "/oauth2/authorize":
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            seen["authorize"] = query
            location = f"{query['redirect_uri']}?{urlencode({'code': 'the-code', 'state': query['state']})}"
            route.fulfill(status=302, headers={"Location": location})
        elif url.path == "/oauth2/token":
            seen["token"] = {
                key: values[0] for key, values in parse_qs(route.request.post_data or "").items()
            }
            route.fulfill(
                status=200, content_type="application/json",
                headers={"Access-Control-Allow-Origin": flow.base},
                body=json.dumps({"id_token": mint_token("page-cognito", "admin"), "token_type": "Bearer"}),
            )  # fmt: skip
        else:
            route.fulfill(status=404)

    page.route(f"{domain}/**", hosted_sign_in)
    page.route("**/app/config.json", lambda route: route.fulfill(json=config))
    page.goto(f"{flow.base}/app/")
    flow.expect(flow.by("sign-in")).to_be_visible()
    flow.shot("sign-in")
    flow.by("sign-in").click()
    flow.expect(flow.by("signed-in-as")).to_contain_text("Business page-cognito")
    flow.expect(flow.status()).to_contain_text("Not connected")
    authorize, token = seen["authorize"], seen["token"]
    assert authorize["response_type"] == "code" and authorize["client_id"] == "page-client"
    assert authorize["redirect_uri"] == redirect_uri and authorize["scope"] == "openid email profile"
    assert authorize["code_challenge_method"] == "S256"
    digest = hashlib.sha256(token["code_verifier"].encode()).digest()
    assert authorize["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert token["grant_type"] == "authorization_code" and token["code"] == "the-code"
    assert token["redirect_uri"] == redirect_uri and token["client_id"] == "page-client"
    assert "code=" not in page.url  # the code does not stay in the address bar
    flow.shot("signed-in")
    flow.assert_accessible()


# --- the local runtime's side of the page (no browser) ----------------------------------------------


def test_the_local_gateway_serves_the_page_its_config_and_the_dev_sign_in() -> None:
    from urllib.parse import unquote

    from werkzeug.test import Client

    from sandbox.devauth import verify_token
    from sandbox.gateway import LocalGateway, LocalSite

    client = Client(LocalGateway(host=None, site=LocalSite()))  # type: ignore[arg-type]
    assert client.get("/app").status_code == 308
    index = client.get("/app/")
    assert index.status_code == 200 and index.mimetype == "text/html"
    assert 'type="module" src="app.js"' in index.get_data(as_text=True)
    assert client.get("/app/views/connections.js").mimetype == "text/javascript"
    config = client.get("/app/config.json", base_url="http://127.0.0.1:8123").get_json()
    assert config == {
        "api_url": "http://127.0.0.1:8123",
        "auth": {"mode": "dev", "sign_in_url": "/app/dev-login"},
    }
    signed_in = client.get("/app/dev-login?business=demo&role=standard")
    assert signed_in.status_code == 302
    location = signed_in.headers["Location"]
    assert location.startswith("/app/#id_token=")
    claims = verify_token(unquote(location.removeprefix("/app/#id_token=")))
    assert (claims["business_id"], claims["role"]) == ("demo", "standard")
    assert client.get("/app/dev-login?business=demo&role=root").status_code == 400
    assert client.get("/app/dev-login?business=../x").status_code == 400
    assert client.get("/app/%2e%2e/%2e%2e/pyproject.toml").status_code == 404
    assert client.get("/app/missing.js").status_code == 404
    assert client.post("/app/index.html").status_code == 405
