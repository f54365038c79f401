"""Sage OAuth: authorize (auto-consent and the consent page), GB/ codes with a 60 s life, client
credentials in the body, PKCE, strictly single-use refresh tokens (grace as a setting), revoke,
5-minute access tokens, and business selection with X-Business."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sage_sim_helpers import (
    CLIENT,
    REDIRECT_URI,
    SAGE_URL,
    SageApi,
    authorize_path,
    callback_query,
    exchange,
    refresh,
)

from sandbox.simulators.harness import SimClock
from sandbox.simulators.sage import SageSimulator


@pytest.fixture
def sage(clock: SimClock) -> SageSimulator:
    return SageSimulator(clock, auto_consent=True)


@pytest.fixture
def http(sage: SageSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=sage.transport(), base_url=SAGE_URL) as client:
        yield client


def connect(http: httpx.Client, **extra: str) -> dict[str, Any]:
    response = exchange(http, callback_query(http.get(authorize_path()))["code"], **extra)
    assert response.status_code == 200, response.text
    return response.json()


def test_code_flow_and_strictly_single_use_refresh(sage: SageSimulator, http: httpx.Client) -> None:
    query = callback_query(http.get(authorize_path(state="abc")))
    assert (query["state"], query["country"]) == ("abc", "GB") and query["code"].startswith("GB/")
    token = exchange(http, query["code"]).json()
    assert (token["token_type"], token["expires_in"], token["refresh_token_expires_in"]) == ("bearer", 300, 2678400)
    assert token["scope"] == "full_access" and len(token["requested_by_id"]) == 32

    rotated = refresh(http, token["refresh_token"])
    assert rotated.status_code == 200 and rotated.json()["refresh_token"] != token["refresh_token"]
    reused = refresh(http, token["refresh_token"])  # no grace: the old token is dead at once
    assert (reused.status_code, reused.json()) == (400, {"error": "invalid_grant"})

    sage.update_settings(refresh_token_grace_seconds=60)
    newer = refresh(http, rotated.json()["refresh_token"]).json()
    assert refresh(http, rotated.json()["refresh_token"]).status_code == 200  # inside the configured grace
    sage.advance_clock(61)
    assert refresh(http, rotated.json()["refresh_token"]).status_code == 400
    assert newer["refresh_token"]


def test_refresh_token_dies_after_31_days_unused(sage: SageSimulator, http: httpx.Client) -> None:
    token = connect(http)
    sage.advance_clock(31 * 24 * 3600)
    assert refresh(http, token["refresh_token"]).json() == {"error": "invalid_grant"}


def test_code_lives_60_seconds_once(sage: SageSimulator, http: httpx.Client) -> None:
    code = callback_query(http.get(authorize_path()))["code"]
    assert exchange(http, code).status_code == 200
    assert exchange(http, code).json() == {"error": "invalid_grant"}
    late = callback_query(http.get(authorize_path()))["code"]
    sage.advance_clock(61)
    assert exchange(http, late).json() == {"error": "invalid_grant"}


def test_client_credentials_go_in_the_body(http: httpx.Client, sage: SageSimulator) -> None:
    code = callback_query(http.get(authorize_path()))["code"]
    basic = http.post("/token", auth=(CLIENT["client_id"], CLIENT["client_secret"]),
                      data={"grant_type": "authorization_code", "code": code, "redirect_uri": "x"})
    assert basic.json() == {"error": "invalid_client"}
    wrong = exchange(http, code, client_secret="nope")
    assert wrong.json() == {"error": "invalid_client"}
    sage.update_settings(accept_basic_client_auth=True)
    code = callback_query(http.get(authorize_path()))["code"]
    ok = http.post("/token", auth=(CLIENT["client_id"], CLIENT["client_secret"]),
                   data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI})
    assert ok.status_code == 200


@pytest.mark.parametrize("method", ["S256", "plain"])
def test_pkce(http: httpx.Client, method: str) -> None:
    verifier = secrets.token_urlsafe(48)
    challenge = (base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                 if method == "S256" else verifier)
    path = authorize_path(code_challenge=challenge, code_challenge_method=method)
    code = callback_query(http.get(path))["code"]
    assert exchange(http, code, code_verifier="x" * 43).json() == {"error": "invalid_grant"}
    code = callback_query(http.get(path))["code"]
    assert exchange(http, code, code_verifier=verifier).status_code == 200


def test_revoke_answers_success_ok_and_kills_the_refresh_token(http: httpx.Client) -> None:
    token = connect(http)
    revoked = http.post("/revoke", data={**CLIENT, "token": token["refresh_token"]})
    assert (revoked.status_code, revoked.json()) == (200, {"success": "ok"})
    assert refresh(http, token["refresh_token"]).json() == {"error": "invalid_grant"}
    assert SageApi(http, token["access_token"]).get("contacts").status_code == 401


def test_access_token_expires_after_five_minutes(sage: SageSimulator, http: httpx.Client) -> None:
    token = connect(http)
    api = SageApi(http, token["access_token"])
    assert api.get("contacts").status_code == 200
    sage.advance_clock(300)
    expired = api.get("contacts")
    assert expired.status_code == 401
    assert expired.json()[0]["$severity"] == "error"


def test_consent_page_lists_the_businesses(sage: SageSimulator, http: httpx.Client) -> None:
    sage.set_auto_consent(False)
    page = http.get(authorize_path())
    assert page.text.count('data-testid="consent-organisation"') == 2
    for test_id in ("consent-username", "consent-password", "consent-submit"):
        assert f'data-testid="{test_id}"' in page.text
    form = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    joinery = sage.business("Harbour & Finch Joinery Ltd").id
    bad = http.post("/oauth2/auth/central", data={**form, "username": "admin@example.com", "password": "x",
                                                  "organisation": joinery, "action": "allow"})
    assert bad.status_code == 400
    good = callback_query(http.post("/oauth2/auth/central", data={
        **form, "username": "admin@example.com", "password": "sandbox", "organisation": joinery, "action": "allow"}))
    token = exchange(http, good["code"]).json()
    # A Sage token belongs to the user: every business of theirs is reachable with X-Business.
    businesses = SageApi(http, token["access_token"]).get("businesses").json()
    assert businesses["$total"] == 2


@pytest.mark.parametrize(("extra", "error"), [({"scope": "everything"}, "invalid_scope"),
                                              ({"response_type": "token"}, "unsupported_response_type")])
def test_authorize_refusals(http: httpx.Client, extra: dict[str, str], error: str) -> None:
    assert callback_query(http.get(authorize_path(**extra)))["error"] == error


def test_deny(sage: SageSimulator, http: httpx.Client) -> None:
    sage.set_auto_consent(True, deny=True)
    assert callback_query(http.get(authorize_path()))["error"] == "access_denied"


def test_business_selection_and_isolation(sage: SageSimulator, http: httpx.Client) -> None:
    token = connect(http)
    demo, joinery = sage.business("Demo Company (UK)").id, sage.business("Harbour & Finch Joinery Ltd").id
    lead = SageApi(http, token["access_token"]).get("businesses/lead").json()
    assert (lead["id"], lead["subscriptions"][0]["id"]) == (demo, "ACCOUNTING_PLUS")

    no_header = SageApi(http, token["access_token"]).get("contacts").json()
    demo_rows = SageApi(http, token["access_token"], demo).get("contacts").json()
    joinery_rows = SageApi(http, token["access_token"], joinery).get("contacts").json()
    assert no_header == demo_rows and joinery_rows["$items"] != demo_rows["$items"]

    demo_contact = demo_rows["$items"][0]["id"]
    assert SageApi(http, token["access_token"], joinery).get(f"contacts/{demo_contact}").status_code == 404

    sage.set_lead_business(joinery)  # Sage may change the lead silently
    assert SageApi(http, token["access_token"]).get("contacts").json() == joinery_rows

    unknown = SageApi(http, token["access_token"], "0" * 32).get("contacts")
    assert unknown.status_code == 403
    sage.update_settings(unknown_business_status=404)
    assert SageApi(http, token["access_token"], "0" * 32).get("contacts").status_code == 404


def test_user_endpoint(http: httpx.Client) -> None:
    token = connect(http)
    user = SageApi(http, token["access_token"]).get("user").json()
    assert user["email"] == "admin@example.com" and user["id"] == token["requested_by_id"]
