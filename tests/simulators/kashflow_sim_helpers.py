"""Helpers shared by the KashFlow simulator tests: the two-step login and a thin API client."""

from __future__ import annotations

from typing import Any

import httpx
from sim_helpers import SimApi, follow_pages, with_settings

from sandbox.simulators.harness import SimClock
from sandbox.simulators.kashflow import SEEDED_MEMORABLE_WORD, SEEDED_PASSWORD, KashFlowSimulator

BASE_URL = "http://kashflow.sandbox.test"


def new_simulator(clock: SimClock, **settings: Any) -> KashFlowSimulator:
    return with_settings(KashFlowSimulator(clock), **settings)


def start_login(http: httpx.Client, username: str = "demo", password: str = SEEDED_PASSWORD) -> httpx.Response:
    return http.post("/v2/sessiontoken", json={"UserName": username, "Password": password})


def answer(http: httpx.Client, started: dict[str, Any], word: str = SEEDED_MEMORABLE_WORD) -> httpx.Response:
    """Step two: the letters of ``word`` at the positions step one asked for."""
    letters = [{"Position": p["Position"], "Value": word[p["Position"] - 1]} for p in started["MemorableWordList"]]
    return http.put("/v2/sessiontoken", json={"TemporaryToken": started["TemporaryToken"],
                                              "MemorableWordList": letters})


def login(http: httpx.Client, username: str = "demo") -> str:
    started = start_login(http, username)
    assert started.status_code == 201, started.text
    finished = answer(http, started.json())
    assert finished.status_code == 200, finished.text
    return str(finished.json()["SessionToken"])


class KashFlowApi(SimApi):
    """REST v2 with ``Authorization: KfToken`` filled in."""

    def __init__(self, http: httpx.Client, session_token: str) -> None:
        self.http = http
        self.session_token = session_token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        target = path if path.startswith(("http", "/v2/")) else f"/v2/{path.lstrip('/')}"
        headers = {"Authorization": f"KfToken {self.session_token}", **kwargs.pop("headers", {})}
        return self.http.request(method, target, headers=headers, **kwargs)

    def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Follow ``MetaData.NextPageUrl`` until it is null, as a client must."""
        return follow_pages(self.get(path, params=params), self.get, rows=lambda page: page.json()["Data"],
                            next_url=lambda page: page.json()["MetaData"]["NextPageUrl"])

    def pages(self, path: str, **params: Any) -> list[list[dict[str, Any]]]:
        """Each page's ``Data``, following ``MetaData.NextPageUrl`` until it is null."""
        pages: list[list[dict[str, Any]]] = []

        def rows(page: httpx.Response) -> list[dict[str, Any]]:
            pages.append(page.json()["Data"])
            return pages[-1]

        follow_pages(self.get(path, params=params), self.get, rows=rows,
                     next_url=lambda page: page.json()["MetaData"]["NextPageUrl"])
        return pages


def purchase(supplier_code: str, **overrides: Any) -> dict[str, Any]:
    """A valid purchase for the Demo Company, overridable field by field (``line`` for the line)."""
    line = {"Description": "Printer paper", "Quantity": 1, "Rate": 100.00, "VATLevel": 20, "NominalCode": 461}
    line |= overrides.pop("line", {})
    return {"SupplierCode": supplier_code, "SupplierReference": "SUP-INV-881", "IssuedDate": "2026-10-30 00:00:00",
            "DueDate": "2026-11-29 00:00:00", "Currency": {"Code": "GBP", "ExchangeRate": 1}, "LineItems": [line],
            "PaymentLines": [], **overrides}


def model_state(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["Message"] == "The request is invalid."
    return dict(body["ModelState"])
