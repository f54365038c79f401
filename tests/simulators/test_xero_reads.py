"""Xero Accounting reads: tenant checks, envelopes and MS dates, filters, paging to the end,
If-Modified-Since, scopes, and the per-tenant / app rate limits (moved by the clock, never slept)."""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from xero_sim_helpers import START, XeroApi

from sandbox.simulators.harness import DEFAULT_APP
from sandbox.simulators.xero import XeroSimulator

pytestmark = pytest.mark.integration

MS_DATE = re.compile(r"^/Date\(\d+\+0000\)/$")


@pytest.mark.parametrize("tenant", [None, "", "00000000-0000-0000-0000-000000000000"])
def test_missing_or_unknown_tenant_is_403(api: XeroApi, tenant: str | None) -> None:
    headers = api.headers()
    if tenant is None:
        del headers["xero-tenant-id"]
    else:
        headers["xero-tenant-id"] = tenant
    response = api.http.get("/api.xro/2.0/Accounts", headers=headers)
    assert response.status_code == 403
    assert response.json()["Detail"] == "AuthenticationUnsuccessful"


def test_tenant_not_in_this_users_consent_is_403(
        xero: XeroSimulator, client: httpx.Client, demo_id: str, joinery_id: str) -> None:
    only_demo = xero.mint_tokens(["Demo Company (UK)"])
    xero.disconnect("Harbour & Finch Joinery Ltd")  # undo the tokens fixture's consent to both
    assert XeroApi(client, only_demo["access_token"], demo_id).get("Accounts").status_code == 200
    assert XeroApi(client, only_demo["access_token"], joinery_id).get("Accounts").status_code == 403


def test_missing_bearer_token_is_401(api: XeroApi) -> None:
    response = api.http.get("/api.xro/2.0/Accounts", headers={"xero-tenant-id": api.tenant_id})
    assert (response.status_code, response.json()["Detail"]) == (401, "AuthenticationUnsuccessful")


def test_envelope_and_ms_dates(api: XeroApi) -> None:
    body = api.get("Organisation").json()
    assert body["Status"] == "OK" and body["ProviderName"]
    assert re.match(r"^/Date\(\d+\)/$", body["DateTimeUTC"])  # the envelope stamp has no offset
    organisation = body["Organisations"][0]
    assert organisation["Name"] == "Demo Company (UK)"
    assert (organisation["BaseCurrency"], organisation["CountryCode"], organisation["Version"]) == ("GBP", "GB", "UK")
    assert MS_DATE.match(organisation["PeriodLockDate"])


def test_paths_are_case_insensitive_and_unknown_ones_404(api: XeroApi) -> None:
    assert api.get("accounts").status_code == 200
    assert api.get("TAXRATES").status_code == 200
    assert api.get("NoSuchThing").status_code == 404
    assert api.request("DELETE", "Accounts").status_code == 405


def test_accounts_filters(api: XeroApi) -> None:
    accounts = api.get("Accounts").json()["Accounts"]
    assert len(accounts) >= 40
    assert {"Code", "Name", "Type", "Class", "TaxType", "Status", "UpdatedDateUTC"} <= set(accounts[0])
    banks = api.get("Accounts", params={"where": 'Type=="BANK"'}).json()["Accounts"]
    assert [b["Code"] for b in banks] == ["090", "091", "092"]
    assert {b["BankAccountType"] for b in banks} == {"BANK", "CREDITCARD"}
    archived = api.get("Accounts", params={"where": 'Status=="ARCHIVED"'}).json()["Accounts"]
    assert archived and all(a["Status"] == "ARCHIVED" for a in archived)
    both = api.get("Accounts", params={"where": 'Type=="BANK" AND Status=="ACTIVE"', "order": "Code DESC"})
    assert [b["Code"] for b in both.json()["Accounts"]] == ["092", "091", "090"]
    expenses = api.get("Accounts", params={"where": 'Class=="EXPENSE" && Name.StartsWith("Travel")'})
    assert {a["Code"] for a in expenses.json()["Accounts"]} == {"493", "494"}
    bad = api.get("Accounts", params={"where": "Type=BANK"})
    assert (bad.status_code, bad.json()["Type"]) == (400, "QueryParseException")


def test_contacts_page_to_the_end(api: XeroApi, xero: XeroSimulator) -> None:
    seen: list[str] = []
    page = 1
    while True:
        body = api.get("Contacts", params={"page": page}).json()
        seen += [c["ContactID"] for c in body["Contacts"]]
        assert body["pagination"]["page"] == page
        if len(body["Contacts"]) < body["pagination"]["pageSize"]:
            break
        page += 1
    active = [c for c in xero.orgs[api.tenant_id].contacts.values() if c["ContactStatus"] == "ACTIVE"]
    assert page == 2 and len(seen) == len(set(seen)) == len(active) > 100
    assert body["pagination"] == {"page": 2, "pageSize": 100, "pageCount": 2, "itemCount": len(active)}

    everyone = api.get("Contacts", params={"page": 1, "pageSize": 1000, "includeArchived": "true"}).json()
    assert len(everyone["Contacts"]) == 130
    assert {c["ContactStatus"] for c in everyone["Contacts"]} == {"ACTIVE", "ARCHIVED"}
    assert api.get("Contacts", params={"page": 9}).json()["Contacts"] == []


def test_unpaged_contacts_return_only_the_first_page_by_default(api: XeroApi, xero: XeroSimulator) -> None:
    assert len(api.get("Contacts").json()["Contacts"]) == 100
    xero.update_settings(unpaged_list_returns_all=True)
    assert len(api.get("Contacts").json()["Contacts"]) > 100


def test_contacts_ids_search_and_summary(api: XeroApi) -> None:
    contacts = api.get("Contacts", params={"page": 1}).json()["Contacts"]
    wanted = [contacts[3]["ContactID"], contacts[7]["ContactID"]]
    by_ids = api.get("Contacts", params={"IDs": ",".join(wanted)}).json()["Contacts"]
    assert sorted(c["ContactID"] for c in by_ids) == sorted(wanted)

    term = contacts[5]["Name"].split()[0].upper()
    found = api.get("Contacts", params={"searchTerm": term, "page": 1}).json()["Contacts"]
    assert found and all(term.lower() in (c["Name"] + c.get("EmailAddress", "")).lower() for c in found)

    summary = api.get("Contacts", params={"summaryOnly": "True", "page": 1}).json()["Contacts"][0]
    assert "Addresses" not in summary and "Name" in summary and "IsSupplier" in summary

    one = api.get(f"Contacts/{wanted[0]}").json()["Contacts"]
    assert [c["ContactID"] for c in one] == [wanted[0]]
    assert api.get("Contacts/00000000-0000-0000-0000-000000000000").status_code == 404


def test_if_modified_since_is_strictly_later(api: XeroApi, xero: XeroSimulator) -> None:
    cutoff = START - timedelta(days=30)
    recent = api.get("Contacts", params={"page": 1, "pageSize": 1000},
                     headers={"If-Modified-Since": cutoff.isoformat()}).json()["Contacts"]
    everything = api.get("Contacts", params={"page": 1, "pageSize": 1000}).json()["Contacts"]
    assert 0 < len(recent) < len(everything)

    # A write after the high-water mark is the only thing the next incremental call returns.
    high_water = xero.clock.now()
    xero.advance_clock(5)
    created = api.put("Contacts", json={"Contacts": [{"Name": "Quayside Coffee Roasters Ltd"}]})
    assert created.status_code == 200, created.text
    changed = api.get("Contacts", params={"page": 1},
                      headers={"If-Modified-Since": format_datetime(high_water, usegmt=True)}).json()["Contacts"]
    assert [c["Name"] for c in changed] == ["Quayside Coffee Roasters Ltd"]
    stamp = changed[0]["UpdatedDateUTC"]
    assert api.get("Contacts", params={"page": 1}, headers={"If-Modified-Since": stamp}).json()["Contacts"] == []
    assert api.get("Contacts", headers={"If-Modified-Since": "yesterday-ish"}).status_code == 400


def test_items_tax_rates_and_tracking(api: XeroApi) -> None:
    items = api.get("Items").json()["Items"]
    assert len(items) == 15
    paper = next(i for i in items if i["Code"] == "PAPER-A4")
    assert paper["PurchaseDetails"] == {"UnitPrice": 21.5, "AccountCode": "461", "TaxType": "INPUT2"}
    assert api.get("Items/PAPER-A4").json()["Items"][0]["ItemID"] == paper["ItemID"]

    rates = {r["TaxType"]: r for r in api.get("TaxRates").json()["TaxRates"]}
    assert {"INPUT2", "OUTPUT2", "RRINPUT", "ZERORATEDINPUT", "EXEMPTINPUT", "NONE"} <= set(rates)
    assert rates["INPUT2"]["EffectiveRate"] == 20 and rates["RRINPUT"]["DisplayTaxRate"] == 5
    assert rates["TAX001"]["Status"] == "ARCHIVED"
    # TaxRates ignore If-Modified-Since.
    future = (START + timedelta(days=365)).isoformat()
    assert len(api.get("TaxRates", headers={"If-Modified-Since": future}).json()["TaxRates"]) == len(rates)

    tracking = api.get("TrackingCategories").json()["TrackingCategories"]
    assert sorted(t["Name"] for t in tracking) == ["Department", "Region"]
    department = next(t for t in tracking if t["Name"] == "Department")
    assert "Events (closed)" not in [o["Name"] for o in department["Options"]]
    with_archived = api.get("TrackingCategories", params={"includeArchived": "true"}).json()["TrackingCategories"]
    options = next(t for t in with_archived if t["Name"] == "Department")["Options"]
    assert {"Name": "Events (closed)", "Status": "ARCHIVED"}.items() <= next(
        o for o in options if o["Name"] == "Events (closed)").items()


def test_second_organisation_has_different_data(client: httpx.Client, tokens: dict[str, Any],
                                                joinery_id: str) -> None:
    joinery = XeroApi(client, tokens["access_token"], joinery_id)
    banks = joinery.get("Accounts", params={"where": 'Type=="BANK"'}).json()["Accounts"]
    assert [b["Name"] for b in banks] == ["Current Account", "Card Account"]
    assert joinery.get("Organisation").json()["Organisations"][0]["Name"] == "Harbour & Finch Joinery Ltd"


def test_token_scopes_are_enforced(xero: XeroSimulator, client: httpx.Client, demo_id: str) -> None:
    narrow = xero.mint_tokens(scope="offline_access accounting.settings.read")
    api = XeroApi(client, narrow["access_token"], demo_id)
    assert api.get("Accounts").status_code == 200
    denied = api.get("Contacts")
    assert (denied.status_code, denied.json()["Detail"]) == (401, "AuthorizationUnsuccessful")


def test_minute_limit_then_recovery(api: XeroApi, xero: XeroSimulator) -> None:
    for expected_remaining in range(59, -1, -1):
        response = api.get("Organisation")
        assert response.status_code == 200
        assert response.headers["X-MinLimit-Remaining"] == str(expected_remaining)
    assert response.headers["X-DayLimit-Remaining"] == "4940"
    assert response.headers["X-AppMinLimit-Remaining"] == "9940"

    limited = api.get("Organisation")
    assert limited.status_code == 429
    assert limited.headers["X-Rate-Limit-Problem"] == "minute"
    assert limited.headers["Retry-After"] == "60"
    assert limited.headers["X-MinLimit-Remaining"] == "0"

    xero.advance_clock(59)
    assert api.get("Organisation").status_code == 429
    xero.advance_clock(1)
    assert api.get("Organisation").status_code == 200


def test_limits_are_per_tenant_and_app_wide(
        xero: XeroSimulator, api: XeroApi, client: httpx.Client, tokens: dict[str, Any], joinery_id: str) -> None:
    other = XeroApi(client, tokens["access_token"], joinery_id)
    xero.update_settings(minute_limit=2, app_minute_limit=3)
    assert [api.get("Organisation").status_code for _ in range(3)] == [200, 200, 429]
    assert other.get("Organisation").status_code == 200
    app_limited = other.get("Organisation")
    assert (app_limited.status_code, app_limited.headers["X-Rate-Limit-Problem"]) == (429, "appminute")


def test_day_limit_is_a_rolling_24_hours(xero: XeroSimulator, api: XeroApi) -> None:
    xero.update_settings(day_limit=50)  # the Starter tier's 1,000 works the same way
    for minute in range(5):
        for _ in range(10):
            assert api.get("Currencies").status_code == 200
        xero.advance_clock(60 if minute < 4 else 0)
    limited = api.get("Currencies")
    assert (limited.status_code, limited.headers["X-Rate-Limit-Problem"]) == (429, "day")
    assert limited.headers["X-DayLimit-Remaining"] == "0"
    # The oldest ten calls leave the window 24 h after they were made, 4 minutes ago.
    assert int(limited.headers["Retry-After"]) == 24 * 3600 - 4 * 60
    xero.advance_clock(24 * 3600 - 4 * 60)
    api.access_token = xero.mint_tokens()["access_token"]  # the old one expired meanwhile
    assert api.get("Currencies").headers["X-DayLimit-Remaining"] == "9"


def test_concurrency_limit(xero: XeroSimulator, api: XeroApi) -> None:
    key = (DEFAULT_APP.client_id, api.tenant_id)
    for _ in range(5):  # five requests of this app and tenant are in flight elsewhere
        assert xero.concurrency.try_enter(key, None)
    limited = api.get("Organisation")
    assert (limited.status_code, limited.headers["X-Rate-Limit-Problem"]) == (429, "concurrent")
    assert limited.headers["Retry-After"] == "1"
    xero.concurrency.leave(key)
    assert api.get("Organisation").status_code == 200
