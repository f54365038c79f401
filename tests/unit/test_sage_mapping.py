"""Sage's formats without the simulator: its records mapped to ours, its error array mapped to our
errors, the high-water mark, paging, and the bodies we post. A small fake behind httpx's
MockTransport stands in for the API where a call is needed."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from ledgerlink.errors import AuthRevoked, NotFound, Rejected
from ledgerlink.models.common import ItemType, ListType, ProviderName
from ledgerlink.models.lists import RecordStatus
from ledgerlink.models.publishing import PlannedLine, PublishPlan, PublishResult, Resolved, ValueSource
from ledgerlink.models.tokens import AppCredentials
from ledgerlink.providers.base import Attachment, BankLine, LedgerSession
from ledgerlink.providers.config import ProviderConfig
from ledgerlink.providers.registry import adapter_class
from ledgerlink.providers.sage import (
    NotOnSubscription,
    SageAdapter,
    StreamMark,
    _advance,
    category_usable_for,
    decode_high_water,
    encode_high_water,
    idempotency_id,
    parse_diagnoses,
)

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BUSINESS = "b" * 32
KEY = "0123456789abcdef0123456789abcdef"
Handler = Callable[[httpx.Request], httpx.Response]


class FixedClock:
    def now(self) -> datetime:
        return NOW


def adapter(handler: Handler | None = None) -> SageAdapter:
    return SageAdapter(
        config=SageAdapter.default_config,
        credentials=AppCredentials(client_id="id", client_secret="secret"),
        clock=FixedClock(),  # type: ignore[arg-type]
        sleep=lambda _s: None,
        http_transport=httpx.MockTransport(handler or (lambda request: httpx.Response(500))),
    )


def session(business: str | None = BUSINESS) -> LedgerSession:
    return LedgerSession("conn-1", business, lambda _force: "access")


def ref(ref_id: str, resource: str = "things") -> dict[str, Any]:
    return {"id": ref_id, "displayed_as": ref_id, "$path": f"/{resource}/{ref_id}"}


def page(items: list[dict[str, Any]], next_link: str | None = None, number: int = 1) -> dict[str, Any]:
    return {"$total": len(items), "$page": number, "$next": next_link, "$back": None, "$items": items}


def diagnosis(message: str, source: str = "", code: str = "RecordInvalid") -> dict[str, str]:
    return {"$severity": "error", "$dataCode": code, "$message": message, "$source": source}


class FakeSage:
    """Answers GETs from ``lists`` (path -> pages in order), POSTs by echoing an id; records every
    request."""

    def __init__(self, lists: dict[str, list[dict[str, Any]]] | None = None):
        self.lists = lists or {}
        self.requests: list[httpx.Request] = []
        self.posted: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/v3.1")
        if request.method == "POST":
            body = json.loads(request.content)
            self.posted.append((path, body))
            wrapped = next(iter(body.values()))
            return httpx.Response(201, json={"id": "new" + path.strip("/"), **wrapped})
        pages = self.lists.get(path, [page([])])
        number = int(request.url.params.get("page", "1"))
        return httpx.Response(200, json=pages[min(number, len(pages)) - 1])

    def queries(self, path: str) -> list[dict[str, list[str]]]:
        return [parse_qs(r.url.query.decode()) for r in self.requests if r.url.path == "/v3.1" + path]


def line(**changes: Any) -> PlannedLine:
    values: dict[str, Any] = {
        "description": "Printer paper",
        "quantity": 1.0,
        "amount": Decimal("100.00"),
        "tax_amount": Decimal("20.00"),
        "category": Resolved(remote_id="acc1", code="5000", source=ValueSource.MANUAL),
        "tax_rate": Resolved(remote_id="GB_STANDARD", code="GB_STANDARD", source=ValueSource.MANUAL),
    }
    return PlannedLine(**{**values, **changes})


def plan(destination: str = "purchase_invoice", **changes: Any) -> PublishPlan:
    lines = changes.pop("lines", [line()])
    values: dict[str, Any] = {
        "item_id": "item-1",
        "revision": 1,
        "provider": ProviderName.SAGE,
        "item_type": ItemType.COST,
        "destination": destination,
        "contact": Resolved(remote_id="sup1", name="Paper Co", source=ValueSource.MANUAL),
        "date": date(2026, 11, 2),
        "due_date": date(2026, 12, 2),
        "reference": "SUP-881",
        "currency": "GBP",
        "net": sum((ln.amount for ln in lines), Decimal("0")),
        "tax": sum((ln.tax_amount for ln in lines), Decimal("0")),
        "gross": sum((ln.amount + ln.tax_amount for ln in lines), Decimal("0")),
        "lines": lines,
        "idempotency_key": KEY,
    }
    return PublishPlan(**{**values, **changes})


# --- config and capabilities -------------------------------------------------------------------


def test_the_config_is_sages_production_oauth_and_api():
    config = SageAdapter.default_config
    assert isinstance(config, ProviderConfig)
    assert config.token_endpoint_auth_method == "client_secret_post"
    assert config.pkce is True
    assert config.scopes == ("full_access",)
    assert config.page_size == 200
    assert config.api_base_url.endswith("/v3.1")
    assert adapter_class(ProviderName.SAGE) is SageAdapter


def test_capabilities_declare_sages_choices():
    capabilities = SageAdapter.capabilities
    assert set(capabilities.lists) == set(ListType)
    assert set(capabilities.incremental_lists) == {ListType.CONTACTS, ListType.ITEMS, ListType.BANK_ACCOUNTS}
    assert capabilities.default_destinations[ItemType.COST] == "purchase_invoice"
    assert capabilities.default_destinations[ItemType.SALES] == "sales_invoice"
    assert capabilities.bank_match and not capabilities.native_expense_claims
    assert capabilities.idempotency == "body_field"
    assert capabilities.batch_size == 1
    assert "application/pdf" in capabilities.attachments.content_types


def test_the_authorize_url_asks_for_api_v31_with_pkce():
    url = httpx.URL(
        adapter().authorization_url(redirect_uri="https://app.test/cb", state="st", code_verifier="v" * 48)
    )
    params = dict(url.params)
    assert params["filter"] == "apiv3.1"
    assert params["scope"] == "full_access"
    assert params["code_challenge_method"] == "S256"
    assert params["code_challenge"]
    assert params["state"] == "st"


def test_client_credentials_travel_in_the_form_body():
    seen: list[httpx.Request] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/revoke"):
            return httpx.Response(200, json={"success": "ok"})
        return httpx.Response(
            200,
            json={
                "access_token": "a1",
                "refresh_token": "r1",
                "expires_in": 300,
                "refresh_token_expires_in": 2678400,
                "token_type": "bearer",
                "scope": "full_access",
                "requested_by_id": "user-1",
            },
        )

    sage = adapter(token_endpoint)
    tokens = sage.exchange_code(
        code="GB/abc",
        redirect_uri="https://app.test/cb",
        code_verifier="v" * 48,
        callback_params={"country": "GB"},
    )
    sage.revoke(tokens)
    exchange, revoke = (parse_qs(r.content.decode()) for r in seen)
    assert all("authorization" not in r.headers for r in seen)
    assert exchange["client_id"] == ["id"] and exchange["client_secret"] == ["secret"]
    assert exchange["code_verifier"] == ["v" * 48]
    assert {"client_id", "client_secret", "token"} <= set(revoke)
    assert revoke["token"] == ["r1"]
    assert tokens.extras == {"country": "GB", "requested_by_id": "user-1"}
    assert (tokens.expires_at - NOW).total_seconds() == 300


# --- errors ----------------------------------------------------------------------------------------


def test_validation_diagnoses_become_rejected_with_sages_words_and_fields():
    response = httpx.Response(
        422,
        json=[
            diagnosis("can't be blank", "invoice_lines.tax_amount"),
            diagnosis("is invalid", "contact_id"),
        ],
    )
    error = adapter().map_error(response)
    assert isinstance(error, Rejected)
    assert [(e.field, e.message) for e in error.field_errors] == [
        ("invoice_lines.tax_amount", "can't be blank"),
        ("contact_id", "is invalid"),
    ]
    assert "invoice_lines.tax_amount: can't be blank" in error.message


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, [diagnosis("The access token is invalid", code="AuthenticationFailure")], AuthRevoked),
        (401, [diagnosis("No active subscription. (MSE)", code="AuthorizationFailure")], AuthRevoked),
        (403, [diagnosis("You do not have access to the business", code="BusinessNotFound")], AuthRevoked),
        (404, [diagnosis("You do not have access to the business", code="BusinessNotFound")], AuthRevoked),
        (403, [diagnosis("You do not have permission", code="MultiUserAccessDenied")], Rejected),
        (403, [diagnosis("Not on this plan", code="NotAvailableForSubscription")], NotOnSubscription),
        (404, [diagnosis("Record not found", code="RecordNotFound")], NotFound),
        (405, [diagnosis("Not allowed", code="MethodNotAllowed")], Rejected),
    ],
)
def test_status_and_data_code_pick_the_error(status: int, body: list[dict[str, str]], expected: type):
    error = adapter().map_error(httpx.Response(status, json=body))
    assert type(error) is expected
    assert error.message


def test_a_multi_user_refusal_is_not_a_reconnect():
    error = adapter().map_error(
        httpx.Response(403, json=[diagnosis("no rights", code="MultiUserAccessDenied")])
    )
    assert not isinstance(error, AuthRevoked)


def test_diagnoses_parse_tolerates_other_shapes():
    assert parse_diagnoses(httpx.Response(500, text="<html>oops</html>")) == []
    assert parse_diagnoses(httpx.Response(422, json=diagnosis("x"))) == [diagnosis("x")]
    assert isinstance(adapter().map_error(httpx.Response(400, text="bad")), Rejected)


def test_idempotency_ids_are_32_hex_and_stable():
    assert idempotency_id(KEY) == KEY
    assert idempotency_id(KEY.upper()) == KEY
    derived = idempotency_id(KEY, "attachment")
    assert len(derived) == 32 and derived != KEY and derived == idempotency_id(KEY, "attachment")
    assert len(idempotency_id("item-1:rev-2")) == 32
    assert idempotency_id(KEY, "VENDOR") != idempotency_id(KEY, "CUSTOMER")


# --- mappings --------------------------------------------------------------------------------------


def test_categories_use_sages_visibility_flags_then_scopes_then_types():
    flags = {"visible_in_expenses": True, "visible_in_sales": False, "ledger_account_type": ref("SALES")}
    assert category_usable_for(flags) == [ItemType.COST, ItemType.EXPENSE_CLAIM]
    assert category_usable_for({"visible_in_expenses": False, "visible_in_sales": True}) == [ItemType.SALES]
    assert category_usable_for({"visible_scopes": ["purchasing", "reporting"]}) == [
        ItemType.COST,
        ItemType.EXPENSE_CLAIM,
    ]
    assert category_usable_for({"ledger_account_type": ref("OTHER_INCOME")}) == [ItemType.SALES]
    assert category_usable_for({"ledger_account_type": ref("BANK")}) == []
    assert category_usable_for({"is_control_account": True, "visible_in_expenses": True}) == []


def test_a_ledger_account_maps_with_code_type_and_default_tax():
    row = {
        "id": "acc1",
        "name": "Stationery",
        "nominal_code": 7500,
        "ledger_account_type": ref("OVERHEADS"),
        "tax_rate": ref("GB_STANDARD"),
        "included_in_chart": True,
        "visible_in_expenses": True,
        "visible_in_sales": False,
        "updated_at": "2026-10-01T10:00:00Z",
    }
    record = adapter()._category(session(), row)
    assert (record.code, record.name, record.account_type, record.default_tax_code) == (
        "7500",
        "Stationery",
        "OVERHEADS",
        "GB_STANDARD",
    )
    assert record.usable_for == [ItemType.COST, ItemType.EXPENSE_CLAIM]
    assert record.remote_updated_at == datetime(2026, 10, 1, 10, tzinfo=UTC)
    hidden = adapter()._category(session(), {**row, "included_in_chart": False})
    assert hidden.status == RecordStatus.ARCHIVED and hidden.usable_for == []


def test_contacts_carry_roles_default_category_code_tax_currency_and_email():
    supplier = {
        "id": "c1",
        "name": "Paper Co",
        "reference": "PAPER01",
        "contact_types": [ref("VENDOR")],
        "default_purchase_ledger_account": ref("acc1"),
        "currency": ref("GBP"),
        "email": None,
        "main_contact_person": {"email": "ap@paper.test"},
    }
    record = adapter()._contact(session(), supplier, {"acc1": "7500"})
    assert record.is_supplier and not record.is_customer
    assert (record.code, record.default_category_code, record.currency, record.email) == (
        "PAPER01",
        "7500",
        "GBP",
        "ap@paper.test",
    )
    customer = {
        "id": "c2",
        "name": "Buyer Ltd",
        "contact_types": [ref("CUSTOMER")],
        "default_sales_ledger_account": ref("acc4"),
        "default_sales_tax_rate": ref("GB_ZERO"),
        "email": "buyer@test",
    }
    record = adapter()._contact(session(), customer, {"acc4": "4000"})
    assert record.is_customer and not record.is_supplier
    assert (record.default_category_code, record.default_tax_code) == ("4000", "GB_ZERO")
    obfuscated = adapter()._contact(session(), {**customer, "gdpr_obfuscated": True}, {})
    assert obfuscated.status == RecordStatus.ARCHIVED


def test_tax_rates_use_the_id_as_code_and_hidden_ones_are_archived():
    row = {"id": "GB_STANDARD", "name": "Standard", "percentage": 20.0, "is_visible": True}
    record = adapter()._tax_rate(session(), row)
    assert (record.remote_id, record.code, record.rate) == ("GB_STANDARD", "GB_STANDARD", 20.0)
    assert set(record.applies_to) == {ItemType.COST, ItemType.SALES, ItemType.EXPENSE_CLAIM}
    assert adapter()._tax_rate(session(), {**row, "is_visible": False}).status == RecordStatus.ARCHIVED


def test_products_and_services_map_to_items_with_codes_taxes_and_prices():
    product = {
        "id": "p1",
        "item_code": "OAK",
        "description": "Oak board",
        "purchase_ledger_account": ref("acc1"),
        "purchase_tax_rate": ref("GB_STANDARD"),
        "cost_price": 38,
        "sales_ledger_account": ref("acc4"),
        "sales_tax_rate": ref("GB_STANDARD"),
        "sales_prices": [{"price_name": "Selling Price", "price": 55, "price_includes_tax": False}],
        "active": True,
    }
    record = adapter()._item(session(), product, {"acc1": "5000", "acc4": "4000"}, "product")
    assert (record.code, record.name, record.purchase_category_code, record.sales_category_code) == (
        "OAK",
        "Oak board",
        "5000",
        "4000",
    )
    assert (record.purchase_tax_code, record.purchase_price, record.sales_price) == (
        "GB_STANDARD",
        38.0,
        55.0,
    )
    service = {
        "id": "s1",
        "item_code": "HOUR",
        "description": "Hour",
        "active": False,
        "sales_rates": [{"rate": 60}],
    }
    record = adapter()._item(session(), service, {}, "service")
    assert record.sales_price == 60.0 and record.status == RecordStatus.ARCHIVED
    assert record.raw == {"item_type": "service"}


def test_bank_accounts_carry_type_number_and_code():
    row = {
        "id": "bank1",
        "displayed_as": "Current (1200)",
        "nominal_code": 1200,
        "bank_account_details": {"account_name": "Current", "account_number": "70112233"},
        "bank_account_type": ref("CHECKING"),
        "ledger_account": ref("acc1200"),
        "currency": ref("GBP"),
    }
    record = adapter()._bank_account(session(), row)
    assert (record.name, record.code, record.bank_account_type, record.account_number, record.currency) == (
        "Current",
        "1200",
        "CHECKING",
        "70112233",
        "GBP",
    )
    assert record.raw["ledger_account_id"] == "acc1200"


def test_the_first_two_analysis_types_are_the_project_dimensions():
    types = [
        {"id": "t1", "name": "Department", "active": True, "analysis_type_categories": [ref("cat-x")]},
        {"id": "t2", "name": "Region", "active": False},
        {"id": "t3", "name": "Analysis Type 3", "active": True},
    ]
    categories = [
        {"id": "cat-a", "code": "SALES", "name": "Sales", "active": True, "analysis_type": ref("t1")},
        {"id": "cat-b", "code": "OLD", "name": "Old", "active": False, "analysis_type": ref("t1")},
        {"id": "cat-c", "code": "NORTH", "name": "North", "analysis_type": ref("t2")},
        {"id": "cat-d", "code": "X", "name": "Third", "analysis_type": ref("t3")},
        {"id": "cat-x", "code": "LINKED", "name": "Linked only"},
    ]
    records = {r.remote_id: r for r in adapter()._projects(session(), types, categories)}
    assert set(records) == {"cat-a", "cat-b", "cat-c", "cat-x"}
    assert (
        records["cat-a"].dimension,
        records["cat-a"].dimension_name,
        records["cat-a"].dimension_remote_id,
    ) == (
        1,
        "Department",
        "t1",
    )
    assert records["cat-c"].dimension == 2
    assert records["cat-b"].status == RecordStatus.ARCHIVED
    assert records["cat-c"].status == RecordStatus.ARCHIVED  # its analysis type is inactive
    assert records["cat-x"].dimension == 1


# --- the high-water mark ---------------------------------------------------------------------------


def stamp(minute: int) -> datetime:
    return datetime(2026, 11, 2, 9, minute, tzinfo=UTC)


def row_at(row_id: str, minute: int) -> dict[str, Any]:
    return {"id": row_id, "updated_at": f"2026-11-02T09:{minute:02d}:00Z"}


def test_a_full_fetch_marks_the_newest_change_and_the_rows_at_it():
    mark = _advance(None, [row_at("a", 1), row_at("b", 5), row_at("c", 5)], [])
    assert mark == StreamMark(changed=stamp(5), seen=("b", "c"), deleted=stamp(5))
    assert _advance(None, [], []) is None


def test_the_mark_moves_on_and_merges_rows_at_the_same_stamp():
    mark = StreamMark(changed=stamp(5), seen=("b",), deleted=stamp(5))
    assert _advance(mark, [row_at("d", 5)], []) == StreamMark(stamp(5), ("b", "d"), stamp(5))
    assert _advance(mark, [row_at("e", 7)], []) == StreamMark(stamp(7), ("e",), stamp(5))
    assert _advance(mark, [], []) == mark
    deleted = [{"id": "x", "deleted_at": "2026-11-02T09:09:00Z"}]
    assert _advance(mark, [], deleted) == StreamMark(stamp(5), ("b",), stamp(9))


def test_a_bulk_stamp_keeps_no_boundary_ids():
    rows = [row_at(f"r{i}", 5) for i in range(150)]
    mark = _advance(None, rows, [])
    assert mark is not None and mark.seen == ()


def test_high_water_round_trips_and_bad_values_mean_a_full_fetch():
    marks = {"products": StreamMark(stamp(5), ("b",), stamp(6)), "services": None}
    encoded = encode_high_water(marks)
    assert encoded is not None
    assert decode_high_water(encoded, ["products", "services"]) == marks
    assert decode_high_water(None, ["contacts"]) is None
    assert decode_high_water("{not json", ["contacts"]) is None
    assert decode_high_water("nonsense", ["contacts"]) is None
    assert decode_high_water("2026-11-02T09:05:00Z", ["contacts"]) == {
        "contacts": StreamMark(stamp(5), (), stamp(5))
    }
    assert encode_high_water({"contacts": None}) is None


# --- calls -----------------------------------------------------------------------------------------


def test_lists_page_to_the_end_keeping_attributes_and_the_business_header():
    fake = FakeSage(
        {
            "/tax_rates": [
                page([{"id": "GB_STANDARD", "percentage": 20}], "/tax_rates?page=2&items_per_page=200"),
                page([{"id": "GB_ZERO", "percentage": 0}], None, 2),
            ]
        }
    )
    fetched = adapter(fake).fetch_list(session(), ListType.TAX_RATES, since=None)
    assert [r.remote_id for r in fetched.records] == ["GB_STANDARD", "GB_ZERO"]
    assert fetched.complete and fetched.calls == 2
    first, second = fake.queries("/tax_rates")
    assert first["attributes"] == ["all"] and first["items_per_page"] == ["200"]
    assert second["attributes"] == ["all"] and second["page"] == ["2"]
    assert {r.headers["X-Business"] for r in fake.requests} == {BUSINESS}


def test_a_next_link_that_repeats_the_last_page_ends_the_loop():
    fake = FakeSage({"/tax_rates": [page([{"id": "GB_ZERO"}], "/tax_rates?page=2", 1)]})
    fetched = adapter(fake).fetch_list(session(), ListType.TAX_RATES, since=None)
    assert fetched.calls == 2  # page 2 of one answers page 1 again: stop there
    assert [r.remote_id for r in fetched.records] == ["GB_ZERO"]


def test_no_call_without_a_chosen_business():
    fake = FakeSage()
    with pytest.raises(AuthRevoked):
        adapter(fake).fetch_list(session(None), ListType.CONTACTS, since=None)
    assert fake.requests == []


def test_an_incremental_fetch_sends_sages_filters_and_reports_deletions():
    mark = encode_high_water({"contacts": StreamMark(stamp(5), ("seen-before",), stamp(5))})
    changed = [
        {**row_at("seen-before", 5), "name": "Old", "contact_types": [ref("VENDOR")]},
        {**row_at("new", 7), "name": "New", "contact_types": [ref("VENDOR")]},
    ]

    class ChangesAndDeletions(FakeSage):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            if "deleted_since" in request.url.params:
                return httpx.Response(200, json=page([{"id": "gone", "deleted_at": "2026-11-02T09:08:00Z"}]))
            return httpx.Response(200, json=page(changed))

    fake = ChangesAndDeletions()
    fetched = adapter(fake).fetch_list(session(), ListType.CONTACTS, since=mark)
    assert [r.remote_id for r in fetched.records] == ["new"]
    assert fetched.deleted_remote_ids == ["gone"]
    assert not fetched.complete and fetched.calls == 2
    changed_query, deleted_query = (parse_qs(r.url.query.decode()) for r in fake.requests)
    assert changed_query["updated_or_created_since"] == ["2026-11-02T09:05:00Z"]
    assert deleted_query["deleted_since"] == ["2026-11-02T09:05:00Z"]
    assert decode_high_water(fetched.high_water, ["contacts"]) == {
        "contacts": StreamMark(stamp(7), ("new",), stamp(8))
    }


def test_projects_on_a_start_subscription_are_an_empty_list():
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json=[diagnosis("Not available", code="NotAvailableForSubscription")])

    fetched = adapter(answer).fetch_list(session(), ListType.PROJECTS, since=None)
    assert fetched.records == [] and fetched.complete


# --- publishing ------------------------------------------------------------------------------------


def test_a_purchase_invoice_carries_every_amount_and_the_key_inside_the_object():
    project = Resolved(remote_id="cat-a", dimension_remote_id="t1", source=ValueSource.MANUAL)
    lines = [
        line(quantity=7.0, project=project),
        line(
            tax_rate=Resolved(remote_id="GB_ZERO", code="GB_ZERO", source=ValueSource.MANUAL),
            tax_amount=Decimal("0"),
        ),
    ]
    fake = FakeSage()
    result = adapter(fake).publish(session(), plan(lines=lines))
    path, body = fake.posted[0]
    invoice = body["purchase_invoice"]
    assert path == "/purchase_invoices" and result.remote_id == "newpurchase_invoices"
    assert invoice["idempotency_id"] == KEY
    assert (invoice["contact_id"], invoice["vendor_reference"], invoice["due_date"]) == (
        "sup1",
        "SUP-881",
        "2026-12-02",
    )
    first = invoice["invoice_lines"][0]
    assert first["ledger_account_id"] == "acc1" and first["tax_rate_id"] == "GB_STANDARD"
    assert (first["quantity"], first["unit_price"]) == (7.0, 14.2857)
    assert (first["net_amount"], first["tax_amount"], first["total_amount"]) == (100.0, 20.0, 120.0)
    assert first["analysis_type_categories"] == ["cat-a"]
    assert invoice["invoice_lines"][1]["tax_amount"] == 0.0
    assert (invoice["net_amount"], invoice["tax_amount"], invoice["total_amount"]) == (200.0, 20.0, 220.0)


def test_a_sales_invoice_goes_to_sales_invoices():
    fake = FakeSage()
    adapter(fake).publish(session(), plan("sales_invoice", item_type=ItemType.SALES, due_date=None))
    path, body = fake.posted[0]
    assert path == "/sales_invoices"
    assert body["sales_invoice"]["reference"] == "SUP-881" and "due_date" not in body["sales_invoice"]
    assert body["sales_invoice"]["idempotency_id"] == KEY


def test_other_payments_and_quick_entries_have_their_own_shapes():
    fake = FakeSage()
    bank = Resolved(remote_id="bank1", source=ValueSource.MANUAL)
    result = adapter(fake).publish(session(), plan("other_payment", bank_account=bank, reference="R" * 30))
    payment = fake.posted[0][1]["other_payment"]
    assert (payment["transaction_type_id"], payment["bank_account_id"], payment["total_amount"]) == (
        "OTHER_PAYMENT",
        "bank1",
        120.0,
    )
    assert payment["reference"] == "R" * 25 and result.warnings
    assert payment["payment_lines"][0]["details"] == "Printer paper"
    adapter(fake).publish(session(), plan("purchase_quick_entry", reference=None))
    entry = fake.posted[1][1]["purchase_quick_entry"]
    assert (entry["quick_entry_type_id"], entry["reference"], entry["ledger_account_id"]) == (
        "INVOICE",
        "item-1",
        "acc1",
    )


@pytest.mark.parametrize(
    "broken",
    [
        plan("spend_money"),
        plan("sales_invoice"),  # a cost item
        plan("other_payment"),  # no bank account
        plan("purchase_quick_entry", lines=[line(), line()]),
        plan(contact=Resolved(name="Unknown", source=ValueSource.CAPTURED)),
        plan(lines=[line(category=Resolved(source=ValueSource.MISSING))]),
    ],
)
def test_plans_sage_cannot_take_are_rejected_before_any_call(broken: PublishPlan):
    fake = FakeSage()
    with pytest.raises(Rejected) as refused:
        adapter(fake).publish(session(), broken)
    assert refused.value.message
    assert fake.requests == []


def test_ensure_contact_finds_by_normalised_name_or_creates_with_a_per_type_key():
    existing = {"id": "c1", "name": "ACME Limited", "contact_types": [ref("VENDOR")]}
    fake = FakeSage({"/contacts": [page([existing])]})
    found = adapter(fake).ensure_contact(session(), "Acme Ltd", customer=False, key=KEY)
    assert found.remote_id == "c1" and fake.posted == []
    assert fake.queries("/contacts")[0]["search"] == ["acme"]
    created = adapter(fake).ensure_contact(session(), "Acme Ltd", customer=True, key=KEY)
    contact = fake.posted[0][1]["contact"]
    assert created.remote_id == "newcontacts"
    assert contact["contact_type_ids"] == ["CUSTOMER"]
    assert contact["idempotency_id"] == idempotency_id(KEY, "CUSTOMER")


def test_attachments_are_base64_json_bound_to_the_document():
    fake = FakeSage()
    document = Attachment("scans/receipt.pdf", "application/pdf", b"%PDF-1.4")
    attachment_id = adapter(fake).attach(session(), plan(), PublishResult(remote_id="inv1"), document)
    body = fake.posted[0][1]["attachment"]
    assert attachment_id == "newattachments"
    assert base64.b64decode(body["file"]) == b"%PDF-1.4"
    assert (body["file_name"], body["mime_type"], body["file_extension"]) == (
        "receipt.pdf",
        "application/pdf",
        ".pdf",
    )
    assert (body["attachment_context_type_id"], body["attachment_context_id"]) == ("PURCHASE_INVOICE", "inv1")
    assert body["idempotency_id"] == idempotency_id(KEY, "attachment")


def test_an_attachment_already_there_is_not_added_again():
    present = {"id": "att1", "file_name": "receipt.pdf", "file_size": 8}
    fake = FakeSage({"/attachments": [page([present])]})
    document = Attachment("receipt.pdf", "application/pdf", b"%PDF-1.4")
    assert adapter(fake).attach(session(), plan(), PublishResult(remote_id="inv1"), document) == "att1"
    assert fake.posted == []


@pytest.mark.parametrize(
    "document",
    [
        Attachment("virus.exe", "application/x-msdownload", b"MZ"),
        Attachment(
            "huge.pdf", "application/pdf", b"0" * (SageAdapter.capabilities.attachments.max_bytes + 1)
        ),
    ],
)
def test_attachments_outside_sages_limits_are_rejected_before_any_call(document: Attachment):
    fake = FakeSage()
    with pytest.raises(Rejected):
        adapter(fake).attach(session(), plan(), PublishResult(remote_id="inv1"), document)
    assert fake.requests == []


# --- exactly once after the replay window, and bank match ----------------------------------------------


def test_invoices_carry_the_key_in_their_notes():
    fake = FakeSage()
    adapter(fake).publish(session(), plan())
    adapter(fake).publish(session(), plan("sales_invoice", item_type=ItemType.SALES))
    notes = [next(iter(body.values()))["notes"] for _, body in fake.posted]
    assert notes == [f"Published by ledgerlink (item item-1, ledgerlink key {KEY})"] * 2


def test_an_invoice_that_may_exist_is_found_by_its_notes_and_not_posted_again():
    landed = {"id": "inv-old", "notes": f"Published by ledgerlink (item item-1, ledgerlink key {KEY})"}
    fake = FakeSage({"/purchase_invoices": [page([{"id": "other", "notes": None}, landed])]})
    result = adapter(fake).publish(session(), plan(may_exist=True))
    assert result.remote_id == "inv-old"
    assert fake.posted == []
    (query,) = fake.queries("/purchase_invoices")
    assert (query["contact_id"], query["from_date"], query["to_date"]) == (
        ["sup1"],
        ["2026-11-02"],
        ["2026-11-02"],
    )
    missing = FakeSage({"/purchase_invoices": [page([])]})
    assert adapter(missing).publish(session(), plan(may_exist=True)).remote_id == "newpurchase_invoices"


def test_with_bank_match_an_other_payment_becomes_a_purchase_invoice():
    fake = FakeSage()
    bank = Resolved(remote_id="bank1", source=ValueSource.MANUAL)
    matched = plan("other_payment", bank_account=bank, bank_match=True)
    result = adapter(fake).publish(session(), matched)
    assert fake.posted[0][0] == "/purchase_invoices"
    assert "not as an other payment" in result.warnings[0]
    adapter(fake).attach(session(), matched, result, Attachment("r.pdf", "application/pdf", b"%PDF"))
    assert fake.posted[1][1]["attachment"]["attachment_context_type_id"] == "PURCHASE_INVOICE"


def bank_line(line_id: str, day: str, amount: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": line_id,
        "date": day,
        "total_amount": amount,
        "is_reconciled": False,
        "reference": "CARD PAYMENT",
        "transaction_type": ref("MONEY_OUT"),
        **extra,
    }


def test_the_bank_line_is_the_oldest_unreconciled_money_out_of_the_amount_not_yet_paid():
    lines = [
        bank_line("late", "2026-10-30", 224.82),
        bank_line("paired", "2026-10-28", 224.82),
        bank_line("reconciled", "2026-10-20", 224.82, is_reconciled=True),
        bank_line("money-in", "2026-10-21", 224.82, transaction_type=ref("MONEY_IN")),
        bank_line("other-amount", "2026-10-22", 99.0),
    ]
    payments = [{"id": "p1", "date": "2026-10-28", "total_amount": 224.82}]
    fake = FakeSage({"/bank_transactions": [page(lines)], "/contact_payments": [page(payments)]})
    found = adapter(fake).find_bank_line(
        session(),
        bank_account_remote_id="bank1",
        amount=Decimal("224.82"),
        earliest=date(2026, 10, 3),
        latest=date(2026, 12, 12),
    )
    assert found == BankLine("late", date(2026, 10, 30), Decimal("224.82"), "CARD PAYMENT")
    (query,) = fake.queries("/bank_transactions")
    assert (query["bank_account_id"], query["from_date"], query["to_date"], query["attributes"]) == (
        ["bank1"],
        ["2026-10-03"],
        ["2026-12-12"],
        ["all"],
    )
    assert fake.queries("/contact_payments")[0]["bank_account_id"] == ["bank1"]


def test_a_sage_without_readable_bank_lines_means_no_match():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json=[diagnosis("Resource not found", code="RecordNotFound")])

    window = {"earliest": date(2026, 10, 3), "latest": date(2026, 12, 12)}
    found = adapter(handler).find_bank_line(
        session(), bank_account_remote_id="b", amount=Decimal("1"), **window
    )
    assert found is None


def test_the_payment_is_a_vendor_payment_allocated_to_the_invoice_with_its_own_key():
    fake = FakeSage()
    payment_id = adapter(fake).record_payment(
        session(),
        plan(payment_method="Card", reference="A-very-long-supplier-reference-1234"),
        PublishResult(remote_id="inv1"),
        bank_account_remote_id="bank1",
        paid_on=date(2026, 10, 30),
        amount=Decimal("120.00"),
        key=f"{KEY}-payment",
    )
    assert payment_id == "newcontact_payments"
    path, body = fake.posted[0]
    assert path == "/contact_payments"
    assert body["contact_payment"] == {
        "transaction_type_id": "VENDOR_PAYMENT",
        "contact_id": "sup1",
        "bank_account_id": "bank1",
        "date": "2026-10-30",
        "total_amount": 120.0,
        "allocated_artefacts": [{"artefact_id": "inv1", "amount": 120.0}],
        "payment_method_id": "CREDIT_DEBIT",
        "reference": "A-very-long-supplier-refe",
        "idempotency_id": idempotency_id(f"{KEY}-payment"),
    }
    assert len(body["contact_payment"]["idempotency_id"]) == 32


def test_a_sales_invoice_is_paid_by_a_customer_receipt():
    fake = FakeSage()
    adapter(fake).record_payment(
        session(),
        plan("sales_invoice", item_type=ItemType.SALES),
        PublishResult(remote_id="inv1"),
        bank_account_remote_id="bank1",
        paid_on=date(2026, 10, 30),
        amount=Decimal("120.00"),
        key="k",
    )
    assert fake.posted[0][1]["contact_payment"]["transaction_type_id"] == "CUSTOMER_RECEIPT"


def test_a_refused_payment_that_already_landed_answers_with_it():
    ours = {"id": "pay-old", "total_amount": 120.0, "allocated_artefacts": [{"artefact": ref("inv1")}]}

    class AlreadyPaid(FakeSage):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST":
                self.requests.append(request)
                paid = diagnosis("You can only pay unpaid or part-paid invoices.", "allocated_artefacts")
                return httpx.Response(422, json=[paid])
            return super().__call__(request)

    arguments: dict[str, Any] = {
        "bank_account_remote_id": "bank1",
        "paid_on": date(2026, 10, 30),
        "amount": Decimal("120.00"),
        "key": "k",
    }
    paid = AlreadyPaid({"/contact_payments": [page([ours])]})
    assert (
        adapter(paid).record_payment(session(), plan(), PublishResult(remote_id="inv1"), **arguments)
        == "pay-old"
    )
    unpaid = AlreadyPaid({"/contact_payments": [page([])]})
    with pytest.raises(Rejected) as refused:
        adapter(unpaid).record_payment(session(), plan(), PublishResult(remote_id="inv1"), **arguments)
    assert "unpaid or part-paid" in refused.value.message
