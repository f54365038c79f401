"""Helpers shared by the FreeAgent simulator tests: a thin API client, the OAuth dance and bodies."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import sim_helpers
from sim_helpers import BASIC_AUTH, SimApi, follow_pages, with_settings

from sandbox.simulators.freeagent import FreeAgentSimulator
from sandbox.simulators.harness import DEFAULT_APP, SimClock

# Any origin works in-process; a made-up one keeps real hosts out of the tests.
BASE_URL = "http://freeagent.sandbox.test"
REDIRECT_URI = "http://127.0.0.1:8765/v1/oauth/freeagent/callback"
USER_AGENT = "ledgerlink-tests/1.0"
PDF = base64.b64encode(b"%PDF-1.4 receipt").decode()


def new_simulator(clock: SimClock, **settings: Any) -> FreeAgentSimulator:
    return with_settings(FreeAgentSimulator(clock, auto_consent=True), **settings)


def http_client(sim: FreeAgentSimulator, base_url: str = BASE_URL) -> httpx.Client:
    return httpx.Client(transport=sim.transport(), base_url=base_url, headers={"User-Agent": USER_AGENT})


class FreeAgentApi(SimApi):
    """The API v2 with the bearer token filled in; ``url(path)`` builds ids the way the API does."""

    def __init__(self, http: httpx.Client, access_token: str) -> None:
        self.http = http
        self.access_token = access_token

    def url(self, path: str) -> str:
        return f"{self.http.base_url}".rstrip("/") + "/v2/" + path.lstrip("/")

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                **kwargs: Any) -> httpx.Response:
        target = path if path.startswith("http") else f"/v2/{path.lstrip('/')}"
        merged = {"Authorization": f"Bearer {self.access_token}", "Accept": "application/json", **(headers or {})}
        return self.http.request(method, target, headers=merged, **kwargs)

    def all_pages(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Follow ``Link: rel="next"`` to the end, as a client must."""
        return follow_pages(self.get(path, params=params), self.get, rows=lambda page: page.json()[key],
                            next_url=lambda page: page.links.get("next", {}).get("url"))

    def pages(self, path: str, key: str, **params: Any) -> list[list[dict[str, Any]]]:
        """Each page's rows, following ``Link: rel="next"`` until there is none."""
        pages: list[list[dict[str, Any]]] = []

        def rows(page: httpx.Response) -> list[dict[str, Any]]:
            pages.append(page.json()[key])
            return pages[-1]

        follow_pages(self.get(path, params=params), self.get, rows=rows,
                     next_url=lambda page: page.links.get("next", {}).get("url"))
        return pages


def approve_url(*, state: str = "st-1", redirect_uri: str = REDIRECT_URI, client_id: str = DEFAULT_APP.client_id,
                response_type: str = "code") -> str:
    params = {"client_id": client_id, "response_type": response_type, "redirect_uri": redirect_uri, "state": state}
    return "/v2/approve_app?" + str(httpx.QueryParams(params))


def redirect_query(response: httpx.Response) -> dict[str, str]:
    return sim_helpers.redirect_query(response, REDIRECT_URI)


def exchange_code(http: httpx.Client, code: str, *, redirect_uri: str = REDIRECT_URI,
                  auth: tuple[str, str] | None = BASIC_AUTH) -> httpx.Response:
    return sim_helpers.exchange_code(http, "/v2/token_endpoint", code, redirect_uri=redirect_uri, auth=auth)


def refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return sim_helpers.refresh(http, "/v2/token_endpoint", refresh_token)


def connect(http: httpx.Client) -> dict[str, Any]:
    """approve_app (auto-consent) → code → tokens."""
    code = redirect_query(http.get(approve_url()))["code"]
    response = exchange_code(http, code)
    assert response.status_code == 200, response.text
    return response.json()


def bill(api: FreeAgentApi, contact_url: str, **overrides: Any) -> dict[str, Any]:
    """A valid bill body for the Demo Company, overridable field by field (``item`` for the line)."""
    item = {"category": api.url("categories/461"), "description": "Printer paper", "total_value": "120.00"}
    item |= overrides.pop("item", {})
    body = {"contact": contact_url, "reference": "SUP-INV-881", "dated_on": "2026-10-30", "due_on": "2026-11-29",
            "bill_items": [item], **overrides}
    return {"bill": body}


def messages(response: httpx.Response, status: int = 422) -> list[str]:
    """The messages of FreeAgent's error envelope (one message is an object, several a list)."""
    assert response.status_code == status, response.text
    error = response.json()["errors"]["error"]
    return [e["message"] for e in (error if isinstance(error, list) else [error])]
