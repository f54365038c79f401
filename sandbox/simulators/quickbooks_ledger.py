"""QuickBooks Online's ledger model for the simulator: companies, entities, the query language,
change data capture and the business rules of writes.

Records are kept in QBO's own shapes (PascalCase keys, ``Id``/``SyncToken`` as strings, refs as
``{"value", "name"}``) with two native types: ``Decimal`` for amounts and ``datetime`` for the
``MetaData`` stamps. :func:`to_wire` turns them into QBO JSON (numbers, ISO-8601 timestamps with
the server's offset). Dates (``TxnDate``) stay ``YYYY-MM-DD`` strings, which compare correctly.

Every rule failure raises :class:`QboFault`, which carries QBO's numeric code, message and detail
and renders the ``{"Fault": {"Error": [...], "type": ...}, "time": ...}`` body. Codes and messages
follow ``reference/providers.md`` §2.6 (610, 2010, 2020, 2050, 2500, 4000, 4001, 5010, 6000,
6070, 6140, 6240); the wording of the less common ones is plausible rather than confirmed.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sandbox.simulators.harness import truncate_to_millis
from sandbox.simulators.ledger_values import money
from sandbox.simulators.seed import (
    AccountKind,
    SeedOrganisation,
    SystemRole,
    VatKey,
    stable_uuid,
)

if TYPE_CHECKING:
    from sandbox.simulators.quickbooks import QuickBooksSettings

Record = dict[str, Any]

HOME_CURRENCY = {"value": "GBP", "name": "British Pound Sterling"}

# Entities the simulator keeps, by their canonical (JSON) name.
NAME_LIST_ENTITIES = ("Account", "Vendor", "Customer", "Employee", "Item", "Class", "Department", "TaxCode",
                      "TaxRate")
TRANSACTION_ENTITIES = ("Bill", "Purchase", "Invoice")
STORED_ENTITIES = (*NAME_LIST_ENTITIES, *TRANSACTION_ENTITIES, "Attachable")
QUERYABLE_ENTITIES = (*STORED_ENTITIES, "CompanyInfo", "Preferences")
# CDC is not offered for tax entities (or the company singletons) [src docs excerpt].
CDC_ENTITIES = frozenset(STORED_ENTITIES) - {"TaxCode", "TaxRate"}
WRITABLE_ENTITIES = ("Bill", "Purchase", "Invoice", "Vendor", "Customer")
# Lower-case URL segment → canonical name ("taxcode" → "TaxCode").
ENTITY_BY_SEGMENT = {name.lower(): name for name in QUERYABLE_ENTITIES}


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


@dataclass
class QboError:
    code: str
    message: str
    detail: str = ""
    element: str = ""

    def as_dict(self) -> Record:
        return {"Message": self.message, "Detail": self.detail or self.message, "code": self.code,
                "element": self.element}


class QboFault(Exception):
    """A QBO Fault: HTTP ``status`` with ``{"Fault": {"Error": [...], "type": fault_type}}``."""

    def __init__(self, code: str, message: str, detail: str = "", element: str = "", *,
                 fault_type: str = "ValidationFault", status: int = 400) -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.errors = [QboError(code, message, detail, element)]
        self.fault_type = fault_type
        self.status = status

    @property
    def code(self) -> str:
        return self.errors[0].code

    def fault(self) -> Record:
        return {"Error": [e.as_dict() for e in self.errors], "type": self.fault_type}


def required_missing(element: str) -> QboFault:
    return QboFault("2020", "Required param missing, need to supply the required value for the API",
                    f"Required parameter {element} is missing in the request", element)


def invalid_reference(entity_label: str, value: Any, element: str) -> QboFault:
    return QboFault("2500", "Invalid Reference Id",
                    f"Invalid Reference Id : {entity_label} element id {value} not found", element)


def inactive_reference(element: str) -> QboFault:
    return QboFault("610", "Object Not Found",
                    "Object Not Found : Something you're trying to use has been made inactive. Check the fields "
                    "with accounts, customers, items, vendors or employees.", element)


def invalid_value(element: str, detail: str) -> QboFault:
    return QboFault("2010", "Request has invalid or unsupported property", detail, element)


def business_rule(detail: str, element: str = "") -> QboFault:
    return QboFault("6000", "A business validation error has occurred while processing your request",
                    f"Business Validation Error: {detail}", element)


# --------------------------------------------------------------------------------------------
# Wire format
# --------------------------------------------------------------------------------------------


def qbo_timestamp(moment: datetime, zone: tzinfo) -> str:
    """``2026-11-02T01:00:00-08:00``: QBO prints server-local time with its offset, no fraction."""
    return moment.astimezone(zone).replace(microsecond=0).isoformat()


def to_wire(value: Any, zone: tzinfo) -> Any:
    """Native record → QBO JSON: numbers for Decimals, local ISO timestamps, no ``_private`` keys."""
    if isinstance(value, dict):
        return {k: to_wire(v, zone) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list | tuple):
        return [to_wire(v, zone) for v in value]
    if isinstance(value, datetime):
        return qbo_timestamp(value, zone)
    if isinstance(value, Decimal):
        return float(value)
    return value


def parse_qbo_datetime(text: str, zone: tzinfo) -> datetime:
    """An ISO date or date-time; without an offset it is server-local (QBO's reading)."""
    text = text.strip()
    if not text:
        raise ValueError("empty timestamp")
    if "T" not in text and " " not in text:
        return datetime.combine(date.fromisoformat(text), time(), tzinfo=zone)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def blank(value: Any) -> bool:
    """python-quickbooks sends ``""`` (and ``0`` for some numbers) for fields it has no value for."""
    return value is None or (isinstance(value, str) and not value.strip())


def ref_value(raw: Any) -> str | None:
    """The ``value`` of a ``{"value": ..., "name": ...}`` ref (``None`` when absent or blank)."""
    if isinstance(raw, dict) and not blank(raw.get("value")):
        return str(raw["value"]).strip()
    return None


def to_decimal(value: Any, element: str) -> Decimal:
    if isinstance(value, bool) or blank(value):
        raise invalid_value(element, f"{element} must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation as error:
        raise invalid_value(element, f"{element} must be a number, not {value!r}") from error
    if not number.is_finite():
        raise invalid_value(element, f"{element} must be a finite number")
    return number


def parse_txn_date(value: Any, element: str, default: date) -> date:
    if blank(value):
        return default
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError as error:
        raise invalid_value(element, f"Invalid date {value!r}; use YYYY-MM-DD") from error


# --------------------------------------------------------------------------------------------
# Mapping the neutral seed into QBO shapes
# --------------------------------------------------------------------------------------------

# AccountKind → (AccountType, AccountSubType, Classification).
_ACCOUNT_TYPES: dict[AccountKind, tuple[str, str, str]] = {
    AccountKind.BANK: ("Bank", "Checking", "Asset"),
    AccountKind.CREDIT_CARD: ("Credit Card", "CreditCard", "Liability"),
    AccountKind.CURRENT_ASSET: ("Other Current Asset", "OtherCurrentAssets", "Asset"),
    AccountKind.FIXED_ASSET: ("Fixed Asset", "MachineryAndEquipment", "Asset"),
    AccountKind.INVENTORY: ("Other Current Asset", "Inventory", "Asset"),
    AccountKind.PREPAYMENT: ("Other Current Asset", "PrepaidExpenses", "Asset"),
    AccountKind.CURRENT_LIABILITY: ("Other Current Liability", "OtherCurrentLiabilities", "Liability"),
    AccountKind.LONG_TERM_LIABILITY: ("Long Term Liability", "NotesPayable", "Liability"),
    AccountKind.EQUITY: ("Equity", "OwnersEquity", "Equity"),
    AccountKind.REVENUE: ("Income", "SalesOfProductIncome", "Revenue"),
    AccountKind.OTHER_INCOME: ("Other Income", "InterestEarned", "Revenue"),
    AccountKind.DIRECT_COSTS: ("Cost of Goods Sold", "SuppliesMaterialsCogs", "Expense"),
    AccountKind.OVERHEADS: ("Expense", "OtherMiscellaneousServiceCost", "Expense"),
    AccountKind.DEPRECIATION: ("Other Expense", "Depreciation", "Expense"),
}
_SYSTEM_ACCOUNT_TYPES: dict[SystemRole, tuple[str, str]] = {
    SystemRole.RECEIVABLES: ("Accounts Receivable", "AccountsReceivable"),
    SystemRole.PAYABLES: ("Accounts Payable", "AccountsPayable"),
    SystemRole.VAT: ("Other Current Liability", "GlobalTaxPayable"),
    SystemRole.RETAINED_EARNINGS: ("Equity", "RetainedEarnings"),
}
# Accounts a bill or expense line may not post to (QBO keeps them for its own entries).
_NO_LINE_POSTING = frozenset({"Accounts Payable", "Accounts Receivable"})

# UK VAT as QBO's UK edition names it: VatKey → (tax code name, description, taxable).
_TAX_CODES: dict[VatKey, tuple[str, str, bool]] = {
    VatKey.STANDARD: ("20.0% S", "Standard rate 20%", True),
    VatKey.REDUCED: ("5.0% R", "Reduced rate 5%", True),
    VatKey.ZERO: ("0.0% Z", "Zero rated", True),
    VatKey.EXEMPT: ("Exempt", "Exempt from VAT", False),
    VatKey.NO_VAT: ("No VAT", "Outside the scope of VAT", False),
    VatKey.HISTORIC_STANDARD: ("17.5% S", "Standard rate 17.5% (before 2011)", True),
}


def _meta(created: datetime, updated: datetime) -> Record:
    return {"CreateTime": created, "LastUpdatedTime": updated}


@dataclass
class QboCompany:
    """One QuickBooks company (realm) and everything in it."""

    realm_id: str
    name: str
    company_info: Record
    preferences: Record
    # Entity name → Id → record.
    entities: dict[str, dict[str, Record]] = field(default_factory=lambda: {n: {} for n in STORED_ENTITIES})
    # Entity name → Id → the tombstone CDC reports for a deleted object.
    deleted: dict[str, dict[str, Record]] = field(default_factory=lambda: {n: {} for n in STORED_ENTITIES})
    next_ids: dict[str, int] = field(default_factory=dict)
    attachment_content: dict[str, bytes] = field(default_factory=dict)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_seed(cls, seed: SeedOrganisation, realm_id: str, now: datetime) -> QboCompany:
        def ago(minutes: int) -> datetime:
            return truncate_to_millis(now - timedelta(minutes=minutes))

        created = ago(seed.created_minutes_ago)
        year_start_month = seed.financial_year_end_month % 12 + 1
        company = cls(
            realm_id=realm_id,
            name=seed.name,
            company_info={
                "Id": "1", "SyncToken": "0", "domain": "QBO", "sparse": False,
                "CompanyName": seed.name, "LegalName": seed.legal_name,
                "CompanyAddr": {"Id": "1", "Line1": seed.address.line1, "City": seed.address.city,
                                "PostalCode": seed.address.postcode, "Country": "GB"},
                "LegalAddr": {"Id": "1", "Line1": seed.address.line1, "City": seed.address.city,
                              "PostalCode": seed.address.postcode, "Country": "GB"},
                "Country": seed.country_code, "SupportedLanguages": "en",
                "FiscalYearStartMonth": date(2000, year_start_month, 1).strftime("%B"),
                "CompanyStartDate": created.date().isoformat(),
                "Email": {"Address": "admin@example.com"},
                "NameValue": [{"Name": "CompanyType", "Value": "LimitedCompany"},
                              {"Name": "OfferingSku", "Value": "QuickBooks Online Plus"},
                              {"Name": "VATNumber", "Value": seed.vat_number},
                              {"Name": "CompanyNumber", "Value": seed.company_number}],
                "MetaData": _meta(created, created),
            },
            preferences={
                "Id": "1", "SyncToken": "0", "domain": "QBO", "sparse": False,
                "AccountingInfoPrefs": {
                    "TrackDepartments": True, "DepartmentTerminology": "Location",
                    "ClassTrackingPerTxn": False, "ClassTrackingPerTxnLine": True,
                    "CustomerTerminology": "Customers",
                    "BookCloseDate": seed.period_lock_date.isoformat() if seed.period_lock_date else None,
                    "FirstMonthOfFiscalYear": date(2000, year_start_month, 1).strftime("%B"),
                    "TaxYearMonth": date(2000, year_start_month, 1).strftime("%B"),
                },
                "CurrencyPrefs": {"HomeCurrency": {"value": seed.base_currency}, "MultiCurrencyEnabled": False},
                "TaxPrefs": {"UsingSalesTax": True, "PartnerTaxEnabled": True},
                "SalesFormsPrefs": {"CustomTxnNumbers": True, "AllowDeposit": False, "AllowDiscount": True},
                "VendorAndPurchasesPrefs": {"TrackingByCustomer": True, "BillableExpenseTracking": True},
                "OtherPrefs": {"NameValue": [{"Name": "SalesFormsPrefs.DefaultItem", "Value": "1"}]},
                "MetaData": _meta(created, created),
            },
        )
        company._load_tax(seed, created)
        company._load_accounts(seed, ago)
        company._load_names(seed, ago)
        company._load_items(seed, ago)
        company._load_tracking(seed, created)
        return company

    def _store(self, entity: str, record: Record) -> Record:
        self.entities[entity][record["Id"]] = record
        self.next_ids[entity] = max(self.next_ids.get(entity, 1), int(record["Id"]) + 1)
        return record

    def new_id(self, entity: str) -> str:
        next_id = self.next_ids.get(entity, 1)
        self.next_ids[entity] = next_id + 1
        return str(next_id)

    def _load_tax(self, seed: SeedOrganisation, created: datetime) -> None:
        rate_id = 1
        for code_id, rate in enumerate(seed.vat_rates, start=1):
            name, description, taxable = _TAX_CODES[rate.key]
            rate_lists: Record = {}
            for direction, label in (("Sales", "sales"), ("Purchase", "purchases")):
                tax_rate = self._store("TaxRate", {
                    "Id": str(rate_id), "SyncToken": "0", "domain": "QBO", "sparse": False,
                    "Name": f"{name} ({label})", "Description": f"{description} ({label})",
                    "Active": not rate.archived, "RateValue": rate.percent,
                    "AgencyRef": {"value": "1", "name": "HM Revenue & Customs"},
                    "SpecialTaxType": "ZERO_RATE" if rate.percent == 0 else "NONE",
                    "DisplayType": "ReadOnly",
                    "EffectiveTaxRate": [{"RateValue": rate.percent, "EffectiveDate": "2011-01-04"}],
                    "MetaData": _meta(created, created),
                })
                rate_id += 1
                rate_lists[f"{direction}TaxRateList"] = {"TaxRateDetail": [{
                    "TaxRateRef": _ref(tax_rate),
                    "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0}]}
            self._store("TaxCode", {
                "Id": str(code_id), "SyncToken": "0", "domain": "QBO", "sparse": False,
                "Name": name, "Description": description, "Active": not rate.archived, "Hidden": False,
                "Taxable": taxable, "TaxGroup": False, **rate_lists, "MetaData": _meta(created, created),
                "_vat": rate.key.value,
            })

    def tax_code_for(self, vat: VatKey) -> Record:
        return next(c for c in self.entities["TaxCode"].values() if c["_vat"] == vat.value)

    def _load_accounts(self, seed: SeedOrganisation, ago: Callable[[int], datetime]) -> None:
        for index, account in enumerate(seed.accounts, start=1):
            account_type, sub_type, classification = _ACCOUNT_TYPES[account.kind]
            if account.system_role in _SYSTEM_ACCOUNT_TYPES:
                account_type, sub_type = _SYSTEM_ACCOUNT_TYPES[account.system_role]
            if account.kind is AccountKind.BANK and "saving" in account.name.lower():
                sub_type = "Savings"
            updated = ago(account.updated_minutes_ago)
            record: Record = {
                "Id": str(index), "SyncToken": "0", "domain": "QBO", "sparse": False,
                "Name": account.name, "AcctNum": account.code, "FullyQualifiedName": account.name,
                "SubAccount": False, "Description": account.description or None,
                "Active": not account.archived, "Classification": classification,
                "AccountType": account_type, "AccountSubType": sub_type,
                "CurrentBalance": Decimal("0"), "CurrentBalanceWithSubAccounts": Decimal("0"),
                "CurrencyRef": dict(HOME_CURRENCY),
                "MetaData": _meta(updated - timedelta(days=30), updated),
                "_code": account.code,
            }
            if account_type not in {"Bank", "Credit Card"} and account.system_role is None:
                code = self.tax_code_for(account.vat)
                record["TaxCodeRef"] = _ref(code)
            self._store("Account", record)

    def account_by_code(self, code: str) -> Record:
        return next(a for a in self.entities["Account"].values() if a["_code"] == code)

    def _load_names(self, seed: SeedOrganisation, ago: Callable[[int], datetime]) -> None:
        vendor_id = customer_id = 1
        customer_ids: dict[str, str] = {}
        for contact in seed.contacts:
            updated = ago(contact.updated_minutes_ago)
            common: Record = {
                "SyncToken": "0", "domain": "QBO", "sparse": False, "CompanyName": contact.name,
                "GivenName": contact.first_name, "FamilyName": contact.last_name,
                "PrintOnCheckName": contact.name, "Active": not contact.archived,
                "PrimaryEmailAddr": {"Address": contact.email},
                "PrimaryPhone": {"FreeFormNumber": contact.phone},
                "BillAddr": {"Line1": contact.address.line1, "City": contact.address.city,
                             "PostalCode": contact.address.postcode, "Country": contact.address.country},
                "Balance": Decimal("0"), "CurrencyRef": dict(HOME_CURRENCY),
                "MetaData": _meta(updated - timedelta(days=60), updated),
            }
            if contact.is_supplier:
                # DisplayName is unique across vendors, customers and employees, so a business that
                # is both keeps its plain name as the customer and a suffixed one as the vendor.
                display = f"{contact.name} (Supplier)" if contact.is_customer else contact.name
                self._store("Vendor", {
                    "Id": str(vendor_id), **common, "DisplayName": display, "AcctNum": contact.contact_number,
                    "TaxIdentifier": contact.vat_number, "Vendor1099": False,
                })
                vendor_id += 1
            if contact.is_customer:
                customer = self._store("Customer", {
                    "Id": str(customer_id), **common, "DisplayName": contact.name,
                    "FullyQualifiedName": contact.name, "Job": False, "BillWithParent": False,
                    "BalanceWithJobs": Decimal("0"), "Taxable": True, "PreferredDeliveryMethod": "Print",
                    "PrimaryTaxIdentifier": contact.vat_number,
                })
                customer_ids[contact.key] = customer["Id"]
                customer_id += 1
        # Projects are sub-customers flagged as projects (field name UNCONFIRMED: IsProject).
        for project in seed.projects:
            parent = self.entities["Customer"][customer_ids[project.customer_key]]
            stamp = ago(60 * 24 * 20)
            self._store("Customer", {
                "Id": str(customer_id), "SyncToken": "0", "domain": "QBO", "sparse": False,
                "DisplayName": project.name, "CompanyName": parent["CompanyName"],
                "FullyQualifiedName": f"{parent['DisplayName']}:{project.name}", "Job": True,
                "IsProject": True, "ParentRef": _ref(parent, "DisplayName"),
                "Level": 1, "BillWithParent": True, "Active": not project.closed, "Taxable": True,
                "Balance": Decimal("0"), "BalanceWithJobs": Decimal("0"), "CurrencyRef": dict(HOME_CURRENCY),
                "MetaData": _meta(stamp, stamp),
            })
            customer_id += 1
        for index, person in enumerate(seed.people, start=1):
            stamp = ago(60 * 24 * 45)
            self._store("Employee", {
                "Id": str(index), "SyncToken": "0", "domain": "QBO", "sparse": False,
                "DisplayName": f"{person.first_name} {person.last_name}", "GivenName": person.first_name,
                "FamilyName": person.last_name, "PrintOnCheckName": f"{person.first_name} {person.last_name}",
                "PrimaryEmailAddr": {"Address": person.email}, "Active": True, "BillableTime": False,
                "MetaData": _meta(stamp, stamp),
            })

    def _load_items(self, seed: SeedOrganisation, ago: Callable[[int], datetime]) -> None:
        for index, item in enumerate(seed.items, start=1):
            updated = ago(item.updated_minutes_ago)
            record: Record = {
                "Id": str(index), "SyncToken": "0", "domain": "QBO", "sparse": False,
                "Name": item.name[:100], "Sku": item.code, "FullyQualifiedName": item.name[:100],
                "Active": True, "Taxable": True, "TrackQtyOnHand": False,
                # Sold-only items are services (consultancy, fitting days); the rest are goods.
                "Type": "Service" if item.purchase is None else "NonInventory",
                "MetaData": _meta(updated - timedelta(days=10), updated),
            }
            if item.sales is not None:
                record |= {"Description": item.description, "UnitPrice": item.sales.unit_price,
                           "IncomeAccountRef": _ref(self.account_by_code(item.sales.account_code)),
                           "SalesTaxCodeRef": _ref(self.tax_code_for(item.sales.vat))}
            if item.purchase is not None:
                record |= {"PurchaseDesc": item.description, "PurchaseCost": item.purchase.unit_price,
                           "ExpenseAccountRef": _ref(self.account_by_code(item.purchase.account_code)),
                           "PurchaseTaxCodeRef": _ref(self.tax_code_for(item.purchase.vat))}
            self._store("Item", record)

    def _load_tracking(self, seed: SeedOrganisation, created: datetime) -> None:
        # The first tracking dimension becomes Classes, the second Departments (Locations): QBO's
        # two built-in tracking lists. A third would have nowhere to go, as in a real migration.
        for entity, dimension in zip(("Class", "Department"), seed.tracking, strict=False):
            sub_flag = "SubClass" if entity == "Class" else "SubDepartment"
            for index, option in enumerate(dimension.options, start=1):
                self._store(entity, {
                    "Id": str(index), "SyncToken": "0", "domain": "QBO", "sparse": False,
                    "Name": option.name, "FullyQualifiedName": option.name, sub_flag: False,
                    "Active": not (option.archived or dimension.archived),
                    "MetaData": _meta(created, created),
                })

    # -- look-ups --------------------------------------------------------------------------------

    def get(self, entity: str, entity_id: str | None) -> Record | None:
        return self.entities[entity].get(entity_id or "")

    @property
    def home_currency(self) -> str:
        return str(self.preferences["CurrencyPrefs"]["HomeCurrency"]["value"])

    @property
    def book_close_date(self) -> date | None:
        value = self.preferences["AccountingInfoPrefs"].get("BookCloseDate")
        return date.fromisoformat(value) if value else None

    def name_taken(self, display_name: str, *, except_entity: str, except_id: str | None) -> bool:
        """DisplayName is unique (case-insensitively) across vendors, customers and employees,
        inactive ones included."""
        wanted = display_name.strip().lower()
        for entity in ("Vendor", "Customer", "Employee"):
            for record in self.entities[entity].values():
                if entity == except_entity and record["Id"] == except_id:
                    continue
                if str(record.get("DisplayName", "")).lower() == wanted:
                    return True
        return False


# --------------------------------------------------------------------------------------------
# The query language
# --------------------------------------------------------------------------------------------


class QueryProblem(Exception):
    """Raised by the parser; the HTTP layer answers with the matching fault."""

    def __init__(self, fault: QboFault) -> None:
        super().__init__(fault.errors[0].detail)
        self.fault = fault


def _parse_error(detail: str) -> QueryProblem:
    return QueryProblem(QboFault("4000", "Error parsing query", f"QueryParserError: {detail}"))


def _validation_error(detail: str) -> QueryProblem:
    return QueryProblem(QboFault("4001", "Invalid query", f"QueryValidationError: {detail}"))


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<punct>[(),*])
    | (?P<word>[A-Za-z_][\w.]*)
    )""", re.VERBOSE)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def _tokenize(statement: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    text = statement.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            if text[position:].strip() == "":
                break
            raise _parse_error(f'Encountered " {text[position:position + 12]!r} " at column {position + 1}.')
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(kind)))
        position = match.end()
    return tokens


@dataclass(frozen=True)
class Condition:
    path: str
    op: str  # "=", "<", ">", "<=", ">=", "IN", "LIKE"
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Query:
    entity: str
    count: bool
    fields: tuple[str, ...]  # empty: every field
    conditions: tuple[Condition, ...]
    order_by: tuple[tuple[str, bool], ...]  # (path, descending)
    start_position: int
    max_results: int

    @property
    def mentions_active(self) -> bool:
        return any(c.path.lower() == "active" for c in self.conditions)


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise _parse_error("Encountered <EOF>; the statement ends too early.")
        self.index += 1
        return token

    def expect_word(self, *words: str) -> _Token:
        token = self.take()
        if not token.is_word(*words):
            raise _parse_error(f'Encountered " {token.text} " where {" or ".join(words)} was expected.')
        return token

    def next_is_punct(self, char: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "punct" and token.text == char

    def expect_punct(self, char: str) -> None:
        token = self.take()
        if token.kind != "punct" or token.text != char:
            raise _parse_error(f'Encountered " {token.text} " where "{char}" was expected.')

    def literal(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return re.sub(r"\\(.)", r"\1", token.text[1:-1])
        if token.kind == "number":
            return Decimal(token.text)
        if token.is_word("TRUE", "FALSE"):
            return token.text.upper() == "TRUE"
        raise _parse_error(f'Encountered " {token.text} " where a value was expected.')

    def integer(self, keyword: str) -> int:
        token = self.take()
        if token.kind != "number" or "." in token.text:
            raise _parse_error(f'Encountered " {token.text} " after {keyword}; a whole number was expected.')
        return int(token.text)


def parse_query(statement: str, *, default_max: int, max_allowed: int) -> Query:
    """Parse the subset of QBO's query language the simulator serves (see the module docstring of
    :mod:`sandbox.simulators.quickbooks`). Raises :class:`QueryProblem`."""
    parser = _Parser(_tokenize(statement))
    parser.expect_word("SELECT")
    count, fields = _select_list(parser)
    parser.expect_word("FROM")
    entity_token = parser.take()
    entity = ENTITY_BY_SEGMENT.get(entity_token.text.lower()) if entity_token.kind == "word" else None
    if entity is None:
        raise _validation_error(f"Entity {entity_token.text} is not supported or not queryable.")
    conditions = _where(parser)
    order_by = _order_by(parser)
    start, max_results = 1, default_max
    if (token := parser.peek()) is not None and token.is_word("STARTPOSITION"):
        parser.take()
        start = parser.integer("STARTPOSITION")
    if (token := parser.peek()) is not None and token.is_word("MAXRESULTS"):
        parser.take()
        max_results = parser.integer("MAXRESULTS")
    if (token := parser.peek()) is not None:
        raise _parse_error(f'Encountered " {token.text} " after the end of the statement.')
    if start < 1:
        raise _validation_error(f"STARTPOSITION must be 1 or more, not {start}.")
    if max_results > max_allowed:
        raise _validation_error(f"value {max_results} is too large. Max allowed value is {max_allowed}")
    if max_results < 1:
        raise _validation_error("MAXRESULTS must be 1 or more.")
    return Query(entity, count, tuple(fields), tuple(conditions), tuple(order_by), start, max_results)


def _select_list(parser: _Parser) -> tuple[bool, list[str]]:
    """``COUNT(*)``, ``*``, ``*, Sku`` or ``Id, Name``: (is a count, named fields)."""
    first = parser.take()
    if first.is_word("COUNT"):
        parser.expect_punct("(")
        parser.expect_punct("*")
        parser.expect_punct(")")
        return True, []
    if not ((first.kind == "punct" and first.text == "*") or first.kind == "word"):
        raise _parse_error(f'Encountered " {first.text} " after SELECT.')
    fields = [first.text]
    while parser.next_is_punct(","):
        parser.take()
        name = parser.take()
        if name.kind != "word":
            raise _parse_error(f'Encountered " {name.text} " in the select list.')
        fields.append(name.text)
    return False, [] if fields == ["*"] else fields


def _where(parser: _Parser) -> list[Condition]:
    conditions: list[Condition] = []
    token = parser.peek()
    if token is None or not token.is_word("WHERE"):
        return conditions
    parser.take()
    while True:
        conditions.append(_condition(parser))
        token = parser.peek()
        if token is not None and token.is_word("AND"):
            parser.take()
            continue
        if token is not None and token.is_word("OR"):
            raise _parse_error("OR is not supported; only AND may join conditions.")
        return conditions


def _order_by(parser: _Parser) -> list[tuple[str, bool]]:
    """``ORDER BY`` (or QBO's own ``ORDERBY``, which python-quickbooks writes) ``f [ASC|DESC], ...``."""
    order_by: list[tuple[str, bool]] = []
    token = parser.peek()
    if token is None or not token.is_word("ORDER", "ORDERBY"):
        return order_by
    parser.take()
    if token.is_word("ORDER"):
        parser.expect_word("BY")
    while True:
        name = parser.take()
        if name.kind != "word":
            raise _parse_error(f'Encountered " {name.text} " after ORDER BY.')
        descending = False
        if (direction := parser.peek()) is not None and direction.is_word("ASC", "DESC"):
            descending = parser.take().text.upper() == "DESC"
        order_by.append((name.text, descending))
        if not parser.next_is_punct(","):
            return order_by
        parser.take()


def _condition(parser: _Parser) -> Condition:
    name = parser.take()
    if name.kind != "word":
        raise _parse_error(f'Encountered " {name.text} " where a property name was expected.')
    operator = parser.take()
    if operator.is_word("IN"):
        parser.expect_punct("(")
        values = [parser.literal()]
        while parser.next_is_punct(","):
            parser.take()
            values.append(parser.literal())
        parser.expect_punct(")")
        return Condition(name.text, "IN", tuple(values))
    if operator.is_word("LIKE"):
        value = parser.literal()
        if not isinstance(value, str):
            raise _parse_error("LIKE needs a quoted pattern.")
        return Condition(name.text, "LIKE", (value,))
    if operator.kind == "op" and operator.text in {"=", "<", ">", "<=", ">="}:
        return Condition(name.text, operator.text, (parser.literal(),))
    raise _parse_error(f'Encountered " {operator.text} " where an operator (=, <, >, <=, >=, IN, LIKE) '
                       "was expected.")


def resolve_path(record: Record, path: str) -> tuple[bool, Any]:
    """``(found, value)`` for ``MetaData.LastUpdatedTime``-style paths, case-insensitively."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return False, None
        key = next((k for k in value if k.lower() == part.lower() and not k.startswith("_")), None)
        if key is None:
            return False, None
        value = value[key]
    if isinstance(value, dict) and "value" in value:
        value = value["value"]  # `VendorRef = '56'` compares the ref's value
    return True, value


def _comparable(left: Any, right: Any, zone: tzinfo) -> tuple[Any, Any]:
    if isinstance(left, datetime):
        if isinstance(right, str):
            try:
                right = parse_qbo_datetime(right, zone)
            except ValueError as error:
                raise _validation_error(f"cannot read {right!r} as a date-time") from error
        return left, right
    if isinstance(right, Decimal) or (isinstance(left, int | float | Decimal) and not isinstance(left, bool)):
        try:
            return Decimal(str(left)), Decimal(str(right))
        except InvalidOperation:
            return str(left).lower(), str(right).lower()
    if isinstance(left, bool) or isinstance(right, bool):
        if isinstance(right, str):
            right = right.lower() == "true"
        return left, right
    if isinstance(left, str) and isinstance(right, str):
        if left.isdigit() and right.isdigit():  # Ids are numeric strings
            return int(left), int(right)
        return left.lower(), right.lower()
    return left, right


def _matches(record: Record, condition: Condition, zone: tzinfo) -> bool:
    found, value = resolve_path(record, condition.path)
    if not found or value is None:
        return False
    if condition.op == "LIKE":
        pattern = "^" + ".*".join(re.escape(part) for part in str(condition.values[0]).split("%")) + "$"
        return re.match(pattern, str(value), re.IGNORECASE | re.DOTALL) is not None
    if condition.op == "IN":
        return any(left == right for left, right in (_comparable(value, v, zone) for v in condition.values))
    left, right = _comparable(value, condition.values[0], zone)
    try:
        return bool({"=": left == right, "<": left < right, ">": left > right, "<=": left <= right,
                     ">=": left >= right}[condition.op])
    except TypeError:
        return False


def _known_properties(records: Iterable[Record]) -> set[str]:
    known: set[str] = {"id", "metadata", "synctoken"}
    for record in records:
        known |= {key.lower() for key in record if not key.startswith("_")}
    return known


def run_query(query: Query, rows: list[Record], zone: tzinfo, *, name_list: bool) -> tuple[list[Record], int]:
    """Filter, order and page ``rows``; returns ``(page, total matching)``."""
    known = _known_properties(rows)
    for path in [c.path for c in query.conditions] + [p for p, _ in query.order_by]:
        if rows and path.split(".")[0].lower() not in known:
            raise _validation_error(f"property '{path}' is not queryable on {query.entity}")
    matching = [r for r in rows if all(_matches(r, c, zone) for c in query.conditions)]
    if name_list and not query.mentions_active:
        # Inactive names are left out unless the query asks about Active (e.g. IN (true,false)).
        matching = [r for r in matching if r.get("Active", True)]
    matching.sort(key=lambda r: int(r["Id"]) if str(r["Id"]).isdigit() else 0)
    for path, descending in reversed(query.order_by):
        def key(record: Record, path: str = path) -> tuple[int, Any]:
            _, value = resolve_path(record, path)
            if isinstance(value, str):
                value = int(value) if value.isdigit() else value.lower()
            return (value is not None, value if value is not None else 0)

        matching.sort(key=key, reverse=descending)
    start = query.start_position - 1
    return matching[start:start + query.max_results], len(matching)


def project_fields(record: Record, fields: tuple[str, ...]) -> Record:
    """``SELECT Id, Name FROM ...``: the named fields (``*, Sku``: everything)."""
    if not fields or "*" in fields:
        return record
    wanted = {f.lower() for f in fields} | {"id"}
    return {k: v for k, v in record.items() if k.lower() in wanted or k == "domain"}


# --------------------------------------------------------------------------------------------
# Writes
# --------------------------------------------------------------------------------------------


@dataclass
class WriteContext:
    company: QboCompany
    settings: QuickBooksSettings
    now: datetime
    today: date
    # (entity, Id) created earlier in the same batch: QBO cannot see them yet [src Intuit blog].
    unseen: set[tuple[str, str]] = field(default_factory=set)


_ENTITY_LABELS = {"Account": "Accounts", "Vendor": "Names", "Customer": "Names", "Employee": "Names",
                  "Item": "Item", "TaxCode": "TaxCode", "Class": "Class", "Department": "Department"}


def _lookup(ctx: WriteContext, entity: str, raw_ref: Any, element: str, *, required: bool = False,
            must_be_active: bool = True) -> Record | None:
    """Resolve a ref; unknown → 2500, inactive → 610, missing and required → 2020."""
    value = ref_value(raw_ref)
    if value is None:
        if required:
            raise required_missing(element)
        return None
    record = ctx.company.get(entity, value)
    if record is None or (entity, value) in ctx.unseen:
        raise invalid_reference(_ENTITY_LABELS.get(entity, entity), value, element)
    if must_be_active and not record.get("Active", True):
        raise inactive_reference(element)
    return record


def _ref(record: Record, name_field: str = "Name") -> Record:
    return {"value": record["Id"], "name": record.get(name_field) or record.get("DisplayName")}


def _tax_rate_percent(ctx: WriteContext, tax_code: Record, direction: str) -> Decimal:
    details = (tax_code.get(f"{direction}TaxRateList") or {}).get("TaxRateDetail") or []
    total = Decimal("0")
    for detail in details:
        rate = ctx.company.get("TaxRate", ref_value(detail.get("TaxRateRef")))
        total += Decimal(str(rate["RateValue"])) if rate else Decimal("0")
    return total


@dataclass
class _Totals:
    net: Decimal = Decimal("0")
    tax: Decimal = Decimal("0")
    # TaxRate Id → (percent, net, tax), for TxnTaxDetail.
    by_rate: dict[str, list[Decimal]] = field(default_factory=dict)

    def add(self, rate_id: str | None, percent: Decimal, net: Decimal, tax: Decimal) -> None:
        self.net += net
        self.tax += tax
        if rate_id is not None:
            bucket = self.by_rate.setdefault(rate_id, [percent, Decimal("0"), Decimal("0")])
            bucket[1] += net
            bucket[2] += tax

    def tax_detail(self) -> Record:
        return {"TotalTax": money(self.tax), "TaxLine": [
            {"Amount": money(tax), "DetailType": "TaxLineDetail",
             "TaxLineDetail": {"TaxRateRef": {"value": rate_id}, "PercentBased": True, "TaxPercent": percent,
                               "NetAmountTaxable": money(net)}}
            for rate_id, (percent, net, tax) in self.by_rate.items()]}


_GLOBAL_TAX = ("TaxExcluded", "TaxInclusive", "NotApplicable")


def _line_tax(ctx: WriteContext, detail: Record, amount: Decimal, *, mode: str,
              direction: str) -> tuple[Record | None, Decimal, Decimal, str | None, Decimal]:
    """(tax code, net, tax, first TaxRate Id, percent) for one line under ``GlobalTaxCalculation``.

    Under TaxInclusive the reference leaves open whether ``Amount`` is net or gross, so both are
    accepted: with a non-zero ``TaxInclusiveAmt`` the Amount is net, without it the Amount is gross.
    """
    tax_code = _lookup(ctx, "TaxCode", detail.get("TaxCodeRef"), "Line.TaxCodeRef")
    if tax_code is None:
        if mode != "NotApplicable" and ctx.company.preferences["TaxPrefs"]["UsingSalesTax"]:
            raise business_rule("Make sure all your transactions have a VAT rate before you save.",
                                "Line.TaxCodeRef")
        return None, amount, Decimal("0"), None, Decimal("0")
    rate_details = (tax_code.get(f"{direction}TaxRateList") or {}).get("TaxRateDetail")
    if not rate_details:
        use = "sales" if direction == "Sales" else "purchases"
        raise business_rule(f"The VAT rate {tax_code['Name']} can't be used for {use}.", "Line.TaxCodeRef")
    percent = _tax_rate_percent(ctx, tax_code, direction)
    rate_id = ref_value(rate_details[0]["TaxRateRef"])
    if mode == "NotApplicable":
        return tax_code, amount, Decimal("0"), rate_id, percent
    if mode == "TaxInclusive":
        inclusive = detail.get("TaxInclusiveAmt")
        if blank(inclusive) or to_decimal(inclusive, "Line.TaxInclusiveAmt") == 0:
            net = money(amount * 100 / (100 + percent))
            return tax_code, net, amount - net, rate_id, percent
        return tax_code, amount, to_decimal(inclusive, "Line.TaxInclusiveAmt") - amount, rate_id, percent
    return tax_code, amount, money(amount * percent / 100), rate_id, percent


def _account_line(ctx: WriteContext, detail: Record) -> Record:
    account = _lookup(ctx, "Account", detail.get("AccountRef"), "Line.AccountRef", required=True)
    assert account is not None
    if account["AccountType"] in _NO_LINE_POSTING:
        raise business_rule(f"You can't use {account['AccountType']} on an expense line.", "Line.AccountRef")
    billable = detail.get("BillableStatus")
    if not blank(billable) and billable not in {"Billable", "NotBillable", "HasBeenBilled"}:
        raise invalid_value("Line.BillableStatus", f"BillableStatus {billable} is not valid")
    return {"AccountRef": _ref(account), "BillableStatus": billable or "NotBillable"}


def _item_line(ctx: WriteContext, detail: Record, amount: Decimal, *, sales: bool) -> Record:
    out: Record = {}
    item = _lookup(ctx, "Item", detail.get("ItemRef"), "Line.ItemRef",
                   required=not sales or ctx.settings.invoice_line_item_required)
    if item is not None:
        needed = "IncomeAccountRef" if sales else "ExpenseAccountRef"
        if item.get(needed) is None:
            raise business_rule(f"The item {item['Name']} can't be {'sold' if sales else 'bought'}: it has no "
                                f"{'income' if sales else 'expense'} account.", "Line.ItemRef")
        out["ItemRef"] = _ref(item)
    quantity, unit_price = detail.get("Qty"), detail.get("UnitPrice")
    if not blank(quantity) and not blank(unit_price):
        qty = to_decimal(quantity, "Line.Qty")
        price = to_decimal(unit_price, "Line.UnitPrice")
        if abs(money(qty * price) - amount) > Decimal("0.005"):
            raise QboFault("6070", "Amount calculation incorrect in the request",
                           f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}", "Line.Amount")
        out |= {"Qty": qty, "UnitPrice": price}
    return out


def _tracking(ctx: WriteContext, detail: Record, *, sales: bool) -> Record:
    out: Record = {}
    klass = _lookup(ctx, "Class", detail.get("ClassRef"), "Line.ClassRef")
    if klass is not None:
        out["ClassRef"] = _ref(klass)
    if not sales:  # expense lines name the customer (or project) the cost is for
        customer = _lookup(ctx, "Customer", detail.get("CustomerRef"), "Line.CustomerRef")
        if customer is not None:
            out["CustomerRef"] = _ref(customer, "DisplayName")
    return out


def _build_lines(ctx: WriteContext, raw_lines: Any, mode: str, *, sales: bool) -> tuple[list[Record], _Totals]:
    if not isinstance(raw_lines, list) or not raw_lines:
        raise required_missing("Line")
    allowed = ({"SalesItemLineDetail", "SubTotalLineDetail", "DescriptionOnly"} if sales else
               {"AccountBasedExpenseLineDetail", "ItemBasedExpenseLineDetail"})
    direction = "Sales" if sales else "Purchase"
    totals = _Totals()
    lines: list[Record] = []
    for number, raw in enumerate(raw_lines, start=1):
        if not isinstance(raw, dict):
            raise invalid_value("Line", "Each Line must be an object")
        detail_type = raw.get("DetailType")
        if blank(detail_type):
            raise required_missing("Line.DetailType")
        if detail_type not in allowed:
            raise invalid_value("Line.DetailType", f"DetailType {detail_type} is not valid on this transaction")
        if detail_type in {"SubTotalLineDetail", "DescriptionOnly"}:
            lines.append({"Id": str(number), "LineNum": number, "DetailType": detail_type,
                          "Description": str(raw.get("Description") or ""), "Amount": money(totals.net),
                          detail_type: raw.get(detail_type) or {}})
            continue
        detail = raw.get(detail_type)
        if not isinstance(detail, dict):
            raise required_missing(f"Line.{detail_type}")
        if blank(raw.get("Amount")):
            raise required_missing("Line.Amount")
        amount = money(to_decimal(raw["Amount"], "Line.Amount"))
        out_detail = (_account_line(ctx, detail) if detail_type == "AccountBasedExpenseLineDetail"
                      else _item_line(ctx, detail, amount, sales=sales))
        out_detail |= _tracking(ctx, detail, sales=sales)
        tax_code, net, tax, rate_id, percent = _line_tax(ctx, detail, amount, mode=mode, direction=direction)
        if tax_code is not None:
            out_detail["TaxCodeRef"] = _ref(tax_code)
        if mode == "TaxInclusive":
            out_detail["TaxInclusiveAmt"] = money(net + tax)
        totals.add(rate_id, percent, net, tax)
        line: Record = {"Id": str(number), "LineNum": number, "Amount": net if mode == "TaxInclusive" else amount,
                        "DetailType": detail_type, detail_type: out_detail}
        if not blank(raw.get("Description")):
            line["Description"] = str(raw["Description"])
        lines.append(line)
    return lines, totals


def _header_dates(ctx: WriteContext, raw: Record, *, with_due: bool) -> Record:
    txn_date = parse_txn_date(raw.get("TxnDate"), "TxnDate", ctx.today)
    close = ctx.company.book_close_date
    if ctx.settings.enforce_book_close_date and close is not None and txn_date <= close:
        raise business_rule(f"The transaction date {txn_date.isoformat()} is on or before the closing date "
                            f"{close.isoformat()}; the books are closed.", "TxnDate")
    dates = {"TxnDate": txn_date.isoformat()}
    if with_due:
        dates["DueDate"] = parse_txn_date(raw.get("DueDate"), "DueDate", txn_date).isoformat()
    return dates


def _common_header(ctx: WriteContext, raw: Record) -> Record:
    mode = raw.get("GlobalTaxCalculation")
    if blank(mode):
        mode = "TaxExcluded"
    if mode not in _GLOBAL_TAX:
        raise invalid_value("GlobalTaxCalculation", f"GlobalTaxCalculation must be one of {', '.join(_GLOBAL_TAX)}")
    currency = ref_value(raw.get("CurrencyRef")) or ctx.company.home_currency
    if currency != ctx.company.home_currency and not ctx.company.preferences["CurrencyPrefs"]["MultiCurrencyEnabled"]:
        raise business_rule(f"Multicurrency is off for this company; {currency} can't be used.", "CurrencyRef")
    doc_number = raw.get("DocNumber")
    if not blank(doc_number) and len(str(doc_number)) > 21:
        raise QboFault("2050", "String length is either shorter or longer than supported by specification",
                       f"String length is either shorter or longer than supported by specification. Min:0 Max:21 "
                       f"supported. Supplied length:{len(str(doc_number))}", "DocNumber")
    header: Record = {
        "GlobalTaxCalculation": mode,
        "CurrencyRef": dict(HOME_CURRENCY) if currency == "GBP" else {"value": currency},
        "DocNumber": None if blank(doc_number) else str(doc_number),
        "PrivateNote": None if blank(raw.get("PrivateNote")) else str(raw["PrivateNote"])[:4000],
    }
    department = _lookup(ctx, "Department", raw.get("DepartmentRef"), "DepartmentRef")
    if department is not None:
        header["DepartmentRef"] = _ref(department)
    return header


def _prepare_bill(ctx: WriteContext, raw: Record) -> Record:
    vendor = _lookup(ctx, "Vendor", raw.get("VendorRef"), "VendorRef", required=True)
    assert vendor is not None
    header = _common_header(ctx, raw)
    lines, totals = _build_lines(ctx, raw.get("Line"), header["GlobalTaxCalculation"], sales=False)
    ap_account = _lookup(ctx, "Account", raw.get("APAccountRef"), "APAccountRef")
    if ap_account is None:
        ap_account = next(a for a in ctx.company.entities["Account"].values()
                          if a["AccountType"] == "Accounts Payable")
    elif ap_account["AccountType"] != "Accounts Payable":
        raise business_rule("APAccountRef must be an Accounts Payable account.", "APAccountRef")
    total = money(totals.net + totals.tax)
    return {**header, **_header_dates(ctx, raw, with_due=True), "VendorRef": _ref(vendor, "DisplayName"),
            "APAccountRef": _ref(ap_account), "Line": lines, "TxnTaxDetail": totals.tax_detail(),
            "TotalAmt": total, "Balance": total}


_PAYMENT_ACCOUNT_TYPES = {"Cash": {"Bank"}, "Check": {"Bank"}, "CreditCard": {"Credit Card"}}


def _prepare_purchase(ctx: WriteContext, raw: Record) -> Record:
    payment_type = raw.get("PaymentType")
    if blank(payment_type):
        raise required_missing("PaymentType")
    if payment_type not in _PAYMENT_ACCOUNT_TYPES:
        raise invalid_value("PaymentType", f"PaymentType must be one of {', '.join(_PAYMENT_ACCOUNT_TYPES)}")
    account = _lookup(ctx, "Account", raw.get("AccountRef"), "AccountRef", required=True)
    assert account is not None
    if account["AccountType"] not in _PAYMENT_ACCOUNT_TYPES[payment_type]:
        wanted = " or ".join(sorted(_PAYMENT_ACCOUNT_TYPES[payment_type]))
        raise business_rule(f"A {payment_type} expense must be paid from a {wanted} account.", "AccountRef")
    header = _common_header(ctx, raw)
    entity_ref = raw.get("EntityRef")
    out: Record = {**header, **_header_dates(ctx, raw, with_due=False), "PaymentType": payment_type,
                   "AccountRef": _ref(account), "Credit": bool(raw.get("Credit", False))}
    if ref_value(entity_ref) is not None:
        entity_type = (entity_ref or {}).get("type") or "Vendor"
        if entity_type not in {"Vendor", "Customer", "Employee"}:
            raise invalid_value("EntityRef.type", "EntityRef.type must be Vendor, Customer or Employee")
        payee = _lookup(ctx, entity_type, entity_ref, "EntityRef")
        assert payee is not None
        out["EntityRef"] = {**_ref(payee, "DisplayName"), "type": entity_type}
    lines, totals = _build_lines(ctx, raw.get("Line"), header["GlobalTaxCalculation"], sales=False)
    out |= {"Line": lines, "TxnTaxDetail": totals.tax_detail(), "TotalAmt": money(totals.net + totals.tax)}
    return out


def _prepare_invoice(ctx: WriteContext, raw: Record, own_id: str | None) -> Record:
    customer = _lookup(ctx, "Customer", raw.get("CustomerRef"), "CustomerRef", required=True)
    assert customer is not None
    header = _common_header(ctx, raw)
    number = header["DocNumber"]
    if number and ctx.settings.enforce_unique_invoice_doc_number and any(
            str(i.get("DocNumber") or "").lower() == number.lower() and i["Id"] != own_id
            for i in ctx.company.entities["Invoice"].values()):
        raise QboFault("6140", "Duplicate Document Number Error",
                       f"Duplicate Document Number Error : You must specify a different number. This number has "
                       f"already been used. DocNumber={number} is assigned to TxnType=Invoice", "DocNumber")
    if number is None:
        used = [int(i["DocNumber"]) for i in ctx.company.entities["Invoice"].values()
                if str(i.get("DocNumber") or "").isdigit()]
        header["DocNumber"] = str(max(used, default=1000) + 1)
    lines, totals = _build_lines(ctx, raw.get("Line"), header["GlobalTaxCalculation"], sales=True)
    total = money(totals.net + totals.tax)
    return {**header, **_header_dates(ctx, raw, with_due=True), "CustomerRef": _ref(customer, "DisplayName"),
            "Line": lines, "TxnTaxDetail": totals.tax_detail(), "TotalAmt": total, "Balance": total,
            "EmailStatus": "NotSet", "PrintStatus": "NotSet"}


_NAME_PARTS = ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")
_NAME_FIELDS = (*_NAME_PARTS, "DisplayName", "CompanyName", "PrintOnCheckName", "PrimaryEmailAddr", "PrimaryPhone",
                "Mobile", "BillAddr", "ShipAddr", "WebAddr", "Notes", "AcctNum", "TaxIdentifier", "Active",
                "CurrencyRef", "Vendor1099", "Taxable", "PrimaryTaxIdentifier", "ParentRef", "Job", "BillWithParent",
                "PreferredDeliveryMethod", "TermRef", "APAccountRef", "IsProject")


def _prepare_name(ctx: WriteContext, raw: Record, entity: str, own_id: str | None) -> Record:
    display = raw.get("DisplayName")
    if blank(display):
        display = " ".join(str(raw[p]).strip() for p in _NAME_PARTS if not blank(raw.get(p)))
    if blank(display):
        display = raw.get("CompanyName")
    if blank(display):
        raise required_missing("DisplayName")
    display = str(display).strip()
    if len(display) > 500:
        raise QboFault("2050", "String length is either shorter or longer than supported by specification",
                       f"DisplayName may be at most 500 characters; this one has {len(display)}.", "DisplayName")
    if ctx.company.name_taken(display, except_entity=entity, except_id=own_id):
        raise QboFault("6240", "Duplicate Name Exists Error",
                       "The name supplied already exists. : Another customer, vendor or employee is already using "
                       "this name. Please use a different name.", "DisplayName")
    out = {k: raw[k] for k in _NAME_FIELDS if k in raw and not blank(raw[k])}
    currency = ref_value(raw.get("CurrencyRef")) or ctx.company.home_currency
    if currency != ctx.company.home_currency and not ctx.company.preferences["CurrencyPrefs"]["MultiCurrencyEnabled"]:
        raise business_rule(f"Multicurrency is off for this company; {currency} can't be used.", "CurrencyRef")
    if entity == "Customer":
        parent = _lookup(ctx, "Customer", raw.get("ParentRef"), "ParentRef")
        out["Job"] = parent is not None
        out["FullyQualifiedName"] = f"{parent['FullyQualifiedName']}:{display}" if parent else display
        if parent is not None:
            out["ParentRef"] = _ref(parent, "DisplayName")
            out["Level"] = int(parent.get("Level", 0)) + 1
    out |= {"DisplayName": display, "Active": bool(raw.get("Active", True)),
            "PrintOnCheckName": out.get("PrintOnCheckName") or display,
            "CurrencyRef": dict(HOME_CURRENCY) if currency == "GBP" else {"value": currency},
            "Balance": Decimal("0")}
    return out


def _merge_for_update(existing: Record, raw: Record) -> Record:
    """Sparse updates change only what is sent; full updates send the whole object."""
    if raw.get("sparse") in (True, "true"):
        merged = {k: copy.deepcopy(v) for k, v in existing.items() if not k.startswith("_")}
        merged.update({k: v for k, v in raw.items() if k not in {"Id", "SyncToken", "MetaData", "sparse"}})
        return merged
    return dict(raw)


def _wire_payload(record: Record) -> Record:
    """Stored values back into request form (refs and numbers as sent) for re-validation."""
    return json.loads(json.dumps(record, default=lambda v: float(v) if isinstance(v, Decimal) else str(v)))


def save_entity(ctx: WriteContext, entity: str, raw: Any, *, operation: str = "create") -> tuple[Record, str]:
    """Create, update or delete one object; returns ``(record or tombstone, action)``.

    ``operation`` is ``create`` (which becomes an update when ``Id`` is sent, as POST does),
    ``update`` or ``delete``. Raises :class:`QboFault`.
    """
    if not isinstance(raw, dict):
        raise QboFault("2010", "Request has invalid or unsupported property",
                       f"The request body must be a {entity} object")
    company = ctx.company
    own_id = None if blank(raw.get("Id")) else str(raw["Id"]).strip()
    if operation == "update" and own_id is None:
        raise required_missing("Id")
    existing = company.get(entity, own_id) if own_id else None
    if own_id is not None:
        if existing is None or (entity, own_id) in ctx.unseen:
            raise QboFault("610", "Object Not Found",
                           f"Object Not Found : Something you're trying to use has been made inactive. Check the "
                           f"fields with accounts, customers, items, vendors or employees. ({entity} {own_id})", "Id")
        sync_token = raw.get("SyncToken")
        if blank(sync_token):
            raise required_missing("SyncToken")
        if str(sync_token).strip() != existing["SyncToken"]:
            raise QboFault("5010", "Stale Object Error",
                           "Stale Object Error : You and Alex Morgan were working on this at the same time. Alex "
                           "Morgan finished before you did, so your work was not saved.", "SyncToken")
    if operation == "delete":
        if entity not in TRANSACTION_ENTITIES:
            raise QboFault("500", "Unsupported Operation",
                           f"Operation Delete is not supported for {entity}; make it inactive instead.",
                           fault_type="ValidationFault")
        if existing is None:
            raise required_missing("Id")
        del company.entities[entity][existing["Id"]]
        tombstone = {"domain": "QBO", "status": "Deleted", "Id": existing["Id"],
                     "MetaData": {"LastUpdatedTime": ctx.now}}
        company.deleted[entity][existing["Id"]] = tombstone
        return tombstone, "delete"

    payload = _merge_for_update(_wire_payload(existing), raw) if existing is not None else raw
    if entity == "Bill":
        body = _prepare_bill(ctx, payload)
    elif entity == "Purchase":
        body = _prepare_purchase(ctx, payload)
    elif entity == "Invoice":
        body = _prepare_invoice(ctx, payload, own_id)
    else:
        body = _prepare_name(ctx, payload, entity, own_id)
    body = {k: v for k, v in body.items() if v is not None}
    if existing is None:
        record = {"Id": company.new_id(entity), "SyncToken": "0", "domain": "QBO", "sparse": False, **body,
                  "MetaData": _meta(ctx.now, ctx.now)}
        company.entities[entity][record["Id"]] = record
        ctx.unseen.add((entity, record["Id"]))
        return record, "create"
    record = {"Id": existing["Id"], "SyncToken": str(int(existing["SyncToken"]) + 1), "domain": "QBO",
              "sparse": False, **body, "MetaData": _meta(existing["MetaData"]["CreateTime"], ctx.now)}
    company.entities[entity][record["Id"]] = record
    return record, "update"


# --------------------------------------------------------------------------------------------
# Change data capture
# --------------------------------------------------------------------------------------------


def change_data_capture(company: QboCompany, entities: list[str], since: datetime, cap: int,
                        *, inclusive: bool) -> list[tuple[str, list[Record]]]:
    """Changed (and deleted) objects per requested entity, oldest change first, at most ``cap``
    objects across all entities: a client that gets ``cap`` back must split its request."""
    remaining = cap
    result: list[tuple[str, list[Record]]] = []
    for entity in entities:
        changed = [r for r in [*company.entities[entity].values(), *company.deleted[entity].values()]
                   if (r["MetaData"]["LastUpdatedTime"] >= since if inclusive
                       else r["MetaData"]["LastUpdatedTime"] > since)]
        changed.sort(key=lambda r: (r["MetaData"]["LastUpdatedTime"], int(r["Id"])))
        taken = changed[:max(0, remaining)]
        remaining -= len(taken)
        result.append((entity, taken))
    return result


# --------------------------------------------------------------------------------------------
# Attachments (/upload)
# --------------------------------------------------------------------------------------------

ATTACHABLE_CONTENT_TYPES = frozenset({
    "application/pdf", "image/jpeg", "image/jpg", "image/png", "image/gif", "image/tiff", "image/bmp", "text/plain",
    "text/csv", "text/xml", "application/xml", "application/msword", "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/rtf",
})


@dataclass(frozen=True)
class MultipartPart:
    name: str
    headers: dict[str, str]
    body: bytes


def parse_multipart(body: bytes, content_type: str) -> list[MultipartPart]:
    """A forgiving multipart/form-data reader.

    python-quickbooks builds its upload body with bare ``\\n`` line endings (a dedented template),
    which strict parsers refuse; QBO accepts it, so this reader takes CRLF or LF.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if match is None:
        raise ValueError("multipart body without a boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    parts: list[MultipartPart] = []
    for raw_chunk in body.split(delimiter)[1:]:
        if raw_chunk.startswith(b"--"):
            break
        chunk = raw_chunk.removeprefix(b"\r\n") if raw_chunk.startswith(b"\r\n") else raw_chunk.removeprefix(b"\n")
        head, separator, content = chunk.partition(b"\r\n\r\n")
        if not separator:
            head, separator, content = chunk.partition(b"\n\n")
        if not separator:
            continue
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if value:
                headers[name.strip().lower()] = value.strip()
        if content.endswith(b"\r\n"):
            content = content[:-2]
        elif content.endswith(b"\n"):
            content = content[:-1]
        disposition = headers.get("content-disposition", "")
        name_match = re.search(r'name="([^"]*)"', disposition)
        parts.append(MultipartPart(name_match.group(1) if name_match else "", headers, content))
    return parts


@dataclass(frozen=True)
class UploadedFile:
    metadata: Record
    content: bytes
    content_type: str


def read_upload(parts: list[MultipartPart]) -> list[UploadedFile]:
    """Pair ``file_metadata_NN`` with ``file_content_NN``. Raises :class:`QboFault`."""
    by_name = {part.name: part for part in parts}
    uploads: list[UploadedFile] = []
    for name, part in by_name.items():
        if not name.startswith("file_content_"):
            continue
        suffix = name.removeprefix("file_content_")
        content = part.body
        if part.headers.get("content-transfer-encoding", "").lower() == "base64":
            try:
                content = base64.b64decode(b"".join(content.split()), validate=True)
            except (binascii.Error, ValueError) as error:
                raise invalid_value(name, "the file content is not valid base64") from error
        metadata: Record = {}
        meta_part = by_name.get(f"file_metadata_{suffix}")
        if meta_part is not None:
            try:
                metadata = json.loads(meta_part.body.decode("utf-8").strip() or "{}")
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise invalid_value(f"file_metadata_{suffix}", "the metadata part is not valid JSON") from error
        content_type = str(metadata.get("ContentType") or part.headers.get("content-type", "")).split(";")[0]
        uploads.append(UploadedFile(metadata, content, content_type.strip().lower()))
    if not uploads:
        raise required_missing("file_content_01")
    return uploads


def create_attachable(ctx: WriteContext, upload: UploadedFile, download_base: str) -> Record:
    """Validate one uploaded file and store it as an Attachable. Raises :class:`QboFault`."""
    file_name = upload.metadata.get("FileName")
    if blank(file_name):
        raise required_missing("FileName")
    if upload.content_type not in ATTACHABLE_CONTENT_TYPES:
        raise invalid_value("ContentType", f"Unsupported file type {upload.content_type or '(none)'}")
    if len(upload.content) > ctx.settings.attachment_max_bytes:
        raise QboFault("6000", "A business validation error has occurred while processing your request",
                       f"File size {len(upload.content)} exceeds the maximum of {ctx.settings.attachment_max_bytes}"
                       " bytes.", "file_content")
    refs = upload.metadata.get("AttachableRef") or []
    if not isinstance(refs, list):
        raise invalid_value("AttachableRef", "AttachableRef must be a list")
    linked: list[Record] = []
    for ref in refs:
        entity_ref = (ref or {}).get("EntityRef") or {}
        entity = ENTITY_BY_SEGMENT.get(str(entity_ref.get("type") or "").lower())
        value = ref_value(entity_ref)
        if entity is None or value is None or entity not in STORED_ENTITIES:
            raise invalid_value("AttachableRef.EntityRef", f"Unsupported EntityRef {entity_ref!r}")
        if ctx.company.get(entity, value) is None:
            raise invalid_reference(entity, value, "AttachableRef.EntityRef")
        linked.append({"EntityRef": {"type": entity, "value": value},
                       "IncludeOnSend": bool((ref or {}).get("IncludeOnSend", False))})
    attachable_id = ctx.company.new_id("Attachable")
    record: Record = {
        "Id": attachable_id, "SyncToken": "0", "domain": "QBO", "sparse": False, "FileName": str(file_name),
        "FileAccessUri": f"/v3/company/{ctx.company.realm_id}/download/{attachable_id}",
        "TempDownloadUri": f"{download_base}/{attachable_id}", "Size": len(upload.content),
        "ContentType": upload.content_type, "AttachableRef": linked,
        "Note": None if blank(upload.metadata.get("Note")) else upload.metadata["Note"],
        "MetaData": _meta(ctx.now, ctx.now),
    }
    record = {k: v for k, v in record.items() if v is not None}
    ctx.company.entities["Attachable"][attachable_id] = record
    ctx.company.attachment_content[attachable_id] = upload.content
    return record


def realm_id_for(seed_key: str) -> str:
    """A stable, QBO-looking realm id: 16 digits starting with 9."""
    return "9" + str(int(stable_uuid("quickbooks", "realm", seed_key).replace("-", ""), 16) % 10**15).zfill(15)


__all__ = [
    "CDC_ENTITIES", "ENTITY_BY_SEGMENT", "NAME_LIST_ENTITIES", "QUERYABLE_ENTITIES", "STORED_ENTITIES",
    "TRANSACTION_ENTITIES", "WRITABLE_ENTITIES", "QboCompany", "QboFault", "Query", "QueryProblem",
    "WriteContext", "change_data_capture", "create_attachable", "parse_multipart", "parse_qbo_datetime",
    "parse_query", "project_fields", "qbo_timestamp", "read_upload", "realm_id_for", "run_query", "save_entity",
    "to_wire",
]
