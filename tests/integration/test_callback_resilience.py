"""The OAuth callback under a busy ledger: the code exchange and the organisation look-up wait out
429s and transient failures inside a bounded time, a spent or refused code is never sent twice, and
a callback that still fails says what to do, stores nothing, and leaves starting again open."""

from __future__ import annotations

import httpx

from ledgerlink.providers.base import CALLBACK_BUDGET_SECONDS, MIN_ATTEMPT_SECONDS
from tests.integration.conftest import APP_ORIGIN, Service

RETURN_URL = f"{APP_ORIGIN}/settings/connections"


def _sign_in(service: Service, provider: str, **body: str) -> tuple[httpx.Response, float]:
    """Start a connection and come back through the ledger's consent page; our callback's answer
    and the seconds (on the shared clock) the callback took."""
    service.simulator(provider)
    started = service.client().post("/v1/connection", json={"provider": provider, **body})
    assert started.status_code == 201, started.text
    consented = service.browser().get(started.json()["authorize_url"])
    assert consented.status_code == 302, consented.text[:300]
    before = service.clock.now()
    callback = service.browser().get(consented.headers["location"])
    return callback, (service.clock.now() - before).total_seconds()


def _stored_token_secrets(service: Service) -> list[str]:
    secrets = service.session.client("secretsmanager").list_secrets()["SecretList"]
    return [s["Name"] for s in secrets if "connections/" in s["Name"]]


def test_a_rate_limited_code_exchange_waits_for_retry_after_and_connects(service: Service):
    quickbooks = service.simulator("quickbooks")
    quickbooks.inject_fault("429", "/oauth2/v1/tokens/bearer", method="POST", count=1, retry_after=4)

    callback, took = _sign_in(service, "quickbooks")

    assert callback.status_code == 200, callback.text
    assert callback.json()["status"] == "connected"
    assert 4 <= took < CALLBACK_BUDGET_SECONDS  # waited as told, on the injected clock
    exchanges = quickbooks.request_log.entries(path_glob="/oauth2/v1/tokens/bearer", method="POST")
    assert len(exchanges) == 2


def test_a_rate_limited_organisation_look_up_is_retried(service: Service):
    sage = service.simulator("sage")
    sage.inject_fault("429", "*/businesses", method="GET", count=2, retry_after=2)

    callback, _took = _sign_in(service, "sage")

    assert callback.status_code == 200, callback.text
    assert callback.json()["status"] in {"connected", "choose_organisation"}
    assert len(sage.request_log.entries(path_glob="*/businesses", method="GET")) == 3
    assert service.client().get("/v1/connection").status_code == 200


def test_a_storm_longer_than_the_budget_ends_in_a_clear_error_and_starting_again_works(service: Service):
    quickbooks = service.simulator("quickbooks")
    quickbooks.inject_fault("429", "/oauth2/v1/tokens/bearer", method="POST", count=None, retry_after=8)

    callback, took = _sign_in(service, "quickbooks")

    assert callback.status_code == 503
    error = callback.json()["error"]
    assert error["code"] == "ledger_busy"
    assert error["field"] == "provider" and error["details"] == {"provider": "quickbooks"}
    assert "QuickBooks Online is busy" in error["message"] and "again" in error["message"]
    # Tries at 0 s, 8 s and 16 s; a fourth, at 24 s, would not fit the budget, so it stops there.
    assert took <= CALLBACK_BUDGET_SECONDS
    assert len(quickbooks.request_log.entries(path_glob="/oauth2/v1/tokens/bearer", method="POST")) == 3
    assert service.client().get("/v1/connection").status_code == 404
    assert _stored_token_secrets(service) == []

    quickbooks.clear_faults()
    assert service.connect("quickbooks")["status"] == "connected"


def test_a_5xx_storm_at_the_organisation_look_up_redirects_with_ledger_busy(service: Service):
    xero = service.simulator("xero")
    xero.inject_fault("503", "/connections", method="GET", count=None)

    callback, took = _sign_in(service, "xero", return_url=RETURN_URL)

    assert callback.status_code == 302
    assert callback.headers["location"] == f"{RETURN_URL}?status=ledger_busy"
    assert took <= CALLBACK_BUDGET_SECONDS + MIN_ATTEMPT_SECONDS
    assert len(xero.request_log.entries(path_glob="/connections", method="GET")) > 1  # it was retried
    assert service.client().get("/v1/connection").status_code == 404
    assert _stored_token_secrets(service) == []  # the tokens the exchange brought are dropped

    xero.clear_faults()
    assert service.connect_xero()["status"] == "connected"


def test_a_refused_code_is_not_sent_again(service: Service):
    xero = service.simulator("xero")
    started = service.client().post("/v1/connection", json={"provider": "xero"})
    callback_url = service.browser().get(started.json()["authorize_url"]).headers["location"]
    service.clock.advance(xero.settings.authorization_code_ttl_seconds + 1)  # the code dies first

    refused = service.browser().get(callback_url)

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "oauth_denied"
    assert "start the connection again" in refused.json()["error"]["message"]
    assert len(xero.request_log.entries(path_glob="/connect/token", method="POST")) == 1  # invalid_grant
    assert service.client().get("/v1/connection").status_code == 404


def test_a_code_exchange_whose_answer_was_lost_is_not_repeated(service: Service):
    xero = service.simulator("xero")
    xero.inject_fault("lost_response", "/connect/token", method="POST", count=1)

    callback, _took = _sign_in(service, "xero")

    # The ledger took the code and its answer never came: the code is spent, so no second try.
    assert callback.status_code == 503
    assert callback.json()["error"]["code"] == "ledger_busy"
    assert len(xero.request_log.entries(path_glob="/connect/token", method="POST")) == 1
    assert service.client().get("/v1/connection").status_code == 404
    assert service.connect_xero()["status"] == "connected"
