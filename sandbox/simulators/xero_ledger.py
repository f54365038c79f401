"""Xero's ledger model for the simulator: organisations, records, wire formats and business rules.

Records are kept in Xero's own shapes (PascalCase keys, as in the Accounting API schemas) with
native Python values — ``date`` for dates, ``datetime`` for timestamps, ``Decimal`` for money —
and :func:`to_wire` turns them into Xero's JSON (MS-JSON dates ``/Date(ms+0000)/``, numbers).

Writes are two-phase so a batch can be all-or-nothing: ``prepare_*`` validates one element
against the organisation (and against earlier elements of the same batch via
:class:`BatchState`) without changing anything, and returns an :class:`ElementOutcome` whose
``apply`` performs the write. The HTTP layer applies every outcome only when the whole batch is
valid (``summarizeErrors`` true, the default) or applies each valid element as it goes
(``summarizeErrors=false``).

Validation messages follow Xero's where the reference gives them ("Invoice # must be unique.",
"The Contact must contain at least 1 of the following elements to identify the contact: Name,
ContactID, ContactNumber", "Payment amount exceeds the amount outstanding on this document",
"A valid user should be identified using the UserID."); the others are plausible wording.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from sandbox.simulators.harness import truncate_to_millis
from sandbox.simulators.ledger_values import assume_utc, money, parse_iso_timestamp, to_decimal
from sandbox.simulators.seed import (
    INCOME_KINDS,
    AccountKind,
    SeedOrganisation,
    SystemRole,
    VatKey,
    stable_uuid,
)

if TYPE_CHECKING:
    from sandbox.simulators.xero import XeroSettings

Record = dict[str, Any]

BASE_CURRENCY = "GBP"


# --------------------------------------------------------------------------------------------
# Wire formats
# --------------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _millis(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def ms_date(value: date | datetime, *, offset: bool = True) -> str:
    """Xero's MS-JSON date: ``/Date(1552262400000+0000)/`` (envelopes omit the offset)."""
    moment = value if isinstance(value, datetime) else datetime.combine(value, time(), tzinfo=UTC)
    return f"/Date({_millis(moment.astimezone(UTC))}{'+0000' if offset else ''})/"


def to_wire(value: Any) -> Any:
    """Native record → Xero JSON: MS dates, numbers, and no ``None`` fields (Xero omits them)."""
    if isinstance(value, dict):
        return {key: to_wire(item) for key, item in value.items() if item is not None and not key.startswith("_")}
    if isinstance(value, list | tuple):
        return [to_wire(item) for item in value]
    if isinstance(value, datetime | date):
        return ms_date(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


_MS_DATE = re.compile(r"^/Date\((?P<ms>-?\d+)(?P<offset>[+-]\d{4})?\)/$")


def parse_request_date(value: Any) -> date:
    """Dates in requests: ``YYYY-MM-DD`` (documented), ``YYYY-MM-DDThh:mm:ss`` or MS-JSON (what
    the official SDKs send). Raises ``ValueError``."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(value)
    text = value.strip()
    match = _MS_DATE.match(text)
    if match:
        return (_EPOCH + timedelta(milliseconds=int(match["ms"]))).date()
    return datetime.fromisoformat(text).date() if "T" in text else date.fromisoformat(text)


def parse_timestamp(value: str) -> datetime:
    """``If-Modified-Since``: ISO 8601 (naive means UTC), RFC 1123 HTTP-date, or MS-JSON."""
    text = value.strip()
    match = _MS_DATE.match(text)
    if match:
        return _EPOCH + timedelta(milliseconds=int(match["ms"]))
    try:
        return parse_iso_timestamp(text)
    except ValueError:
        return assume_utc(parsedate_to_datetime(text))  # raises ValueError/TypeError on junk


def _date_text(value: date) -> str:
    return value.strftime("%d %b %Y")


def new_id() -> str:
    return str(uuid.uuid4())


def _field(raw: Any, *names: str) -> Any:
    """A field of a request element, accepting PascalCase and camelCase spellings."""
    if not isinstance(raw, dict):
        return None
    for name in names:
        for key in (name, name[:1].lower() + name[1:]):
            if key in raw:
                return raw[key]
    return None


# Fields that hold dates in request elements; echoed back in MS form so SDKs can parse echoes.
_DATE_FIELDS = frozenset({"Date", "DueDate", "ExpectedPaymentDate", "PlannedPaymentDate", "FullyPaidOnDate"})


def echo_element(raw: Any) -> Any:
    """The element as sent, for error responses, with parseable dates in Xero's MS form."""
    if not isinstance(raw, dict):
        return {}
    echoed: Record = {}
    for key, value in raw.items():
        echoed[key] = value
        if key in _DATE_FIELDS:
            with contextlib.suppress(ValueError, TypeError):
                echoed[key] = ms_date(parse_request_date(value))
        elif isinstance(value, dict):
            echoed[key] = echo_element(value)
        elif isinstance(value, list):
            echoed[key] = [echo_element(item) if isinstance(item, dict) else item for item in value]
    return echoed


# --------------------------------------------------------------------------------------------
# Mapping the neutral seed into Xero shapes
# --------------------------------------------------------------------------------------------

# VatKey → (purchase variant, sales variant): (TaxType, Name, ReportTaxType).
_TAX_TYPES: dict[VatKey, tuple[tuple[str, str, str], tuple[str, str, str]]] = {
    VatKey.STANDARD: (("INPUT2", "20% (VAT on Expenses)", "INPUT"), ("OUTPUT2", "20% (VAT on Income)", "OUTPUT")),
    VatKey.REDUCED: (("RRINPUT", "5% (VAT on Expenses)", "INPUT"), ("RROUTPUT", "5% (VAT on Income)", "OUTPUT")),
    VatKey.ZERO: (("ZERORATEDINPUT", "Zero Rated Expenses", "INPUT"),
                  ("ZERORATEDOUTPUT", "Zero Rated Income", "OUTPUT")),
    VatKey.EXEMPT: (("EXEMPTINPUT", "Exempt Expenses", "EXEMPTINPUT"),
                    ("EXEMPTOUTPUT", "Exempt Income", "EXEMPTOUTPUT")),
    VatKey.NO_VAT: (("NONE", "No VAT", "NONE"), ("NONE", "No VAT", "NONE")),
    VatKey.HISTORIC_STANDARD: (("TAX001", "17.5% (VAT on Expenses)", "INPUT"),
                               ("TAX002", "17.5% (VAT on Income)", "OUTPUT")),
}

_ACCOUNT_TYPES: dict[AccountKind, tuple[str, str]] = {
    AccountKind.BANK: ("BANK", "ASSET"),
    AccountKind.CREDIT_CARD: ("BANK", "ASSET"),
    AccountKind.CURRENT_ASSET: ("CURRENT", "ASSET"),
    AccountKind.FIXED_ASSET: ("FIXED", "ASSET"),
    AccountKind.INVENTORY: ("INVENTORY", "ASSET"),
    AccountKind.PREPAYMENT: ("PREPAYMENT", "ASSET"),
    AccountKind.CURRENT_LIABILITY: ("CURRLIAB", "LIABILITY"),
    AccountKind.LONG_TERM_LIABILITY: ("TERMLIAB", "LIABILITY"),
    AccountKind.EQUITY: ("EQUITY", "EQUITY"),
    AccountKind.REVENUE: ("REVENUE", "REVENUE"),
    AccountKind.OTHER_INCOME: ("OTHERINCOME", "REVENUE"),
    AccountKind.DIRECT_COSTS: ("DIRECTCOSTS", "EXPENSE"),
    AccountKind.OVERHEADS: ("OVERHEADS", "EXPENSE"),
    AccountKind.DEPRECIATION: ("DEPRECIATN", "EXPENSE"),
}

_SYSTEM_ACCOUNTS: dict[SystemRole, str] = {
    SystemRole.RECEIVABLES: "DEBTORS",
    SystemRole.PAYABLES: "CREDITORS",
    SystemRole.VAT: "GST",
    SystemRole.RETAINED_EARNINGS: "RETAINEDEARNINGS",
    SystemRole.ROUNDING: "ROUNDING",
    SystemRole.HISTORICAL: "HISTORICAL",
    SystemRole.TRACKING_TRANSFERS: "TRACKINGTRANSFERS",
    SystemRole.UNPAID_EXPENSE_CLAIMS: "UNPAIDEXPCLM",
}

# Which account classes each direction's rates may be used with (Xero's CanApplyTo* flags).
_CAN_APPLY = {
    "purchase": {"Assets": True, "Equity": True, "Expenses": True, "Liabilities": True, "Revenue": False},
    "sale": {"Assets": True, "Equity": True, "Expenses": False, "Liabilities": True, "Revenue": True},
    "both": {"Assets": True, "Equity": True, "Expenses": True, "Liabilities": True, "Revenue": True},
}
_CLASS_FLAG = {"ASSET": "Assets", "EQUITY": "Equity", "EXPENSE": "Expenses", "LIABILITY": "Liabilities",
               "REVENUE": "Revenue"}


def tax_type_for(vat: VatKey, *, sales: bool) -> str:
    return _TAX_TYPES[vat][1 if sales else 0][0]


def _minutes_ago(now: datetime, minutes: int) -> datetime:
    return truncate_to_millis(now - timedelta(minutes=minutes))


@dataclass
class XeroOrganisation:
    """One Xero organisation (tenant) and everything in it."""

    tenant_id: str
    name: str
    organisation: Record
    accounts: dict[str, Record] = field(default_factory=dict)
    contacts: dict[str, Record] = field(default_factory=dict)
    tax_rates: dict[str, Record] = field(default_factory=dict)
    items: dict[str, Record] = field(default_factory=dict)
    tracking_categories: dict[str, Record] = field(default_factory=dict)
    users: dict[str, Record] = field(default_factory=dict)
    invoices: dict[str, Record] = field(default_factory=dict)
    payments: dict[str, Record] = field(default_factory=dict)
    bank_transactions: dict[str, Record] = field(default_factory=dict)
    receipts: dict[str, Record] = field(default_factory=dict)
    expense_claims: dict[str, Record] = field(default_factory=dict)
    projects: dict[str, Record] = field(default_factory=dict)
    projects_enabled: bool = True  # the organisation has Xero Projects (its API answers 403 otherwise)
    # document id → its attachments (metadata); attachment id → bytes.
    attachments: dict[str, list[Record]] = field(default_factory=dict)
    attachment_content: dict[str, bytes] = field(default_factory=dict)
    next_invoice_number: int = 1
    receipt_numbers: dict[str, int] = field(default_factory=dict)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_seed(cls, seed: SeedOrganisation, now: datetime) -> XeroOrganisation:
        tenant_id = stable_uuid("xero", "tenant", seed.key)

        def rid(*parts: str) -> str:
            return stable_uuid("xero", seed.key, *parts)

        org = cls(
            tenant_id=tenant_id,
            name=seed.name,
            organisation={
                "OrganisationID": rid("organisation"),
                "APIKey": "",
                "Name": seed.name,
                "LegalName": seed.legal_name,
                "PaysTax": True,
                "Version": "UK",
                "OrganisationType": "COMPANY",
                "BaseCurrency": seed.base_currency,
                "CountryCode": seed.country_code,
                "IsDemoCompany": False,
                "OrganisationStatus": "ACTIVE",
                "RegistrationNumber": seed.company_number,
                "TaxNumber": seed.vat_number,
                "FinancialYearEndDay": seed.financial_year_end_day,
                "FinancialYearEndMonth": seed.financial_year_end_month,
                "SalesTaxBasis": "ACCRUALS",
                "SalesTaxPeriod": "QUARTERLY1",
                "DefaultSalesTax": "Tax Exclusive",
                "DefaultPurchasesTax": "Tax Inclusive",
                "PeriodLockDate": seed.period_lock_date,
                "CreatedDateUTC": _minutes_ago(now, seed.created_minutes_ago),
                "Timezone": "GMTSTANDARDTIME",
                "OrganisationEntityType": "COMPANY",
                "ShortCode": seed.short_code,
                "Class": "STANDARD",
                "Edition": "BUSINESS",
                "LineOfBusiness": "Professional services",
                "Addresses": [{
                    "AddressType": "STREET", "AddressLine1": seed.address.line1, "City": seed.address.city,
                    "PostalCode": seed.address.postcode, "Country": seed.address.country,
                }],
                "Phones": [],
                "ExternalLinks": [],
                "PaymentTerms": {},
            },
        )
        org._load_tax_rates(seed, now)
        org._load_accounts(seed, now, rid)
        org._load_contacts(seed, now, rid)
        org._load_items(seed, now, rid)
        org._load_tracking(seed, rid)
        org._load_users(seed, now, rid)
        org._load_projects(seed, rid)
        org._load_bank_lines(seed, now, rid)
        return org

    def _load_tax_rates(self, seed: SeedOrganisation, now: datetime) -> None:
        for rate in seed.vat_rates:
            variants = _TAX_TYPES[rate.key]
            for direction, (tax_type, name, report_type) in (("purchase", variants[0]), ("sale", variants[1])):
                if tax_type in self.tax_rates:
                    continue  # NONE serves both directions
                applies = _CAN_APPLY["both" if rate.key is VatKey.NO_VAT else direction]
                self.tax_rates[tax_type] = {
                    "Name": name,
                    "TaxType": tax_type,
                    "ReportTaxType": report_type,
                    "Status": "ARCHIVED" if rate.archived else "ACTIVE",
                    "TaxComponents": [{"Name": "VAT", "Rate": rate.percent, "IsCompound": False,
                                       "IsNonRecoverable": False}],
                    **{f"CanApplyTo{flag}": allowed for flag, allowed in applies.items()},
                    "DisplayTaxRate": rate.percent,
                    "EffectiveRate": rate.percent,
                }

    def _load_accounts(self, seed: SeedOrganisation, now: datetime, rid: Callable[..., str]) -> None:
        for account in seed.accounts:
            account_type, account_class = _ACCOUNT_TYPES[account.kind]
            is_bank = account_type == "BANK"
            record: Record = {
                "AccountID": rid("account", account.code),
                "Code": account.code,
                "Name": account.name,
                "Type": account_type,
                "TaxType": "NONE" if is_bank else tax_type_for(account.vat, sales=account.kind in INCOME_KINDS),
                "Status": "ARCHIVED" if account.archived else "ACTIVE",
                "Description": account.description or None,
                "Class": account_class,
                "EnablePaymentsToAccount": account.accepts_payments,
                "ShowInExpenseClaims": account.expense_claims,
                "BankAccountType": ("CREDITCARD" if account.kind is AccountKind.CREDIT_CARD else "BANK")
                if is_bank else "",
                "ReportingCode": None,
                "HasAttachments": False,
                "AddToWatchlist": False,
                "UpdatedDateUTC": _minutes_ago(now, account.updated_minutes_ago),
            }
            if account.system_role is not None:
                record["SystemAccount"] = _SYSTEM_ACCOUNTS[account.system_role]
            if is_bank and account.bank is not None:
                record["BankAccountNumber"] = account.bank.sort_code.replace("-", "") + account.bank.account_number
                record["CurrencyCode"] = seed.base_currency
            self.accounts[record["AccountID"]] = record

    def _load_contacts(self, seed: SeedOrganisation, now: datetime, rid: Callable[..., str]) -> None:
        for contact in seed.contacts:
            area_code, _, number = contact.phone.partition(" ")
            record: Record = {
                "ContactID": rid("contact", contact.key),
                "ContactNumber": contact.contact_number,
                "AccountNumber": contact.contact_number,
                "ContactStatus": "ARCHIVED" if contact.archived else "ACTIVE",
                "Name": contact.name,
                "FirstName": contact.first_name,
                "LastName": contact.last_name,
                "CompanyNumber": contact.company_number,
                "EmailAddress": contact.email,
                "BankAccountDetails": "",
                "TaxNumber": contact.vat_number,
                "Addresses": [
                    {"AddressType": "POBOX", "AddressLine1": contact.address.line1, "City": contact.address.city,
                     "PostalCode": contact.address.postcode, "Country": contact.address.country},
                    {"AddressType": "STREET"},
                ],
                "Phones": [
                    {"PhoneType": "DEFAULT", "PhoneNumber": number, "PhoneAreaCode": area_code,
                     "PhoneCountryCode": "44"},
                    {"PhoneType": "MOBILE"},
                ],
                "UpdatedDateUTC": _minutes_ago(now, contact.updated_minutes_ago),
                "ContactGroups": [],
                "IsSupplier": contact.is_supplier,
                "IsCustomer": contact.is_customer,
                "DefaultCurrency": seed.base_currency,
                "PurchasesDefaultAccountCode": contact.default_purchase_account_code,
                "SalesDefaultAccountCode": contact.default_sales_account_code,
                "ContactPersons": [],
                "HasAttachments": False,
                "HasValidationErrors": False,
            }
            self.contacts[record["ContactID"]] = record

    def _load_items(self, seed: SeedOrganisation, now: datetime, rid: Callable[..., str]) -> None:
        for item in seed.items:
            def details(price: Any, *, sales: bool) -> Record:
                if price is None:
                    return {}
                return {"UnitPrice": price.unit_price, "AccountCode": price.account_code,
                        "TaxType": tax_type_for(price.vat, sales=sales)}

            record: Record = {
                "ItemID": rid("item", item.code),
                "Code": item.code,
                "Name": item.name,
                "Description": item.description if item.sales else None,
                "PurchaseDescription": item.description if item.purchase else None,
                "IsSold": item.sales is not None,
                "IsPurchased": item.purchase is not None,
                "IsTrackedAsInventory": False,
                "PurchaseDetails": details(item.purchase, sales=False),
                "SalesDetails": details(item.sales, sales=True),
                "UpdatedDateUTC": _minutes_ago(now, item.updated_minutes_ago),
            }
            self.items[record["ItemID"]] = record

    def _load_tracking(self, seed: SeedOrganisation, rid: Callable[..., str]) -> None:
        for dimension in seed.tracking:
            category_id = rid("tracking", dimension.key)
            self.tracking_categories[category_id] = {
                "TrackingCategoryID": category_id,
                "Name": dimension.name,
                "Status": "ARCHIVED" if dimension.archived else "ACTIVE",
                "Options": [
                    {"TrackingOptionID": rid("tracking-option", option.key), "Name": option.name,
                     "Status": "ARCHIVED" if option.archived else "ACTIVE"}
                    for option in dimension.options
                ],
            }

    def _load_users(self, seed: SeedOrganisation, now: datetime, rid: Callable[..., str]) -> None:
        roles = {"admin": "STANDARD", "standard": "STANDARD", "invoice_only": "INVOICEONLY"}
        for person in seed.people:
            user_id = rid("user", person.key)
            self.users[user_id] = {
                "UserID": user_id,
                "EmailAddress": person.email,
                "FirstName": person.first_name,
                "LastName": person.last_name,
                "UpdatedDateUTC": _minutes_ago(now, 60 * 24 * 30),
                "IsSubscriber": person.role == "admin",
                "OrganisationRole": roles[person.role],
            }

    def _load_projects(self, seed: SeedOrganisation, rid: Callable[..., str]) -> None:
        for project in seed.projects:
            project_id = rid("project", project.key)
            zero = {"currency": seed.base_currency, "value": Decimal("0")}
            self.projects[project_id] = {
                "projectId": project_id,
                "contactId": rid("contact", project.customer_key),
                "name": project.name,
                "currencyCode": seed.base_currency,
                "minutesLogged": 0,
                "totalTaskAmount": zero,
                "totalExpenseAmount": zero,
                "minutesToBeInvoiced": 0,
                "taskAmountToBeInvoiced": zero,
                "taskAmountInvoiced": zero,
                "expenseAmountToBeInvoiced": zero,
                "expenseAmountInvoiced": zero,
                "projectAmountInvoiced": zero,
                "deposit": zero,
                "depositApplied": zero,
                "creditNoteAmount": zero,
                "totalInvoiced": zero,
                "totalToBeInvoiced": zero,
                "deadlineUtc": datetime.combine(project.deadline, time(23, 59, 59), tzinfo=UTC)
                if project.deadline else None,
                "estimate": {"currency": seed.base_currency, "value": project.estimate},
                "status": "CLOSED" if project.closed else "INPROGRESS",
            }

    def _load_bank_lines(self, seed: SeedOrganisation, now: datetime, rid: Callable[..., str]) -> None:
        """The seed's unreconciled bank lines as Xero shows them through the Accounting API: SPEND
        BankTransactions with ``IsReconciled`` false (Xero's statement lines themselves are not
        readable through the API)."""
        for line in seed.bank_lines:
            bank = self.account_by_code(line.bank_account_code)
            contact = self.contacts.get(rid("contact", line.payee_key))
            if bank is None or contact is None:
                continue
            self.add_bank_line(
                bank["AccountID"], (now - timedelta(days=line.days_ago)).date(), line.amount,
                contact_id=contact["ContactID"], reference=line.reference, account_code=line.category_code,
                transaction_id=rid("bank-line", line.key), now=now,
            )

    def add_bank_line(self, bank_account_id: str, on: date, amount: Decimal, *, contact_id: str | None = None,
                      reference: str = "CARD PAYMENT", account_code: str | None = None,
                      transaction_id: str | None = None, now: datetime) -> Record:
        """An unreconciled money-out line on a bank account (seed data and tests; never an API write,
        so it is not in the write log). Coded without tax, as a bank feed line is."""
        bank = self.accounts[bank_account_id.lower()]
        contact = self.contacts[contact_id.lower()] if contact_id else next(
            c for c in self.contacts.values() if c["ContactStatus"] == "ACTIVE" and c.get("IsSupplier"))
        code = account_code or contact.get("PurchasesDefaultAccountCode") or "429"
        account = self.account_by_code(code)
        total = money(amount)
        record: Record = {
            "BankTransactionID": transaction_id or new_id(),
            "Type": "SPEND",
            "Contact": self.contact_summary(contact),
            "BankAccount": _account_summary(bank),
            "IsReconciled": False,
            "Date": on,
            "Reference": reference,
            "CurrencyCode": BASE_CURRENCY,
            "CurrencyRate": Decimal("1.000000"),
            "Url": None,
            "Status": "AUTHORISED",
            "LineAmountTypes": "NoTax",
            "LineItems": [{
                "LineItemID": new_id(), "Description": reference, "Quantity": Decimal("1"),
                "UnitAmount": total, "AccountCode": code,
                "AccountID": account["AccountID"] if account else None, "TaxType": "NONE",
                "TaxAmount": Decimal("0.00"), "LineAmount": total, "Tracking": [], "ValidationErrors": [],
            }],
            "SubTotal": total,
            "TotalTax": Decimal("0.00"),
            "Total": total,
            "UpdatedDateUTC": truncate_to_millis(now),
            "HasAttachments": False,
        }
        self.bank_transactions[record["BankTransactionID"]] = record
        return record

    # -- look-ups ----------------------------------------------------------------------------------

    @property
    def period_lock_date(self) -> date | None:
        return self.organisation.get("PeriodLockDate")

    def account_by_code(self, code: str) -> Record | None:
        wanted = code.strip().lower()
        return next((a for a in self.accounts.values() if (a.get("Code") or "").lower() == wanted), None)

    def account_by_ref(self, raw: Any) -> tuple[Record | None, str]:
        """An account referenced by ``{"AccountID"}`` or ``{"Code"}`` (and how it was named)."""
        account_id = _field(raw, "AccountID")
        if account_id:
            return self.accounts.get(str(account_id).lower()), str(account_id)
        code = _field(raw, "Code")
        if code:
            return self.account_by_code(str(code)), str(code)
        return None, ""

    def contact_by_name(self, name: str) -> Record | None:
        wanted = name.strip().lower()
        matches = [c for c in self.contacts.values() if c["Name"].lower() == wanted]
        return next((c for c in matches if c["ContactStatus"] == "ACTIVE"), matches[0] if matches else None)

    def contact_by_number(self, number: str) -> Record | None:
        wanted = number.strip().lower()
        return next((c for c in self.contacts.values() if (c.get("ContactNumber") or "").lower() == wanted), None)

    def item_by_code(self, code: str) -> Record | None:
        wanted = code.strip().lower()
        return next((i for i in self.items.values() if i["Code"].lower() == wanted), None)

    def item_by_ref(self, ref: str) -> Record | None:
        return self.items.get(ref.lower()) or self.item_by_code(ref)

    def invoice_by_ref(self, ref: str) -> Record | None:
        found = self.invoices.get(ref.lower())
        if found is None:
            found = next((i for i in self.invoices.values()
                          if (i.get("InvoiceNumber") or "").lower() == ref.strip().lower()), None)
        return found

    def tracking_category(self, category_id: Any, name: Any) -> Record | None:
        if category_id:
            return self.tracking_categories.get(str(category_id).lower())
        if name:
            wanted = str(name).strip().lower()
            return next((c for c in self.tracking_categories.values() if c["Name"].lower() == wanted), None)
        return None

    def document(self, endpoint: str, document_id: str) -> Record | None:
        """A record an attachment may hang off, by the endpoint's lowercase name."""
        collection = {
            "invoices": self.invoices, "banktransactions": self.bank_transactions, "receipts": self.receipts,
            "contacts": self.contacts, "accounts": self.accounts,
        }.get(endpoint)
        return collection.get(document_id.lower()) if collection is not None else None

    def contact_summary(self, contact: Record) -> Record:
        return {"ContactID": contact["ContactID"], "Name": contact["Name"],
                "ContactStatus": contact["ContactStatus"], "HasValidationErrors": False}


# --------------------------------------------------------------------------------------------
# `where` and `order`
# --------------------------------------------------------------------------------------------


class QueryError(ValueError):
    """A ``where``/``order`` expression the simulator cannot parse (Xero: QueryParseException)."""


_CLAUSE = re.compile(
    r"^(?P<field>[A-Za-z_][\w.]*)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<value>.+)$", re.DOTALL)
_CALL = re.compile(
    r'^(?P<field>[A-Za-z_][\w.]*)\.(?P<fn>Contains|StartsWith|EndsWith)\(\s*"(?P<value>[^"]*)"\s*\)$',
    re.IGNORECASE)
_GUID_LITERAL = re.compile(r'^Guid\(\s*"(?P<value>[^"]*)"\s*\)$', re.IGNORECASE)
_DATETIME_LITERAL = re.compile(r"^DateTime\(\s*(?P<parts>[\d,\s]+)\)$", re.IGNORECASE)


def _split_top_level(expression: str, separators: tuple[str, ...]) -> list[str]:
    """Split on separators (case-insensitive) outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes, index = False, 0
    lowered = expression.lower()
    while index < len(expression):
        char = expression[index]
        if char == '"':
            in_quotes = not in_quotes
        if not in_quotes:
            separator = next((s for s in separators if lowered.startswith(s, index)), None)
            if separator is not None:
                parts.append("".join(current))
                current = []
                index += len(separator)
                continue
        current.append(char)
        index += 1
    parts.append("".join(current))
    return [part.strip() for part in parts]


def _literal(text: str) -> Any:
    text = text.strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return text[1:-1]
    if text.lower() in {"true", "false"}:
        return text.lower() == "true"
    if text.lower() == "null":
        return None
    guid = _GUID_LITERAL.match(text)
    if guid:
        return guid["value"]
    moment = _DATETIME_LITERAL.match(text)
    if moment:
        numbers = [int(p) for p in moment["parts"].split(",") if p.strip()]
        if not 3 <= len(numbers) <= 6:
            raise QueryError(f"bad DateTime literal {text}")
        year, month, day, hour, minute, second = numbers + [0] * (6 - len(numbers))
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError as error:
            raise QueryError(f"bad DateTime literal {text}") from error
    try:
        return Decimal(text)
    except InvalidOperation as error:
        raise QueryError(f"cannot understand value {text!r}") from error


def _resolve(record: Record, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        key = next((k for k in value if k.lower() == part.lower()), None)
        value = value.get(key) if key else None
    return value


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(right, datetime) and isinstance(left, date) and not isinstance(left, datetime):
        left = datetime.combine(left, time(), tzinfo=UTC)
    if isinstance(right, Decimal) and isinstance(left, int | float | Decimal) and not isinstance(left, bool):
        left = Decimal(str(left))
    if isinstance(left, str) and isinstance(right, str):
        return left.lower(), right.lower()  # Xero's store compares case-insensitively
    return left, right


def _clause_predicate(clause: str) -> Callable[[Record], bool]:
    while clause.startswith("(") and clause.endswith(")"):
        clause = clause[1:-1].strip()
    call = _CALL.match(clause)
    if call:
        fn, needle, path = call["fn"].lower(), call["value"].lower(), call["field"]

        def method(record: Record) -> bool:
            value = _resolve(record, path)
            if not isinstance(value, str):
                return False
            text = value.lower()
            return {"contains": needle in text, "startswith": text.startswith(needle),
                    "endswith": text.endswith(needle)}[fn]

        return method
    match = _CLAUSE.match(clause)
    if not match:
        raise QueryError(f"cannot parse where clause {clause!r}")
    path, op, expected = match["field"], match["op"], _literal(match["value"])

    def compare(record: Record) -> bool:
        left, right = _comparable(_resolve(record, path), expected)
        if op == "==":
            return bool(left == right)
        if op == "!=":
            return bool(left != right)
        if left is None or right is None:
            return False
        try:
            return bool({">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op])
        except TypeError:
            return False

    return compare


def where_filter(expression: str | None) -> Callable[[Record], bool]:
    """Xero's ``where``: ``Field=="v"``, ``!=``, ``<``…, ``.Contains("x")``, joined by AND/OR."""
    if not expression or not expression.strip():
        return lambda _record: True
    alternatives = [
        [_clause_predicate(clause) for clause in _split_top_level(part, (" and ", "&&"))]
        for part in _split_top_level(expression.strip(), (" or ", "||"))
    ]
    return lambda record: any(all(p(record) for p in clauses) for clauses in alternatives)


def apply_order(records: list[Record], order: str | None, default: Callable[[Record], Any]) -> list[Record]:
    if not order or not order.strip():
        return sorted(records, key=default)
    result = list(records)
    for term in reversed([t.strip() for t in order.split(",") if t.strip()]):
        parts = term.split()
        if len(parts) > 2 or (len(parts) == 2 and parts[1].upper() not in {"ASC", "DESC"}):
            raise QueryError(f"cannot parse order {term!r}")
        path, descending = parts[0], len(parts) == 2 and parts[1].upper() == "DESC"

        def key(record: Record, path: str = path) -> tuple[int, Any]:
            value = _resolve(record, path)
            if isinstance(value, str):
                value = value.lower()
            return (value is not None, value if value is not None else 0)

        result.sort(key=key, reverse=descending)
    return result


# --------------------------------------------------------------------------------------------
# Writes: shared pieces
# --------------------------------------------------------------------------------------------


@dataclass
class ElementOutcome:
    """The result of validating one element of a write: errors, or a write ready to apply."""

    kind: str
    echo: Record
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    action: str = "create"
    # Performs the write at the given time and returns the stored record.
    apply: Callable[[datetime], Record] | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class BatchState:
    """What earlier elements of the same request will do, so later ones are validated against it."""

    invoice_numbers: set[str] = field(default_factory=set)
    payments_by_invoice: dict[str, Decimal] = field(default_factory=dict)
    claimed_receipts: set[str] = field(default_factory=set)
    contact_names: set[str] = field(default_factory=set)


@dataclass
class WriteContext:
    org: XeroOrganisation
    settings: XeroSettings
    today: date
    batch: BatchState = field(default_factory=BatchState)
    # "create" (PUT: create only) or "upsert" (POST: update when the id exists).
    mode: str = "create"
    # The app making the write (Xero remembers it for ``createdByMyApp``).
    client_id: str | None = None


def _check_lock_date(ctx: WriteContext, document_date: date, status: str, errors: list[str]) -> None:
    lock = ctx.org.period_lock_date
    if lock is None or document_date > lock:
        return
    if status == "DRAFT" and not ctx.settings.lock_date_applies_to_drafts:
        return
    errors.append(f"The document date cannot be on or before the period lock date, currently set to "
                  f"{_date_text(lock)}.")


def _document_date(ctx: WriteContext, raw: Any, errors: list[str], name: str = "Date") -> date | None:
    value = _field(raw, name)
    if value is None or value == "":
        return None
    try:
        return parse_request_date(value)
    except (ValueError, TypeError):
        errors.append(f"The {name} '{value}' is not a valid date. Use the format YYYY-MM-DD.")
        return None


def _resolve_contact(ctx: WriteContext, raw: Any, errors: list[str]) -> tuple[Record | None, Record | None]:
    """(existing contact, contact to create) for a ``Contact`` element, or errors."""
    contact_id, number, name = (_field(raw, key) for key in ("ContactID", "ContactNumber", "Name"))
    if not (contact_id or number or name):
        errors.append("The Contact must contain at least 1 of the following elements to identify the contact: "
                      "Name, ContactID, ContactNumber")
        return None, None
    if contact_id:
        contact = ctx.org.contacts.get(str(contact_id).lower())
        if contact is None:
            errors.append(f"The contact with ContactID {contact_id} could not be found.")
            return None, None
    elif number:
        contact = ctx.org.contact_by_number(str(number))
        if contact is None:
            errors.append(f"The contact with ContactNumber {number} could not be found.")
            return None, None
    else:
        contact = ctx.org.contact_by_name(str(name))
        if contact is None:
            if not ctx.settings.create_contact_from_unknown_name:
                errors.append(f"The contact '{name}' could not be found. Create the contact first or "
                              f"identify it by ContactID.")
                return None, None
            return None, {"ContactID": new_id(), "Name": str(name).strip(), "ContactStatus": "ACTIVE",
                          "IsSupplier": False, "IsCustomer": False, "Addresses": [], "Phones": [],
                          "ContactGroups": [], "ContactPersons": [], "HasAttachments": False,
                          "HasValidationErrors": False, "DefaultCurrency": BASE_CURRENCY}
    if contact["ContactStatus"] != "ACTIVE":
        errors.append(f"The contact '{contact['Name']}' has been archived. Archived contacts cannot be used "
                      f"on new transactions.")
        return None, None
    return contact, None


def _stamp_contact(ctx: WriteContext, existing: Record | None, new: Record | None, now: datetime,
                   *, supplier: bool = False, customer: bool = False) -> Record:
    """Create a contact named on a document if needed and set its derived role flags.

    Xero derives IsSupplier/IsCustomer from activity; it does not bump UpdatedDateUTC for that,
    so incremental syncs miss the flag change — reproduced on purpose.
    """
    contact = existing
    if contact is None:
        assert new is not None
        contact = {**new, "UpdatedDateUTC": now}
        ctx.org.contacts[contact["ContactID"]] = contact
    contact["IsSupplier"] = contact.get("IsSupplier", False) or supplier
    contact["IsCustomer"] = contact.get("IsCustomer", False) or customer
    return contact


_LINE_AMOUNT_TYPES = {"exclusive": "Exclusive", "inclusive": "Inclusive", "notax": "NoTax"}
_NON_POSTABLE_SYSTEM_ACCOUNTS = frozenset({"DEBTORS", "CREDITORS", "GST", "RETAINEDEARNINGS", "UNPAIDEXPCLM",
                                           "HISTORICAL", "TRACKINGTRANSFERS"})


def _line_amount_types(raw: Any, errors: list[str], default: str = "Exclusive") -> str:
    value = _field(raw, "LineAmountTypes")
    if value is None or value == "":
        return default
    normalised = _LINE_AMOUNT_TYPES.get(str(value).lower())
    if normalised is None:
        errors.append(f"LineAmountTypes '{value}' is not valid; use Exclusive, Inclusive or NoTax.")
        return default
    return normalised


def _optional_decimal(raw: Any, name: str, errors: list[str], line_no: int) -> Decimal | None:
    value = _field(raw, name)
    if value is None or value == "":
        return None
    try:
        return to_decimal(value)
    except ValueError:
        errors.append(f"Line item {line_no}: {name} '{value}' is not a number.")
        return None


def _tracking_for_line(ctx: WriteContext, raw: Any, errors: list[str], line_no: int) -> list[Record]:
    entries = _field(raw, "Tracking") or []
    if not isinstance(entries, list):
        errors.append(f"Line item {line_no}: Tracking must be an array.")
        return []
    limit = ctx.settings.max_tracking_categories_per_line
    if len(entries) > limit:
        errors.append(f"Line item {line_no}: a line item can have at most {limit} tracking categories.")
        return []
    resolved: list[Record] = []
    seen: set[str] = set()
    for entry in entries:
        category = ctx.org.tracking_category(_field(entry, "TrackingCategoryID"), _field(entry, "Name"))
        label = _field(entry, "Name") or _field(entry, "TrackingCategoryID")
        if category is None:
            errors.append(f"The tracking category '{label}' does not exist.")
            continue
        if category["Status"] != "ACTIVE":
            errors.append(f"The tracking category '{category['Name']}' is archived.")
            continue
        if category["TrackingCategoryID"] in seen:
            errors.append(f"Line item {line_no}: tracking category '{category['Name']}' is used more than once.")
            continue
        seen.add(category["TrackingCategoryID"])
        option_id, option_name = _field(entry, "TrackingOptionID"), _field(entry, "Option")
        option = next(
            (o for o in category["Options"]
             if (option_id and o["TrackingOptionID"] == str(option_id).lower())
             or (not option_id and option_name and o["Name"].lower() == str(option_name).strip().lower())),
            None,
        )
        if option is None:
            errors.append(f"The tracking option '{option_name or option_id}' is not valid for tracking category "
                          f"'{category['Name']}'.")
            continue
        if option["Status"] != "ACTIVE":
            errors.append(f"The tracking option '{option['Name']}' on tracking category '{category['Name']}' "
                          f"has been archived.")
            continue
        resolved.append({"TrackingCategoryID": category["TrackingCategoryID"],
                         "TrackingOptionID": option["TrackingOptionID"],
                         "Name": category["Name"], "Option": option["Name"]})
    return resolved


def _line_tax(amount: Decimal, percent: Decimal, amount_types: str) -> Decimal:
    if amount_types == "NoTax" or percent == 0:
        return Decimal("0.00")
    if amount_types == "Inclusive":
        return money(amount * percent / (Decimal(100) + percent))
    return money(amount * percent / Decimal(100))


@dataclass
class BuiltLines:
    lines: list[Record]
    sub_total: Decimal
    total_tax: Decimal

    @property
    def total(self) -> Decimal:
        return self.sub_total + self.total_tax

    def document_fields(self, amount_types: str) -> Record:
        """The lines and totals as a document carries them."""
        return {"LineAmountTypes": amount_types, "LineItems": self.lines, "SubTotal": self.sub_total,
                "TotalTax": self.total_tax, "Total": self.total}


def build_line_items(  # noqa: PLR0915 - one pass over Xero's line rules, kept together on purpose
    ctx: WriteContext,
    raw_lines: Any,
    *,
    sales: bool,
    amount_types: str,
    require_accounts: bool,
    allow_discounts: bool,
    errors: list[str],
) -> BuiltLines:
    if raw_lines is None:
        raw_lines = []
    if not isinstance(raw_lines, list):
        errors.append("LineItems must be an array.")
        return BuiltLines([], Decimal("0.00"), Decimal("0.00"))
    built: list[Record] = []
    sub_total = total_tax = Decimal("0.00")
    for line_no, raw in enumerate(raw_lines, start=1):
        if not isinstance(raw, dict):
            errors.append(f"Line item {line_no} is not an object.")
            continue
        item: Record | None = None
        item_code = _field(raw, "ItemCode")
        defaults: Record = {}
        if item_code:
            item = ctx.org.item_by_code(str(item_code))
            if item is None:
                errors.append(f"Item code '{item_code}' is not valid.")
            else:
                defaults = item["SalesDetails" if sales else "PurchaseDetails"] or {}
        description = _field(raw, "Description")
        if description is None and item is not None:
            description = item.get("Description" if sales else "PurchaseDescription") or item["Name"]
        quantity = _optional_decimal(raw, "Quantity", errors, line_no)
        unit_amount = _optional_decimal(raw, "UnitAmount", errors, line_no)
        if unit_amount is None and defaults.get("UnitPrice") is not None:
            unit_amount = Decimal(str(defaults["UnitPrice"]))
        given_line_amount = _optional_decimal(raw, "LineAmount", errors, line_no)
        discount_rate = _optional_decimal(raw, "DiscountRate", errors, line_no)
        discount_amount = _optional_decimal(raw, "DiscountAmount", errors, line_no)
        if (discount_rate is not None or discount_amount is not None) and not allow_discounts:
            errors.append(f"Line item {line_no}: discounts are only supported on sales invoices (ACCREC).")
        if not description and unit_amount is None and given_line_amount is None:
            errors.append(f"Line item {line_no}: Description needs to be at least 1 char long.")
            continue
        if unit_amount is not None:
            quantity = Decimal("1") if quantity is None else quantity
            gross = quantity * unit_amount
            if discount_rate is not None:
                gross = gross * (Decimal(100) - discount_rate) / Decimal(100)
            if discount_amount is not None:
                gross -= discount_amount
            line_amount = money(gross)
        elif given_line_amount is not None:
            quantity = Decimal("1") if quantity is None else quantity
            line_amount = money(given_line_amount)
            unit_amount = money(given_line_amount / quantity) if quantity else given_line_amount
        else:
            line_amount = Decimal("0.00")

        account, account_ref = ctx.org.account_by_ref(
            {"AccountID": _field(raw, "AccountID"), "Code": _field(raw, "AccountCode") or defaults.get("AccountCode")}
        )
        if account_ref and account is None:
            errors.append(f"Account code '{account_ref}' is not a valid code for this document.")
        elif account is not None:
            if account["Status"] != "ACTIVE":
                errors.append(f"Account code '{account['Code']}' has been archived, or deleted. Each line item "
                              f"must reference a valid account.")
            elif account.get("SystemAccount") in _NON_POSTABLE_SYSTEM_ACCOUNTS or account["Type"] == "BANK":
                errors.append(f"Account code '{account['Code']}' cannot be used on line items: it is a "
                              f"{'bank' if account['Type'] == 'BANK' else 'system'} account.")
        elif require_accounts and line_amount != 0:
            errors.append(f"Line item {line_no}: an AccountCode is required for approved documents.")

        tax_type = _field(raw, "TaxType") or defaults.get("TaxType") or (account or {}).get("TaxType") or "NONE"
        if amount_types == "NoTax":
            tax_type = "NONE"
        rate = ctx.org.tax_rates.get(str(tax_type).upper())
        percent = Decimal("0")
        if rate is None or rate["Status"] != "ACTIVE":
            errors.append(f"The TaxType code '{tax_type}' does not exist or cannot be used with this type of "
                          f"transaction.")
        else:
            tax_type = rate["TaxType"]
            percent = Decimal(str(rate["EffectiveRate"]))
            if account is not None and not rate.get(f"CanApplyTo{_CLASS_FLAG[account['Class']]}", True):
                errors.append(f"The TaxType code '{tax_type}' cannot be used with account code "
                              f"'{account['Code']}'.")
        given_tax = _optional_decimal(raw, "TaxAmount", errors, line_no)
        tax_amount = money(given_tax) if given_tax is not None and amount_types != "NoTax" else _line_tax(
            line_amount, percent, amount_types)
        tracking = _tracking_for_line(ctx, raw, errors, line_no)

        line: Record = {
            "LineItemID": str(_field(raw, "LineItemID") or new_id()).lower(),
            "Description": description,
            "Quantity": quantity,
            "UnitAmount": unit_amount,
            "ItemCode": item["Code"] if item else None,
            "AccountCode": account["Code"] if account else None,
            "AccountID": account["AccountID"] if account else None,
            "TaxType": tax_type,
            "TaxAmount": tax_amount,
            "LineAmount": line_amount,
            "DiscountRate": discount_rate,
            "DiscountAmount": discount_amount,
            "Tracking": tracking,
            "ValidationErrors": [],
        }
        built.append(line)
        total_tax += tax_amount
        sub_total += line_amount - (tax_amount if amount_types == "Inclusive" else Decimal("0"))
    return BuiltLines(built, money(sub_total), money(total_tax))


def _status(raw: Any, allowed: Iterable[str], default: str, errors: list[str], kind: str) -> str:
    value = _field(raw, "Status")
    status = str(value).upper() if value else default
    if status not in allowed:
        errors.append(f"{kind} status '{value}' is not valid here; use one of {', '.join(allowed)}.")
        return default
    return status


def _currency(ctx: WriteContext, raw: Any, errors: list[str]) -> str:
    currency = str(_field(raw, "CurrencyCode") or BASE_CURRENCY).upper()
    if currency != ctx.org.organisation["BaseCurrency"]:
        errors.append(f"Organisation is not subscribed to currency {currency}")
    return currency


def _url(raw: Any, errors: list[str]) -> str | None:
    url = _field(raw, "Url")
    if url and not re.match(r"^https?://\S+$", str(url)):
        errors.append(f"The Url '{url}' is not a valid absolute URL.")
    return str(url) if url else None


def _new_outcome(kind: str, collection: str, raw: Any) -> ElementOutcome:
    """The outcome of one element of a write; an element that is not an object has already failed."""
    outcome = ElementOutcome(kind, echo_element(raw))
    if not isinstance(raw, dict):
        outcome.errors.append(f"Each {collection} element must be an object.")
    return outcome


def _stored_target(ctx: WriteContext, raw: Record, store: dict[str, Record], kind: str, errors: list[str], *,
                   described: str) -> Record | None:
    """The stored record an element names by ``{kind}ID``, if any.

    PUT (``create``) may not name one that exists and POST (``upsert``) may not name one that does
    not; an element without the id creates a new record either way.
    """
    record_id = _field(raw, f"{kind}ID")
    if not record_id:
        return None
    existing = store.get(str(record_id).lower())
    if ctx.mode == "create" and existing is not None:
        errors.append(f"{described} with this {kind}ID already exists; use POST to update it.")
    elif ctx.mode == "upsert" and existing is None:
        errors.append(f"An existing {kind} with the specified {kind}ID could not be found.")
    return existing


def _updated_element(existing: Record, updatable: frozenset[str], raw: Record) -> Record:
    """An update is the stored record's updatable fields overlaid with what was sent."""
    return {**{k: v for k, v in existing.items() if k in updatable}, **raw}


def _account_summary(account: Record) -> Record:
    return {"AccountID": account["AccountID"], "Code": account["Code"], "Name": account["Name"]}


def _user_summary(user: Record) -> Record:
    return {k: user[k] for k in ("UserID", "EmailAddress", "FirstName", "LastName")}


# --------------------------------------------------------------------------------------------
# Invoices
# --------------------------------------------------------------------------------------------

_INVOICE_TYPES = ("ACCPAY", "ACCREC")
_INVOICE_CREATE_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED")
# Status changes allowed by an update, from → allowed targets.
_INVOICE_TRANSITIONS = {
    "DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "SUBMITTED": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "AUTHORISED": {"AUTHORISED", "VOIDED"},
}
_INVOICE_UPDATABLE = frozenset({"Type", "Contact", "Date", "DueDate", "LineAmountTypes", "InvoiceNumber",
                                "Reference", "Url", "CurrencyCode", "Status", "LineItems"})


def _accrec_number_taken(ctx: WriteContext, number: str, own_id: str | None) -> bool:
    wanted = number.strip().lower()
    if wanted in ctx.batch.invoice_numbers:
        return True
    return any(
        invoice["Type"] == "ACCREC" and invoice["Status"] != "DELETED" and invoice["InvoiceID"] != own_id
        and (invoice.get("InvoiceNumber") or "").lower() == wanted
        for invoice in ctx.org.invoices.values()
    )


def prepare_invoice(ctx: WriteContext, raw: Any) -> ElementOutcome:  # noqa: PLR0915
    outcome = _new_outcome("Invoice", "Invoices", raw)
    errors = outcome.errors
    if errors:
        return outcome
    existing = _stored_target(ctx, raw, ctx.org.invoices, "Invoice", errors, described="An invoice")
    if errors:
        return outcome
    if existing is not None:
        outcome.action = "update"
        if existing["Status"] not in _INVOICE_TRANSITIONS or existing["AmountPaid"] > 0:
            errors.append("This document cannot be edited as it has a payment or credit note allocated to it."
                          if existing["AmountPaid"] > 0 else
                          f"Invoice not of valid status for modification (it is {existing['Status']}).")
            return outcome
        raw = _updated_element(existing, _INVOICE_UPDATABLE, raw)

    invoice_type = str(_field(raw, "Type") or "").upper()
    if invoice_type not in _INVOICE_TYPES:
        errors.append("Invoice Type must be ACCPAY (bill) or ACCREC (sales invoice).")
        return outcome
    sales = invoice_type == "ACCREC"
    contact_errors: list[str] = []
    contact, new_contact = _resolve_contact(ctx, _field(raw, "Contact"), contact_errors)
    errors += contact_errors
    if existing is not None:
        target = _status(raw, ("DRAFT", "SUBMITTED", "AUTHORISED", "DELETED", "VOIDED"), existing["Status"],
                         errors, "Invoice")
        if target not in _INVOICE_TRANSITIONS[existing["Status"]]:
            errors.append(f"Invoice status cannot change from {existing['Status']} to {target}.")
        status = target
    else:
        status = _status(raw, _INVOICE_CREATE_STATUSES, "DRAFT", errors, "Invoice")
    invoice_date = _document_date(ctx, raw, errors) or ctx.today
    due_date = _document_date(ctx, raw, errors, "DueDate")
    if status not in {"DELETED", "VOIDED"}:
        _check_lock_date(ctx, invoice_date, status, errors)
    amount_types = _line_amount_types(raw, errors)
    currency = _currency(ctx, raw, errors)
    url = _url(raw, errors)
    lines = build_line_items(ctx, _field(raw, "LineItems"), sales=sales, amount_types=amount_types,
                             require_accounts=status in {"SUBMITTED", "AUTHORISED"}, allow_discounts=sales,
                             errors=errors)
    if status in {"SUBMITTED", "AUTHORISED"} and not lines.lines:
        errors.append("An approved invoice must have at least one line item.")
    number = _field(raw, "InvoiceNumber")
    number = str(number).strip() if number not in (None, "") else None
    if number is not None and len(number) > 255:
        errors.append("InvoiceNumber must be 255 characters or fewer.")
    own_id = existing["InvoiceID"] if existing else None
    if sales and number is not None and _accrec_number_taken(ctx, number, own_id):
        errors.append("Invoice # must be unique.")
    if outcome.errors:
        return outcome
    if sales and number is not None:
        ctx.batch.invoice_numbers.add(number.lower())

    def apply(now: datetime) -> Record:
        stored_contact = _stamp_contact(ctx, contact, new_contact, now, supplier=not sales, customer=sales)
        invoice_number = number
        if sales and invoice_number is None:
            invoice_number = existing.get("InvoiceNumber") if existing else None
            if invoice_number is None:
                invoice_number = _next_invoice_number(ctx)
        amount_paid = existing["AmountPaid"] if existing else Decimal("0.00")
        record: Record = {
            "Type": invoice_type,
            "InvoiceID": existing["InvoiceID"] if existing else new_id(),
            "InvoiceNumber": invoice_number,
            "Reference": _field(raw, "Reference"),
            "Contact": ctx.org.contact_summary(stored_contact),
            "Date": invoice_date,
            "DueDate": due_date,
            "Status": status,
            **lines.document_fields(amount_types),
            "TotalDiscount": None,
            "AmountDue": lines.total - amount_paid,
            "AmountPaid": amount_paid,
            "AmountCredited": Decimal("0.00"),
            "CurrencyCode": currency,
            "CurrencyRate": Decimal("1.000000"),
            "Url": url,
            "SentToContact": False,
            "IsDiscounted": any(line.get("DiscountRate") or line.get("DiscountAmount") for line in lines.lines),
            "HasAttachments": bool(ctx.org.attachments.get(existing["InvoiceID"])) if existing else False,
            "HasErrors": False,
            "Payments": existing["Payments"] if existing else [],
            "CreditNotes": [],
            "Prepayments": [],
            "Overpayments": [],
            "UpdatedDateUTC": now,
            # Which app created it (for createdByMyApp); underscored keys never reach the wire.
            "_CreatedByApp": existing.get("_CreatedByApp") if existing else ctx.client_id,
        }
        ctx.org.invoices[record["InvoiceID"]] = record
        return record

    outcome.apply = apply
    return outcome


def _next_invoice_number(ctx: WriteContext) -> str:
    while True:
        candidate = f"INV-{ctx.org.next_invoice_number:04d}"
        ctx.org.next_invoice_number += 1
        if not _accrec_number_taken(ctx, candidate, None):
            return candidate


def invoice_view(invoice: Record, *, summary_only: bool = False) -> Record:
    """An invoice as GET returns it (with DateString fields; no line items in summary form)."""
    view = dict(invoice)
    view["DateString"] = f"{invoice['Date'].isoformat()}T00:00:00"
    if invoice.get("DueDate"):
        view["DueDateString"] = f"{invoice['DueDate'].isoformat()}T00:00:00"
    view["UpdatedDateUTCString"] = invoice["UpdatedDateUTC"].strftime("%Y-%m-%dT%H:%M:%SZ")
    if summary_only:
        for heavy in ("LineItems", "Payments", "CreditNotes", "Prepayments", "Overpayments"):
            view.pop(heavy, None)
    return view


# --------------------------------------------------------------------------------------------
# Payments
# --------------------------------------------------------------------------------------------


def prepare_payment(ctx: WriteContext, raw: Any) -> ElementOutcome:
    outcome = _new_outcome("Payment", "Payments", raw)
    errors = outcome.errors
    if errors:
        return outcome
    if any(_field(raw, key) for key in ("CreditNote", "Prepayment", "Overpayment")):
        errors.append("The sandbox only applies payments to invoices and bills.")
        return outcome
    invoice_ref = _field(_field(raw, "Invoice"), "InvoiceID") or _field(_field(raw, "Invoice"), "InvoiceNumber") \
        or _field(raw, "InvoiceNumber")
    invoice = ctx.org.invoice_by_ref(str(invoice_ref)) if invoice_ref else None
    if invoice is None:
        errors.append(f"Invoice {invoice_ref} could not be found." if invoice_ref
                      else "A payment must reference an Invoice by InvoiceID or InvoiceNumber.")
    elif invoice["Status"] != "AUTHORISED":
        errors.append(f"Payments can only be applied to AUTHORISED documents; this invoice is {invoice['Status']}.")
    account, account_ref = ctx.org.account_by_ref(_field(raw, "Account") or {"Code": _field(raw, "Code")})
    if account is None:
        errors.append(f"Account {account_ref} could not be found." if account_ref
                      else "A payment must specify the Account it is paid from or into.")
    elif account["Status"] != "ACTIVE":
        errors.append(f"Account code '{account['Code']}' has been archived.")
    elif account["Type"] != "BANK" and not account.get("EnablePaymentsToAccount"):
        errors.append("Account type is invalid for making a payment to/from")
    amount_value = _field(raw, "Amount")
    amount: Decimal | None = None
    try:
        amount = money(to_decimal(amount_value))
        if amount <= 0:
            errors.append("Payment amount must be greater than zero.")
    except ValueError:
        errors.append("A payment must have an Amount.")
    payment_date = _document_date(ctx, raw, errors) or ctx.today
    _check_lock_date(ctx, payment_date, "AUTHORISED", errors)
    if invoice is not None and amount is not None and amount > 0:
        pending = ctx.batch.payments_by_invoice.get(invoice["InvoiceID"], Decimal("0"))
        if amount > invoice["AmountDue"] - pending:
            errors.append("Payment amount exceeds the amount outstanding on this document")
    if errors:
        return outcome
    assert invoice is not None and account is not None and amount is not None
    ctx.batch.payments_by_invoice[invoice["InvoiceID"]] = (
        ctx.batch.payments_by_invoice.get(invoice["InvoiceID"], Decimal("0")) + amount)
    reference = _field(raw, "Reference")
    reconciled = bool(_field(raw, "IsReconciled"))

    def apply(now: datetime) -> Record:
        payment: Record = {
            "PaymentID": new_id(),
            "Date": payment_date,
            "Amount": amount,
            "BankAmount": amount,
            "CurrencyRate": Decimal("1.000000"),
            "Reference": reference,
            "IsReconciled": reconciled,
            "Status": "AUTHORISED",
            "PaymentType": "ACCRECPAYMENT" if invoice["Type"] == "ACCREC" else "ACCPAYPAYMENT",
            "UpdatedDateUTC": now,
            "Invoice": {"InvoiceID": invoice["InvoiceID"], "InvoiceNumber": invoice.get("InvoiceNumber"),
                        "Type": invoice["Type"], "Contact": invoice["Contact"]},
            "Account": _account_summary(account),
            "HasAccount": True,
            "HasValidationErrors": False,
        }
        ctx.org.payments[payment["PaymentID"]] = payment
        invoice["AmountPaid"] += amount
        invoice["AmountDue"] -= amount
        invoice["Payments"].append({"PaymentID": payment["PaymentID"], "Date": payment_date, "Amount": amount,
                                    "Reference": reference, "CurrencyRate": Decimal("1.000000"),
                                    "HasAccount": False, "HasValidationErrors": False})
        if invoice["AmountDue"] <= 0:
            invoice["Status"] = "PAID"
            invoice["FullyPaidOnDate"] = payment_date
        invoice["UpdatedDateUTC"] = now
        return payment

    outcome.apply = apply
    return outcome


# --------------------------------------------------------------------------------------------
# Bank transactions (spend / receive money)
# --------------------------------------------------------------------------------------------


_BANK_TRANSACTION_UPDATABLE = frozenset({"Type", "Contact", "BankAccount", "Date", "Reference", "LineAmountTypes",
                                         "LineItems", "Url", "IsReconciled", "Status", "CurrencyCode"})


def prepare_bank_transaction(ctx: WriteContext, raw: Any) -> ElementOutcome:
    outcome = _new_outcome("BankTransaction", "BankTransactions", raw)
    errors = outcome.errors
    if errors:
        return outcome
    existing = _stored_target(ctx, raw, ctx.org.bank_transactions, "BankTransaction", errors,
                              described="A bank transaction")
    if errors:
        return outcome
    if existing is not None:
        outcome.action = "update"
        if existing["IsReconciled"] or existing["Status"] != "AUTHORISED":
            errors.append("This bank transaction cannot be edited: it is reconciled, deleted or voided.")
            return outcome
        raw = _updated_element(existing, _BANK_TRANSACTION_UPDATABLE, raw)
    transaction_type = str(_field(raw, "Type") or "").upper()
    if transaction_type not in {"SPEND", "RECEIVE"}:
        errors.append("BankTransaction Type must be SPEND or RECEIVE.")
        return outcome
    contact, new_contact = _resolve_contact(ctx, _field(raw, "Contact"), errors)
    bank, bank_ref = ctx.org.account_by_ref(_field(raw, "BankAccount") or {})
    if bank is None:
        errors.append(f"The bank account {bank_ref} could not be found." if bank_ref
                      else "A BankAccount (AccountID or Code) is required.")
    elif bank["Type"] != "BANK":
        errors.append(f"Account '{bank['Code']}' is not a bank account.")
    elif bank["Status"] != "ACTIVE":
        errors.append(f"The bank account '{bank['Code']}' has been archived.")
    status = _status(raw, ("AUTHORISED", "DELETED") if existing else ("AUTHORISED",), "AUTHORISED", errors,
                     "BankTransaction")
    transaction_date = _document_date(ctx, raw, errors) or ctx.today
    if status == "AUTHORISED":
        _check_lock_date(ctx, transaction_date, status, errors)
    amount_types = _line_amount_types(raw, errors)
    currency = _currency(ctx, raw, errors)
    url = _url(raw, errors)
    lines = build_line_items(ctx, _field(raw, "LineItems"), sales=transaction_type == "RECEIVE",
                             amount_types=amount_types, require_accounts=True, allow_discounts=False,
                             errors=errors)
    if not lines.lines and not errors:
        errors.append("A bank transaction must have at least one line item.")
    if errors:
        return outcome
    assert bank is not None
    reconciled = bool(_field(raw, "IsReconciled"))

    def apply(now: datetime) -> Record:
        stored_contact = _stamp_contact(ctx, contact, new_contact, now)
        record: Record = {
            "BankTransactionID": existing["BankTransactionID"] if existing else new_id(),
            "Type": transaction_type,
            "Contact": ctx.org.contact_summary(stored_contact),
            "BankAccount": _account_summary(bank),
            "IsReconciled": reconciled,
            "Date": transaction_date,
            "Reference": _field(raw, "Reference"),
            "CurrencyCode": currency,
            "CurrencyRate": Decimal("1.000000"),
            "Url": url,
            "Status": status,
            **lines.document_fields(amount_types),
            "UpdatedDateUTC": now,
            "HasAttachments": bool(ctx.org.attachments.get(existing["BankTransactionID"])) if existing else False,
        }
        ctx.org.bank_transactions[record["BankTransactionID"]] = record
        return record

    outcome.apply = apply
    return outcome


# --------------------------------------------------------------------------------------------
# Classic expense claims: receipts, then a claim grouping a user's receipts
# --------------------------------------------------------------------------------------------


def _user(ctx: WriteContext, raw: Any, errors: list[str]) -> Record | None:
    user_id = _field(_field(raw, "User"), "UserID")
    user = ctx.org.users.get(str(user_id).lower()) if user_id else None
    if user is None:
        errors.append("A valid user should be identified using the UserID.")
    return user


def prepare_receipt(ctx: WriteContext, raw: Any) -> ElementOutcome:
    outcome = _new_outcome("Receipt", "Receipts", raw)
    errors = outcome.errors
    if errors:
        return outcome
    if _field(raw, "ReceiptID"):
        errors.append("The sandbox creates receipts only; updating a receipt is not supported.")
        return outcome
    contact, new_contact = _resolve_contact(ctx, _field(raw, "Contact"), errors)
    user = _user(ctx, raw, errors)
    status = _status(raw, ("DRAFT",), "DRAFT", errors, "Receipt")
    receipt_date = _document_date(ctx, raw, errors) or ctx.today
    _check_lock_date(ctx, receipt_date, status, errors)
    amount_types = _line_amount_types(raw, errors)
    lines = build_line_items(ctx, _field(raw, "LineItems"), sales=False, amount_types=amount_types,
                             require_accounts=True, allow_discounts=False, errors=errors)
    if not lines.lines and not errors:
        errors.append("A receipt must have at least one line item.")
    url = _url(raw, errors)
    if errors:
        return outcome
    assert user is not None

    def apply(now: datetime) -> Record:
        stored_contact = _stamp_contact(ctx, contact, new_contact, now)
        number = ctx.org.receipt_numbers.get(user["UserID"], 0) + 1
        ctx.org.receipt_numbers[user["UserID"]] = number
        record: Record = {
            "ReceiptID": new_id(),
            "ReceiptNumber": str(number),
            "Status": status,
            "User": _user_summary(user),
            "Contact": ctx.org.contact_summary(stored_contact),
            "Date": receipt_date,
            "Reference": _field(raw, "Reference"),
            **lines.document_fields(amount_types),
            "Url": url,
            "HasAttachments": False,
            "UpdatedDateUTC": now,
        }
        ctx.org.receipts[record["ReceiptID"]] = record
        return record

    outcome.apply = apply
    return outcome


def prepare_expense_claim(ctx: WriteContext, raw: Any) -> ElementOutcome:
    outcome = _new_outcome("ExpenseClaim", "ExpenseClaims", raw)
    errors = outcome.errors
    if errors:
        return outcome
    user = _user(ctx, raw, errors)
    _status(raw, ("SUBMITTED",), "SUBMITTED", errors, "ExpenseClaim")
    raw_receipts = _field(raw, "Receipts") or []
    receipts: list[Record] = []
    if not isinstance(raw_receipts, list) or not raw_receipts:
        errors.append("An expense claim must include at least one receipt.")
    else:
        for entry in raw_receipts:
            receipt_id = str(_field(entry, "ReceiptID") or "").lower()
            receipt = ctx.org.receipts.get(receipt_id)
            if receipt is None:
                errors.append(f"Receipt {receipt_id or '(no ReceiptID)'} could not be found.")
            elif receipt["Status"] != "DRAFT" or receipt_id in ctx.batch.claimed_receipts:
                errors.append(f"Receipt {receipt_id} is already part of an expense claim.")
            elif user is not None and receipt["User"]["UserID"] != user["UserID"]:
                errors.append(f"Receipt {receipt_id} belongs to another user.")
            else:
                receipts.append(receipt)
    if errors:
        return outcome
    assert user is not None
    ctx.batch.claimed_receipts.update(r["ReceiptID"] for r in receipts)

    def apply(now: datetime) -> Record:
        total = sum((r["Total"] for r in receipts), Decimal("0.00"))
        for receipt in receipts:
            receipt["Status"] = "SUBMITTED"
            receipt["UpdatedDateUTC"] = now
        record: Record = {
            "ExpenseClaimID": new_id(),
            "Status": "SUBMITTED",
            "User": _user_summary(user),
            "Receipts": [{"ReceiptID": r["ReceiptID"], "ReceiptNumber": r["ReceiptNumber"], "Status": r["Status"],
                          "Total": r["Total"], "Date": r["Date"]} for r in receipts],
            "Payments": [],
            "Total": total,
            "AmountDue": total,
            "AmountPaid": Decimal("0.00"),
            "ReportingDate": ctx.today,
            "UpdatedDateUTC": now,
        }
        ctx.org.expense_claims[record["ExpenseClaimID"]] = record
        return record

    outcome.apply = apply
    return outcome


# --------------------------------------------------------------------------------------------
# Contacts
# --------------------------------------------------------------------------------------------

_CONTACT_WRITABLE = (
    "ContactNumber", "AccountNumber", "Name", "FirstName", "LastName", "CompanyNumber", "EmailAddress",
    "BankAccountDetails", "TaxNumber", "AccountsReceivableTaxType", "AccountsPayableTaxType", "Addresses",
    "Phones", "DefaultCurrency", "PurchasesDefaultAccountCode", "SalesDefaultAccountCode",
)


def prepare_contact(ctx: WriteContext, raw: Any) -> ElementOutcome:
    outcome = _new_outcome("Contact", "Contacts", raw)
    errors = outcome.errors
    if errors:
        return outcome
    existing: Record | None = None
    contact_id = _field(raw, "ContactID")
    if contact_id:
        existing = ctx.org.contacts.get(str(contact_id).lower())
        if existing is None or ctx.mode == "create":
            errors.append("An existing Contact with the specified ContactID could not be found."
                          if existing is None else "A contact with this ContactID already exists; use POST.")
            return outcome
        outcome.action = "update"
    name = _field(raw, "Name")
    name = str(name).strip() if name is not None else (existing or {}).get("Name")
    status = str(_field(raw, "ContactStatus") or (existing or {}).get("ContactStatus") or "ACTIVE").upper()
    if status not in {"ACTIVE", "ARCHIVED"}:
        errors.append(f"ContactStatus '{status}' is not valid; use ACTIVE or ARCHIVED.")
    if not name:
        errors.append("The contact name must be specified.")
    elif len(name) > 255:
        errors.append("The contact name must be 255 characters or fewer.")
    elif status == "ACTIVE":
        clash = any(c["Name"].lower() == name.lower() and c["ContactStatus"] == "ACTIVE"
                    and c["ContactID"] != (existing or {}).get("ContactID") for c in ctx.org.contacts.values())
        if clash or name.lower() in ctx.batch.contact_names:
            errors.append(f"The contact name {name} is already assigned to another contact. The contact name "
                          f"must be unique across all active contacts.")
    if errors:
        return outcome
    assert name is not None
    ctx.batch.contact_names.add(name.lower())
    changes = {key: _field(raw, key) for key in _CONTACT_WRITABLE if _field(raw, key) is not None}

    def apply(now: datetime) -> Record:
        record: Record = existing if existing is not None else {
            "ContactID": new_id(), "IsSupplier": False, "IsCustomer": False, "Addresses": [], "Phones": [],
            "ContactGroups": [], "ContactPersons": [], "HasAttachments": False, "HasValidationErrors": False,
            "DefaultCurrency": BASE_CURRENCY,
        }
        record.update(changes)
        record["Name"] = name
        record["ContactStatus"] = status
        record["UpdatedDateUTC"] = now
        ctx.org.contacts[record["ContactID"]] = record
        return record

    outcome.apply = apply
    return outcome


_CONTACT_SUMMARY_FIELDS = (
    "ContactID", "ContactNumber", "AccountNumber", "ContactStatus", "Name", "FirstName", "LastName",
    "CompanyNumber", "EmailAddress", "TaxNumber", "IsSupplier", "IsCustomer", "DefaultCurrency",
    "UpdatedDateUTC", "HasAttachments", "HasValidationErrors",
)


def contact_view(contact: Record, *, summary_only: bool = False) -> Record:
    if summary_only:
        return {key: contact.get(key) for key in _CONTACT_SUMMARY_FIELDS}
    return contact


# --------------------------------------------------------------------------------------------
# Attachments
# --------------------------------------------------------------------------------------------

# Endpoint (as spelled in URLs) → what the sandbox can attach to.
ATTACHABLE_ENDPOINTS = {
    "invoices": "Invoices", "banktransactions": "BankTransactions", "receipts": "Receipts",
    "contacts": "Contacts", "accounts": "Accounts",
}
_FORBIDDEN_FILENAME_CHARS = set('<>:"/\\|?*')


class AttachmentRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def add_attachment(
    org: XeroOrganisation,
    settings: XeroSettings,
    *,
    endpoint: str,
    document_id: str,
    file_name: str,
    content: bytes,
    mime_type: str,
    include_online: bool,
    replace_same_name: bool,
    url: str,
) -> Record:
    """Store an attachment on a document, enforcing Xero's name, size and count limits."""
    document = org.document(endpoint, document_id)
    if document is None:
        raise AttachmentRejected(404, "The resource you're looking for cannot be found")
    if not file_name or any(ch in _FORBIDDEN_FILENAME_CHARS for ch in file_name):
        raise AttachmentRejected(400, f"The file name '{file_name}' contains characters that are not allowed "
                                      f"(< > : \" / \\ | ? *).")
    if not content:
        raise AttachmentRejected(400, "The attachment is empty.")
    if len(content) > settings.attachment_max_bytes:
        raise AttachmentRejected(413, f"The attachment is larger than the {settings.attachment_max_bytes} byte "
                                      f"limit.")
    existing = org.attachments.setdefault(document_id, [])
    same_name = next((a for a in existing if a["FileName"].lower() == file_name.lower()), None)
    if same_name is not None and replace_same_name:
        existing.remove(same_name)
        org.attachment_content.pop(same_name["AttachmentID"], None)
    if len(existing) >= settings.attachments_per_document:
        raise AttachmentRejected(400, f"A document can have at most {settings.attachments_per_document} "
                                      f"attachments.")
    attachment: Record = {
        "AttachmentID": new_id(),
        "FileName": file_name,
        "Url": url,
        "MimeType": mime_type,
        "ContentLength": len(content),
        "IncludeOnline": include_online if endpoint == "invoices" else None,
    }
    existing.append(attachment)
    org.attachment_content[attachment["AttachmentID"]] = content
    document["HasAttachments"] = True
    return attachment
