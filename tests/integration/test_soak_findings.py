"""Failures the fault soak (`make soak`, sandbox/soak.py) found, each pinned down in-process."""

from __future__ import annotations

from collections import Counter

from tests.integration.conftest import Service
from tests.integration.helpers import by_code, cost_item, records

SUPPLIER = "Avon Security & Sons"  # a seeded Xero supplier


def test_a_batch_whose_answer_was_lost_before_consent_was_revoked_is_not_sent_again_after_reconnect(
    service: Service,
):
    """The batch committed but its answer was lost; the retry met a revoked consent, so the items
    were held. After the reconnect they go out in a new batch (another idempotency key): the
    publisher must look for what the lost batch created instead of creating it again."""
    service.connect_xero()
    api = service.client()
    for item_id in ("soak-a", "soak-b"):
        api.post("/v1/items", json={"item": cost_item(api, item_id, supplier=SUPPLIER), "publish": True})
    # Rules fire in order: the first PUT commits and loses its answer, the retry meets the revocation.
    service.xero.inject_fault("lost_response", "/api.xro/2.0/Invoices", method="PUT", count=1)
    service.xero.inject_fault("revoke", "/api.xro/2.0/Invoices", method="PUT", count=1)
    service.drain()
    assert api.get("/v1/connection").json()["status"] == "needs_reconnect"
    assert {api.get(f"/v1/items/{i}").json()["status"] for i in ("soak-a", "soak-b")} == {"held"}

    api.post("/v1/items", json={"item": cost_item(api, "soak-c", supplier=SUPPLIER), "publish": True})
    started = api.post("/v1/connection/reconnect", json={}).json()
    assert (
        service.browser().get(started["authorize_url"], follow_redirects=True).json()["status"]
        == "reconnected"
    )
    service.drain()

    assert {api.get(f"/v1/items/{i}").json()["status"] for i in ("soak-a", "soak-b", "soak-c")} == {
        "published"
    }
    bills = Counter(
        w["body"]["InvoiceNumber"]
        for w in service.xero.writes(kind="Invoice")
        if w["action"] == "create" and w["body"]["Type"] == "ACCPAY"
    )
    assert bills == {"INV-soak-a": 1, "INV-soak-b": 1, "INV-soak-c": 1}


def test_an_item_coded_to_a_xero_system_account_is_rejected_before_it_reaches_the_ledger(service: Service):
    """The first soak's runtime predated the fix: Xero's Debtors Control (type CURRENT, which codes
    costs) was offered as a cost category, items coded with it went out, and Xero refused them
    ("Account code '1100' cannot be used on line items"). A system account is usable for nothing,
    so the coding check refuses such an item before any call to the ledger."""
    service.connect_xero()
    api = service.client()
    debtors = by_code(api, "categories", "610")
    assert debtors["raw"]["SystemAccount"] == "DEBTORS" and debtors["usable_for"] == []
    assert debtors["id"] not in {r["id"] for r in records(api, "categories", usable_for="cost")}

    api.post("/v1/items", json={"item": cost_item(api, "debtors", category_code="610"), "publish": True})
    service.drain()
    view = api.get("/v1/items/debtors").json()
    assert view["status"] == "rejected", view
    assert view["last_error"]["code"] == "category_not_allowed", view["last_error"]
    assert not [w for w in service.xero.writes(kind="Invoice") if w["action"] == "create"]
