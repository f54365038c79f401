"""Supplier and customer rules: the API, validation against the imported lists, lookup for
publishing, and a saved auto-publish rule queueing the supplier's ready waiting items."""

from __future__ import annotations

from typing import Any

import pytest

from ledgerlink.models.rules import RuleKind
from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.rules import RuleRepository
from tests.integration.conftest import Service
from tests.integration.helpers import by_code, cost_item, records

SUPPLIER = "Avon Security & Sons"


@pytest.fixture
def connected(service: Service) -> Service:
    service.connect_xero()
    return service


def _named(api, list_type: str, name: str) -> dict[str, Any]:
    return next(r for r in records(api, list_type, status="all") if r["name"] == name)


def test_rules_are_saved_read_listed_and_deleted_per_kind(connected: Service):
    admin = connected.client()
    expenses = by_code(admin, "categories", "429")
    vat = by_code(admin, "tax_rates", "INPUT2")
    supplier = _named(admin, "contacts", SUPPLIER)
    north = next(p for p in records(admin, "projects") if p["dimension"] == 2)
    rule = {
        "name": SUPPLIER,
        "contact": supplier["id"],
        "category": expenses["id"],
        "tax_rate": vat["id"],
        "project_2": north["id"],
        "destination": "bill_draft",
        "bank_account": records(admin, "bank_accounts")[0]["id"],
        "auto_publish": False,
    }
    saved = admin.put("/v1/rules/suppliers/sup-001", json=rule)
    assert saved.status_code == 200, saved.text
    assert saved.json()["rule"]["rule"]["category"] == expenses["id"] and saved.json()["queued_items"] == []
    assert admin.put("/v1/rules/customers/avon security", json={"name": "Avon Security"}).status_code == 200

    got = admin.get("/v1/rules/suppliers/sup-001").json()
    assert (got["kind"], got["key"], got["updated_by"]) == ("supplier", "sup-001", "admin@biz-1")
    assert [r["key"] for r in admin.get("/v1/rules/suppliers").json()["rules"]] == ["sup-001"]
    assert [r["key"] for r in admin.get("/v1/rules/customers").json()["rules"]] == ["avon security"]
    standard = connected.client(role="standard")
    assert standard.get("/v1/rules/suppliers/sup-001").status_code == 200  # anyone may read
    assert standard.put("/v1/rules/suppliers/sup-001", json=rule).status_code == 403
    assert standard.delete("/v1/rules/suppliers/sup-001").status_code == 403
    assert connected.client(business="biz-2").get("/v1/rules/suppliers/sup-001").status_code == 404

    assert admin.delete("/v1/rules/suppliers/sup-001").status_code == 204
    assert admin.get("/v1/rules/suppliers/sup-001").status_code == 404
    assert admin.delete("/v1/rules/suppliers/sup-001").status_code == 404


def test_every_reference_is_checked_against_the_imported_lists(connected: Service):
    admin = connected.client()
    expenses = by_code(admin, "categories", "429")
    archived_tax = next(r for r in records(admin, "tax_rates", status="archived"))
    dimension_1 = next(p for p in records(admin, "projects") if p["dimension"] == 1)

    def refused(body: dict[str, Any], field: str, words: str) -> None:
        response = admin.put("/v1/rules/suppliers/acme", json={"name": "Acme", **body})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field, response.json()
        assert words in response.json()["error"]["message"], response.json()

    refused({"category": "cat_notimportedatall"}, "category", "not in the imported categories")
    refused({"tax_rate": archived_tax["id"]}, "tax_rate", "archived")
    refused({"contact": expenses["id"]}, "contact", "contacts record id")  # a category is not a contact
    refused({"project_2": dimension_1["id"]}, "project_2", "second tracking dimension")
    refused({"destination": "bill"}, "destination", "bill_awaiting_payment")  # Xero's own choices
    bad_key = admin.put("/v1/rules/suppliers/acme!", json={"name": "Acme"})
    assert bad_key.status_code == 400 and bad_key.json()["error"]["field"] == "key"
    missing_name = admin.put("/v1/rules/suppliers/acme", json={"category": expenses["id"]})
    assert missing_name.status_code == 422 and missing_name.json()["error"]["field"] == "name"
    assert admin.get("/v1/rules/suppliers").json()["rules"] == []


def test_rules_need_a_connection(service: Service):
    response = service.client().put("/v1/rules/suppliers/acme", json={"name": "Acme"})
    assert response.status_code == 404


def test_rule_lookup_for_publishing_by_key_then_normalised_name(connected: Service):
    admin = connected.client()
    repository = RuleRepository(Table(connected.session.client("dynamodb"), connected.resources.table_name))
    admin.put(
        "/v1/rules/suppliers/cap-sup-9", json={"name": "Brightside Office Supplies Ltd", "auto_publish": True}
    )
    admin.put("/v1/rules/suppliers/brightside office supplies", json={"name": "Brightside Office Supplies"})
    admin.put("/v1/rules/customers/cap-cus-1", json={"name": "Brightside Office Supplies"})

    by_key = repository.for_party("biz-1", "supplier", key="cap-sup-9", name="Someone Else")
    assert by_key is not None and by_key.auto_publish is True
    # By name: the rule keyed by the normalised name itself wins over another of the same name.
    by_name = repository.for_party(
        "biz-1", "supplier", key="unknown-key", name="BRIGHTSIDE OFFICE SUPPLIES LIMITED"
    )
    assert by_name is not None and by_name.name == "Brightside Office Supplies"
    customer = repository.for_party("biz-1", RuleKind.CUSTOMER, key=None, name="Brightside Office Supplies")
    assert customer is not None
    assert repository.for_party("biz-1", "supplier", key=None, name="Nobody Known") is None
    assert repository.for_party("biz-other", "supplier", key="cap-sup-9", name="x") is None


def test_saving_an_auto_publish_rule_queues_the_suppliers_ready_waiting_items(connected: Service):
    admin = connected.client()
    admin.put("/v1/connection/settings", json={"auto_publish": True})
    ready = cost_item(admin, "cap-ready", supplier=SUPPLIER)
    ready["supplier"]["key"] = "sup-avon"
    # Coded to an archived account: the ledger would refuse it, so its plan is not ready.
    not_ready = cost_item(admin, "cap-uncoded", supplier=SUPPLIER, category_code="450")
    not_ready["supplier"]["key"] = "sup-avon"
    someone_else = cost_item(admin, "cap-other", supplier="Brightside Office Supplies")
    for item in (ready, not_ready, someone_else):
        assert admin.post("/v1/items", json={"item": item, "publish": False}).json()["status"] == "waiting"

    # Saved without auto-publish: nothing moves.
    assert admin.put("/v1/rules/suppliers/sup-avon", json={"name": SUPPLIER}).json()["queued_items"] == []
    saved = admin.put("/v1/rules/suppliers/sup-avon", json={"name": SUPPLIER, "auto_publish": True})
    assert saved.status_code == 200, saved.text
    assert saved.json()["queued_items"] == ["cap-ready"]
    assert admin.get("/v1/items/cap-ready").json()["status"] == "queued"
    connected.drain()
    assert admin.get("/v1/items/cap-ready").json()["status"] == "published"
    assert admin.get("/v1/items/cap-uncoded").json()["status"] == "waiting"  # its plan is not complete
    assert admin.get("/v1/items/cap-other").json()["status"] == "waiting"  # another supplier's


def test_auto_publish_rules_wait_for_the_connections_automatic_publishing(connected: Service):
    admin = connected.client()
    admin.post(
        "/v1/items", json={"item": cost_item(admin, "cap-manual", supplier=SUPPLIER), "publish": False}
    )
    saved = admin.put("/v1/rules/suppliers/avon", json={"name": SUPPLIER, "auto_publish": True})
    assert saved.json()["queued_items"] == []  # Automatic publishing is off in the settings
    assert admin.get("/v1/items/cap-manual").json()["status"] == "waiting"


def test_a_rule_edit_re_resolves_the_suppliers_waiting_items(connected: Service):
    admin = connected.client()
    general, insurance = by_code(admin, "categories", "429"), by_code(admin, "categories", "433")
    captured = cost_item(admin, "cap-recode", supplier=SUPPLIER)
    captured["supplier"]["key"] = "sup-avon"
    edited = cost_item(admin, "cap-edited", supplier=SUPPLIER, edited_fields=["category"])
    edited["supplier"]["key"] = "sup-avon"
    for item in (captured, edited):
        assert admin.post("/v1/items", json={"item": item, "publish": False}).json()["status"] == "waiting"

    def coded(item_id: str) -> tuple[str, str]:
        line = admin.post(f"/v1/items/{item_id}/preview").json()["plan"]["lines"][0]
        return line["category"]["code"], line["category"]["source"]

    assert coded("cap-recode") == ("429", "captured")
    assert (
        admin.put(
            "/v1/rules/suppliers/sup-avon", json={"name": SUPPLIER, "category": insurance["id"]}
        ).status_code
        == 200
    )
    assert coded("cap-recode") == ("433", "supplier_rule")
    # The rule edited again: the item still waiting follows it, with nothing else to do.
    assert (
        admin.put(
            "/v1/rules/suppliers/sup-avon", json={"name": SUPPLIER, "category": general["id"]}
        ).status_code
        == 200
    )
    assert coded("cap-recode") == ("429", "supplier_rule")
    assert coded("cap-edited") == ("429", "manual_edit")  # a person's edit wins over any rule
    assert admin.delete("/v1/rules/suppliers/sup-avon").status_code == 204
    assert coded("cap-recode") == ("429", "captured")
    assert admin.get("/v1/items/cap-recode").json()["status"] == "waiting"
