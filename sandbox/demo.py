"""`ledgerlink demo`: start the local runtime, connect a Xero organisation through the real OAuth
redirect dance, import the lists, publish 25 captured items with documents, and print what
happened. Exits non-zero, saying why, if any step fails."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import httpx

from sandbox.devauth import mint_token
from sandbox.local import LocalRuntime, free_port

BUSINESS = "demo-business"
ITEM_COUNT = 25
LIST_TYPES = ("categories", "contacts", "tax_rates", "items", "projects", "bank_accounts")
WAIT_SECONDS = 120


class DemoFailed(Exception):
    pass


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


def _pdf(number: int) -> bytes:
    return (
        f"%PDF-1.4\n% ledgerlink demo receipt {number}\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    ).encode()


def _items(lists: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    categories = [r for r in lists["categories"] if r["status"] == "active" and "cost" in r["usable_for"]]
    tax_rates = [
        r
        for r in lists["tax_rates"]
        if r["status"] == "active" and "cost" in r["applies_to"] and (r["rate"] or 0) > 0
    ]
    suppliers = [r for r in lists["contacts"] if r["status"] == "active" and r["is_supplier"]]
    if not categories or not tax_rates or not suppliers:
        raise DemoFailed(
            "the imported lists have no cost category, purchase tax rate or supplier to code items with"
        )
    items = []
    today = date(2026, 11, 2)
    for number in range(1, ITEM_COUNT + 1):
        net = round(12.5 * number + 7.25, 2)
        rate = tax_rates[number % len(tax_rates)]
        tax = round(net * (rate["rate"] or 0) / 100, 2)
        # Every fifth supplier is new to the ledger: Xero creates it from the name.
        supplier = (
            {"name": f"Demo New Supplier {number}"}
            if number % 5 == 0
            else {"name": suppliers[number % len(suppliers)]["name"]}
        )
        items.append(
            {
                "id": f"demo-{number:03d}",
                "type": "cost",
                "supplier": supplier,
                "date": (today + timedelta(days=number % 20)).isoformat(),
                "due_date": (today + timedelta(days=30 + number % 20)).isoformat(),
                "reference": f"DEMO-INV-{number:04d}",
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
                    "key": f"documents/demo-{number:03d}.pdf",
                    "file_name": f"receipt-{number:03d}.pdf",
                    "content_type": "application/pdf",
                },
                "edited_fields": [],
            }
        )
    return items


def _scenario(runtime: LocalRuntime) -> dict[str, Any]:
    import boto3

    summary: dict[str, Any] = {}
    api = httpx.Client(
        base_url=runtime.api_url,
        headers={"Authorization": f"Bearer {mint_token(BUSINESS, 'admin')}"},
        timeout=60,
    )
    browser = httpx.Client(timeout=60, follow_redirects=True)

    _step("Connect Xero (OAuth with PKCE through the simulator's consent)")
    started = _ok(api.post("/v1/connection", json={"provider": "xero"}), 201)
    landed = _ok(browser.get(started["authorize_url"]))
    print(f"callback answered: status={landed['status']}")
    if landed["status"] == "choose_organisation":
        organisations = _ok(api.get("/v1/connection/organisations"))["organisations"]
        print("organisations offered: " + ", ".join(o["name"] for o in organisations))
        chosen = _ok(
            api.post("/v1/connection/organisation", json={"organisation_id": organisations[0]["id"]})
        )
        print(f"chose {chosen['organisation']['name']}")
    connection = _ok(api.get("/v1/connection"))
    summary["organisation"] = connection["organisation"]["name"]
    summary["status"] = connection["status"]

    _step("Import the six lists")
    connection = _wait_for(
        "the first import of all six lists",
        lambda: (
            (c := _ok(api.get("/v1/connection")))
            and all(c["lists"].get(t, {}).get("refreshed_at") for t in LIST_TYPES)
            and c
        ),
    )
    lists = {t: _all_records(api, t) for t in LIST_TYPES}
    summary["lists"] = {
        t: (len(records), sum(r["status"] == "archived" for r in records)) for t, records in lists.items()
    }
    for list_type, (count, archived) in summary["lists"].items():
        print(f"{list_type:<14} {count:>6} records ({archived} archived)")

    _step(f"Capture and publish {ITEM_COUNT} items with documents")
    s3 = boto3.client("s3")
    bucket = runtime.resources.documents_bucket if runtime.resources else ""
    items = _items(lists)
    for number, item in enumerate(items, start=1):
        s3.put_object(
            Bucket=bucket, Key=item["document"]["key"], Body=_pdf(number), ContentType="application/pdf"
        )
        _ok(api.post("/v1/items", json={"item": item, "publish": True}), 201)
    print(f"submitted {len(items)} items in {time.monotonic() - _STARTED:.1f}s")

    def all_settled() -> list[dict[str, Any]] | None:
        views = [_ok(api.get(f"/v1/items/{item['id']}")) for item in items]
        pending = [
            v
            for v in views
            if v["status"] in ("queued", "retrying")
            or (v["status"] == "published" and not v["attachment_id"])
        ]
        return None if pending else views

    views = _wait_for("every item to be published", all_settled)
    failed = [v for v in views if v["status"] != "published"]
    if failed:
        reasons = "; ".join(
            f"{v['item']['id']}: {v['status']} ({(v.get('last_error') or {}).get('message')})"
            for v in failed[:5]
        )
        raise DemoFailed(f"{len(failed)} items were not published: {reasons}")
    summary["published"] = len(views)
    summary["attached"] = sum(1 for v in views if v["attachment_id"])

    _step("Check the ledger")
    writes = _ok(browser.get(f"{runtime.simulator('xero').url}/_sandbox/writes"))
    entries = writes if isinstance(writes, list) else writes.get("writes", [])
    bills = {
        w.get("id")
        for w in entries
        if w.get("kind") in ("Invoice", "invoice") and (w.get("body") or {}).get("Type") == "ACCPAY"
    }
    attachments = [w for w in entries if str(w.get("kind", "")).lower() == "attachment"]
    requests = _ok(browser.get(f"{runtime.simulator('xero').url}/_sandbox/requests"))
    summary["ledger_calls"] = sum(
        1 for r in requests if "/api.xro/" in r["path"] or r["path"].startswith("/connect")
    )
    summary["rate_limited"] = sum(1 for r in requests if r["status"] == 429)
    summary["bills_in_ledger"] = len(bills)
    summary["attachments_in_ledger"] = len(attachments)
    if len(bills) != ITEM_COUNT:
        raise DemoFailed(f"the ledger holds {len(bills)} bills, expected {ITEM_COUNT}")
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    print("\n== Summary")
    rows = [
        ("Organisation", summary["organisation"]),
        ("Connection status", summary["status"]),
        *[(f"List: {t}", f"{n} ({a} archived)") for t, (n, a) in summary["lists"].items()],
        ("Items published", f"{summary['published']} of {ITEM_COUNT}"),
        ("Documents attached", f"{summary['attached']} of {ITEM_COUNT}"),
        ("Calls to Xero", summary["ledger_calls"]),
        ("Xero rate limits honoured (429)", summary["rate_limited"]),
        ("Bills in Xero (simulator)", summary["bills_in_ledger"]),
        ("Attachments in Xero (simulator)", summary["attachments_in_ledger"]),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


def run_demo(port: int = 0) -> int:
    runtime = LocalRuntime(
        port=port or free_port(), auto_consent=True, providers=("xero",), scheduler_interval_seconds=3600
    )
    try:
        print("Starting the local runtime (moto, simulators, gateway, pollers)...", flush=True)
        runtime.start()
        for line in runtime.describe():
            print("  " + line)
        summary = _scenario(runtime)
    except DemoFailed as failure:
        print(f"\nDEMO FAILED: {failure}", flush=True)
        return 1
    except Exception as error:  # any other failure still ends with a reason and a non-zero exit
        print(f"\nDEMO FAILED: {type(error).__name__}: {error}", flush=True)
        return 1
    finally:
        runtime.stop()
    _print_summary(summary)
    print("\nDemo finished: every item was published exactly once.")
    return 0
