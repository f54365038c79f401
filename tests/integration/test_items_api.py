"""The items API: list, edit by hand, preview what would be sent and why, ask to publish."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Service
from tests.integration.helpers import by_code, cost_item

SUPPLIER = "Avon Security & Sons"


@pytest.fixture
def connected(service: Service) -> Service:
    service.connect_xero()
    return service


def test_items_are_listed_by_status_with_a_cursor(connected: Service):
    api = connected.client()
    for number in range(5):
        api.post("/v1/items", json={"item": cost_item(api, f"cap-list-{number}", supplier=SUPPLIER), "publish": number < 2})
    connected.drain()
    waiting = api.get("/v1/items", params={"status": "waiting"}).json()["items"]
    assert sorted(i["item"]["id"] for i in waiting) == ["cap-list-2", "cap-list-3", "cap-list-4"]
    seen, cursor = [], None
    while True:
        page = api.get("/v1/items", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [i["item"]["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == [f"cap-list-{n}" for n in range(5)]
    assert api.get("/v1/items", params={"status": "lost"}).status_code == 400
    assert api.get("/v1/items", params={"cursor": "not-ours"}).json()["error"]["field"] == "cursor"


def test_the_preview_says_what_would_be_sent_and_where_each_value_came_from(connected: Service):
    api = connected.client()
    item = cost_item(api, "cap-preview", supplier=SUPPLIER)
    item["lines"][0].pop("tax_rate")
    api.post("/v1/items", json={"item": item, "publish": False})
    preview = api.post("/v1/items/cap-preview/preview").json()
    assert preview["ready"] is True
    line = preview["plan"]["lines"][0]
    assert (line["category"]["code"], line["category"]["source"]) == ("429", "captured")
    assert line["tax_rate"]["source"] == "ledger_default"  # the account's own default tax rate
    assert preview["plan"]["contact"]["name"] == SUPPLIER
    assert connected.xero.writes(kind="Invoice") == []  # a preview sends nothing


def test_a_manual_edit_is_a_new_revision_that_wins_over_everything(connected: Service):
    api = connected.client()
    api.post("/v1/items", json={"item": cost_item(api, "cap-edit", supplier=SUPPLIER), "publish": False})
    stationery = by_code(api, "categories", "461")
    item = api.get("/v1/items/cap-edit").json()["item"]
    lines = [{**item["lines"][0], "category": stationery["id"]}]
    edited = api.patch("/v1/items/cap-edit", json={"lines": lines, "reference": "INV-EDITED"})
    assert edited.status_code == 200, edited.text
    assert edited.json()["revision"] == 2
    assert set(edited.json()["item"]["edited_fields"]) == {"category", "reference"}
    preview = api.post("/v1/items/cap-edit/preview").json()
    assert preview["plan"]["lines"][0]["category"] == {**preview["plan"]["lines"][0]["category"], "code": "461", "source": "manual_edit"}

    broken = api.patch("/v1/items/cap-edit", json={"totals": {"net": 1, "tax": 0, "gross": 1}})
    assert (broken.status_code, broken.json()["error"]["code"]) == (422, "validation_failed")

    assert api.post("/v1/items/cap-edit/publish").status_code == 202
    connected.drain()
    published = api.get("/v1/items/cap-edit").json()
    assert published["status"] == "published"
    bill = next(w for w in connected.xero.writes(kind="Invoice") if w["body"]["InvoiceNumber"] == "INV-EDITED")
    assert bill["body"]["LineItems"][0]["AccountCode"] == "461"
    assert api.patch("/v1/items/cap-edit", json={"reference": "again"}).status_code == 409
    assert api.post("/v1/items/cap-edit/publish").status_code == 409


def test_a_rejected_item_is_fixed_by_an_edit_and_published(connected: Service):
    api = connected.client()
    item = cost_item(api, "cap-fix", supplier="Nobody Known Ltd")
    item["lines"][0].pop("category")
    api.post("/v1/items", json={"item": item, "publish": True})
    connected.drain()
    assert api.get("/v1/items/cap-fix").json()["status"] == "rejected"
    fixed_line = {**api.get("/v1/items/cap-fix").json()["item"]["lines"][0], "category": by_code(api, "categories", "429")["id"]}
    api.patch("/v1/items/cap-fix", json={"lines": [fixed_line]})
    api.post("/v1/items/cap-fix/publish")
    connected.drain()
    assert api.get("/v1/items/cap-fix").json()["status"] == "published"


def test_many_queued_items_are_taken_together_by_one_wake_up(connected: Service):
    api = connected.client()
    for number in range(12):
        api.post("/v1/items", json={"item": cost_item(api, f"cap-many-{number}", supplier=SUPPLIER), "publish": True})
    connected.drain()
    statuses = {api.get(f"/v1/items/cap-many-{n}").json()["status"] for n in range(12)}
    assert statuses == {"published"}
    assert len([w for w in connected.xero.writes(kind="Invoice") if w["action"] == "create"]) == 12
