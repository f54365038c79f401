"""`ledgerlink local` as a user runs it: a separate process on loopback, real HTTP all the way
(gateway, moto's server, the Xero simulator's consent redirect), the CLI's dev token."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tests.e2e import conftest
from tests.e2e.conftest import ROOT

# The runtime fixture lives in tests/e2e/conftest.py; the name stays importable from here for the
# files that still import it from this module.
local = conftest.local


def _cli(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "sandbox.cli", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()


def test_connect_and_publish_over_real_http(local: dict[str, str]):
    token = _cli("token", "--business", "e2e-business", "--role", "admin")
    api = httpx.Client(
        base_url=local["API"].removesuffix("/v1"), headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    started = api.post("/v1/connection", json={"provider": "xero"})
    assert started.status_code == 201, started.text
    landed = httpx.get(started.json()["authorize_url"], follow_redirects=True, timeout=30)
    assert landed.status_code == 200 and landed.json()["status"] == "choose_organisation"
    organisation = api.get("/v1/connection/organisations").json()["organisations"][0]
    assert (
        api.post("/v1/connection/organisation", json={"organisation_id": organisation["id"]}).status_code
        == 200
    )

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lists = api.get("/v1/connection").json()["lists"]
        if len(lists) == 6 and all(entry["refreshed_at"] for entry in lists.values()):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the first import did not finish")

    category = next(r for r in api.get("/v1/lists/categories").json()["records"] if r["code"] == "429")
    tax = next(r for r in api.get("/v1/lists/tax_rates").json()["records"] if r["code"] == "INPUT2")
    item = {
        "id": "e2e-1", "type": "cost", "supplier": {"name": "Avon Security & Sons"}, "date": "2026-11-02",
        "currency": "GBP", "totals": {"net": 50.0, "tax": 10.0, "gross": 60.0},
        "lines": [{"description": "Alarm service", "amount": 50.0, "tax_amount": 10.0, "category": category["id"], "tax_rate": tax["id"]}],
    }  # fmt: skip
    assert api.post("/v1/items", json={"item": item, "publish": True}).status_code == 201
    deadline = time.monotonic() + 60
    while api.get("/v1/items/e2e-1").json()["status"] != "published" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert api.get("/v1/items/e2e-1").json()["status"] == "published"
    bills = httpx.get(f"{local['xero']}/_sandbox/writes", params={"kind": "Invoice"}).json()
    assert [(b["body"]["Type"], b["body"]["Contact"]["Name"], b["body"]["Total"]) for b in bills] == [
        ("ACCPAY", "Avon Security & Sons", 60.0)
    ]


def test_the_gateway_refuses_missing_and_forged_tokens_like_the_authorizer(local: dict[str, str]):
    base = local["API"].removesuffix("/v1")
    missing = httpx.get(f"{base}/v1/connection")
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "unauthenticated")
    forged = httpx.get(f"{base}/v1/connection", headers={"Authorization": "Bearer abc.def.ghi"})
    assert forged.status_code == 401
    unknown = httpx.get(f"{base}/v1/nowhere")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "route_not_found")


def test_the_openapi_document_covers_every_route(local: dict[str, str]):
    from infra.api_routes import ROUTES

    document = httpx.get(local["API"].removesuffix("/v1") + "/v1/openapi.json").json()
    for route in ROUTES:
        if route.path != "/v1/openapi.json":  # the document does not describe itself
            assert route.method.lower() in document["paths"][route.path], route
    assert document["paths"]["/v1/oauth/callback"]["get"]["security"] == []


KASHFLOW = {"username": "demo", "password": "demo-password", "memorable_word": "ledgerlink"}


def _wait_until(check, what: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.parametrize("provider", ["xero", "quickbooks", "sage", "freeagent", "kashflow"])
def test_every_ledger_connects_reconnects_changes_and_disconnects_over_http(
    local: dict[str, str], provider: str
):
    """Through `ledgerlink local`: the ledger's consent page filled in as a person would (signing
    in, ticking the organisation), or KashFlow's login."""
    base = local["API"].removesuffix("/v1")
    api = httpx.Client(
        base_url=base,
        headers={"Authorization": f"Bearer {_cli('token', '--business', f'e2e-{provider}')}"},
        timeout=30,
    )
    simulator = local.get(provider)
    browser = httpx.Client(timeout=30)

    def consent(authorize_url: str, organisation: str | None) -> httpx.Response:
        """Sign in on the simulator's consent page; tick ``organisation`` (or all offered)."""
        page = browser.get(authorize_url)
        if page.status_code == 302:  # auto-consent is on for this runtime
            return browser.get(page.headers["location"])
        offered = [o["id"] for o in browser.get(f"{simulator}/_sandbox/organisations").json()]
        form = {
            "username": "admin@example.com",
            "password": "sandbox",
            "organisation": [organisation] if organisation else offered,
            "action": "allow",
        }
        answer = browser.post(authorize_url, data=form)
        return browser.get(answer.headers["location"])

    if provider == "kashflow":
        assert (
            api.post("/v1/connection", json={"provider": provider, "credentials": KASHFLOW}).status_code
            == 201
        )
    else:
        browser.post(f"{simulator}/_sandbox/auto-consent", json={"enabled": False})
        first = browser.get(f"{simulator}/_sandbox/organisations").json()[0]["id"]
        landed = consent(
            api.post("/v1/connection", json={"provider": provider}).json()["authorize_url"], first
        )
        assert landed.status_code == 200, landed.text
        if landed.json()["status"] == "choose_organisation":
            api.post("/v1/connection/organisation", json={"organisation_id": first})
    connected = api.get("/v1/connection").json()
    assert connected["status"] == "connected", connected
    _wait_until(
        lambda: (
            all(f["refreshed_at"] for f in api.get("/v1/connection").json()["lists"].values())
            and api.get("/v1/connection").json()["lists"]
        ),
        f"{provider}'s first import",
    )

    # Reconnect: the same organisation again.
    if provider == "kashflow":
        again = api.post("/v1/connection/reconnect", json={"credentials": KASHFLOW}).json()["connection"]
    else:
        consent(api.post("/v1/connection/reconnect", json={}).json()["authorize_url"], first)
        again = api.get("/v1/connection").json()
    assert again["status"] == "connected" and again["organisation"] == connected["organisation"]

    # Change connection: another organisation of the same ledger.
    if provider == "kashflow":
        changed = api.post(
            "/v1/connection/change", json={"credentials": {**KASHFLOW, "username": "joinery"}}
        ).json()["connection"]
    else:
        other = next(
            o["id"] for o in browser.get(f"{simulator}/_sandbox/organisations").json() if o["id"] != first
        )
        landed = consent(api.post("/v1/connection/change", json={}).json()["authorize_url"], other)
        assert landed.status_code == 200, landed.text
        if landed.json()["status"] == "choose_organisation":
            offered = api.get("/v1/connection/organisations").json()["organisations"]
            api.post("/v1/connection/organisation", json={"organisation_id": offered[0]["id"]})
        changed = api.get("/v1/connection").json()
    assert changed["status"] == "connected"
    assert changed["organisation"]["id"] != connected["organisation"]["id"] and changed["merge_pending"]

    assert api.delete("/v1/connection", params={"keep_lists": "false"}).json()["status"] == "disconnected"
    assert api.get("/v1/connection").status_code == 404
