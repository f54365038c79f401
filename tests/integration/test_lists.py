"""Keeping lists fresh: scheduled refreshes write only what changed, and tell the capture product."""

from __future__ import annotations

from infra.api_routes import FunctionName
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
    projects = records(api, "projects", status="all")
    assert {r["dimension"] for r in projects} == {1, 2}
