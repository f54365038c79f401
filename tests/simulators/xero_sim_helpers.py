"""Helpers shared by the simulator tests (imported by conftest and the test modules)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

import httpx
import sim_helpers
from sim_helpers import BASIC_AUTH, SimApi

from sandbox.simulators.harness import DEFAULT_APP

# A Monday morning; the seeded Demo Company is locked up to 30 June 2026.
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
# Any origin works in-process; a made-up one keeps real hosts out of the tests.
BASE_URL = "http://xero.sandbox.test"
REDIRECT_URI = "http://127.0.0.1:8765/v1/oauth/xero/callback"
SCOPE = ("openid profile email offline_access accounting.settings accounting.contacts accounting.invoices "
         "accounting.payments accounting.banktransactions accounting.attachments")


class XeroApi(SimApi):
    """A thin client for the Accounting API with the bearer token and tenant header filled in."""

    def __init__(self, http: httpx.Client, access_token: str, tenant_id: str) -> None:
        self.http = http
        self.access_token = access_token
        self.tenant_id = tenant_id

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}", "xero-tenant-id": self.tenant_id,
                "Accept": "application/json", **extra}

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                **kwargs: Any) -> httpx.Response:
        url = path if path.startswith("/projects.xro") else f"/api.xro/2.0/{path.lstrip('/')}"
        return self.http.request(method, url, headers=self.headers(**(headers or {})), **kwargs)

    def pages(self, path: str, key: str, page_size: int, *, headers: dict[str, str] | None = None,
              **params: Any) -> list[list[dict[str, Any]]]:
        """Every page of a paged collection (``page=1, 2, …``) up to the first page shorter than
        ``page_size`` (perhaps empty): Xero's stop rule."""
        pages: list[list[dict[str, Any]]] = []
        while True:
            response = self.get(path, params={**params, "page": len(pages) + 1, "pageSize": page_size},
                                headers=headers)
            assert response.status_code == 200, response.text
            pages.append(response.json()[key])
            if len(pages[-1]) < page_size:
                return pages


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(challenge: str | None, *, state: str = "st-123", scope: str = SCOPE,
                  redirect_uri: str = REDIRECT_URI, client_id: str = DEFAULT_APP.client_id) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
              "state": state}
    if challenge:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return "/identity/connect/authorize?" + str(httpx.QueryParams(params))


def redirect_query(response: httpx.Response) -> dict[str, str]:
    return sim_helpers.redirect_query(response, REDIRECT_URI)


def exchange_code(http: httpx.Client, code: str, verifier: str | None, *,
                  redirect_uri: str = REDIRECT_URI, auth: tuple[str, str] = BASIC_AUTH) -> httpx.Response:
    return sim_helpers.exchange_code(http, "/connect/token", code, redirect_uri=redirect_uri, auth=auth,
                                     verifier=verifier)


def refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return sim_helpers.refresh(http, "/connect/token", refresh_token)


def bill(contact_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid ACCPAY bill for the Demo Company, overridable field by field."""
    line = {"Description": "Printer paper", "Quantity": 1, "UnitAmount": 120.00, "AccountCode": "429",
            "TaxType": "INPUT2", "Tracking": [{"Name": "Region", "Option": "North"}]}
    line |= overrides.pop("line", {})
    return {"Type": "ACCPAY", "Contact": {"ContactID": contact_id}, "Date": "2026-10-30", "DueDate": "2026-11-29",
            "InvoiceNumber": "SUP-INV-881", "LineAmountTypes": "Inclusive", "Status": "AUTHORISED",
            "CurrencyCode": "GBP", "LineItems": [line], **overrides}
