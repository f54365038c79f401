"""FreeAgent reads: URL ids on the request origin, the four category arrays, paging with Link and
X-Total-Count, views and sorts, updated_since, permission levels and the rate limits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from freeagent_sim_helpers import BASE_URL, FreeAgentApi, http_client, new_simulator

from sandbox.simulators.freeagent import FreeAgentSimulator
from sandbox.simulators.harness import SimClock


@pytest.fixture
def sim(clock: SimClock) -> FreeAgentSimulator:
    return new_simulator(clock)


@pytest.fixture
def api(sim: FreeAgentSimulator) -> Iterator[FreeAgentApi]:
    with http_client(sim) as http:
        yield FreeAgentApi(http, sim.mint_tokens()["access_token"])


def test_ids_are_urls_on_the_origin_the_request_reached(sim: FreeAgentSimulator, api: FreeAgentApi) -> None:
    company = api.get("company").json()["company"]
    assert company["url"] == f"{BASE_URL}/v2/company"
    assert (company["type"], company["currency"], company["sales_tax_rates"]) == (
        "UkLimitedCompany", "GBP", ["20.0", "5.0", "0.0"])
    with http_client(sim, "http://127.0.0.1:8123") as other:
        contact = FreeAgentApi(other, api.access_token).get("contacts").json()["contacts"][0]
        assert contact["url"].startswith("http://127.0.0.1:8123/v2/contacts/")


def test_categories_are_four_unpaged_arrays(api: FreeAgentApi) -> None:
    response = api.get("categories")
    assert "Link" not in response.headers
    groups = response.json()
    assert list(groups) == ["admin_expenses_categories", "cost_of_sales_categories", "income_categories",
                            "general_categories"]
    printing = next(c for c in groups["admin_expenses_categories"] if c["nominal_code"] == "461")
    assert printing == {"url": api.url("categories/461"), "description": "Printing & Stationery",
                        "nominal_code": "461", "group_description": "Admin expenses", "allowable_for_tax": True,
                        "tax_reporting_name": "Printing & Stationery", "auto_sales_tax_rate": "Standard rate"}
    assert {c["auto_sales_tax_rate"] for c in groups["income_categories"]} >= {"Standard rate", "Zero rate"}
    all_codes = {c["nominal_code"] for group in groups.values() for c in group}
    assert "450" not in all_codes and "090" not in all_codes  # archived accounts and bank accounts
    assert api.get("categories/205").json() == {"income_categories": next(
        c for c in groups["income_categories"] if c["nominal_code"] == "205")}
    assert api.get("categories/999").status_code == 404


def test_contacts_page_to_the_end(sim: FreeAgentSimulator, api: FreeAgentApi) -> None:
    company = next(iter(sim.companies.values()))
    active = [c for c in company.contacts.values() if c["status"] == "Active"]
    first = api.get("contacts")
    assert first.headers["X-Total-Count"] == str(len(active))
    assert len(first.json()["contacts"]) == 25
    assert set(first.links) == {"next", "first", "last"}
    last_page = -(-len(active) // 25)
    assert first.links["last"]["url"] == f"{BASE_URL}/v2/contacts?page={last_page}&per_page=25"

    rows = api.all_pages("contacts", "contacts")
    assert len(rows) == len(active) == len({r["url"] for r in rows})
    assert all(r["status"] == "Active" for r in rows)  # hidden contacts are left out by default
    names = [f"{r['organisation_name']} {r['last_name']} {r['first_name']}".lower() for r in rows]
    assert names == sorted(names)

    middle = api.get("contacts", params={"page": 2, "per_page": 25})
    assert set(middle.links) == {"prev", "next", "first", "last"}
    assert len(api.get("contacts", params={"per_page": 500}).json()["contacts"]) == 100  # clamped
    past_the_end = api.get("contacts", params={"page": 99})
    assert past_the_end.json()["contacts"] == [] and "next" not in past_the_end.links
    assert len(api.all_pages("contacts", "contacts", view="all")) == len(company.contacts)
    hidden = api.all_pages("contacts", "contacts", view="hidden")
    assert hidden and {c["status"] for c in hidden} == {"Hidden"}
    assert api.get("contacts", params={"view": "nonsense"}).status_code == 400


def test_contact_views_and_sorts(api: FreeAgentApi) -> None:
    suppliers = api.all_pages("contacts", "contacts", view="suppliers", per_page=100)
    clients = api.all_pages("contacts", "contacts", view="clients", per_page=100)
    assert suppliers and clients and {c["status"] for c in suppliers} == {"Active"}
    newest_first = api.get("contacts", params={"sort": "-updated_at"}).json()["contacts"]
    stamps = [c["updated_at"] for c in newest_first]
    assert stamps == sorted(stamps, reverse=True)
    assert api.get("contacts", params={"sort": "colour"}).status_code == 400


def test_updated_since_is_strictly_later_by_default(sim: FreeAgentSimulator, api: FreeAgentApi) -> None:
    rows = api.all_pages("contacts", "contacts", view="all", per_page=100)
    stamps = sorted({r["updated_at"] for r in rows})
    pivot = stamps[-3]
    newer = api.all_pages("contacts", "contacts", view="all", updated_since=pivot)
    assert {r["updated_at"] for r in newer} == set(stamps[-2:])
    sim.update_settings(updated_since_inclusive=True)
    inclusive = api.all_pages("contacts", "contacts", view="all", updated_since=pivot)
    assert {r["updated_at"] for r in inclusive} == set(stamps[-3:])
    assert api.get("contacts", params={"updated_since": "last tuesday"}).status_code == 400


def test_projects_bank_accounts_and_price_list(api: FreeAgentApi) -> None:
    projects = api.get("projects").json()["projects"]
    assert len(projects) == 4 and {p["status"] for p in projects} == {"Active"}  # default view: active
    completed = api.get("projects", params={"view": "completed"}).json()["projects"]
    assert [p["name"] for p in completed] == ["CRM rollout"]
    assert len(api.get("projects", params={"view": "all"}).json()["projects"]) == 5
    contact = projects[0]["contact"]
    assert [p["contact"] for p in api.get("projects", params={"contact": contact}).json()["projects"]] == [contact]
    assert api.get(projects[0]["url"]).json()["project"]["is_deletable"] is False

    banks = api.get("bank_accounts").json()["bank_accounts"]
    assert [(b["type"], b["is_primary"]) for b in banks] == [
        ("StandardBankAccount", True), ("StandardBankAccount", False), ("CreditCardAccount", False)]
    cards = api.get("bank_accounts", params={"view": "credit_card_accounts"}).json()["bank_accounts"]
    assert [c["account_number"] for c in cards] == ["1234"]

    items = api.all_pages("price_list_items", "price_list_items", per_page=10)
    assert len(items) == 15 and [i["code"] for i in items] == sorted(i["code"] for i in items)
    paper = next(i for i in items if i["code"] == "PAPER-A4")
    assert (paper["price"], paper["vat_status"], paper["category"]) == ("29.99", "standard", api.url("categories/200"))


def test_users_and_permission_levels(sim: FreeAgentSimulator, api: FreeAgentApi) -> None:
    users = api.get("users").json()["users"]
    assert [(u["role"], u["permission_level"]) for u in users] == [("Director", 8), ("Employee", 2), ("Employee", 2)]

    def status(path: str) -> int:
        return api.get(path).status_code

    sim.set_permission_level(5)  # Bills
    assert (status("bills"), status("bank_accounts"), status("categories"), status("users")) == (200, 403, 403, 403)
    refused = api.get("bank_accounts")
    assert refused.json() == {"errors": {"error": {
        "message": "You need permission level 6 or above to do this; yours is 5"}}}
    sim.set_permission_level(6)  # Banking
    assert (status("bank_accounts"), status("categories")) == (200, 403)
    sim.set_permission_level(4)
    assert (status("bills"), status("invoices"), status("contacts")) == (403, 200, 200)
    sim.set_permission_level(1)  # Time: the company and oneself, nothing else of note
    assert (status("company"), status("users/me"), status("projects"), status("expenses")) == (200, 200, 403, 403)
    sim.set_permission_level(0)
    assert status("company") == 403
    assert api.http.post("/_sandbox/permission-level", json={"level": 7}).status_code == 200
    assert (status("categories"), status("users")) == (200, 200)
    sim.update_settings(permission_levels={**sim.settings.permission_levels, "categories": 2})
    sim.set_permission_level(2)
    assert status("categories") == 200


def test_rate_limits_reset_on_the_minute(sim: FreeAgentSimulator, api: FreeAgentApi, clock: SimClock) -> None:
    clock.set(datetime(2026, 11, 2, 9, 0, 59, tzinfo=UTC))
    for _ in range(120):
        assert api.get("company").status_code == 200
    limited = api.get("company")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "60"
    assert limited.headers["Content-Type"].startswith("text/plain")
    assert limited.text == "You must not exceed 120 requests per 60 seconds"
    clock.advance(1)  # 09:01:00 — a new window (a rolling window would still refuse)
    assert api.get("company").status_code == 200


def test_rate_limit_test_header_and_hour_limit(sim: FreeAgentSimulator, api: FreeAgentApi, clock: SimClock) -> None:
    testing = {"X-RateLimit-Test": "true"}
    for _ in range(5):
        assert api.get("company", headers=testing).status_code == 200
    assert api.get("company", headers=testing).status_code == 429
    assert api.get("company").status_code == 200  # the normal limit still has room

    sim.update_settings(hour_limit=10)
    clock.set(datetime(2026, 11, 2, 9, 58, tzinfo=UTC))
    sim.windows.reset()
    for _ in range(10):
        clock.advance(5)
        assert api.get("company").status_code == 200
    assert api.get("company").text == "You must not exceed 10 requests per 3600 seconds"
    clock.set(datetime(2026, 11, 2, 10, 0, tzinfo=UTC))  # the top of the hour: a new window
    api.access_token = sim.mint_tokens()["access_token"]  # (the fixture's token has just expired)
    assert api.get("company").status_code == 200


def test_large_preset_pages(sim: FreeAgentSimulator, api: FreeAgentApi) -> None:
    sim.seed("large")
    sim.update_settings(rate_limits_enabled=False)
    first = api.get("contacts", params={"view": "all", "per_page": 100})
    assert first.headers["X-Total-Count"] == "10000"
    last = api.get(first.links["last"]["url"])
    assert len(last.json()["contacts"]) == 100 and "next" not in last.links
    assert len(api.get("categories").json()["admin_expenses_categories"]) > 300
    since = (datetime(2026, 11, 2, 9, tzinfo=UTC) - timedelta(days=3)).isoformat()
    recent = api.get("contacts", params={"view": "all", "updated_since": since})
    assert 0 < int(recent.headers["X-Total-Count"]) < 10000
