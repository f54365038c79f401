"""Failures the fault soak (`make soak`, sandbox/soak.py) found, each pinned down in-process."""

from __future__ import annotations

from collections import Counter

from tests.integration.conftest import Service
from tests.integration.helpers import cost_item

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
