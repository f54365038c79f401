"""Captured items become bills in Xero exactly once, with their documents, and every failure is
explained on the item."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from infra.api_routes import FunctionName
from tests.integration.conftest import Service
from tests.integration.helpers import by_code, cost_item, records

SUPPLIER = "Avon Security & Sons"  # a seeded Xero supplier


@pytest.fixture
def connected(service: Service) -> Service:
    service.connect_xero()
    return service


def _bills(service: Service) -> list[dict]:
    return [
        w
        for w in service.xero.writes(kind="Invoice")
        if w["body"]["Type"] == "ACCPAY" and w["action"] == "create"
    ]


def test_a_captured_item_becomes_one_coded_bill_with_its_document(connected: Service):
    api = connected.client()
    connected.session.client("s3").put_object(
        Bucket=connected.resources.documents_bucket, Key="docs/cap-001.pdf", Body=b"%PDF-1.4 receipt"
    )
    item = cost_item(api, "cap-001", supplier=SUPPLIER, document=True)
    submitted = api.post("/v1/items", json={"item": item, "publish": True})
    assert submitted.status_code == 201
    assert submitted.json()["status"] == "queued"

    connected.drain()
    view = api.get("/v1/items/cap-001").json()
    assert view["status"] == "published", view["last_error"]
    assert view["remote_id"] and view["remote_url"].endswith(view["remote_id"])
    assert view["attachment_id"]
    assert [a["outcome"] for a in view["attempts"]] == ["published", "attached"]

    bills = _bills(connected)
    assert len(bills) == 1
    bill = bills[0]["body"]
    assert bill["Contact"]["Name"] == SUPPLIER
    assert bill["InvoiceNumber"] == "INV-cap-001"
    line = bill["LineItems"][0]
    assert (line["AccountCode"], line["TaxType"], line["LineAmount"], line["TaxAmount"]) == (
        "429",
        "INPUT2",
        100.0,
        20.0,
    )
    assert bill["Total"] == 120.0
    attachments = connected.xero.writes(kind="Attachment")
    assert len(attachments) == 1 and attachments[0]["body"]["FileName"] == "cap-001.pdf"
    published = [e for e in connected.events() if e["detail-type"] == "item.published"]
    assert [e["detail"]["item_id"] for e in published] == ["cap-001"]


def test_every_message_delivered_twice_still_makes_one_bill(connected: Service):
    api = connected.client()
    item = cost_item(api, "cap-dup", supplier=SUPPLIER)
    body = json.dumps({"business_id": "biz-1", "action": "publish", "item": item})
    sqs = connected.session.client("sqs")
    for copy in range(2):  # at-least-once delivery: the same message arrives again
        sqs.send_message(
            QueueUrl=connected.resources.publish_queue_url,
            MessageBody=body,
            MessageGroupId="biz-1",
            MessageDeduplicationId=f"copy-{copy}",
        )
    connected.drain()
    assert len(_bills(connected)) == 1
    assert api.get("/v1/items/cap-dup").json()["status"] == "published"


def test_a_lost_response_is_retried_with_the_same_key_and_xero_replays_it(connected: Service):
    api = connected.client()
    connected.xero.inject_fault("lost_response", "/api.xro/2.0/Invoices", method="PUT", count=1)
    api.post("/v1/items", json={"item": cost_item(api, "cap-lost", supplier=SUPPLIER), "publish": True})
    connected.drain()
    assert api.get("/v1/items/cap-lost").json()["status"] == "published"
    bills = _bills(connected)
    assert len(bills) == 1  # the first PUT committed; the retry was answered from Xero's idempotency cache
    puts = connected.xero.request_log.entries(path_glob="/api.xro/2.0/invoices", method="PUT")
    assert len(puts) == 2 and len({p.header("Idempotency-Key") for p in puts}) == 1


def test_a_429_is_retried_after_retry_after_and_nothing_is_lost(connected: Service):
    api = connected.client()
    connected.xero.inject_fault("429", "/api.xro/2.0/Invoices", method="PUT", count=1, retry_after=3)
    before = connected.clock.now()
    api.post("/v1/items", json={"item": cost_item(api, "cap-429", supplier=SUPPLIER), "publish": True})
    connected.drain()
    assert api.get("/v1/items/cap-429").json()["status"] == "published"
    assert len(_bills(connected)) == 1
    assert (connected.clock.now() - before).total_seconds() >= 3  # it waited as Xero asked


def test_a_long_retry_after_puts_the_item_back_on_the_queue_saying_why(connected: Service):
    api = connected.client()
    connected.xero.inject_fault("429", "/api.xro/2.0/Invoices", method="PUT", count=1, retry_after=120)
    api.post("/v1/items", json={"item": cost_item(api, "cap-later", supplier=SUPPLIER), "publish": True})
    connected.poller(connected.resources.publish_queue_url, FunctionName.PUBLISH_ITEM).poll_once()
    view = api.get("/v1/items/cap-later").json()
    assert view["status"] == "retrying"
    assert view["last_error"]["code"] == "ledger_busy"
    attributes = connected.session.client("sqs").get_queue_attributes(
        QueueUrl=connected.resources.publish_queue_url,
        AttributeNames=["ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"  # held back, not lost
    assert _bills(connected) == []


def test_a_malformed_message_fails_alone_and_the_rest_of_the_batch_is_published(connected: Service, caplog):
    api = connected.client()
    sqs = connected.session.client("sqs")
    sqs.send_message(
        QueueUrl=connected.resources.publish_queue_url,
        MessageBody='{"business_id": "biz-1", "action": "publish", "item": {"id": "x"}}',
        MessageGroupId="biz-1",
        MessageDeduplicationId="bad",
    )
    good = cost_item(api, "cap-good", supplier=SUPPLIER)
    sqs.send_message(
        QueueUrl=connected.resources.publish_queue_url,
        MessageBody=json.dumps({"business_id": "biz-1", "action": "publish", "item": good}),
        MessageGroupId="biz-1",
        MessageDeduplicationId="good",
    )
    poller = connected.poller(connected.resources.publish_queue_url, FunctionName.PUBLISH_ITEM)
    assert poller.poll_once() == 2
    assert api.get("/v1/items/cap-good").json()["status"] == "published"
    logged = [r for r in caplog.records if r.getMessage() == "malformed publish message"]
    assert len(logged) == 1 and "item.type" in logged[0].reasons  # the reason names the missing field
    remaining = sqs.get_queue_attributes(
        QueueUrl=connected.resources.publish_queue_url,
        AttributeNames=["ApproximateNumberOfMessagesNotVisible"],
    )
    assert (
        remaining["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
    )  # the bad one awaits its DLQ


def test_a_bill_in_a_locked_period_is_rejected_saying_how_to_fix_it_and_publishes_after_an_edit(
    connected: Service,
):
    api = connected.client()
    locked = cost_item(api, "cap-locked", supplier=SUPPLIER, date="2026-01-15")  # before the seeded lock date
    api.post("/v1/items", json={"item": locked, "publish": True})
    connected.drain()
    view = api.get("/v1/items/cap-locked").json()
    assert view["status"] == "rejected"
    assert (view["last_error"]["code"], view["last_error"]["field"]) == ("period_locked", "date")
    assert "lock" in view["last_error"]["ledger_message"].lower()  # Xero's own words, kept
    assert "after the lock date" in view["last_error"]["hint"]  # and what to do, in plain words
    assert _bills(connected) == []
    failed = [e for e in connected.events() if e["detail-type"] == "item.failed"]
    assert failed and failed[0]["detail"]["item_id"] == "cap-locked"
    assert failed[0]["detail"]["error"]["code"] == "period_locked"

    assert api.patch("/v1/items/cap-locked", json={"date": "2026-11-02"}).status_code == 200
    api.post("/v1/items/cap-locked/publish")
    connected.drain()
    assert api.get("/v1/items/cap-locked").json()["status"] == "published"
    assert [b["body"]["InvoiceNumber"] for b in _bills(connected)] == ["INV-cap-locked"]


def test_a_currency_the_organisation_cannot_take_is_rejected_and_publishes_once_corrected(
    connected: Service,
):
    api = connected.client()
    euros = cost_item(api, "cap-eur", supplier=SUPPLIER, currency="EUR")  # the organisation is GBP only
    api.post("/v1/items", json={"item": euros, "publish": True})
    connected.drain()
    view = api.get("/v1/items/cap-eur").json()
    assert view["status"] == "rejected"
    assert (view["last_error"]["code"], view["last_error"]["field"]) == ("currency_not_enabled", "currency")
    assert "EUR" in view["last_error"]["ledger_message"]
    assert "currency" in view["last_error"]["hint"]
    assert _bills(connected) == []

    fixed = api.patch("/v1/items/cap-eur", json={"currency": "GBP"})
    assert fixed.status_code == 200 and fixed.json()["revision"] == 2
    api.post("/v1/items/cap-eur/publish")
    connected.drain()
    assert api.get("/v1/items/cap-eur").json()["status"] == "published"
    assert [b["body"]["CurrencyCode"] for b in _bills(connected)] == ["GBP"]


def test_an_item_that_cannot_be_coded_is_refused_before_any_call(connected: Service):
    api = connected.client()
    item = cost_item(api, "cap-uncoded", supplier="Nobody Known Ltd")
    item["lines"][0].pop("category")
    calls_before = len(connected.xero.request_log.entries(path_glob="/api.xro/2.0/*"))
    api.post("/v1/items", json={"item": item, "publish": True})
    connected.drain()
    view = api.get("/v1/items/cap-uncoded").json()
    assert view["status"] == "rejected"
    assert (view["last_error"]["code"], view["last_error"]["field"]) == (
        "missing_category",
        "lines[0].category",
    )
    assert len(connected.xero.request_log.entries(path_glob="/api.xro/2.0/*")) == calls_before


def test_a_new_supplier_is_created_once_and_reused(connected: Service):
    api = connected.client()
    for number in (1, 2):
        api.post(
            "/v1/items",
            json={
                "item": cost_item(api, f"cap-new-{number}", supplier="Fresh Start Cleaning Ltd"),
                "publish": True,
            },
        )
    connected.drain()
    contacts = [w for w in connected.xero.writes(kind="Contact") if w["action"] == "create"]
    assert [c["body"]["Name"] for c in contacts] == ["Fresh Start Cleaning Ltd"]
    bills = _bills(connected)
    assert len(bills) == 2 and {b["body"]["Contact"]["ContactID"] for b in bills} == {contacts[0]["id"]}


def test_items_are_private_to_their_business(connected: Service):
    api = connected.client()
    api.post("/v1/items", json={"item": cost_item(api, "cap-private", supplier=SUPPLIER), "publish": False})
    other = connected.client(business="biz-2")
    assert other.get("/v1/items/cap-private").status_code == 404
    standard = connected.client(role="standard")
    assert standard.get("/v1/items/cap-private").json()["status"] == "waiting"


def test_an_invalid_item_is_refused_naming_the_field(connected: Service):
    api = connected.client()
    item = cost_item(api, "cap-bad", supplier=SUPPLIER)
    item["totals"]["gross"] = 999
    refused = api.post("/v1/items", json={"item": item, "publish": True})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"].startswith("item.totals")
    assert "net + tax" in refused.json()["error"]["message"]


def test_categories_list_filters_and_unknown_list_is_404(connected: Service):
    api = connected.client()
    assert by_code(api, "categories", "429")["usable_for"] == ["cost", "expense_claim"]
    unknown = api.get("/v1/lists/widgets")
    assert unknown.status_code == 404
    assert "categories" in unknown.json()["error"]["message"]


def test_a_capture_for_an_auto_publish_supplier_is_published_without_a_request(connected: Service):
    api = connected.client()
    api.put("/v1/connection/settings", json={"auto_publish": True})
    stationery = by_code(api, "categories", "461")
    rule = {"name": SUPPLIER, "category": stationery["id"], "auto_publish": True}
    assert api.put("/v1/rules/suppliers/sup-avon", json=rule).status_code == 200
    api.put("/v1/rules/suppliers/sup-bright", json={"name": "Brightside Office Supplies"})

    # The category comes from the rule: the capture sends none, and no one asks to publish.
    automatic = cost_item(api, "cap-auto", supplier=SUPPLIER)
    automatic["supplier"]["key"] = "sup-avon"
    automatic["lines"][0].pop("category")
    # A supplier whose rule does not auto-publish, and one with no rule and no category: both wait.
    manual = cost_item(api, "cap-manual", supplier="Brightside Office Supplies")
    manual["supplier"]["key"] = "sup-bright"
    uncoded = cost_item(api, "cap-uncoded", supplier="Nobody Known Ltd")
    uncoded["lines"][0].pop("category")
    sqs = connected.session.client("sqs")
    for item in (automatic, manual, uncoded):  # the capture product's way in
        sqs.send_message(
            QueueUrl=connected.resources.publish_queue_url,
            MessageBody=json.dumps({"business_id": "biz-1", "action": "capture", "item": item}),
            MessageGroupId="biz-1",
            MessageDeduplicationId=item["id"],
        )
    connected.drain()

    assert api.get("/v1/items/cap-auto").json()["status"] == "published"
    assert api.get("/v1/items/cap-manual").json()["status"] == "waiting"
    assert api.get("/v1/items/cap-uncoded").json()["status"] == "waiting"
    bills = _bills(connected)
    assert [b["body"]["InvoiceNumber"] for b in bills] == ["INV-cap-auto"]
    assert bills[0]["body"]["LineItems"][0]["AccountCode"] == "461"  # the rule's category

    # Through the API too: a capture without "publish" is published by the rule alone.
    again = cost_item(api, "cap-auto-api", supplier=SUPPLIER)
    again["supplier"]["key"] = "sup-avon"
    assert api.post("/v1/items", json={"item": again, "publish": False}).json()["status"] == "queued"
    connected.drain()
    assert api.get("/v1/items/cap-auto-api").json()["status"] == "published"


def test_an_auto_publish_rule_without_a_category_anywhere_leaves_the_item_waiting(connected: Service):
    api = connected.client()
    api.put("/v1/connection/settings", json={"auto_publish": True})
    api.put("/v1/rules/suppliers/sup-new", json={"name": "Nobody Known Ltd", "auto_publish": True})
    item = cost_item(api, "cap-nocat", supplier="Nobody Known Ltd")
    item["supplier"]["key"] = "sup-new"
    item["lines"][0].pop("category")
    assert api.post("/v1/items", json={"item": item, "publish": False}).json()["status"] == "waiting"
    connected.drain()
    assert api.get("/v1/items/cap-nocat").json()["status"] == "waiting"
    assert _bills(connected) == []


def test_a_batch_longer_than_the_call_budget_keeps_what_it_published_and_finishes(connected: Service):
    """Spend Money is one call per item: 40 of them in one batch outrun a session's call budget
    (8 calls a ten-second window, 30 s of waiting). What went through stays published and only
    the rest waits; nothing is counted as a failure or sent twice."""
    api = connected.client()
    api.put("/v1/connection/settings", json={"destinations": {"cost": "spend_money"}})
    bank = records(api, "bank_accounts")[0]
    for number in range(40):
        item = cost_item(api, f"cap-spend-{number}", supplier=SUPPLIER)
        item["paid"] = {"date": "2026-11-02", "bank_account": bank["id"]}
        api.post("/v1/items", json={"item": item, "publish": True})
    for _ in range(10):
        connected.drain()
        statuses = Counter(v["status"] for v in api.get("/v1/items", params={"limit": 100}).json()["items"])
        if statuses == Counter({"published": 40}):
            break
        connected.let_time_pass(11)  # the budget's next window; the wake-up comes back
    assert statuses == Counter({"published": 40})
    spent = [w for w in connected.xero.writes(kind="BankTransaction") if w["action"] == "create"]
    assert sorted(w["body"]["Reference"] for w in spent) == sorted(f"INV-cap-spend-{n}" for n in range(40))
    views = [api.get(f"/v1/items/cap-spend-{n}").json() for n in range(40)]
    assert all(a["outcome"] != "failed" for v in views for a in v["attempts"])


def test_a_failed_attachment_is_retried_alone_and_never_recreates_the_bill(connected: Service):
    api = connected.client()
    connected.session.client("s3").put_object(
        Bucket=connected.resources.documents_bucket, Key="docs/cap-doc.pdf", Body=b"%PDF-1.4 receipt"
    )
    # Xero is down for attachments (every retry inside the call fails too); bills still go through.
    connected.xero.inject_fault("500", "/api.xro/2.0/Invoices/*/Attachments/*", count=20)
    item = cost_item(api, "cap-doc", supplier=SUPPLIER, document=True)
    api.post("/v1/items", json={"item": item, "publish": True})
    connected.drain()
    view = api.get("/v1/items/cap-doc").json()
    assert view["status"] == "published" and view["remote_id"]
    assert view["attachment_id"] is None and view["last_error"]["code"] == "ledger_unavailable"

    connected.xero.clear_faults()
    connected.let_time_pass(31)  # the wake-up comes back after the outage pause
    connected.drain()
    done = api.get("/v1/items/cap-doc").json()
    assert done["attachment_id"] and done["last_error"] is None
    assert done["remote_id"] == view["remote_id"]
    outcomes = [a["outcome"] for a in done["attempts"]]
    assert (outcomes[0], outcomes[-1]) == ("published", "attached")
    assert len(_bills(connected)) == 1
    puts = connected.xero.request_log.entries(path_glob="/api.xro/2.0/invoices", method="PUT")
    assert len(puts) == 1  # the bill was sent once; only its document was tried again
    assert len(connected.xero.writes(kind="Attachment")) == 1


def test_an_item_that_keeps_failing_is_set_aside_saying_so_and_its_message_dead_lettered(connected: Service):
    api = connected.client()
    connected.xero.inject_fault("500", "/api.xro/2.0/Invoices", method="PUT", count=None)
    api.post("/v1/items", json={"item": cost_item(api, "cap-down", supplier=SUPPLIER), "publish": True})
    for _ in range(8):
        connected.drain()
        if api.get("/v1/items/cap-down").json()["status"] == "failed":
            break
        connected.let_time_pass(31)
    view = api.get("/v1/items/cap-down").json()
    assert view["status"] == "failed"
    assert view["last_error"]["code"] == "ledger_unavailable"
    assert "tried repeatedly" in view["last_error"]["hint"] and "publish it again" in view["last_error"]["hint"]
    assert [a["outcome"] for a in view["attempts"]].count("retrying") == 5
    failed = [e for e in connected.events() if e["detail-type"] == "item.failed"]
    assert [e["detail"]["item_id"] for e in failed] == ["cap-down"]
    assert _bills(connected) == []

    # SQS gave up on the message too: it is on the dead-letter queue, where operators look.
    connected.let_time_pass(31)
    connected.drain()
    sqs = connected.session.client("sqs")
    dead = sqs.receive_message(QueueUrl=connected.resources.publish_dlq_url, MaxNumberOfMessages=10)
    assert [json.loads(m["Body"])["item"]["id"] for m in dead.get("Messages", [])] == ["cap-down"]

    # Once the ledger is back, asking again publishes it.
    connected.xero.clear_faults()
    assert api.post("/v1/items/cap-down/publish").status_code == 202
    connected.drain()
    assert api.get("/v1/items/cap-down").json()["status"] == "published"
    assert len(_bills(connected)) == 1


def test_bank_match_pays_the_bill_from_its_bank_line_or_says_why_it_is_unpaid(connected: Service):
    api = connected.client()
    assert api.put("/v1/connection/settings", json={"bank_match": True}).status_code == 200
    organisation = api.get("/v1/connection").json()["organisation"]["id"]
    bank = records(api, "bank_accounts")[0]
    matched = cost_item(api, "cap-paid", supplier=SUPPLIER, net=187.35)  # 224.82 with VAT
    matched["paid"] = {"date": "2026-11-20", "bank_account": bank["id"]}
    unmatched = cost_item(api, "cap-unmatched", supplier=SUPPLIER, net=55.55)
    unmatched["paid"] = {"date": "2026-11-20", "bank_account": bank["id"]}
    # The bank feed's line for the first: within 10 days of its due date (2026-12-02).
    line = connected.xero.add_bank_line(organisation, bank["remote_id"], date(2026, 11, 25), Decimal("224.82"))
    for item in (matched, unmatched):
        api.post("/v1/items", json={"item": item, "publish": True})
    connected.drain()

    paid = api.get("/v1/items/cap-paid").json()
    assert paid["status"] == "published" and paid["payment_id"] and paid["last_error"] is None
    payments = [w for w in connected.xero.writes(kind="Payment") if w["action"] == "create"]
    assert len(payments) == 1
    assert payments[0]["body"]["Invoice"]["InvoiceID"].lower() == paid["remote_id"].lower()
    # Dated like the bank line it pairs with (the write log keeps Xero's MS-JSON date).
    milliseconds = int(payments[0]["body"]["Date"].removeprefix("/Date(").split("+")[0])
    assert datetime.fromtimestamp(milliseconds / 1000, UTC).date() == date(2026, 11, 25)
    assert line and connected.xero.writes(kind="BankTransaction") == []  # never a transaction of ours

    unpaid = api.get("/v1/items/cap-unmatched").json()
    assert unpaid["status"] == "published" and unpaid["payment_id"] is None
    assert unpaid["last_error"]["code"] == "no_bank_line"
    assert "Published unpaid" in unpaid["last_error"]["message"]


def test_consent_withdrawn_before_the_document_keeps_the_bill_published_and_attaches_after_reconnecting(
    connected: Service,
):
    api = connected.client()
    connected.session.client("s3").put_object(
        Bucket=connected.resources.documents_bucket, Key="docs/cap-revoked.pdf", Body=b"%PDF-1.4 receipt"
    )
    # The bill goes through; consent is withdrawn just before its document is sent.
    connected.xero.inject_fault("revoke", "/api.xro/2.0/Invoices/*/Attachments/*", count=1)
    item = cost_item(api, "cap-revoked", supplier=SUPPLIER, document=True)
    api.post("/v1/items", json={"item": item, "publish": True})
    connected.drain()
    assert api.get("/v1/connection").json()["status"] == "needs_reconnect"
    view = api.get("/v1/items/cap-revoked").json()
    assert view["status"] == "published" and view["remote_id"]  # it is in the ledger
    assert view["attachment_id"] is None and view["last_error"]["code"] == "needs_reconnect"

    started = api.post("/v1/connection/reconnect", json={})
    landed = connected.browser().get(started.json()["authorize_url"], follow_redirects=True)
    assert landed.json()["status"] == "reconnected"
    connected.drain()
    done = api.get("/v1/items/cap-revoked").json()
    assert (done["status"], done["remote_id"], done["last_error"]) == ("published", view["remote_id"], None)
    assert done["attachment_id"]
    assert len(_bills(connected)) == 1 and len(connected.xero.writes(kind="Attachment")) == 1
