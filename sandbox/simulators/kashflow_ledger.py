"""KashFlow's ledger model for the simulator: companies, logins, records and business rules.

Records are kept in KashFlow REST v2 shapes (PascalCase keys) with native values — ``datetime``
(naive-looking, UTC), ``Decimal`` — and :func:`render` turns them into KashFlow JSON: timestamps
``"2026-11-02T09:00:00"`` without an offset, decimals as JSON numbers, ``null`` kept (summaries
carry ``"LineItems": null``), keys starting with ``_`` dropped.

KashFlow is an ASP.NET service: JSON property names bind case-insensitively, so request bodies are
read through :func:`fold` (``"suppliercode"`` finds ``SupplierCode``). Writes are two-phase:
``prepare_*`` validates against the company without changing it and returns a :class:`Prepared`
whose ``apply`` performs the write. Validation problems are ``(field, message)`` pairs so the HTTP
layer can render ASP.NET's ``ModelState`` shape or a single message.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.simulators.ledger_values import money, numeric_company_id, to_decimal, whole_seconds
from sandbox.simulators.seed import (
    AccountKind,
    SeedContact,
    SeedOrganisation,
    SystemRole,
    VatKey,
)

if TYPE_CHECKING:
    from sandbox.simulators.kashflow import KashFlowSettings

Record = dict[str, Any]

BASE_CURRENCY = "GBP"
CURRENCIES: dict[str, Record] = {
    "GBP": {"Code": "GBP", "Name": "British Pounds", "Symbol": "£", "ExchangeRate": Decimal("1"),
            "DisplaySymbolOnRight": False},
    "EUR": {"Code": "EUR", "Name": "Euros", "Symbol": "€", "ExchangeRate": Decimal("1.17"),
            "DisplaySymbolOnRight": False},
    "USD": {"Code": "USD", "Name": "US Dollars", "Symbol": "$", "ExchangeRate": Decimal("1.27"),
            "DisplaySymbolOnRight": False},
}

PURCHASES, SALES = "Purchases", "Sales"

# Account kind → (nominal Type, Classification, NomType). Purchases may only be coded to
# "Purchases" nominals and sales invoices to "Sales" ones [3p: "NominalCode should be a Purchases
# classification nominal"].
_NOMINAL_PLACES: dict[AccountKind, tuple[str, str, int]] = {
    AccountKind.REVENUE: ("Sales", SALES, 1),
    AccountKind.OTHER_INCOME: ("Other Income", SALES, 1),
    AccountKind.DIRECT_COSTS: ("Cost of Sales", PURCHASES, 2),
    AccountKind.OVERHEADS: ("Overheads", PURCHASES, 3),
    AccountKind.DEPRECIATION: ("Overheads", PURCHASES, 3),
    AccountKind.FIXED_ASSET: ("Fixed Assets", "Balance Sheet", 4),
    AccountKind.CURRENT_ASSET: ("Current Assets", "Balance Sheet", 5),
    AccountKind.INVENTORY: ("Current Assets", "Balance Sheet", 5),
    AccountKind.PREPAYMENT: ("Current Assets", "Balance Sheet", 5),
    AccountKind.BANK: ("Bank", "Bank", 6),
    AccountKind.CREDIT_CARD: ("Bank", "Bank", 6),
    AccountKind.CURRENT_LIABILITY: ("Current Liabilities", "Balance Sheet", 7),
    AccountKind.LONG_TERM_LIABILITY: ("Long Term Liabilities", "Balance Sheet", 8),
    AccountKind.EQUITY: ("Capital and Reserves", "Balance Sheet", 9),
}

_CONTROL_ACCOUNTS: dict[SystemRole, str] = {
    SystemRole.RECEIVABLES: "Debtors", SystemRole.PAYABLES: "Creditors", SystemRole.VAT: "VAT",
    SystemRole.RETAINED_EARNINGS: "RetainedProfit", SystemRole.ROUNDING: "Rounding",
    SystemRole.HISTORICAL: "Suspense", SystemRole.TRACKING_TRANSFERS: "Suspense",
    SystemRole.UNPAID_EXPENSE_CLAIMS: "Creditors",
}


# --------------------------------------------------------------------------------------------
# Wire format and request reading
# --------------------------------------------------------------------------------------------


def kf_timestamp(moment: datetime) -> str:
    """KashFlow prints ``2026-11-02T09:00:00`` (some responses add an offset; these do not)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def render(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: render(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list | tuple):
        return [render(item) for item in value]
    if isinstance(value, datetime):
        return kf_timestamp(value)
    if isinstance(value, date):
        return kf_timestamp(datetime.combine(value, time(), tzinfo=UTC))
    if isinstance(value, Decimal):
        return float(value)
    return value


def fold(raw: Any) -> dict[str, Any]:
    """A JSON object with lower-cased keys: ASP.NET binds property names case-insensitively."""
    return {str(k).lower(): v for k, v in raw.items()} if isinstance(raw, dict) else {}


_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")


def parse_kf_date(value: Any) -> date:
    """``"YYYY-MM-DD HH:mm:ss"`` (documented), ISO 8601 with or without offset, or a bare date."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(value)
    text = value.strip()
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return datetime.fromisoformat(text.replace("Z", "+00:00")).date()


def _minutes_ago(now: datetime, minutes: int) -> datetime:
    return whole_seconds(now - timedelta(minutes=minutes))


# --------------------------------------------------------------------------------------------
# Companies and logins
# --------------------------------------------------------------------------------------------


@dataclass
class KashFlowLogin:
    """A KashFlow user: one login is one company [src]."""

    username: str
    password: str
    memorable_word: str
    company_id: str
    failed_attempts: int = 0
    locked_out: bool = False


@dataclass
class KashFlowCompany:
    key: str
    company_id: str
    name: str
    # nominals by Code; bank accounts by Id; suppliers/customers/products by upper-case Code;
    # projects, purchases and invoices by Number.
    nominals: dict[int, Record] = field(default_factory=dict)
    vat_rates: list[Record] = field(default_factory=list)
    bank_accounts: dict[int, Record] = field(default_factory=dict)
    suppliers: dict[str, Record] = field(default_factory=dict)
    customers: dict[str, Record] = field(default_factory=dict)
    products: dict[str, Record] = field(default_factory=dict)
    projects: dict[int, Record] = field(default_factory=dict)
    purchases: dict[int, Record] = field(default_factory=dict)
    invoices: dict[int, Record] = field(default_factory=dict)
    # (object type, object number or code) → file records; file id → bytes.
    files: dict[tuple[str, str], list[Record]] = field(default_factory=dict)
    file_content: dict[int, bytes] = field(default_factory=dict)
    _next_ids: dict[str, int] = field(default_factory=dict)

    def next_id(self, sequence: str, start: int = 1) -> int:
        value = self._next_ids.get(sequence, start)
        self._next_ids[sequence] = value + 1
        return value

    @property
    def vat_levels(self) -> tuple[Decimal, ...]:
        return tuple(rate["VATRate"] for rate in self.vat_rates)

    @classmethod
    def from_seed(cls, seed: SeedOrganisation, now: datetime) -> KashFlowCompany:
        company = cls(key=seed.key, company_id=numeric_company_id("kashflow", seed.key), name=seed.name)
        percents = sorted({r.percent for r in seed.vat_rates if not r.archived}, reverse=True)
        company.vat_rates = [{"VATId": index, "VATRate": percent, "VATText": f"{percent.normalize():f}%"}
                             for index, percent in enumerate(percents, start=1)]
        standard = next(r.percent for r in seed.vat_rates if r.key is VatKey.STANDARD)
        company._load_nominals(seed, now, standard)
        company._load_bank_accounts(seed, now)
        company._load_contacts(seed, now)
        company._load_products(seed, now)
        company._load_projects(seed, now)
        return company

    def _load_nominals(self, seed: SeedOrganisation, now: datetime, standard: Decimal) -> None:
        rates = {r.key: r.percent for r in seed.vat_rates}
        for account in seed.accounts:
            nominal_type, classification, nom_type = _NOMINAL_PLACES[account.kind]
            code = int(account.code)
            self.nominals[code] = {
                "Id": self.next_id("nominals", 2000),
                "Code": code,
                "Name": account.name,
                "Type": nominal_type,
                "NomType": nom_type,
                "Classification": classification,
                "ControlAccountClassification": _CONTROL_ACCOUNTS.get(account.system_role)
                if account.system_role else None,
                "Description": account.description or None,
                "Archived": account.archived,
                "VATRate": rates.get(account.vat, standard) if classification in (SALES, PURCHASES) else Decimal("0"),
                "VATExempt": account.vat is VatKey.EXEMPT,
                "Disallowed": "entertainment" in account.name.lower(),
                "DigitalService": False,
                "AllowDelete": False,
                "AutoFillLineItem": False,
                "_updated": _minutes_ago(now, account.updated_minutes_ago),
            }

    def _load_bank_accounts(self, seed: SeedOrganisation, now: datetime) -> None:
        first = True
        for account in seed.accounts:
            if account.kind not in (AccountKind.BANK, AccountKind.CREDIT_CARD):
                continue
            bank_id = self.next_id("bank_accounts", 100)
            details = account.bank
            self.bank_accounts[bank_id] = {
                "Id": bank_id,
                "Code": int(account.code),
                "AccountName": account.name,
                "AccountNumber": (details.account_number[-4:] if account.kind is AccountKind.CREDIT_CARD
                                  else details.account_number) if details else None,
                "SortCode": (details.sort_code or None) if details else None,
                "AccountType": "Credit Card" if account.kind is AccountKind.CREDIT_CARD else "Current",
                "CurrencyCode": seed.base_currency,
                "Balance": Decimal("0"),
                "IsDefaultAccount": first and not account.archived,
                "IsArchived": account.archived,
                "LastUpdatedDate": _minutes_ago(now, account.updated_minutes_ago),
            }
            first = first and account.archived

    def _load_contacts(self, seed: SeedOrganisation, now: datetime) -> None:
        supplier_prefixes: dict[str, int] = {}
        customer_prefixes: dict[str, int] = {}
        for contact in seed.contacts:
            if contact.is_supplier:
                code = _contact_code(contact.name, supplier_prefixes)
                default = contact.default_purchase_account_code
                self.suppliers[code] = self._contact_record(
                    contact, code, self.next_id("suppliers", 1), now,
                    default_nominal=int(default) if default else None, currency=seed.base_currency)
            if contact.is_customer:
                code = _contact_code(contact.name, customer_prefixes)
                default = contact.default_sales_account_code
                self.customers[code] = self._contact_record(
                    contact, code, self.next_id("customers", 1), now,
                    default_nominal=int(default) if default else None, currency=seed.base_currency)
                self.customers[code]["_seed_key"] = contact.key

    @staticmethod
    def _contact_record(contact: SeedContact, code: str, contact_id: int, now: datetime, *,
                        default_nominal: int | None, currency: str) -> Record:
        updated = _minutes_ago(now, contact.updated_minutes_ago)
        return {
            "Id": contact_id,
            "Code": code,
            "Name": contact.name,
            "ContactFirstName": contact.first_name,
            "ContactLastName": contact.last_name,
            "Email": contact.email,
            "Telephone": contact.phone,
            "VatNumber": contact.vat_number,
            "Currency": dict(CURRENCIES[currency]),
            "DefaultNominalCode": default_nominal,
            "PaymentTerms": 30,
            "OutstandingBalance": Decimal("0"),
            "TotalPaidAmount": Decimal("0"),
            "IsArchived": contact.archived,
            "CreatedDate": updated - timedelta(days=200),
            "LastUpdatedDate": updated,
            "Address": {"Line1": contact.address.line1, "Line2": contact.address.city, "Line3": None,
                        "Line4": None, "PostCode": contact.address.postcode, "CountryName": contact.address.country,
                        "CountryCode": "GB"},
        }

    def _load_products(self, seed: SeedOrganisation, now: datetime) -> None:
        rates = {r.key: r.percent for r in seed.vat_rates}
        for item in seed.items:
            price = item.sales or item.purchase
            if price is None:
                continue
            self.products[item.code.upper()] = {
                "Id": self.next_id("products", 500),
                "Code": item.code,
                "Name": item.name,
                "Description": item.description,
                "Price": item.sales.unit_price if item.sales else Decimal("0"),
                "PurchasePrice": item.purchase.unit_price if item.purchase else Decimal("0"),
                "NominalCode": int(price.account_code),
                "VATRate": rates[price.vat],
                "VATExempt": price.vat is VatKey.EXEMPT,
                "Type": "Product" if item.purchase else "Service",
                "ManageStockLevel": False,
                "QuantityInStock": Decimal("0"),
                "IsArchived": False,
                "LastUpdatedDate": _minutes_ago(now, item.updated_minutes_ago),
            }

    def _load_projects(self, seed: SeedOrganisation, now: datetime) -> None:
        customer_code = {c["_seed_key"]: code for code, c in self.customers.items()}
        for index, project in enumerate(seed.projects, start=1):
            number = self.next_id("projects", 1)
            self.projects[number] = {
                "Id": self.next_id("project_ids", 300),
                "Number": number,
                "Name": project.name,
                "Reference": f"PRJ{number:03d}",
                "Description": None,
                "CustomerCode": customer_code.get(project.customer_key),
                "Status": "Completed" if project.closed else "Active",
                "StartDate": (now - timedelta(days=60 + 7 * index)).date(),
                "EndDate": project.deadline,
                "TargetSales": project.estimate,
                "ActualSales": Decimal("0"),
                "TargetCosts": Decimal("0"),
                "ActualCosts": Decimal("0"),
            }

    # -- look-ups --------------------------------------------------------------------------------

    def supplier(self, code: Any) -> Record | None:
        return self.suppliers.get(str(code).strip().upper()) if code is not None else None

    def customer(self, code: Any) -> Record | None:
        return self.customers.get(str(code).strip().upper()) if code is not None else None


def _code_prefix(name: str) -> str:
    """KashFlow-style codes are four letters of the name and a counter ("THAM01")."""
    return (re.sub(r"[^A-Za-z]", "", name).upper() + "XXXX")[:4]


def _contact_code(name: str, taken: dict[str, int]) -> str:
    prefix = _code_prefix(name)
    taken[prefix] = taken.get(prefix, 0) + 1
    return f"{prefix}{taken[prefix]:02d}"


def unused_contact_code(name: str, existing: dict[str, Record]) -> str:
    prefix = _code_prefix(name)
    counter = 1
    while f"{prefix}{counter:02d}" in existing:
        counter += 1
    return f"{prefix}{counter:02d}"


# --------------------------------------------------------------------------------------------
# Writes
# --------------------------------------------------------------------------------------------

Problem = tuple[str, str]  # (field path, message)


@dataclass
class Prepared:
    kind: str
    problems: list[Problem] = field(default_factory=list)
    apply: Callable[[datetime], Record] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class WriteContext:
    company: KashFlowCompany
    settings: KashFlowSettings
    today: date


def _decimal(raw: dict[str, Any], name: str, path: str, problems: list[Problem], *,
             required: bool = False) -> Decimal | None:
    value = raw.get(name.lower())
    if value is None or value == "":
        if required:
            problems.append((path, f"The {name} field is required."))
        return None
    try:
        return to_decimal(value)
    except ValueError:
        problems.append((path, f"The value '{value}' is not valid for {name}."))
        return None


def _whole_number(value: Any, name: str, path: str, problems: list[Problem]) -> int | None:
    """``value`` as an integer, or None with model binding's problem for a value it cannot convert."""
    try:
        return int(str(value))
    except ValueError:
        problems.append((path, f"The value '{value}' is not valid for {name}."))
        return None


def _date(ctx: WriteContext, raw: dict[str, Any], name: str, problems: list[Problem]) -> date | None:
    value = raw.get(name.lower())
    if value is None or value == "":
        if ctx.settings.require_document_dates:
            problems.append((name, f"The {name} field is required."))
        return None
    try:
        return parse_kf_date(value)
    except (TypeError, ValueError):
        problems.append((name, f"The value '{value}' is not valid for {name} (use YYYY-MM-DD HH:mm:ss)."))
        return None


def _project(ctx: WriteContext, value: Any, path: str, problems: list[Problem]) -> Record | None:
    if value in (None, "", 0, "0"):
        return None
    number = _whole_number(value, "ProjectNumber", path, problems)
    if number is None:
        return None
    project = ctx.company.projects.get(number)
    if project is None:
        problems.append((path, f"Project number {number} does not exist."))
    return project


def _currency(raw: dict[str, Any], problems: list[Problem]) -> Record:
    currency = fold(raw.get("currency"))
    code = str(currency.get("code") or BASE_CURRENCY).upper()
    if code not in CURRENCIES:
        problems.append(("Currency.Code", f"Currency '{code}' is not set up for this company."))
        return dict(CURRENCIES[BASE_CURRENCY])
    chosen = dict(CURRENCIES[code])
    if currency.get("exchangerate") not in (None, ""):
        try:
            rate = to_decimal(currency["exchangerate"])
            if rate <= 0:
                raise ValueError(rate)
            chosen["ExchangeRate"] = rate
        except ValueError:
            problems.append(("Currency.ExchangeRate", "The exchange rate must be a positive number."))
    return chosen


@dataclass
class _Line:
    raw: dict[str, Any]
    quantity: Decimal
    rate: Decimal
    vat_level: Decimal
    vat_amount: Decimal
    nominal: Record
    project: Record | None

    @property
    def net(self) -> Decimal:
        return money(self.quantity * self.rate)


def _lines(ctx: WriteContext, body: dict[str, Any], problems: list[Problem], *, classification: str,
           header_project: Record | None) -> list[_Line]:
    raw_lines = body.get("lineitems")
    if not isinstance(raw_lines, list) or not raw_lines:
        problems.append(("LineItems", "At least one line item is required."))
        return []
    lines: list[_Line] = []
    for index, raw_line in enumerate(raw_lines):
        path = f"LineItems[{index}]"
        line = fold(raw_line)
        if not line:
            problems.append((path, "A line item must be an object."))
            continue
        count = len(problems)
        quantity = _decimal(line, "Quantity", f"{path}.Quantity", problems)
        rate = _decimal(line, "Rate", f"{path}.Rate", problems, required=True)
        nominal = _nominal(ctx, line.get("nominalcode"), f"{path}.NominalCode", problems,
                           classification=classification)
        vat_level = _vat_level(ctx, line, nominal, f"{path}.VATLevel", problems)
        vat_amount = _decimal(line, "VATAmount", f"{path}.VATAmount", problems)
        project = _project(ctx, line.get("projectnumber"), f"{path}.ProjectNumber", problems) or header_project
        if len(problems) != count or rate is None or nominal is None or vat_level is None:
            continue
        quantity = quantity if quantity is not None else Decimal("1")
        if quantity <= 0:
            problems.append((f"{path}.Quantity", "Quantity must be greater than zero."))
            continue
        net = money(quantity * rate)
        exempt = bool(line.get("vatexempt")) or nominal["VATExempt"]
        # A VATAmount sent by the client is kept (KashFlow lets users adjust VAT by a penny).
        computed = Decimal("0") if exempt else money(net * vat_level / Decimal("100"))
        lines.append(_Line(line, quantity, rate, vat_level, money(vat_amount) if vat_amount is not None else computed,
                           nominal, project))
    return lines


def _nominal(ctx: WriteContext, value: Any, path: str, problems: list[Problem], *, classification: str
             ) -> Record | None:
    if value in (None, ""):
        problems.append((path, "The NominalCode field is required."))
        return None
    code = _whole_number(value, "NominalCode", path, problems)
    if code is None:
        return None
    nominal = ctx.company.nominals.get(code)
    if nominal is None:
        problems.append((path, f"Nominal code {code} does not exist."))
        return None
    if nominal["Archived"] and ctx.settings.reject_archived_references:
        problems.append((path, f"Nominal code {code} ({nominal['Name']}) is archived."))
    if ctx.settings.nominal_type_checks and nominal["Classification"] != classification:
        problems.append((path, f"Nominal code {code} ({nominal['Name']}) is a {nominal['Classification']} nominal; "
                               f"use a {classification} nominal."))
    return nominal


def _vat_level(ctx: WriteContext, line: dict[str, Any], nominal: Record | None, path: str,
               problems: list[Problem]) -> Decimal | None:
    raw = line.get("vatlevel")
    if raw in (None, ""):
        # Left out, the nominal's default rate applies.
        return nominal["VATRate"] if nominal else None
    try:
        level = to_decimal(raw)
    except ValueError:
        problems.append((path, f"The value '{raw}' is not valid for VATLevel."))
        return None
    if level not in ctx.company.vat_levels:
        configured = ", ".join(f"{r.normalize():f}" for r in ctx.company.vat_levels)
        problems.append((path, f"VAT level {raw} is not one of the configured VAT rates ({configured})."))
        return None
    return level


def _payment_lines(ctx: WriteContext, body: dict[str, Any], problems: list[Problem]) -> list[Record]:
    raw_payments = body.get("paymentlines")
    if raw_payments in (None, []):
        return []
    if not isinstance(raw_payments, list):
        problems.append(("PaymentLines", "PaymentLines must be an array."))
        return []
    payments: list[Record] = []
    for index, raw_payment in enumerate(raw_payments):
        path = f"PaymentLines[{index}]"
        payment = fold(raw_payment)
        account = None
        with contextlib.suppress(ValueError):
            account = ctx.company.bank_accounts.get(int(str(payment.get("accountid"))))
        if account is None:
            problems.append((f"{path}.AccountId", f"AccountId {payment.get('accountid')!r} is not a bank account."))
        elif account["IsArchived"] and ctx.settings.reject_archived_references:
            problems.append((f"{path}.AccountId", f"Bank account {account['AccountName']} is archived."))
        amount = _decimal(payment, "Amount", f"{path}.Amount", problems, required=True)
        if amount is not None and amount <= 0:
            problems.append((f"{path}.Amount", "A payment amount must be greater than zero."))
        paid_on = None
        try:
            paid_on = parse_kf_date(payment.get("date"))
        except (TypeError, ValueError):
            problems.append((f"{path}.Date", "The Date field is required (YYYY-MM-DD HH:mm:ss)."))
        if account is not None and amount is not None and paid_on is not None:
            payments.append({"AccountId": account["Id"], "Amount": money(amount), "Date": paid_on,
                             "Method": payment.get("method") or 1, "Note": payment.get("note")})
    return payments


def _number(store: dict[int, Record], body: dict[str, Any], problems: list[Problem]) -> int | None:
    raw = body.get("number")
    if raw in (None, "", 0):
        return max(store, default=0) + 1
    number = _whole_number(raw, "Number", "Number", problems)
    if number is None:
        return None
    if number in store:
        problems.append(("Number", f"Number {number} is already in use."))
    return number


def _document(ctx: WriteContext, raw: Any, *, kind: str) -> Prepared:
    """A purchase (supplier bill) or a sales invoice: they share KashFlow's shape."""
    purchase = kind == "Purchase"
    problems: list[Problem] = []
    body = fold(raw)
    if not body:
        return Prepared(kind, [("", "The request body must be a JSON object.")])
    store = ctx.company.purchases if purchase else ctx.company.invoices
    party_field = "SupplierCode" if purchase else "CustomerCode"
    party_code = body.get(party_field.lower())
    party = ctx.company.supplier(party_code) if purchase else ctx.company.customer(party_code)
    if party_code in (None, ""):
        problems.append((party_field, f"The {party_field} field is required."))
    elif party is None:
        problems.append((party_field, f"{'Supplier' if purchase else 'Customer'} with code '{party_code}' "
                                      f"does not exist."))
    elif party["IsArchived"] and ctx.settings.reject_archived_references:
        problems.append((party_field, f"{party['Name']} ({party['Code']}) is archived."))
    issued = _date(ctx, body, "IssuedDate", problems)
    due = _date(ctx, body, "DueDate", problems)
    currency = _currency(body, problems)
    header_project = _project(ctx, body.get("projectnumber"), "ProjectNumber", problems)
    lines = _lines(ctx, body, problems, classification=PURCHASES if purchase else SALES,
                   header_project=header_project)
    payments = _payment_lines(ctx, body, problems) if purchase else []
    number = _number(store, body, problems)
    net = sum((line.net for line in lines), Decimal("0"))
    vat = sum((line.vat_amount for line in lines), Decimal("0"))
    paid = sum((p["Amount"] for p in payments), Decimal("0"))
    if payments and paid > net + vat:
        problems.append(("PaymentLines", f"Payments ({paid}) exceed the purchase total ({net + vat})."))
    prepared = Prepared(kind, problems)
    if problems:
        return prepared
    assert party is not None and number is not None
    issued = issued or ctx.today
    due = due or issued + timedelta(days=party["PaymentTerms"])
    reference_field = "SupplierReference" if purchase else "CustomerReference"

    def apply(now: datetime) -> Record:
        company = ctx.company
        rate = currency["ExchangeRate"]
        document_id = company.next_id("purchase_ids" if purchase else "invoice_ids", 5000 if purchase else 9000)
        line_items = [{
            "Id": company.next_id("line_ids", 70000),
            "Number": position,
            "Description": line.raw.get("description"),
            "Quantity": line.quantity,
            "Rate": line.rate,
            "VATLevel": line.vat_level,
            "VATAmount": line.vat_amount,
            "VATExempt": bool(line.raw.get("vatexempt")) or line.nominal["VATExempt"],
            "NominalCode": line.nominal["Code"],
            "NominalId": line.nominal["Id"],
            "NominalName": line.nominal["Name"],
            "ProjectNumber": line.project["Number"] if line.project else 0,
            "ProjectName": line.project["Name"] if line.project else None,
            "ProductCode": line.raw.get("productcode"),
            "HomeCurrencyRate": money(line.rate / rate),
            "HomeCurrencyVATAmount": money(line.vat_amount / rate),
        } for position, line in enumerate(lines, start=1)]
        for payment in payments:
            payment["Id"] = company.next_id("payment_ids", 30000)
            payment["Date"] = datetime.combine(payment["Date"], time(), tzinfo=UTC)
        document: Record = {
            "Id": document_id,
            "Number": number,
            f"{'Supplier' if purchase else 'Customer'}Id": party["Id"],
            party_field: party["Code"],
            f"{'Supplier' if purchase else 'Customer'}Name": party["Name"],
            reference_field: body.get(reference_field.lower()),
            "IssuedDate": issued,
            "DueDate": due,
            "Currency": currency,
            "ProjectNumber": header_project["Number"] if header_project else 0,
            "ProjectName": header_project["Name"] if header_project else None,
            "LineItems": line_items,
            "PaymentLines": payments,
            "NetAmount": net,
            "VATAmount": vat,
            "GrossAmount": net + vat,
            "TotalPaidAmount": paid,
            "PaidDate": max((p["Date"] for p in payments), default=None) if paid == net + vat and paid else None,
            "FileCount": 0,
            "CreatedDate": now,
            "LastUpdatedDate": now,
        }
        store[number] = document
        party["OutstandingBalance"] += net + vat - paid
        party["TotalPaidAmount"] += paid
        for payment in payments:
            company.bank_accounts[payment["AccountId"]]["Balance"] += -payment["Amount"] if purchase \
                else payment["Amount"]
        return document

    prepared.apply = apply
    return prepared


def prepare_purchase(ctx: WriteContext, raw: Any) -> Prepared:
    return _document(ctx, raw, kind="Purchase")


def prepare_invoice(ctx: WriteContext, raw: Any) -> Prepared:
    return _document(ctx, raw, kind="Invoice")


def document_view(document: Record, today: date, origin: str, object_type: str, *, summary: bool = False) -> Record:
    """A purchase or invoice with its derived fields; summaries (list rows) null the detail."""
    due = document["GrossAmount"] - document["TotalPaidAmount"]
    if due <= 0 and document["GrossAmount"]:
        status = "Paid"
    elif document["DueDate"] < today:
        status = "Overdue"
    else:
        status = "Unpaid"
    view = {
        **document,
        "DueAmount": due,
        "Status": status,
        "OverdueDays": max(0, (today - document["DueDate"]).days) if status == "Overdue" else 0,
        "Permalink": f"{origin}/v2/{object_type}/{document['Number']}",
    }
    if summary:
        view.update({"LineItems": None, "PaymentLines": None, "Currency": None})
    return view


def prepare_contact(ctx: WriteContext, raw: Any, *, kind: str) -> Prepared:
    """A new supplier or customer."""
    problems: list[Problem] = []
    body = fold(raw)
    if not body:
        return Prepared(kind, [("", "The request body must be a JSON object.")])
    store = ctx.company.suppliers if kind == "Supplier" else ctx.company.customers
    name = str(body.get("name") or "").strip()
    if not name:
        problems.append(("Name", "The Name field is required."))
    code = str(body.get("code") or "").strip().upper()
    if code and code in store:
        problems.append(("Code", f"{kind} code '{code}' is already in use."))
    if code and not re.fullmatch(r"[A-Z0-9]{1,20}", code):
        problems.append(("Code", "Codes are up to 20 letters and digits."))
    default_nominal = body.get("defaultnominalcode")
    if default_nominal not in (None, "", 0):
        nominal_code = _whole_number(default_nominal, "DefaultNominalCode", "DefaultNominalCode", problems)
        if nominal_code is not None and nominal_code not in ctx.company.nominals:
            problems.append(("DefaultNominalCode", f"Nominal code {default_nominal} does not exist."))
    currency = _currency(body, problems)
    terms = body.get("paymentterms")
    if terms not in (None, "") and not str(terms).isdigit():
        problems.append(("PaymentTerms", "PaymentTerms is a whole number of days."))
    prepared = Prepared(kind, problems)
    if problems:
        return prepared

    def apply(now: datetime) -> Record:
        final_code = code or unused_contact_code(name, store)
        address = fold(body.get("address"))
        record: Record = {
            "Id": ctx.company.next_id("suppliers" if kind == "Supplier" else "customers", 1),
            "Code": final_code,
            "Name": name,
            "ContactFirstName": body.get("contactfirstname"),
            "ContactLastName": body.get("contactlastname"),
            "Email": body.get("email"),
            "Telephone": body.get("telephone"),
            "VatNumber": body.get("vatnumber"),
            "Currency": currency,
            "DefaultNominalCode": int(str(default_nominal)) if default_nominal not in (None, "", 0) else None,
            "PaymentTerms": int(str(terms)) if terms not in (None, "") else 30,
            "OutstandingBalance": Decimal("0"),
            "TotalPaidAmount": Decimal("0"),
            "IsArchived": False,
            "CreatedDate": now,
            "LastUpdatedDate": now,
            "Address": {"Line1": address.get("line1"), "Line2": address.get("line2"), "Line3": address.get("line3"),
                        "Line4": address.get("line4"), "PostCode": address.get("postcode"),
                        "CountryName": address.get("countryname") or "United Kingdom",
                        "CountryCode": address.get("countrycode") or "GB"},
        }
        store[final_code] = record
        return record

    prepared.apply = apply
    return prepared


CONTACT_SUMMARY_FIELDS = ("Id", "Code", "Name", "Email", "Telephone", "ContactFirstName", "ContactLastName",
                          "VatNumber", "Currency", "DefaultNominalCode", "OutstandingBalance", "TotalPaidAmount",
                          "IsArchived", "CreatedDate", "LastUpdatedDate")


def contact_summary(contact: Record) -> Record:
    return {name: contact.get(name) for name in CONTACT_SUMMARY_FIELDS}


__all__ = [
    "CONTACT_SUMMARY_FIELDS",
    "KashFlowCompany",
    "KashFlowLogin",
    "Prepared",
    "WriteContext",
    "contact_summary",
    "document_view",
    "fold",
    "parse_kf_date",
    "prepare_contact",
    "prepare_invoice",
    "prepare_purchase",
    "render",
    "to_decimal",
]
