"""Sage Business Cloud Accounting (v3.1) ledger model for the simulator: businesses, resources,
list shaping and the validation of writes.

Records are kept in Sage's JSON shapes (snake_case keys, references as ``{"id", "displayed_as",
"$path"}``) with native ``Decimal`` amounts and ``datetime`` stamps (``created_at``,
``updated_at``, ``deleted_at``); :func:`to_wire` renders them (UTC ISO-8601, numbers).

Writes validate the whole object and report every problem at once as Sage does: a JSON array of
diagnoses ``{"$severity", "$dataCode", "$message", "$source"}`` with HTTP 422 (raised here as
:class:`SageInvalid`). ``$source`` names the attribute as the reference shows it
(``invoice_lines.tax_rate_id``); messages follow Rails-style wording ("can't be blank", "is
invalid") where the reference gives none.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.simulators.harness import truncate_to_millis
from sandbox.simulators.ledger_values import money, parse_iso_timestamp, to_decimal, utc_timestamp
from sandbox.simulators.seed import (
    EXPENSE_KINDS,
    INCOME_KINDS,
    AccountKind,
    SeedOrganisation,
    SystemRole,
    VatKey,
    stable_uuid,
)

if TYPE_CHECKING:
    from sandbox.simulators.sage import SageSettings

Record = dict[str, Any]
TOLERANCE = Decimal("0.01")

# Resource name → whether it takes ``deleted_since`` [src spec] (ledger accounts and tax rates do not).
LIST_RESOURCES: dict[str, bool] = {
    "ledger_accounts": False, "contacts": True, "tax_rates": False, "products": True, "services": True,
    "analysis_types": False, "analysis_type_categories": False, "bank_accounts": True,
    "purchase_invoices": True, "purchase_quick_entries": True, "sales_invoices": True, "other_payments": True,
    "contact_payments": True, "attachments": True,
    # UNCONFIRMED: not in the published v3.1 definitions (see the simulator's module docstring).
    "bank_transactions": False,
}
# Resources a POST creates, and the wrapper key of the object in the body.
WRITABLE_RESOURCES: dict[str, str] = {
    "contacts": "contact", "purchase_invoices": "purchase_invoice",
    "purchase_quick_entries": "purchase_quick_entry", "sales_invoices": "sales_invoice",
    "other_payments": "other_payment", "contact_payments": "contact_payment", "attachments": "attachment",
}
DELETABLE_RESOURCES = frozenset(WRITABLE_RESOURCES)
# Attachment context type id → the resource it points into.
ATTACHMENT_CONTEXTS: dict[str, str] = {
    "PURCHASE_INVOICE": "purchase_invoices", "SALES_INVOICE": "sales_invoices",
    "PURCHASE_QUICK_ENTRY": "purchase_quick_entries", "OTHER_PAYMENT": "other_payments",
    "CONTACT_PAYMENT": "contact_payments", "CONTACT": "contacts",
}
# Tiers without analysis types or payments on account [src guide].
LIMITED_TIERS = frozenset({"START", "MICRO"})


# --------------------------------------------------------------------------------------------
# Diagnoses
# --------------------------------------------------------------------------------------------


def diagnosis(source: str, message: str, data_code: str = "RecordInvalid") -> Record:
    return {"$severity": "error", "$dataCode": data_code, "$message": message, "$source": source}


class SageInvalid(Exception):
    """One or more diagnoses; the HTTP layer answers ``status`` with the array."""

    def __init__(self, diagnoses: list[Record], status: int = 422) -> None:
        super().__init__("; ".join(f"{d['$source']}: {d['$message']}" for d in diagnoses))
        self.diagnoses = diagnoses
        self.status = status


class Problems:
    """Collects diagnoses while a whole object is checked, then raises them together."""

    def __init__(self) -> None:
        self.items: list[Record] = []

    def add(self, source: str, message: str) -> None:
        self.items.append(diagnosis(source, message))

    def missing(self, value: Any, source: str, *, required: bool = True) -> bool:
        """Whether ``value`` is blank; a blank required value is reported as "can't be blank"."""
        if not blank(value):
            return False
        if required:
            self.add(source, "can't be blank")
        return True

    def raise_if_any(self) -> None:
        if self.items:
            raise SageInvalid(self.items)


# --------------------------------------------------------------------------------------------
# Wire format and small readers
# --------------------------------------------------------------------------------------------


def sage_id(*parts: str) -> str:
    """Sage ids are 32 lowercase hex characters."""
    return uuid.UUID(stable_uuid("sage", *parts)).hex


def to_wire(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if isinstance(value, datetime):
        return utc_timestamp(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def parse_since(text: str) -> datetime:
    """``updated_or_created_since``/``deleted_since``: a date, or a date-time (offset optional: UTC)."""
    text = text.strip().replace(" ", "+")  # an unencoded "+" in a query string arrives as a space
    if "T" not in text:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    return parse_iso_timestamp(text)


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def read_amount(raw: Record, name: str, source: str, problems: Problems, *, required: bool = False) -> Decimal | None:
    value = raw.get(name)
    if problems.missing(value, source, required=required):
        return None
    try:
        return to_decimal(value)
    except ValueError:
        problems.add(source, "is not a number")
        return None


def read_date(raw: Record, name: str, source: str, problems: Problems, *, required: bool) -> date | None:
    value = raw.get(name)
    if problems.missing(value, source, required=required):
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        problems.add(source, "is not a valid date")
        return None


def base_ref(record: Record) -> Record:
    return {"id": record["id"], "displayed_as": record.get("displayed_as"), "$path": record["$path"]}


def system_ref(resource: str, key: str, displayed_as: str) -> Record:
    return {"id": key, "displayed_as": displayed_as, "$path": f"/{resource}/{key}"}


# --------------------------------------------------------------------------------------------
# Mapping the neutral seed into Sage shapes
# --------------------------------------------------------------------------------------------

_LEDGER_TYPES: dict[AccountKind, tuple[str, str]] = {
    AccountKind.BANK: ("BANK", "Bank"), AccountKind.CREDIT_CARD: ("BANK", "Bank"),
    AccountKind.CURRENT_ASSET: ("CURRENT_ASSETS", "Current Assets"),
    AccountKind.FIXED_ASSET: ("FIXED_ASSETS", "Fixed Assets"),
    AccountKind.INVENTORY: ("CURRENT_ASSETS", "Current Assets"),
    AccountKind.PREPAYMENT: ("CURRENT_ASSETS", "Current Assets"),
    AccountKind.CURRENT_LIABILITY: ("CURRENT_LIABILITY", "Current Liability"),
    AccountKind.LONG_TERM_LIABILITY: ("FUTURE_LIABILITY", "Future Liability"),
    AccountKind.EQUITY: ("EQUITY", "Equity"), AccountKind.REVENUE: ("SALES", "Sales"),
    AccountKind.OTHER_INCOME: ("OTHER_INCOME", "Other Income"),
    AccountKind.DIRECT_COSTS: ("DIRECT_EXPENSES", "Direct Expenses"),
    AccountKind.OVERHEADS: ("OVERHEADS", "Overheads"), AccountKind.DEPRECIATION: ("DEPRECIATION", "Depreciation"),
}
_CONTROL_NAMES: dict[SystemRole, str] = {
    SystemRole.RECEIVABLES: "SALES_LEDGER_CONTROL", SystemRole.PAYABLES: "PURCHASE_LEDGER_CONTROL",
    SystemRole.VAT: "SALES_TAX", SystemRole.RETAINED_EARNINGS: "RETAINED_EARNINGS",
    SystemRole.ROUNDING: "ROUNDING", SystemRole.HISTORICAL: "SUSPENSE",
    SystemRole.TRACKING_TRANSFERS: "SUSPENSE", SystemRole.UNPAID_EXPENSE_CLAIMS: "OTHER_CREDITORS",
}
_ASSET_KINDS = frozenset({AccountKind.CURRENT_ASSET, AccountKind.FIXED_ASSET, AccountKind.INVENTORY,
                          AccountKind.PREPAYMENT})
_LIABILITY_KINDS = frozenset({AccountKind.CURRENT_LIABILITY, AccountKind.LONG_TERM_LIABILITY, AccountKind.EQUITY})
VISIBILITY_AREAS = ("banking", "expenses", "journals", "other_payments", "other_receipts", "reporting", "sales")

# VatKey → (Sage tax rate id, name); the pre-2011 17.5 % lives on in GB_STANDARD's history.
_TAX_RATES: dict[VatKey, tuple[str, str]] = {
    VatKey.STANDARD: ("GB_STANDARD", "Standard"), VatKey.REDUCED: ("GB_LOWER", "Lower"),
    VatKey.ZERO: ("GB_ZERO", "Zero"), VatKey.EXEMPT: ("GB_EXEMPT", "Exempt"),
    VatKey.NO_VAT: ("GB_NO_TAX", "No Tax"), VatKey.HISTORIC_STANDARD: ("GB_STANDARD", "Standard"),
}


def _visibility(kind: AccountKind, *, control: bool, archived: bool) -> dict[str, bool]:
    if archived:
        return dict.fromkeys(VISIBILITY_AREAS, False)
    if control:
        return {area: area in {"journals", "reporting"} for area in VISIBILITY_AREAS}
    expense = kind in EXPENSE_KINDS
    income = kind in INCOME_KINDS
    return {
        "banking": kind not in {AccountKind.BANK, AccountKind.CREDIT_CARD},
        "expenses": expense or kind in _ASSET_KINDS,
        "journals": True,
        "other_payments": expense or kind in _ASSET_KINDS or kind in _LIABILITY_KINDS,
        "other_receipts": income or kind in _LIABILITY_KINDS,
        "reporting": True,
        "sales": income,
    }


@dataclass
class SageBusiness:
    """One business of the seeded user and everything in it."""

    id: str
    name: str
    business: Record
    financial_settings: Record
    business_settings: Record
    tier: str
    resources: dict[str, dict[str, Record]] = field(default_factory=lambda: {r: {} for r in LIST_RESOURCES})
    attachment_content: dict[str, bytes] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_seed(cls, seed: SeedOrganisation, now: datetime, tier: str) -> SageBusiness:
        def ago(minutes: int) -> datetime:
            return truncate_to_millis(now - timedelta(minutes=minutes))

        business_id = sage_id("business", seed.key)
        created = ago(seed.created_minutes_ago)
        year_end = date(now.year, seed.financial_year_end_month, seed.financial_year_end_day)
        business = cls(
            id=business_id, name=seed.name, tier=tier,
            business={
                "id": business_id, "displayed_as": seed.name, "$path": f"/businesses/{business_id}",
                "name": seed.name, "address_line_1": seed.address.line1, "address_line_2": None,
                "city": seed.address.city, "postal_code": seed.address.postcode,
                "country": {"id": seed.country_code, "displayed_as": "United Kingdom (GB)"},
                "region": None, "telephone": None, "mobile": None, "website": None, "is_demo": False,
                "ni_based": False, "created_at": created, "updated_at": created,
            },
            financial_settings={
                "$path": "/financial_settings", "year_end_date": year_end.isoformat(),
                "year_end_lockdown_date": seed.period_lock_date.isoformat() if seed.period_lock_date else None,
                "accounting_type": "accrual", "accounts_start_date": created.date().isoformat(),
                "base_currency": system_ref("currencies", seed.base_currency, "Pound Sterling (GBP)"),
                "multi_currency_enabled": False, "use_live_exchange_rates": False,
                "mtd_activation_status": "active", "mtd_connected": True,
                "tax_scheme": {"id": "STANDARD", "displayed_as": "Standard", "$path": "/tax_schemes/STANDARD"},
                "tax_return_frequency": system_ref("tax_return_frequencies", "QUARTERLY", "Quarterly"),
                "tax_number": seed.vat_number.replace(" ", ""), "sales_tax_calculation": "invoice",
                "purchase_tax_calculation": "invoice", "updated_at": created,
            },
            business_settings={
                "$path": "/business_settings",
                "business_type": {"id": "LIMITED_COMPANY", "displayed_as": "Limited Company"},
                "country_of_registration": {"id": "ENGLAND_AND_WALES", "displayed_as": "England & Wales"},
                "business_created_at": created, "updated_at": created,
            },
        )
        business._load_tax_rates(seed, created)
        business._load_ledger_accounts(seed, ago)
        business._load_bank_accounts(seed, ago)
        business._load_contacts(seed, ago)
        business._load_items(seed, ago)
        business._load_analysis(seed, created)
        business._load_bank_lines(seed, now)
        business.business["subscriptions"] = business.subscriptions()
        return business

    def subscriptions(self) -> list[Record]:
        names = {"START": "Accounting Start", "ACCOUNTING": "Accounting", "ACCOUNTING_PLUS": "Accounting Plus",
                 "MICRO": "Micro"}
        return [{"id": self.tier, "displayed_as": names.get(self.tier, self.tier), "active": True,
                 "status": "ACTIVE", "created_at": self.business["created_at"],
                 "updated_at": self.business["created_at"]}]

    def rid(self, *parts: str) -> str:
        return sage_id(self.id, *parts)

    def _add(self, resource: str, record: Record) -> Record:
        record.setdefault("$path", f"/{resource}/{record['id']}")
        self.resources[resource][record["id"]] = record
        return record

    def _load_tax_rates(self, seed: SeedOrganisation, created: datetime) -> None:
        history = {r.key: r for r in seed.vat_rates}
        for rate in seed.vat_rates:
            rate_id, name = _TAX_RATES[rate.key]
            if rate_id in self.resources["tax_rates"]:
                continue
            percentages = [{"percentage": rate.percent, "from_date": "2011-01-04", "to_date": None}]
            if rate.key is VatKey.STANDARD and VatKey.HISTORIC_STANDARD in history:
                old = history[VatKey.HISTORIC_STANDARD].percent
                percentages.insert(0, {"percentage": old, "from_date": "2010-01-01", "to_date": "2011-01-03"})
            self._add("tax_rates", {
                "id": rate_id, "displayed_as": f"{name} {rate.percent:.2f}%", "name": name, "agency": None,
                "percentage": rate.percent, "percentages": percentages, "is_visible": True, "retailer": False,
                "editable": False, "deletable": False, "is_combined_rate": False, "component_tax_rates": [],
                "created_at": created, "updated_at": created,
            })

    def _load_ledger_accounts(self, seed: SeedOrganisation, ago: Callable[[int], datetime]) -> None:
        for account in seed.accounts:
            type_id, type_name = _LEDGER_TYPES[account.kind]
            control = account.system_role is not None
            nominal = int(account.code)
            updated = ago(account.updated_minutes_ago)
            visible = _visibility(account.kind, control=control, archived=account.archived)
            record: Record = {
                "id": self.rid("ledger_account", account.code), "displayed_as": f"{account.name} ({nominal})",
                "name": account.name, "display_name": account.name, "nominal_code": nominal,
                "ledger_account_type": system_ref("ledger_account_types", type_id, type_name),
                "ledger_account_group": {"id": "INCOME" if account.kind in INCOME_KINDS else "EXPENDITURE"
                                         if account.kind in EXPENSE_KINDS else "BALANCE_SHEET",
                                         "displayed_as": None},
                "included_in_chart": not account.archived,
                "visible_scopes": [area for area, shown in visible.items() if shown],
                **{f"visible_in_{area}": shown for area, shown in visible.items()},
                "is_control_account": control,
                "control_name": _CONTROL_NAMES[account.system_role] if account.system_role else None,
                "tax_rate": None, "fixed_tax_rate": False,
                "created_at": updated - timedelta(days=30), "updated_at": updated,
                "_code": account.code, "_kind": account.kind.value,
            }
            if not control and account.kind not in {AccountKind.BANK, AccountKind.CREDIT_CARD}:
                rate_id, name = _TAX_RATES[account.vat]
                record["tax_rate"] = system_ref("tax_rates", rate_id, name)
            self._add("ledger_accounts", record)

    def ledger_account_by_code(self, code: str) -> Record:
        return next(a for a in self.resources["ledger_accounts"].values() if a["_code"] == code)

    def _load_bank_accounts(self, seed: SeedOrganisation, ago: Callable[[int], datetime]) -> None:
        for account in seed.accounts:
            if account.kind not in {AccountKind.BANK, AccountKind.CREDIT_CARD}:
                continue
            ledger = self.ledger_account_by_code(account.code)
            card = account.kind is AccountKind.CREDIT_CARD
            kind = "CREDIT_CARD" if card else "SAVINGS" if "saving" in account.name.lower() else "CHECKING"
            updated = ago(account.updated_minutes_ago)
            self._add("bank_accounts", {
                "id": self.rid("bank_account", account.code), "displayed_as": ledger["displayed_as"],
                "bank_account_details": {"account_name": account.name,
                                         "account_number": account.bank.account_number if account.bank else None,
                                         "sort_code": account.bank.sort_code if account.bank else None,
                                         "bic": None, "iban": None},
                "ledger_account": base_ref(ledger),
                "bank_account_type": system_ref("bank_account_types", kind, kind.replace("_", " ").title()),
                "balance": Decimal("0"), "nominal_code": ledger["nominal_code"], "editable": True,
                "deletable": True, "deleted_at": None,
                "default_payment_method": system_ref("payment_methods", "CREDIT_DEBIT" if card else "BANK_TRANSFER",
                                                     "Credit/Debit Card" if card else "Bank Transfer"),
                "created_at": updated - timedelta(days=30), "updated_at": updated,
            })

    def _load_contacts(self, seed: SeedOrganisation, ago: Callable[[int], datetime]) -> None:
        for contact in seed.contacts:
            updated = ago(contact.updated_minutes_ago)
            types = ([system_ref("contact_types", "VENDOR", "Supplier")] if contact.is_supplier else []) + (
                [system_ref("contact_types", "CUSTOMER", "Customer")] if contact.is_customer else [])
            purchase = (base_ref(self.ledger_account_by_code(contact.default_purchase_account_code))
                        if contact.default_purchase_account_code else None)
            sales = (base_ref(self.ledger_account_by_code(contact.default_sales_account_code))
                     if contact.default_sales_account_code else None)
            self._add("contacts", {
                "id": self.rid("contact", contact.key), "displayed_as": f"{contact.name} ({contact.contact_number})",
                "name": contact.name, "reference": contact.contact_number, "contact_types": types,
                "default_purchase_ledger_account": purchase, "default_sales_ledger_account": sales,
                "tax_number": contact.vat_number, "email": contact.email, "notes": None, "locale": "en",
                "main_address": {"address_line_1": contact.address.line1, "city": contact.address.city,
                                 "postal_code": contact.address.postcode,
                                 "country": {"id": "GB", "displayed_as": "United Kingdom (GB)"}},
                "main_contact_person": {"name": f"{contact.first_name} {contact.last_name}", "email": contact.email,
                                        "telephone": contact.phone, "is_main_contact": True},
                "currency": system_ref("currencies", "GBP", "Pound Sterling (GBP)"), "balance": Decimal("0"),
                "system": False, "deletable": True, "created_at": updated - timedelta(days=60), "updated_at": updated,
                # Sage contacts have no archived state: the seed's archived ones were deleted.
                "deleted_at": updated if contact.archived else None,
            })

    def _load_items(self, seed: SeedOrganisation, ago: Callable[[int], datetime]) -> None:
        for item in seed.items:
            # Sold-only items (hours, days, call-outs) are services; anything bought is a product.
            resource = "services" if item.purchase is None else "products"
            updated = ago(item.updated_minutes_ago)
            record: Record = {
                "id": self.rid(resource, item.code), "displayed_as": item.name, "item_code": item.code,
                "description": item.name, "notes": item.description, "active": True, "deleted_at": None,
                "deletable": True, "deactivatable": True, "used_on_recurring_invoice": False,
                "purchase_description": item.description if item.purchase else None,
                "cost_price": item.purchase.unit_price if item.purchase else Decimal("0"),
                "created_at": updated - timedelta(days=10), "updated_at": updated,
            }
            for direction, price in (("sales", item.sales), ("purchase", item.purchase)):
                if price is None:
                    continue
                rate_id, rate_name = _TAX_RATES[price.vat]
                record[f"{direction}_ledger_account"] = base_ref(self.ledger_account_by_code(price.account_code))
                record[f"{direction}_tax_rate"] = system_ref("tax_rates", rate_id, rate_name)
            if item.sales is not None:
                prices_key = "sales_rates" if resource == "services" else "sales_prices"
                record[prices_key] = [{"displayed_as": "Selling Price", "price": item.sales.unit_price,
                                       "price_includes_tax": False}]
            self._add(resource, record)

    def _load_analysis(self, seed: SeedOrganisation, created: datetime) -> None:
        # Sage businesses have three analysis types; the seed's two tracking dimensions fill the
        # first two with categories, the third stays an unused, empty type.
        dimensions = list(seed.tracking[:2])
        for index in range(1, 4):
            dimension = dimensions[index - 1] if index <= len(dimensions) else None
            type_id = self.rid("analysis_type", str(index))
            name = dimension.name if dimension else f"Analysis Type {index}"
            categories: list[Record] = []
            for option in dimension.options if dimension else ():
                code = re.sub(r"[^A-Z0-9]", "", option.name.upper())[:10]
                category = self._add("analysis_type_categories", {
                    "id": self.rid("analysis_category", option.key), "displayed_as": option.name, "code": code,
                    "name": option.name[:50], "combined_id": f"{index}_{code}", "active": not option.archived,
                    "analysis_type": {"id": type_id, "displayed_as": name, "$path": f"/analysis_types/{type_id}"},
                    "created_at": created, "updated_at": created,
                })
                categories.append(base_ref(category))
            self._add("analysis_types", {
                "id": type_id, "displayed_as": name, "name": name, "active": dimension is not None,
                "analysis_type_categories": categories, "created_at": created, "updated_at": created,
            })

    def _load_bank_lines(self, seed: SeedOrganisation, now: datetime) -> None:
        for line in seed.bank_lines:
            bank = self.resources["bank_accounts"].get(self.rid("bank_account", line.bank_account_code))
            payee = self.live("contacts", self.rid("contact", line.payee_key))
            if bank is None:
                continue
            self.add_bank_line(bank["id"], (now - timedelta(days=line.days_ago)).date(), line.amount,
                               reference=line.reference, payee=payee, line_id=self.rid("bank_transaction", line.key),
                               now=now)

    def add_bank_line(self, bank_account_id: str, on: date, amount: Decimal, *, reference: str = "CARD PAYMENT",
                      payee: Record | None = None, line_id: str | None = None, now: datetime) -> Record:
        """An unreconciled money-out line on a bank account, as the bank feed leaves it (seed data and
        tests; never an API write)."""
        bank = self.resources["bank_accounts"][bank_account_id]
        stamp = truncate_to_millis(now)
        return self._add("bank_transactions", {
            "id": line_id or uuid.uuid4().hex, "displayed_as": reference,
            "bank_account": base_ref(bank),
            "transaction_type": system_ref("bank_transaction_types", "MONEY_OUT", "Money Out"),
            "date": on.isoformat(), "reference": reference,
            "payee_name": payee["name"] if payee else None, "contact": base_ref(payee) if payee else None,
            "total_amount": money(amount), "currency": system_ref("currencies", "GBP", "Pound Sterling (GBP)"),
            "is_reconciled": False, "created_at": stamp, "updated_at": stamp, "deleted_at": None,
        })

    # -- look-ups --------------------------------------------------------------------------------

    def live(self, resource: str, record_id: Any) -> Record | None:
        """A record that exists and is not deleted."""
        if blank(record_id):
            return None
        record = self.resources[resource].get(str(record_id))
        return record if record is not None and record.get("deleted_at") is None else None

    def next_number(self, prefix: str) -> str:
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}-{self.counters[prefix]}"

    @property
    def lockdown_date(self) -> date | None:
        value = self.financial_settings.get("year_end_lockdown_date")
        return date.fromisoformat(value) if value else None

    @property
    def base_currency(self) -> str:
        return str(self.financial_settings["base_currency"]["id"])


# --------------------------------------------------------------------------------------------
# Writes
# --------------------------------------------------------------------------------------------


@dataclass
class WriteContext:
    business: SageBusiness
    settings: SageSettings
    now: datetime


@dataclass
class PreparedWrite:
    """A validated object and what committing it does (payments also change the invoices)."""

    resource: str
    record: Record
    side_effects: list[Callable[[], None]] = field(default_factory=list)

    def commit(self, business: SageBusiness) -> Record:
        business.resources[self.resource][self.record["id"]] = self.record
        for effect in self.side_effects:
            effect()
        return self.record


def _stamp(ctx: WriteContext, resource: str, fields: Record) -> Record:
    record_id = uuid.uuid4().hex
    return {"id": record_id, "$path": f"/{resource}/{record_id}", **fields, "deleted_at": None,
            "created_at": ctx.now, "updated_at": ctx.now}


def _live_reference(ctx: WriteContext, resource: str, record_id: Any, problems: Problems, source: str, *,
                    required: bool = True) -> Record | None:
    """The live record of ``resource`` an id in the body names: a blank id "can't be blank" when
    required, an unknown or deleted one "is invalid"."""
    if problems.missing(record_id, source, required=required):
        return None
    record = ctx.business.live(resource, record_id)
    if record is None:
        problems.add(source, "is invalid")
    return record


def _contact(ctx: WriteContext, raw: Record, problems: Problems, *, wanted_type: str | None,
             source: str = "contact_id", required: bool = True) -> Record | None:
    contact = _live_reference(ctx, "contacts", raw.get("contact_id"), problems, source, required=required)
    if contact is None:
        return None
    if wanted_type and wanted_type not in {t["id"] for t in contact["contact_types"]}:
        label = "supplier" if wanted_type == "VENDOR" else "customer"
        problems.add(source, f"must be a {label} contact")
    return contact


def _ledger_account(ctx: WriteContext, raw: Record, problems: Problems, source: str, area: str) -> Record | None:
    account = _live_reference(ctx, "ledger_accounts", raw.get("ledger_account_id"), problems, source)
    if account is None:
        return None
    if not account["included_in_chart"] or not account[f"visible_in_{area}"]:
        problems.add(source, f"The ledger account {account['displayed_as']} can't be used in {area.replace('_', ' ')}")
    return account


def _tax_rate(ctx: WriteContext, raw: Record, problems: Problems, source: str, *, required: bool) -> Record | None:
    return _live_reference(ctx, "tax_rates", raw.get("tax_rate_id"), problems, source, required=required)


def _analysis(ctx: WriteContext, raw: Record, problems: Problems, source: str) -> list[Record]:
    """Analysis categories on a line (attribute name UNCONFIRMED; see ``line_analysis_field``)."""
    name = ctx.settings.line_analysis_field
    given = raw.get(name)
    if blank(given) or given == []:
        return []
    if ctx.business.tier in LIMITED_TIERS:
        problems.add(f"{source}.{name}", "Analysis types are not available on this subscription")
        return []
    if not isinstance(given, list):
        problems.add(f"{source}.{name}", "must be a list")
        return []
    categories: list[Record] = []
    seen_types: set[str] = set()
    for entry in given:
        category_id = entry.get("id") if isinstance(entry, dict) else entry
        category = ctx.business.live("analysis_type_categories", category_id)
        if category is None or not category.get("active", True):
            problems.add(f"{source}.{name}", "is invalid")
            continue
        if category["analysis_type"]["id"] in seen_types:
            problems.add(f"{source}.{name}", "only one category per analysis type may be used")
        seen_types.add(category["analysis_type"]["id"])
        categories.append(base_ref(category))
    return categories


def _line_objects(raw: Record, name: str, problems: Problems) -> Iterator[Record]:
    """The entries of a required array of lines (``invoice_lines``, ``payment_lines``): a missing
    or empty array "can't be blank", an entry that is not an object "is invalid"."""
    lines = raw.get(name)
    if not isinstance(lines, list) or not lines:
        problems.add(name, "can't be blank")
        return
    for line in lines:
        if isinstance(line, dict):
            yield line
        else:
            problems.add(name, "is invalid")


def _required_choice(raw: Record, name: str, allowed: frozenset[str], problems: Problems) -> Any:
    """A required field that must be one of ``allowed``: blank "can't be blank", else "is invalid"."""
    value = raw.get(name)
    if not problems.missing(value, name) and value not in allowed:
        problems.add(name, "is invalid")
    return value


def _check_date(ctx: WriteContext, raw: Record, problems: Problems, name: str = "date") -> date | None:
    when = read_date(raw, name, name, problems, required=True)
    lockdown = ctx.business.lockdown_date
    if when is not None and ctx.settings.enforce_lockdown_date and lockdown is not None and when <= lockdown:
        problems.add(name, f"must be after the lockdown date {lockdown.isoformat()}")
    return when


def _check_currency(ctx: WriteContext, raw: Record, problems: Problems) -> Record:
    currency = raw.get("currency_id") or ctx.business.base_currency
    if currency != ctx.business.base_currency and not ctx.business.financial_settings["multi_currency_enabled"]:
        problems.add("currency_id", "Multi-currency is not enabled for this business")
    return system_ref("currencies", str(currency), str(currency))


def _line_amounts(raw: Record, source: str, rate: Record | None, problems: Problems, *,
                  quantity: Decimal, unit_price: Decimal | None) -> tuple[Decimal, Decimal, Decimal]:
    """(net, tax, total) of a line; Sage does not work out tax for you in v3.1 [src spec]."""
    tax = read_amount(raw, "tax_amount", f"{source}.tax_amount", problems)
    if tax is None:
        if rate is not None and Decimal(str(rate["percentage"])) != 0:
            problems.add(f"{source}.tax_amount", "can't be blank")
        tax = Decimal("0")
    includes_tax = raw.get("unit_price_includes_tax") in (True, "true")
    if unit_price is not None:
        gross_or_net = money(quantity * unit_price)
        net = gross_or_net - tax if includes_tax else gross_or_net
    else:
        net = read_amount(raw, "net_amount", f"{source}.net_amount", problems) or Decimal("0")
    total = net + tax
    given_net = read_amount(raw, "net_amount", f"{source}.net_amount", problems)
    if given_net is not None and unit_price is not None and abs(given_net - net) > TOLERANCE:
        problems.add(f"{source}.net_amount", f"does not match quantity x unit price ({net})")
    given_total = read_amount(raw, "total_amount", f"{source}.total_amount", problems)
    if given_total is not None and abs(given_total - total) > TOLERANCE:
        problems.add(f"{source}.total_amount", f"does not equal net_amount + tax_amount ({total})")
    return money(net), money(tax), money(total)


def _check_header_totals(raw: Record, problems: Problems, net: Decimal, tax: Decimal, total: Decimal) -> None:
    for name, computed in (("net_amount", net), ("tax_amount", tax), ("total_amount", total)):
        given = read_amount(raw, name, name, problems)
        if given is not None and abs(given - computed) > TOLERANCE:
            problems.add(name, f"does not match the sum of the lines ({computed})")


def _reference(raw: Record, problems: Problems, name: str = "reference", limit: int = 25) -> str | None:
    value = raw.get(name)
    if blank(value):
        return None
    if len(str(value)) > limit:
        problems.add(name, f"is too long (maximum is {limit} characters)")
    return str(value)


def prepare_invoice(ctx: WriteContext, raw: Record, *, purchase: bool) -> PreparedWrite:
    """A purchase or sales invoice: contact, dates, lines with client-computed tax, totals."""
    problems = Problems()
    resource = "purchase_invoices" if purchase else "sales_invoices"
    contact = _contact(ctx, raw, problems, wanted_type="VENDOR" if purchase else "CUSTOMER")
    when = _check_date(ctx, raw, problems)
    due = read_date(raw, "due_date", "due_date", problems, required=purchase)
    currency = _check_currency(ctx, raw, problems)
    lines: list[Record] = []
    totals = [Decimal("0"), Decimal("0"), Decimal("0")]
    source = "invoice_lines"
    for raw_line in _line_objects(raw, source, problems):
        if blank(raw_line.get("description")):
            problems.add(f"{source}.description", "can't be blank")
        account = _ledger_account(ctx, raw_line, problems, f"{source}.ledger_account_id",
                                  "expenses" if purchase else "sales")
        quantity = read_amount(raw_line, "quantity", f"{source}.quantity", problems, required=purchase)
        unit_price = read_amount(raw_line, "unit_price", f"{source}.unit_price", problems, required=True)
        rate = _tax_rate(ctx, raw_line, problems, f"{source}.tax_rate_id", required=True)
        net, tax, total = _line_amounts(raw_line, source, rate, problems,
                                        quantity=quantity if quantity is not None else Decimal("1"),
                                        unit_price=unit_price)
        categories = _analysis(ctx, raw_line, problems, source)
        totals = [totals[0] + net, totals[1] + tax, totals[2] + total]
        line: Record = {
            "id": uuid.uuid4().hex, "displayed_as": raw_line.get("description"),
            "description": raw_line.get("description"),
            "ledger_account": base_ref(account) if account else None,
            "quantity": quantity if quantity is not None else Decimal("1"), "unit_price": unit_price,
            "unit_price_includes_tax": raw_line.get("unit_price_includes_tax") in (True, "true"),
            "tax_rate": base_ref(rate) if rate else None, "net_amount": net, "tax_amount": tax,
            "total_amount": total,
        }
        if categories:
            line[ctx.settings.line_analysis_field] = categories
        for item_resource, key in (("products", "product_id"), ("services", "service_id")):
            item = _live_reference(ctx, item_resource, raw_line.get(key), problems, f"{source}.{key}", required=False)
            if item is not None:
                line[key.removesuffix("_id")] = base_ref(item)
        lines.append(line)
    net, tax, total = (money(v) for v in totals)
    _check_header_totals(raw, problems, net, tax, total)
    problems.raise_if_any()
    assert contact is not None and when is not None
    number = ctx.business.next_number("PI" if purchase else "SI")
    record = _stamp(ctx, resource, {
        "displayed_as": raw.get("vendor_reference") or raw.get("reference") or number,
        "transaction_type": system_ref("transaction_types", "PURCHASE_INVOICE" if purchase else "SALES_INVOICE",
                                       "Purchase Invoice" if purchase else "Sales Invoice"),
        "contact": base_ref(contact), "contact_name": contact["name"], "contact_reference": contact["reference"],
        "date": when.isoformat(), "due_date": (due or when).isoformat(), "reference": raw.get("reference"),
        "notes": raw.get("notes"), "currency": currency, "exchange_rate": Decimal("1"),
        "net_amount": net, "tax_amount": tax, "total_amount": total, "outstanding_amount": total,
        "total_paid": Decimal("0"), "status": system_ref("artefact_statuses", "UNPAID", "Unpaid"),
        "invoice_lines": lines, "editable": True, "payments_allocations": [],
    })
    record["transaction"] = {"id": uuid.uuid4().hex, "displayed_as": record["displayed_as"]}
    if purchase:
        record["vendor_reference"] = raw.get("vendor_reference")
    else:
        record["invoice_number"] = number
    return PreparedWrite(resource, record)


def prepare_quick_entry(ctx: WriteContext, raw: Record) -> PreparedWrite:
    problems = Problems()
    entry_type = _required_choice(raw, "quick_entry_type_id", frozenset({"INVOICE", "CREDIT_NOTE"}), problems)
    contact = _contact(ctx, raw, problems, wanted_type="VENDOR")
    when = _check_date(ctx, raw, problems)
    if blank(raw.get("reference")):
        problems.add("reference", "can't be blank")
    account = _ledger_account(ctx, raw, problems, "ledger_account_id", "expenses")
    rate = _tax_rate(ctx, raw, problems, "tax_rate_id", required=True)
    net, tax, total = _line_amounts(raw, "purchase_quick_entry", rate, problems, quantity=Decimal("1"),
                                    unit_price=None)
    currency = _check_currency(ctx, raw, problems)
    problems.raise_if_any()
    assert contact is not None and when is not None and account is not None
    record = _stamp(ctx, "purchase_quick_entries", {
        "displayed_as": raw.get("reference"),
        "quick_entry_type": system_ref("quick_entry_types", str(entry_type), str(entry_type).title()),
        "transaction_type": system_ref("transaction_types", "PURCHASE_QUICK_ENTRY_INVOICE", "Purchase QE Invoice"),
        "contact": base_ref(contact), "contact_name": contact["name"], "contact_reference": contact["reference"],
        "date": when.isoformat(), "reference": raw.get("reference"), "ledger_account": base_ref(account),
        "details": raw.get("details"), "net_amount": net, "tax_rate": base_ref(rate) if rate else None,
        "tax_amount": tax, "total_amount": total, "outstanding_amount": total, "currency": currency,
        "status": system_ref("artefact_statuses", "UNPAID", "Unpaid"), "payments_allocations": [],
    })
    return PreparedWrite("purchase_quick_entries", record)


def _payment_method(ctx: WriteContext, raw: Record, problems: Problems) -> Record | None:
    method = raw.get("payment_method_id")
    if blank(method):
        return None
    if method not in ctx.settings.payment_method_ids:
        problems.add("payment_method_id", "is invalid")
        return None
    return system_ref("payment_methods", str(method), str(method).replace("_", " ").title())


def _bank_account(ctx: WriteContext, raw: Record, problems: Problems, *, required: bool) -> Record | None:
    return _live_reference(ctx, "bank_accounts", raw.get("bank_account_id"), problems, "bank_account_id",
                           required=required)


def prepare_other_payment(ctx: WriteContext, raw: Record) -> PreparedWrite:
    problems = Problems()
    kind = _required_choice(raw, "transaction_type_id", frozenset({"OTHER_PAYMENT", "OTHER_RECEIPT"}), problems)
    when = _check_date(ctx, raw, problems)
    total = read_amount(raw, "total_amount", "total_amount", problems, required=True)
    bank = _bank_account(ctx, raw, problems, required=ctx.settings.other_payment_requires_bank_account)
    contact = _contact(ctx, raw, problems, wanted_type=None, required=False)
    method = _payment_method(ctx, raw, problems)
    reference = _reference(raw, problems)
    area = "other_receipts" if kind == "OTHER_RECEIPT" else "other_payments"
    lines: list[Record] = []
    sums = [Decimal("0"), Decimal("0"), Decimal("0")]
    source = "payment_lines"
    for raw_line in _line_objects(raw, source, problems):
        account = _ledger_account(ctx, raw_line, problems, f"{source}.ledger_account_id", area)
        rate = _tax_rate(ctx, raw_line, problems, f"{source}.tax_rate_id", required=False)
        line_total = read_amount(raw_line, "total_amount", f"{source}.total_amount", problems, required=True)
        tax = read_amount(raw_line, "tax_amount", f"{source}.tax_amount", problems)
        if tax is None and rate is not None and Decimal(str(rate["percentage"])) != 0:
            problems.add(f"{source}.tax_amount", "can't be blank")
        tax = tax or Decimal("0")
        net = read_amount(raw_line, "net_amount", f"{source}.net_amount", problems)
        if line_total is not None and net is not None and abs(net + tax - line_total) > TOLERANCE:
            problems.add(f"{source}.total_amount", "does not equal net_amount + tax_amount")
        line_total = line_total or Decimal("0")
        net = line_total - tax if net is None else net
        sums = [sums[0] + net, sums[1] + tax, sums[2] + line_total]
        line: Record = {"id": uuid.uuid4().hex, "ledger_account": base_ref(account) if account else None,
                        "details": raw_line.get("details"), "tax_rate": base_ref(rate) if rate else None,
                        "net_amount": money(net), "tax_amount": money(tax), "total_amount": money(line_total)}
        categories = _analysis(ctx, raw_line, problems, source)
        if categories:
            line[ctx.settings.line_analysis_field] = categories
        lines.append(line)
    if total is not None and abs(total - sums[2]) > TOLERANCE:
        problems.add("total_amount", f"does not match the sum of the payment lines ({money(sums[2])})")
    problems.raise_if_any()
    assert when is not None and total is not None
    record = _stamp(ctx, "other_payments", {
        "displayed_as": reference or str(kind).replace("_", " ").title(),
        "transaction_type": system_ref("transaction_types", str(kind), str(kind).replace("_", " ").title()),
        "payment_method": method, "contact": base_ref(contact) if contact else None,
        "bank_account": base_ref(bank) if bank else None, "date": when.isoformat(), "reference": reference,
        "net_amount": money(sums[0]), "tax_amount": money(sums[1]), "total_amount": money(total),
        "payment_lines": lines, "editable": True, "deletable": True,
    })
    record["transaction"] = {"id": uuid.uuid4().hex, "displayed_as": record["displayed_as"]}
    return PreparedWrite("other_payments", record)


_PAYMENT_TYPES = {"CUSTOMER_RECEIPT": "sales", "CUSTOMER_REFUND": "sales", "VENDOR_PAYMENT": "purchase",
                  "VENDOR_REFUND": "purchase"}


def _artefact(business: SageBusiness, artefact_id: Any, side: str) -> tuple[str, Record] | None:
    resources = ("purchase_invoices", "purchase_quick_entries") if side == "purchase" else ("sales_invoices",)
    for resource in resources:
        record = business.live(resource, artefact_id)
        if record is not None:
            return resource, record
    return None


def prepare_contact_payment(ctx: WriteContext, raw: Record) -> PreparedWrite:  # noqa: PLR0915 - Sage's rules in one pass
    problems = Problems()
    kind = raw.get("transaction_type_id")
    side = _PAYMENT_TYPES.get(str(kind))
    if blank(kind):
        problems.add("transaction_type_id", "can't be blank")
    elif side is None:
        problems.add("transaction_type_id", "is invalid")
    contact = _contact(ctx, raw, problems, wanted_type={"sales": "CUSTOMER", "purchase": "VENDOR"}.get(side or ""))
    bank = _bank_account(ctx, raw, problems, required=True)
    when = _check_date(ctx, raw, problems)
    total = read_amount(raw, "total_amount", "total_amount", problems, required=True)
    method = _payment_method(ctx, raw, problems)
    reference = _reference(raw, problems)
    currency = _check_currency(ctx, raw, problems)
    allocations = raw.get("allocated_artefacts") or []
    if not isinstance(allocations, list):
        problems.add("allocated_artefacts", "is invalid")
        allocations = []
    allocated = Decimal("0")
    planned: list[tuple[Record, Decimal]] = []
    for allocation in allocations:
        source = "allocated_artefacts"
        if not isinstance(allocation, dict):
            problems.add(source, "is invalid")
            continue
        found = _artefact(ctx.business, allocation.get("artefact_id"), side or "purchase")
        amount = read_amount(allocation, "amount", f"{source}.amount", problems, required=True)
        if found is None:
            problems.add(f"{source}.artefact_id", "is invalid")
            continue
        _, artefact = found
        if contact is not None and artefact["contact"]["id"] != contact["id"]:
            problems.add(f"{source}.artefact_id", "belongs to another contact")
        if artefact["outstanding_amount"] <= 0:
            problems.add(f"{source}.artefact_id", "You can only pay unpaid or part-paid invoices.")
        elif amount is not None and amount > artefact["outstanding_amount"] + TOLERANCE:
            problems.add(f"{source}.amount", f"exceeds the outstanding amount ({artefact['outstanding_amount']})")
        if amount is not None:
            allocated += amount
            planned.append((artefact, amount))
    on_account = Decimal("0")
    if total is not None:
        if allocated > total + TOLERANCE:
            problems.add("total_amount", "must be at least the sum of the allocated amounts")
        on_account = money(total - allocated) if total > allocated else Decimal("0")
        if on_account > 0 and ctx.business.tier in LIMITED_TIERS:
            problems.add("total_amount", "Payments on account are not available on this subscription: allocate "
                                         "the whole amount")
    problems.raise_if_any()
    assert contact is not None and bank is not None and when is not None and total is not None
    record = _stamp(ctx, "contact_payments", {
        "displayed_as": reference or str(kind).replace("_", " ").title(),
        "transaction_type": system_ref("transaction_types", str(kind), str(kind).replace("_", " ").title()),
        "payment_method": method, "contact": base_ref(contact), "bank_account": base_ref(bank),
        "date": when.isoformat(), "net_amount": money(total), "tax_amount": Decimal("0"),
        "total_amount": money(total), "currency": currency, "exchange_rate": Decimal("1"), "reference": reference,
        "allocated_artefacts": [{"id": uuid.uuid4().hex, "artefact": base_ref(a), "amount": money(amt)}
                                for a, amt in planned],
        "payment_on_account": None, "editable": True,
    })
    record["transaction"] = {"id": uuid.uuid4().hex, "displayed_as": record["displayed_as"]}
    if on_account > 0:
        record["payment_on_account"] = {"id": uuid.uuid4().hex, "displayed_as": "Payment on Account",
                                        "contact": base_ref(contact), "date": when.isoformat(),
                                        "total_amount": on_account, "outstanding_amount": on_account}

    def apply_allocations() -> None:
        for artefact, amount in planned:
            artefact["outstanding_amount"] = money(artefact["outstanding_amount"] - amount)
            if "total_paid" in artefact:
                artefact["total_paid"] = money(artefact["total_paid"] + amount)
            paid = artefact["outstanding_amount"] <= 0
            artefact["status"] = system_ref("artefact_statuses", "PAID" if paid else "PART_PAID",
                                            "Paid" if paid else "Part Paid")
            artefact["payments_allocations"].append({"id": record["id"], "amount": money(amount),
                                                     "date": when.isoformat()})
            artefact["updated_at"] = ctx.now

    return PreparedWrite("contact_payments", record, [apply_allocations])


def prepare_contact(ctx: WriteContext, raw: Record) -> PreparedWrite:
    problems = Problems()
    name = raw.get("name")
    if blank(name):
        problems.add("name", "can't be blank")
    type_ids = raw.get("contact_type_ids")
    if not isinstance(type_ids, list) or not type_ids:
        problems.add("contact_type_ids", "can't be blank")
        type_ids = []
    elif any(t not in {"CUSTOMER", "VENDOR"} for t in type_ids):
        problems.add("contact_type_ids", "must be CUSTOMER or VENDOR")
    reference = raw.get("reference")
    if not blank(reference) and any(str(c.get("reference") or "").lower() == str(reference).lower()
                                    for c in ctx.business.resources["contacts"].values() if c["deleted_at"] is None):
        problems.add("reference", "has already been taken")
    defaults: Record = {}
    for key, area in (("default_purchase_ledger_account_id", "expenses"), ("default_sales_ledger_account_id", "sales")):
        if not blank(raw.get(key)):
            account = _ledger_account(ctx, {"ledger_account_id": raw[key]}, problems, key, area)
            defaults[key.removesuffix("_id")] = base_ref(account) if account else None
    problems.raise_if_any()
    reference = str(reference) if not blank(reference) else ctx.business.next_number("CON")
    labels = {"VENDOR": "Supplier", "CUSTOMER": "Customer"}
    record = _stamp(ctx, "contacts", {
        "displayed_as": f"{name} ({reference})", "name": str(name), "reference": reference,
        "contact_types": [system_ref("contact_types", t, labels[t]) for t in type_ids],
        "default_purchase_ledger_account": None, "default_sales_ledger_account": None, **defaults,
        "tax_number": raw.get("tax_number"), "email": (raw.get("main_contact_person") or {}).get("email"),
        "notes": raw.get("notes"), "currency": system_ref("currencies", raw.get("currency_id") or "GBP", "GBP"),
        "balance": Decimal("0"), "system": False, "deletable": True,
    })
    return PreparedWrite("contacts", record)


def prepare_attachment(ctx: WriteContext, raw: Record) -> PreparedWrite:
    problems = Problems()
    content = b""
    if blank(raw.get("file")):
        problems.add("file", "can't be blank")
    else:
        try:
            content = base64.b64decode(str(raw["file"]), validate=True)
        except (binascii.Error, ValueError):
            problems.add("file", "is not valid base64")
    for name in ("file_name", "mime_type"):
        if blank(raw.get(name)):
            problems.add(name, "can't be blank")
    mime_type = str(raw.get("mime_type") or "").lower()
    if mime_type and mime_type not in ctx.settings.attachment_mime_types:
        problems.add("mime_type", "is not an allowed file type")
    if len(content) > ctx.settings.attachment_max_bytes:
        problems.add("file", f"is too large (maximum is {ctx.settings.attachment_max_bytes} bytes)")
    context_type, context_id = raw.get("attachment_context_type_id"), raw.get("attachment_context_id")
    context: Record | None = None
    if blank(context_type) != blank(context_id):
        problems.add("attachment_context_id" if blank(context_id) else "attachment_context_type_id", "can't be blank")
    elif not blank(context_type):
        resource = ATTACHMENT_CONTEXTS.get(str(context_type))
        if resource is None or context_type not in ctx.settings.attachment_context_types:
            problems.add("attachment_context_type_id", "is invalid")
        else:
            context = _live_reference(ctx, resource, context_id, problems, "attachment_context_id")
    problems.raise_if_any()
    file_name = str(raw["file_name"])
    record = _stamp(ctx, "attachments", {
        "displayed_as": file_name, "file_name": file_name, "mime_type": mime_type,
        "description": raw.get("description"),
        "file_extension": raw.get("file_extension") or ("." + file_name.rsplit(".", 1)[-1] if "." in file_name
                                                        else None),
        "file_size": len(content), "is_public": bool(raw.get("is_public", False)),
        "attachment_context_type": system_ref("attachment_context_types", str(context_type),
                                              str(context_type).replace("_", " ").title()) if context else None,
        "attachment_context": base_ref(context) if context else None,
    })
    record["$file_path"] = f"/attachments/{record['id']}/file"
    ctx.business.attachment_content[record["id"]] = content
    return PreparedWrite("attachments", record)


PREPARERS: dict[str, Callable[[WriteContext, Record], PreparedWrite]] = {
    "contacts": prepare_contact,
    "purchase_invoices": lambda ctx, raw: prepare_invoice(ctx, raw, purchase=True),
    "sales_invoices": lambda ctx, raw: prepare_invoice(ctx, raw, purchase=False),
    "purchase_quick_entries": prepare_quick_entry,
    "other_payments": prepare_other_payment,
    "contact_payments": prepare_contact_payment,
    "attachments": prepare_attachment,
}


def delete_record(business: SageBusiness, resource: str, record_id: str, now: datetime) -> Record:
    """Delete (Sage keeps a tombstone that ``deleted_since`` reports). Raises :class:`SageInvalid`."""
    record = business.live(resource, record_id)
    if record is None:
        raise SageInvalid([diagnosis("", "Resource not found", "RecordNotFound")], 404)
    if record.get("payments_allocations"):
        raise SageInvalid([diagnosis("id", "can't be deleted because it has payments or allocations")])
    record["deleted_at"] = now
    record["updated_at"] = now
    return record


__all__ = [
    "ATTACHMENT_CONTEXTS", "DELETABLE_RESOURCES", "LIMITED_TIERS", "LIST_RESOURCES", "PREPARERS",
    "WRITABLE_RESOURCES", "PreparedWrite", "SageBusiness", "SageInvalid", "WriteContext", "base_ref",
    "delete_record", "diagnosis", "parse_since", "sage_id", "to_wire",
]
