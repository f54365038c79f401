"""What the per-ledger test helpers (``*_sim_helpers``) share: the OAuth callback, the thin API
client's verbs, following paged lists, and simulators with changed settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx

from sandbox.simulators.harness import DEFAULT_APP, LedgerSimulator

# The default app's credentials, for HTTP Basic client authentication.
BASIC_AUTH = (DEFAULT_APP.client_id, DEFAULT_APP.client_secret or "")

SimT = TypeVar("SimT", bound=LedgerSimulator)


def with_settings(sim: SimT, **settings: Any) -> SimT:
    """``sim`` with ``settings`` changed (none given: as constructed)."""
    if settings:
        sim.update_settings(**settings)
    return sim


def redirect_query(response: httpx.Response, redirect_uri: str) -> dict[str, str]:
    """The query of the authorize endpoint's 302 back to ``redirect_uri`` (asserting that it is one)."""
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(redirect_uri)
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def exchange_code(http: httpx.Client, token_path: str, code: str, *, redirect_uri: str,
                  auth: tuple[str, str] | None = BASIC_AUTH, verifier: str | None = None) -> httpx.Response:
    """The ``authorization_code`` grant, the client authenticating with HTTP Basic (``auth``)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier:
        form["code_verifier"] = verifier
    return http.post(token_path, data=form, auth=auth)


def refresh(http: httpx.Client, token_path: str, refresh_token: str) -> httpx.Response:
    """The ``refresh_token`` grant with HTTP Basic client authentication."""
    return http.post(token_path, data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                     auth=BASIC_AUTH)


def follow_pages(first: httpx.Response, get: Callable[[str], httpx.Response],
                 rows: Callable[[httpx.Response], list[dict[str, Any]]],
                 next_url: Callable[[httpx.Response], str | None]) -> list[dict[str, Any]]:
    """Every row of a paged list: follow each page's link to the next until there is none, as a
    client must, asserting that every page is a 200."""
    collected: list[dict[str, Any]] = []
    response = first
    while True:
        assert response.status_code == 200, response.text
        collected += rows(response)
        following = next_url(response)
        if following is None:
            return collected
        response = get(following)


class SimApi:
    """Base of the thin per-ledger API clients: a subclass's ``request`` fills in the ledger's
    credentials and path prefix; the verbs go through it."""

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        raise NotImplementedError

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)
