"""`ledgerlink demo`: start the local runtime and walk the whole scenario against the simulators.

One business per ledger connects through that ledger's real sign-in (the OAuth redirect dance, or
KashFlow's login), chooses its organisation where the consent covers several, and waits for the
six lists to import. Then captured items with PDF documents are published: 25 to Xero, 5 to each
other ledger. The summary shows, per ledger, what was imported, what was published and what the
simulator's own books hold. Exits non-zero, saying why, if any step fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx

from sandbox.devauth import mint_token
from sandbox.local import LocalRuntime, free_port

LIST_TYPES = ("categories", "contacts", "tax_rates", "items", "projects", "bank_accounts")
WAIT_SECONDS = 180
KASHFLOW_LOGIN = {"username": "demo", "password": "demo-password", "memorable_word": "ledgerlink"}


@dataclass(frozen=True)
class Ledger:
    provider: str
    name: str
    items: int
    # The simulator's write-log kind for a purchase document, and an optional filter on its body.
    document_kind: str
    is_document: Callable[[dict[str, Any]], bool] = lambda _body: True


LEDGERS = (
    Ledger("xero", "Xero", 25, "Invoice", lambda body: body.get("Type") == "ACCPAY"),
    Ledger("quickbooks", "QuickBooks Online", 5, "Bill"),
    Ledger("sage", "Sage Accounting", 5, "purchase_invoices"),
    Ledger("freeagent", "FreeAgent", 5, "Bill"),
    Ledger("kashflow", "KashFlow", 5, "Purchase"),
)


class DemoFailed(Exception):
    pass


@dataclass
class Outcome:
    ledger: Ledger
    organisation: str = ""
    status: str = ""
    lists: dict[str, tuple[int, int]] = field(default_factory=dict)
    published: int = 0
    attached: int = 0
    documents_in_ledger: int = 0
    ledger_calls: int = 0
    rate_limited: int = 0


_STARTED = time.monotonic()


def _step(title: str) -> None:
    print(f"\n== [{time.monotonic() - _STARTED:5.1f}s] {title}", flush=True)


def _wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1.0)
    raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")


def _ok(response: httpx.Response, expected: int = 200) -> Any:
    if response.status_code != expected:
        raise DemoFailed(
            f"{response.request.method} {response.request.url.path} answered {response.status_code}: {response.text[:300]}"
        )
    return response.json() if response.content else None


def _all_records(api: httpx.Client, list_type: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"status": "all", "limit": 500, **({"cursor": cursor} if cursor else {})}
        page = _ok(api.get(f"/v1/lists/{list_type}", params=params))
        records += page["records"]
        cursor = page.get("next_cursor")
        if not cursor:
            return records


def _pdf(label: str) -> bytes:
    return (
        f"%PDF-1.4\n% ledgerlink demo receipt {label}\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    ).encode()


def _items(ledger: Ledger, lists: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Items coded from the imported lists, as the capture product would code them."""
    categories = [r for r in lists["categories"] if r["status"] == "active" and "cost" in r["usable_for"]]
    tax_rates = [
        r
        for r in lists["tax_rates"]
        if r["status"] == "active" and "cost" in r["applies_to"] and (r["rate"] or 0) > 0
    ]
    suppliers = [r for r in lists["contacts"] if r["status"] == "active" and r["is_supplier"]]
    if not categories or not tax_rates or not suppliers:
        raise DemoFailed(f"{ledger.name}: no cost category, purchase tax rate or supplier to code items with")
    items = []
    first_day = date(2026, 11, 2)
    for number in range(1, ledger.items + 1):
        net = round(12.5 * number + 7.25, 2)
        rate = tax_rates[number % len(tax_rates)]
        tax = round(net * (rate["rate"] or 0) / 100, 2)
        # Every fifth supplier is new to the ledger: ledgerlink creates it there first, once.
        supplier = (
            f"Demo New Supplier {number}" if number % 5 == 0 else suppliers[number % len(suppliers)]["name"]
        )
        item_id = f"{ledger.provider}-{number:03d}"
        items.append(
            {
                "id": item_id,
                "type": "cost",
                "supplier": {"name": supplier},
                "date": (first_day + timedelta(days=number % 20)).isoformat(),
                "due_date": (first_day + timedelta(days=30 + number % 20)).isoformat(),
                "reference": f"DEMO-{number:04d}",
                "currency": "GBP",
                "totals": {"net": net, "tax": tax, "gross": round(net + tax, 2)},
                "lines": [
                    {
                        "description": f"Demo purchase {number}",
                        "amount": net,
                        "tax_amount": tax,
                        "category": categories[number % len(categories)]["id"],
                        "tax_rate": rate["id"],
                    }
                ],
                "document": {
                    "key": f"documents/{item_id}.pdf",
                    "file_name": f"receipt-{item_id}.pdf",
                    "content_type": "application/pdf",
                },
                "edited_fields": [],
            }
        )
    return items


class Scenario:
    def __init__(self, runtime: LocalRuntime):
        self.runtime = runtime
        self.browser = httpx.Client(timeout=60, follow_redirects=True)

    def api(self, ledger: Ledger) -> httpx.Client:
        token = mint_token(f"demo-{ledger.provider}", "admin")
        return httpx.Client(
            base_url=self.runtime.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def connect(self, ledger: Ledger, outcome: Outcome) -> None:
        api = self.api(ledger)
        if ledger.provider == "kashflow":
            _ok(api.post("/v1/connection", json={"provider": "kashflow", "credentials": KASHFLOW_LOGIN}), 201)
            how = "signed in with the KashFlow login and memorable word"
        else:
            started = _ok(api.post("/v1/connection", json={"provider": ledger.provider}), 201)
            landed = _ok(self.browser.get(started["authorize_url"]))
            how = f"consent given on the {ledger.name} sign-in page"
            if landed["status"] == "choose_organisation":
                offered = _ok(api.get("/v1/connection/organisations"))["organisations"]
                _ok(api.post("/v1/connection/organisation", json={"organisation_id": offered[0]["id"]}))
                how += f", chose 1 of {len(offered)} organisations"
        connection = _ok(api.get("/v1/connection"))
        outcome.organisation = connection["organisation"]["name"]
        print(f"{ledger.name:<18} {how}: {outcome.organisation}")

    def wait_for_lists(self, ledger: Ledger, outcome: Outcome) -> None:
        api = self.api(ledger)

        def imported() -> dict[str, Any] | None:
            # The first import is one refresh of every list the ledger has: wait for it to end
            # (paced by the call budget, it may hand its waits back to the queue on the way).
            connection = _ok(api.get("/v1/connection"))
            refresh = connection.get("refresh") or {}
            if refresh.get("state") == "failed":
                raise DemoFailed(f"{ledger.name}'s first import failed: {refresh.get('last_error')}")
            return connection if refresh.get("state") == "done" else None

        connection = _wait_for(f"{ledger.name}'s first import", imported)
        outcome.status = connection["status"]
        for list_type in connection["lists"]:
            records = _all_records(api, list_type)
            outcome.lists[list_type] = (len(records), sum(r["status"] == "archived" for r in records))

    def publish(self, ledger: Ledger) -> list[dict[str, Any]]:
        import boto3

        api = self.api(ledger)
        s3 = boto3.client("s3")
        bucket = self.runtime.resources.documents_bucket if self.runtime.resources else ""
        lists = {t: _all_records(api, t) for t in LIST_TYPES if t in _ok(api.get("/v1/connection"))["lists"]}
        items = _items(ledger, {t: lists.get(t, []) for t in LIST_TYPES})
        for item in items:
            s3.put_object(
                Bucket=bucket,
                Key=item["document"]["key"],
                Body=_pdf(item["id"]),
                ContentType="application/pdf",
            )
            _ok(api.post("/v1/items", json={"item": item, "publish": True}), 201)
        return items

    def wait_for_items(self, ledger: Ledger, items: list[dict[str, Any]], outcome: Outcome) -> None:
        api = self.api(ledger)

        def settled() -> list[dict[str, Any]] | None:
            views = [_ok(api.get(f"/v1/items/{item['id']}")) for item in items]
            busy = [
                v
                for v in views
                if v["status"] in ("queued", "retrying")
                or (v["status"] == "published" and not v["attachment_id"] and not v["last_error"])
            ]
            return None if busy else views

        views = _wait_for(f"{ledger.name}'s items to be published", settled)
        failed = [v for v in views if v["status"] != "published"]
        if failed:
            reasons = "; ".join(
                f"{v['item']['id']}: {v['status']} ({(v.get('last_error') or {}).get('message')})"
                for v in failed[:3]
            )
            raise DemoFailed(f"{ledger.name}: {len(failed)} items were not published: {reasons}")
        outcome.published = len(views)
        outcome.attached = sum(1 for v in views if v["attachment_id"])

    def check_ledger(self, ledger: Ledger, outcome: Outcome) -> None:
        control = f"{self.runtime.simulator(ledger.provider).url}/_sandbox"
        writes = _ok(self.browser.get(f"{control}/writes", params={"kind": ledger.document_kind}))
        documents = {
            w["id"] for w in writes if w["action"] == "create" and ledger.is_document(w.get("body") or {})
        }
        requests = _ok(self.browser.get(f"{control}/requests"))
        outcome.documents_in_ledger = len(documents)
        outcome.ledger_calls = sum(1 for r in requests if not r["path"].startswith("/_sandbox"))
        outcome.rate_limited = sum(1 for r in requests if r["status"] == 429)
        if len(documents) != ledger.items:
            raise DemoFailed(
                f"{ledger.name} holds {len(documents)} purchase documents, expected exactly {ledger.items}"
            )


def _print_summary(outcomes: list[Outcome]) -> None:
    print("\n== Summary")
    header = (
        "Ledger",
        "Organisation",
        "Status",
        *[t.replace("_", " ") for t in LIST_TYPES],
        "Published",
        "Attached",
        "In ledger",
        "Calls",
        "429s",
    )
    rows = [
        (
            o.ledger.name,
            o.organisation,
            o.status,
            *[
                f"{o.lists[t][0]}" + (f" ({o.lists[t][1]} arch.)" if o.lists[t][1] else "")
                if t in o.lists
                else "n/a"
                for t in LIST_TYPES
            ],
            f"{o.published}/{o.ledger.items}",
            f"{o.attached}/{o.ledger.items}",
            str(o.documents_in_ledger),
            str(o.ledger_calls),
            str(o.rate_limited),
        )
        for o in outcomes
    ]
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def run_demo(port: int = 0) -> int:
    runtime = LocalRuntime(port=port or free_port(), auto_consent=True, scheduler_interval_seconds=3600)
    outcomes = [Outcome(ledger) for ledger in LEDGERS]
    try:
        print("Starting the local runtime (moto, five ledger simulators, gateway, pollers)...", flush=True)
        runtime.start()
        for line in runtime.describe():
            print("  " + line)
        scenario = Scenario(runtime)
        _step("Connect a business to each ledger")
        for outcome in outcomes:
            scenario.connect(outcome.ledger, outcome)
        _step("Import the six lists")
        for outcome in outcomes:
            scenario.wait_for_lists(outcome.ledger, outcome)
            counts = ", ".join(f"{n} {t.replace('_', ' ')}" for t, (n, _a) in outcome.lists.items())
            print(f"{outcome.ledger.name:<18} {counts}")
        _step("Capture and publish items with documents (25 to Xero, 5 to each other ledger)")
        submitted = {outcome.ledger.provider: scenario.publish(outcome.ledger) for outcome in outcomes}
        print(
            f"submitted {sum(len(items) for items in submitted.values())} items; Xero allows 60 calls a minute, so expect a wait"
        )
        for outcome in outcomes:
            scenario.wait_for_items(outcome.ledger, submitted[outcome.ledger.provider], outcome)
            print(
                f"{outcome.ledger.name:<18} {outcome.published} published, {outcome.attached} documents attached"
            )
        _step("Check each ledger's books")
        for outcome in outcomes:
            scenario.check_ledger(outcome.ledger, outcome)
    except DemoFailed as failure:
        print(f"\nDEMO FAILED: {failure}", flush=True)
        return 1
    except Exception as error:  # any other failure still ends with a reason and a non-zero exit
        print(f"\nDEMO FAILED: {type(error).__name__}: {error}", flush=True)
        return 1
    finally:
        runtime.stop()
    _print_summary(outcomes)
    print("\nDemo finished: every item was published exactly once, with its document, in its ledger.")
    return 0
