"""Xero identity: authorize (auto-consent and the consent page), code exchange with PKCE, refresh
rotation with the 30-minute grace, expiry, revocation and connections — all through the transport."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from xero_sim_helpers import (
    BASIC_AUTH,
    REDIRECT_URI,
    XeroApi,
    authorize_url,
    exchange_code,
    pkce_pair,
    redirect_query,
    refresh,
)

from sandbox.simulators.harness import DEFAULT_USER, RefreshTokenState, decode_jwt_claims
from sandbox.simulators.xero import XeroSimulator

pytestmark = pytest.mark.integration


def connect(client: httpx.Client) -> dict[str, Any]:
    """The whole dance with auto-consent: authorize → code → token."""
    verifier, challenge = pkce_pair()
    query = redirect_query(client.get(authorize_url(challenge)))
    response = exchange_code(client, query["code"], verifier)
    assert response.status_code == 200, response.text
    return response.json()


def test_code_flow_with_pkce_then_connections_and_rotation(xero: XeroSimulator, client: httpx.Client) -> None:
    verifier, challenge = pkce_pair()
    query = redirect_query(client.get(authorize_url(challenge, state="abc")))
    assert query["state"] == "abc"

    response = exchange_code(client, query["code"], verifier)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    token = response.json()
    assert set(token) == {"id_token", "access_token", "expires_in", "token_type", "refresh_token", "scope"}
    assert (token["expires_in"], token["token_type"]) == (1800, "Bearer")
    claims = decode_jwt_claims(token["access_token"])
    assert claims["xero_userid"] == DEFAULT_USER.user_id
    assert claims["authentication_event_id"]
    assert "offline_access" in claims["scope"]
    assert decode_jwt_claims(token["id_token"])["email"] == "admin@example.com"

    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    connections = client.get("/connections", headers=bearer,
                              params={"authEventId": claims["authentication_event_id"]}).json()
    assert sorted(c["tenantName"] for c in connections) == ["Demo Company (UK)", "Harbour & Finch Joinery Ltd"]
    assert {c["tenantType"] for c in connections} == {"ORGANISATION"}
    assert client.get("/connections", headers=bearer, params={"authEventId": "nope"}).json() == []

    # Rotation: the new pair works; the previous refresh token is still accepted within 30 minutes.
    first_refresh = token["refresh_token"]
    rotated = refresh(client, first_refresh).json()
    assert rotated["refresh_token"] != first_refresh
    assert decode_jwt_claims(rotated["access_token"])["authentication_event_id"] == claims["authentication_event_id"]
    assert xero.tokens.refresh_token_state(first_refresh) is RefreshTokenState.SUPERSEDED

    xero.advance_clock(29 * 60)
    in_grace = refresh(client, first_refresh)
    assert in_grace.status_code == 200  # a lost refresh response is recoverable within the grace

    xero.advance_clock(2 * 60)  # now 31 minutes after the first token was superseded
    late = refresh(client, first_refresh)
    assert (late.status_code, late.json()) == (400, {"error": "invalid_grant"})

    newest = in_grace.json()["refresh_token"]
    assert refresh(client, newest).status_code == 200
    states = {r["token"]: r["status"] for r in xero.refresh_tokens()}
    assert states[first_refresh] == "expired"
    assert list(states.values()).count("current") == 1


def test_superseded_token_dies_when_its_grace_ends_even_if_newer_ones_are_used(
        xero: XeroSimulator, client: httpx.Client) -> None:
    token = connect(client)
    second = refresh(client, token["refresh_token"]).json()["refresh_token"]
    xero.advance_clock(20 * 60)
    refresh(client, second)  # second is superseded now; the first's grace keeps its own deadline
    xero.advance_clock(11 * 60)
    assert refresh(client, token["refresh_token"]).status_code == 400
    assert refresh(client, second).status_code == 200


def test_authorization_code_is_single_use(client: httpx.Client) -> None:
    verifier, challenge = pkce_pair()
    code = redirect_query(client.get(authorize_url(challenge)))["code"]
    assert exchange_code(client, code, verifier).status_code == 200
    reused = exchange_code(client, code, verifier)
    assert (reused.status_code, reused.json()) == (400, {"error": "invalid_grant"})
    assert reused.headers["X-Sandbox-Reason"] == "authorization code already used"


def test_authorization_code_expires(xero: XeroSimulator, client: httpx.Client) -> None:
    verifier, challenge = pkce_pair()
    code = redirect_query(client.get(authorize_url(challenge)))["code"]
    xero.advance_clock(301)
    assert exchange_code(client, code, verifier).json()["error"] == "invalid_grant"


@pytest.mark.parametrize("mismatch", ["redirect_uri", "verifier", "missing_verifier"])
def test_code_exchange_mismatches_are_invalid_grant(client: httpx.Client, mismatch: str) -> None:
    verifier, challenge = pkce_pair()
    code = redirect_query(client.get(authorize_url(challenge)))["code"]
    if mismatch == "redirect_uri":
        response = exchange_code(client, code, verifier, redirect_uri="http://127.0.0.1:9999/other")
    elif mismatch == "verifier":
        response = exchange_code(client, code, pkce_pair()[0])
    else:
        response = exchange_code(client, code, None)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_wrong_client_credentials_are_invalid_client(client: httpx.Client) -> None:
    verifier, challenge = pkce_pair()
    code = redirect_query(client.get(authorize_url(challenge)))["code"]
    response = exchange_code(client, code, verifier, auth=(BASIC_AUTH[0], "not-the-secret"))
    assert (response.status_code, response.json()) == (400, {"error": "invalid_client"})
    # client_secret_post (what the official SDK's refresh uses) is accepted too.
    ok = client.post("/connect/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier,
        "client_id": BASIC_AUTH[0], "client_secret": BASIC_AUTH[1]})
    # A failed client authentication never reached the code, so it is still good.
    assert ok.status_code == 200 and "access_token" in ok.json()


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"client_id": "someone-else"}, "unauthorized_client"),
    ({"redirect_uri": "https://evil.example/callback"}, "Invalid redirect_uri"),
    ({"redirect_uri": "http://10.0.0.5:8080/callback"}, "Invalid redirect_uri"),
])
def test_authorize_refuses_unknown_clients_and_redirects_without_redirecting(
        client: httpx.Client, kwargs: dict[str, str], reason: str) -> None:
    response = client.get(authorize_url(pkce_pair()[1], **kwargs))
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert reason in response.text


def test_loopback_redirects_on_any_port_are_accepted(client: httpx.Client) -> None:
    for uri in ("http://localhost:3000/cb", "http://127.0.0.1:54321/any/path"):
        assert client.get(authorize_url(None, redirect_uri=uri)).status_code == 302


def test_broad_transaction_scope_is_refused_for_new_apps(xero: XeroSimulator, client: httpx.Client) -> None:
    response = client.get(authorize_url(None, scope="offline_access accounting.transactions"))
    query = redirect_query(response)
    assert (query["error"], query["state"]) == ("invalid_scope", "st-123")
    xero.update_settings(granular_scopes_only=False)
    assert "code" in redirect_query(client.get(authorize_url(None, scope="offline_access accounting.transactions")))


def test_without_offline_access_there_is_no_refresh_token(client: httpx.Client) -> None:
    verifier, challenge = pkce_pair()
    code = redirect_query(client.get(authorize_url(challenge, scope="accounting.settings")))["code"]
    token = exchange_code(client, code, verifier).json()
    assert "refresh_token" not in token
    assert "id_token" not in token  # no openid scope either


def test_auto_consent_can_deny(xero: XeroSimulator, client: httpx.Client) -> None:
    xero.set_auto_consent(True, deny=True)
    query = redirect_query(client.get(authorize_url(None)))
    assert query == {"error": "access_denied", "state": "st-123"}


def test_consent_page_signs_in_and_picks_organisations(xero: XeroSimulator, client: httpx.Client) -> None:
    xero.set_auto_consent(False)
    verifier, challenge = pkce_pair()
    url = authorize_url(challenge)
    page = client.get(url)
    assert page.status_code == 200
    for test_id in ("consent-username", "consent-password", "consent-organisation", "consent-submit"):
        assert f'data-testid="{test_id}"' in page.text
    assert page.text.count('data-testid="consent-organisation"') == 2
    assert '<label for="consent-username">' in page.text

    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    hidden = {k: v.replace("&amp;", "&") for k, v in hidden.items()}
    wrong = client.post(url, data={**hidden, "username": "admin@example.com", "password": "nope",
                                   "action": "allow"})
    assert wrong.status_code == 400 and 'role="alert"' in wrong.text

    none_picked = client.post(url, data={**hidden, "username": "admin@example.com", "password": "sandbox",
                                         "action": "allow"})
    assert "Choose at least one organisation" in none_picked.text

    joinery = next(o["id"] for o in xero.organisations() if o["name"].startswith("Harbour"))
    allowed = client.post(url, data={**hidden, "username": "admin@example.com", "password": "sandbox",
                                     "organisation": joinery, "action": "allow"})
    token = exchange_code(client, redirect_query(allowed)["code"], verifier).json()
    event = decode_jwt_claims(token["access_token"])["authentication_event_id"]
    connections = client.get("/connections", params={"authEventId": event},
                             headers={"Authorization": f"Bearer {token['access_token']}"}).json()
    assert [c["tenantId"] for c in connections] == [joinery]

    cancelled = client.post(url, data={**hidden, "action": "cancel"})
    assert redirect_query(cancelled) == {"error": "access_denied", "state": "st-123"}


def test_expired_access_token_gets_token_expired_envelope(
        xero: XeroSimulator, api: XeroApi, tokens: dict[str, Any]) -> None:
    xero.advance_clock(1800)
    response = api.get("Organisation")
    assert response.status_code == 401
    body = response.json()
    assert body["Title"] == "Unauthorized" and body["Status"] == 401
    assert body["Detail"].startswith("TokenExpired: token expired at ")
    assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_refresh_token_dies_after_60_days_unused(xero: XeroSimulator, client: httpx.Client) -> None:
    token = connect(client)
    xero.advance_clock(60 * 24 * 3600 - 60)
    still_alive = refresh(client, token["refresh_token"])
    assert still_alive.status_code == 200
    xero.advance_clock(60 * 24 * 3600)
    assert refresh(client, still_alive.json()["refresh_token"]).json() == {"error": "invalid_grant"}


def test_revocation_kills_tokens_and_connections(xero: XeroSimulator, client: httpx.Client) -> None:
    token = connect(client)
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    tenant = client.get("/connections", headers=bearer).json()[0]["tenantId"]
    revoked = client.post("/connect/revocation", data={"token": token["refresh_token"]}, auth=BASIC_AUTH)
    assert (revoked.status_code, revoked.content) == (200, b"")
    assert refresh(client, token["refresh_token"]).json() == {"error": "invalid_grant"}
    assert client.get("/api.xro/2.0/Organisation", headers={**bearer, "xero-tenant-id": tenant}).status_code == 401
    assert xero.connections == {}


def test_deleting_one_connection_forbids_that_tenant_only(
        client: httpx.Client, api: XeroApi, tokens: dict[str, Any], joinery_id: str) -> None:
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    connection = next(c for c in client.get("/connections", headers=bearer).json() if c["tenantId"] == api.tenant_id)
    assert client.delete(f"/connections/{connection['id']}", headers=bearer).status_code == 204
    assert client.delete(f"/connections/{connection['id']}", headers=bearer).status_code == 404

    forbidden = api.get("Organisation")
    assert (forbidden.status_code, forbidden.json()["Detail"]) == (403, "AuthenticationUnsuccessful")
    other = XeroApi(api.http, tokens["access_token"], joinery_id).get("Organisation")
    assert other.status_code == 200
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_authlib_httpx_client_does_the_dance_through_the_transport(xero: XeroSimulator, client: httpx.Client) -> None:
    """The adapters use authlib's httpx OAuth2 client; it must work against the simulator as is."""
    from authlib.integrations.httpx_client import OAuth2Client

    saved: list[dict[str, Any]] = []
    oauth = OAuth2Client(
        client_id=BASIC_AUTH[0], client_secret=BASIC_AUTH[1], token_endpoint_auth_method="client_secret_basic",
        code_challenge_method="S256", redirect_uri=REDIRECT_URI, scope="openid offline_access accounting.settings",
        transport=xero.transport(), update_token=lambda token, **_: saved.append(token),
    )
    verifier = pkce_pair()[0]
    url, _state = oauth.create_authorization_url("http://xero.sandbox.test/identity/connect/authorize",
                                                code_verifier=verifier)
    callback = client.get(url).headers["Location"]
    token = oauth.fetch_token("http://xero.sandbox.test/connect/token", authorization_response=callback,
                              code_verifier=verifier)
    assert {"access_token", "refresh_token", "id_token", "expires_at"} <= set(token)

    rotated = oauth.refresh_token("http://xero.sandbox.test/connect/token")
    assert rotated["refresh_token"] != token["refresh_token"]
    assert saved and saved[-1]["refresh_token"] == rotated["refresh_token"]
    assert oauth.get("http://xero.sandbox.test/connections").status_code == 200
