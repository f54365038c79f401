"""The official xero-python SDK, unchanged, against the simulator served on a loopback port."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from xero_python.accounting import AccountingApi
from xero_python.accounting.models import (
    Contact,
    Invoice,
    Invoices,
    LineAmountTypes,
    LineItem,
    LineItemTracking,
)
from xero_python.api_client import ApiClient, Configuration
from xero_python.api_client.oauth2 import OAuth2Token
from xero_python.exceptions import ApiException

from sandbox.simulators.harness import DEFAULT_APP
from sandbox.simulators.serve import RunningServer, serve_in_thread
from sandbox.simulators.xero import XeroSimulator

pytestmark = pytest.mark.integration

_SDK_TOKEN_FIELDS = ("access_token", "refresh_token", "id_token", "expires_in", "token_type")


@pytest.fixture
def server(xero: XeroSimulator) -> Iterator[RunningServer]:
    with serve_in_thread(xero.wsgi_app) as running:
        yield running


@pytest.fixture
def accounting(server: RunningServer, tokens: dict[str, Any]) -> AccountingApi:
    token = {name: tokens[name] for name in _SDK_TOKEN_FIELDS}
    # The SDK checks expiry against the wall clock; the simulator's own clock is frozen.
    token |= {"scope": tokens["scope"].split(), "expires_at": time.time() + tokens["expires_in"]}
    api_client = ApiClient(
        Configuration(oauth2_token=OAuth2Token(client_id=DEFAULT_APP.client_id,
                                               client_secret=DEFAULT_APP.client_secret)),
        oauth2_token_getter=lambda: token,
        oauth2_token_saver=token.update,
    )
    return AccountingApi(api_client, base_url=f"{server.url}/api.xro/2.0")


def sdk_bill(contact_id: str, account_code: str = "429", number: str = "SUP-1") -> Invoice:
    return Invoice(
        type="ACCPAY",
        contact=Contact(contact_id=contact_id),
        date=date(2026, 10, 30),
        due_date=date(2026, 11, 29),
        invoice_number=number,
        line_amount_types=LineAmountTypes.INCLUSIVE,
        status="AUTHORISED",
        line_items=[LineItem(description="Printer paper", quantity=1.0, unit_amount=120.0,
                             account_code=account_code, tax_type="INPUT2",
                             tracking=[LineItemTracking(name="Region", option="North")])],
    )


def test_sdk_lists_accounts_and_pages_contacts(accounting: AccountingApi, demo_id: str) -> None:
    banks = accounting.get_accounts(demo_id, where='Type=="BANK"').accounts
    assert [a.code for a in banks] == ["090", "091", "092"]
    assert banks[0].updated_date_utc.year > 2000

    contacts, page = [], 1
    while True:
        result = accounting.get_contacts(demo_id, page=page)
        contacts += result.contacts
        if len(result.contacts) < result.pagination.page_size:
            break
        page += 1
    assert page == 2 and len({c.contact_id for c in contacts}) == result.pagination.item_count > 100

    archived = accounting.get_contacts(demo_id, page=1, page_size=1000, include_archived=True)
    assert len(archived.contacts) == 130
    rates = accounting.get_tax_rates(demo_id).tax_rates
    assert any(r.tax_type == "INPUT2" and r.effective_rate == 20 for r in rates)
    assert accounting.get_organisations(demo_id).organisations[0].period_lock_date == date(2026, 6, 30)


def test_sdk_creates_bills_with_and_without_summarize_errors(
        accounting: AccountingApi, demo_id: str, supplier_id: str, xero: XeroSimulator) -> None:
    created = accounting.create_invoices(demo_id, Invoices(invoices=[sdk_bill(supplier_id)]))
    [invoice] = created.invoices
    assert (invoice.total, invoice.total_tax, invoice.status) == (120, 20, "AUTHORISED")
    assert invoice.date == date(2026, 10, 30)  # the SDK sent an MS-JSON date; it round-trips

    with pytest.raises(ApiException) as rejected:
        accounting.create_invoices(demo_id, Invoices(invoices=[sdk_bill(supplier_id, account_code="999")]))
    assert rejected.value.status == 400
    assert "ValidationException" in rejected.value.body.decode()

    mixed = accounting.create_invoices(
        demo_id, Invoices(invoices=[sdk_bill(supplier_id, number="A"), sdk_bill(supplier_id, account_code="999")]),
        summarize_errors=False)
    assert [i.status_attribute_string for i in mixed.invoices] == ["OK", "ERROR"]
    assert mixed.invoices[1].validation_errors[0].message == (
        "Account code '999' is not a valid code for this document.")
    assert len(xero.writes(kind="Invoice")) == 2


def test_sdk_idempotency_key_replays(accounting: AccountingApi, demo_id: str, supplier_id: str,
                                     xero: XeroSimulator) -> None:
    body = Invoices(invoices=[sdk_bill(supplier_id)])
    first = accounting.create_invoices(demo_id, body, idempotency_key="capture-9-rev-2")
    second = accounting.create_invoices(demo_id, body, idempotency_key="capture-9-rev-2")
    assert first.invoices[0].invoice_id == second.invoices[0].invoice_id
    assert len(xero.writes(kind="Invoice")) == 1
    entry = xero.request_log.entries(path_glob="/api.xro/2.0/Invoices")[0]
    assert (entry.header("User-Agent") or "").startswith("xero-python")
    assert entry.header("Idempotency-Key") == "capture-9-rev-2"
