"""Xero's formats: MS-JSON dates, JWT claims, its error envelopes mapped to our errors, and the
bodies we send (bills in batches, Spend Money, classic claims, payments) through an httpx
MockTransport standing in for the API."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from ledgerlink.errors import AuthRevoked, NotFound, Rejected
from ledgerlink.models.common import ItemType, ListType, ProviderName
from ledgerlink.models.publishing import PlannedLine, PublishPlan, PublishResult, Resolved, ValueSource
from ledgerlink.models.tokens import AppCredentials
from ledgerlink.providers.base import Attachment, BankLine, LedgerSession
from ledgerlink.providers.xero import XeroAdapter, batch_key, parse_xero_datetime


def adapter() -> XeroAdapter:
    return XeroAdapter(
        config=XeroAdapter.default_config,
        credentials=AppCredentials(client_id="id", client_secret="secret"),
        clock=type("C", (), {"now": staticmethod(lambda: datetime(2026, 1, 1, tzinfo=UTC))})(),
        sleep=lambda _s: None,
        http_transport=httpx.MockTransport(lambda request: httpx.Response(500)),
    )


def test_ms_json_and_iso_dates():
    assert parse_xero_datetime("/Date(1552262400000+0000)/") == datetime(2019, 3, 11, tzinfo=UTC)
    assert parse_xero_datetime("/Date(1552262400000)/") == datetime(2019, 3, 11, tzinfo=UTC)
    assert parse_xero_datetime("2019-03-11T00:00:00") == datetime(2019, 3, 11, tzinfo=UTC)
    assert parse_xero_datetime(None) is None


def test_authentication_event_is_read_from_the_access_token():
    claims = (
        base64.urlsafe_b64encode(json.dumps({"authentication_event_id": "evt-1"}).encode())
        .decode()
        .rstrip("=")
    )
    token = f"header.{claims}.signature"
    assert adapter().token_extras({"access_token": token}, {}) == {"authentication_event_id": "evt-1"}
    assert adapter().token_extras({"access_token": "opaque"}, {}) == {}


def test_validation_exception_becomes_rejected_with_every_message():
    body = {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred",
        "Elements": [
            {
                "ValidationErrors": [
                    {"Message": "Account code '999' is not a valid code"},
                    {"Message": "Contact missing"},
                ]
            }
        ],
    }
    error = adapter().map_error(httpx.Response(400, json=body))
    assert isinstance(error, Rejected)
    assert [e.message for e in error.field_errors] == [
        "Account code '999' is not a valid code",
        "Contact missing",
    ]
    assert "999" in error.message


def test_forbidden_tenant_means_reconnect_and_404_is_not_found():
    forbidden = {"Title": "Forbidden", "Status": 403, "Detail": "AuthenticationUnsuccessful"}
    assert isinstance(adapter().map_error(httpx.Response(403, json=forbidden)), AuthRevoked)
    assert isinstance(adapter().map_error(httpx.Response(404, text="not here")), NotFound)


# --- publishing: request bodies, batches, bank match --------------------------------------------------

KEY = "0123456789abcdef0123456789abcdef"
ID_FIELDS = {
    "Invoices": "InvoiceID",
    "BankTransactions": "BankTransactionID",
    "Receipts": "ReceiptID",
    "ExpenseClaims": "ExpenseClaimID",
    "Payments": "PaymentID",
    "Contacts": "ContactID",
}


class FakeXero:
    """Answers GETs from ``rows`` (collection -> rows, one page) and creates by echoing each element
    with an id (``collection-N``), or as an ERROR element for ``(collection, index)`` in ``refuse``."""

    def __init__(
        self,
        rows: dict[str, list[dict[str, Any]]] | None = None,
        refuse: frozenset[tuple[str, int]] = frozenset(),
        warn: frozenset[tuple[str, int]] = frozenset(),
    ):
        self.rows = rows or {}
        self.refuse = refuse
        self.warn = warn
        self.requests: list[httpx.Request] = []
        self.created: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if "/Attachments/" in request.url.path:
            return httpx.Response(200, json={"Attachments": [{"AttachmentID": "attachment-1"}]})
        collection = request.url.path.rsplit("/", 1)[-1]
        if request.method == "GET":
            rows = self.rows.get(collection, [])
            return httpx.Response(200, json={collection: rows, "pagination": {"page": 1, "pageCount": 1}})
        answered = []
        for index, element in enumerate(json.loads(request.content)[collection]):
            if (collection, index) in self.refuse:
                answered.append(
                    {
                        **element,
                        "HasErrors": True,
                        "StatusAttributeString": "ERROR",
                        "ValidationErrors": [{"Message": "Account code '99999' is not a valid code"}],
                    }
                )
                continue
            self.created[collection] = self.created.get(collection, 0) + 1
            made = {**element, ID_FIELDS[collection]: f"{collection.lower()}-{self.created[collection]}"}
            if (collection, index) in self.warn:
                made |= {"StatusAttributeString": "WARNING", "Warnings": [{"Message": "Rounding applied"}]}
            else:
                made["StatusAttributeString"] = "OK"
            answered.append(made)
        return httpx.Response(200, json={collection: answered})

    def sent(self, collection: str, method: str = "PUT") -> list[tuple[dict[str, Any], httpx.Request]]:
        return [
            (json.loads(r.content), r)
            for r in self.requests
            if r.method == method and r.url.path.endswith(f"/{collection}")
        ]

    def got(self, collection: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "GET" and r.url.path.endswith(f"/{collection}")]


def xero(fake: FakeXero) -> XeroAdapter:
    return XeroAdapter(
        config=XeroAdapter.default_config,
        credentials=AppCredentials(client_id="id", client_secret="secret"),
        clock=type("C", (), {"now": staticmethod(lambda: datetime(2026, 11, 2, tzinfo=UTC))})(),
        sleep=lambda _s: None,
        http_transport=httpx.MockTransport(fake),
    )


def session() -> LedgerSession:
    return LedgerSession("conn-1", "tenant-1", lambda _force: "access")


def resolved(remote_id: str | None = None, **fields: Any) -> Resolved:
    return Resolved(remote_id=remote_id, source=ValueSource.CAPTURED, **fields)


def plan(**overrides: Any) -> PublishPlan:
    line = PlannedLine(
        description="Printer paper",
        quantity=1,
        amount=Decimal("100.00"),
        tax_amount=Decimal("20.00"),
        category=resolved("acc-429", code="429", name="General Expenses"),
        tax_rate=resolved("INPUT2", code="INPUT2"),
    )
    values: dict[str, Any] = {
        "item_id": "cap-1",
        "revision": 1,
        "provider": ProviderName.XERO,
        "item_type": ItemType.COST,
        "destination": "bill_awaiting_payment",
        "contact": resolved("contact-1", name="Office Supplies Ltd"),
        "date": date(2026, 11, 2),
        "due_date": date(2026, 12, 2),
        "reference": "INV-4471",
        "currency": "GBP",
        "net": Decimal("100.00"),
        "tax": Decimal("20.00"),
        "gross": Decimal("120.00"),
        "lines": [line],
        "idempotency_key": KEY,
    }
    values.update(overrides)
    return PublishPlan(**values)


def keyed(n: int, **overrides: Any) -> PublishPlan:
    return plan(item_id=f"cap-{n}", reference=f"INV-{n}", idempotency_key=f"{n:032x}", **overrides)


def ms(day: date) -> str:
    return f"/Date({int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)}+0000)/"


def test_the_config_asks_for_classic_expenses():
    assert "accounting.classicexpenses" in XeroAdapter.default_config.scopes


def test_bills_go_in_one_put_answered_per_element_in_order():
    fake = FakeXero(refuse=frozenset({("Invoices", 1)}))
    plans = [keyed(1), keyed(2), keyed(3)]
    results = xero(fake).publish_batch(session(), plans)

    ((body, request),) = fake.sent("Invoices")
    assert request.url.params["summarizeErrors"] == "false"
    assert request.headers["Idempotency-Key"] == batch_key([p.idempotency_key for p in plans])
    assert request.headers["Idempotency-Key"].startswith("ledgerlink-batch-")
    assert len(request.headers["Idempotency-Key"]) <= 128
    elements = body["Invoices"]
    assert [e["InvoiceNumber"] for e in elements] == ["INV-1", "INV-2", "INV-3"]
    first = elements[0]
    assert (first["Type"], first["Status"], first["LineAmountTypes"]) == ("ACCPAY", "AUTHORISED", "Exclusive")
    assert first["Contact"] == {"ContactID": "contact-1"}
    assert first["Url"] == f"https://ledgerlink.app/items/cap-1?ledgerlink_key={1:032x}"
    assert first["LineItems"][0]["AccountCode"] == "429"
    assert isinstance(results[0], PublishResult) and results[0].remote_id == "invoices-1"
    assert isinstance(results[1], Rejected) and "99999" in results[1].message
    assert isinstance(results[2], PublishResult) and results[2].remote_id == "invoices-2"
    assert results[2].url == "https://go.xero.com/AccountsPayable/View.aspx?InvoiceID=invoices-2"


def test_the_batch_key_is_the_plans_key_for_one_plan_and_a_stable_digest_for_several():
    assert batch_key([KEY]) == KEY
    assert batch_key(["a", "b"]) == batch_key(["a", "b"]) != batch_key(["b", "a"])


def test_more_than_fifty_bills_take_two_calls_and_a_lone_one_keeps_its_own_key():
    fake = FakeXero()
    plans = [keyed(n) for n in range(1, 52)]
    results = xero(fake).publish_batch(session(), plans)
    sent = fake.sent("Invoices")
    assert [len(body["Invoices"]) for body, _ in sent] == [50, 1]
    assert sent[1][1].headers["Idempotency-Key"] == f"{51:032x}"
    assert all(isinstance(r, PublishResult) for r in results)


def test_xeros_warnings_reach_the_result():
    fake = FakeXero(warn=frozenset({("Invoices", 0)}))
    assert xero(fake).publish(session(), plan()).warnings == ["Rounding applied"]


def test_a_plan_that_may_exist_is_looked_up_by_the_key_in_its_url_and_not_sent_again():
    landed = {
        "InvoiceID": "inv-old",
        "Status": "AUTHORISED",
        "Url": f"https://ledgerlink.app/items/cap-2?ledgerlink_key={2:032x}",
    }
    fake = FakeXero({"Invoices": [landed, {**landed, "InvoiceID": "inv-voided", "Status": "VOIDED"}]})
    results = xero(fake).publish_batch(session(), [keyed(1, may_exist=True), keyed(2, may_exist=True)])

    (lookup,) = fake.got("Invoices")
    assert lookup.url.params["createdByMyApp"] == "true"
    assert lookup.url.params["ContactIDs"] == "contact-1"
    assert lookup.url.params["InvoiceNumbers"] == "INV-1,INV-2"
    assert lookup.url.params["where"] == "Date>=DateTime(2026, 11, 02) AND Date<=DateTime(2026, 11, 02)"
    ((body, _),) = fake.sent("Invoices")
    assert [e["InvoiceNumber"] for e in body["Invoices"]] == ["INV-1"]
    assert [r.remote_id for r in results if isinstance(r, PublishResult)] == ["invoices-1", "inv-old"]


def test_spend_money_is_a_spend_bank_transaction_from_the_paid_account():
    fake = FakeXero()
    paid = plan(destination="spend_money", bank_account=resolved("bank-1"), paid_on=date(2026, 11, 3))
    result = xero(fake).publish(session(), paid)
    ((body, request),) = fake.sent("BankTransactions")
    (element,) = body["BankTransactions"]
    assert request.headers["Idempotency-Key"] == KEY
    assert (element["Type"], element["BankAccount"], element["Date"]) == (
        "SPEND",
        {"AccountID": "bank-1"},
        "2026-11-03",
    )
    assert element["Reference"] == "INV-4471"
    assert element["Url"].endswith(f"ledgerlink_key={KEY}")
    assert element["LineItems"][0]["TaxType"] == "INPUT2"
    assert result.url == "https://go.xero.com/Bank/ViewTransaction.aspx?bankTransactionID=banktransactions-1"
    xero(fake).attach(session(), paid, result, Attachment("r.pdf", "application/pdf", b"%PDF"))
    assert fake.requests[-1].url.path == "/api.xro/2.0/BankTransactions/banktransactions-1/Attachments/r.pdf"


def test_spend_money_without_a_bank_account_is_refused_before_any_call():
    fake = FakeXero()
    with pytest.raises(Rejected) as refused:
        xero(fake).publish(session(), plan(destination="spend_money"))
    assert refused.value.field_errors[0].field == "paid.bank_account"
    assert fake.requests == []


def test_with_bank_match_a_bill_is_approved_and_spend_money_becomes_a_bill():
    fake = FakeXero()
    draft = xero(fake).publish(session(), plan(destination="bill_draft", bank_match=True))
    spend = xero(fake).publish(
        session(), plan(destination="spend_money", bank_match=True, bank_account=resolved("bank-1"))
    )
    statuses = [body["Invoices"][0]["Status"] for body, _ in fake.sent("Invoices")]
    assert statuses == ["AUTHORISED", "AUTHORISED"]
    assert fake.sent("BankTransactions") == []
    assert "Awaiting Payment" in draft.warnings[0]
    assert "not as Spend Money" in spend.warnings[0]


def test_a_classic_expense_claim_is_a_draft_receipt_then_a_submitted_claim():
    fake = FakeXero(
        {
            "Users": [
                {"UserID": "user-alex", "FirstName": "Alex", "LastName": "Morgan"},
                {"UserID": "user-priya", "FirstName": "Priya", "LastName": "Shah"},
            ],
            "Contacts": [{"ContactID": "contact-priya", "Name": "Priya Shah", "ContactStatus": "ACTIVE"}],
        }
    )
    claim = plan(
        item_type=ItemType.EXPENSE_CLAIM,
        destination="classic_expense_claim",
        contact=resolved(None, name="Priya Shah"),
    )
    result = xero(fake).publish(session(), claim)

    ((receipt_body, receipt_request),) = fake.sent("Receipts")
    (receipt,) = receipt_body["Receipts"]
    assert receipt_request.headers["Idempotency-Key"] == f"{KEY}-receipt"
    assert (receipt["User"], receipt["Contact"], receipt["Status"]) == (
        {"UserID": "user-priya"},
        {"ContactID": "contact-priya"},
        "DRAFT",
    )
    assert receipt["Reference"] == "INV-4471"
    ((claim_body, claim_request),) = fake.sent("ExpenseClaims")
    assert claim_request.headers["Idempotency-Key"] == f"{KEY}-claim"
    assert claim_body["ExpenseClaims"] == [
        {"Status": "SUBMITTED", "User": {"UserID": "user-priya"}, "Receipts": [{"ReceiptID": "receipts-1"}]}
    ]
    assert result.remote_id == "receipts-1"  # what the document is attached to
    xero(fake).attach(session(), claim, result, Attachment("r.pdf", "application/pdf", b"%PDF"))
    assert fake.requests[-1].url.path.startswith("/api.xro/2.0/Receipts/receipts-1/Attachments/")


def test_a_claimant_who_is_not_a_xero_user_is_refused_with_the_way_out():
    fake = FakeXero({"Users": [{"UserID": "user-alex", "FirstName": "Alex", "LastName": "Morgan"}]})
    claim = plan(
        item_type=ItemType.EXPENSE_CLAIM,
        destination="classic_expense_claim",
        contact=resolved(None, name="Tom Fletcher"),
    )
    with pytest.raises(Rejected) as refused:
        xero(fake).publish(session(), claim)
    assert "bill_to_employee" in refused.value.message
    assert fake.sent("Receipts") == []


def test_a_bill_to_an_employee_goes_to_a_contact_made_once_for_the_claimant():
    fake = FakeXero()
    claim = plan(
        item_type=ItemType.EXPENSE_CLAIM,
        destination="bill_to_employee",
        contact=resolved(None, name="Tom Fletcher"),
    )
    xero(fake).publish(session(), claim)
    ((contact_body, contact_request),) = fake.sent("Contacts")
    assert contact_body == {"Contacts": [{"Name": "Tom Fletcher"}]}
    assert contact_request.headers["Idempotency-Key"] == f"{KEY}-claimant"
    ((body, _),) = fake.sent("Invoices")
    (bill,) = body["Invoices"]
    assert (bill["Type"], bill["Status"], bill["Contact"]) == (
        "ACCPAY",
        "AUTHORISED",
        {"ContactID": "contacts-1"},
    )


def test_the_bank_line_is_the_oldest_unreconciled_one_of_the_amount_not_yet_paired():
    def line(line_id: str, day: date, total: float) -> dict[str, Any]:
        return {"BankTransactionID": line_id, "Date": ms(day), "Total": total, "Reference": "CARD PAYMENT"}

    fake = FakeXero(
        {
            "BankTransactions": [
                line("late", date(2026, 10, 30), 224.82),
                line("paired", date(2026, 10, 28), 224.82),
                line("other-amount", date(2026, 10, 27), 99.0),
            ],
            "Payments": [{"PaymentID": "p-1", "Date": ms(date(2026, 10, 28)), "Amount": 224.82}],
        }
    )
    found = xero(fake).find_bank_line(
        session(),
        bank_account_remote_id="bank-1",
        amount=Decimal("224.82"),
        earliest=date(2026, 10, 3),
        latest=date(2026, 12, 12),
    )
    assert found == BankLine("late", date(2026, 10, 30), Decimal("224.82"), "CARD PAYMENT")
    (lines,) = fake.got("BankTransactions")
    assert lines.url.params["where"] == (
        'BankAccount.AccountID==Guid("bank-1") AND Type=="SPEND" AND Status=="AUTHORISED" '
        "AND IsReconciled==false AND Date>=DateTime(2026, 10, 03) AND Date<=DateTime(2026, 12, 12)"
    )
    (payments,) = fake.got("Payments")
    assert 'Account.AccountID==Guid("bank-1")' in payments.url.params["where"]


def test_no_line_of_the_amount_means_no_match_and_no_payment_lookup():
    fake = FakeXero({"BankTransactions": []})
    window = {"earliest": date(2026, 10, 3), "latest": date(2026, 12, 12)}
    assert (
        xero(fake).find_bank_line(session(), bank_account_remote_id="b", amount=Decimal("1"), **window)
        is None
    )
    assert fake.got("Payments") == []


def test_the_payment_pays_the_bill_from_the_bank_account_on_the_lines_date():
    fake = FakeXero()
    payment_id = xero(fake).record_payment(
        session(),
        plan(bank_match=True),
        PublishResult(remote_id="inv-1"),
        bank_account_remote_id="bank-1",
        paid_on=date(2026, 10, 30),
        amount=Decimal("120.00"),
        key=f"{KEY}-payment",
    )
    assert payment_id == "payments-1"
    ((body, request),) = fake.sent("Payments")
    assert request.headers["Idempotency-Key"] == f"{KEY}-payment"
    assert body["Payments"] == [
        {
            "Invoice": {"InvoiceID": "inv-1"},
            "Account": {"AccountID": "bank-1"},
            "Date": "2026-10-30",
            "Amount": 120.0,
            "Reference": "INV-4471",
        }
    ]


def test_a_refused_payment_that_already_landed_answers_with_it_and_any_other_refusal_stands():
    ours = {
        "PaymentID": "p-old",
        "Date": ms(date(2026, 10, 30)),
        "Amount": 120.0,
        "Account": {"AccountID": "bank-1"},
    }
    arguments: dict[str, Any] = {
        "bank_account_remote_id": "bank-1",
        "paid_on": date(2026, 10, 30),
        "amount": Decimal("120.00"),
        "key": "k",
    }
    paid = FakeXero({"Payments": [ours]}, refuse=frozenset({("Payments", 0)}))
    assert (
        xero(paid).record_payment(session(), plan(), PublishResult(remote_id="inv-1"), **arguments) == "p-old"
    )
    (lookup,) = paid.got("Payments")
    assert lookup.url.params["where"] == 'Invoice.InvoiceID==Guid("inv-1") AND Status=="AUTHORISED"'
    unpaid = FakeXero({"Payments": []}, refuse=frozenset({("Payments", 0)}))
    with pytest.raises(Rejected):
        xero(unpaid).record_payment(session(), plan(), PublishResult(remote_id="inv-1"), **arguments)


# --- Projects API projects ---------------------------------------------------------------------------


def _projects_list(granted: str | None, projects_answer: httpx.Response) -> tuple[list[Any], list[str]]:
    """The projects list fetched for a connection granted ``granted``, with the Projects API
    answering ``projects_answer``; returns the records and the paths called."""
    called: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        called.append(request.url.path)
        if request.url.path.endswith("/TrackingCategories"):
            category = {"TrackingCategoryID": "tc-1", "Name": "Region", "Status": "ACTIVE"}
            options = [{"TrackingOptionID": "to-1", "Name": "North", "Status": "ACTIVE"}]
            return httpx.Response(200, json={"TrackingCategories": [{**category, "Options": options}]})
        return projects_answer

    xero = adapter()
    xero._http = httpx.Client(transport=httpx.MockTransport(answer))
    session = LedgerSession("conn-1", "tenant-1", lambda _force: "token", granted_scope=lambda: granted)
    fetched = xero.fetch_list(session, ListType.PROJECTS, since=None)
    assert fetched.calls == len(called)
    return fetched.records, called


def test_projects_api_projects_are_read_in_progress_and_closed_outside_the_two_dimensions():
    page = {
        "pagination": {"page": 1, "pageSize": 500, "pageCount": 1, "itemCount": 2},
        "items": [
            {"projectId": "p-1", "name": "Office refit", "status": "INPROGRESS", "currencyCode": "GBP"},
            {"projectId": "p-2", "name": "Old job", "status": "CLOSED", "currencyCode": "GBP"},
        ],
    }
    records, called = _projects_list("openid projects.read", httpx.Response(200, json=page))
    assert called == ["/api.xro/2.0/TrackingCategories", "/projects.xro/2.0/Projects"]
    by_remote = {r.remote_id: r for r in records}
    assert (by_remote["to-1"].dimension, by_remote["to-1"].codes_lines) == (1, True)
    assert [
        (by_remote[p].status.value, by_remote[p].dimension, by_remote[p].codes_lines) for p in ("p-1", "p-2")
    ] == [
        ("active", None, False),
        ("archived", None, False),
    ]


def test_a_grant_without_the_projects_scope_makes_no_projects_call():
    records, called = _projects_list("openid accounting.settings", httpx.Response(500))
    assert called == ["/api.xro/2.0/TrackingCategories"]
    assert [r.remote_id for r in records] == ["to-1"]


def test_projects_refused_for_the_organisation_means_none_and_other_refusals_still_fail():
    forbidden = {"Title": "Forbidden", "Status": 403, "Detail": "Projects is not enabled"}
    records, _called = _projects_list("projects.read", httpx.Response(403, json=forbidden))
    assert [r.remote_id for r in records] == ["to-1"]
    with pytest.raises(Rejected):
        _projects_list("projects.read", httpx.Response(400, json={"message": "bad page"}))
