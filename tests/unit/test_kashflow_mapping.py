"""KashFlow's formats and quirks without a simulator: list mappings, line bodies, error bodies,
the memorable-word login and the look-up that stands in for idempotency (httpx MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from ledgerlink.errors import AuthRevoked, InvalidRequest, NotFound, Rejected
from ledgerlink.models.common import ItemType, ListType, ProviderName
from ledgerlink.models.lists import RecordStatus
from ledgerlink.models.publishing import PlannedLine, PublishPlan, Resolved, ValueSource
from ledgerlink.models.tokens import AppCredentials
from ledgerlink.providers.base import LedgerSession
from ledgerlink.providers.kashflow import (
    SESSION_LIFETIME,
    SESSION_MARGIN,
    KashFlowAdapter,
    bank_account_record,
    category_record,
    contact_record,
    document_marker,
    item_record,
    line_body,
    markers_in,
    organisation_id_for,
    parse_kf_datetime,
    project_record,
    split_contact_remote_id,
    tax_rate_record,
    vat_code,
)

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
API = "https://api.kashflow.com/v2"


@dataclass
class FixedClock:
    moment: datetime = NOW

    def now(self) -> datetime:
        return self.moment


def adapter(handler: Callable[[httpx.Request], httpx.Response] | None = None) -> KashFlowAdapter:
    return KashFlowAdapter(
        config=KashFlowAdapter.default_config,
        credentials=AppCredentials(client_id="none", client_secret="none"),
        clock=FixedClock(),
        sleep=lambda _seconds: None,
        http_transport=httpx.MockTransport(handler or (lambda _request: httpx.Response(500))),
    )


def session(token: str = "session-1") -> LedgerSession:
    return LedgerSession("conn-1", "kf-org", lambda _force: token)


# --- formats -----------------------------------------------------------------------------------


def test_vat_codes_are_the_percentages_lines_send():
    assert vat_code(20.0) == "20"
    assert vat_code(Decimal("17.50")) == "17.5"
    assert vat_code(0) == "0"
    assert vat_code(5) == "5"
    assert vat_code(None) is None
    assert vat_code("not a rate") is None


def test_kashflow_timestamps_with_and_without_offsets():
    assert parse_kf_datetime("2026-11-02T09:00:00") == NOW
    assert parse_kf_datetime("2026-11-02 09:00:00") == NOW
    assert parse_kf_datetime("2026-11-02T10:00:00+01:00") == NOW
    assert parse_kf_datetime(None) is None
    assert parse_kf_datetime("yesterday") is None


def test_contact_remote_ids_say_supplier_or_customer():
    assert split_contact_remote_id("supplier:ABBE01") == ("supplier", "ABBE01")
    assert split_contact_remote_id("customer:ASHD01") == ("customer", "ASHD01")
    assert split_contact_remote_id("ABBE01") is None
    assert split_contact_remote_id("vendor:X") is None
    assert split_contact_remote_id(None) is None


def test_the_organisation_id_is_stable_for_the_company_name():
    assert organisation_id_for("Demo Company (UK)") == organisation_id_for("  demo   company (uk) ")
    assert organisation_id_for("Demo Company (UK)") != organisation_id_for("Harbour & Finch Joinery Ltd")
    assert organisation_id_for("Demo Company (UK)").startswith("kf-")


def test_markers_are_found_in_any_line_description():
    key = "0123456789abcdef0123456789abcdef"
    document = {
        "LineItems": [{"Description": "Other"}, {"Description": f"Paper {document_marker(key)}"}, None]
    }
    assert markers_in(document) == {key}
    assert markers_in({"LineItems": None}) == set()


# --- list mappings ---------------------------------------------------------------------------------


def nominal(**fields: Any) -> dict[str, Any]:
    return {
        "Id": 2010,
        "Code": 7500,
        "Name": "Printing and stationery",
        "Type": "Overheads",
        "NomType": 3,
        "Classification": "Purchases",
        "Archived": False,
        "VATRate": 20.0,
        "VATExempt": False,
        "Disallowed": False,
        **fields,
    }


def test_nominals_become_categories_usable_by_their_classification():
    cost = category_record("conn-1", nominal())
    assert cost.remote_id == "2010" and cost.code == "7500"
    assert cost.usable_for == [ItemType.COST, ItemType.EXPENSE_CLAIM]
    assert cost.default_tax_code == "20" and cost.account_type == "Overheads"
    assert cost.raw["Classification"] == "Purchases"

    sales = category_record("conn-1", nominal(Id=2011, Code=4000, Classification="Sales", VATRate=5))
    assert sales.usable_for == [ItemType.SALES] and sales.default_tax_code == "5"

    balance = category_record("conn-1", nominal(Id=2012, Classification="Balance Sheet", VATRate=0))
    assert balance.usable_for == [] and balance.default_tax_code is None

    archived = category_record("conn-1", nominal(Archived=True))
    assert archived.status == RecordStatus.ARCHIVED


def contact(**fields: Any) -> dict[str, Any]:
    return {
        "Id": 11,
        "Code": "ASHD01",
        "Name": "Ashdown Print Works Ltd",
        "Email": "accounts@ashdown.example",
        "Currency": {"Code": "EUR", "Name": "Euros"},
        "DefaultNominalCode": 7500,
        "IsArchived": False,
        "LastUpdatedDate": "2026-11-02T09:00:00",
        **fields,
    }


def test_a_code_in_both_lists_gives_two_records_with_their_own_flags():
    supplier = contact_record("conn-1", "supplier", contact())
    customer = contact_record("conn-1", "customer", contact(Name="Ashdown Music School"))
    assert supplier.id != customer.id
    assert (supplier.remote_id, customer.remote_id) == ("supplier:ASHD01", "customer:ASHD01")
    assert supplier.is_supplier and not supplier.is_customer
    assert customer.is_customer and not customer.is_supplier
    assert supplier.code == "ASHD01" and supplier.default_category_code == "7500"
    assert supplier.currency == "EUR" and supplier.email == "accounts@ashdown.example"
    assert supplier.remote_updated_at == NOW


def test_archived_contacts_are_kept_archived_and_missing_defaults_stay_empty():
    record = contact_record(
        "conn-1", "supplier", contact(IsArchived=True, DefaultNominalCode=None, Currency=None)
    )
    assert record.status == RecordStatus.ARCHIVED
    assert record.default_category_code is None and record.currency is None


def test_vat_rates_are_percentages_for_purchases_and_sales():
    record = tax_rate_record("conn-1", {"VATId": 2, "VATRate": 5.0, "VATText": "5%"})
    assert (record.remote_id, record.code, record.name, record.rate) == ("2", "5", "5%", 5.0)
    assert set(record.applies_to) == {ItemType.COST, ItemType.SALES, ItemType.EXPENSE_CLAIM}


def test_a_products_nominal_goes_to_the_side_its_classification_says():
    product = {
        "Id": 512,
        "Code": "BROADBAND",
        "Name": "Business broadband",
        "Price": 0.0,
        "PurchasePrice": 38.0,
        "NominalCode": 7502,
        "VATRate": 20.0,
        "IsArchived": False,
        "LastUpdatedDate": "2026-11-02T09:00:00",
    }
    bought = item_record("conn-1", product, {"7502": "Purchases"})
    assert bought.purchase_category_code == "7502" and bought.sales_category_code is None
    assert bought.purchase_price == 38.0 and bought.sales_price is None
    assert bought.purchase_tax_code == bought.sales_tax_code == "20"

    sold = item_record("conn-1", {**product, "Price": 90.0, "NominalCode": 4000}, {"4000": "Sales"})
    assert sold.sales_category_code == "4000" and sold.purchase_category_code is None
    assert sold.sales_price == 90.0


def test_projects_are_dimension_one_and_completed_ones_are_archived():
    row = {"Id": 300, "Number": 3, "Name": "Office refit", "Reference": "PRJ003", "Status": "Active"}
    active = project_record("conn-1", row)
    assert (active.remote_id, active.code, active.status) == ("3", "PRJ003", RecordStatus.ACTIVE)
    assert (active.dimension, active.dimension_name, active.dimension_remote_id) == (1, "Project", "projects")
    assert project_record("conn-1", {**row, "Status": "Completed"}).status == RecordStatus.ARCHIVED


def test_bank_accounts_keep_type_currency_and_number():
    record = bank_account_record(
        "conn-1",
        {
            "Id": 100,
            "Code": 90,
            "AccountName": "Business Current Account",
            "AccountNumber": "41234567",
            "SortCode": "20-45-77",
            "AccountType": "Current",
            "CurrencyCode": "GBP",
            "IsDefaultAccount": True,
            "IsArchived": True,
        },
    )
    assert (record.remote_id, record.code, record.name) == ("100", "90", "Business Current Account")
    assert (record.bank_account_type, record.currency, record.account_number) == (
        "Current",
        "GBP",
        "41234567",
    )
    assert record.status == RecordStatus.ARCHIVED and record.raw["IsDefaultAccount"] is True


# --- line bodies -----------------------------------------------------------------------------------


def planned_line(**fields: Any) -> PlannedLine:
    values: dict[str, Any] = {
        "description": "Printer paper",
        "quantity": 1.0,
        "amount": Decimal("100.00"),
        "tax_amount": Decimal("20.00"),
        "category": Resolved(code="7500", source=ValueSource.CAPTURED),
        "tax_rate": Resolved(code="20", source=ValueSource.CAPTURED),
        **fields,
    }
    return PlannedLine(**values)


def test_a_line_carries_net_rate_vat_level_nominal_and_project():
    body = line_body(
        planned_line(quantity=4.0, project=Resolved(remote_id="3", source=ValueSource.CAPTURED)),
        0,
        marker="[ledgerlink:k]",
    )
    assert body == {
        "Description": "Printer paper [ledgerlink:k]",
        "Quantity": 4,
        "Rate": 25,
        "NominalCode": 7500,
        "VATAmount": 20,
        "VATLevel": 20,
        "ProjectNumber": 3,
    }


def test_an_amount_that_does_not_divide_goes_in_as_one_unit():
    divides = line_body(planned_line(quantity=3.0, amount=Decimal("100.01")), 0, marker=None)
    assert (divides["Quantity"], divides["Rate"]) == (3, 33.3367)  # 3 x 33.3367 rounds to 100.01
    body = line_body(planned_line(quantity=1000.0, amount=Decimal("1.23")), 0, marker=None)
    assert (body["Quantity"], body["Rate"]) == (1, 1.23)
    assert body["Description"] == "Printer paper"


def test_a_category_that_is_not_a_nominal_code_is_refused_before_sending():
    with pytest.raises(Rejected) as refused:
        line_body(planned_line(category=Resolved(code="EXP-1", source=ValueSource.CAPTURED)), 2, marker=None)
    assert refused.value.field_errors[0].field == "lines[2].category"


# --- errors ----------------------------------------------------------------------------------------


def test_model_state_errors_carry_kashflows_own_words_and_fields():
    body = {
        "Message": "The request is invalid.",
        "ModelState": {
            "LineItems[0].NominalCode": ["Nominal code 99999 does not exist."],
            "SupplierCode": ["The SupplierCode field is required."],
        },
    }
    error = adapter().map_error(httpx.Response(400, json=body))
    assert isinstance(error, Rejected)
    assert [(e.field, e.message) for e in error.field_errors] == [
        ("LineItems[0].NominalCode", "Nominal code 99999 does not exist."),
        ("SupplierCode", "The SupplierCode field is required."),
    ]
    assert "Nominal code 99999 does not exist." in error.message


def test_message_only_and_plain_text_errors():
    message = adapter().map_error(httpx.Response(400, json={"Message": "VAT level 17 is not configured."}))
    assert isinstance(message, Rejected) and message.message == "VAT level 17 is not configured."
    plain = adapter().map_error(httpx.Response(400, text="Something was wrong with the purchase."))
    assert isinstance(plain, Rejected) and plain.message == "Something was wrong with the purchase."


def test_lost_access_and_missing_objects():
    denied = {"Message": "Authorization has been denied for this request."}
    assert isinstance(adapter().map_error(httpx.Response(401, json=denied)), AuthRevoked)
    assert isinstance(adapter().map_error(httpx.Response(403, json=denied)), AuthRevoked)
    missing = adapter().map_error(httpx.Response(404, json={"Message": "Purchase 9 was not found."}))
    assert isinstance(missing, NotFound) and missing.message == "Purchase 9 was not found."


# --- config and capabilities -----------------------------------------------------------------------


def test_kashflow_is_a_session_login_ledger_without_oauth_urls_or_incremental_lists():
    config = KashFlowAdapter.default_config
    assert config.authorize_url is None and config.token_url is None and config.revoke_url is None
    assert config.api_base_url == API
    capabilities = KashFlowAdapter.capabilities
    assert capabilities.provider == ProviderName.KASHFLOW
    assert capabilities.auth_style == "session_login" and not capabilities.organisation_choice
    assert set(capabilities.lists) == set(ListType) and capabilities.incremental_lists == ()
    assert capabilities.idempotency == "lookup_by_reference" and capabilities.batch_size == 1
    assert not capabilities.bank_match and not capabilities.native_expense_claims


def test_oauth_steps_are_refused_clearly():
    with pytest.raises(InvalidRequest, match="memorable word"):
        adapter().authorization_url(redirect_uri="https://x/cb", state="s", code_verifier=None)
    with pytest.raises(InvalidRequest, match="no OAuth"):
        adapter().exchange_code(code="c", redirect_uri="https://x/cb", code_verifier=None, callback_params={})


# --- the memorable-word login ----------------------------------------------------------------------


@dataclass
class FakeLogin:
    """KashFlow's two steps, enough to check what the adapter sends."""

    word: str = "ledgerlink"
    positions: tuple[int, ...] = (2, 5, 7)
    locked: bool = False
    start_failures: list[int] = field(default_factory=list)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.method, request.url.path, body))
        if request.url.path != "/v2/sessiontoken":
            return httpx.Response(200, json=[{"auth": request.headers.get("Authorization")}])
        if request.method == "POST":
            if self.start_failures:
                return httpx.Response(self.start_failures.pop(0), text="busy")
            if body["Password"] != "pw":
                return httpx.Response(401, json={"Message": "The user name or password is incorrect."})
            return httpx.Response(
                201,
                json={
                    "IsLockedOut": self.locked,
                    "TemporaryToken": None if self.locked else "temp-1",
                    "MemorableWordList": [] if self.locked else [{"Position": p} for p in self.positions],
                },
            )
        answers = {entry["Position"]: entry["Value"] for entry in body["MemorableWordList"]}
        if answers != {p: self.word[p - 1] for p in self.positions}:
            return httpx.Response(401, json={"Message": "The memorable word characters are incorrect."})
        return httpx.Response(200, json={"SessionToken": "session-1", "CompanyName": "Demo Company (UK)"})


def test_login_answers_the_asked_letters_and_keeps_the_credentials_secret():
    fake = FakeLogin()
    tokens = adapter(fake).login("demo", "pw", "ledgerlink")
    assert tokens.access_token.get_secret_value() == "session-1"
    assert fake.calls[1][2]["MemorableWordList"] == [
        {"Position": 2, "Value": "e"},
        {"Position": 5, "Value": "e"},
        {"Position": 7, "Value": "l"},
    ]
    assert tokens.expires_at == NOW + SESSION_LIFETIME - SESSION_MARGIN
    assert tokens.extras == {"company_name": "Demo Company (UK)"}
    assert tokens.refresh_token is not None and "pw" not in repr(tokens)
    assert json.loads(tokens.refresh_token.get_secret_value()) == {
        "username": "demo",
        "password": "pw",
        "memorable_word": "ledgerlink",
    }
    organisations = adapter(fake).organisations(tokens)
    assert [(o.id, o.name) for o in organisations] == [
        (organisation_id_for("Demo Company (UK)"), "Demo Company (UK)")
    ]


def test_a_refresh_logs_in_again_and_the_session_travels_as_kftoken():
    fake = FakeLogin()
    kashflow = adapter(fake)
    tokens = kashflow.login("demo", "pw", "ledgerlink")
    renewed = kashflow.refresh_tokens(tokens)
    assert renewed.access_token.get_secret_value() == "session-1"
    assert [c[0] for c in fake.calls] == ["POST", "PUT", "POST", "PUT"]
    fetched = kashflow.fetch_list(session("session-1"), ListType.TAX_RATES, since=None)
    assert fetched.complete and fetched.calls == 1
    assert fake.calls[-1][1] == "/v2/vat/settings/vatrates"
    assert kashflow.authorization_headers("abc") == {"Authorization": "KfToken abc"}


def test_wrong_letters_are_not_retried_because_failures_lock_the_login():
    fake = FakeLogin()
    with pytest.raises(AuthRevoked, match="memorable word"):
        adapter(fake).login("demo", "pw", "wrongwords")
    assert [c[0] for c in fake.calls] == ["POST", "PUT"]


def test_wrong_password_and_locked_login_need_a_reconnect():
    with pytest.raises(AuthRevoked, match="user name or password"):
        adapter(FakeLogin()).login("demo", "nope", "ledgerlink")
    with pytest.raises(AuthRevoked, match="locked"):
        adapter(FakeLogin(locked=True)).login("demo", "pw", "ledgerlink")
    with pytest.raises(AuthRevoked, match="shorter"):
        adapter(FakeLogin()).login("demo", "pw", "led")


def test_a_busy_login_is_retried_from_the_first_step():
    fake = FakeLogin(start_failures=[503])
    assert adapter(fake).login("demo", "pw", "ledgerlink").access_token.get_secret_value() == "session-1"
    assert [c[0] for c in fake.calls] == ["POST", "POST", "PUT"]


def test_unreadable_stored_credentials_need_a_reconnect():
    tokens = adapter(FakeLogin()).login("demo", "pw", "ledgerlink")
    broken = tokens.model_copy(update={"refresh_token": None})
    with pytest.raises(AuthRevoked):
        adapter(FakeLogin()).refresh_tokens(broken)


# --- paging ----------------------------------------------------------------------------------------


def test_pages_follow_next_page_url_on_our_own_origin_only():
    seen: list[str] = []

    def ledger(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        page = request.url.params.get("page")
        rows = (
            [{"Id": 1, "Code": "A1", "Name": "A"}] if page == "1" else [{"Id": 2, "Code": "B1", "Name": "B"}]
        )
        # An absolute page URL on another host: never called, it only says that a page follows.
        next_url = "https://elsewhere.example/v2/suppliers?page=2&perpage=100" if page == "1" else None
        return httpx.Response(200, json={"Data": rows, "MetaData": {"NextPageUrl": next_url}})

    fetched = adapter(ledger).fetch_list(session(), ListType.CONTACTS, since="ignored")
    assert fetched.complete and fetched.high_water is None
    assert all(url.startswith(API) for url in seen)
    # suppliers: two pages, customers: two pages
    assert fetched.calls == 4 and len(fetched.records) == 4
    assert len({r.id for r in fetched.records}) == 4


def test_a_bare_projects_list_is_the_whole_list():
    def ledger(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"Number": 1, "Name": "Refit", "Status": "Active"}])

    fetched = adapter(ledger).fetch_list(session(), ListType.PROJECTS, since=None)
    assert [r.remote_id for r in fetched.records] == ["1"] and fetched.calls == 1


# --- exactly once without idempotency --------------------------------------------------------------


def purchase_plan(key: str = "0123456789abcdef0123456789abcdef") -> PublishPlan:
    return PublishPlan(
        item_id="item-1",
        revision=1,
        provider=ProviderName.KASHFLOW,
        item_type=ItemType.COST,
        destination="purchase_invoice",
        contact=Resolved(
            remote_id="supplier:ABBE01", code="ABBE01", name="Abbey", source=ValueSource.CAPTURED
        ),
        date=date(2026, 11, 2),
        due_date=date(2026, 12, 2),
        reference="SUP-881",
        currency="GBP",
        net=Decimal("100.00"),
        tax=Decimal("20.00"),
        gross=Decimal("120.00"),
        lines=[planned_line()],
        idempotency_key=key,
    )


@dataclass
class FakePurchases:
    """Purchases for one supplier; a POST adds one (and can lose its answer)."""

    existing: list[dict[str, Any]] = field(default_factory=list)
    lose_next_answer: bool = False
    posts: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path == "/v2/purchases":
            summaries = [{**p, "LineItems": None} for p in reversed(self.existing)]
            return httpx.Response(200, json={"Data": summaries, "MetaData": {"NextPageUrl": None}})
        if request.method == "GET" and path.startswith("/v2/purchases/"):
            number = int(path.rsplit("/", 1)[1])
            return httpx.Response(200, json=next(p for p in self.existing if p["Number"] == number))
        if request.method == "POST" and path == "/v2/purchases":
            self.posts += 1
            body = json.loads(request.content)
            created = {
                **body,
                "Number": len(self.existing) + 1,
                "GrossAmount": 120.0,
                "IssuedDate": "2026-11-02T00:00:00",
                "Permalink": f"{API}/purchases/{len(self.existing) + 1}",
            }
            self.existing.append(created)
            if self.lose_next_answer:
                self.lose_next_answer = False
                raise httpx.ReadTimeout("answer lost", request=request)
            return httpx.Response(201, json=created)
        return httpx.Response(404, json={"Message": f"{path} was not found."})


def test_a_lost_answer_is_found_by_our_key_and_not_posted_again():
    ledger = FakePurchases(lose_next_answer=True)
    kashflow = adapter(ledger)
    result = kashflow.publish(session(), purchase_plan())
    assert (result.remote_id, ledger.posts) == ("1", 1)
    assert kashflow.publish(session(), purchase_plan()).remote_id == "1"
    assert ledger.posts == 1


def test_the_same_supplier_reference_on_another_document_is_not_ours():
    other = {
        "Number": 1,
        "SupplierCode": "ABBE01",
        "SupplierReference": "SUP-881",
        "GrossAmount": 120.0,
        "IssuedDate": "2026-11-02T00:00:00",
        "LineItems": [{"Description": "Paper [ledgerlink:ffffffffffffffffffffffffffffffff]"}],
    }
    ledger = FakePurchases(existing=[other])
    result = adapter(ledger).publish(session(), purchase_plan())
    assert (result.remote_id, ledger.posts) == ("2", 1)


def test_a_destination_not_built_is_refused_clearly():
    with pytest.raises(Rejected, match="not available for KashFlow"):
        adapter(FakePurchases()).publish(
            session(), purchase_plan().model_copy(update={"destination": "bill"})
        )


def test_due_date_defaults_come_from_the_contacts_payment_terms():
    purchases = FakePurchases()

    def ledger(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/suppliers/ABBE01":
            return httpx.Response(200, json={"Code": "ABBE01", "PaymentTerms": 14})
        return purchases(request)

    adapter(ledger).publish(session(), purchase_plan().model_copy(update={"due_date": None}))
    assert purchases.existing[0]["IssuedDate"] == "2026-11-02T00:00:00"
    assert purchases.existing[0]["DueDate"] == "2026-11-16 00:00:00"


def test_revoke_logs_the_session_out():
    requests: list[httpx.Request] = []

    def ledger(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(204)

    tokens = adapter(FakeLogin()).login("demo", "pw", "ledgerlink")
    adapter(ledger).revoke(tokens)
    assert [(r.method, r.url.path) for r in requests] == [("DELETE", "/v2/sessiontoken/session-1")]
    assert requests[0].headers["Authorization"] == "KfToken session-1"
