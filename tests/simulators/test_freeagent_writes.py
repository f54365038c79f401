"""FreeAgent writes: bills (validation, "Auto" tax, attachments), invoices, expenses (single,
batch, sign rules), contacts, bank transaction explanations, no idempotency, and faults."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from freeagent_sim_helpers import PDF, FreeAgentApi, bill, http_client, messages, new_simulator

from sandbox.simulators.freeagent import FreeAgentSimulator
from sandbox.simulators.harness import SimClock


@pytest.fixture
def sim(clock: SimClock) -> FreeAgentSimulator:
    return new_simulator(clock)


@pytest.fixture
def api(sim: FreeAgentSimulator) -> Iterator[FreeAgentApi]:
    with http_client(sim) as http:
        yield FreeAgentApi(http, sim.mint_tokens()["access_token"])


@pytest.fixture
def supplier(api: FreeAgentApi) -> str:
    return api.get("contacts", params={"view": "suppliers"}).json()["contacts"][0]["url"]


def created(response: httpx.Response, root: str) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body = response.json()[root]
    assert response.headers["Location"] == body["url"]
    return body


def test_create_bill(api: FreeAgentApi, sim: FreeAgentSimulator, supplier: str) -> None:
    body = bill(api, supplier, attachment={"data": PDF, "file_name": "r.pdf", "content_type": "application/x-pdf",
                                           "description": "receipt"})
    new_bill = created(api.post("bills", json=body), "bill")
    assert new_bill["url"].startswith(api.url("bills/"))
    assert (new_bill["total_value"], new_bill["net_value"], new_bill["sales_tax_value"]) == ("120.0", "100.0", "-20.0")
    assert (new_bill["status"], new_bill["due_value"], new_bill["currency"]) == ("Open", "120.0", "GBP")
    [item] = new_bill["bill_items"]
    assert (item["sales_tax_rate"], item["sales_tax_status"], item["total_value_ex_tax"]) == ("20.0", "TAXABLE",
                                                                                               "100.0")
    attachment = new_bill["attachment"]
    assert (attachment["file_name"], attachment["file_size"]) == ("r.pdf", len(base64.b64decode(PDF)))
    assert api.http.get(attachment["content_src"]).content == base64.b64decode(PDF)

    [write] = sim.writes(kind="Bill")
    assert (write["id"], write["action"]) == (new_bill["url"], "create")
    fetched = api.get(new_bill["url"]).json()["bill"]
    assert fetched["bill_items"][0]["url"] == item["url"]
    listed = api.get("bills").json()["bills"]
    assert [b["url"] for b in listed] == [new_bill["url"]] and "bill_items" not in listed[0]
    assert "bill_items" in api.get("bills", params={"nested_bill_items": "true"}).json()["bills"][0]


@pytest.mark.parametrize(("item", "expected"), [
    ({"category": "categories/445"}, ("5.0", "TAXABLE", "-5.71")),  # Light, Power, Heating: reduced
    ({"category": "categories/433"}, ("0.0", "EXEMPT", "0.0")),  # Insurance: exempt
    ({"category": "categories/477"}, ("0.0", "OUT_OF_SCOPE", "0.0")),  # Salaries: outside the scope
    ({"category": "categories/461", "sales_tax_rate": "Auto"}, ("20.0", "TAXABLE", "-20.0")),
    ({"category": "categories/461", "sales_tax_rate": "0.0"}, ("0.0", "TAXABLE", "0.0")),
    ({"category": "categories/461", "sales_tax_status": "OUT_OF_SCOPE"}, ("0.0", "OUT_OF_SCOPE", "0.0")),
])
def test_auto_tax_resolves_from_the_category(api: FreeAgentApi, supplier: str, item: dict[str, str],
                                             expected: tuple[str, str, str]) -> None:
    item = {**item, "category": api.url(item["category"])}
    [line] = created(api.post("bills", json=bill(api, supplier, item=item)), "bill")["bill_items"]
    assert (line["sales_tax_rate"], line["sales_tax_status"], line["sales_tax_value"]) == expected


def test_bill_from_an_amount_without_tax(api: FreeAgentApi, supplier: str) -> None:
    item = {"total_value": None, "total_value_ex_tax": "50.00"}
    new_bill = created(api.post("bills", json=bill(api, supplier, item=item)), "bill")
    assert (new_bill["total_value"], new_bill["net_value"]) == ("60.0", "50.0")


def test_bill_validation_messages(api: FreeAgentApi, sim: FreeAgentSimulator, supplier: str) -> None:
    assert messages(api.post("bills", json={"bill": {"bill_items": []}})) == [
        "Contact can't be blank", "Reference can't be blank", "Dated on can't be blank", "Due on can't be blank",
        "Bill items can't be blank"]
    too_many = bill(api, supplier)
    too_many["bill"]["bill_items"] *= 41
    assert messages(api.post("bills", json=too_many)) == ["Bill items is too long (maximum is 40 items)"]

    cases: list[tuple[dict[str, Any], str]] = [
        ({"category": "461"}, "Bill item 1: Category must be the URL of a category from this API (got '461')"),
        ({"category": "https://api.example/v2/categories/461"},
         "Bill item 1: Category must be the URL of a category from this API"),
        ({"category": api.url("categories/999")}, "Bill item 1: Category http://freeagent.sandbox.test/v2/categories"
                                                  "/999 does not exist"),
        ({"category": api.url("categories/200")}, "Bill item 1: Category 200 (Sales) is an income category"),
        ({"sales_tax_rate": "17.5"}, "Bill item 1: Sales tax rate 17.5 is not one of the company's rates"),
        ({"total_value": "lots"}, "Bill item 1: Total value is not a number"),
        ({"total_value": None}, "Bill item 1: Total value can't be blank"),
        ({"total_value_ex_tax": "10.00"}, "Bill item 1: Give either total_value or total_value_ex_tax, not both"),
    ]
    for item, expected in cases:
        [message] = messages(api.post("bills", json=bill(api, supplier, item=item)))
        assert message.startswith(expected), message
    unknown_contact = messages(api.post("bills", json=bill(api, api.url("contacts/99999"))))
    assert unknown_contact == ["Contact http://freeagent.sandbox.test/v2/contacts/99999 does not exist"]
    assert sim.writes() == []


def test_attachment_rules(api: FreeAgentApi, sim: FreeAgentSimulator, supplier: str) -> None:
    def problems(attachment: dict[str, Any]) -> list[str]:
        return messages(api.post("bills", json=bill(api, supplier, attachment=attachment)))

    assert problems({"data": PDF, "file_name": "r.pdf", "content_type": "application/pdf"}) == [
        "Attachment content type application/pdf is not allowed; use one of image/png, image/x-png, image/jpeg, "
        "image/jpg, image/gif, application/x-pdf"]
    assert problems({"data": "not base64!", "file_name": "r.png", "content_type": "image/png"}) == [
        "Attachment data is not valid base64"]
    sim.update_settings(attachment_max_bytes=8)
    [too_big] = problems({"data": PDF, "file_name": "r.pdf", "content_type": "application/x-pdf"})
    assert too_big.startswith("Attachment is too large")


def test_legacy_single_category_bill_is_refused_by_default(api: FreeAgentApi, sim: FreeAgentSimulator,
                                                           supplier: str) -> None:
    legacy = {"bill": {"contact": supplier, "reference": "OLD-1", "dated_on": "2026-10-30", "due_on": "2026-11-29",
                       "category": api.url("categories/461"), "total_value": "12.00"}}
    [message] = messages(api.post("bills", json=legacy))
    assert message.startswith("Bill items can't be blank")
    sim.update_settings(accept_legacy_single_category_bills=True)
    assert len(created(api.post("bills", json=legacy), "bill")["bill_items"]) == 1


def test_array_error_format(api: FreeAgentApi, sim: FreeAgentSimulator) -> None:
    sim.update_settings(error_format="array")
    response = api.post("bills", json={"bill": {"reference": "X"}})
    assert response.status_code == 422
    assert response.json()["errors"][0] == {"message": "Contact can't be blank"}
    assert api.get("bills/123").json() == {"errors": [{"message": "Resource not found"}]}


def test_no_idempotency_a_retry_duplicates(api: FreeAgentApi, sim: FreeAgentSimulator, supplier: str) -> None:
    body = bill(api, supplier)
    first, second = created(api.post("bills", json=body), "bill"), created(api.post("bills", json=body), "bill")
    assert first["url"] != second["url"]
    assert len(sim.writes(kind="Bill")) == 2


def test_lost_response_then_look_up_before_retrying(api: FreeAgentApi, sim: FreeAgentSimulator,
                                                    supplier: str, clock: SimClock) -> None:
    high_water = "2026-11-02T08:59:59Z"
    clock.advance(60)
    sim.inject_fault("lost_response", "/v2/bills", method="POST")
    with pytest.raises(httpx.ReadTimeout):
        api.post("bills", json=bill(api, supplier, reference="ITEM-7"))
    assert len(sim.writes(kind="Bill")) == 1  # applied although the client saw a timeout
    # A careful client looks its reference up before retrying (FreeAgent has no idempotency keys).
    recent = api.get("bills", params={"updated_since": high_water}).json()["bills"]
    assert [b["reference"] for b in recent] == ["ITEM-7"]
    sim.inject_fault("timeout", "/v2/bills", method="POST")
    with pytest.raises(httpx.ReadTimeout):
        api.post("bills", json=bill(api, supplier, reference="ITEM-8"))
    assert len(sim.writes(kind="Bill")) == 1  # a timeout applies nothing


def test_faults_use_freeagent_responses(api: FreeAgentApi, sim: FreeAgentSimulator) -> None:
    sim.inject_fault("429", "/v2/contacts", count=2, retry_after=7)
    limited = api.get("contacts")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert limited.headers["Content-Type"].startswith("text/plain")
    assert api.get("contacts").status_code == 429
    assert api.get("contacts").status_code == 200
    sim.inject_fault("500", "/v2/company")
    assert messages(api.get("company"), 500) == ["Sorry, something went wrong. Please try again later."]
    sim.inject_fault("503", "/v2/company")
    assert api.get("company").status_code == 503


def test_bill_views_and_filters(api: FreeAgentApi, supplier: str, clock: SimClock) -> None:
    overdue = created(api.post("bills", json=bill(api, supplier, due_on="2026-10-31", reference="OLD")), "bill")
    assert overdue["status"] == "Overdue" and overdue["long_status"] == "Overdue - overdue by 2 days"
    clock.advance(60)
    current = created(api.post("bills", json=bill(api, supplier, reference="NEW")), "bill")
    assert [b["reference"] for b in api.get("bills", params={"view": "overdue"}).json()["bills"]] == ["OLD"]
    assert [b["reference"] for b in api.get("bills", params={"view": "open"}).json()["bills"]] == ["NEW"]
    since = api.get("bills", params={"updated_since": overdue["updated_at"]}).json()["bills"]
    assert [b["url"] for b in since] == [current["url"]]
    assert len(api.get("bills", params={"contact": supplier}).json()["bills"]) == 2
    assert api.get("bills", params={"from_date": "2026-11-01"}).json()["bills"] == []


def test_sales_invoice(api: FreeAgentApi, sim: FreeAgentSimulator) -> None:
    client = api.get("contacts", params={"view": "clients"}).json()["contacts"][0]["url"]
    body = {"invoice": {"contact": client, "dated_on": "2026-11-02", "payment_terms_in_days": 30,
                        "invoice_items": [
                            {"item_type": "Hours", "description": "Consultancy", "price": "95.00", "quantity": "3"},
                            {"item_type": "Products", "description": "Guides", "price": "14.99", "quantity": "2",
                             "category": api.url("categories/205")}]}}
    invoice = created(api.post("invoices", json=body), "invoice")
    assert (invoice["reference"], invoice["due_on"], invoice["status"]) == ("001", "2026-12-02", "Draft")
    assert (invoice["net_value"], invoice["sales_tax_value"], invoice["total_value"]) == ("314.98", "57.0", "371.98")
    assert invoice["invoice_items"][1]["sales_tax_rate"] == "0.0"  # zero-rated category
    body["invoice"]["reference"] = "001"
    assert messages(api.post("invoices", json=body)) == ["Reference has already been taken"]
    bad = {"invoice": {"contact": client, "dated_on": "2026-11-02",
                       "invoice_items": [{"item_type": "Widgets", "price": "1", "category": api.url("categories/461")}]}}
    assert messages(api.post("invoices", json=bad)) == [
        "Payment terms in days can't be blank",
        "Invoice item 1: Item type must be one of Hours, Days, Weeks, Months, Years, Products, Services, Training, "
        "Expenses, Comment, Bills, Discount, Credit, VAT, Stock, -no unit-",
        "Invoice item 1: Description can't be blank",
        "Invoice item 1: Category 461 (Printing & Stationery) is an expense category and cannot be used on a sale"]
    assert len(sim.writes(kind="Invoice")) == 1


def expense(api: FreeAgentApi, **overrides: Any) -> dict[str, Any]:
    return {"user": api.url("users/1"), "category": api.url("categories/493"), "dated_on": "2026-10-30",
            "gross_value": "-12.00", "description": "Taxi", "receipt_reference": "R-77", **overrides}


def test_expense_claims_and_sign_rules(api: FreeAgentApi) -> None:
    claim = created(api.post("expenses", json={"expense": expense(
        api, category=api.url("categories/429"), sales_tax_rate="20.0")}), "expense")
    # Negative: owed to the claimant; the tax carries the same sign.
    assert (claim["gross_value"], claim["sales_tax_value"], claim["native_gross_value"]) == ("-12.0", "-2.0", "-12.0")
    refund = created(api.post("expenses", json={"expense": expense(api, gross_value="5.00")}), "expense")
    assert refund["gross_value"] == "5.0"  # positive: a refund due from the claimant
    foreign = created(api.post("expenses", json={"expense": expense(
        api, currency="EUR", gross_value="-100.00", category=api.url("categories/429"), sales_tax_rate="20.0")}),
        "expense")
    assert (foreign["sales_tax_rate"], foreign["native_gross_value"]) == ("0.0", "-85.0")  # rate ignored

    assert messages(api.post("expenses", json={"expense": expense(api, gross_value="0")})) == [
        "Gross value can't be zero (negative: owed to the claimant; positive: refund from them)"]
    assert messages(api.post("expenses", json={"expense": {}})) == [
        "User can't be blank", "Category can't be blank", "Dated on can't be blank", "Description can't be blank",
        "Gross value can't be blank"]
    [income] = messages(api.post("expenses", json={"expense": expense(api, category=api.url("categories/200"))}))
    assert "income category" in income
    mileage = created(api.post("expenses", json={"expense": expense(
        api, category="Mileage", gross_value=None, mileage="10", vehicle_type="Car", reclaim_mileage=1)}), "expense")
    assert mileage["gross_value"] == "-4.5"


def test_expense_batch_is_partial_by_default(api: FreeAgentApi, sim: FreeAgentSimulator) -> None:
    batch = {"expenses": [expense(api), expense(api, description=""), expense(api, gross_value="-3.00")]}
    response = api.post("expenses", json=batch)
    assert messages(response) == ["Expense 2: Description can't be blank"]
    assert len(sim.writes(kind="Expense")) == 2  # the valid ones were created anyway

    sim.update_settings(expense_batch_mode="all_or_nothing")
    assert api.post("expenses", json=batch).status_code == 422
    assert len(sim.writes(kind="Expense")) == 2
    ok = api.post("expenses", json={"expenses": [expense(api), expense(api)]})
    assert ok.status_code == 201 and len(ok.json()["expenses"]) == 2


def test_expenses_for_other_users_need_a_higher_level(api: FreeAgentApi, sim: FreeAgentSimulator) -> None:
    created(api.post("expenses", json={"expense": expense(api, user=api.url("users/2"))}), "expense")
    sim.set_permission_level(2)  # My Money: own expenses only
    created(api.post("expenses", json={"expense": expense(api)}), "expense")
    [refused] = messages(api.post("expenses", json={"expense": expense(api, user=api.url("users/2"))}))
    assert "other users" in refused
    mine = api.get("expenses").json()["expenses"]
    assert [e["user"] for e in mine] == [api.url("users/1")]
    assert api.get("bills").status_code == 403


def test_create_contact(api: FreeAgentApi, sim: FreeAgentSimulator) -> None:
    contact = created(api.post("contacts", json={"contact": {"organisation_name": "New Supplier Ltd",
                                                             "email": "ap@new.example"}}), "contact")
    assert (contact["status"], contact["charge_sales_tax"], contact["default_payment_terms_in_days"]) == (
        "Active", "Auto", 30)
    assert api.get(contact["url"]).json()["contact"]["organisation_name"] == "New Supplier Ltd"
    assert messages(api.post("contacts", json={"contact": {"first_name": "Ann"}})) == [
        "First name and last name can't be blank unless an organisation name is given"]
    assert [w["kind"] for w in sim.writes()] == ["Contact"]


def test_paying_a_bill_by_explanation(api: FreeAgentApi, sim: FreeAgentSimulator, supplier: str) -> None:
    new_bill = created(api.post("bills", json=bill(api, supplier)), "bill")
    bank = api.url("bank_accounts/1")
    payment = {"bank_account": bank, "dated_on": "2026-11-02", "gross_value": "-120.00",
               "paid_bill": new_bill["url"], "description": "Pay SUP-INV-881"}
    too_much = {**payment, "gross_value": "-500.00"}
    assert messages(api.post("bank_transaction_explanations", json={"bank_transaction_explanation": too_much})) == [
        "Gross value -500.0 is more than the 120.0 due on the bill"]
    explanation = created(api.post("bank_transaction_explanations",
                                   json={"bank_transaction_explanation": payment}), "bank_transaction_explanation")
    assert (explanation["type"], explanation["is_money_out"]) == ("Bill Payment", True)
    paid = api.get(new_bill["url"]).json()["bill"]
    assert (paid["status"], paid["due_value"], paid["paid_on"]) == ("Paid", "0.0", "2026-11-02")
    assert api.get(bank).json()["bank_account"]["current_balance"] == "-120.0"
    listed = api.get("bank_transaction_explanations", params={"bank_account": bank}).json()
    assert [x["url"] for x in listed["bank_transaction_explanations"]] == [explanation["url"]]
    assert api.get("bank_transaction_explanations").status_code == 422  # bank_account is required

    spend = {"bank_account": bank, "dated_on": "2026-11-02", "gross_value": "-24.00",
             "category": api.url("categories/429"), "description": "Stamps"}
    spent = created(api.post("bank_transaction_explanations", json={"bank_transaction_explanation": spend}),
                    "bank_transaction_explanation")
    assert (spent["type"], spent["sales_tax_value"]) == ("Payment", "-4.0")
    sim.set_permission_level(5)
    assert api.post("bank_transaction_explanations",
                    json={"bank_transaction_explanation": spend}).status_code == 403
