"""Xero Accounting writes: bills and sales invoices, validation envelopes, summarizeErrors,
Idempotency-Key replay, payments, spend money, classic expense claims, attachments, projects."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from xero_sim_helpers import XeroApi, bill

from sandbox.simulators.xero import XeroSimulator

pytestmark = pytest.mark.integration


def created(response: Any, key: str = "Invoices") -> dict[str, Any]:
    assert response.status_code == 200, response.text
    [element] = response.json()[key]
    assert element["StatusAttributeString"] == "OK"
    return element


def validation_messages(response: Any) -> list[str]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["ErrorNumber"], body["Type"], body["Message"]) == (
        10, "ValidationException", "A validation exception occurred")
    return [m["Message"] for element in body["Elements"] for m in element["ValidationErrors"]]


def test_create_bill_computes_inclusive_totals(api: XeroApi, xero: XeroSimulator, supplier_id: str) -> None:
    invoice = created(api.put("Invoices", json={"Invoices": [bill(supplier_id, Url="https://app.example/doc/1")]}))
    assert (invoice["SubTotal"], invoice["TotalTax"], invoice["Total"], invoice["AmountDue"]) == (100, 20, 120, 120)
    assert invoice["Date"] == "/Date(1793318400000+0000)/"  # 2026-10-30, MS-JSON in responses
    assert invoice["LineItems"][0]["Tracking"][0]["Option"] == "North"
    assert invoice["Contact"]["ContactID"] == supplier_id
    [write] = xero.writes(kind="Invoice")
    assert (write["id"], write["action"], write["org"]) == (invoice["InvoiceID"], "create", api.tenant_id)
    fetched = api.get(f"Invoices/{invoice['InvoiceID']}").json()["Invoices"][0]
    assert fetched["Total"] == 120 and fetched["DateString"] == "2026-10-30T00:00:00"


def test_sales_invoice_gets_a_number_and_exclusive_tax(api: XeroApi, xero: XeroSimulator) -> None:
    customer = next(c for c in xero.orgs[api.tenant_id].contacts.values()
                    if c["IsCustomer"] and c["ContactStatus"] == "ACTIVE")
    invoice = created(api.put("Invoices", json={"Invoices": [{
        "Type": "ACCREC", "Contact": {"ContactID": customer["ContactID"]}, "Date": "2026-11-02",
        "DueDate": "2026-12-02", "Status": "AUTHORISED",
        "LineItems": [{"ItemCode": "CONSULT-HR", "Quantity": 3}, {"Description": "Guides", "Quantity": 2,
                                                                    "UnitAmount": 14.99, "AccountCode": "205",
                                                                    "TaxType": "ZERORATEDOUTPUT"}],
    }]}))
    assert invoice["InvoiceNumber"] == "INV-0001"
    assert invoice["LineItems"][0]["UnitAmount"] == 95 and invoice["LineItems"][0]["TaxType"] == "OUTPUT2"
    assert (invoice["SubTotal"], invoice["TotalTax"], invoice["Total"]) == (314.98, 57, 371.98)


@pytest.mark.parametrize(("change", "message"), [
    ({"line": {"AccountCode": "999"}}, "Account code '999' is not a valid code for this document."),
    ({"line": {"TaxType": "MADEUP"}}, "The TaxType code 'MADEUP' does not exist"),
    ({"line": {"TaxType": "OUTPUT2"}}, "The TaxType code 'OUTPUT2' cannot be used with account code '429'."),
    ({"line": {"AccountCode": "450"}}, "Account code '450' has been archived"),
    ({"line": {"AccountCode": "800"}}, "system account"),
    ({"Contact": {}}, "The Contact must contain at least 1 of the following elements to identify the contact: "
                      "Name, ContactID, ContactNumber"),
    ({"Contact": {"Name": "Nobody We Know Ltd"}}, "could not be found"),
    ({"line": {"Tracking": [{"Name": "Region", "Option": "Atlantis"}]}},
     "The tracking option 'Atlantis' is not valid for tracking category 'Region'."),
    ({"line": {"Tracking": [{"Name": "Department", "Option": "Events (closed)"}]}}, "has been archived"),
    ({"line": {"Tracking": [{"Name": "Region", "Option": "North"}, {"Name": "Department", "Option": "Sales"},
                            {"Name": "Region", "Option": "South"}]}}, "at most 2 tracking categories"),
    ({"Date": "2026-06-30"}, "on or before the period lock date, currently set to 30 Jun 2026"),
    ({"CurrencyCode": "USD"}, "Organisation is not subscribed to currency USD"),
    ({"line": {"DiscountRate": 10}}, "discounts are only supported on sales invoices"),
])
def test_validation_rules_reject_the_whole_batch(
        api: XeroApi, xero: XeroSimulator, supplier_id: str, change: dict[str, Any], message: str) -> None:
    good = bill(supplier_id, InvoiceNumber="OK-1")
    bad = bill(supplier_id, **change)
    messages = validation_messages(api.put("Invoices", json={"Invoices": [good, bad]}))
    assert any(message in m for m in messages), messages
    assert xero.writes(kind="Invoice") == []  # nothing of a failed batch is applied


def test_archived_contact_is_refused(api: XeroApi, xero: XeroSimulator) -> None:
    archived = next(c for c in xero.orgs[api.tenant_id].contacts.values() if c["ContactStatus"] == "ARCHIVED")
    messages = validation_messages(api.put("Invoices", json={"Invoices": [bill(archived["ContactID"])]}))
    assert "has been archived" in messages[0]


def test_contact_by_unknown_name_can_be_created_when_enabled(api: XeroApi, xero: XeroSimulator) -> None:
    xero.update_settings(create_contact_from_unknown_name=True)
    invoice = created(api.put("Invoices", json={"Invoices": [bill("", Contact={"Name": "Brand New Ltd"})]}))
    contact = xero.orgs[api.tenant_id].contacts[invoice["Contact"]["ContactID"]]
    assert contact["Name"] == "Brand New Ltd" and contact["IsSupplier"] is True


def test_accrec_invoice_numbers_must_be_unique(api: XeroApi, xero: XeroSimulator) -> None:
    customer = next(c["ContactID"] for c in xero.orgs[api.tenant_id].contacts.values()
                    if c["ContactStatus"] == "ACTIVE")

    def sale(number: str) -> dict[str, Any]:
        return {"Type": "ACCREC", "Contact": {"ContactID": customer}, "InvoiceNumber": number,
                "LineItems": [{"Description": "Work", "UnitAmount": 10, "AccountCode": "200"}]}

    created(api.put("Invoices", json={"Invoices": [sale("S-1")]}))
    assert validation_messages(api.put("Invoices", json={"Invoices": [sale("s-1")]})) == ["Invoice # must be unique."]
    same_batch = api.put("Invoices", json={"Invoices": [sale("S-2"), sale("S-2")]})
    assert validation_messages(same_batch) == ["Invoice # must be unique."]
    # Bills may repeat a supplier's reference.
    created(api.put("Invoices", json={"Invoices": [bill(customer, InvoiceNumber="S-1")]}))


def test_summarize_errors_false_gives_per_element_results(
        api: XeroApi, xero: XeroSimulator, supplier_id: str) -> None:
    batch = [bill(supplier_id, InvoiceNumber="A"), bill(supplier_id, line={"AccountCode": "999"}),
             bill(supplier_id, InvoiceNumber="C", Date="/Date(1793318400000+0000)/")]
    response = api.put("Invoices", params={"summarizeErrors": "false"}, json={"Invoices": batch})
    assert response.status_code == 200
    results = response.json()["Invoices"]
    assert [r["StatusAttributeString"] for r in results] == ["OK", "ERROR", "OK"]
    assert results[1]["ValidationErrors"] == [
        {"Message": "Account code '999' is not a valid code for this document."}]
    assert results[1]["Date"] == "/Date(1793318400000+0000)/"  # echoes carry MS dates too
    assert "InvoiceID" in results[0] and "InvoiceID" in results[2]
    assert len(xero.writes(kind="Invoice")) == 2


def test_too_many_elements_in_one_request(api: XeroApi, supplier_id: str) -> None:
    messages = validation_messages(api.put("Invoices", json={"Invoices": [bill(supplier_id)] * 51}))
    assert "at most 50" in messages[0]


def test_post_updates_and_put_only_creates(api: XeroApi, supplier_id: str) -> None:
    draft = created(api.put("Invoices", json={"Invoices": [bill(supplier_id, Status="DRAFT")]}))
    again = api.put("Invoices", json={"Invoices": [{**bill(supplier_id), "InvoiceID": draft["InvoiceID"]}]})
    assert "use POST" in validation_messages(again)[0]
    approved = created(api.post(f"Invoices/{draft['InvoiceID']}",
                                json={"Invoices": [{"Status": "AUTHORISED", "Reference": "PO-7"}]}))
    assert (approved["InvoiceID"], approved["Status"], approved["Total"]) == (draft["InvoiceID"], "AUTHORISED", 120)
    unknown = api.post("Invoices", json={"Invoices": [{"InvoiceID": "00000000-0000-0000-0000-000000000001"}]})
    assert "could not be found" in validation_messages(unknown)[0]


def test_invoices_list_paging_filters_and_if_modified_since(
        api: XeroApi, xero: XeroSimulator, supplier_id: str) -> None:
    first = created(api.put("Invoices", json={"Invoices": [bill(supplier_id, Status="DRAFT")]}))
    mark = xero.clock.now()
    xero.advance_clock(1)
    second = created(api.put("Invoices", json={"Invoices": [bill(supplier_id)]}))
    body = api.get("Invoices", params={"page": 1}).json()
    assert body["pagination"]["itemCount"] == 2 and len(body["Invoices"]) == 2
    drafts = api.get("Invoices", params={"Statuses": "DRAFT"}).json()["Invoices"]
    assert [i["InvoiceID"] for i in drafts] == [first["InvoiceID"]]
    newer = api.get("Invoices", headers={"If-Modified-Since": mark.isoformat()}).json()["Invoices"]
    assert [i["InvoiceID"] for i in newer] == [second["InvoiceID"]]
    summary = api.get("Invoices", params={"summaryOnly": "true"}).json()["Invoices"][0]
    assert "LineItems" not in summary
    assert "_CreatedByApp" not in summary
    assert len(api.get("Invoices", params={"createdByMyApp": "true"}).json()["Invoices"]) == 2


def test_idempotency_key_replays_and_rejects_a_different_body(
        api: XeroApi, xero: XeroSimulator, supplier_id: str) -> None:
    body = {"Invoices": [bill(supplier_id)]}
    key = {"Idempotency-Key": "item-42-rev-1"}
    first = created(api.put("Invoices", json=body, headers=key))
    replay = api.put("Invoices", json=body, headers=key)
    assert created(replay)["InvoiceID"] == first["InvoiceID"]
    assert replay.headers["X-Sandbox-Idempotent-Replay"] == "true"
    assert len(xero.writes(kind="Invoice")) == 1
    assert xero.writes(kind="Invoice")[0]["idempotency_key"] == "item-42-rev-1"

    different = api.put("Invoices", json={"Invoices": [bill(supplier_id, InvoiceNumber="OTHER")]}, headers=key)
    assert different.status_code == 400
    assert "different request" in different.json()["Detail"]

    xero.advance_clock(361)  # past the (unconfirmed) six-minute window: the key is forgotten
    api.access_token = xero.mint_tokens()["access_token"]
    assert created(api.put("Invoices", json=body, headers=key))["InvoiceID"] != first["InvoiceID"]
    assert api.put("Invoices", json=body, headers={"Idempotency-Key": "k" * 129}).status_code == 400


def test_idempotency_replays_a_stored_error(api: XeroApi, xero: XeroSimulator, supplier_id: str) -> None:
    body = {"Invoices": [bill(supplier_id, line={"AccountCode": "999"})]}
    key = {"Idempotency-Key": "bad-one"}
    assert api.put("Invoices", json=body, headers=key).status_code == 400
    # Even after the account appears, the same key and body get the stored error back.
    account = xero.orgs[api.tenant_id].account_by_code("429")
    assert account is not None
    account["Code"] = "999"
    replay = api.put("Invoices", json=body, headers=key)
    assert replay.status_code == 400 and replay.headers["X-Sandbox-Idempotent-Replay"] == "true"


def test_payments_against_bills(api: XeroApi, xero: XeroSimulator, supplier_id: str) -> None:
    invoice = created(api.put("Invoices", json={"Invoices": [bill(supplier_id)]}))
    draft = created(api.put("Invoices", json={"Invoices": [bill(supplier_id, Status="DRAFT")]}))

    def payment(amount: float, invoice_id: str = invoice["InvoiceID"], **account: str) -> dict[str, Any]:
        return {"Invoice": {"InvoiceID": invoice_id}, "Account": account or {"Code": "090"},
                "Date": "2026-11-02", "Amount": amount, "Reference": "Card 1234"}

    part = created(api.put("Payments", json={"Payments": [payment(20)]}), "Payments")
    assert (part["PaymentType"], part["Status"], part["Amount"]) == ("ACCPAYPAYMENT", "AUTHORISED", 20)
    assert api.get(f"Invoices/{invoice['InvoiceID']}").json()["Invoices"][0]["AmountDue"] == 100

    assert validation_messages(api.put("Payments", json={"Payments": [payment(100.01)]})) == [
        "Payment amount exceeds the amount outstanding on this document"]
    assert "AUTHORISED" in validation_messages(
        api.put("Payments", json={"Payments": [payment(5, draft["InvoiceID"])]}))[0]
    assert validation_messages(api.put("Payments", json={"Payments": [payment(5, Code="429")]})) == [
        "Account type is invalid for making a payment to/from"]
    # Two payments in one batch are checked against each other.
    assert "exceeds" in validation_messages(
        api.put("Payments", json={"Payments": [payment(60), payment(60)]}))[0]

    created(api.put("Payments", json={"Payments": [payment(100, Code="835")]}), "Payments")  # payments enabled
    paid = api.get(f"Invoices/{invoice['InvoiceID']}").json()["Invoices"][0]
    assert (paid["Status"], paid["AmountDue"], paid["AmountPaid"]) == ("PAID", 0, 120)
    assert len(paid["Payments"]) == 2
    assert api.get("Payments", params={"page": 1}).json()["pagination"]["itemCount"] == 2


def test_spend_money(api: XeroApi, xero: XeroSimulator, supplier_id: str) -> None:
    spend = {"Type": "SPEND", "Contact": {"ContactID": supplier_id}, "BankAccount": {"Code": "092"},
             "Date": "2026-11-01", "Reference": "Taxi", "LineAmountTypes": "Inclusive",
             "LineItems": [{"Description": "Taxi", "UnitAmount": 18, "AccountCode": "493"}]}
    transaction = created(api.put("BankTransactions", json={"BankTransactions": [spend]}), "BankTransactions")
    assert (transaction["Status"], transaction["Total"], transaction["LineItems"][0]["TaxType"]) == (
        "AUTHORISED", 18, "ZERORATEDINPUT")
    not_bank = api.put("BankTransactions", json={"BankTransactions": [{**spend, "BankAccount": {"Code": "429"}}]})
    assert "not a bank account" in validation_messages(not_bank)[0]
    listed = api.get("BankTransactions", params={"page": 1, "where": 'Reference=="Taxi"'}).json()["BankTransactions"]
    assert [t["BankTransactionID"] for t in listed] == [transaction["BankTransactionID"]]
    assert xero.writes(kind="BankTransaction")[0]["id"] == transaction["BankTransactionID"]


def test_seeded_bank_lines_are_unreconciled_spend_transactions_not_writes(api: XeroApi, xero: XeroSimulator) -> None:
    unreconciled = api.get("BankTransactions", params={
        "page": 1, "where": 'IsReconciled==false AND Type=="SPEND" AND BankAccount.Code=="090"'}).json()
    lines = unreconciled["BankTransactions"]
    assert len(lines) == 5
    assert {line["Status"] for line in lines} == {"AUTHORISED"}
    assert all(line["Total"] > 0 and line["Contact"]["ContactID"] for line in lines)
    assert xero.writes(kind="BankTransaction") == []
    org = xero.orgs[api.tenant_id]
    bank_id = next(a["AccountID"] for a in org.accounts.values() if a["Code"] == "090")
    added = xero.add_bank_line(api.tenant_id, bank_id, date(2026, 10, 30), "224.82")
    found = api.get("BankTransactions", params={"page": 1, "where": "Total==224.82"}).json()["BankTransactions"]
    assert [t["BankTransactionID"] for t in found] == [added]
    assert found[0]["IsReconciled"] is False


def test_classic_receipts_and_expense_claims(api: XeroApi, xero: XeroSimulator, supplier_id: str) -> None:
    org = xero.orgs[api.tenant_id]
    claimant = next(u for u in org.users.values() if u["FirstName"] == "Priya")
    receipt = {"Contact": {"ContactID": supplier_id}, "User": {"UserID": claimant["UserID"]}, "Date": "2026-11-01",
               "LineAmountTypes": "Inclusive",
               "LineItems": [{"Description": "Train", "UnitAmount": 42.5, "AccountCode": "493"}]}
    assert validation_messages(api.put("Receipts", json={"Receipts": [{**receipt, "User": {}}]})) == [
        "A valid user should be identified using the UserID."]
    stored = created(api.put("Receipts", json={"Receipts": [receipt]}), "Receipts")
    assert (stored["Status"], stored["Total"], stored["ReceiptNumber"]) == ("DRAFT", 42.5, "1")

    claim = created(api.put("ExpenseClaims", json={"ExpenseClaims": [{
        "Status": "SUBMITTED", "User": {"UserID": claimant["UserID"]},
        "Receipts": [{"ReceiptID": stored["ReceiptID"]}]}]}), "ExpenseClaims")
    assert (claim["Status"], claim["Total"], claim["AmountDue"]) == ("SUBMITTED", 42.5, 42.5)
    assert api.get(f"Receipts/{stored['ReceiptID']}").json()["Receipts"][0]["Status"] == "SUBMITTED"
    twice = api.put("ExpenseClaims", json={"ExpenseClaims": [{
        "User": {"UserID": claimant["UserID"]}, "Receipts": [{"ReceiptID": stored["ReceiptID"]}]}]})
    assert "already part of an expense claim" in validation_messages(twice)[0]


def test_attachments(api: XeroApi, xero: XeroSimulator, supplier_id: str) -> None:
    invoice = created(api.put("Invoices", json={"Invoices": [bill(supplier_id)]}))
    base = f"Invoices/{invoice['InvoiceID']}/Attachments"
    pdf = b"%PDF-1.7 receipt"
    uploaded = api.put(f"{base}/receipt.pdf", content=pdf, headers={"Content-Type": "application/pdf"})
    [attachment] = created_attachment(uploaded)
    assert (attachment["FileName"], attachment["MimeType"], attachment["ContentLength"]) == (
        "receipt.pdf", "application/pdf", len(pdf))
    assert attachment["Url"].endswith(f"/api.xro/2.0/Invoices/{invoice['InvoiceID']}/Attachments/receipt.pdf")
    download = api.get(f"{base}/receipt.pdf")
    assert (download.content, download.headers["Content-Type"]) == (pdf, "application/pdf")
    assert api.get(f"Invoices/{invoice['InvoiceID']}").json()["Invoices"][0]["HasAttachments"] is True

    # PUT of the same name adds a second file (a blind retry shows as a duplicate); POST replaces one.
    created_attachment(api.put(f"{base}/receipt.pdf", content=pdf, headers={"Content-Type": "application/pdf"}))
    assert len(api.get(base).json()["Attachments"]) == 2
    created_attachment(api.post(f"{base}/receipt.pdf", content=b"v2", headers={"Content-Type": "application/pdf"}))
    assert len(api.get(base).json()["Attachments"]) == 2
    assert len(xero.writes(kind="Attachment")) == 3

    bad_name = api.put(f"{base}/what%3F.pdf", content=pdf)
    assert "not allowed" in validation_messages(bad_name)[0]
    for number in range(8):
        created_attachment(api.put(f"{base}/page-{number}.png", content=b"png", headers={"Content-Type": "image/png"}))
    eleventh = api.put(f"{base}/one-too-many.png", content=b"png")
    assert "at most 10 attachments" in validation_messages(eleventh)[0]

    xero.update_settings(attachment_max_bytes=1024)
    other = created(api.put("Invoices", json={"Invoices": [bill(supplier_id)]}))
    too_big = api.put(f"Invoices/{other['InvoiceID']}/Attachments/scan.pdf", content=b"x" * 1025)
    assert too_big.status_code == 413
    missing = api.put("Invoices/00000000-0000-0000-0000-000000000000/Attachments/a.pdf", content=pdf)
    assert missing.status_code == 404


def created_attachment(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return response.json()["Attachments"]


def test_projects(api: XeroApi, xero: XeroSimulator) -> None:
    listed = api.get("/projects.xro/2.0/Projects").json()
    assert listed["pagination"] == {"page": 1, "pageSize": 50, "pageCount": 1, "itemCount": 5}
    assert {p["status"] for p in listed["items"]} == {"INPROGRESS", "CLOSED"}
    assert listed["items"][0]["deadlineUtc"].endswith("Z")
    in_progress = api.get("/projects.xro/2.0/Projects", params={"states": "INPROGRESS"}).json()
    assert in_progress["pagination"]["itemCount"] == 4
    assert api.get("/projects.xro/2.0/Projects", params={"pageSize": 501}).status_code == 400

    contact_id = listed["items"][0]["contactId"]
    new = api.post("/projects.xro/2.0/Projects", json={
        "contactId": contact_id, "name": "New Kitchen", "deadlineUtc": "2027-01-31T12:00:00Z",
        "estimateAmount": 2500})
    assert new.status_code == 201
    project = new.json()
    assert (project["name"], project["estimate"]["value"], project["status"]) == ("New Kitchen", 2500, "INPROGRESS")
    nameless = api.post("/projects.xro/2.0/Projects", json={"contactId": contact_id})
    assert nameless.status_code == 400 and nameless.json()["modelState"]["name"]

    assert api.request("PATCH", f"/projects.xro/2.0/Projects/{project['projectId']}",
                       json={"status": "CLOSED"}).status_code == 204
    assert api.get(f"/projects.xro/2.0/Projects/{project['projectId']}").json()["status"] == "CLOSED"
    assert [w["action"] for w in xero.writes(kind="Project")] == ["create", "update"]


def test_contacts_create_and_update(api: XeroApi, xero: XeroSimulator) -> None:
    contact = created(api.put("Contacts", json={"Contacts": [{"Name": "Orwell Van Hire Ltd",
                                                            "EmailAddress": "hire@orwell.example"}]}), "Contacts")
    duplicate = api.put("Contacts", json={"Contacts": [{"Name": "orwell van hire ltd"}]})
    assert "must be unique across all active contacts" in validation_messages(duplicate)[0]
    archived = created(api.post(f"Contacts/{contact['ContactID']}", json={"Contacts": [
        {"ContactStatus": "ARCHIVED"}]}), "Contacts")
    assert (archived["ContactStatus"], archived["EmailAddress"]) == ("ARCHIVED", "hire@orwell.example")
    assert [w["action"] for w in xero.writes(kind="Contact")] == ["create", "update"]
