"""The Sage v3.1 API: list shape and paging by $next, attributes, incremental filters (inclusive
updated_or_created_since, exclusive deleted_since), writes with 422 diagnosis arrays,
idempotency_id replay, readonly tokens, payments against invoices, attachments, 429 and faults."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from sage_sim_helpers import SAGE_URL, SageApi, ids, purchase_invoice, sources

from sandbox.simulators.harness import SimClock
from sandbox.simulators.sage import SageSimulator

DEMO = "Demo Company (UK)"


@pytest.fixture
def sage(clock: SimClock) -> SageSimulator:
    return SageSimulator(clock, auto_consent=True)


@pytest.fixture
def http(sage: SageSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=sage.transport(), base_url=SAGE_URL) as client:
        yield client


@pytest.fixture
def api(sage: SageSimulator, http: httpx.Client) -> SageApi:
    return SageApi(http, sage.mint_tokens()["access_token"], sage.business(DEMO).id)


@pytest.fixture
def refs(sage: SageSimulator) -> dict[str, str]:
    return ids(sage, DEMO)


# -- lists ---------------------------------------------------------------------------------------


def test_list_shape_and_base_attributes(api: SageApi) -> None:
    body = api.get("contacts").json()
    assert set(body) == {"$total", "$page", "$next", "$back", "$itemsPerPage", "$items"}
    assert (body["$page"], body["$itemsPerPage"], body["$back"], len(body["$items"])) == (1, 20, None, 20)
    assert set(body["$items"][0]) == {"id", "displayed_as", "$path"}
    assert body["$next"].startswith("/contacts?") and "page=2" in body["$next"]
    full = api.get("contacts", params={"attributes": "all"}).json()["$items"][0]
    assert {"contact_types", "reference", "updated_at"} <= set(full)
    some = api.get("contacts", params={"attributes": "reference,email"}).json()["$items"][0]
    assert set(some) == {"id", "displayed_as", "$path", "reference", "email"}


def test_pages_to_the_end_by_following_next(api: SageApi, sage: SageSimulator) -> None:
    vendors = api.all_pages("contacts", contact_type_id="VENDOR", items_per_page=7, attributes="all")
    assert len({v["id"] for v in vendors}) == len(vendors) == api.get(
        "contacts", params={"contact_type_id": "VENDOR"}).json()["$total"]
    assert all("VENDOR" in {t["id"] for t in v["contact_types"]} for v in vendors)
    every = api.all_pages("contacts", items_per_page=200)
    assert [c["id"] for c in every] == sage.record_ids(DEMO, "contacts")


def test_page_past_the_end_is_the_last_page_and_page_size_is_capped(api: SageApi) -> None:
    last = api.get("tax_rates", params={"page": 99, "items_per_page": 2}).json()
    assert (last["$page"], last["$next"], len(last["$items"])) == (3, None, 1)
    assert last["$back"] == "/tax_rates?page=2&items_per_page=2"
    too_big = api.get("contacts", params={"items_per_page": 201})
    assert too_big.status_code == 422 and too_big.json()[0]["$source"] == "items_per_page"


def test_ledger_account_filters(api: SageApi) -> None:
    expenses = api.all_pages("ledger_accounts", visible_in="expenses", attributes="all", items_per_page=200)
    assert expenses and all(a["visible_in_expenses"] for a in expenses)
    assert not any(a["is_control_account"] for a in expenses)
    banks = api.all_pages("ledger_accounts", ledger_account_type_id="BANK", items_per_page=200)
    assert len(banks) == 3
    every = api.all_pages("ledger_accounts", attributes="all", items_per_page=200)
    assert any(not a["included_in_chart"] for a in every)  # archived accounts stay listed, hidden


def test_reference_lists(api: SageApi) -> None:
    rates = {r["id"]: r for r in api.all_pages("tax_rates", attributes="all")}
    assert set(rates) == {"GB_STANDARD", "GB_LOWER", "GB_ZERO", "GB_EXEMPT", "GB_NO_TAX"}
    assert [p["percentage"] for p in rates["GB_STANDARD"]["percentages"]] == [17.5, 20.0]
    types = api.all_pages("analysis_types", attributes="all")
    assert [len(t["analysis_type_categories"]) for t in types] == [5, 5, 0]
    regions = api.all_pages("analysis_type_categories", analysis_type_id=types[1]["id"], attributes="all")
    assert {c["name"] for c in regions} == {"North", "South", "Midlands", "Scotland", "Wales"}
    assert {p["item_code"] for p in api.all_pages("services", attributes="all")} == {"CONSULT-HR", "TRAIN-DAY"}
    assert len(api.all_pages("products")) == 13
    banks = api.all_pages("bank_accounts", attributes="all")
    assert {b["bank_account_type"]["id"] for b in banks} == {"CHECKING", "SAVINGS", "CREDIT_CARD"}
    assert api.get("financial_settings").json()["base_currency"]["id"] == "GBP"
    assert api.get("business_settings").json()["business_type"]["id"] == "LIMITED_COMPANY"


def test_analysis_types_are_not_on_start(api: SageApi, sage: SageSimulator) -> None:
    sage.set_subscription(DEMO, "START")
    assert api.get("analysis_types").status_code == 403


# -- incremental ---------------------------------------------------------------------------------


def test_updated_or_created_since_is_inclusive(api: SageApi, sage: SageSimulator, refs: dict[str, str]) -> None:
    sage.advance_clock(60)
    created = api.post("contacts", json={"contact": {"name": "Quayside Paper Co", "contact_type_ids": ["VENDOR"],
                                                     "reference": "QPC"}}).json()
    stamp = created["created_at"]
    assert [c["id"] for c in api.all_pages("contacts", updated_or_created_since=stamp)] == [created["id"]]
    sage.advance_clock(1)
    later = sage.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert api.get("contacts", params={"updated_or_created_since": later}).json()["$total"] == 0
    bad = api.get("contacts", params={"updated_or_created_since": "last tuesday"})
    assert bad.status_code == 422


def test_deleted_since_is_exclusive_and_lists_only_deleted_rows(api: SageApi, sage: SageSimulator,
                                                                refs: dict[str, str]) -> None:
    seeded_deleted = api.get("contacts", params={"deleted_since": "2020-01-01"}).json()
    assert seeded_deleted["$total"] > 0 and "deleted_at" in seeded_deleted["$items"][0]
    sage.advance_clock(60)
    mark = sage.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    invoice = api.post("purchase_invoices", json=purchase_invoice(refs)).json()
    assert api.delete(f"purchase_invoices/{invoice['id']}").status_code == 204
    assert api.get(f"purchase_invoices/{invoice['id']}").status_code == 404
    assert api.get("purchase_invoices", params={"deleted_since": mark}).json()["$total"] == 0  # deleted AT mark
    earlier = api.get("purchase_invoices", params={"deleted_since": "2026-11-02T09:00:00Z"}).json()
    assert [r["id"] for r in earlier["$items"]] == [invoice["id"]]


# -- writes and validation -----------------------------------------------------------------------


def test_purchase_invoice_created_in_full(api: SageApi, sage: SageSimulator, refs: dict[str, str]) -> None:
    response = api.post("purchase_invoices", json=purchase_invoice(refs))
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["net_amount"], created["tax_amount"], created["total_amount"]) == (100.0, 20.0, 120.0)
    assert created["status"]["id"] == "UNPAID" and created["contact"]["id"] == refs["supplier"]
    assert api.get(f"purchase_invoices/{created['id']}").json()["id"] == created["id"]
    [entry] = sage.writes(kind="purchase_invoices")
    assert entry["org"] == sage.business(DEMO).id


def test_validation_reports_every_problem_in_sages_format(api: SageApi, refs: dict[str, str]) -> None:
    body = purchase_invoice(refs, contact_id=None, due_date=None,
                            line={"tax_amount": None, "ledger_account_id": refs["sales"], "total_amount": 99})
    response = api.post("purchase_invoices", json=body)
    assert response.status_code == 422
    first = response.json()[0]
    assert set(first) == {"$severity", "$dataCode", "$message", "$source"}
    assert first["$dataCode"] == "RecordInvalid"
    assert sources(response) >= {"contact_id", "due_date", "invoice_lines.tax_amount",
                                 "invoice_lines.ledger_account_id"}


@pytest.mark.parametrize(("change", "source"), [
    ({"line": {"tax_rate_id": None}}, "invoice_lines.tax_rate_id"),
    ({"line": {"tax_rate_id": "GB_MADE_UP"}}, "invoice_lines.tax_rate_id"),
    ({"line": {"net_amount": 90}}, "invoice_lines.net_amount"),
    ({"total_amount": 130}, "total_amount"),
    ({"contact_id": "f" * 32}, "contact_id"),
    ({"date": "2026-06-30"}, "date"),  # on the lockdown date
    ({"currency_id": "EUR"}, "currency_id"),
    ({"line": {"analysis_type_categories": [{"id": "nope"}]}}, "invoice_lines.analysis_type_categories"),
])
def test_purchase_invoice_rules(api: SageApi, refs: dict[str, str], change: dict[str, Any], source: str) -> None:
    assert source in sources(api.post("purchase_invoices", json=purchase_invoice(refs, **change)))


def test_zero_rated_lines_need_no_tax_amount_and_customers_are_not_suppliers(api: SageApi, refs: dict[str, str]) -> None:
    zero = purchase_invoice(refs, line={"tax_rate_id": "GB_ZERO", "tax_amount": None, "total_amount": 100})
    assert api.post("purchase_invoices", json=zero).status_code == 201
    assert "contact_id" in sources(api.post("purchase_invoices", json=purchase_invoice(refs,
                                                                                     contact_id=refs["customer"])))


def test_analysis_categories_on_lines(api: SageApi, sage: SageSimulator, refs: dict[str, str]) -> None:
    categories = sage.business(DEMO).resources["analysis_type_categories"].values()
    north = next(c["id"] for c in categories if c["name"] == "North")
    south = next(c["id"] for c in categories if c["name"] == "South")
    ok = api.post("purchase_invoices", json=purchase_invoice(refs, line={"analysis_type_categories": [{"id": north}]}))
    assert ok.json()["invoice_lines"][0]["analysis_type_categories"][0]["displayed_as"] == "North"
    two_of_a_type = purchase_invoice(refs, line={"analysis_type_categories": [{"id": north}, {"id": south}]})
    assert "invoice_lines.analysis_type_categories" in sources(api.post("purchase_invoices", json=two_of_a_type))


def test_quick_entry_sales_invoice_and_other_payment(api: SageApi, refs: dict[str, str]) -> None:
    quick = {"purchase_quick_entry": {"quick_entry_type_id": "INVOICE", "contact_id": refs["supplier"],
                                      "date": "2026-10-30", "reference": "QE-1", "ledger_account_id": refs["expense"],
                                      "net_amount": 50, "tax_rate_id": "GB_STANDARD", "tax_amount": 10,
                                      "total_amount": 60}}
    assert api.post("purchase_quick_entries", json=quick).json()["outstanding_amount"] == 60.0
    sale = {"sales_invoice": {"contact_id": refs["customer"], "date": "2026-10-30", "invoice_lines": [
        {"description": "Consultancy", "ledger_account_id": refs["sales"], "quantity": 2, "unit_price": 95,
         "tax_rate_id": "GB_STANDARD", "tax_amount": 38}]}}
    assert api.post("sales_invoices", json=sale).json()["total_amount"] == 228.0
    payment = {"other_payment": {"transaction_type_id": "OTHER_PAYMENT", "date": "2026-10-30",
                                 "bank_account_id": refs["bank"], "payment_method_id": "CREDIT_DEBIT",
                                 "total_amount": 120, "payment_lines": [
                                     {"ledger_account_id": refs["expense"], "tax_rate_id": "GB_STANDARD",
                                      "net_amount": 100, "tax_amount": 20, "total_amount": 120}]}}
    assert api.post("other_payments", json=payment).status_code == 201
    payment["other_payment"]["total_amount"] = 125
    payment["other_payment"].pop("bank_account_id")
    assert sources(api.post("other_payments", json=payment)) >= {"total_amount", "bank_account_id"}


def test_contact_payment_allocates_and_refuses_paying_twice(api: SageApi, sage: SageSimulator,
                                                            refs: dict[str, str]) -> None:
    invoice = api.post("purchase_invoices", json=purchase_invoice(refs)).json()

    def pay(total: float, amount: float) -> httpx.Response:
        return api.post("contact_payments", json={"contact_payment": {
            "transaction_type_id": "VENDOR_PAYMENT", "contact_id": refs["supplier"], "bank_account_id": refs["bank"],
            "date": "2026-11-01", "total_amount": total, "payment_method_id": "CREDIT_DEBIT", "reference": "Card 1234",
            "allocated_artefacts": [{"artefact_id": invoice["id"], "amount": amount}]}})

    assert "total_amount" in sources(pay(100, 120))  # allocation above the total
    assert pay(120, 120).status_code == 201
    paid = api.get(f"purchase_invoices/{invoice['id']}").json()
    assert (paid["status"]["id"], paid["outstanding_amount"]) == ("PAID", 0.0)
    twice = pay(120, 120)
    assert any(d["$message"] == "You can only pay unpaid or part-paid invoices." for d in twice.json())

    second = api.post("purchase_invoices", json=purchase_invoice(refs)).json()
    invoice = second
    assert pay(150, 120).json()["payment_on_account"]["total_amount"] == 30.0
    sage.set_subscription(DEMO, "START")
    invoice = api.post("purchase_invoices", json=purchase_invoice(refs)).json()
    assert "total_amount" in sources(pay(150, 120))  # no payments on account on Start


def test_contacts_need_unique_references(api: SageApi) -> None:
    body = {"contact": {"name": "Quayside Paper Co", "contact_type_ids": ["VENDOR"], "reference": "SUP-00001"}}
    assert "reference" in sources(api.post("contacts", json=body))
    assert sources(api.post("contacts", json={"contact": {"name": ""}})) == {"name", "contact_type_ids"}


def test_attachments_need_an_existing_context(api: SageApi, refs: dict[str, str]) -> None:
    invoice = api.post("purchase_invoices", json=purchase_invoice(refs)).json()
    attachment = {"file": base64.b64encode(b"%PDF-1.4 receipt").decode(), "file_name": "r.pdf",
                  "mime_type": "application/pdf", "attachment_context_type_id": "PURCHASE_INVOICE",
                  "attachment_context_id": invoice["id"]}
    created = api.post("attachments", json={"attachment": attachment})
    assert created.status_code == 201 and created.json()["file_size"] == 16
    listed = api.get("attachments", params={"attachment_context_type_id": "PURCHASE_INVOICE",
                                            "attachment_context_id": invoice["id"]}).json()
    assert [a["id"] for a in listed["$items"]] == [created.json()["id"]]
    assert api.get(f"attachments/{created.json()['id']}/file").content == b"%PDF-1.4 receipt"
    missing = {**attachment, "attachment_context_id": "0" * 32}
    assert "attachment_context_id" in sources(api.post("attachments", json={"attachment": missing}))
    assert "file" in sources(api.post("attachments", json={"attachment": {**attachment, "file": "%%%"}}))


# -- idempotency, permissions, limits, faults ----------------------------------------------------


def test_idempotency_id_replays_the_first_result(api: SageApi, sage: SageSimulator, refs: dict[str, str]) -> None:
    body = purchase_invoice(refs, idempotency_id="6f1c2d9e0a7b4c3d8e9f001122334455")
    first, again = api.post("purchase_invoices", json=body), api.post("purchase_invoices", json=body)
    assert first.json()["id"] == again.json()["id"] and again.status_code == 201
    assert len(sage.writes(kind="purchase_invoices")) == 1
    other = purchase_invoice(refs, idempotency_id="6f1c2d9e0a7b4c3d8e9f001122334455", reference="other")
    assert sources(api.post("purchase_invoices", json=other)) == {"idempotency_id"}
    sage.update_settings(idempotency_mismatch_is_error=False)  # then any body replays the first result
    lenient_first = api.post("purchase_invoices", json=purchase_invoice(refs, idempotency_id="b" * 32)).json()
    lenient_other = purchase_invoice(refs, idempotency_id="b" * 32, reference="other")
    assert api.post("purchase_invoices", json=lenient_other).json()["id"] == lenient_first["id"]
    bad = purchase_invoice(refs, idempotency_id="6f1c2d9e-0a7b-4c3d-8e9f-001122334455")
    assert sources(api.post("purchase_invoices", json=bad)) == {"idempotency_id"}


def test_lost_response_then_retry_with_the_same_idempotency_id(api: SageApi, sage: SageSimulator,
                                                              refs: dict[str, str]) -> None:
    sage.inject_fault("lost_response", "/v3.1/purchase_invoices", method="POST")
    body = purchase_invoice(refs, idempotency_id="a" * 32)
    with pytest.raises(httpx.ReadTimeout):
        api.post("purchase_invoices", json=body)
    retry = api.post("purchase_invoices", json=body)
    assert retry.json()["id"] == sage.writes(kind="purchase_invoices")[0]["id"]
    assert len(sage.writes(kind="purchase_invoices")) == 1


def test_readonly_tokens_may_not_write(sage: SageSimulator, http: httpx.Client, refs: dict[str, str]) -> None:
    readonly = SageApi(http, sage.mint_tokens(scope="readonly")["access_token"])
    assert readonly.get("contacts").status_code == 200
    refused = readonly.post("purchase_invoices", json=purchase_invoice(refs))
    assert (refused.status_code, refused.json()[0]["$dataCode"]) == (403, "MultiUserAccessDenied")


def test_rate_limits_per_business_answer_429(api: SageApi, sage: SageSimulator) -> None:
    sage.update_settings(minute_limit=2)
    assert [api.get("tax_rates").status_code for _ in range(3)] == [200, 200, 429]
    limited = api.get("tax_rates")
    assert limited.json()[0]["$dataCode"] == "TooManyRequests" and "Retry-After" not in limited.headers
    other = SageApi(api.http, api.access_token, sage.business("Harbour & Finch Joinery Ltd").id)
    assert other.get("tax_rates").status_code == 200  # counted per business
    sage.update_settings(retry_after_seconds=20)
    assert api.get("tax_rates").headers["Retry-After"] == "20"
    sage.advance_clock(60)
    assert api.get("tax_rates").status_code == 200
    sage.update_settings(day_limit=3)
    assert api.get("tax_rates").status_code == 429  # the daily cap counts the whole day


@pytest.mark.parametrize(("kind", "status", "code"), [("429", 429, "TooManyRequests"),
                                                       ("500", 500, "UnexpectedError"),
                                                       ("503", 503, "ServiceUnavailable")])
def test_injected_faults_in_sages_format(api: SageApi, sage: SageSimulator, kind: str, status: int,
                                         code: str) -> None:
    sage.inject_fault(kind, "/v3.1/contacts", method="GET")
    response = api.get("contacts")
    assert (response.status_code, response.json()[0]["$dataCode"]) == (status, code)
    assert api.get("contacts").status_code == 200


def test_timeout_and_revoke_faults(api: SageApi, sage: SageSimulator, refs: dict[str, str]) -> None:
    sage.inject_fault("timeout", "/v3.1/purchase_invoices")
    with pytest.raises(httpx.ReadTimeout):
        api.post("purchase_invoices", json=purchase_invoice(refs))
    assert sage.writes() == []
    sage.inject_fault("revoke", "/v3.1/*")
    assert api.get("contacts").status_code == 401


def test_large_preset_maps_into_sage_shapes(clock: SimClock) -> None:
    big = SageSimulator(clock, preset="large")
    with httpx.Client(transport=big.transport(), base_url=SAGE_URL) as http:
        api = SageApi(http, big.mint_tokens()["access_token"])
        assert api.get("contacts").json()["$total"] > 9000
        last = api.get("contacts", params={"items_per_page": 200, "page": 1000}).json()
        assert last["$next"] is None and last["$page"] == math.ceil(last["$total"] / 200)
        assert api.get("ledger_accounts").json()["$total"] == 500
        assert api.get("products").json()["$total"] + api.get("services").json()["$total"] == 1000


def test_bank_transactions_are_the_unreconciled_lines_of_each_bank_account(api: SageApi, sage: SageSimulator,
                                                                         refs: dict[str, str]) -> None:
    lines = api.all_pages("bank_transactions", bank_account_id=refs["bank"], attributes="all")
    assert len(lines) == 5
    assert all(not line["is_reconciled"] and line["transaction_type"]["id"] == "MONEY_OUT" for line in lines)
    assert all(line["bank_account"]["id"] == refs["bank"] and line["total_amount"] > 0 for line in lines)
    added = sage.add_bank_line(DEMO, refs["bank"], date(2026, 10, 30), "224.82")
    window = api.all_pages("bank_transactions", bank_account_id=refs["bank"], from_date="2026-10-30",
                           to_date="2026-10-30", attributes="all")
    assert added in {line["id"] for line in window}
    assert sage.writes(kind="bank_transactions") == []
    assert api.post("bank_transactions", json={"bank_transaction": {}}).status_code == 405
