"""Helpers for the Sage simulator tests (imported by the test modules)."""

from __future__ import annotations

from typing import Any

import httpx
import sim_helpers
from sim_helpers import SimApi, follow_pages

from sandbox.simulators.harness import DEFAULT_APP
from sandbox.simulators.sage import SageSimulator

SAGE_URL = "http://sage.sandbox.test"
REDIRECT_URI = "http://127.0.0.1:8765/v1/oauth/sage/callback"
CLIENT = {"client_id": DEFAULT_APP.client_id, "client_secret": DEFAULT_APP.client_secret or ""}


class SageApi(SimApi):
    """A thin v3.1 client: bearer token and (optionally) the X-Business header."""

    def __init__(self, http: httpx.Client, access_token: str, business_id: str | None = None) -> None:
        self.http = http
        self.access_token = access_token
        self.business_id = business_id

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.access_token}", "Accept": "application/json",
                   **({"X-Business": self.business_id} if self.business_id else {}), **kwargs.pop("headers", {})}
        return self.http.request(method, f"/v3.1/{path.lstrip('/')}", headers=headers, **kwargs)

    def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Follow ``$next`` (a relative URL) until it is null, as a Sage client must."""
        return follow_pages(self.get(path, params=params), self.get,
                            rows=lambda page: page.json()["$items"], next_url=lambda page: page.json()["$next"])

    def pages(self, path: str, **params: Any) -> list[list[dict[str, Any]]]:
        """Each page's ``$items``, following ``$next`` until it is null."""
        pages: list[list[dict[str, Any]]] = []

        def rows(page: httpx.Response) -> list[dict[str, Any]]:
            pages.append(page.json()["$items"])
            return pages[-1]

        follow_pages(self.get(path, params=params), self.get, rows=rows, next_url=lambda page: page.json()["$next"])
        return pages


def authorize_path(*, state: str = "st-1", scope: str = "full_access", **extra: str) -> str:
    params = {"filter": "apiv3.1", "response_type": "code", "client_id": DEFAULT_APP.client_id,
              "redirect_uri": REDIRECT_URI, "scope": scope, "state": state, **extra}
    return "/oauth2/auth/central?" + str(httpx.QueryParams(params))


def callback_query(response: httpx.Response) -> dict[str, str]:
    return sim_helpers.redirect_query(response, REDIRECT_URI)


def exchange(http: httpx.Client, code: str, **extra: str) -> httpx.Response:
    return http.post("/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                                     **CLIENT, **extra})


def refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return http.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token, **CLIENT})


def ids(sim: SageSimulator, business: str) -> dict[str, str]:
    """Handy ids in a business: an active supplier and customer, accounts, a bank account."""
    b = sim.business(business)
    live = [c for c in b.resources["contacts"].values() if c["deleted_at"] is None]
    return {
        "supplier": next(c["id"] for c in live if [t["id"] for t in c["contact_types"]] == ["VENDOR"]),
        "customer": next(c["id"] for c in live if [t["id"] for t in c["contact_types"]] == ["CUSTOMER"]),
        "expense": b.ledger_account_by_code("429" if business.startswith("Demo") else "7500")["id"],
        "sales": b.ledger_account_by_code("200" if business.startswith("Demo") else "4000")["id"],
        "bank": next(iter(b.resources["bank_accounts"].values()))["id"],
    }


def purchase_invoice(refs: dict[str, str], **overrides: Any) -> dict[str, Any]:
    line = {"description": "Printer paper", "ledger_account_id": refs["expense"], "quantity": 1, "unit_price": 100.0,
            "tax_rate_id": "GB_STANDARD", "tax_amount": 20.0, "net_amount": 100.0, "total_amount": 120.0}
    line |= overrides.pop("line", {})
    body = {"contact_id": refs["supplier"], "date": "2026-10-30", "due_date": "2026-11-29",
            "vendor_reference": "SUP-INV-881", "reference": "capture-123", "invoice_lines": [line], **overrides}
    return {"purchase_invoice": {k: v for k, v in body.items() if v is not None}}


def sources(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, response.text
    return {d["$source"] for d in response.json()}
