"""Lists and Merge Lists through `ledgerlink local` over real HTTP (one runtime for the file):
each of the five ledgers imports and refreshes its six lists; Change connection (Xero to another
Xero organisation) and Disconnect-keeping-lists then QuickBooks are each followed by a merge, after
which the supplier's items publish with the new organisation's ids."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest

from ledgerlink.models.common import ListType
from sandbox.devauth import mint_token
from tests.integration.helpers import by_code, records

T = TypeVar("T")
PROVIDERS = ("xero", "quickbooks", "sage", "freeagent", "kashflow")
LIST_TYPES = tuple(t.value for t in ListType)
FIRST_XERO = "Demo Company (UK)"
PREVIEW = "/v1/connection/merge-lists/preview"
APPLY = "/v1/connection/merge-lists/apply"
WAIT_SECONDS = 120
KASHFLOW_LOGIN = {"username": "demo", "password": "demo-password", "memorable_word": "ledgerlink"}


def _eventually(check: Callable[[], T | None], what: str, seconds: float = WAIT_SECONDS) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def _api(local: dict[str, str], business: str) -> httpx.Client:
    token = mint_token(business, "admin")
    return httpx.Client(
        base_url=local["API"].removesuffix("/v1"), headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def _sign_in(
    api: httpx.Client, started: httpx.Response, organisation: Callable[[dict[str, Any]], bool]
) -> None:
    """Follow the ledger's sign-in (the simulators consent at once) and, where the consent covers
    several organisations, choose the one ``organisation`` accepts."""
    assert started.status_code in (200, 201), started.text
    landed = httpx.get(started.json()["authorize_url"], follow_redirects=True, timeout=60)
    assert landed.status_code == 200, landed.text
    if landed.json()["status"] == "choose_organisation":
        offered = api.get("/v1/connection/organisations").json()["organisations"]
        chosen = next(o for o in offered if organisation(o))
        answer = api.post("/v1/connection/organisation", json={"organisation_id": chosen["id"]})
        assert answer.status_code == 200, answer.text


def _connect(api: httpx.Client, provider: str, organisation: str | None = None) -> None:
    if provider == "kashflow":
        started = api.post("/v1/connection", json={"provider": provider, "credentials": KASHFLOW_LOGIN})
        assert started.status_code == 201, started.text
        return
    _sign_in(
        api,
        api.post("/v1/connection", json={"provider": provider}),
        lambda offered: organisation is None or offered["name"] == organisation,
    )


def _imported(api: httpx.Client, after: str = "") -> dict[str, Any]:
    """The connection once each of its six lists has been refreshed (later than ``after``)."""

    def done() -> dict[str, Any] | None:
        connection: dict[str, Any] = api.get("/v1/connection").json()
        lists = connection.get("lists", {})
        fresh = set(lists) == set(LIST_TYPES) and all(
            (lists[t]["refreshed_at"] or "") > after and not lists[t].get("last_error") for t in LIST_TYPES
        )
        return connection if fresh else None

    return _eventually(done, "the six lists")


def _named(api: httpx.Client, list_type: str, name: str) -> dict[str, Any]:
    return next(r for r in records(api, list_type, status="all") if r["name"] == name)


def _entry(proposal: dict[str, Any], list_type: str, old_id: str) -> dict[str, Any]:
    entries = next(p for p in proposal["lists"] if p["list_type"] == list_type)["entries"]
    return next(e for e in entries if e["old_id"] == old_id)


def _bill(supplier: dict[str, str], item_id: str, *, coded: dict[str, str] | None = None) -> dict[str, Any]:
    """A 100 + 20 VAT cost item for ``supplier``; uncoded unless ``coded`` gives category and tax."""
    return {
        "id": item_id, "type": "cost", "supplier": supplier, "date": "2026-11-02", "due_date": "2026-12-02",
        "reference": f"INV-{item_id}", "currency": "GBP", "totals": {"net": 100.0, "tax": 20.0, "gross": 120.0},
        "lines": [{"description": "Courier runs", "amount": 100.0, "tax_amount": 20.0, **(coded or {})}],
    }  # fmt: skip


def _capture(api: httpx.Client, item: dict[str, Any], *, publish: bool) -> None:
    response = api.post("/v1/items", json={"item": item, "publish": publish})
    assert response.status_code == 201, response.text


def _published(api: httpx.Client, *item_ids: str) -> None:
    def done() -> bool:
        views = [api.get(f"/v1/items/{item_id}").json() for item_id in item_ids]
        failed = [
            (v["item"]["id"], v["status"], v["last_error"])
            for v in views
            if v["status"] in ("rejected", "failed", "held")
        ]
        assert not failed, failed
        return all(v["status"] == "published" for v in views)

    _eventually(done, f"{', '.join(item_ids)} to publish")


def _merge(api: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
    preview = api.post(PREVIEW)
    assert preview.status_code == 200, preview.text
    applied = api.post(APPLY, json={"proposal_id": preview.json()["proposal_id"]})
    assert applied.status_code == 200, applied.text
    assert api.get("/v1/connection").json()["merge_pending"] is False
    return preview.json(), applied.json()


def test_every_ledger_imports_its_six_lists_and_refreshes_them_writing_nothing_unchanged(
    local: dict[str, str],
):
    apis = {provider: _api(local, f"e2e-lists-{provider}") for provider in PROVIDERS}
    for provider, api in apis.items():
        _connect(api, provider)
    imported = {provider: _imported(api) for provider, api in apis.items()}

    for provider, api in apis.items():
        lists = imported[provider]["lists"]
        for list_type in LIST_TYPES:
            everything = records(api, list_type, status="all")
            assert len(everything) == lists[list_type]["record_count"] > 0, (provider, list_type)
            assert len({r["id"] for r in everything}) == len(everything)
        # Both pickers of the capture product: each project that codes a line names its dimension
        # and the dimension's name; the rest (Xero Projects API projects) say they code no line.
        projects = records(api, "projects")
        for_lines = [p for p in projects if p["raw"].get("line_codable", True)]
        assert for_lines and all(p["dimension"] in (1, 2) and p["dimension_name"] for p in for_lines), provider
        others = [p for p in projects if p not in for_lines]
        assert (len(others) > 0) == (provider == "xero"), (provider, others)
        assert all(p["dimension"] is None and p["dimension_name"] == "Xero Projects" for p in others)
        assert records(api, "categories", usable_for="cost"), provider
        assert records(api, "contacts", role="supplier"), provider

    # A refresh with nothing changed in any ledger: every list refreshed, nothing added, changed or deleted.
    for api in apis.values():
        started = api.post("/v1/connection/refresh")
        assert started.status_code == 202, started.text
    for provider, api in apis.items():
        before = imported[provider]["lists"]
        after = _imported(api, after=max(view["refreshed_at"] for view in before.values()))["lists"]
        for list_type in LIST_TYPES:
            counts = after[list_type]["last_counts"]
            assert (counts["added"], counts["changed"], counts["deleted"]) == (0, 0, 0), (provider, list_type)
            assert after[list_type]["record_count"] == before[list_type]["record_count"]


def test_change_connection_to_another_xero_organisation_then_merge_then_publish(local: dict[str, str]):
    api = _api(local, "e2e-merge-xero")
    _connect(api, "xero", FIRST_XERO)
    first = _imported(api)
    # A supplier both Xero organisations have: "Mendip Couriers Ltd" in the second, where Insurance is 7600.
    supplier = _named(api, "contacts", "Mendip Couriers & Co")
    insurance, vat = by_code(api, "categories", "433"), by_code(api, "tax_rates", "INPUT2")
    rule = {
        "name": supplier["name"],
        "contact": supplier["id"],
        "category": insurance["id"],
        "tax_rate": vat["id"],
    }
    assert api.put("/v1/rules/suppliers/mendip", json=rule).status_code == 200
    party = {"name": supplier["name"], "key": "mendip", "id": supplier["id"]}
    waiting = _bill(party, "e2e-x-waiting", coded={"category": insurance["id"], "tax_rate": vat["id"]})
    _capture(api, waiting, publish=False)

    _sign_in(
        api,
        api.post("/v1/connection/change", json={}),
        lambda offered: offered["id"] != first["organisation"]["id"],
    )
    changed = _imported(api)
    assert changed["organisation"]["id"] != first["organisation"]["id"] and changed["merge_pending"] is True

    proposal, result = _merge(api)
    category = _entry(proposal, "categories", insurance["id"])
    assert (category["reason"], category["new_code"]) == ("same_name", "7600")
    assert _entry(proposal, "contacts", supplier["id"])["new_name"] == "Mendip Couriers Ltd"
    assert (result["rules_rewritten"], result["items_rewritten"]) == (1, 1)

    # The item waiting since before the change, and one captured now with nothing but the supplier.
    _capture(api, _bill({"name": supplier["name"], "key": "mendip"}, "e2e-x-new"), publish=True)
    assert api.post("/v1/items/e2e-x-waiting/publish").status_code == 202
    _published(api, "e2e-x-waiting", "e2e-x-new")

    new_supplier = _named(api, "contacts", "Mendip Couriers Ltd")
    bills = httpx.get(
        f"{local['xero']}/_sandbox/writes", params={"kind": "Invoice", "org": changed["organisation"]["id"]}
    ).json()
    sent = {b["body"]["InvoiceNumber"]: b["body"] for b in bills}
    for item_id in ("e2e-x-waiting", "e2e-x-new"):
        bill = sent[f"INV-{item_id}"]
        assert bill["Contact"]["ContactID"] == new_supplier["remote_id"], bill
        assert [(line["AccountCode"], line["TaxType"]) for line in bill["LineItems"]] == [("7600", "INPUT2")]


def test_disconnect_keeping_lists_then_quickbooks_then_merge_then_publish(local: dict[str, str]):
    api = _api(local, "e2e-merge-qbo")
    _connect(api, "xero", FIRST_XERO)
    _imported(api)
    supplier = _named(api, "contacts", "Avon Security & Sons")
    expenses, vat = by_code(api, "categories", "429"), by_code(api, "tax_rates", "INPUT2")
    rule = {
        "name": supplier["name"],
        "contact": supplier["id"],
        "category": expenses["id"],
        "tax_rate": vat["id"],
    }
    assert api.put("/v1/rules/suppliers/avon", json=rule).status_code == 200
    party = {"name": supplier["name"], "key": "avon", "id": supplier["id"]}
    waiting = _bill(party, "e2e-q-waiting", coded={"category": expenses["id"], "tax_rate": vat["id"]})
    _capture(api, waiting, publish=False)

    disconnected = api.delete("/v1/connection", params={"keep_lists": "true"})
    assert disconnected.status_code == 200 and disconnected.json()["lists_kept"] is True, disconnected.text
    _connect(api, "quickbooks")
    connection = _imported(api)
    assert connection["merge_pending"] is True and connection["previous"]["provider"] == "xero"

    proposal, result = _merge(api)
    assert (proposal["from_provider"], proposal["to_provider"]) == ("xero", "quickbooks")
    assert _entry(proposal, "categories", expenses["id"])["new_name"] == "General Expenses"
    tax = _entry(proposal, "tax_rates", vat["id"])
    assert tax["reason"] == "same_rate"  # QuickBooks' only 20% purchase code
    assert (result["rules_rewritten"], result["items_rewritten"]) == (1, 1)

    _capture(api, _bill({"name": supplier["name"], "key": "avon"}, "e2e-q-new"), publish=True)
    assert api.post("/v1/items/e2e-q-waiting/publish").status_code == 202
    _published(api, "e2e-q-waiting", "e2e-q-new")

    vendor = _named(api, "contacts", supplier["name"])
    general = _named(api, "categories", "General Expenses")
    bills = httpx.get(f"{local['quickbooks']}/_sandbox/writes", params={"kind": "Bill"}).json()
    sent = {b["body"].get("DocNumber"): b["body"] for b in bills}
    for item_id in ("e2e-q-waiting", "e2e-q-new"):
        bill = sent[f"INV-{item_id}"]
        assert f"vendor:{bill['VendorRef']['value']}" == vendor["remote_id"], bill
        details = [line["AccountBasedExpenseLineDetail"] for line in bill["Line"]]
        assert [(d["AccountRef"]["value"], d["TaxCodeRef"]["value"]) for d in details] == [
            (general["remote_id"], tax["new_code"])
        ]
