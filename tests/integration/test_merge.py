"""Merge Lists end to end: Change connection (Xero -> Xero) and Disconnect-keeping-lists then
QuickBooks (Xero -> QuickBooks), merge, and publish what referred to the old lists; plus the bad
inputs (stale proposal, unknown overrides, apply twice, a standard user), undo, skipping a list,
and a merge too large for one DynamoDB transaction."""

from __future__ import annotations

from typing import Any

import pytest

from ledgerlink.models.rules import RuleKind
from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.rules import RuleRepository
from ledgerlink.storage.schema import business_pk, item_sk
from tests.integration.conftest import Service
from tests.integration.helpers import by_code, cost_item, records

PREVIEW = "/v1/connection/merge-lists/preview"
APPLY = "/v1/connection/merge-lists/apply"
UNDO = "/v1/connection/merge-lists/undo"
# A supplier both seeded Xero organisations have (the second calls it "Mendip Couriers Ltd", and gives
# its number SUP-00008 to Albion Builders Merchants), and one QuickBooks has too.
SHARED_SUPPLIER = "Mendip Couriers & Co"
XERO_SUPPLIER = "Avon Security & Sons"


def _table(service: Service) -> Table:
    return Table(service.session.client("dynamodb"), service.resources.table_name)


def _named(api, list_type: str, name: str) -> dict[str, Any]:
    return next(r for r in records(api, list_type, status="all") if r["name"] == name)


def _change_to_the_other_xero_organisation(service: Service) -> dict[str, Any]:
    admin = service.client()
    current = admin.get("/v1/connection").json()["organisation"]["id"]
    other = next(tenant for tenant in service.xero.orgs if tenant != current)
    started = admin.post("/v1/connection/change", json={})
    landed = service.consent(started.json()["authorize_url"], [other])
    assert landed.status_code == 200, landed.text
    service.drain()
    return admin.get("/v1/connection").json()


def _capture(api, item: dict[str, Any]) -> None:
    response = api.post("/v1/items", json={"item": item, "publish": False})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "waiting"


def _entry(proposal: dict[str, Any], list_type: str, old_id: str) -> dict[str, Any]:
    entries = next(p for p in proposal["lists"] if p["list_type"] == list_type)["entries"]
    return next(e for e in entries if e["old_id"] == old_id)


def _publish(service: Service, api, item_id: str) -> dict[str, Any]:
    assert api.post(f"/v1/items/{item_id}/publish").status_code == 202
    service.drain()
    view = api.get(f"/v1/items/{item_id}").json()
    assert view["status"] == "published", view["last_error"]
    return view


@pytest.fixture
def xero_with_rule_and_item(service: Service) -> dict[str, Any]:
    """Connected to the first Xero organisation, with a supplier rule and a waiting item that both
    refer to its records (Insurance 433, 20% VAT on expenses, Mendip Couriers)."""
    service.connect_xero()
    admin = service.client()
    insurance = by_code(admin, "categories", "433")
    vat = by_code(admin, "tax_rates", "INPUT2")
    supplier = _named(admin, "contacts", SHARED_SUPPLIER)
    saved = admin.put(
        "/v1/rules/suppliers/mendip",
        json={
            "name": SHARED_SUPPLIER,
            "contact": supplier["id"],
            "category": insurance["id"],
            "tax_rate": vat["id"],
        },
    )
    assert saved.status_code == 200, saved.text
    item = cost_item(admin, "cap-merge", supplier=SHARED_SUPPLIER, category_code="433")
    item["supplier"]["id"] = supplier["id"]
    _capture(admin, item)
    return {"insurance": insurance, "vat": vat, "supplier": supplier, "item": item}


# --- end to end -------------------------------------------------------------------------------------


def test_change_connection_then_merge_then_publish_xero_to_xero(service: Service, xero_with_rule_and_item):
    old = xero_with_rule_and_item
    admin = service.client()
    connection = _change_to_the_other_xero_organisation(service)
    assert connection["merge_pending"] is True

    preview = admin.post(PREVIEW)
    assert preview.status_code == 200, preview.text
    proposal = preview.json()
    assert (proposal["from_provider"], proposal["to_provider"]) == ("xero", "xero")
    assert (proposal["rules"], proposal["items"]) == (1, 1)
    category = _entry(proposal, "categories", old["insurance"]["id"])
    assert (category["reason"], category["new_code"]) == ("same_name", "7600")  # 433 -> 7600 Insurance
    assert (category["rules"], category["items"]) == (1, 1)
    # INPUT2 is Xero's own identity for the rate, not a code anyone chose: the name decides.
    assert _entry(proposal, "tax_rates", old["vat"]["id"])["reason"] == "same_name"
    contact = _entry(proposal, "contacts", old["supplier"]["id"])
    # Each organisation numbers its own contacts: the name decides, not the number.
    assert (contact["reason"], contact["new_name"]) == ("same_name", "Mendip Couriers Ltd")
    totals = next(p for p in proposal["lists"] if p["list_type"] == "categories")["totals"]
    assert totals["entries"] == 1 and totals["same_name"] == 1

    applied = admin.post(APPLY, json={"proposal_id": proposal["proposal_id"]})
    assert applied.status_code == 200, applied.text
    result = applied.json()
    assert (result["rules_rewritten"], result["items_rewritten"], result["write_mode"]) == (
        1,
        1,
        "transaction",
    )
    assert admin.get("/v1/connection").json()["merge_pending"] is False

    rule = admin.get("/v1/rules/suppliers/mendip").json()["rule"]
    assert rule["category"] == category["new_id"] and rule["contact"] == contact["new_id"]
    stored = admin.get("/v1/items/cap-merge").json()
    assert stored["item"]["lines"][0]["category"] == category["new_id"]
    assert stored["item"]["supplier"]["id"] == contact["new_id"] and stored["revision"] == 2

    _publish(service, admin, "cap-merge")
    bill = next(
        w for w in service.xero.writes(kind="Invoice") if w["body"]["InvoiceNumber"] == "INV-cap-merge"
    )
    line = bill["body"]["LineItems"][0]
    assert (line["AccountCode"], line["TaxType"]) == ("7600", "INPUT2")
    assert bill["body"]["Contact"]["Name"] == "Mendip Couriers Ltd"
    merged = [e for e in service.events() if e["detail-type"] == "lists.merged"]
    assert [e["detail"]["item_ids"] for e in merged] == [["cap-merge"]]


def test_disconnect_keeping_lists_then_quickbooks_then_merge_then_publish(service: Service):
    service.connect_xero()
    admin = service.client()
    expenses = by_code(admin, "categories", "429")
    vat = by_code(admin, "tax_rates", "INPUT2")
    supplier = _named(admin, "contacts", XERO_SUPPLIER)
    item = cost_item(admin, "cap-to-qbo", supplier=XERO_SUPPLIER)
    item["supplier"].update({"id": supplier["id"], "remote_id": supplier["remote_id"]})
    _capture(admin, item)
    admin.put(
        "/v1/rules/suppliers/avon",
        json={
            "name": XERO_SUPPLIER,
            "contact": supplier["id"],
            "category": expenses["id"],
            "destination": "bill_draft",
        },
    )
    assert admin.delete("/v1/connection", params={"keep_lists": "true"}).json()["lists_kept"] is True
    connection = service.connect("quickbooks")
    assert connection["merge_pending"] is True and connection["previous"]["provider"] == "xero"

    proposal = admin.post(PREVIEW).json()
    assert (proposal["from_provider"], proposal["to_provider"]) == ("xero", "quickbooks")
    category = _entry(proposal, "categories", expenses["id"])
    assert (category["reason"], category["new_name"]) == ("same_name", "General Expenses")
    tax = _entry(proposal, "tax_rates", vat["id"])
    assert (tax["reason"], tax["new_name"]) == ("same_rate", "20.0% S")  # one QuickBooks code for 20%
    contact = _entry(proposal, "contacts", supplier["id"])
    assert (contact["reason"], contact["new_name"]) == ("same_name", XERO_SUPPLIER)

    result = admin.post(APPLY, json={"proposal_id": proposal["proposal_id"]}).json()
    assert (result["rules_rewritten"], result["items_rewritten"]) == (1, 1)
    assert result["destinations_cleared"] == 1  # QuickBooks has no "bill_draft": the default applies
    rule = admin.get("/v1/rules/suppliers/avon").json()["rule"]
    assert rule["destination"] is None and rule["category"] == category["new_id"]

    view = _publish(service, admin, "cap-to-qbo")
    bill = next(
        w
        for w in service.simulator("quickbooks").writes(kind="Bill")
        if w["body"].get("DocNumber") == "INV-cap-to-qbo"
    )
    detail = bill["body"]["Line"][0]["AccountBasedExpenseLineDetail"]
    qbo_expenses = _named(admin, "categories", "General Expenses")
    qbo_vendor = _named(admin, "contacts", XERO_SUPPLIER)
    assert detail["AccountRef"]["value"] == qbo_expenses["remote_id"]
    assert detail["TaxCodeRef"]["value"] == tax["new_code"]
    assert f"vendor:{bill['body']['VendorRef']['value']}" == qbo_vendor["remote_id"]
    assert view["item"]["supplier"]["remote_id"] == qbo_vendor["remote_id"]  # not Xero's ContactID any more


# --- bad input -------------------------------------------------------------------------------------


@pytest.fixture
def proposal_after_change(service: Service, xero_with_rule_and_item) -> dict[str, Any]:
    _change_to_the_other_xero_organisation(service)
    preview = service.client().post(PREVIEW)
    assert preview.status_code == 200, preview.text
    return preview.json()


def test_a_proposal_is_stale_once_the_lists_were_refreshed(service: Service, proposal_after_change):
    admin = service.client()
    service.clock.advance(5)  # the refresh is stamped a moment later
    assert admin.post("/v1/connection/refresh", json={}).status_code in (200, 202)
    service.drain()
    stale = admin.post(APPLY, json={"proposal_id": proposal_after_change["proposal_id"]})
    assert (stale.status_code, stale.json()["error"]["code"]) == (409, "stale_proposal")
    assert "preview again" in stale.json()["error"]["message"]
    # Nothing changed; a new preview applies.
    assert admin.get("/v1/connection").json()["merge_pending"] is True
    fresh = admin.post(PREVIEW).json()
    assert admin.post(APPLY, json={"proposal_id": fresh["proposal_id"]}).status_code == 200


def test_overrides_naming_unknown_ids_are_refused(
    service: Service, proposal_after_change, xero_with_rule_and_item
):
    admin = service.client()
    proposal_id = proposal_after_change["proposal_id"]
    old_category = xero_with_rule_and_item["insurance"]["id"]

    unknown_old = admin.post(
        APPLY, json={"proposal_id": proposal_id, "overrides": {"cat_notinproposal": None}}
    )
    assert (unknown_old.status_code, unknown_old.json()["error"]["field"]) == (
        422,
        "overrides.cat_notinproposal",
    )
    unknown_new = admin.post(
        APPLY, json={"proposal_id": proposal_id, "overrides": {old_category: "cat_nosuchrecord"}}
    )
    assert (unknown_new.status_code, unknown_new.json()["error"]["field"]) == (
        422,
        f"overrides.{old_category}",
    )
    wrong_list = by_code(admin, "tax_rates", "INPUT2")["id"]
    refused = admin.post(APPLY, json={"proposal_id": proposal_id, "overrides": {old_category: wrong_list}})
    assert refused.status_code == 422 and "categories" in refused.json()["error"]["message"]
    bad_skip = admin.post(APPLY, json={"proposal_id": proposal_id, "skip": ["widgets"]})
    assert bad_skip.status_code == 422 and bad_skip.json()["error"]["field"].startswith("skip")
    assert admin.post(APPLY, json={"proposal_id": "no-such-proposal"}).status_code == 404
    assert admin.get("/v1/connection").json()["merge_pending"] is True  # nothing was applied


def test_an_override_replaces_the_proposed_entry(
    service: Service, proposal_after_change, xero_with_rule_and_item
):
    admin = service.client()
    old_category = xero_with_rule_and_item["insurance"]["id"]
    office = by_code(admin, "categories", "7500")  # Office Costs, in the new organisation
    result = admin.post(
        APPLY,
        json={"proposal_id": proposal_after_change["proposal_id"], "overrides": {old_category: office["id"]}},
    )
    assert result.status_code == 200, result.text
    assert admin.get("/v1/items/cap-merge").json()["item"]["lines"][0]["category"] == office["id"]


def test_applying_twice_answers_with_the_first_result_and_does_nothing_more(
    service: Service, proposal_after_change
):
    admin = service.client()
    body = {"proposal_id": proposal_after_change["proposal_id"]}
    first = admin.post(APPLY, json=body)
    revision = admin.get("/v1/items/cap-merge").json()["revision"]
    service.events()
    second = admin.post(APPLY, json=body)
    assert second.status_code == 200 and second.json() == first.json()
    assert admin.get("/v1/items/cap-merge").json()["revision"] == revision
    assert not [e for e in service.events() if e["detail-type"] == "lists.merged"]  # no second event


def test_a_standard_user_can_neither_preview_apply_nor_undo(service: Service, proposal_after_change):
    standard = service.client(role="standard")
    body = {"proposal_id": proposal_after_change["proposal_id"]}
    for path, payload in ((PREVIEW, None), (APPLY, body), (UNDO, body)):
        refused = standard.post(path, json=payload)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden"), path
    assert service.client().get("/v1/connection").json()["merge_pending"] is True


def test_nothing_to_merge_without_earlier_lists(service: Service):
    service.connect_xero()
    refused = service.client().post(PREVIEW)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "nothing_to_merge")


def test_another_business_cannot_apply_a_proposal(service: Service, proposal_after_change):
    service.connect_xero("biz-2")
    other = service.client(business="biz-2").post(
        APPLY, json={"proposal_id": proposal_after_change["proposal_id"]}
    )
    assert other.status_code == 404


# --- undo, skip, name-only rules ------------------------------------------------------------------


def test_undo_puts_back_what_the_merge_rewrote_within_seven_days(
    service: Service, proposal_after_change, xero_with_rule_and_item
):
    admin = service.client()
    old = xero_with_rule_and_item
    body = {"proposal_id": proposal_after_change["proposal_id"]}
    admin.post(APPLY, json=body)
    undone = admin.post(UNDO, json=body)
    assert undone.status_code == 200, undone.text
    assert (undone.json()["rules_restored"], undone.json()["items_restored"], undone.json()["kept"]) == (
        1,
        1,
        0,
    )
    assert admin.get("/v1/rules/suppliers/mendip").json()["rule"]["category"] == old["insurance"]["id"]
    item = admin.get("/v1/items/cap-merge").json()
    assert item["item"]["lines"][0]["category"] == old["insurance"]["id"] and item["revision"] == 3
    assert admin.get("/v1/connection").json()["merge_pending"] is True
    assert admin.post(UNDO, json=body).json() == undone.json()  # undo twice: the same answer
    again = admin.post(APPLY, json=body)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "stale_proposal")
    assert [
        e["detail"]["proposal_id"] for e in service.events() if e["detail-type"] == "lists.merge_undone"
    ] == [body["proposal_id"]]


def test_undo_keeps_what_changed_since_and_ends_after_seven_days(service: Service, proposal_after_change):
    admin = service.client()
    body = {"proposal_id": proposal_after_change["proposal_id"]}
    admin.post(APPLY, json=body)
    rule = admin.get("/v1/rules/suppliers/mendip").json()["rule"]
    admin.put("/v1/rules/suppliers/mendip", json={**rule, "auto_publish": True})  # edited after the merge
    undone = admin.post(UNDO, json=body).json()
    assert (undone["rules_restored"], undone["items_restored"], undone["kept"]) == (0, 1, 1)

    fresh = admin.post(PREVIEW).json()
    admin.post(APPLY, json={"proposal_id": fresh["proposal_id"]})
    service.clock.advance(8 * 24 * 3600)
    late = admin.post(UNDO, json={"proposal_id": fresh["proposal_id"]})
    assert (late.status_code, late.json()["error"]["code"]) == (409, "undo_expired")


def test_lists_can_be_skipped_one_at_a_time(service: Service, proposal_after_change, xero_with_rule_and_item):
    admin = service.client()
    old = xero_with_rule_and_item
    result = admin.post(
        APPLY, json={"proposal_id": proposal_after_change["proposal_id"], "skip": ["categories"]}
    )
    assert result.status_code == 200, result.text
    assert result.json()["lists"]["categories"]["skipped"] is True
    line = admin.get("/v1/items/cap-merge").json()["item"]["lines"][0]
    assert line["category"] == old["insurance"]["id"]  # left pointing at the old list
    assert line["tax_rate"] == _entry(proposal_after_change, "tax_rates", old["vat"]["id"])["new_id"]
    # A later preview offers what was skipped.
    again = admin.post(PREVIEW).json()
    assert [e["old_id"] for e in _list(again, "categories")] == [old["insurance"]["id"]]
    assert _list(again, "tax_rates") == []


def _list(proposal: dict[str, Any], list_type: str) -> list[dict[str, Any]]:
    return next(p for p in proposal["lists"] if p["list_type"] == list_type)["entries"]


def test_a_rule_known_by_name_only_is_linked_to_the_imported_contact(service: Service):
    service.connect_xero()
    admin = service.client()
    assert (
        admin.put("/v1/rules/suppliers/orwell", json={"name": "Orwell Cleaning Services"}).status_code == 200
    )
    _change_to_the_other_xero_organisation(service)
    proposal = admin.post(PREVIEW).json()
    entry = _entry(proposal, "contacts", "rule:supplier:orwell")
    assert (entry["reason"], entry["new_name"]) == ("same_name", "Orwell Cleaning Services Limited")
    result = admin.post(APPLY, json={"proposal_id": proposal["proposal_id"]}).json()
    assert result["rules_linked"] == 1
    assert admin.get("/v1/rules/suppliers/orwell").json()["rule"]["contact"] == entry["new_id"]


# --- more than one transaction holds ----------------------------------------------------------------


def _many_waiting_items(service: Service, count: int) -> None:
    admin = service.client()
    template = cost_item(admin, "cap-bulk-0", supplier=SHARED_SUPPLIER, category_code="433")
    for number in range(count):
        _capture(admin, {**template, "id": f"cap-bulk-{number}", "reference": f"INV-bulk-{number}"})


def _raw_item(service: Service, item_id: str) -> dict[str, Any]:
    raw = _table(service).get(business_pk("biz-1"), item_sk(item_id))
    assert raw is not None
    return raw


def test_a_merge_larger_than_one_transaction_is_staged_flipped_and_rolled_forward(service: Service):
    service.connect_xero()
    _many_waiting_items(service, 120)
    _change_to_the_other_xero_organisation(service)
    admin = service.client()
    proposal = admin.post(PREVIEW).json()
    assert proposal["items"] == 120
    result = admin.post(APPLY, json={"proposal_id": proposal["proposal_id"]}).json()
    assert (result["items_rewritten"], result["write_mode"]) == (120, "staged")
    new_category = _entry(proposal, "categories", proposal["lists"][0]["entries"][0]["old_id"])["new_id"]
    for number in (0, 60, 119):
        raw = _raw_item(service, f"cap-bulk-{number}")
        assert "staged_data" not in raw and new_category in raw["data"]
    assert admin.get("/v1/connection").json()["merge_pending"] is False


def test_a_staged_merge_cut_short_reads_whole_and_the_next_call_finishes_it(service: Service, monkeypatch):
    """The function stops after the flip, before the roll forward: every reader already sees the
    merged rows (through the committed operation), and applying again finishes the job."""
    from ledgerlink.storage.merge import AtomicWriter

    service.connect_xero()
    _many_waiting_items(service, 110)
    _change_to_the_other_xero_organisation(service)
    admin = service.client()
    proposal = admin.post(PREVIEW).json()
    new_category = proposal["lists"][0]["entries"][0]["new_id"]

    finish = AtomicWriter.roll_forward
    monkeypatch.setattr(AtomicWriter, "roll_forward", lambda *args, **kwargs: False)
    first = admin.post(APPLY, json={"proposal_id": proposal["proposal_id"]})
    assert first.status_code == 200 and first.json()["write_mode"] == "staged"
    raw = _raw_item(service, "cap-bulk-7")
    assert "staged_data" in raw and new_category not in raw["data"]  # not rolled forward...
    seen = admin.get("/v1/items/cap-bulk-7").json()  # ...yet every reader sees the merge whole
    assert seen["item"]["lines"][0]["category"] == new_category
    listed = admin.get("/v1/items", params={"status": "waiting", "limit": 200}).json()["items"]
    assert {i["item"]["lines"][0]["category"] for i in listed} == {new_category}

    monkeypatch.setattr(AtomicWriter, "roll_forward", finish)
    again = admin.post(APPLY, json={"proposal_id": proposal["proposal_id"]})
    assert again.json() == first.json()
    raw = _raw_item(service, "cap-bulk-7")
    assert "staged_data" not in raw and new_category in raw["data"]
    _publish(service, admin, "cap-bulk-7")


def test_a_staged_merge_meeting_a_concurrent_edit(service: Service, monkeypatch):
    """An item edited while the merge is being staged. Not staged yet: its condition fails, the write
    is abandoned before the flip and nothing visible changed (apply again). Staged already: the
    edit replaced the staged copy, so the roll forward applies the mapping to the edited item."""
    from ledgerlink.storage.merge import AtomicWriter

    service.connect_xero()
    _many_waiting_items(service, 105)
    _change_to_the_other_xero_organisation(service)
    admin = service.client()
    proposal = admin.post(PREVIEW).json()
    new_category = proposal["lists"][0]["entries"][0]["new_id"]
    stage = AtomicWriter._stage

    def edit_while_staging(item_id: str):
        calls = {"n": 0}

        def staging(self, row, operation_id):
            calls["n"] += 1
            if calls["n"] == 50:
                edited = admin.patch(f"/v1/items/{item_id}", json={"reference": f"INV-edited-{item_id}"})
                assert edited.status_code == 200, edited.text
            stage(self, row, operation_id)

        monkeypatch.setattr(AtomicWriter, "_stage", staging)
        return admin.post(APPLY, json={"proposal_id": proposal["proposal_id"]})

    # Rows are staged in key order: cap-bulk-99 comes last, cap-bulk-104 among the first.
    refused = edit_while_staging("cap-bulk-99")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "merge_conflict")
    for number in (0, 49, 99, 104):
        assert "staged_data" not in _raw_item(service, f"cap-bulk-{number}")
    assert admin.get("/v1/items/cap-bulk-0").json()["item"]["lines"][0]["category"] != new_category
    assert admin.get("/v1/connection").json()["merge_pending"] is True

    applied = edit_while_staging("cap-bulk-104")
    assert applied.status_code == 200 and applied.json()["items_rewritten"] == 105
    edited = admin.get("/v1/items/cap-bulk-104").json()["item"]
    assert edited["reference"] == "INV-edited-cap-bulk-104" and edited["lines"][0]["category"] == new_category


def test_rule_lookup_for_publishing_reads_a_staged_merge_whole(service: Service):
    repository = RuleRepository(_table(service))
    service.connect_xero()
    admin = service.client()
    admin.put("/v1/rules/suppliers/mendip", json={"name": SHARED_SUPPLIER})
    found = repository.for_party("biz-1", "supplier", key=None, name="MENDIP COURIERS LTD")
    assert found is not None and found.name == SHARED_SUPPLIER
    assert repository.for_party("biz-1", RuleKind.CUSTOMER, key=None, name=SHARED_SUPPLIER) is None
