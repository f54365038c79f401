"""The connection lifecycle for every ledger, through each one's real sign-in against its
simulator: connect, the first import, reconnect, change organisation, disconnect."""

from __future__ import annotations

from typing import Any

import pytest

from ledgerlink.providers import registry
from tests.integration.conftest import KASHFLOW_LOGIN, Service

PROVIDERS = ["xero", "quickbooks", "sage", "freeagent", "kashflow"]
OTHER_KASHFLOW_LOGIN = {**KASHFLOW_LOGIN, "username": "joinery"}


def _sign_in_again(service: Service, provider: str, route: str, *, other_organisation: bool = False) -> Any:
    admin = service.client()
    if provider == "kashflow":
        login = OTHER_KASHFLOW_LOGIN if other_organisation else KASHFLOW_LOGIN
        response = admin.post(route, json={"credentials": login})
        assert response.status_code == 200, response.text
        return response.json()["connection"]
    simulator = service.simulator(provider)
    if other_organisation and hasattr(simulator, "auto_consent_company"):
        # One consent = one company at QuickBooks and FreeAgent: consent to the other one.
        current = admin.get("/v1/connection").json()["organisation"]["name"]
        simulator.auto_consent_company = next(
            key for key, company in simulator.companies.items() if company.name != current
        )
    started = admin.post(route, json={})
    assert started.status_code == 200, started.text
    landed = service.browser().get(started.json()["authorize_url"], follow_redirects=True)
    assert landed.status_code == 200, landed.text
    if landed.json()["status"] == "choose_organisation":
        organisations = admin.get("/v1/connection/organisations").json()["organisations"]
        admin.post("/v1/connection/organisation", json={"organisation_id": organisations[0]["id"]})
    return admin.get("/v1/connection").json()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_connect_imports_every_list_the_ledger_has(service: Service, provider: str):
    connection = service.connect(provider)
    assert connection["status"] == "connected", connection["status_reason"]
    expected = {t.value for t in registry.capabilities(connection["provider"]).lists}
    assert {t for t, f in connection["lists"].items() if f["refreshed_at"]} == expected
    assert all(connection["lists"][t]["record_count"] > 0 for t in expected), connection["lists"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reconnect_keeps_the_same_organisation(service: Service, provider: str):
    before = service.connect(provider)
    after = _sign_in_again(service, provider, "/v1/connection/reconnect")
    assert after["status"] == "connected"
    assert after["connection_id"] == before["connection_id"]
    assert after["organisation"] == before["organisation"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_change_moves_to_another_organisation(service: Service, provider: str):
    before = service.connect(provider)
    after = _sign_in_again(service, provider, "/v1/connection/change", other_organisation=True)
    service.drain()
    assert after["status"] == "connected", after
    assert after["organisation"]["id"] != before["organisation"]["id"]
    assert after["merge_pending"] and after["previous"]["connection_id"] == before["connection_id"]
    lists = service.client().get("/v1/connection").json()["lists"]
    assert all(entry["refreshed_at"] for entry in lists.values())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_disconnect_forgets_the_connection(service: Service, provider: str):
    service.connect(provider)
    admin = service.client()
    assert admin.delete("/v1/connection", params={"keep_lists": "false"}).status_code == 200
    assert admin.get("/v1/connection").status_code == 404
