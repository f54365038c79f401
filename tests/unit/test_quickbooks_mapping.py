"""QuickBooks Online's formats without a simulator: realmId capture, Fault bodies mapped to our
errors, the list mappings, STARTPOSITION paging and the incremental filter, and the bodies of
bills, invoices and uploads (through an httpx MockTransport standing in for the API)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from ledgerlink.errors import AuthRevoked, NotFound, Rejected, Unavailable
from ledgerlink.models.common import ItemType, ListType, ProviderName
from ledgerlink.models.lists import RecordStatus
from ledgerlink.models.publishing import PlannedLine, PublishPlan, PublishResult, Resolved, ValueSource
from ledgerlink.models.tokens import AppCredentials, TokenSet
from ledgerlink.providers.base import Attachment, LedgerSession
from ledgerlink.providers.quickbooks import (
    DuplicateName,
    QuickBooksAdapter,
    parse_fault,
    parse_qbo_datetime,
    split_contact_remote_id,
    split_project_remote_id,
)

REALM = "9130350000000001"
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SERVER_TIME = "2026-11-02T01:00:00.000-08:00"
KEY = "0123456789abcdef0123456789abcdef"


class FixedClock:
    def now(self) -> datetime:
        return NOW


Handler = Callable[[httpx.Request], httpx.Response]


def adapter(handler: Handler | None = None, *, page_size: int = 1000) -> QuickBooksAdapter:
    config = QuickBooksAdapter.default_config
    if page_size != config.page_size:
        config = config.model_copy(update={"page_size": page_size})
    return QuickBooksAdapter(
        config=config,
        credentials=AppCredentials(client_id="id", client_secret="secret"),
        clock=FixedClock(),
        sleep=lambda _s: None,
        http_transport=httpx.MockTransport(handler or (lambda request: httpx.Response(500))),
    )


def session() -> LedgerSession:
    return LedgerSession("conn-1", REALM, lambda _force: "access")


def fault(code: str, message: str, detail: str = "", element: str = "") -> dict[str, Any]:
    return {
        "Fault": {
            "Error": [{"Message": message, "Detail": detail, "code": code, "element": element}],
            "type": "ValidationFault",
        },
        "time": SERVER_TIME,
    }


def query_of(request: httpx.Request) -> str:
    return parse_qs(request.url.query.decode())["query"][0]


class FakeQuery:
    """The query endpoint over fixed rows: honours STARTPOSITION/MAXRESULTS, records statements."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]]):
        self.rows = rows
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/preferences"):
            prefs = {"AccountingInfoPrefs": {"DepartmentTerminology": "Store"}}
            return httpx.Response(200, json={"Preferences": prefs, "time": SERVER_TIME})
        statement = query_of(request)
        words = statement.split()
        entity = words[words.index("FROM") + 1]
        start = int(words[words.index("STARTPOSITION") + 1])
        size = int(words[words.index("MAXRESULTS") + 1])
        page = self.rows.get(entity, [])[start - 1 : start - 1 + size]
        body = {entity: page, "startPosition": start, "maxResults": len(page)} if page else {}
        return httpx.Response(200, json={"QueryResponse": body, "time": SERVER_TIME})

    def statements(self) -> list[str]:
        return [query_of(r) for r in self.requests if "query" in r.url.params]


def meta(updated: str = "2026-10-01T02:00:00-07:00") -> dict[str, str]:
    return {"CreateTime": "2025-01-01T00:00:00-08:00", "LastUpdatedTime": updated}


def ref(resolved_remote_id: str | None, name: str = "x", **extra: Any) -> Resolved:
    return Resolved(remote_id=resolved_remote_id, name=name, source=ValueSource.CAPTURED, **extra)


def plan(**overrides: Any) -> PublishPlan:
    line = PlannedLine(
        description="Printer paper",
        quantity=1,
        amount=Decimal("100.00"),
        tax_amount=Decimal("20.00"),
        category=ref("20", "General Expenses", code="20"),
        tax_rate=ref("1", "20.0% S", code="1"),
        project=ref("class:3", "Administration", dimension_remote_id="Class"),
        project_2=ref("department:2", "South", dimension_remote_id="Department"),
    )
    values: dict[str, Any] = {
        "item_id": "item-1",
        "revision": 1,
        "provider": ProviderName.QUICKBOOKS,
        "item_type": ItemType.COST,
        "destination": "bill",
        "contact": ref("vendor:56", "Office Supplies Co"),
        "date": date(2026, 11, 2),
        "due_date": date(2026, 12, 2),
        "reference": "SUP-INV-881",
        "currency": "GBP",
        "net": Decimal("100.00"),
        "tax": Decimal("20.00"),
        "gross": Decimal("120.00"),
        "lines": [line],
        "idempotency_key": KEY,
    }
    values.update(overrides)
    return PublishPlan(**values)


# --- OAuth ------------------------------------------------------------------------------------------


def test_config_and_capabilities_describe_quickbooks():
    config = QuickBooksAdapter.default_config
    assert config.token_endpoint_auth_method == "client_secret_basic"
    assert config.pkce is False
    assert config.scopes == ("com.intuit.quickbooks.accounting",)
    assert config.page_size == 1000
    capabilities = QuickBooksAdapter.capabilities
    assert set(capabilities.lists) == set(ListType)
    assert ListType.TAX_RATES not in capabilities.incremental_lists
    assert capabilities.default_destinations[ItemType.COST] == "bill"
    assert capabilities.idempotency == "query_parameter"
    assert not capabilities.bank_match and not capabilities.native_expense_claims


def test_realm_id_from_the_callback_is_kept_and_survives_a_refresh():
    qbo = adapter(
        lambda request: httpx.Response(
            200,
            json={
                "token_type": "bearer",
                "access_token": "access-2",
                "expires_in": 3600,
                "refresh_token": "refresh-2",
                "x_refresh_token_expires_in": 8726400,
            },
        )
    )
    tokens = qbo.token_set_from(
        {"access_token": "access-1", "refresh_token": "refresh-1", "expires_in": 3600},
        callback_params={"code": "c", "state": "s", "realmId": REALM},
    )
    assert tokens.extras == {"realm_id": REALM}
    refreshed = qbo.refresh_tokens(tokens)
    assert refreshed.extras == {"realm_id": REALM}
    assert refreshed.refresh_token is not None and refreshed.refresh_token.get_secret_value() == "refresh-2"
    assert refreshed.refresh_expires_at is not None


def test_a_realm_id_that_is_not_a_number_is_not_kept():
    assert adapter().token_extras({}, {"realmId": "../other"}) == {}
    assert adapter().token_extras({}, {}) == {}


def test_a_refresh_without_a_new_refresh_token_keeps_the_current_one():
    qbo = adapter(lambda request: httpx.Response(200, json={"access_token": "a2", "expires_in": 3600}))
    tokens = TokenSet(access_token="a1", refresh_token="r1", expires_at=NOW, extras={"realm_id": REALM})
    refreshed = qbo.refresh_tokens(tokens)
    assert refreshed.refresh_token is not None and refreshed.refresh_token.get_secret_value() == "r1"


def test_revocation_sends_the_token_as_json_with_basic_auth():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    tokens = TokenSet(access_token="a1", refresh_token="r1", expires_at=NOW)
    adapter(handler).revoke(tokens)
    (request,) = seen
    assert str(request.url) == "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
    assert json.loads(request.content) == {"token": "r1"}
    assert request.headers["Authorization"].startswith("Basic ")


def test_the_consent_covers_the_callbacks_company():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/v3/company/{REALM}/companyinfo/{REALM}"
        assert request.url.params["minorversion"] == "75"
        return httpx.Response(200, json={"CompanyInfo": {"CompanyName": "Demo Ltd"}, "time": SERVER_TIME})

    tokens = TokenSet(access_token="a1", expires_at=NOW, extras={"realm_id": REALM})
    (organisation,) = adapter(handler).organisations(tokens)
    assert (organisation.id, organisation.name) == (REALM, "Demo Ltd")


# --- errors -------------------------------------------------------------------------------------------


def test_validation_fault_becomes_rejected_in_the_ledgers_words():
    body = fault(
        "2500",
        "Invalid Reference Id",
        "Invalid Reference Id : Accounts element id 999 not found",
        "Line.AccountRef",
    )
    error = adapter().map_error(httpx.Response(400, json=body))
    assert isinstance(error, Rejected) and not isinstance(error, DuplicateName)
    assert error.message == "Invalid Reference Id : Accounts element id 999 not found"
    assert [(e.message, e.field) for e in error.field_errors] == [
        ("Invalid Reference Id : Accounts element id 999 not found", "Line.AccountRef")
    ]


def test_duplicate_name_is_its_own_refusal():
    body = fault("6240", "Duplicate Name Exists Error", "The name supplied already exists.", "DisplayName")
    assert isinstance(adapter().map_error(httpx.Response(400, json=body)), DuplicateName)


def test_gateway_401_with_lowercase_keys_means_reconnect():
    body = {
        "fault": {
            "error": [
                {
                    "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                    "detail": "Token expired: the access token has expired",
                    "code": "3200",
                }
            ],
            "type": "AUTHENTICATION",
        }
    }
    assert parse_fault(body)[0].code == "3200"
    error = adapter().map_error(httpx.Response(401, json=body))
    assert isinstance(error, AuthRevoked)
    assert "Token expired" in error.message


def test_403_another_company_means_reconnect_and_404_is_not_found():
    forbidden = fault("003100", "ApplicationAuthorizationFailed", "This app is not authorized for company 1")
    assert isinstance(adapter().map_error(httpx.Response(403, json=forbidden)), AuthRevoked)
    assert isinstance(adapter().map_error(httpx.Response(404, text="<html>nope</html>")), NotFound)


def test_610_is_not_found_on_a_read_and_a_refusal_on_a_write():
    body = fault("610", "Object Not Found", "Something you're trying to use has been made inactive.")
    read = httpx.Response(400, json=body, request=httpx.Request("GET", "https://qbo.test/account/9"))
    write = httpx.Response(400, json=body, request=httpx.Request("POST", "https://qbo.test/bill"))
    assert isinstance(adapter().map_error(read), NotFound)
    assert isinstance(adapter().map_error(write), Rejected)


def test_an_unreadable_error_body_still_says_who_answered():
    error = adapter().map_error(httpx.Response(400, text="<html>bad</html>"))
    assert isinstance(error, Rejected)
    assert error.message == "QuickBooks answered 400"


def test_rate_limit_is_named_from_the_fault():
    body = fault("003001", "ThrottleExceeded", "Throttle exceeded")
    assert adapter().rate_limit_name(httpx.Response(429, json=body)) == "ThrottleExceeded"


def test_timestamps_and_remote_ids():
    assert parse_qbo_datetime("2026-11-02T01:00:00-08:00") == NOW
    assert parse_qbo_datetime("2026-11-02T09:00:00") == NOW
    assert parse_qbo_datetime("not a time") is None
    assert split_contact_remote_id("vendor:56") == ("Vendor", "56")
    assert split_contact_remote_id("customer:7") == ("Customer", "7")
    assert split_contact_remote_id("56") == (None, "56")
    assert split_project_remote_id("department:2", None) == ("Department", "2")
    assert split_project_remote_id("3", "Class") == ("Class", "3")


# --- lists ---------------------------------------------------------------------------------------------


ACCOUNTS = [
    {
        "Id": "1",
        "Name": "Business Current Account",
        "AccountType": "Bank",
        "AccountSubType": "Checking",
        "AcctNum": "090",
        "CurrencyRef": {"value": "GBP"},
        "Active": True,
        "MetaData": meta(),
    },
    {
        "Id": "3",
        "Name": "Company Credit Card",
        "AccountType": "Credit Card",
        "Active": True,
        "MetaData": meta(),
    },
    {
        "Id": "4",
        "Name": "Sales",
        "AccountType": "Income",
        "TaxCodeRef": {"value": "1"},
        "Active": True,
        "MetaData": meta(),
    },
    {
        "Id": "20",
        "Name": "General Expenses",
        "FullyQualifiedName": "Overheads:General Expenses",
        "AccountType": "Expense",
        "AcctNum": "429",
        "TaxCodeRef": {"value": "1"},
        "CurrencyRef": {"value": "GBP"},
        "Active": True,
        "MetaData": meta("2026-10-05T10:00:00-07:00"),
    },
    {
        "Id": "40",
        "Name": "Office Equipment",
        "AccountType": "Fixed Asset",
        "Active": True,
        "MetaData": meta(),
    },
    {"Id": "42", "Name": "Accounts Payable", "AccountType": "Accounts Payable", "Active": True},
    {"Id": "26", "Name": "Old Motor", "AccountType": "Expense", "Active": False, "MetaData": meta()},
]


def test_categories_and_bank_accounts_split_one_account_list():
    fake = FakeQuery({"Account": ACCOUNTS})
    qbo = adapter(fake)
    categories = {r.remote_id: r for r in qbo.fetch_list(session(), ListType.CATEGORIES, since=None).records}
    banks = {r.remote_id: r for r in qbo.fetch_list(session(), ListType.BANK_ACCOUNTS, since=None).records}
    assert set(categories) == {"4", "20", "40", "42", "26"}
    assert set(banks) == {"1", "3"}
    expenses = categories["20"]
    assert expenses.code == "20"  # the Id: what lines, items and defaults refer to
    assert expenses.name == "Overheads:General Expenses"
    assert expenses.account_type == "Expense"
    assert expenses.default_tax_code == "1"
    assert expenses.usable_for == [ItemType.COST, ItemType.EXPENSE_CLAIM]
    assert expenses.raw["AcctNum"] == "429"
    assert expenses.remote_updated_at == datetime(2026, 10, 5, 17, 0, tzinfo=UTC)
    assert categories["4"].usable_for == [ItemType.SALES]
    assert categories["40"].usable_for == [ItemType.COST]
    assert categories["42"].usable_for == []
    assert categories["26"].status == RecordStatus.ARCHIVED
    assert (banks["1"].bank_account_type, banks["1"].account_number, banks["1"].currency) == (
        "Bank",
        "090",
        "GBP",
    )
    assert banks["3"].bank_account_type == "Credit Card"


def test_lists_page_with_startposition_until_a_short_page():
    vendors = [
        {"Id": str(i), "DisplayName": f"Vendor {i}", "Active": True, "MetaData": meta()} for i in range(1, 6)
    ]
    customers = [{"Id": "1", "DisplayName": "Customer 1", "Active": False, "MetaData": meta()}]
    fake = FakeQuery({"Vendor": vendors, "Customer": customers})
    fetch = adapter(fake, page_size=2).fetch_list(session(), ListType.CONTACTS, since=None)
    assert len(fetch.records) == 6
    assert fetch.complete
    assert fetch.calls == 4  # vendors 1-2, 3-4, 5 (short: the end); customers 1 (short)
    statements = fake.statements()
    assert [s.split("STARTPOSITION ")[1] for s in statements] == [
        "1 MAXRESULTS 2",
        "3 MAXRESULTS 2",
        "5 MAXRESULTS 2",
        "1 MAXRESULTS 2",
    ]
    assert all("WHERE Active IN (true,false)" in s for s in statements)
    assert all(r.url.params["minorversion"] == "75" for r in fake.requests)
    assert len({r.id for r in fetch.records}) == 6  # vendor 1 and customer 1 are different contacts


def test_an_incremental_fetch_filters_on_last_updated_time_inclusively():
    fake = FakeQuery({"Item": [{"Id": "1", "Name": "Paper", "Active": True, "MetaData": meta()}]})
    qbo = adapter(fake)
    full = qbo.fetch_list(session(), ListType.ITEMS, since=None)
    # The next fetch starts a little before this one began, by the ledger's own clock.
    assert full.high_water == "2026-11-02T00:55:00-08:00"
    delta = qbo.fetch_list(session(), ListType.ITEMS, since=full.high_water)
    assert not delta.complete
    assert "MetaData.LastUpdatedTime >= '2026-11-02T00:55:00-08:00'" in fake.statements()[-1]
    assert delta.high_water == "2026-11-02T00:55:00-08:00"


def test_tax_rates_ignore_since_and_read_percentages_from_tax_rates():
    tax_rates = [
        {"Id": "1", "Name": "20.0% S (sales)", "RateValue": 20},
        {"Id": "2", "Name": "20.0% S (purchases)", "RateValue": 20},
        {"Id": "3", "Name": "Zero (sales)", "RateValue": 0},
    ]
    details = {"TaxRateDetail": [{"TaxRateRef": {"value": "2"}}]}
    tax_codes = [
        {
            "Id": "1",
            "Name": "20.0% S",
            "Active": True,
            "SalesTaxRateList": {"TaxRateDetail": [{"TaxRateRef": {"value": "1"}}]},
            "PurchaseTaxRateList": details,
        },
        {
            "Id": "3",
            "Name": "0.0% Z",
            "Active": False,
            "SalesTaxRateList": {"TaxRateDetail": [{"TaxRateRef": {"value": "3"}}]},
        },
    ]
    fake = FakeQuery({"TaxRate": tax_rates, "TaxCode": tax_codes})
    fetch = adapter(fake).fetch_list(session(), ListType.TAX_RATES, since="2026-10-01T00:00:00Z")
    assert fetch.complete and fetch.high_water is None
    assert not any("LastUpdatedTime" in s for s in fake.statements())
    standard, zero = fetch.records
    assert (standard.code, standard.name, standard.rate) == ("1", "20.0% S", 20.0)
    assert standard.applies_to == [ItemType.COST, ItemType.EXPENSE_CLAIM, ItemType.SALES]
    assert (zero.rate, zero.applies_to, zero.status) == (0.0, [ItemType.SALES], RecordStatus.ARCHIVED)


def test_contacts_items_and_projects_map_every_field():
    fake = FakeQuery(
        {
            "Vendor": [
                {
                    "Id": "56",
                    "DisplayName": "Office Supplies Co (Supplier)",
                    "CompanyName": "Office Supplies Co",
                    "AcctNum": "SUP-56",
                    "PrimaryEmailAddr": {"Address": "ap@office.test"},
                    "CurrencyRef": {"value": "GBP"},
                    "Active": True,
                    "MetaData": meta(),
                }
            ],
            "Customer": [
                {
                    "Id": "56",
                    "DisplayName": "Office Supplies Co",
                    "DefaultTaxCodeRef": {"value": "1"},
                    "Active": True,
                    "MetaData": meta(),
                }
            ],
            "Item": [
                {
                    "Id": "5",
                    "Name": "Paper",
                    "Sku": "PAP-1",
                    "Type": "NonInventory",
                    "ExpenseAccountRef": {"value": "20"},
                    "PurchaseTaxCodeRef": {"value": "1"},
                    "PurchaseCost": 4.5,
                    "IncomeAccountRef": {"value": "4"},
                    "SalesTaxCodeRef": {"value": "1"},
                    "UnitPrice": 9,
                    "Active": True,
                    "MetaData": meta(),
                }
            ],
            "Class": [{"Id": "3", "Name": "Administration", "Active": True, "MetaData": meta()}],
            "Department": [{"Id": "2", "Name": "South", "Active": False, "MetaData": meta()}],
        }
    )
    qbo = adapter(fake)
    vendor, customer = qbo.fetch_list(session(), ListType.CONTACTS, since=None).records
    assert (vendor.remote_id, vendor.is_supplier, vendor.is_customer) == ("vendor:56", True, False)
    assert (vendor.code, vendor.email, vendor.currency) == ("SUP-56", "ap@office.test", "GBP")
    assert (customer.remote_id, customer.is_customer, customer.default_tax_code) == ("customer:56", True, "1")
    (item,) = qbo.fetch_list(session(), ListType.ITEMS, since=None).records
    assert (item.code, item.purchase_category_code, item.purchase_tax_code, item.purchase_price) == (
        "PAP-1",
        "20",
        "1",
        4.5,
    )
    assert (item.sales_category_code, item.sales_tax_code, item.sales_price) == ("4", "1", 9.0)
    klass, department = qbo.fetch_list(session(), ListType.PROJECTS, since=None).records
    assert (klass.remote_id, klass.dimension, klass.dimension_name, klass.dimension_remote_id) == (
        "class:3",
        1,
        "Class",
        "Class",
    )
    assert (department.remote_id, department.dimension, department.dimension_name) == (
        "department:2",
        2,
        "Store",  # the company's own word for Departments, from its preferences
    )
    assert department.status == RecordStatus.ARCHIVED


# --- publishing ---------------------------------------------------------------------------------------


class FakeWrites:
    """Answers creates with the posted object plus an Id; records every request."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]] | None = None):
        self.requests: list[httpx.Request] = []
        self.query = FakeQuery(rows or {})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.rsplit("/", 1)[-1]
        if path == "query":
            return self.query(request)
        if path == "upload":
            return httpx.Response(
                200, json={"AttachableResponse": [{"Attachable": {"Id": "700"}}], "time": SERVER_TIME}
            )
        entity = {"bill": "Bill", "invoice": "Invoice", "purchase": "Purchase", "vendor": "Vendor"}[path]
        body = json.loads(request.content)
        return httpx.Response(200, json={entity: {**body, "Id": "145"}, "time": SERVER_TIME})

    def posted(self, path: str) -> list[tuple[dict[str, Any], httpx.Request]]:
        return [
            (json.loads(r.content), r)
            for r in self.requests
            if r.method == "POST" and r.url.path.endswith(f"/{path}")
        ]


def test_a_bill_carries_lines_tracking_and_the_requestid():
    fake = FakeWrites()
    result = adapter(fake).publish(session(), plan())
    assert result.remote_id == "145"
    assert result.url == "https://app.qbo.intuit.com/app/bill?txnId=145"
    ((body, request),) = fake.posted("bill")
    assert request.url.params["requestid"] == KEY
    assert request.url.params["minorversion"] == "75"
    assert body["VendorRef"] == {"value": "56"}
    assert (body["TxnDate"], body["DueDate"], body["DocNumber"]) == (
        "2026-11-02",
        "2026-12-02",
        "SUP-INV-881",
    )
    assert body["GlobalTaxCalculation"] == "TaxExcluded"
    assert body["DepartmentRef"] == {"value": "2"}  # a location tags the whole bill
    (line,) = body["Line"]
    assert line["DetailType"] == "AccountBasedExpenseLineDetail"
    assert line["Amount"] == 100.0
    assert line["AccountBasedExpenseLineDetail"] == {
        "AccountRef": {"value": "20"},
        "BillableStatus": "NotBillable",
        "ClassRef": {"value": "3"},
        "TaxCodeRef": {"value": "1"},
    }


def test_a_long_reference_is_shortened_with_a_warning():
    fake = FakeWrites()
    result = adapter(fake).publish(session(), plan(reference="INV-2026-000000123456789"))
    ((body, _),) = fake.posted("bill")
    assert body["DocNumber"] == "INV-2026-000000123456"
    assert "INV-2026-000000123456789" in body["PrivateNote"]
    assert result.warnings


def test_two_locations_on_one_bill_are_refused_before_sending():
    fake = FakeWrites()
    first = plan().lines[0]
    second = first.model_copy(
        update={"project_2": ref("department:1", "North", dimension_remote_id="Department")}
    )
    with pytest.raises(Rejected):
        adapter(fake).publish(session(), plan(lines=[first, second]))
    assert fake.requests == []


def test_an_unknown_destination_is_refused_clearly():
    with pytest.raises(Rejected) as refused:
        adapter(FakeWrites()).publish(session(), plan(destination="spend_money"))
    assert "bill, expense" in refused.value.message


def test_a_sales_invoice_line_without_a_product_takes_the_item_selling_into_its_category():
    items = [
        {
            "Id": "7",
            "Name": "Consulting",
            "Type": "Service",
            "IncomeAccountRef": {"value": "4"},
            "Active": True,
        }
    ]
    fake = FakeWrites({"Item": items})
    line = (
        plan()
        .lines[0]
        .model_copy(update={"category": ref("4", "Sales", code="4"), "quantity": 3.0, "project_2": None})
    )
    result = adapter(fake).publish(
        session(),
        plan(
            item_type=ItemType.SALES,
            destination="sales_invoice",
            contact=ref("customer:12", "Acme"),
            lines=[line],
        ),
    )
    ((body, request),) = fake.posted("invoice")
    assert request.url.params["requestid"] == KEY
    assert body["CustomerRef"] == {"value": "12"}
    (sent,) = body["Line"]
    detail = sent["SalesItemLineDetail"]
    assert detail["ItemRef"] == {"value": "7"}
    assert detail["Qty"] == 3.0
    assert abs(detail["Qty"] * detail["UnitPrice"] - sent["Amount"]) < 0.005
    assert any("Consulting" in w for w in result.warnings)


def test_a_sales_invoice_line_with_no_product_to_use_is_refused():
    line = plan().lines[0].model_copy(update={"category": ref("4", "Sales", code="4"), "project_2": None})
    with pytest.raises(Rejected) as refused:
        adapter(FakeWrites({"Item": []})).publish(
            session(),
            plan(
                item_type=ItemType.SALES,
                destination="sales_invoice",
                contact=ref("customer:12"),
                lines=[line],
            ),
        )
    assert refused.value.field_errors[0].field == "lines[0].product"


def test_a_bill_for_a_contact_known_only_as_a_customer_goes_to_the_supplier_record():
    vendors = [{"Id": "88", "DisplayName": "Acme Ltd (Supplier)", "Active": True, "MetaData": meta()}]
    fake = FakeWrites({"Vendor": vendors})
    result = adapter(fake).publish(session(), plan(contact=ref("customer:12", "Acme Limited")))
    ((body, _),) = fake.posted("bill")
    assert body["VendorRef"] == {"value": "88"}
    assert result.warnings
    assert "DisplayName LIKE 'Acme%'" in fake.query.statements()[0]


# --- contacts ------------------------------------------------------------------------------------------


def test_ensure_contact_creates_once_and_suffixes_a_name_another_kind_uses():
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path.endswith("/query"):
            return httpx.Response(200, json={"QueryResponse": {}, "time": SERVER_TIME})
        body = json.loads(request.content)
        if body["DisplayName"] == "Jo Bloggs":  # an employee already has the plain name
            return httpx.Response(
                400, json=fault("6240", "Duplicate Name Exists Error", "The name supplied already exists.")
            )
        return httpx.Response(200, json={"Vendor": {**body, "Id": "90", "Active": True}, "time": SERVER_TIME})

    record = adapter(handler).ensure_contact(session(), "Jo  Bloggs", customer=False, key=KEY)
    assert (record.remote_id, record.name, record.is_supplier) == ("vendor:90", "Jo Bloggs (Supplier)", True)
    creates = [r for r in requests if r.method == "POST"]
    assert [json.loads(r.content)["DisplayName"] for r in creates] == ["Jo Bloggs", "Jo Bloggs (Supplier)"]
    request_ids = [r.url.params["requestid"] for r in creates]
    assert len(set(request_ids)) == 2 and all(len(i) <= 50 and i.startswith(KEY) for i in request_ids)


def test_ensure_contact_finds_an_existing_customer_by_meaning_not_spelling():
    customers = [{"Id": "12", "DisplayName": "ACME, Ltd.", "Active": True, "MetaData": meta()}]
    fake = FakeWrites({"Customer": customers})
    record = adapter(fake).ensure_contact(session(), "Acme Limited", customer=True, key=KEY)
    assert record.remote_id == "customer:12"
    assert fake.posted("customer") == []


# --- attachments ---------------------------------------------------------------------------------------


def test_the_document_is_uploaded_as_multipart_linked_to_the_bill():
    fake = FakeWrites()
    attachment_id = adapter(fake).attach(
        session(),
        plan(),
        PublishResult(remote_id="145"),
        Attachment('receipt "May".pdf', "application/pdf", b"%PDF-1.4 bytes"),
    )
    assert attachment_id == "700"
    (request,) = fake.requests
    assert request.url.path == f"/v3/company/{REALM}/upload"
    assert request.url.params["requestid"] == f"{KEY}-doc"
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    content = request.content
    assert b'name="file_metadata_01"' in content and b'name="file_content_01"' in content
    assert b"%PDF-1.4 bytes" in content
    metadata = json.loads(content.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0])
    assert metadata["AttachableRef"] == [{"EntityRef": {"type": "Bill", "value": "145"}}]
    assert metadata["FileName"] == "receipt _May_.pdf"


def test_a_document_quickbooks_cannot_take_is_refused_before_any_call():
    fake = FakeWrites()
    qbo = adapter(fake)
    with pytest.raises(Rejected):
        qbo.attach(
            session(), plan(), PublishResult(remote_id="145"), Attachment("a.heic", "image/heic", b"x")
        )
    too_big = Attachment("big.pdf", "application/pdf", b"x" * (qbo.capabilities.attachments.max_bytes + 1))
    with pytest.raises(Rejected):
        qbo.attach(session(), plan(), PublishResult(remote_id="145"), too_big)
    assert fake.requests == []


# --- batch publishing -------------------------------------------------------------------------------


class FakeBatch(FakeWrites):
    """``/batch`` answering each item with its entity and an Id, or a Fault for bIds in ``faults``."""

    def __init__(
        self, rows: dict[str, list[dict[str, Any]]] | None = None, faults: frozenset[str] = frozenset()
    ):
        super().__init__(rows)
        self.faults = faults

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/batch"):
            return super().__call__(request)
        self.requests.append(request)
        answers = []
        for item in json.loads(request.content)["BatchItemRequest"]:
            if item["bId"] in self.faults:
                answers.append(
                    {"bId": item["bId"], **fault("2500", "Invalid Reference Id", "Account 99 is gone")}
                )
                continue
            entity = next(k for k in item if k not in {"bId", "operation"})
            answers.append({"bId": item["bId"], entity: {**item[entity], "Id": f"9{item['bId']}"}})
        return httpx.Response(200, json={"BatchItemResponse": answers, "time": SERVER_TIME})


def keyed(n: int, **overrides: Any) -> PublishPlan:
    return plan(item_id=f"item-{n}", idempotency_key=f"{n:032x}", **overrides)


def test_a_batch_sends_one_item_per_plan_and_answers_each_in_order():
    fake = FakeBatch(faults=frozenset({"2"}))
    plans = [keyed(1), keyed(2), keyed(3)]
    results = adapter(fake).publish_batch(session(), plans)

    ((body, request),) = fake.posted("batch")
    requestid = request.url.params["requestid"]
    assert len(requestid) <= 36
    items = body["BatchItemRequest"]
    assert [item["bId"] for item in items] == ["1", "2", "3"]
    assert all(len(item["bId"]) <= 10 and item["operation"] == "create" for item in items)
    assert [item["Bill"]["PrivateNote"] for item in items] == [
        f"Published by ledgerlink (item item-{n}, key {n:032x})" for n in (1, 2, 3)
    ]
    assert items[0]["Bill"]["VendorRef"] == {"value": "56"}
    assert isinstance(results[0], PublishResult) and results[0].remote_id == "91"
    assert isinstance(results[1], Rejected) and "Account 99 is gone" in results[1].message
    assert isinstance(results[2], PublishResult) and results[2].url.endswith("bill?txnId=93")


def test_the_batch_requestid_is_short_and_the_same_for_the_same_plans():
    first, second = FakeBatch(), FakeBatch()
    adapter(first).publish_batch(session(), [keyed(1), keyed(2)])
    adapter(second).publish_batch(session(), [keyed(1), keyed(2)])
    other = FakeBatch()
    adapter(other).publish_batch(session(), [keyed(2), keyed(1)])
    ids = [fake.posted("batch")[0][1].url.params["requestid"] for fake in (first, second, other)]
    assert ids[0] == ids[1] != ids[2]
    assert all(len(i) <= 36 for i in ids)


def test_a_batch_is_cut_at_the_declared_batch_size():
    fake = FakeBatch()
    results = adapter(fake).publish_batch(session(), [keyed(n) for n in range(1, 13)])
    sent = [len(body["BatchItemRequest"]) for body, _ in fake.posted("batch")]
    assert sent == [QuickBooksAdapter.capabilities.batch_size, 2]
    assert all(isinstance(r, PublishResult) for r in results)


def test_a_plan_refused_before_sending_keeps_its_place_and_the_rest_go_in_one_batch():
    fake = FakeBatch()
    results = adapter(fake).publish_batch(
        session(), [keyed(1), keyed(2, destination="spend_money"), keyed(3)]
    )
    assert isinstance(results[1], Rejected)
    ((body, _),) = fake.posted("batch")
    assert len(body["BatchItemRequest"]) == 2
    assert [r.remote_id for r in (results[0], results[2]) if isinstance(r, PublishResult)] == ["91", "92"]


def test_a_batch_of_one_is_the_same_request_as_a_single_publish():
    fake = FakeBatch()
    (result,) = adapter(fake).publish_batch(session(), [plan()])
    assert fake.posted("batch") == []
    ((_, request),) = fake.posted("bill")
    assert request.url.params["requestid"] == KEY
    assert isinstance(result, PublishResult)


def test_a_batch_answer_missing_an_item_is_a_transient_failure():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"BatchItemResponse": [{"bId": "1", "Bill": {"Id": "1"}}]})

    with pytest.raises(Unavailable):
        adapter(handler).publish_batch(session(), [keyed(1), keyed(2)])


def test_a_plan_that_may_exist_is_looked_up_by_its_key_and_not_sent_again():
    landed = {
        "Id": "145",
        "TxnDate": "2026-11-02",
        "PrivateNote": f"Published by ledgerlink (item item-2, key {2:032x})",
    }
    fake = FakeBatch({"Bill": [landed]})
    results = adapter(fake).publish_batch(
        session(), [keyed(1, may_exist=True), keyed(2, may_exist=True), keyed(3)]
    )
    (statement,) = fake.query.statements()
    assert statement.startswith(
        "SELECT * FROM Bill WHERE TxnDate >= '2026-11-02' AND TxnDate <= '2026-11-02'"
    )
    assert "Active" not in statement  # transactions have no Active flag
    ((body, _),) = fake.posted("batch")
    assert [item["Bill"]["PrivateNote"].split("key ")[1] for item in body["BatchItemRequest"]] == [
        f"{1:032x})",
        f"{3:032x})",
    ]
    assert [r.remote_id for r in results if isinstance(r, PublishResult)] == ["91", "145", "92"]
