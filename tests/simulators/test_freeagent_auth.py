"""FreeAgent OAuth: approve_app (auto-consent and the consent page), the Basic-auth token endpoint,
code lifetime, refresh rotation and refusal, the refresh rate limit, revocation and User-Agent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from freeagent_sim_helpers import (
    BASIC_AUTH,
    REDIRECT_URI,
    FreeAgentApi,
    approve_url,
    connect,
    exchange_code,
    http_client,
    new_simulator,
    redirect_query,
    refresh,
)

from sandbox.simulators.freeagent import FreeAgentSimulator
from sandbox.simulators.harness import RefreshTokenState, SimClock
from sandbox.simulators.serve import serve_in_thread


@pytest.fixture
def sim(clock: SimClock) -> FreeAgentSimulator:
    return new_simulator(clock)


@pytest.fixture
def http(sim: FreeAgentSimulator) -> Iterator[httpx.Client]:
    with http_client(sim) as client:
        yield client


def test_code_flow_with_basic_auth(sim: FreeAgentSimulator, http: httpx.Client) -> None:
    query = redirect_query(http.get(approve_url(state="abc")))
    assert query["state"] == "abc"
    response = exchange_code(http, query["code"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    token = response.json()
    assert set(token) == {"access_token", "token_type", "expires_in", "refresh_token", "refresh_token_expires_in"}
    assert (token["token_type"], token["expires_in"], token["refresh_token_expires_in"]) == ("bearer", 3600, 631151957)

    api = FreeAgentApi(http, token["access_token"])
    company = api.get("company").json()["company"]
    assert company["name"] == "Demo Company (UK)"  # auto-consent approves the first company
    me = api.get("users/me").json()["user"]
    assert (me["email"], me["permission_level"]) == ("admin@example.com", 8)


def test_code_is_single_use_and_lives_15_minutes(sim: FreeAgentSimulator, http: httpx.Client) -> None:
    code = redirect_query(http.get(approve_url()))["code"]
    assert exchange_code(http, code).status_code == 200
    reused = exchange_code(http, code)
    assert (reused.status_code, reused.json()) == (400, {"error": "invalid_grant"})

    late = redirect_query(http.get(approve_url()))["code"]
    sim.advance_clock(15 * 60)
    assert exchange_code(http, late).json() == {"error": "invalid_grant"}

    other_redirect = redirect_query(http.get(approve_url()))["code"]
    assert exchange_code(http, other_redirect, redirect_uri="http://127.0.0.1:9/elsewhere").status_code == 400

    sim.update_settings(invalid_grant_description=True)
    assert exchange_code(http, code).json() == {"error": "invalid_grant",
                                                "error_description": "authorization code already used"}


def test_client_authentication_is_http_basic_only(sim: FreeAgentSimulator, http: httpx.Client) -> None:
    code = redirect_query(http.get(approve_url()))["code"]
    wrong = exchange_code(http, code, auth=(BASIC_AUTH[0], "not-the-secret"))
    assert (wrong.status_code, wrong.text) == (401, "HTTP Basic: Access denied.\n")
    assert wrong.headers["Content-Type"].startswith("text/plain")
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="Application"'

    in_body = http.post("/v2/token_endpoint", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "client_id": BASIC_AUTH[0], "client_secret": BASIC_AUTH[1]})
    assert in_body.status_code == 401  # credentials in the form body are not accepted by default
    sim.update_settings(accept_client_secret_in_body=True)
    assert http.post("/v2/token_endpoint", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "client_id": BASIC_AUTH[0], "client_secret": BASIC_AUTH[1]}).status_code == 200


def test_refresh_rotates_and_the_old_token_stops_working(sim: FreeAgentSimulator, http: httpx.Client) -> None:
    first = connect(http)
    rotated = refresh(http, first["refresh_token"])
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert sim.tokens.refresh_token_state(first["refresh_token"]) is RefreshTokenState.EXPIRED
    assert refresh(http, first["refresh_token"]).json() == {"error": "invalid_grant"}
    assert refresh(http, second["refresh_token"]).status_code == 200
    assert [r["status"] for r in sim.refresh_tokens()].count("current") == 1


def test_superseded_refresh_token_can_be_allowed_to_keep_working(sim: FreeAgentSimulator,
                                                                  http: httpx.Client) -> None:
    sim.update_settings(superseded_refresh_token_keeps_working=True)
    first = connect(http)
    assert refresh(http, first["refresh_token"]).status_code == 200
    sim.advance_clock(7 * 24 * 3600)
    assert refresh(http, first["refresh_token"]).status_code == 200


def test_access_token_expires_after_an_hour(sim: FreeAgentSimulator, http: httpx.Client) -> None:
    token = connect(http)
    api = FreeAgentApi(http, token["access_token"])
    sim.advance_clock(3599)
    assert api.get("company").status_code == 200
    sim.advance_clock(1)
    expired = api.get("company")
    assert expired.status_code == 401
    assert expired.json() == {"errors": {"error": {"message": "Access token has expired"}}}
    api.access_token = refresh(http, token["refresh_token"]).json()["access_token"]
    assert api.get("company").status_code == 200
    assert FreeAgentApi(http, "made-up").get("company").json()["errors"]["error"]["message"] == \
        "Access token not recognised"


def test_fifteen_refreshes_a_minute(sim: FreeAgentSimulator, http: httpx.Client) -> None:
    sim.advance_clock(30)  # mid-minute: the window still resets at the top of the minute
    token = connect(http)["refresh_token"]
    for _ in range(15):
        response = refresh(http, token)
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]
    limited = refresh(http, token)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "60"
    assert limited.text == "You must not exceed 15 requests per 60 seconds"
    sim.advance_clock(30)  # the next minute starts: a fresh window, not a rolling one
    assert refresh(http, token).status_code == 200


def test_consent_page_sign_in_and_company_choice(sim: FreeAgentSimulator, http: httpx.Client) -> None:
    sim.set_auto_consent(False)
    page = http.get(approve_url(state="xyz"))
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for testid in ("consent-username", "consent-password", "consent-organisation", "consent-submit"):
        assert f'data-testid="{testid}"' in page.text
    assert page.text.count('type="radio"') == 2  # one company per approval
    assert '<label for="consent-username">' in page.text

    joinery = sim.company("Harbour & Finch Joinery Ltd")
    form = {"client_id": BASIC_AUTH[0], "response_type": "code", "redirect_uri": REDIRECT_URI, "state": "xyz",
            "username": "admin@example.com", "password": "wrong", "organisation": joinery.company_id,
            "action": "allow"}
    refused = http.post("/v2/approve_app", data=form)
    assert refused.status_code == 400 and 'data-testid="consent-error"' in refused.text

    query = redirect_query(http.post("/v2/approve_app", data={**form, "password": "sandbox"}))
    assert query["state"] == "xyz"
    token = exchange_code(http, query["code"]).json()
    assert FreeAgentApi(http, token["access_token"]).get("company").json()["company"]["name"] == joinery.name

    cancelled = redirect_query(http.post("/v2/approve_app", data={**form, "action": "cancel"}))
    assert cancelled == {"error": "access_denied", "state": "xyz"}


def test_approve_app_refusals(sim: FreeAgentSimulator, http: httpx.Client) -> None:
    assert http.get(approve_url(client_id="unknown")).status_code == 400
    assert http.get(approve_url(redirect_uri="https://evil.example/cb")).status_code == 400
    assert redirect_query(http.get(approve_url(response_type="token")))["error"] == "unsupported_response_type"
    sim.set_auto_consent(True, deny=True)
    assert redirect_query(http.get(approve_url()))["error"] == "access_denied"


def test_no_revoke_endpoint_by_default(sim: FreeAgentSimulator, http: httpx.Client) -> None:
    token = connect(http)
    assert http.post("/v2/token_endpoint/revoke", auth=BASIC_AUTH,
                     data={"token": token["refresh_token"]}).status_code == 404
    sim.update_settings(revoke_endpoint_enabled=True)
    assert http.post("/v2/token_endpoint/revoke", auth=BASIC_AUTH,
                     data={"token": token["access_token"]}).status_code == 200
    assert FreeAgentApi(http, token["access_token"]).get("company").status_code == 401
    assert refresh(http, token["refresh_token"]).json() == {"error": "invalid_grant"}


def test_consent_revoked_in_freeagent(sim: FreeAgentSimulator, http: httpx.Client) -> None:
    token = connect(http)
    sim.inject_fault("revoke", "/v2/company")
    response = FreeAgentApi(http, token["access_token"]).get("company")
    assert (response.status_code, response.json()["errors"]["error"]["message"]) == (
        401, "Access token has been revoked")
    assert refresh(http, token["refresh_token"]).json() == {"error": "invalid_grant"}
    assert {r["status"] for r in sim.refresh_tokens()} == {"revoked"}


def test_a_user_agent_is_required(sim: FreeAgentSimulator, clock: SimClock) -> None:
    token = sim.mint_tokens()
    with httpx.Client(transport=sim.transport(), base_url="http://freeagent.sandbox.test") as bare:
        del bare.headers["User-Agent"]
        response = FreeAgentApi(bare, token["access_token"]).get("company")
        assert response.status_code == 400
        assert "User-Agent" in response.json()["errors"]["error"]["message"]
        assert refresh(bare, token["refresh_token"]).status_code == 400
        sim.update_settings(require_user_agent=False)
        assert FreeAgentApi(bare, token["access_token"]).get("company").status_code == 200


def test_mint_tokens_covers_one_company(sim: FreeAgentSimulator, http: httpx.Client) -> None:
    with pytest.raises(ValueError, match="one company"):
        sim.mint_tokens(["Demo Company (UK)", "Harbour & Finch Joinery Ltd"])
    assert http.post("/_sandbox/tokens", json={"organisations": ["Nope Ltd"]}).status_code == 400
    joinery = sim.company("Harbour & Finch Joinery Ltd")
    subdomain = joinery.company["subdomain"]
    minted: dict[str, Any] = http.post("/_sandbox/tokens", json={"organisations": [subdomain]}).json()
    assert minted["company"] == {"id": joinery.company_id, "name": joinery.name, "subdomain": subdomain}
    assert minted["token_type"] == "bearer" and minted["expires_at"] > 0
    assert FreeAgentApi(http, minted["access_token"]).get("company").json()["company"]["id"] == joinery.company_id


def test_served_over_http_ids_use_the_served_origin(sim: FreeAgentSimulator) -> None:
    server = serve_in_thread(sim.wsgi_app)
    try:
        with httpx.Client(base_url=server.url, headers={"User-Agent": "ledgerlink-tests/1.0"}) as http:
            token = connect(http)
            contact = FreeAgentApi(http, token["access_token"]).get("contacts").json()["contacts"][0]
            assert contact["url"].startswith(f"{server.url}/v2/contacts/")
    finally:
        server.stop()
