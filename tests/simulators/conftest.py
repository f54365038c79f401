"""Fixtures for the simulator tests: a fresh Xero simulator per test on a frozen clock, reached
through its in-process httpx transport (no sockets) unless a test serves it on a port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from xero_sim_helpers import BASE_URL, START, XeroApi

from sandbox.simulators.harness import SimClock
from sandbox.simulators.xero import XeroSimulator


@pytest.fixture
def clock() -> SimClock:
    return SimClock(START)


@pytest.fixture
def xero(clock: SimClock) -> XeroSimulator:
    return XeroSimulator(clock, auto_consent=True)


@pytest.fixture
def client(xero: XeroSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=xero.transport(), base_url=BASE_URL) as http:
        yield http


@pytest.fixture
def tokens(xero: XeroSimulator) -> dict[str, Any]:
    return xero.mint_tokens()


@pytest.fixture
def demo_id(tokens: dict[str, Any]) -> str:
    return next(t["tenantId"] for t in tokens["tenants"] if t["tenantName"] == "Demo Company (UK)")


@pytest.fixture
def joinery_id(tokens: dict[str, Any]) -> str:
    return next(t["tenantId"] for t in tokens["tenants"] if t["tenantName"] != "Demo Company (UK)")


@pytest.fixture
def api(client: httpx.Client, tokens: dict[str, Any], demo_id: str) -> XeroApi:
    return XeroApi(client, tokens["access_token"], demo_id)


@pytest.fixture
def supplier_id(xero: XeroSimulator, demo_id: str) -> str:
    """An active supplier of the Demo Company."""
    org = xero.orgs[demo_id]
    return next(c["ContactID"] for c in org.contacts.values() if c["ContactStatus"] == "ACTIVE" and c["IsSupplier"])
