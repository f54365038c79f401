"""FreeAgent's formats without a ledger: list mappings, the synthesised tax rates, request bodies,
its error envelopes, and the look-up-before-retry loop that stands in for idempotency."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from ledgerlink.errors import AuthRevoked, NotFound, Rejected, Unavailable
from ledgerlink.models.common import ItemType, ListType
from ledgerlink.models.lists import RecordStatus
from ledgerlink.models.publishing import PlannedLine, PublishPlan, Resolved, ValueSource
from ledgerlink.models.tokens import AppCredentials, TokenSet
from ledgerlink.providers.base import Attachment, LedgerSession
from ledgerlink.providers.freeagent import (
    CompanyTax,
    FreeAgentAdapter,
    error_messages,
    field_error,
    key_marker,
    line_tax_fields,
    updated_since_parameter,
)

BASE = "https://api.freeagent.com/v2"
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
KEY = "0123456789abcdef0123456789abcdef"
UK_COMPANY = {"sales_tax_name": "VAT", "sales_tax_rates": ["0.0", "20.0", "5.0"]}
SESSION = LedgerSession("conn-1", f"{BASE}/company", lambda _force: "access")

Handler = Callable[[httpx.Request], httpx.Response]


class Clock:
    def now(self) -> datetime:
        return NOW


def adapter(handler: Handler | None = None) -> FreeAgentAdapter:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected call {request.method} {request.url}")

    return FreeAgentAdapter(
        config=FreeAgentAdapter.default_config,
        credentials=AppCredentials(client_id="id", client_secret="secret"),
        clock=Clock(),
        sleep=lambda _seconds: None,
        http_transport=httpx.MockTransport(handler or refuse),
    )


def resolved(remote_id: str | None = None, code: str | None = None) -> Resolved:
    return Resolved(remote_id=remote_id, code=code, name=code, source=ValueSource.MANUAL)


def plan(**overrides: Any) -> PublishPlan:
    line = PlannedLine(
        description="Printer paper",
        quantity=1,
        amount=Decimal("100.00"),
        tax_amount=Decimal("20.00"),
        category=resolved(f"{BASE}/categories/461", "461"),
        tax_rate=resolved("20.0", "20.0"),
        project=resolved(f"{BASE}/projects/4"),
    )
    fields: dict[str, Any] = {
        "item_id": "item-1",
        "revision": 1,
        "provider": "freeagent",
        "item_type": ItemType.COST,
        "destination": "bill",
        "contact": resolved(f"{BASE}/contacts/1"),
        "date": date(2026, 11, 2),
        "due_date": date(2026, 12, 2),
        "reference": "SUP-881",
        "currency": "GBP",
        "net": Decimal("100.00"),
        "tax": Decimal("20.00"),
        "gross": Decimal("120.00"),
        "lines": [line],
        "idempotency_key": KEY,
    }
    return PublishPlan(**{**fields, **overrides})


# --- config and capabilities --------------------------------------------------------------------


def test_oauth_is_basic_auth_without_scopes_pkce_or_revocation():
    config = FreeAgentAdapter.default_config
    assert config.authorize_url == f"{BASE}/approve_app"
    assert config.token_url == f"{BASE}/token_endpoint"
    assert config.token_endpoint_auth_method == "client_secret_basic"
    assert (config.scopes, config.pkce, config.revoke_url, config.page_size) == ((), False, None, 100)
    url = adapter().authorization_url(redirect_uri="https://app/cb", state="s1", code_verifier="v" * 43)
    assert "scope=" not in url and "code_challenge" not in url and "state=s1" in url


def test_disconnect_only_forgets_the_tokens():
    tokens = TokenSet(access_token="a", refresh_token="r", expires_at=NOW)
    adapter().revoke(tokens)  # the adapter's transport refuses any call


def test_capabilities_describe_freeagent():
    caps = FreeAgentAdapter.capabilities
    assert set(caps.lists) == set(ListType)
    assert caps.incremental_lists == (ListType.CONTACTS,)
    assert caps.default_destinations == {
        ItemType.COST: "bill",
        ItemType.SALES: "sales_invoice",
        ItemType.EXPENSE_CLAIM: "expense",
    }
    assert (caps.bank_match, caps.native_expense_claims, caps.organisation_choice) == (False, True, False)
    assert caps.idempotency == "lookup_by_reference"
    assert caps.attachments.max_bytes == 5_000_000 and "application/pdf" in caps.attachments.content_types


# --- lists ----------------------------------------------------------------------------------------


def test_the_company_rates_become_a_tax_rate_list_with_auto_exempt_and_out_of_scope():
    tax = CompanyTax.from_company(UK_COMPANY)
    assert (tax.standard, tax.reduced, tax.zero) == ("20.0", "5.0", "0.0")
    records = {r.code: r for r in adapter().tax_rates(SESSION, tax)}
    assert list(records) == ["20.0", "5.0", "0.0", "Auto", "EXEMPT", "OUT_OF_SCOPE"]
    assert records["20.0"].name == "Standard rate (VAT 20%)" and records["20.0"].rate == 20.0
    assert records["5.0"].name == "Reduced rate (VAT 5%)"
    assert records["Auto"].rate is None and records["EXEMPT"].rate == 0.0
    assert all(set(r.applies_to) == set(ItemType) for r in records.values())
    assert records["20.0"].remote_id == "20.0"


def test_named_rates_and_vat_statuses_map_onto_the_company_rates():
    tax = CompanyTax.from_company(UK_COMPANY)
    assert tax.code_for_auto_rate("Standard rate") == "20.0"
    assert tax.code_for_auto_rate("Zero rate") == "0.0"
    assert tax.code_for_auto_rate("Outside of the scope of VAT") == "OUT_OF_SCOPE"
    assert tax.code_for_auto_rate("Something new") == "Auto"
    assert tax.code_for_vat_status("reduced") == "5.0"
    assert tax.code_for_rate("20") == "20.0"
    unregistered = CompanyTax.from_company({"sales_tax_rates": []})
    assert unregistered.code_for_auto_rate("Standard rate") == "Auto"


def test_categories_are_usable_by_the_kind_of_their_array():
    tax = CompanyTax.from_company(UK_COMPANY)
    fa = adapter()
    admin = fa.category(
        SESSION,
        "admin_expenses_categories",
        {
            "url": f"{BASE}/categories/285",
            "description": "Accommodation and Meals",
            "nominal_code": "285",
            "auto_sales_tax_rate": "Standard rate",
            "allowable_for_tax": True,
        },
        tax,
    )
    assert (admin.code, admin.name, admin.remote_id) == (
        "285",
        "Accommodation and Meals",
        f"{BASE}/categories/285",
    )
    assert admin.usable_for == [ItemType.COST, ItemType.EXPENSE_CLAIM]
    assert admin.default_tax_code == "20.0" and admin.account_type == "admin_expenses"
    income = fa.category(
        SESSION, "income_categories", {"url": f"{BASE}/categories/001", "description": "Sales"}, tax
    )
    assert income.usable_for == [ItemType.SALES] and income.code == "001"
    asset = fa.category(
        SESSION,
        "general_categories",
        {"url": f"{BASE}/categories/602-1", "description": "Computers", "group_description": "Fixed assets"},
        tax,
    )
    loan = fa.category(
        SESSION, "general_categories", {"url": f"{BASE}/categories/900", "description": "Loan"}, tax
    )
    assert asset.usable_for == [ItemType.COST, ItemType.EXPENSE_CLAIM] and asset.code == "602-1"
    assert loan.usable_for == [ItemType.COST] and loan.default_tax_code is None


def test_hidden_contacts_are_kept_archived_with_their_names_and_flags():
    fa = adapter()
    hidden = fa.contact(
        SESSION,
        {
            "url": f"{BASE}/contacts/7",
            "first_name": "Ann",
            "last_name": "Lee",
            "status": "Hidden",
            "email": "ann@example.com",
            "charge_sales_tax": "Never",
            "updated_at": "2026-10-01T08:00:00Z",
        },
        supplier=None,
        customer=True,
    )
    assert (hidden.name, hidden.status, hidden.email) == ("Ann Lee", RecordStatus.ARCHIVED, "ann@example.com")
    assert (hidden.is_supplier, hidden.is_customer) == (None, True)
    assert hidden.remote_updated_at == datetime(2026, 10, 1, 8, tzinfo=UTC)
    assert hidden.raw["charge_sales_tax"] == "Never" and hidden.default_tax_code is None
    company = fa.contact(
        SESSION,
        {
            "url": f"{BASE}/contacts/8",
            "organisation_name": "Acme Ltd",
            "first_name": "Bo",
            "status": "Active",
        },
        supplier=True,
        customer=False,
    )
    assert (company.name, company.status) == ("Acme Ltd", RecordStatus.ACTIVE)


def test_price_list_items_take_the_side_of_their_category():
    tax = CompanyTax.from_company(UK_COMPANY)
    groups = {
        f"{BASE}/categories/001": ("income_categories", {"nominal_code": "001"}),
        f"{BASE}/categories/433": ("admin_expenses_categories", {"nominal_code": "433"}),
    }
    fa = adapter()
    sold = fa.item(
        SESSION,
        {
            "url": f"{BASE}/price_list_items/1",
            "code": "CONSULT",
            "description": "Consultancy",
            "price": "95.0",
            "vat_status": "standard",
            "category": f"{BASE}/categories/001",
        },
        groups,
        tax,
    )
    assert (sold.sales_category_code, sold.sales_tax_code, sold.sales_price) == ("001", "20.0", 95.0)
    assert sold.purchase_category_code is None
    bought = fa.item(
        SESSION,
        {"url": f"{BASE}/price_list_items/2", "code": "INS", "price": "25.0", "vat_status": "out_of_scope",
         "category": f"{BASE}/categories/433"},
        groups,
        tax,
    )  # fmt: skip
    assert (bought.purchase_category_code, bought.purchase_tax_code, bought.purchase_price) == (
        "433",
        "OUT_OF_SCOPE",
        25.0,
    )


def test_projects_are_dimension_one_and_bank_accounts_keep_their_type():
    fa = adapter()
    done = fa.project(
        SESSION, {"url": f"{BASE}/projects/4", "name": "Refit", "status": "Completed", "currency": "GBP"}
    )
    assert (done.dimension, done.dimension_name, done.dimension_remote_id) == (
        1,
        "Project",
        f"{BASE}/projects",
    )
    assert done.status == RecordStatus.ARCHIVED and done.currency == "GBP"
    card = fa.bank_account(
        SESSION,
        {"url": f"{BASE}/bank_accounts/3", "name": "Card", "type": "CreditCardAccount", "currency": "GBP",
         "account_number": "1234", "status": "hidden"},
    )  # fmt: skip
    assert (card.bank_account_type, card.account_number, card.status) == (
        "CreditCardAccount",
        "1234",
        RecordStatus.ARCHIVED,
    )


def test_the_incremental_filter_starts_a_little_before_the_high_water_mark():
    assert updated_since_parameter("2026-11-02T09:00:00Z") == "2026-11-02T08:59:00Z"
    assert updated_since_parameter(None) is None
    assert updated_since_parameter("not a time") is None


def test_contacts_follow_the_link_header_and_ask_for_hidden_ones():
    seen: list[str] = []
    contact = {"url": f"{BASE}/contacts/1", "organisation_name": "A", "status": "Active",
               "updated_at": "2026-11-01T10:00:00Z"}  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        view, page = request.url.params.get("view"), request.url.params.get("page", "1")
        if view == "all" and page == "1":
            nxt = f"{BASE}/contacts?view=all&sort=updated_at&page=2&per_page=100"
            return httpx.Response(200, json={"contacts": [contact]}, headers={"Link": f'<{nxt}>; rel="next"'})
        if view == "all":
            later = {
                **contact,
                "url": f"{BASE}/contacts/2",
                "status": "Hidden",
                "updated_at": "2026-11-01T11:00:00Z",
            }
            return httpx.Response(200, json={"contacts": [later]})
        return httpx.Response(200, json={"contacts": [contact] if view == "suppliers" else []})

    fetch = adapter(handler).fetch_list(SESSION, ListType.CONTACTS, since=None)
    assert fetch.complete and fetch.calls == 4
    assert fetch.high_water == "2026-11-01T11:00:00Z"
    assert [(r.is_supplier, r.is_customer, r.status) for r in fetch.records] == [
        (True, False, RecordStatus.ACTIVE),
        (None, False, RecordStatus.ARCHIVED),
    ]
    assert "view=all" in seen[0] and "per_page=100" in seen[0]

    seen.clear()
    delta = adapter(handler).fetch_list(SESSION, ListType.CONTACTS, since="2026-11-01T11:00:00Z")
    assert not delta.complete and "updated_since=2026-11-01T10%3A59%3A00Z" in seen[0]


# --- bodies ---------------------------------------------------------------------------------------


def test_a_bill_carries_gross_lines_tax_and_our_key_in_its_comments():
    body = adapter().bill_body(plan(), f"{BASE}/contacts/1")
    assert body["comments"].endswith(key_marker(KEY))
    assert (body["reference"], body["dated_on"], body["due_on"]) == ("SUP-881", "2026-11-02", "2026-12-02")
    assert body["bill_items"] == [
        {
            "category": f"{BASE}/categories/461",
            "description": "Printer paper",
            "total_value": "120.00",
            "sales_tax_rate": "20.0",
            "project": f"{BASE}/projects/4",
        }
    ]
    bare = adapter().bill_body(plan(reference=None, due_date=None), f"{BASE}/contacts/1")
    assert (bare["reference"], bare["due_on"]) == ("item-1", "2026-11-02")


def test_tax_codes_travel_as_a_rate_a_status_or_not_at_all():
    assert line_tax_fields("5.0") == {"sales_tax_rate": "5.0"}
    assert line_tax_fields("EXEMPT") == {"sales_tax_status": "EXEMPT"}
    assert line_tax_fields("Auto") == {} and line_tax_fields(None) == {}


def test_more_than_forty_bill_lines_are_refused_before_sending():
    lines = plan().lines * 41
    with pytest.raises(Rejected, match="at most 40"):
        adapter().bill_body(plan(lines=lines), f"{BASE}/contacts/1")


def test_an_invoice_keeps_its_line_total_exact():
    line = plan().lines[0].model_copy(update={"quantity": 3, "amount": Decimal("100.00")})
    body = adapter().invoice_body(
        plan(item_type=ItemType.SALES, destination="sales_invoice", lines=[line]), f"{BASE}/contacts/1"
    )
    item = body["invoice_items"][0]
    assert (item["quantity"], item["price"]) == ("1", "100.00")  # 100/3 is not a price
    assert body["payment_terms_in_days"] == 30 and body["project"] == f"{BASE}/projects/4"
    assert body["reference"] == "SUP-881"


def test_attachments_are_base64_in_freeagents_content_types_and_size():
    payload = adapter().attachment_payload(Attachment("r.pdf", "application/pdf", b"%PDF"))
    assert payload["content_type"] == "application/x-pdf" and payload["data"] == "JVBERg=="
    with pytest.raises(Rejected, match="image/tiff"):
        adapter().attachment_payload(Attachment("r.tif", "image/tiff", b"x"))
    with pytest.raises(Rejected, match="at most 5000000"):
        adapter().attachment_payload(Attachment("r.png", "image/png", b"x" * 5_000_001))


# --- errors ---------------------------------------------------------------------------------------


def test_every_shape_of_the_error_envelope_is_read():
    assert error_messages({"errors": {"error": {"message": "Reference can't be blank"}}}) == [
        "Reference can't be blank"
    ]
    assert error_messages({"errors": {"error": [{"message": "a"}, {"message": "b"}]}}) == ["a", "b"]
    assert error_messages({"errors": [{"message": "c"}]}) == ["c"]
    assert error_messages(None, "HTTP Basic: Access denied.\n") == ["HTTP Basic: Access denied."]


def test_a_validation_error_is_rejected_in_freeagents_words_with_the_line_it_concerns():
    body = {
        "errors": {
            "error": [
                {"message": "Bill item 2: Category https://x/v2/categories/9 does not exist"},
                {"message": "Dated on can't be blank"},
            ]
        }
    }
    error = adapter().map_error(httpx.Response(422, json=body))
    assert isinstance(error, Rejected)
    assert "Category https://x/v2/categories/9 does not exist" in error.message
    assert [e.field for e in error.field_errors] == ["lines[1].category", "date"]
    assert field_error("Reference has already been taken").field == "reference"


def test_lost_access_is_auth_revoked_and_a_missing_object_not_found():
    fa = adapter()
    revoked = {"errors": {"error": {"message": "Access token has been revoked"}}}
    assert isinstance(fa.map_error(httpx.Response(401, json=revoked)), AuthRevoked)
    too_low = {
        "errors": {"error": {"message": "You need permission level 7 or above to do this; yours is 5"}}
    }
    forbidden = fa.map_error(httpx.Response(403, json=too_low))
    assert isinstance(forbidden, AuthRevoked) and "permission level 7" in forbidden.message
    assert isinstance(
        fa.map_error(httpx.Response(404, json={"errors": {"error": {"message": "x"}}})), NotFound
    )


# --- exactly once without idempotency --------------------------------------------------------------


class FakeBills:
    """Just enough of /v2/bills: a create that can be made to time out after committing."""

    def __init__(self, *, lose_first: bool = False, fail_first: int = 0):
        self.bills: list[dict[str, Any]] = []
        self.posts = 0
        self.lookups = 0
        self.lose_first = lose_first
        self.fail_first = fail_first

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            self.lookups += 1
            assert request.url.params["contact"] == f"{BASE}/contacts/1"
            return httpx.Response(200, json={"bills": self.bills})
        self.posts += 1
        if self.posts <= self.fail_first:
            return httpx.Response(503, text="down for maintenance")
        bill = {**json.loads(request.content)["bill"], "url": f"{BASE}/bills/{len(self.bills) + 1}",
                "total_value": "120.0"}  # fmt: skip
        self.bills.append(bill)
        if self.lose_first and self.posts == 1:
            raise httpx.ReadTimeout("lost", request=request)
        return httpx.Response(201, json={"bill": bill}, headers={"Location": bill["url"]})


def test_a_lost_create_is_found_by_our_key_and_never_sent_twice():
    ledger = FakeBills(lose_first=True)
    result = adapter(ledger).publish(SESSION, plan())
    assert result.remote_id == f"{BASE}/bills/1" and result.warnings == []
    assert (ledger.posts, ledger.lookups, len(ledger.bills)) == (1, 2, 1)
    again = adapter(ledger).publish(SESSION, plan())  # a redelivered message
    assert again.remote_id == result.remote_id and ledger.posts == 1


def test_a_create_refused_with_5xx_is_resent_only_after_a_look_up_finds_nothing():
    ledger = FakeBills(fail_first=2)
    result = adapter(ledger).publish(SESSION, plan())
    assert result.remote_id == f"{BASE}/bills/1"
    assert (ledger.posts, ledger.lookups, len(ledger.bills)) == (3, 3, 1)


def test_a_create_that_keeps_failing_gives_up_as_unavailable():
    ledger = FakeBills(fail_first=99)
    with pytest.raises(Unavailable):
        adapter(ledger).publish(SESSION, plan())
    assert ledger.bills == [] and ledger.posts == FreeAgentAdapter.default_config.max_attempts


def test_another_bill_with_the_same_supplier_reference_is_not_ours():
    ledger = FakeBills()
    ledger.bills.append(
        {"url": f"{BASE}/bills/9", "reference": "SUP-881", "comments": None, "total_value": "120.0"}
    )
    result = adapter(ledger).publish(SESSION, plan())
    assert result.remote_id == f"{BASE}/bills/2" and ledger.posts == 1


def test_an_unbuilt_destination_is_refused_clearly():
    with pytest.raises(Rejected, match="not available for FreeAgent"):
        adapter().publish(SESSION, plan(destination="purchase_order"))


def test_the_consent_covers_the_tokens_company():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v2/company" and request.headers["User-Agent"]
        return httpx.Response(
            200, json={"company": {"url": f"{BASE}/company", "name": "Acme Ltd", "type": "UkLimitedCompany"}}
        )

    tokens = TokenSet(access_token="a", refresh_token="r", expires_at=NOW)
    [company] = adapter(handler).organisations(tokens)
    assert (company.id, company.name, company.kind) == (f"{BASE}/company", "Acme Ltd", "UkLimitedCompany")
