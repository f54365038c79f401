"""Fault injection (through the transport and over real HTTP), the /_sandbox/ control API, the
request and write logs, and serving simulators on loopback ports."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from xero_sim_helpers import BASE_URL, XeroApi, bill, refresh

from sandbox.simulators import PROVIDER_ORDER, SIMULATORS
from sandbox.simulators.harness import FaultKind, SimClock
from sandbox.simulators.serve import serve_in_thread, start_sandbox
from sandbox.simulators.xero import XeroSimulator

pytestmark = pytest.mark.integration


def test_lost_response_commits_the_write_and_the_retry_replays(
        api: XeroApi, xero: XeroSimulator, supplier_id: str) -> None:
    xero.inject_fault("lost_response", "/api.xro/2.0/Invoices", method="PUT")
    body = {"Invoices": [bill(supplier_id)]}
    key = {"Idempotency-Key": "item-7-rev-1"}
    with pytest.raises(httpx.ReadTimeout):
        api.put("Invoices", json=body, headers=key)
    assert len(xero.writes(kind="Invoice")) == 1  # applied, although the client saw a timeout

    retry = api.put("Invoices", json=body, headers=key)
    assert retry.status_code == 200
    assert retry.json()["Invoices"][0]["InvoiceID"] == xero.writes(kind="Invoice")[0]["id"]
    assert len(xero.writes(kind="Invoice")) == 1
    assert [e["fault"] for e in xero.requests(path_glob="/api.xro/2.0/Invoices")] == ["lost_response", None]


def test_lost_response_without_a_key_duplicates_on_retry(api: XeroApi, xero: XeroSimulator, supplier_id: str) -> None:
    xero.inject_fault(FaultKind.LOST_RESPONSE, "/api.xro/2.0/invoices")
    with pytest.raises(httpx.ReadTimeout):
        api.put("Invoices", json={"Invoices": [bill(supplier_id)]})
    api.put("Invoices", json={"Invoices": [bill(supplier_id)]})
    assert len(xero.writes(kind="Invoice")) == 2


def test_timeout_applies_nothing(api: XeroApi, xero: XeroSimulator, supplier_id: str) -> None:
    xero.inject_fault("timeout", "/api.xro/2.0/Invoices")
    with pytest.raises(httpx.ReadTimeout):
        api.put("Invoices", json={"Invoices": [bill(supplier_id)]})
    assert xero.writes() == []
    assert api.put("Invoices", json={"Invoices": [bill(supplier_id)]}).status_code == 200


def test_429_storm_with_xero_headers(api: XeroApi, xero: XeroSimulator) -> None:
    rule = xero.inject_fault("429", "/api.xro/2.0/Contacts*", count=3, retry_after=7)
    statuses = [api.get("Contacts").status_code for _ in range(4)]
    assert statuses == [429, 429, 429, 200]
    assert rule.exhausted and rule.fired == 3
    xero.inject_fault("429", "*Contacts", count=1)
    limited = api.get("Contacts")
    assert (limited.headers["Retry-After"], limited.headers["X-Rate-Limit-Problem"]) == ("1", "minute")
    assert api.get("Accounts").status_code == 200  # other routes are untouched


@pytest.mark.parametrize(("kind", "status"), [("500", 500), ("503", 503)])
def test_server_errors(api: XeroApi, xero: XeroSimulator, kind: str, status: int) -> None:
    xero.inject_fault(kind, "/api.xro/2.0/*", method="GET", count=None)
    assert api.get("Accounts").status_code == status
    assert api.get("Items").status_code == status
    xero.clear_faults()
    assert api.get("Items").status_code == 200


def test_probability_and_skip_are_deterministic_for_a_seed(clock: SimClock) -> None:
    def pattern(seed: int) -> list[int]:
        sim = XeroSimulator(clock, fault_seed=seed)
        sim.inject_fault("503", "/api.xro/*", count=None, probability=0.5, skip=2)
        tokens = sim.mint_tokens()
        with httpx.Client(transport=sim.transport(), base_url=BASE_URL) as http:
            api = XeroApi(http, tokens["access_token"], tokens["tenants"][0]["tenantId"])
            return [api.get("Currencies").status_code for _ in range(12)]

    first = pattern(seed=3)
    assert first[:2] == [200, 200] and 503 in first and first.count(200) > 2
    assert pattern(seed=3) == first


def test_revoke_fault_kills_consent(api: XeroApi, xero: XeroSimulator, client: httpx.Client,
                                    tokens: dict[str, Any]) -> None:
    xero.inject_fault("revoke", "/api.xro/2.0/Accounts")
    response = api.get("Accounts")
    assert (response.status_code, response.json()["Detail"]) == (401, "AuthenticationUnsuccessful")
    assert refresh(client, tokens["refresh_token"]).json() == {"error": "invalid_grant"}
    assert xero.connections == {}
    assert {r["status"] for r in xero.refresh_tokens()} == {"revoked"}


def test_request_log_redacts_authorization(api: XeroApi, xero: XeroSimulator) -> None:
    api.get("Accounts", params={"where": 'Type=="BANK"'}, headers={"User-Agent": "ledgerlink/0.1"})
    [entry] = xero.request_log.entries(path_glob="/api.xro/2.0/Accounts")
    assert entry.header("Authorization") == "Bearer [redacted]"
    assert entry.header("xero-tenant-id") == api.tenant_id
    assert entry.header("User-Agent") == "ledgerlink/0.1"
    assert entry.status == 200 and "where=" in entry.query
    assert api.access_token not in str(xero.requests())


def test_control_api_over_the_transport(xero: XeroSimulator, client: httpx.Client) -> None:
    index = client.get("/_sandbox/").json()
    assert index["provider"] == "xero" and len(index["organisations"]) == 2

    minted = client.post("/_sandbox/tokens", json={"organisations": ["Demo Company (UK)"]}).json()
    assert [t["tenantName"] for t in minted["tenants"]] == ["Demo Company (UK)"]
    assert client.post("/_sandbox/tokens", json={"organisations": ["Nope Ltd"]}).status_code == 400
    api = XeroApi(client, minted["access_token"], minted["tenants"][0]["tenantId"])
    assert api.get("Organisation").status_code == 200

    assert client.post("/_sandbox/auto-consent", json={"enabled": False}).json() == {"enabled": False,
                                                                                       "deny": False}
    assert xero.auto_consent is False
    assert client.post("/_sandbox/auto-consent", json={}).status_code == 400

    added = client.post("/_sandbox/faults", json={"kind": "503", "path": "/api.xro/2.0/Items", "count": 2})
    assert added.status_code == 201 and added.json()[0]["kind"] == "503"
    assert client.post("/_sandbox/faults", json={"kind": "gremlins"}).status_code == 400
    assert api.get("Items").status_code == 503
    assert client.get("/_sandbox/faults").json()[0]["fired"] == 1
    assert client.delete("/_sandbox/faults").status_code == 204
    assert api.get("Items").status_code == 200

    supplier = next(c["ContactID"] for c in xero.orgs[api.tenant_id].contacts.values()
                    if c["ContactStatus"] == "ACTIVE")
    api.put("Invoices", json={"Invoices": [bill(supplier)]})
    writes = client.get("/_sandbox/writes", params={"kind": "Invoice"}).json()
    assert len(writes) == 1 and writes[0]["body"]["Total"] == 120
    requests_seen = client.get("/_sandbox/requests", params={"path": "/api.xro/2.0/Items"}).json()
    assert [r["status"] for r in requests_seen] == [503, 200]
    assert all(not r["path"].startswith("/_sandbox") for r in client.get("/_sandbox/requests").json())
    assert client.delete("/_sandbox/requests").status_code == 204

    refreshed = refresh(client, minted["refresh_token"]).json()
    statuses = {r["token"]: r["status"] for r in client.get("/_sandbox/refresh-tokens").json()}
    assert (statuses[minted["refresh_token"]], statuses[refreshed["refresh_token"]]) == ("superseded", "current")

    before = client.get("/_sandbox/clock").json()
    after = client.post("/_sandbox/clock/advance", json={"seconds": 3600}).json()
    assert (before["frozen"], after["now"]) == (True, "2026-11-02T10:00:00+00:00")
    assert client.post("/_sandbox/clock", json={"now": "2026-12-01T08:00:00Z"}).json()["now"].startswith("2026-12-01")

    settings = client.post("/_sandbox/settings", json={"minute_limit": 2, "day_limit": 1000}).json()
    assert (settings["minute_limit"], settings["day_limit"]) == (2, 1000)
    assert xero.settings.minute_limit == 2
    assert client.post("/_sandbox/settings", json={"minute_limitt": 2}).status_code == 400
    assert client.post("/_sandbox/settings", json={"minute_limit": "lots"}).status_code == 400

    reseeded = client.post("/_sandbox/seed", json={"preset": "empty"}).json()
    assert reseeded["preset"] == "empty"
    assert client.get("/_sandbox/writes").json() == []
    assert client.post("/_sandbox/seed", json={"preset": "huge"}).status_code == 400


def test_seed_presets_keep_tenant_ids(xero: XeroSimulator, api: XeroApi) -> None:
    xero.seed("empty")
    assert api.get("Accounts").json()["Accounts"] == []
    assert len(api.get("TaxRates").json()["TaxRates"]) > 0  # built into every organisation
    xero.seed("large")
    body = api.get("Contacts", params={"page": 1, "pageSize": 1000, "includeArchived": "true"}).json()
    assert body["pagination"]["itemCount"] == 10_000 and body["pagination"]["pageCount"] == 10
    assert len(api.get("Accounts").json()["Accounts"]) == 500
    assert len(api.get("Items").json()["Items"]) == 1000


def test_served_over_http_faults_hold_then_504(xero: XeroSimulator, supplier_id: str, api: XeroApi) -> None:
    xero.update_settings(fault_delay_seconds=0)  # the real default holds for 35 s
    server = serve_in_thread(xero.wsgi_app)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=server.url) as http:
            remote = XeroApi(http, api.access_token, api.tenant_id)
            assert remote.get("Organisation").status_code == 200
            xero.inject_fault("lost_response", "/api.xro/2.0/Invoices")
            assert remote.put("Invoices", json={"Invoices": [bill(supplier_id)]}).status_code == 504
            assert len(xero.writes(kind="Invoice")) == 1
            xero.inject_fault("timeout", "/api.xro/2.0/Invoices")
            assert remote.put("Invoices", json={"Invoices": [bill(supplier_id)]}).status_code == 504
            assert len(xero.writes(kind="Invoice")) == 1
    finally:
        server.stop()


def test_serve_refuses_non_loopback_hosts(xero: XeroSimulator) -> None:
    with pytest.raises(ValueError, match="loopback"):
        serve_in_thread(xero.wsgi_app, host="0.0.0.0")  # noqa: S104 - the point of the test


def test_start_sandbox_serves_registered_simulators() -> None:
    assert list(SIMULATORS) == [p for p in PROVIDER_ORDER if p in SIMULATORS] and PROVIDER_ORDER[0] == "xero"
    with pytest.raises(ValueError, match="unknown ledger"):
        start_sandbox(["myob"], 0)
    served = start_sandbox(["all"], 0, auto_consent=True)
    try:
        assert [running.provider for running in served] == list(SIMULATORS)
        for running in served:
            assert running.simulator.auto_consent
            assert running.simulator.clock.scale == 1.0  # served simulators follow the wall clock
            assert httpx.get(f"{running.url}/_sandbox/").json()["provider"] == running.provider
    finally:
        for running in served:
            running.stop()
