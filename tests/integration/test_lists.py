"""Keeping lists fresh: scheduled refreshes write only what changed, apply the ledger's deletions,
and tell the capture product."""

from __future__ import annotations

from typing import Any

from infra.api_routes import FunctionName
from sandbox.simulators.sage_ledger import delete_record
from tests.integration.conftest import Service
from tests.integration.helpers import records


def test_a_scheduled_refresh_with_nothing_changed_writes_nothing(service: Service):
    service.connect_xero()
    first = [e["detail"] for e in service.events() if e["detail-type"] == "lists.refreshed"]
    assert first[0]["reason"] == "initial_import"
    assert first[0]["lists"]["contacts"]["added"] > 100

    service.clock.advance(2 * 3600)  # past the hourly due time
    queued = service.host.invoke(
        FunctionName.REFRESH_LISTS, {"source": "ledgerlink.schedule", "action": "fan_out"}
    )
    assert queued == {"queued": 1}
    service.drain()
    again = [e["detail"] for e in service.events() if e["detail-type"] == "lists.refreshed"]
    assert again[0]["reason"] == "scheduled"
    assert all(
        counts["added"] == counts["changed"] == counts["deleted"] == 0
        for counts in again[0]["lists"].values()
    )


def test_archived_records_are_kept_with_their_flag(service: Service):
    service.connect_xero()
    api = service.client()
    everything = records(api, "contacts", status="all")
    archived = records(api, "contacts", status="archived")
    assert archived and all(r["status"] == "archived" for r in archived)
    assert len(records(api, "contacts")) == len(everything) - len(archived)
    assert {r["id"] for r in records(api, "contacts", q="avon")} <= {r["id"] for r in everything}
    tracking = [r for r in records(api, "projects", status="all") if r["dimension_name"] != "Xero Projects"]
    assert {r["dimension"] for r in tracking} == {1, 2}
    assert any(r["status"] == "archived" for r in tracking)


def _lists_refreshed(service: Service) -> dict[str, Any]:
    api = service.client()
    assert api.post("/v1/connection/refresh").status_code == 202
    service.drain()
    refreshed = [e["detail"] for e in service.events() if e["detail-type"] == "lists.refreshed"]
    assert [r["reason"] for r in refreshed] == ["requested"]
    lists: dict[str, Any] = refreshed[0]["lists"]
    return lists


def test_a_record_deleted_in_the_ledger_is_deleted_by_the_next_refresh(service: Service):
    # Xero: a deleted item just vanishes from /Items, so the items list is fetched whole and compared.
    service.connect_xero()
    service.events()
    api = service.client()
    item = records(api, "items", status="all")[0]
    organisation = service.xero.org(api.get("/v1/connection").json()["organisation"]["name"])
    with service.xero.lock:
        del organisation.items[item["remote_id"]]

    counts = _lists_refreshed(service)
    assert (counts["items"]["deleted"], counts["items"]["added"], counts["items"]["changed"]) == (1, 0, 0)
    assert item["id"] not in {r["id"] for r in records(api, "items", status="all")}
    assert api.get("/v1/connection").json()["lists"]["items"]["record_count"] == counts["items"]["unchanged"]


def test_sage_reports_deletions_and_the_incremental_refresh_applies_them(service: Service):
    service.connect("sage")
    service.events()
    api = service.client()
    contact = records(api, "contacts", status="all")[0]
    sage = service.simulator("sage")
    business = sage.businesses[api.get("/v1/connection").json()["organisation"]["id"]]
    service.let_time_pass(60)
    with sage.lock:
        delete_record(business, "contacts", contact["remote_id"], sage.clock.now())

    counts = _lists_refreshed(service)
    # Fetched from the high-water mark (changes, then deleted_since), not whole.
    assert counts["contacts"]["deleted"] == 1 and counts["contacts"]["unchanged"] == 0
    assert contact["id"] not in {r["id"] for r in records(api, "contacts", status="all")}
