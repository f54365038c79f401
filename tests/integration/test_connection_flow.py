"""Connecting a Xero organisation end to end: OAuth with PKCE and state, the organisation choice,
the first import, and what happens to bad input on the way."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from tests.integration.conftest import APP_ORIGIN, Service


def test_admin_connects_xero_chooses_an_organisation_and_the_lists_arrive(service: Service):
    admin = service.client()
    started = admin.post("/v1/connection", json={"provider": "xero"})
    assert started.status_code == 201
    query = parse_qs(urlsplit(started.json()["authorize_url"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert "offline_access" in query["scope"][0].split()
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/v1/oauth/callback"]

    landed = service.browser().get(started.json()["authorize_url"], follow_redirects=True)
    assert landed.status_code == 200
    assert landed.json()["status"] == "choose_organisation"  # the seeded user has two organisations
    assert "token" not in landed.text.lower().replace("token_store", "")

    organisations = admin.get("/v1/connection/organisations").json()["organisations"]
    assert len(organisations) == 2
    chosen = admin.post("/v1/connection/organisation", json={"organisation_id": organisations[1]["id"]})
    assert chosen.status_code == 200
    assert chosen.json()["status"] == "connected"
    assert chosen.json()["organisation"]["id"] == organisations[1]["id"]

    service.drain()
    connection = admin.get("/v1/connection").json()
    assert set(connection["lists"]) == {
        "categories",
        "contacts",
        "tax_rates",
        "items",
        "projects",
        "bank_accounts",
    }
    assert all(entry["refreshed_at"] for entry in connection["lists"].values())
    statuses = [
        e["detail"]["status"] for e in service.events() if e["detail-type"] == "connection.status_changed"
    ]
    assert statuses == ["pending_organisation", "connected"]

    # Every Accounting API call named the chosen tenant, never the other one.
    tenants = {
        entry.header("xero-tenant-id")
        for entry in service.xero.request_log.entries(path_glob="/api.xro/2.0/*")
    }
    assert tenants == {organisations[1]["id"]}


def test_return_url_gets_the_outcome_and_foreign_return_urls_are_refused(service: Service):
    admin = service.client()
    refused = admin.post(
        "/v1/connection", json={"provider": "xero", "return_url": "https://evil.example/steal"}
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["field"] == "return_url"

    started = admin.post(
        "/v1/connection", json={"provider": "xero", "return_url": f"{APP_ORIGIN}/settings/connections"}
    )
    consent = service.browser().get(started.json()["authorize_url"])
    callback = service.browser().get(consent.headers["location"])
    assert callback.status_code == 302
    assert callback.headers["location"] == f"{APP_ORIGIN}/settings/connections?status=choose_organisation"


def test_a_business_has_one_connection(service: Service):
    service.connect_xero()
    again = service.client().post("/v1/connection", json={"provider": "xero"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "connection_exists"


def test_state_is_single_use(service: Service):
    started = service.client().post("/v1/connection", json={"provider": "xero"})
    callback_url = service.browser().get(started.json()["authorize_url"]).headers["location"]
    assert service.browser().get(callback_url).status_code == 200
    replayed = service.browser().get(callback_url)
    assert replayed.status_code == 400
    assert replayed.json()["error"]["code"] == "invalid_state"


def test_unknown_missing_and_expired_state_are_refused_and_nothing_is_stored(service: Service):
    browser = service.browser()
    unknown = browser.get("http://127.0.0.1:8000/v1/oauth/callback", params={"code": "x", "state": "forged"})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "invalid_state")
    missing = browser.get("http://127.0.0.1:8000/v1/oauth/callback", params={"code": "x"})
    assert (missing.status_code, missing.json()["error"]["field"]) == (400, "state")

    started = service.client().post("/v1/connection", json={"provider": "xero"})
    callback_url = browser.get(started.json()["authorize_url"]).headers["location"]
    service.clock.advance(timedelta(minutes=11).total_seconds())
    expired = browser.get(callback_url)
    assert (expired.status_code, expired.json()["error"]["code"]) == (400, "invalid_state")
    assert "expired" in expired.json()["error"]["message"]
    assert service.client().get("/v1/connection").status_code == 404


def test_only_an_admin_connects_and_every_route_needs_a_valid_sign_in(service: Service):
    standard = service.client(role="standard")
    refused = standard.post("/v1/connection", json={"provider": "xero"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")

    anonymous = service.browser()
    for method, path in [
        ("POST", "/v1/connection"),
        ("GET", "/v1/connection"),
        ("GET", "/v1/lists/categories"),
        ("POST", "/v1/items"),
    ]:
        response = anonymous.request(method, f"http://127.0.0.1:8000{path}", json={})
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthenticated"
    forged = anonymous.get(
        "http://127.0.0.1:8000/v1/connection", headers={"Authorization": "Bearer not.a.jwt"}
    )
    assert forged.status_code == 401


def test_unknown_provider_and_bad_bodies_get_clear_errors(service: Service):
    admin = service.client()
    unknown = admin.post("/v1/connection", json={"provider": "bankly"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "provider"
    extra = admin.post("/v1/connection", json={"provider": "xero", "colour": "blue"})
    assert extra.status_code == 422
    assert extra.json()["error"]["field"] == "colour"


def test_consent_denied_at_the_ledger_stores_nothing(service: Service):
    service.xero.set_auto_consent(False)
    started = service.client().post("/v1/connection", json={"provider": "xero"})
    state = parse_qs(urlsplit(started.json()["authorize_url"]).query)["state"][0]
    denied = service.browser().get(
        "http://127.0.0.1:8000/v1/oauth/callback", params={"error": "access_denied", "state": state}
    )
    assert (denied.status_code, denied.json()["error"]["code"]) == (400, "oauth_denied")
    assert service.client().get("/v1/connection").status_code == 404


def test_a_state_connects_only_the_business_that_started_it(service: Service):
    """Whoever's browser brings a sign-in back, the connection lands on the business (and user)
    the state was issued to, never on another one."""
    business_a, business_b = service.client("biz-a"), service.client("biz-b")
    started_a = business_a.post("/v1/connection", json={"provider": "xero"}).json()["authorize_url"]
    business_b.post("/v1/connection", json={"provider": "xero"})
    landed = service.browser().get(started_a, follow_redirects=True)  # completed from B's browser
    assert landed.status_code == 200
    assert business_a.get("/v1/connection").json()["status"] == "pending_organisation"
    assert business_b.get("/v1/connection").status_code == 404
    organisations = business_a.get("/v1/connection/organisations").json()["organisations"]
    refused = business_b.post("/v1/connection/organisation", json={"organisation_id": organisations[0]["id"]})
    assert refused.status_code == 404
