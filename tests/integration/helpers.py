"""Building captured items from what the lists API returns, as the capture product would."""

from __future__ import annotations

from typing import Any

import httpx


def records(api: httpx.Client, list_type: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.get(
            f"/v1/lists/{list_type}",
            params={"limit": 500, **params, **({"cursor": cursor} if cursor else {})},
        )
        assert page.status_code == 200, page.text
        found += page.json()["records"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return found


def by_code(api: httpx.Client, list_type: str, code: str) -> dict[str, Any]:
    return next(r for r in records(api, list_type, status="all") if r["code"] == code)


def cost_item(
    api: httpx.Client,
    item_id: str,
    *,
    supplier: str = "Brightside Office Supplies",
    date: str = "2026-11-02",
    category_code: str = "429",
    tax_code: str = "INPUT2",
    net: float = 100.0,
    document: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    category = by_code(api, "categories", category_code)
    tax = by_code(api, "tax_rates", tax_code)
    tax_amount = round(net * (tax["rate"] or 0) / 100, 2)
    item: dict[str, Any] = {
        "id": item_id,
        "type": "cost",
        "supplier": {"name": supplier},
        "date": date,
        "due_date": "2026-12-02",
        "reference": f"INV-{item_id}",
        "currency": "GBP",
        "totals": {"net": net, "tax": tax_amount, "gross": round(net + tax_amount, 2)},
        "lines": [
            {
                "description": "Printer paper",
                "amount": net,
                "tax_amount": tax_amount,
                "category": category["id"],
                "tax_rate": tax["id"],
            }
        ],
        "edited_fields": [],
    }
    if document:
        item["document"] = {
            "key": f"docs/{item_id}.pdf",
            "file_name": f"{item_id}.pdf",
            "content_type": "application/pdf",
        }
    item.update(overrides)
    return item
