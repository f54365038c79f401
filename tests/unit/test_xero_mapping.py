"""Xero's formats: MS-JSON dates, JWT claims, and its error envelopes mapped to our errors."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import httpx

from ledgerlink.errors import AuthRevoked, NotFound, Rejected
from ledgerlink.models.tokens import AppCredentials
from ledgerlink.providers.xero import XeroAdapter, parse_xero_datetime


def adapter() -> XeroAdapter:
    return XeroAdapter(
        config=XeroAdapter.default_config,
        credentials=AppCredentials(client_id="id", client_secret="secret"),
        clock=type("C", (), {"now": staticmethod(lambda: datetime(2026, 1, 1, tzinfo=UTC))})(),
        sleep=lambda _s: None,
        http_transport=httpx.MockTransport(lambda request: httpx.Response(500)),
    )


def test_ms_json_and_iso_dates():
    assert parse_xero_datetime("/Date(1552262400000+0000)/") == datetime(2019, 3, 11, tzinfo=UTC)
    assert parse_xero_datetime("/Date(1552262400000)/") == datetime(2019, 3, 11, tzinfo=UTC)
    assert parse_xero_datetime("2019-03-11T00:00:00") == datetime(2019, 3, 11, tzinfo=UTC)
    assert parse_xero_datetime(None) is None


def test_authentication_event_is_read_from_the_access_token():
    claims = (
        base64.urlsafe_b64encode(json.dumps({"authentication_event_id": "evt-1"}).encode())
        .decode()
        .rstrip("=")
    )
    token = f"header.{claims}.signature"
    assert adapter().token_extras({"access_token": token}, {}) == {"authentication_event_id": "evt-1"}
    assert adapter().token_extras({"access_token": "opaque"}, {}) == {}


def test_validation_exception_becomes_rejected_with_every_message():
    body = {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred",
        "Elements": [
            {
                "ValidationErrors": [
                    {"Message": "Account code '999' is not a valid code"},
                    {"Message": "Contact missing"},
                ]
            }
        ],
    }
    error = adapter().map_error(httpx.Response(400, json=body))
    assert isinstance(error, Rejected)
    assert [e.message for e in error.field_errors] == [
        "Account code '999' is not a valid code",
        "Contact missing",
    ]
    assert "999" in error.message


def test_forbidden_tenant_means_reconnect_and_404_is_not_found():
    forbidden = {"Title": "Forbidden", "Status": 403, "Detail": "AuthenticationUnsuccessful"}
    assert isinstance(adapter().map_error(httpx.Response(403, json=forbidden)), AuthRevoked)
    assert isinstance(adapter().map_error(httpx.Response(404, text="not here")), NotFound)
