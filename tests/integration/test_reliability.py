"""1,000 items across the five ledgers, faults in about one ledger call in ten (429, 500, timeouts,
writes whose response is lost), every message delivered at least twice: in the end every item is
in its ledger exactly once, or says clearly why not; nothing is lost, no document exists twice."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tests.integration.conftest import Service
from tests.integration.helpers import records

ITEMS_PER_LEDGER = 200
FAULT_KINDS = ("429", "500", "timeout", "lost_response")
FAULT_RATE = 0.10
MAX_PASSES = 40
WAVE = 20  # items per business per wave

# Where each ledger's API lives (its OAuth endpoints are left alone: this test is about publishing),
# the write-log kind of a purchase document, and where that document keeps the item's reference.
LEDGERS: dict[str, dict[str, Any]] = {
    "xero": {"paths": ["/api.xro/2.0/*"], "kind": "Invoice", "reference": lambda b: b.get("InvoiceNumber")},
    "quickbooks": {"paths": ["/v3/company/*"], "kind": "Bill", "reference": lambda b: b.get("DocNumber")},
    "sage": {"paths": ["/v3.1/*"], "kind": "purchase_invoices", "reference": lambda b: b.get("vendor_reference")},
    "freeagent": {"paths": ["/v2/[!t]*"], "kind": "Bill", "reference": lambda b: b.get("reference")},
    "kashflow": {
        "paths": ["/v2/purchases*", "/v2/suppliers*", "/v2/customers*"],
        "kind": "Purchase",
        "reference": lambda b: b.get("SupplierReference"),
    },
}
TERMINAL = {"published", "rejected", "failed", "held"}


def _coded_items(service: Service, provider: str) -> list[dict[str, Any]]:
    api = service.client(f"rel-{provider}")
    categories = [r for r in records(api, "categories") if "cost" in r["usable_for"]]
    tax_rates = [r for r in records(api, "tax_rates") if "cost" in r["applies_to"] and (r["rate"] or 0) > 0]
    suppliers = [r for r in records(api, "contacts") if r["is_supplier"]]
    items = []
    for number in range(ITEMS_PER_LEDGER):
        net = round(10 + number * 1.25, 2)
        rate = tax_rates[number % len(tax_rates)]
        tax = round(net * rate["rate"] / 100, 2)
        item: dict[str, Any] = {
            "id": f"rel-{number:04d}",
            "type": "cost",
            "supplier": {"name": suppliers[number % len(suppliers)]["name"]},
            "date": "2026-11-02",
            "due_date": "2026-12-02",
            "reference": f"R{number:04d}",
            "currency": "GBP",
            "totals": {"net": net, "tax": tax, "gross": round(net + tax, 2)},
            "lines": [{"description": f"Reliability {number}", "amount": net, "tax_amount": tax, "category": categories[number % len(categories)]["id"], "tax_rate": rate["id"]}],
        }
        if number % 5 == 0:
            item["document"] = {"key": f"rel/{provider}/{number}.pdf", "file_name": f"r{number}.pdf", "content_type": "application/pdf"}
        items.append(item)
    return items


def test_a_thousand_items_through_faults_and_duplicates_each_land_once(service: Service):
    sqs = service.session.client("sqs")
    s3 = service.session.client("s3")
    queue = service.resources.publish_queue_url
    businesses = {provider: f"rel-{provider}" for provider in LEDGERS}
    every_item: dict[str, list[dict[str, Any]]] = {}
    for provider, business in businesses.items():
        assert service.connect(provider, business)["status"] == "connected"
        every_item[provider] = _coded_items(service, provider)
        for item in every_item[provider]:
            if "document" in item:
                s3.put_object(Bucket=service.resources.documents_bucket, Key=item["document"]["key"], Body=b"%PDF-1.4 reliability")
        simulator = service.simulator(provider)
        for kind in FAULT_KINDS:
            for path in LEDGERS[provider]["paths"]:
                simulator.inject_fault(kind, path, count=None, probability=FAULT_RATE / len(FAULT_KINDS), retry_after=5)

    # The capture product sends in waves across the five businesses, and every message arrives
    # twice (distinct deduplication ids, as a redelivery after SQS's 5-minute window would).
    # Waves also keep moto's queue short: its SQS does a scan per message sent or received.
    for start in range(0, ITEMS_PER_LEDGER, WAVE):
        for provider, business in businesses.items():
            for item in every_item[provider][start : start + WAVE]:
                body = json.dumps({"business_id": business, "action": "publish", "item": item})
                for copy in ("a", "b"):
                    sqs.send_message(QueueUrl=queue, MessageBody=body, MessageGroupId=business, MessageDeduplicationId=f"{business}-{item['id']}-{copy}")
        service.drain(max_batches=1000)

    def views(business: str) -> dict[str, dict[str, Any]]:
        api, found, cursor = service.client(business), {}, None
        while True:
            page = api.get("/v1/items", params={"limit": 200, **({"cursor": cursor} if cursor else {})}).json()
            found |= {view["item"]["id"]: view for view in page["items"]}
            cursor = page["next_cursor"]
            if not cursor:
                return found

    def statuses() -> dict[str, Counter[str]]:
        counts = {}
        for provider, business in businesses.items():
            seen = views(business)
            counts[provider] = Counter(seen[i["id"]]["status"] if i["id"] in seen else "not_captured_yet" for i in every_item[provider])
        return counts

    for _pass in range(MAX_PASSES):
        service.drain(max_batches=1000)
        current = statuses()
        if all(set(counts) <= TERMINAL for counts in current.values()):
            break
        # Time passes: rate-limit windows reopen; messages held back by a Retry-After come back.
        service.let_time_pass(61)
    current = statuses()
    assert all(set(counts) <= TERMINAL for counts in current.values()), current

    for provider, business in businesses.items():
        ledger = LEDGERS[provider]
        simulator = service.simulator(provider)
        created = Counter(
            ledger["reference"](w["body"]) for w in simulator.writes(kind=ledger["kind"]) if w["action"] == "create"
        )
        assert max(created.values(), default=0) <= 1, f"{provider}: duplicated documents {[r for r, n in created.items() if n > 1]}"
        seen = views(business)
        for item in every_item[provider]:
            view = seen[item["id"]]
            if view["status"] == "published":
                assert created[item["reference"]] == 1, f"{provider} {item['id']} published but not in the ledger once"
            else:
                assert created[item["reference"]] == 0, f"{provider} {item['id']} is {view['status']} but reached the ledger"
                assert view["last_error"]["message"] and view["last_error"]["hint"], view
        documents = Counter(w["id"] for w in simulator.writes() if w["kind"].lower() in ("attachment", "attachable", "attachments", "file"))
        assert max(documents.values(), default=0) <= 1
        published = current[provider]["published"]
        reasons = Counter(v["last_error"]["code"] for v in seen.values() if v["status"] != "published")
        assert published >= ITEMS_PER_LEDGER * 0.9, f"{provider}: only {published} published: {current[provider]} {reasons}"
