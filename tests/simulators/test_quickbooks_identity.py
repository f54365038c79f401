"""QuickBooks OAuth: authorize with realmId, the consent page, Basic client auth, refresh rotation
with the 24-hour grace, the absolute cap, revoke with a JSON body, discovery, and realm binding."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from qbo_sim_helpers import (
    BASIC_AUTH,
    QBO_URL,
    REDIRECT_URI,
    QboApi,
    authorize_path,
    callback_query,
    exchange,
    refresh,
)

from sandbox.simulators.harness import DEFAULT_APP, RefreshTokenState, SimClock
from sandbox.simulators.quickbooks import ACCOUNTING_SCOPE, QuickBooksSimulator


@pytest.fixture
def qbo(clock: SimClock) -> QuickBooksSimulator:
    return QuickBooksSimulator(clock, auto_consent=True)


@pytest.fixture
def http(qbo: QuickBooksSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=qbo.transport(), base_url=QBO_URL) as client:
        yield client


def connect(http: httpx.Client) -> tuple[dict[str, Any], str]:
    query = callback_query(http.get(authorize_path()))
    response = exchange(http, query["code"])
    assert response.status_code == 200, response.text
    return response.json(), query["realmId"]


def test_code_flow_returns_realm_and_rotates_with_a_24_hour_grace(qbo: QuickBooksSimulator,
                                                                   http: httpx.Client) -> None:
    query = callback_query(http.get(authorize_path(state="xyz")))
    assert query["state"] == "xyz"
    assert query["realmId"] == qbo.company("Demo Company (UK)").realm_id

    token = exchange(http, query["code"]).json()
    assert set(token) == {"token_type", "access_token", "expires_in", "refresh_token", "x_refresh_token_expires_in"}
    assert (token["token_type"], token["expires_in"], token["x_refresh_token_expires_in"]) == ("bearer", 3600, 8726400)

    qbo.advance_clock(3600)
    rotated = refresh(http, token["refresh_token"]).json()
    assert rotated["refresh_token"] != token["refresh_token"]
    assert qbo.tokens.refresh_token_state(token["refresh_token"]) is RefreshTokenState.SUPERSEDED

    qbo.advance_clock(23 * 3600)
    assert refresh(http, token["refresh_token"]).status_code == 200  # still inside the 24 h grace
    qbo.advance_clock(3601)
    late = refresh(http, token["refresh_token"])
    assert (late.status_code, late.json()) == (400, {"error": "invalid_grant"})

    newest = qbo.tokens.grant_for_refresh_token(token["refresh_token"])
    assert newest is not None
    latest = refresh(http, newest.current_refresh_token or "").json()
    assert latest["x_refresh_token_expires_in"] == 8726400
    assert [r["status"] for r in qbo.refresh_tokens()].count("current") == 1


def test_x_refresh_token_expires_in_counts_down_to_the_absolute_cap(qbo: QuickBooksSimulator,
                                                                     http: httpx.Client) -> None:
    qbo.update_settings(refresh_token_max_lifetime_seconds=3 * 3600)
    token, _ = connect(http)
    assert token["x_refresh_token_expires_in"] == 3 * 3600
    qbo.advance_clock(2 * 3600)
    second = refresh(http, token["refresh_token"]).json()
    assert second["x_refresh_token_expires_in"] == 3600
    qbo.advance_clock(3600)
    assert refresh(http, second["refresh_token"]).json() == {"error": "invalid_grant"}


def test_consent_page_signs_in_and_picks_exactly_one_company(qbo: QuickBooksSimulator, http: httpx.Client) -> None:
    qbo.set_auto_consent(False)
    page = http.get(authorize_path())
    assert page.status_code == 200 and 'lang="en"' in page.text
    for test_id in ("consent-username", "consent-password", "consent-submit"):
        assert f'data-testid="{test_id}"' in page.text
    assert page.text.count('data-testid="consent-organisation"') == 2
    assert 'type="radio"' in page.text

    form = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    joinery = qbo.company("Harbour & Finch Joinery Ltd").realm_id
    wrong = http.post("/connect/oauth2", data={**form, "username": "admin@example.com", "password": "nope",
                                               "organisation": joinery, "action": "allow"})
    assert wrong.status_code == 400 and 'role="alert"' in wrong.text
    both = http.post("/connect/oauth2", data={**form, "username": "admin@example.com", "password": "sandbox",
                                              "organisation": [joinery, qbo.company("Demo Company (UK)").realm_id],
                                              "action": "allow"})
    assert both.status_code == 400 and "Choose one company" in both.text

    chosen = callback_query(http.post("/connect/oauth2", data={
        **form, "username": "admin@example.com", "password": "sandbox", "organisation": joinery, "action": "allow"}))
    assert chosen["realmId"] == joinery
    token = exchange(http, chosen["code"]).json()
    assert QboApi(http, token["access_token"], joinery).get("preferences").status_code == 200
    other = QboApi(http, token["access_token"], qbo.company("Demo Company (UK)").realm_id).get("preferences")
    assert other.status_code == 403
    assert other.json()["Fault"]["type"] == "AuthorizationFault"

    denied = http.post("/connect/oauth2", data={**form, "action": "cancel"})
    assert callback_query(denied)["error"] == "access_denied"


def test_token_endpoint_wants_basic_auth(http: httpx.Client) -> None:
    code = callback_query(http.get(authorize_path()))["code"]
    in_body = http.post("/oauth2/v1/tokens/bearer", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "client_id": DEFAULT_APP.client_id, "client_secret": DEFAULT_APP.client_secret})
    assert (in_body.status_code, in_body.json()) == (401, {"error": "invalid_client"})
    wrong_secret = exchange(http, code, auth=(DEFAULT_APP.client_id, "wrong"))
    assert wrong_secret.status_code == 401


def test_codes_are_single_use_expire_and_bind_the_redirect(qbo: QuickBooksSimulator, http: httpx.Client) -> None:
    code = callback_query(http.get(authorize_path()))["code"]
    assert exchange(http, code, redirect_uri="http://127.0.0.1:9/other").json() == {"error": "invalid_grant"}
    assert exchange(http, code).json() == {"error": "invalid_grant"}  # a failed attempt burns it
    code = callback_query(http.get(authorize_path()))["code"]
    qbo.advance_clock(301)
    assert exchange(http, code).json() == {"error": "invalid_grant"}


@pytest.mark.parametrize(("extra", "error"), [
    ({"state": ""}, "invalid_request"),
    ({"scope": "com.intuit.quickbooks.everything"}, "invalid_scope"),
    ({"code_challenge": "abc", "code_challenge_method": "S256"}, "invalid_request"),
])
def test_authorize_refusals_go_back_to_the_client(http: httpx.Client, extra: dict[str, str], error: str) -> None:
    assert callback_query(http.get(authorize_path(**extra)))["error"] == error


def test_an_unknown_redirect_uri_is_never_redirected_to(http: httpx.Client) -> None:
    response = http.get(authorize_path(redirect_uri="https://evil.example/callback"))
    assert response.status_code == 400 and 'data-testid="authorize-error"' in response.text


def test_expired_token_gets_the_gateways_lowercase_fault_and_revoke_ends_both_tokens(
        qbo: QuickBooksSimulator, http: httpx.Client) -> None:
    token, realm = connect(http)
    api = QboApi(http, token["access_token"], realm)
    assert api.get("preferences").status_code == 200
    qbo.advance_clock(3600)
    expired = api.get("preferences")
    assert expired.status_code == 401
    error = expired.json()["fault"]["error"][0]
    assert error["code"] == "3200" and error["detail"].startswith("Token expired")

    fresh = refresh(http, token["refresh_token"]).json()
    revoked = http.post("/v2/oauth2/tokens/revoke", auth=BASIC_AUTH, json={"token": fresh["refresh_token"]})
    assert revoked.status_code == 200
    assert QboApi(http, fresh["access_token"], realm).get("preferences").status_code == 401
    assert refresh(http, fresh["refresh_token"]).json() == {"error": "invalid_grant"}


def test_discovery_documents_name_the_simulators_own_endpoints(http: httpx.Client) -> None:
    for path in ("/.well-known/openid_configuration/", "/.well-known/openid_sandbox_configuration"):
        document = http.get(path).json()
        assert document["authorization_endpoint"] == f"{QBO_URL}/connect/oauth2"
        assert document["token_endpoint"] == f"{QBO_URL}/oauth2/v1/tokens/bearer"
        assert document["revocation_endpoint"] == f"{QBO_URL}/v2/oauth2/tokens/revoke"
        assert document["userinfo_endpoint"] == f"{QBO_URL}/v1/openid_connect/userinfo"
    keys = http.get("/op/v1/jwks").json()["keys"]
    assert keys[0]["kty"] == "RSA" and keys[0]["kid"] == "sandbox-qbo"


def test_openid_scope_adds_an_id_token_and_userinfo(http: httpx.Client) -> None:
    query = callback_query(http.get(authorize_path(scope=f"{ACCOUNTING_SCOPE} openid email profile")))
    token = exchange(http, query["code"]).json()
    assert token["id_token"].count(".") == 2
    info = http.get("/v1/openid_connect/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert info.json()["email"] == "admin@example.com" and info.json()["givenName"] == "Alex"


def test_openid_only_consent_has_no_realm_and_no_api_access(http: httpx.Client) -> None:
    query = callback_query(http.get(authorize_path(scope="openid email")))
    assert "realmId" not in query
    token = exchange(http, query["code"]).json()
    assert QboApi(http, token["access_token"], "123").get("preferences").status_code == 403
