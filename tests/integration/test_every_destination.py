"""Every destination each ledger's capability record offers is published through the whole service
(items API, publish queue, consumer, publisher, adapter) to that ledger's simulator: one item per
destination, each ending in the ledger once with its remote id."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from ledgerlink.models.common import ItemType, ProviderName
from ledgerlink.providers import registry
from tests.integration.conftest import Service
from tests.integration.helpers import records

PROVIDERS = [provider.value for provider in ProviderName]
CLAIMANT = "Priya Shah"  # a seeded person in every simulator (a Xero user)


def _item(lists: dict[str, list[dict[str, Any]]], provider: str, item_type: ItemType, destination: str, item_id: str) -> dict[str, Any]:
    """A paid item of ``item_type`` sent to ``destination``, coded from the imported lists."""
    kind = item_type.value
    category = next(r for r in lists["categories"] if kind in r["usable_for"])
    tax = next((r for r in lists["tax_rates"] if kind in r["applies_to"] and (r["rate"] or 0) > 0), None)
    net = 50.0
    tax_amount = round(net * (tax["rate"] if tax else 0) / 100, 2)
    line: dict[str, Any] = {"description": f"Every destination: {destination}", "amount": net, "tax_amount": tax_amount, "category": category["id"]}
    if tax is not None:
        line["tax_rate"] = tax["id"]
    if provider == "quickbooks" and item_type == ItemType.SALES:
        # A QuickBooks invoice line is a product or service: one that sells into its own account.
        product = next(r for r in lists["items"] if r.get("sales_category_code"))
        line["product"] = product["id"]
        line["category"] = next(r for r in lists["categories"] if r["code"] == product["sales_category_code"])["id"]
    item: dict[str, Any] = {
        "id": item_id,
        "type": kind,
        "date": "2026-11-02",
        "due_date": "2026-12-02",
        "reference": f"DEST-{item_id}",
        "currency": "GBP",
        "totals": {"net": net, "tax": tax_amount, "gross": round(net + tax_amount, 2)},
        "lines": [line],
        "paid": {"date": "2026-11-02", "bank_account": lists["bank_accounts"][0]["id"]},
        "destination": destination,
    }
    if item_type == ItemType.EXPENSE_CLAIM:
        item["claimant"] = {"name": CLAIMANT}
    else:
        role = "customer" if item_type == ItemType.SALES else "supplier"
        party = next(r for r in lists["contacts"] if r["is_customer" if role == "customer" else "is_supplier"])
        item[role] = {"name": party["name"]}
    return item


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_destination_of_the_ledger_publishes_through_the_service(service: Service, provider: str):
    assert service.connect(provider)["status"] == "connected"
    api = service.client()
    destinations = [
        (item_type, destination)
        for item_type, choices in registry.capabilities(ProviderName(provider)).destinations.items()
        for destination in choices
    ]
    lists = {name: records(api, name) for name in ("categories", "tax_rates", "contacts", "bank_accounts", "items")}
    for number, (item_type, destination) in enumerate(destinations):
        item = _item(lists, provider, item_type, destination, f"dest-{number}")
        submitted = api.post("/v1/items", json={"item": item, "publish": True})
        assert submitted.status_code == 201, submitted.text
    for _ in range(5):
        service.drain()
        views = [api.get(f"/v1/items/dest-{n}").json() for n in range(len(destinations))]
        if all(v["status"] not in ("queued", "retrying") for v in views):
            break
        service.let_time_pass(30)  # a ledger's rate window, or our call budget's, reopens
    outcomes = {
        destinations[n][1] + f" ({destinations[n][0].value})": (v["status"], v["last_error"]) for n, v in enumerate(views)
    }
    assert all(status == "published" for status, _ in outcomes.values()), outcomes
    # Each remote id is a document the ledger created once (ids are per kind of record in some ledgers).
    created = Counter(str(w["id"]) for w in service.simulator(provider).writes() if w["action"] == "create")
    for (item_type, destination), view in zip(destinations, views, strict=True):
        assert created[view["remote_id"]] >= 1, (destination, item_type.value, view["remote_id"])
    assert len({(d, v["remote_id"]) for (_, d), v in zip(destinations, views, strict=True)}) == len(views)
