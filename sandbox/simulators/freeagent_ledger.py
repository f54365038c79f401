"""FreeAgent's ledger model for the simulator: companies, records, wire format and business rules.

Records are kept close to FreeAgent's JSON (snake_case keys) with native Python values — ``date``,
``datetime`` (UTC, whole seconds, which is what FreeAgent prints), ``Decimal`` — and *relative*
references (``"/v2/contacts/12"``). :func:`render` turns a record into FreeAgent JSON for one
request: decimals become strings (``"120.0"``), timestamps ISO-8601 with ``Z``, and every
reference gains the request's origin, so ids are full URLs on whatever origin the simulator is
reached by (in-process, a loopback port, a proxy). Keys starting with ``_`` are internal.

Writes are two-phase, as in the Xero model: ``prepare_*`` validates one element against the
company without changing anything and returns a :class:`Prepared` whose ``apply`` performs it, so
a batch of expenses can be all-or-nothing. Messages imitate Rails validation wording ("Reference
can't be blank") because FreeAgent is a Rails application; the exact texts are not documented.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sandbox.simulators.ledger_values import (
    money,
    numeric_company_id,
    to_decimal,
    utc_timestamp,
    whole_seconds,
)
from sandbox.simulators.seed import (
    BANK_KINDS,
    AccountKind,
    SeedAccount,
    SeedOrganisation,
    VatKey,
)

if TYPE_CHECKING:
    from sandbox.simulators.freeagent import FreeAgentSettings

Record = dict[str, Any]

COMPANY_CURRENCY = "GBP"
# Currencies a bill or expense may be in, with the sandbox's fixed rate into GBP (FreeAgent uses
# live rates; a fixed table keeps native values deterministic).
EXCHANGE_RATES: dict[str, Decimal] = {
    "GBP": Decimal("1"), "EUR": Decimal("0.85"), "USD": Decimal("0.78"), "CHF": Decimal("0.88"),
    "SEK": Decimal("0.072"), "NOK": Decimal("0.071"), "DKK": Decimal("0.114"), "PLN": Decimal("0.197"),
    "CAD": Decimal("0.56"), "AUD": Decimal("0.51"), "JPY": Decimal("0.0051"),
}

TAXABLE, EXEMPT, OUT_OF_SCOPE = "TAXABLE", "EXEMPT", "OUT_OF_SCOPE"
SALES_TAX_STATUSES = (TAXABLE, EXEMPT, OUT_OF_SCOPE)

# The four arrays of GET /v2/categories, in FreeAgent's order.
CATEGORY_GROUPS = ("admin_expenses_categories", "cost_of_sales_categories", "income_categories",
                   "general_categories")
INCOME_GROUP = "income_categories"
COST_GROUPS = frozenset({"admin_expenses_categories", "cost_of_sales_categories"})

# Permission levels (GET /v2/users permission_level) [src].
PERMISSION_NAMES = {
    0: "No Access", 1: "Time", 2: "My Money", 3: "Contacts & Projects", 4: "Invoices, Estimates & Files",
    5: "Bills", 6: "Banking", 7: "Tax, Accounting & Users", 8: "Full",
}

INVOICE_ITEM_TYPES = ("Hours", "Days", "Weeks", "Months", "Years", "Products", "Services", "Training",
                      "Expenses", "Comment", "Bills", "Discount", "Credit", "VAT", "Stock", "-no unit-")
BILL_ITEM_UNITS = ("-no unit-", "Hours", "Days", "Weeks", "Months", "Years", "Products", "Services",
                   "Training", "Stock")
CHARGE_SALES_TAX = ("Auto", "Always", "Never")
# HMRC approved mileage allowance payments, first 10,000 miles (what FreeAgent reclaims at).
MILEAGE_RATES = {"Car": Decimal("0.45"), "Motorcycle": Decimal("0.24"), "Bicycle": Decimal("0.20")}

# Reference-valued keys: their relative paths gain the request origin when rendered.
URL_KEYS = frozenset({
    "url", "contact", "category", "project", "user", "bank_account", "bank_transaction", "paid_bill",
    "paid_user", "bill", "invoice", "content_src", "rebill_to_project",
})


# --------------------------------------------------------------------------------------------
# Wire format
# --------------------------------------------------------------------------------------------


def fa_decimal(value: Decimal) -> str:
    """FreeAgent prints decimals as strings with at least one decimal place: "120.0", "83.33"."""
    text = format(value, "f")
    if "." not in text:
        return f"{text}.0"
    text = text.rstrip("0")
    return f"{text}0" if text.endswith(".") else text


def render(value: Any, origin: str, key: str | None = None) -> Any:
    """A stored record → FreeAgent JSON for a request reaching the simulator at ``origin``."""
    if isinstance(value, dict):
        return {k: render(v, origin, k) for k, v in value.items() if v is not None and not k.startswith("_")}
    if isinstance(value, list | tuple):
        return [render(item, origin, key) for item in value]
    if isinstance(value, datetime):
        return utc_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return fa_decimal(value)
    if key in URL_KEYS and isinstance(value, str) and value.startswith("/"):
        return f"{origin}{value}"
    return value


def _minutes_ago(now: datetime, minutes: int) -> datetime:
    return whole_seconds(now - timedelta(minutes=minutes))


def _humanise(name: str) -> str:
    """``dated_on`` → ``Dated on`` (how Rails names attributes in messages)."""
    return name.replace("_", " ").capitalize()


# --------------------------------------------------------------------------------------------
# Mapping the neutral seed into FreeAgent shapes
# --------------------------------------------------------------------------------------------

_AUTO_RATE_NAMES: dict[VatKey, str] = {
    VatKey.STANDARD: "Standard rate",
    VatKey.REDUCED: "Reduced rate",
    VatKey.ZERO: "Zero rate",
    VatKey.EXEMPT: "Exempt",
    VatKey.NO_VAT: "Outside of the scope of VAT",
    VatKey.HISTORIC_STANDARD: "Standard rate",
}

_VAT_STATUS: dict[VatKey, str] = {
    VatKey.STANDARD: "standard", VatKey.REDUCED: "reduced", VatKey.ZERO: "zero",
    VatKey.EXEMPT: "out_of_scope", VatKey.NO_VAT: "out_of_scope", VatKey.HISTORIC_STANDARD: "standard",
}

# Account kind → (categories array, group_description).
_CATEGORY_PLACES: dict[AccountKind, tuple[str, str]] = {
    AccountKind.REVENUE: ("income_categories", "Income"),
    AccountKind.OTHER_INCOME: ("income_categories", "Other income"),
    AccountKind.DIRECT_COSTS: ("cost_of_sales_categories", "Cost of sales"),
    AccountKind.OVERHEADS: ("admin_expenses_categories", "Admin expenses"),
    AccountKind.DEPRECIATION: ("admin_expenses_categories", "Admin expenses"),
    AccountKind.CURRENT_ASSET: ("general_categories", "Current assets"),
    AccountKind.FIXED_ASSET: ("general_categories", "Fixed assets"),
    AccountKind.INVENTORY: ("general_categories", "Current assets"),
    AccountKind.PREPAYMENT: ("general_categories", "Current assets"),
    AccountKind.CURRENT_LIABILITY: ("general_categories", "Current liabilities"),
    AccountKind.LONG_TERM_LIABILITY: ("general_categories", "Long-term liabilities"),
    AccountKind.EQUITY: ("general_categories", "Capital and reserves"),
}

_ROLES = {"admin": ("Director", 8), "standard": ("Employee", 2), "invoice_only": ("Employee", 4)}


def _subdomain(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())[:30]


@dataclass
class FreeAgentCompany:
    """One FreeAgent company and everything in it. Record dicts are keyed by their numeric id
    (categories by nominal code)."""

    key: str
    company_id: str
    name: str
    company: Record
    sales_tax_rates: tuple[Decimal, ...]
    # auto_sales_tax_rate name → (rate, sales_tax_status)
    auto_rates: dict[str, tuple[Decimal, str]]
    users: dict[int, Record] = field(default_factory=dict)
    categories: dict[str, Record] = field(default_factory=dict)
    contacts: dict[int, Record] = field(default_factory=dict)
    price_list_items: dict[int, Record] = field(default_factory=dict)
    projects: dict[int, Record] = field(default_factory=dict)
    bank_accounts: dict[int, Record] = field(default_factory=dict)
    bills: dict[int, Record] = field(default_factory=dict)
    invoices: dict[int, Record] = field(default_factory=dict)
    expenses: dict[int, Record] = field(default_factory=dict)
    explanations: dict[int, Record] = field(default_factory=dict)
    attachments: dict[int, Record] = field(default_factory=dict)
    attachment_content: dict[int, bytes] = field(default_factory=dict)
    _next_ids: dict[str, int] = field(default_factory=dict)

    def next_id(self, collection: str) -> int:
        """The next id of a collection (bills, bill_items, ...), as a database sequence would."""
        value = self._next_ids.get(collection, 1)
        self._next_ids[collection] = value + 1
        return value

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_seed(cls, seed: SeedOrganisation, now: datetime) -> FreeAgentCompany:
        rates = {rate.key: rate for rate in seed.vat_rates}
        active_percents = sorted({r.percent for r in seed.vat_rates if not r.archived}, reverse=True)
        auto_rates: dict[str, tuple[Decimal, str]] = {
            "Standard rate": (rates[VatKey.STANDARD].percent, TAXABLE),
            "Reduced rate": (rates[VatKey.REDUCED].percent, TAXABLE),
            "Zero rate": (rates[VatKey.ZERO].percent, TAXABLE),
            "Exempt": (Decimal("0"), EXEMPT),
            "Outside of the scope of VAT": (Decimal("0"), OUT_OF_SCOPE),
        }
        created = _minutes_ago(now, seed.created_minutes_ago)
        company = cls(
            key=seed.key,
            company_id=numeric_company_id("freeagent", seed.key),
            name=seed.name,
            sales_tax_rates=tuple(active_percents),
            auto_rates=auto_rates,
            company={
                "url": "/v2/company",
                "id": numeric_company_id("freeagent", seed.key),
                "name": seed.name,
                "subdomain": _subdomain(seed.name),
                "type": "UkLimitedCompany",
                "currency": seed.base_currency,
                "mileage_units": "miles",
                "company_start_date": created.date(),
                "freeagent_start_date": created.date(),
                "first_accounting_year_end": date(created.year + 1, seed.financial_year_end_month,
                                                  seed.financial_year_end_day),
                "address1": seed.address.line1,
                "town": seed.address.city,
                "postcode": seed.address.postcode,
                "country": seed.address.country,
                "company_registration_number": seed.company_number,
                "contact_email": "accounts@" + _subdomain(seed.name) + ".example",
                "short_date_format": "dd mmm yy",
                "sales_tax_name": "VAT",
                "sales_tax_registration_status": "Registered",
                "sales_tax_registration_number": seed.vat_number.replace(" ", "")[2:],
                "sales_tax_effective_date": created.date(),
                "sales_tax_rates": [fa_decimal(p) for p in active_percents],
                "sales_tax_is_value_added": True,
                "cis_enabled": False,
                "cis_subcontractor": False,
                "cis_contractor": False,
                "locked_attributes": [],
                "created_at": created,
                "updated_at": created,
            },
        )
        company._load_users(seed, now)
        company._load_categories(seed, now)
        contact_ids = company._load_contacts(seed, now)
        company._load_price_list_items(seed, now)
        company._load_projects(seed, now, contact_ids)
        company._load_bank_accounts(seed, now)
        return company

    def _load_users(self, seed: SeedOrganisation, now: datetime) -> None:
        for person in seed.people:
            role, level = _ROLES[person.role]
            user_id = self.next_id("users")
            stamp = _minutes_ago(now, 60 * 24 * (30 + user_id))
            self.users[user_id] = {
                "url": f"/v2/users/{user_id}", "first_name": person.first_name, "last_name": person.last_name,
                "email": person.email, "role": role, "permission_level": level, "opening_mileage": 0,
                "_hidden": False, "created_at": stamp, "updated_at": stamp,
            }

    def _load_categories(self, seed: SeedOrganisation, now: datetime) -> None:
        for account in seed.accounts:
            place = _CATEGORY_PLACES.get(account.kind)
            # Bank accounts are bank accounts in FreeAgent, system accounts are FreeAgent's own and
            # archived accounts do not exist: none of them is a category a client may choose.
            if place is None or account.kind in BANK_KINDS or account.system_role or account.archived:
                continue
            group, description = place
            record: Record = {
                "url": f"/v2/categories/{account.code}",
                "description": account.name,
                "nominal_code": account.code,
                "group_description": description,
                "_group": group,
                "_updated_at": _minutes_ago(now, account.updated_minutes_ago),
            }
            if group in COST_GROUPS:
                record["allowable_for_tax"] = not _is_disallowable(account)
                record["tax_reporting_name"] = account.name
            if group != "general_categories":
                record["auto_sales_tax_rate"] = _AUTO_RATE_NAMES[account.vat]
            self.categories[account.code] = record

    def _load_contacts(self, seed: SeedOrganisation, now: datetime) -> dict[str, int]:
        ids_by_key: dict[str, int] = {}
        for contact in seed.contacts:
            contact_id = self.next_id("contacts")
            ids_by_key[contact.key] = contact_id
            stamp = _minutes_ago(now, contact.updated_minutes_ago)
            self.contacts[contact_id] = {
                "url": f"/v2/contacts/{contact_id}",
                "organisation_name": contact.name,
                "first_name": contact.first_name,
                "last_name": contact.last_name,
                "email": contact.email,
                "phone_number": contact.phone,
                "address1": contact.address.line1,
                "town": contact.address.city,
                "postcode": contact.address.postcode,
                "country": contact.address.country,
                "contact_name_on_invoices": True,
                "default_payment_terms_in_days": 30,
                "locale": "en",
                "account_balance": Decimal("0"),
                "uses_contact_invoice_sequence": False,
                "charge_sales_tax": "Auto",
                "sales_tax_registration_number": contact.vat_number,
                "active_projects_count": 0,
                "status": "Hidden" if contact.archived else "Active",
                "_is_supplier": contact.is_supplier,
                "_is_customer": contact.is_customer,
                "created_at": stamp - timedelta(days=120),
                "updated_at": stamp,
            }
        return ids_by_key

    def _load_price_list_items(self, seed: SeedOrganisation, now: datetime) -> None:
        for item in seed.items:
            price = item.sales or item.purchase
            if price is None:
                continue
            item_id = self.next_id("price_list_items")
            stamp = _minutes_ago(now, item.updated_minutes_ago)
            self.price_list_items[item_id] = {
                "url": f"/v2/price_list_items/{item_id}",
                "code": item.code,
                "item_type": "Products" if item.purchase is not None else "Services",
                "description": item.name,
                "price": price.unit_price,
                "quantity": Decimal("1"),
                "vat_status": _VAT_STATUS[price.vat],
                "category": f"/v2/categories/{price.account_code}" if price.account_code in self.categories else None,
                "created_at": stamp - timedelta(days=90),
                "updated_at": stamp,
            }

    def _load_projects(self, seed: SeedOrganisation, now: datetime, contact_ids: dict[str, int]) -> None:
        for index, project in enumerate(seed.projects, start=1):
            project_id = self.next_id("projects")
            contact_id = contact_ids[project.customer_key]
            # Projects carry no age in the seed; space them out deterministically.
            stamp = _minutes_ago(now, 60 * 24 * (7 * index + 3))
            self.projects[project_id] = {
                "url": f"/v2/projects/{project_id}",
                "name": project.name,
                "contact": f"/v2/contacts/{contact_id}",
                "contact_name": self.contacts[contact_id]["organisation_name"],
                "budget": project.estimate,
                "is_ir35": False,
                "status": "Completed" if project.closed else "Active",
                "budget_units": "Monetary",
                "normal_billing_rate": Decimal("0"),
                "hours_per_day": Decimal("8"),
                "uses_project_invoice_sequence": False,
                "currency": seed.base_currency,
                "billing_period": "hour",
                "include_unbilled_time_in_profitability": True,
                "ends_on": project.deadline,
                "created_at": stamp - timedelta(days=30),
                "updated_at": stamp,
            }
            if not project.closed:
                self.contacts[contact_id]["active_projects_count"] += 1

    def _load_bank_accounts(self, seed: SeedOrganisation, now: datetime) -> None:
        primary_taken = False
        for account in seed.accounts:
            if account.kind not in BANK_KINDS:
                continue
            bank_id = self.next_id("bank_accounts")
            is_card = account.kind is AccountKind.CREDIT_CARD
            is_primary = not is_card and not primary_taken and not account.archived
            primary_taken = primary_taken or is_primary
            stamp = _minutes_ago(now, account.updated_minutes_ago)
            details = account.bank
            self.bank_accounts[bank_id] = {
                "url": f"/v2/bank_accounts/{bank_id}",
                "type": "CreditCardAccount" if is_card else "StandardBankAccount",
                "name": account.name,
                "currency": seed.base_currency,
                "is_personal": False,
                "is_primary": is_primary,
                "status": "hidden" if account.archived else "active",
                "bank_name": "Sandbox Bank",
                "opening_balance": Decimal("0"),
                "current_balance": Decimal("0"),
                # FreeAgent keeps only the last four digits of a card number.
                "account_number": (details.account_number[-4:] if is_card else details.account_number)
                if details else None,
                "sort_code": (details.sort_code or None) if details and not is_card else None,
                "bank_guess_enabled": False,
                "created_at": stamp - timedelta(days=365),
                "updated_at": stamp,
                "_nominal_code": account.code,
            }

    # -- look-ups --------------------------------------------------------------------------------

    def user_by_email(self, email: str) -> Record | None:
        wanted = email.strip().lower()
        return next((u for u in self.users.values() if u["email"].lower() == wanted), None)

    @staticmethod
    def record_id(record: Record) -> int:
        return int(record["url"].rsplit("/", 1)[1])

    def category_group(self, code: str) -> str | None:
        category = self.categories.get(code)
        return category["_group"] if category else None


def _is_disallowable(account: SeedAccount) -> bool:
    lowered = account.name.lower()
    return "entertainment" in lowered or account.kind is AccountKind.DEPRECIATION


# --------------------------------------------------------------------------------------------
# Reading requests
# --------------------------------------------------------------------------------------------


class ReferenceReader:
    """Turns the URL references in a request body into record ids, as FreeAgent reads them.

    FreeAgent ids are URLs. A reference must be a URL whose path is ``/v2/<collection>/<id>``;
    with ``origin_must_match`` (the stricter default) its scheme and host must be the origin the
    request reached, i.e. a URL the client got from this same API, not one it built.
    """

    def __init__(self, origin: str, *, origin_must_match: bool) -> None:
        self._origin = urlsplit(origin)
        self._origin_must_match = origin_must_match

    def read(self, value: Any, collection: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if not parts.scheme or not parts.netloc:
            return None
        if self._origin_must_match and (parts.scheme.lower(), parts.netloc.lower()) != (
                self._origin.scheme.lower(), self._origin.netloc.lower()):
            return None
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) != 3 or segments[:2] != ["v2", collection] or parts.query:
            return None
        return segments[2]


@dataclass
class Prepared:
    """One validated element of a write: its errors, or a write ready to apply."""

    kind: str
    errors: list[str] = field(default_factory=list)
    apply: Callable[[datetime], Record] | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class WriteContext:
    company: FreeAgentCompany
    settings: FreeAgentSettings
    today: date
    refs: ReferenceReader
    # The company user the token acts as, and whether it may act for other users (expenses).
    acting_user_id: int
    may_act_for_others: bool


class _Errors(list[str]):
    """Validation messages, optionally prefixed with the element they belong to."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    def add(self, message: str) -> None:
        self.append(f"{self.prefix}{message}")

    def blank(self, name: str) -> None:
        self.add(f"{_humanise(name)} can't be blank")

    def missing(self, raw: Record, name: str, *, required: bool) -> bool:
        """Whether ``name`` is left out (absent, null or blank text); a required one is reported."""
        value = raw.get(name)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return False
        if required:
            self.blank(name)
        return True


def _text(raw: Record, name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _date(raw: Record, name: str, errors: _Errors, *, required: bool) -> date | None:
    if errors.missing(raw, name, required=required):
        return None
    value = raw[name]
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        errors.add(f"{_humanise(name)} is not a valid date (use YYYY-MM-DD)")
        return None


def _decimal(raw: Record, name: str, errors: _Errors, *, required: bool = False) -> Decimal | None:
    if errors.missing(raw, name, required=required):
        return None
    value = raw[name]
    try:
        return to_decimal(value)
    except ValueError:
        errors.add(f"{_humanise(name)} is not a number")
        return None


_SINGULAR = {"contacts": "contact", "categories": "category", "projects": "project", "users": "user",
             "bills": "bill", "bank_accounts": "bank account"}


def _reference(ctx: WriteContext, raw: Record, name: str, collection: str, errors: _Errors, *,
               required: bool, store: dict[Any, Record] | None = None) -> Record | None:
    """Resolve a URL reference to an existing record of ``collection`` (or add an error)."""
    if errors.missing(raw, name, required=required):
        return None
    value = raw[name]
    ident = ctx.refs.read(value, collection)
    if ident is None:
        errors.add(f"{_humanise(name)} must be the URL of a {_SINGULAR[collection]} from this API "
                   f"(got {value!r})")
        return None
    records = store if store is not None else getattr(ctx.company, collection)
    key: Any = ident if collection == "categories" else (int(ident) if ident.isdigit() else None)
    record = records.get(key) if key is not None else None
    if record is None:
        errors.add(f"{_humanise(name)} {value} does not exist")
    return record


def _currency(raw: Record, errors: _Errors) -> str:
    currency = (_text(raw, "currency") or COMPANY_CURRENCY).upper()
    if currency not in EXCHANGE_RATES:
        errors.add(f"Currency {currency} is not supported")
    return currency


@dataclass(frozen=True)
class AttachmentUpload:
    file_name: str
    content_type: str
    description: str | None
    content: bytes


def _attachment(ctx: WriteContext, raw: Any, errors: _Errors) -> AttachmentUpload | None:
    """The inline ``attachment`` object: base64 ``data``, ``file_name``, ``content_type`` [src]."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errors.add("Attachment must be an object with data, file_name and content_type")
        return None
    sub = _Errors(f"{errors.prefix}Attachment ")
    file_name = _text(raw, "file_name")
    content_type = (_text(raw, "content_type") or "").lower()
    data = raw.get("data")
    if not file_name:
        sub.add("file name can't be blank")
    allowed = ctx.settings.attachment_content_types
    if content_type not in allowed:
        sub.add(f"content type {content_type or '(none)'} is not allowed; use one of {', '.join(allowed)}")
    content = b""
    if not isinstance(data, str) or not data.strip():
        sub.add("data can't be blank")
    else:
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            sub.add("data is not valid base64")
    if len(content) > ctx.settings.attachment_max_bytes:
        sub.add(f"is too large ({len(content)} bytes; the maximum is {ctx.settings.attachment_max_bytes})")
    errors.extend(sub)
    if sub or not file_name:
        return None
    return AttachmentUpload(file_name, content_type, _text(raw, "description"), content)


def store_attachment(company: FreeAgentCompany, upload: AttachmentUpload | None, now: datetime) -> Record | None:
    if upload is None:
        return None
    attachment_id = company.next_id("attachments")
    record: Record = {
        "url": f"/v2/attachments/{attachment_id}",
        # A pre-signed link in FreeAgent; here a path on the simulator that needs no token.
        "content_src": f"/v2/attachments/{attachment_id}/content",
        "content_type": upload.content_type,
        "file_name": upload.file_name,
        "file_size": len(upload.content),
        "description": upload.description,
        "created_at": now,
        "updated_at": now,
    }
    company.attachments[attachment_id] = record
    company.attachment_content[attachment_id] = upload.content
    return record


# --------------------------------------------------------------------------------------------
# Sales tax
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SalesTax:
    rate: Decimal
    status: str


def _sales_tax(ctx: WriteContext, raw: Record, category: Record | None, errors: _Errors, *,
               foreign_currency: bool = False) -> SalesTax:
    """Resolve a line's ``sales_tax_rate`` / ``sales_tax_status``.

    Left out (or ``"Auto"``), the rate comes from the category's ``auto_sales_tax_rate`` [src];
    a number must be one of the company's ``sales_tax_rates``; EXEMPT and OUT_OF_SCOPE carry no
    tax. Foreign-currency expenses ignore the rate [src].
    """
    status_raw = _text(raw, "sales_tax_status")
    status = status_raw.upper() if status_raw else None
    if status is not None and status not in SALES_TAX_STATUSES:
        errors.add(f"Sales tax status must be one of {', '.join(SALES_TAX_STATUSES)}")
        status = None
    if status in (EXEMPT, OUT_OF_SCOPE):
        return SalesTax(Decimal("0"), status)
    if foreign_currency:
        return SalesTax(Decimal("0"), status or TAXABLE)
    rate_raw = raw.get("sales_tax_rate")
    if rate_raw is None or (isinstance(rate_raw, str) and rate_raw.strip().lower() in {"", "auto"}):
        auto_name = (category or {}).get("auto_sales_tax_rate")
        rate, auto_status = ctx.company.auto_rates.get(auto_name or "", (Decimal("0"), OUT_OF_SCOPE))
        return SalesTax(rate, status or auto_status)
    try:
        rate = to_decimal(rate_raw)
    except ValueError:
        errors.add("Sales tax rate is not a number")
        return SalesTax(Decimal("0"), TAXABLE)
    if rate not in ctx.company.sales_tax_rates:
        allowed = ", ".join(fa_decimal(r) for r in ctx.company.sales_tax_rates)
        errors.add(f"Sales tax rate {rate_raw} is not one of the company's rates ({allowed})")
    return SalesTax(rate, status or TAXABLE)


def tax_in_gross(gross: Decimal, rate: Decimal) -> Decimal:
    """The tax inside a tax-inclusive amount, with the amount's sign."""
    return money(gross * rate / (Decimal("100") + rate)) if rate else Decimal("0")


def _check_category_direction(ctx: WriteContext, category: Record | None, errors: _Errors, *, cost: bool) -> None:
    if category is None or not ctx.settings.category_direction_checks:
        return
    group = category["_group"]
    if cost and group == INCOME_GROUP:
        errors.add(f"Category {category['nominal_code']} ({category['description']}) is an income category "
                   f"and cannot be used on a cost")
    if not cost and group in COST_GROUPS:
        errors.add(f"Category {category['nominal_code']} ({category['description']}) is an expense category "
                   f"and cannot be used on a sale")


# --------------------------------------------------------------------------------------------
# Bills
# --------------------------------------------------------------------------------------------


def _item_objects(items: list[Any], label: str, errors: _Errors) -> Iterator[tuple[Record, _Errors]]:
    """Each item of a document with its own errors, prefixed ``"<label> <n>: "`` (the caller adds
    them to ``errors`` once the item is checked); an item that is not an object is reported here."""
    for number, item in enumerate(items, start=1):
        item_errors = _Errors(f"{label} {number}: ")
        if isinstance(item, dict):
            yield item, item_errors
        else:
            item_errors.add("must be an object")
            errors.extend(item_errors)


def _bill_items(ctx: WriteContext, raw: Record, errors: _Errors) -> list[Any] | None:
    items = raw.get("bill_items")
    if items is None and "category" in raw:
        # The pre-2020 single-category bill body still seen in older collections.
        if not ctx.settings.accept_legacy_single_category_bills:
            errors.add("Bill items can't be blank (single-category bills are no longer accepted; "
                       "send bill_items)")
            return None
        items = [{k: raw[k] for k in ("category", "total_value", "total_value_ex_tax", "sales_tax_rate",
                                      "sales_tax_status", "manual_sales_tax_amount", "description")
                  if k in raw}]
    if not isinstance(items, list) or not items:
        errors.add("Bill items can't be blank")
        return None
    if len(items) > ctx.settings.max_bill_items:
        errors.add(f"Bill items is too long (maximum is {ctx.settings.max_bill_items} items)")
        return None
    return items


@dataclass
class _Line:
    """A priced line: gross, net and tax, all in the document's currency."""

    gross: Decimal
    net: Decimal
    tax: Decimal
    sales_tax: SalesTax


def _price_line(raw: Record, tax: SalesTax, errors: _Errors, *, gross_name: str = "total_value",
                net_name: str = "total_value_ex_tax") -> _Line | None:
    reported = len(errors)
    gross = _decimal(raw, gross_name, errors)
    net = _decimal(raw, net_name, errors)
    unparseable = len(errors) > reported
    manual = _decimal(raw, "manual_sales_tax_amount", errors)
    if gross is not None and net is not None:
        errors.add(f"Give either {gross_name} or {net_name}, not both")
        return None
    if gross is None and net is None:
        if not unparseable:
            errors.blank(gross_name)
        return None
    if gross is not None:
        amount_tax = money(manual) if manual is not None else tax_in_gross(gross, tax.rate)
        return _Line(money(gross), money(gross) - amount_tax, amount_tax, tax)
    assert net is not None
    amount_tax = money(manual) if manual is not None else money(net * tax.rate / Decimal("100"))
    return _Line(money(net) + amount_tax, money(net), amount_tax, tax)


def prepare_bill(ctx: WriteContext, raw: Any) -> Prepared:
    errors = _Errors()
    if not isinstance(raw, dict):
        return Prepared("Bill", ["The request must have a root bill element"])
    contact = _reference(ctx, raw, "contact", "contacts", errors, required=True)
    reference = _text(raw, "reference")
    if reference is None:
        errors.blank("reference")
    dated_on = _date(raw, "dated_on", errors, required=True)
    due_on = _date(raw, "due_on", errors, required=True)
    currency = _currency(raw, errors)
    project = _reference(ctx, raw, "project", "projects", errors, required=False)
    attachment = _attachment(ctx, raw.get("attachment"), errors)
    comments = _text(raw, "comments")
    items_raw = _bill_items(ctx, raw, errors)
    lines: list[tuple[Record, _Line, Decimal, Record, Record | None]] = []
    for item, item_errors in _item_objects(items_raw or [], "Bill item", errors):
        category = _reference(ctx, item, "category", "categories", item_errors, required=True)
        _check_category_direction(ctx, category, item_errors, cost=True)
        item_project = _reference(ctx, item, "project", "projects", item_errors, required=False)
        unit = _text(item, "unit") or "-no unit-"
        if unit not in BILL_ITEM_UNITS:
            item_errors.add(f"Unit must be one of {', '.join(BILL_ITEM_UNITS)}")
        quantity = _decimal(item, "quantity", item_errors)
        tax = _sales_tax(ctx, item, category, item_errors)
        line = _price_line(item, tax, item_errors)
        errors.extend(item_errors)
        if line is not None and category is not None and not item_errors:
            lines.append((item, line, quantity if quantity is not None else Decimal("1"), category, item_project))
    prepared = Prepared("Bill", list(errors))
    if errors:
        return prepared
    assert contact is not None and dated_on is not None and due_on is not None

    def apply(now: datetime) -> Record:
        company = ctx.company
        bill_id = company.next_id("bills")
        bill_url = f"/v2/bills/{bill_id}"
        items: list[Record] = []
        for item, line, quantity, category, item_project in lines:
            item_id = company.next_id("bill_items")
            items.append({
                "url": f"/v2/bill_items/{item_id}",
                "bill": bill_url,
                "description": _text(item, "description"),
                "category": category["url"],
                "quantity": quantity,
                "unit": _text(item, "unit") or "-no unit-",
                "total_value": line.gross,
                "total_value_ex_tax": line.net,
                "sales_tax_status": line.sales_tax.status,
                "sales_tax_rate": line.sales_tax.rate,
                # FreeAgent shows a bill's tax negative (money out), its totals positive [src example].
                "sales_tax_value": -line.tax,
                "manual_sales_tax_amount": money(to_decimal(item["manual_sales_tax_amount"]))
                if item.get("manual_sales_tax_amount") not in (None, "") else None,
                "project": item_project["url"] if item_project else None,
            })
        total = sum((line.gross for _, line, _, _, _ in lines), Decimal("0"))
        tax_total = sum((line.tax for _, line, _, _, _ in lines), Decimal("0"))
        bill: Record = {
            "url": bill_url,
            "contact": contact["url"],
            "reference": reference,
            "dated_on": dated_on,
            "due_on": due_on,
            "currency": currency,
            "exchange_rate": EXCHANGE_RATES[currency],
            "input_total_values_inc_tax": currency != COMPANY_CURRENCY,
            "total_value": total,
            "net_value": total - tax_total,
            "sales_tax_value": -tax_total,
            "paid_value": Decimal("0"),
            "comments": comments,
            "project": project["url"] if project else None,
            "is_paid_by_hire_purchase": False,
            "ec_status": "UK/Non-EC",
            "attachment": store_attachment(company, attachment, now),
            "bill_items": items,
            "created_at": now,
            "updated_at": now,
        }
        company.bills[bill_id] = bill
        return bill

    prepared.apply = apply
    return prepared


def _relative_due(due_on: date, today: date) -> str:
    days = (due_on - today).days
    if days == 0:
        return "due today"
    if days > 0:
        return f"due in {days} day{'s' if days != 1 else ''}"
    return f"overdue by {-days} day{'s' if days != -1 else ''}"


def bill_view(bill: Record, today: date, *, nested_items: bool = True) -> Record:
    """The bill with its derived fields: status (Zero Value / Open / Overdue / Paid / Refunded)."""
    total, paid = bill["total_value"], bill["paid_value"]
    due = total - paid
    if total == 0:
        status = "Zero Value"
    elif due == 0:
        status = "Refunded" if total < 0 else "Paid"
    elif bill["due_on"] < today:
        status = "Overdue"
    else:
        status = "Open"
    view = {**bill, "due_value": due, "status": status,
            "long_status": status if status in {"Zero Value", "Paid", "Refunded"}
            else f"{status} - {_relative_due(bill['due_on'], today)}"}
    if not nested_items:
        view.pop("bill_items")
    return view


# --------------------------------------------------------------------------------------------
# Sales invoices
# --------------------------------------------------------------------------------------------


# A sales line without a category is charged at the standard rate when its rate is left out.
_UNCATEGORISED_SALE: Record = {"auto_sales_tax_rate": "Standard rate"}


def prepare_invoice(ctx: WriteContext, raw: Any) -> Prepared:  # noqa: PLR0915 - one pass over the invoice rules
    errors = _Errors()
    if not isinstance(raw, dict):
        return Prepared("Invoice", ["The request must have a root invoice element"])
    contact = _reference(ctx, raw, "contact", "contacts", errors, required=True)
    dated_on = _date(raw, "dated_on", errors, required=True)
    terms_raw = raw.get("payment_terms_in_days")
    terms: int | None = None
    if terms_raw is None or terms_raw == "":
        errors.blank("payment_terms_in_days")
    else:
        try:
            terms = int(str(terms_raw))
            if terms < 0:
                raise ValueError(terms)
        except ValueError:
            errors.add("Payment terms in days must be a whole number of days")
    currency = _currency(raw, errors)
    project = _reference(ctx, raw, "project", "projects", errors, required=False)
    reference = _text(raw, "reference")
    if reference is not None and any(i["reference"] == reference for i in ctx.company.invoices.values()):
        errors.add("Reference has already been taken")
    items_raw = raw.get("invoice_items")
    if items_raw is not None and not isinstance(items_raw, list):
        errors.add("Invoice items must be an array")
        items_raw = []
    lines: list[tuple[Record, Decimal, Decimal, SalesTax, Record | None]] = []
    for item, item_errors in _item_objects(items_raw or [], "Invoice item", errors):
        item_type = _text(item, "item_type") or "Hours"
        if item_type not in INVOICE_ITEM_TYPES:
            item_errors.add(f"Item type must be one of {', '.join(INVOICE_ITEM_TYPES)}")
        if _text(item, "description") is None:
            item_errors.blank("description")
        price = _decimal(item, "price", item_errors, required=item_type != "Comment")
        quantity = _decimal(item, "quantity", item_errors)
        category = _reference(ctx, item, "category", "categories", item_errors, required=False)
        _check_category_direction(ctx, category, item_errors, cost=False)
        tax = _sales_tax(ctx, item, category or _UNCATEGORISED_SALE, item_errors)
        errors.extend(item_errors)
        if not item_errors:
            lines.append((item, price or Decimal("0"), quantity if quantity is not None else Decimal("1"), tax,
                          category))
    prepared = Prepared("Invoice", list(errors))
    if errors:
        return prepared
    assert contact is not None and dated_on is not None and terms is not None

    def apply(now: datetime) -> Record:
        company = ctx.company
        invoice_id = company.next_id("invoices")
        invoice_url = f"/v2/invoices/{invoice_id}"
        items: list[Record] = []
        net_total = tax_total = Decimal("0")
        for item, price, quantity, tax, category in lines:
            net = money(price * quantity)
            line_tax = money(net * tax.rate / Decimal("100"))
            net_total += net
            tax_total += line_tax
            items.append({
                "url": f"/v2/invoice_items/{company.next_id('invoice_items')}",
                "invoice": invoice_url,
                "item_type": _text(item, "item_type") or "Hours",
                "description": _text(item, "description"),
                "price": price,
                "quantity": quantity,
                "sales_tax_rate": tax.rate,
                "sales_tax_status": tax.status,
                "sales_tax_value": line_tax,
                "category": category["url"] if category else None,
            })
        invoice: Record = {
            "url": invoice_url,
            "contact": contact["url"],
            "dated_on": dated_on,
            "due_on": dated_on + timedelta(days=terms),
            "reference": reference or f"{invoice_id:03d}",
            "currency": currency,
            "exchange_rate": EXCHANGE_RATES[currency],
            "net_value": net_total,
            "sales_tax_value": tax_total,
            "total_value": net_total + tax_total,
            "paid_value": Decimal("0"),
            "due_value": net_total + tax_total,
            "status": "Draft",
            "long_status": "Draft",
            "payment_terms_in_days": terms,
            "project": project["url"] if project else None,
            "comments": _text(raw, "comments"),
            "invoice_items": items,
            "created_at": now,
            "updated_at": now,
        }
        company.invoices[invoice_id] = invoice
        return invoice

    prepared.apply = apply
    return prepared


# --------------------------------------------------------------------------------------------
# Expenses
# --------------------------------------------------------------------------------------------


def prepare_expense(ctx: WriteContext, raw: Any, *, label: str = "") -> Prepared:
    errors = _Errors(label)
    if not isinstance(raw, dict):
        return Prepared("Expense", [f"{label}The request must have a root expense element"])
    user = _reference(ctx, raw, "user", "users", errors, required=True)
    if user is not None and ctx.company.record_id(user) != ctx.acting_user_id and not ctx.may_act_for_others:
        errors.add("User: you do not have permission to create expenses for other users")
    mileage_claim = _text(raw, "category") == "Mileage"
    category = None if mileage_claim else _reference(ctx, raw, "category", "categories", errors, required=True)
    _check_category_direction(ctx, category, errors, cost=True)
    dated_on = _date(raw, "dated_on", errors, required=True)
    if _text(raw, "description") is None:
        errors.blank("description")
    currency = _currency(raw, errors)
    project = _reference(ctx, raw, "project", "projects", errors, required=False)
    attachment = _attachment(ctx, raw.get("attachment"), errors)
    gross: Decimal | None = None
    mileage: Decimal | None = None
    if mileage_claim:
        mileage = _decimal(raw, "mileage", errors, required=True)
        vehicle = _text(raw, "vehicle_type")
        if vehicle not in MILEAGE_RATES:
            errors.add(f"Vehicle type must be one of {', '.join(MILEAGE_RATES)}")
        elif mileage is not None:
            # reclaim_mileage=1 reclaims at the AMAP rate; 0 (default) only rebills: no money owed.
            reclaim = str(raw.get("reclaim_mileage", "0")) == "1"
            gross = -money(mileage * MILEAGE_RATES[vehicle]) if reclaim else Decimal("0")
    else:
        gross = _decimal(raw, "gross_value", errors, required=True)
        if gross is not None and gross == 0:
            # Negative: owed to the claimant; positive: a refund due from them [src]. Zero is neither.
            errors.add("Gross value can't be zero (negative: owed to the claimant; positive: refund from them)")
    tax = _sales_tax(ctx, raw, category, errors, foreign_currency=currency != COMPANY_CURRENCY)
    manual = _decimal(raw, "manual_sales_tax_amount", errors)
    prepared = Prepared("Expense", list(errors))
    if errors:
        return prepared
    assert user is not None and dated_on is not None and gross is not None

    def apply(now: datetime) -> Record:
        company = ctx.company
        expense_id = company.next_id("expenses")
        rate = EXCHANGE_RATES[currency]
        sales_tax = tax_in_gross(gross, tax.rate)
        native_gross = money(gross * rate)
        # manual_sales_tax_amount is in native currency; like the gross, tax out is negative.
        native_tax = (manual.copy_abs() if gross > 0 else -manual.copy_abs()) if manual is not None \
            else money(sales_tax * rate)
        expense: Record = {
            "url": f"/v2/expenses/{expense_id}",
            "user": user["url"],
            "category": "Mileage" if mileage_claim else category["url"] if category else None,
            "dated_on": dated_on,
            "currency": currency,
            "gross_value": gross,
            "native_gross_value": native_gross,
            "sales_tax_rate": tax.rate,
            "sales_tax_status": tax.status,
            "sales_tax_value": sales_tax,
            "native_sales_tax_value": native_tax,
            "manual_sales_tax_amount": money(manual) if manual is not None else None,
            "description": _text(raw, "description"),
            "receipt_reference": _text(raw, "receipt_reference"),
            "project": project["url"] if project else None,
            "mileage": mileage,
            "vehicle_type": _text(raw, "vehicle_type") if mileage_claim else None,
            "ec_status": "UK/Non-EC",
            "attachment": store_attachment(company, attachment, now),
            "created_at": now,
            "updated_at": now,
        }
        company.expenses[expense_id] = expense
        return expense

    prepared.apply = apply
    return prepared


# --------------------------------------------------------------------------------------------
# Contacts
# --------------------------------------------------------------------------------------------


def prepare_contact(ctx: WriteContext, raw: Any) -> Prepared:
    errors = _Errors()
    if not isinstance(raw, dict):
        return Prepared("Contact", ["The request must have a root contact element"])
    organisation = _text(raw, "organisation_name")
    first, last = _text(raw, "first_name"), _text(raw, "last_name")
    if organisation is None and (first is None or last is None):
        errors.add("First name and last name can't be blank unless an organisation name is given")
    charge = _text(raw, "charge_sales_tax") or "Auto"
    if charge not in CHARGE_SALES_TAX:
        errors.add(f"Charge sales tax must be one of {', '.join(CHARGE_SALES_TAX)}")
    status = _text(raw, "status") or "Active"
    if status not in {"Active", "Hidden"}:
        errors.add("Status must be Active or Hidden")
    terms = raw.get("default_payment_terms_in_days")
    if terms not in (None, "") and not str(terms).strip().isdigit():
        errors.add("Default payment terms in days must be a whole number of days")
    email = _text(raw, "email")
    if email is not None and "@" not in email:
        errors.add("Email is invalid")
    prepared = Prepared("Contact", list(errors))
    if errors:
        return prepared

    def apply(now: datetime) -> Record:
        company = ctx.company
        contact_id = company.next_id("contacts")
        contact: Record = {
            "url": f"/v2/contacts/{contact_id}",
            "organisation_name": organisation,
            "first_name": first,
            "last_name": last,
            "email": email,
            "billing_email": _text(raw, "billing_email"),
            "phone_number": _text(raw, "phone_number"),
            "mobile": _text(raw, "mobile"),
            "address1": _text(raw, "address1"),
            "address2": _text(raw, "address2"),
            "address3": _text(raw, "address3"),
            "town": _text(raw, "town"),
            "region": _text(raw, "region"),
            "postcode": _text(raw, "postcode"),
            "country": _text(raw, "country") or "United Kingdom",
            "contact_name_on_invoices": bool(raw.get("contact_name_on_invoices", True)),
            "default_payment_terms_in_days": int(terms) if terms not in (None, "") else 30,
            "locale": _text(raw, "locale") or "en",
            "account_balance": Decimal("0"),
            "uses_contact_invoice_sequence": bool(raw.get("uses_contact_invoice_sequence", False)),
            "charge_sales_tax": charge,
            "sales_tax_registration_number": _text(raw, "sales_tax_registration_number"),
            "active_projects_count": 0,
            "status": status,
            "_is_supplier": False,
            "_is_customer": False,
            "created_at": now,
            "updated_at": now,
        }
        company.contacts[contact_id] = contact
        return contact

    prepared.apply = apply
    return prepared


def contact_sort_name(contact: Record) -> str:
    """FreeAgent's default contact order: organisation name, last name, first name."""
    return " ".join(str(contact.get(k) or "") for k in ("organisation_name", "last_name", "first_name")).lower()


# --------------------------------------------------------------------------------------------
# Bank transaction explanations
# --------------------------------------------------------------------------------------------


def prepare_explanation(ctx: WriteContext, raw: Any) -> Prepared:  # noqa: PLR0915 - one pass over the rules
    errors = _Errors()
    if not isinstance(raw, dict):
        return Prepared("BankTransactionExplanation",
                        ["The request must have a root bank_transaction_explanation element"])
    bank_account: Record | None = None
    if raw.get("bank_transaction") not in (None, ""):
        # The simulator holds no imported bank feed, so there is no transaction to explain.
        errors.add(f"Bank transaction {raw['bank_transaction']} does not exist")
    elif raw.get("bank_account") in (None, ""):
        errors.add("Bank account can't be blank unless a bank transaction is given")
    else:
        bank_account = _reference(ctx, raw, "bank_account", "bank_accounts", errors, required=True)
        if bank_account is not None and bank_account["status"] != "active":
            errors.add(f"Bank account {bank_account['name']} is hidden")
    dated_on = _date(raw, "dated_on", errors, required=True)
    gross = _decimal(raw, "gross_value", errors, required=True)
    if gross is not None and gross == 0:
        errors.add("Gross value can't be zero")
    targets = [name for name in ("category", "paid_bill", "paid_user") if raw.get(name) not in (None, "")]
    if len(targets) != 1:
        errors.add("Give exactly one of category, paid_bill or paid_user")
    category = paid_bill = paid_user = None
    tax = SalesTax(Decimal("0"), OUT_OF_SCOPE)
    if "category" in targets:
        category = _reference(ctx, raw, "category", "categories", errors, required=True)
        tax = _sales_tax(ctx, raw, category, errors)
    if "paid_bill" in targets:
        paid_bill = _reference(ctx, raw, "paid_bill", "bills", errors, required=True)
        if paid_bill is not None and gross is not None:
            due = paid_bill["total_value"] - paid_bill["paid_value"]
            if gross > 0:
                errors.add("Gross value must be negative (money out) to pay a bill")
            elif -gross > due:
                errors.add(f"Gross value {fa_decimal(gross)} is more than the {fa_decimal(due)} due on the bill")
    if "paid_user" in targets:
        paid_user = _reference(ctx, raw, "paid_user", "users", errors, required=True)
    if _text(raw, "description") is None:
        errors.blank("description")
    attachment = _attachment(ctx, raw.get("attachment"), errors)
    prepared = Prepared("BankTransactionExplanation", list(errors))
    if errors:
        return prepared
    assert bank_account is not None and dated_on is not None and gross is not None

    def apply(now: datetime) -> Record:
        company = ctx.company
        explanation_id = company.next_id("bank_transaction_explanations")
        transaction_id = company.next_id("bank_transactions")
        kind = ("Bill Payment" if paid_bill else "Money Paid to User" if paid_user and gross < 0
                else "Money Received from User" if paid_user else "Payment" if gross < 0 else "Receipt")
        explanation: Record = {
            "url": f"/v2/bank_transaction_explanations/{explanation_id}",
            "bank_account": bank_account["url"],
            "bank_transaction": f"/v2/bank_transactions/{transaction_id}",
            "type": kind,
            "dated_on": dated_on,
            "gross_value": gross,
            "sales_tax_rate": tax.rate if category else None,
            "sales_tax_status": tax.status if category else None,
            "sales_tax_value": tax_in_gross(gross, tax.rate) if category else None,
            "description": _text(raw, "description"),
            "category": category["url"] if category else None,
            "paid_bill": paid_bill["url"] if paid_bill else None,
            "paid_user": paid_user["url"] if paid_user else None,
            "is_money_in": gross > 0,
            "is_money_out": gross < 0,
            "is_money_paid_to_user": paid_user is not None,
            "is_locked": False,
            "is_deletable": True,
            "marked_for_review": False,
            "attachment": store_attachment(company, attachment, now),
            "created_at": now,
            "updated_at": now,
        }
        company.explanations[explanation_id] = explanation
        bank_account["current_balance"] += gross
        bank_account["updated_at"] = now
        if paid_bill is not None:
            paid_bill["paid_value"] += -gross
            if paid_bill["paid_value"] == paid_bill["total_value"]:
                paid_bill["paid_on"] = dated_on
            paid_bill["updated_at"] = now
        return explanation

    prepared.apply = apply
    return prepared


__all__ = [
    "CATEGORY_GROUPS",
    "PERMISSION_NAMES",
    "FreeAgentCompany",
    "Prepared",
    "ReferenceReader",
    "WriteContext",
    "bill_view",
    "contact_sort_name",
    "fa_decimal",
    "prepare_bill",
    "prepare_contact",
    "prepare_expense",
    "prepare_explanation",
    "prepare_invoice",
    "render",
]
