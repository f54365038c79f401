"""The rest of the connection lifecycle: settings, reconnect (same organisation or nothing),
change connection, disconnect (keep or wipe lists), licences."""

from __future__ import annotations

import pytest

from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.lists import ListRepository
from tests.integration.conftest import Service
from tests.integration.helpers import by_code, cost_item


@pytest.fixture
def connected(service: Service) -> Service:
    service.connect_xero()
    return service


def _tenants(service: Service) -> dict[str, str]:
    return {org.name: tenant_id for tenant_id, org in service.xero.orgs.items()}


# --- settings ------------------------------------------------------------------------------------


def test_settings_are_validated_against_the_ledger_and_the_imported_lists(connected: Service):
    admin = connected.client()
    assert admin.get("/v1/connection/settings").json() == {
        "destinations": {},
        "bank_match": False,
        "default_tax_rate": None,
        "auto_publish": False,
        "list_refresh_minutes": 60,
    }
    no_vat = by_code(admin, "tax_rates", "NONE")
    saved = admin.put(
        "/v1/connection/settings",
        json={
            "destinations": {"cost": "bill_draft"},
            "bank_match": True,
            "default_tax_rate": no_vat["id"],
            "auto_publish": True,
        },
    )
    assert saved.status_code == 200, saved.text
    assert admin.get("/v1/connection").json()["settings"]["destinations"] == {"cost": "bill_draft"}

    wrong_destination = admin.put("/v1/connection/settings", json={"destinations": {"cost": "purchase_cash"}})
    assert (wrong_destination.status_code, wrong_destination.json()["error"]["field"]) == (
        422,
        "destinations.cost",
    )
    assert "bill_draft" in wrong_destination.json()["error"]["message"]
    unknown_tax = admin.put("/v1/connection/settings", json={"default_tax_rate": "tax_notimportedatall"})
    assert (unknown_tax.status_code, unknown_tax.json()["error"]["field"]) == (422, "default_tax_rate")
    archived_tax = next(
        r for r in admin.get("/v1/lists/tax_rates", params={"status": "archived"}).json()["records"]
    )
    refused = admin.put("/v1/connection/settings", json={"default_tax_rate": archived_tax["id"]})
    assert "archived" in refused.json()["error"]["message"]
    assert connected.client(role="standard").put("/v1/connection/settings", json={}).status_code == 403


def test_a_bill_draft_destination_sends_a_draft(connected: Service):
    admin = connected.client()
    admin.put("/v1/connection/settings", json={"destinations": {"cost": "bill_draft"}})
    admin.post(
        "/v1/items",
        json={"item": cost_item(admin, "cap-draft", supplier="Avon Security & Sons"), "publish": True},
    )
    connected.drain()
    bill = next(
        w for w in connected.xero.writes(kind="Invoice") if w["body"]["InvoiceNumber"] == "INV-cap-draft"
    )
    assert bill["body"]["Status"] == "DRAFT"


# --- reconnect ----------------------------------------------------------------------------------


def test_reconnect_restores_the_connection_and_publishes_what_was_held(connected: Service):
    admin = connected.client()
    connected.xero.revoke_consent()
    connected.clock.advance(31 * 60)
    admin.post(
        "/v1/items",
        json={"item": cost_item(admin, "cap-held", supplier="Avon Security & Sons"), "publish": True},
    )
    connected.drain()
    assert admin.get("/v1/connection").json()["status"] == "needs_reconnect"
    assert admin.get("/v1/items/cap-held").json()["status"] == "held"
    settings_before = admin.get("/v1/connection/settings").json()

    started = admin.post("/v1/connection/reconnect", json={})
    assert started.status_code == 200 and started.json()["authorize_url"]
    landed = connected.browser().get(started.json()["authorize_url"], follow_redirects=True)
    assert landed.json()["status"] == "reconnected"
    connected.drain()

    connection = admin.get("/v1/connection").json()
    assert connection["status"] == "connected" and connection["status_reason"].startswith("reconnected")
    assert admin.get("/v1/connection/settings").json() == settings_before
    assert admin.get("/v1/items/cap-held").json()["status"] == "published"


def test_reconnect_to_another_organisation_fails_closed_and_changes_nothing(connected: Service):
    admin = connected.client()
    before = admin.get("/v1/connection").json()
    other = next(
        tenant for name, tenant in _tenants(connected).items() if name != before["organisation"]["name"]
    )
    started = admin.post("/v1/connection/reconnect", json={})
    refused = connected.consent(started.json()["authorize_url"], [other])
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "wrong_organisation"
    assert before["organisation"]["name"] in refused.json()["error"]["message"]
    after = admin.get("/v1/connection").json()
    assert (
        after["organisation"] == before["organisation"] and after["connection_id"] == before["connection_id"]
    )


# --- change connection --------------------------------------------------------------------------


def test_change_connection_moves_to_another_organisation_and_keeps_the_old_lists(connected: Service):
    admin = connected.client()
    before = admin.get("/v1/connection").json()
    old_tenant = before["organisation"]["id"]
    other = next(tenant for tenant in _tenants(connected).values() if tenant != old_tenant)
    started = admin.post("/v1/connection/change", json={})
    landed = connected.consent(started.json()["authorize_url"], [other])
    assert landed.status_code == 200 and landed.json()["status"] == "connected"
    connected.drain()

    after = admin.get("/v1/connection").json()
    assert after["organisation"]["id"] == other and after["connection_id"] != before["connection_id"]
    assert after["merge_pending"] is True
    assert after["previous"]["connection_id"] == before["connection_id"] and after["previous"]["lists_kept"]
    # The old organisation's lists stay for Merge Lists; Xero no longer lists the old tenant for us.
    table = Table(connected.session.client("dynamodb"), connected.resources.table_name)
    from ledgerlink.models.common import ListType

    assert ListRepository(table).records(before["connection_id"], ListType.CATEGORIES)
    assert old_tenant not in {c.tenant_id for c in connected.xero.connections.values()}


def test_change_to_the_same_organisation_is_refused(connected: Service):
    admin = connected.client()
    current = admin.get("/v1/connection").json()["organisation"]["id"]
    started = admin.post("/v1/connection/change", json={})
    refused = connected.consent(started.json()["authorize_url"], [current])
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "same_organisation")


# --- disconnect -----------------------------------------------------------------------------------


def test_disconnect_wiping_lists_revokes_and_forgets_everything(connected: Service):
    admin = connected.client()
    connection_id = admin.get("/v1/connection").json()["connection_id"]
    connected.events()
    gone = admin.delete("/v1/connection", params={"keep_lists": "false"})
    assert gone.status_code == 200 and gone.json() == {"status": "disconnected", "lists_kept": False}
    assert admin.get("/v1/connection").status_code == 404
    table = Table(connected.session.client("dynamodb"), connected.resources.table_name)
    from ledgerlink.models.common import ListType

    assert all(not ListRepository(table).records(connection_id, t) for t in ListType)
    secrets = connected.session.client("secretsmanager").list_secrets()["SecretList"]
    assert not [s for s in secrets if connection_id in s["Name"]]
    assert [
        e["detail"]["status"] for e in connected.events() if e["detail-type"] == "connection.status_changed"
    ] == ["disconnected"]
    # and the business can connect again, with nothing to merge
    assert connected.connect_xero()["merge_pending"] is False


def test_disconnect_keeping_lists_offers_a_merge_on_the_next_connection(connected: Service):
    admin = connected.client()
    old = admin.get("/v1/connection").json()["connection_id"]
    assert admin.delete("/v1/connection", params={"keep_lists": "true"}).json()["lists_kept"] is True
    again = connected.connect_xero()
    assert again["merge_pending"] is True and again["previous"]["connection_id"] == old


# --- licences -------------------------------------------------------------------------------------


def test_licences_must_use_the_connected_ledger_both_ways(connected: Service):
    admin = connected.client()
    assert admin.put("/v1/licences/commerce", json={"provider": "xero"}).status_code == 200
    wrong = admin.put("/v1/licences/data_health", json={"provider": "quickbooks"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (409, "licence_ledger_mismatch")
    assert "Xero" in wrong.json()["error"]["message"]
    assert [licence["feature"] for licence in admin.get("/v1/licences").json()["licences"]] == ["commerce"]
    assert admin.put("/v1/licences/loyalty", json={"provider": "xero"}).status_code == 404

    other = connected.client(business="biz-2")
    assert other.put("/v1/licences/commerce", json={"provider": "quickbooks"}).status_code == 200
    blocked = other.post("/v1/connection", json={"provider": "xero"})
    assert (blocked.status_code, blocked.json()["error"]["code"]) == (409, "licence_ledger_mismatch")
    assert (
        "connect QuickBooks" in blocked.json()["error"]["message"]
        or "connect quickbooks" in blocked.json()["error"]["message"]
    )
