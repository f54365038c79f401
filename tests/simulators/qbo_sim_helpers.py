"""Helpers for the QuickBooks simulator tests (imported by the test modules)."""

from __future__ import annotations

from typing import Any

import httpx
import sim_helpers
from sim_helpers import BASIC_AUTH, SimApi

from sandbox.simulators.harness import DEFAULT_APP
from sandbox.simulators.quickbooks import ACCOUNTING_SCOPE, QuickBooksSimulator

# Any origin works in-process; a made-up one keeps real hosts out of the tests.
QBO_URL = "http://quickbooks.sandbox.test"
REDIRECT_URI = "http://127.0.0.1:8765/v1/oauth/quickbooks/callback"


class QboApi(SimApi):
    """A thin Accounting API client: bearer token, realm in the path, ``minorversion=75``."""

    def __init__(self, http: httpx.Client, access_token: str, realm_id: str) -> None:
        self.http = http
        self.access_token = access_token
        self.realm_id = realm_id

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        query = {"minorversion": "75", **(params or {})}
        all_headers = {"Authorization": f"Bearer {self.access_token}", "Accept": "application/json",
                       **(headers or {})}
        return self.http.request(method, f"/v3/company/{self.realm_id}/{path.lstrip('/')}", params=query,
                                 headers=all_headers, **kwargs)

    def query(self, statement: str) -> httpx.Response:
        return self.get("query", params={"query": statement})

    def rows(self, statement: str, entity: str) -> list[dict[str, Any]]:
        response = self.query(statement)
        assert response.status_code == 200, response.text
        return response.json()["QueryResponse"].get(entity, [])

    def pages(self, statement: str, entity: str, page_size: int) -> list[list[dict[str, Any]]]:
        """Every page of ``statement`` by ``STARTPOSITION``/``MAXRESULTS``, up to the first page
        shorter than ``page_size`` (perhaps empty)."""
        pages: list[list[dict[str, Any]]] = []
        while True:
            start = len(pages) * page_size + 1
            pages.append(self.rows(f"{statement} STARTPOSITION {start} MAXRESULTS {page_size}", entity))
            if len(pages[-1]) < page_size:
                return pages


def authorize_path(*, state: str = "st-1", scope: str = ACCOUNTING_SCOPE, redirect_uri: str = REDIRECT_URI,
                   **extra: str) -> str:
    params = {"client_id": DEFAULT_APP.client_id, "response_type": "code", "scope": scope,
              "redirect_uri": redirect_uri, "state": state, **extra}
    return "/connect/oauth2?" + str(httpx.QueryParams(params))


def callback_query(response: httpx.Response) -> dict[str, str]:
    return sim_helpers.redirect_query(response, REDIRECT_URI)


def exchange(http: httpx.Client, code: str, *, redirect_uri: str = REDIRECT_URI,
             auth: tuple[str, str] | None = BASIC_AUTH) -> httpx.Response:
    return sim_helpers.exchange_code(http, "/oauth2/v1/tokens/bearer", code, redirect_uri=redirect_uri, auth=auth)


def refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return sim_helpers.refresh(http, "/oauth2/v1/tokens/bearer", refresh_token)


def active_vendor_id(sim: QuickBooksSimulator, realm_id: str) -> str:
    return next(v["Id"] for v in sim.companies[realm_id].entities["Vendor"].values() if v["Active"])


def account_id(sim: QuickBooksSimulator, realm_id: str, code: str) -> str:
    return sim.companies[realm_id].account_by_code(code)["Id"]


def tax_code_id(sim: QuickBooksSimulator, realm_id: str, name: str = "20.0% S") -> str:
    return next(c["Id"] for c in sim.companies[realm_id].entities["TaxCode"].values() if c["Name"] == name)


def bill(sim: QuickBooksSimulator, realm_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid bill for the Demo Company: £100 net to General Expenses at 20 %."""
    detail = {"AccountRef": {"value": account_id(sim, realm_id, "429")},
              "TaxCodeRef": {"value": tax_code_id(sim, realm_id)}, "ClassRef": {"value": "1"}}
    detail |= overrides.pop("detail", {})
    return {"VendorRef": {"value": active_vendor_id(sim, realm_id)}, "TxnDate": "2026-10-30",
            "DueDate": "2026-11-29", "DocNumber": "SUP-INV-881", "GlobalTaxCalculation": "TaxExcluded",
            "Line": [{"DetailType": "AccountBasedExpenseLineDetail", "Amount": 100.0, "Description": "Paper",
                      "AccountBasedExpenseLineDetail": detail}], **overrides}


def fault_code(response: httpx.Response) -> str:
    return str(response.json()["Fault"]["Error"][0]["code"])
