"""KashFlow's memorable-word login: the two steps, wrong letters, lockout, session expiry and
re-login, logout, the KfToken header, and minting sessions through the control API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from kashflow_sim_helpers import BASE_URL, KashFlowApi, answer, login, new_simulator, start_login

from sandbox.simulators.harness import SimClock
from sandbox.simulators.kashflow import KashFlowSimulator
from sandbox.simulators.serve import serve_in_thread


@pytest.fixture
def sim(clock: SimClock) -> KashFlowSimulator:
    return new_simulator(clock)


@pytest.fixture
def http(sim: KashFlowSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=sim.transport(), base_url=BASE_URL) as client:
        yield client


def test_two_step_login(sim: KashFlowSimulator, http: httpx.Client) -> None:
    started = start_login(http)
    assert started.status_code == 201
    body = started.json()
    positions = [p["Position"] for p in body["MemorableWordList"]]
    assert len(set(positions)) == 3 and all(1 <= p <= len("ledgerlink") for p in positions)
    assert body["IsLockedOut"] is False and body["TemporaryToken"]

    finished = answer(http, body)
    assert finished.status_code == 200
    session = finished.json()
    assert session["CompanyName"] == "Demo Company (UK)" and session["SubscriptionExpired"] is False
    api = KashFlowApi(http, session["SessionToken"])
    assert api.get("nominals").status_code == 200
    # The JSON property names bind case-insensitively, as ASP.NET's do.
    assert http.post("/v2/sessiontoken", json={"username": "demo", "password": "demo-password"}).status_code == 201


def test_positions_vary_between_logins(http: httpx.Client) -> None:
    asked = {tuple(p["Position"] for p in start_login(http).json()["MemorableWordList"]) for _ in range(8)}
    assert len(asked) > 1


def test_one_login_is_one_company(http: httpx.Client) -> None:
    demo, joinery = KashFlowApi(http, login(http, "demo")), KashFlowApi(http, login(http, "joinery"))
    demo_codes = {n["Code"] for n in demo.get("nominals").json()}
    joinery_codes = {n["Code"] for n in joinery.get("nominals").json()}
    assert 461 in demo_codes and 7500 in joinery_codes and demo_codes.isdisjoint({7500})


def test_wrong_password_or_letters(sim: KashFlowSimulator, http: httpx.Client) -> None:
    wrong_password = start_login(http, password="nope")
    assert (wrong_password.status_code, wrong_password.json()) == (
        401, {"Message": "The user name or password is incorrect."})
    started = start_login(http).json()
    wrong = answer(http, started, word="xxxxxxxxxx")
    assert (wrong.status_code, wrong.json()) == (401, {"Message": "The memorable word characters are incorrect."})
    again = answer(http, started)  # the temporary token was used up by the wrong attempt
    assert again.status_code == 401 and "start the login again" in again.json()["Message"]
    shouted = answer(http, start_login(http).json(), word="LEDGERLINK")
    assert shouted.status_code == 401  # letters are case-sensitive by default
    sim.update_settings(memorable_word_case_sensitive=False, wrong_memorable_word_status=400)
    assert answer(http, start_login(http).json(), word="LEDGERLINK").status_code == 200
    assert answer(http, start_login(http).json(), word="zzzzzzzzzz").status_code == 400


def test_missing_or_extra_letters_are_wrong(http: httpx.Client) -> None:
    started = start_login(http).json()
    first = started["MemorableWordList"][0]["Position"]
    partial = http.put("/v2/sessiontoken", json={"TemporaryToken": started["TemporaryToken"], "MemorableWordList": [
        {"Position": first, "Value": "ledgerlink"[first - 1]}]})
    assert partial.status_code == 401


def test_temporary_token_expires(sim: KashFlowSimulator, http: httpx.Client) -> None:
    started = start_login(http).json()
    sim.advance_clock(301)
    assert answer(http, started).status_code == 401


def test_lockout_after_repeated_failures(sim: KashFlowSimulator, http: httpx.Client) -> None:
    for _ in range(5):
        assert answer(http, start_login(http).json(), word="wrongwords").status_code == 401
    locked = start_login(http)
    assert locked.status_code == 201
    assert (locked.json()["IsLockedOut"], locked.json()["TemporaryToken"], locked.json()["MemorableWordList"]) == (
        True, None, [])
    assert http.put("/v2/sessiontoken", json={"TemporaryToken": None, "MemorableWordList": []}).status_code == 401
    assert login(http, "joinery")  # other logins are unaffected
    assert http.post("/_sandbox/unlock", json={"username": "demo"}).json() == {"username": "demo",
                                                                                "locked_out": False}
    assert login(http, "demo")


def test_failures_reset_on_success_and_lockout_can_be_off(sim: KashFlowSimulator, http: httpx.Client) -> None:
    for _ in range(4):
        answer(http, start_login(http).json(), word="wrongwords")
    login(http)
    for _ in range(4):
        answer(http, start_login(http).json(), word="wrongwords")
    assert start_login(http).json()["IsLockedOut"] is False
    sim.update_settings(lockout_after_failures=None)
    for _ in range(10):
        answer(http, start_login(http).json(), word="wrongwords")
    assert start_login(http).json()["IsLockedOut"] is False


def test_session_expires_and_the_client_logs_in_again(sim: KashFlowSimulator, http: httpx.Client) -> None:
    api = KashFlowApi(http, login(http))
    sim.advance_clock(45 * 60 - 1)
    assert api.get("vat/settings/vatrates").status_code == 200  # use does not extend the session
    sim.advance_clock(1)
    expired = api.get("vat/settings/vatrates")
    assert (expired.status_code, expired.json()) == (401, {"Message": "Authorization has been denied for this request."})
    api.session_token = login(http)
    assert api.get("vat/settings/vatrates").status_code == 200


def test_sliding_expiry_setting(sim: KashFlowSimulator, http: httpx.Client) -> None:
    sim.update_settings(session_sliding_expiry=True, session_ttl_seconds=600)
    api = KashFlowApi(http, login(http))
    for _ in range(5):
        sim.advance_clock(500)
        assert api.get("vat/settings/vatrates").status_code == 200
    sim.advance_clock(600)
    assert api.get("vat/settings/vatrates").status_code == 401


def test_kftoken_header_and_logout(http: httpx.Client) -> None:
    token = login(http)
    assert http.get("/v2/nominals", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert http.get("/v2/nominals").status_code == 401
    api = KashFlowApi(http, token)
    assert api.get("nominals").status_code == 200
    assert http.delete(f"/v2/sessiontoken/{token}", headers={"Authorization": f"KfToken {token}"}).status_code == 204
    assert api.get("nominals").status_code == 401


def test_sessions_minted_through_the_control_api(sim: KashFlowSimulator, http: httpx.Client) -> None:
    minted = http.post("/_sandbox/tokens", json={"organisations": ["joinery"]}).json()
    assert minted["CompanyName"] == "Harbour & Finch Joinery Ltd" and minted["UserName"] == "joinery"
    api = KashFlowApi(http, minted["SessionToken"])
    assert api.get("bankaccounts").status_code == 200
    assert http.post("/_sandbox/tokens", json={"organisations": ["nobody"]}).status_code == 400
    with pytest.raises(ValueError, match="one company"):
        sim.mint_tokens(["demo", "joinery"])
    assert [o["username"] for o in http.get("/_sandbox/organisations").json()] == ["demo", "joinery"]
    sim.expire_sessions()
    assert api.get("bankaccounts").status_code == 401


def test_plain_error_format(sim: KashFlowSimulator, http: httpx.Client) -> None:
    sim.update_settings(error_format="plain")
    response = http.get("/v2/nominals")
    assert (response.status_code, response.text) == (401, "Authorization has been denied for this request.")
    assert response.headers["Content-Type"].startswith("text/plain")


def test_revoke_fault_ends_sessions(sim: KashFlowSimulator, http: httpx.Client) -> None:
    api = KashFlowApi(http, login(http))
    sim.inject_fault("revoke", "/v2/nominals")
    assert api.get("nominals").status_code == 401
    assert sim.sessions == {}
    api.session_token = login(http)
    assert api.get("nominals").status_code == 200


def test_served_over_http(sim: KashFlowSimulator) -> None:
    server = serve_in_thread(sim.wsgi_app)
    try:
        with httpx.Client(base_url=server.url) as http:
            api = KashFlowApi(http, login(http))
            meta = api.get("customers", params={"perpage": 10}).json()["MetaData"]
            assert meta["NextPageUrl"] == f"{server.url}/v2/customers?page=2&perpage=10"
    finally:
        server.stop()
