"""A provider-neutral seeded dataset of UK organisations for the ledger simulators.

Every simulator starts from the same neutral description of "the seeded user's organisations" and
maps it into its own shapes (Xero `TaxType` codes, QuickBooks `TaxCode`s, Sage ledger accounts…),
so a scenario written against one ledger reads the same against another.

The dataset is a pure function of ``(preset, seed, today)``: the same inputs always give the same
organisations, names, codes and ages, and simulators derive their remote ids from the records'
``key`` with :func:`stable_uuid`, so ids survive a restart or a re-seed.

Presets:

``small`` (default)
    Two organisations for the seeded user, so an organisation picker is exercised. The first,
    "Demo Company (UK)", has ~50 accounts (3 bank accounts, one archived expense account),
    130 contacts (suppliers and customers, some archived — more than one 100-row page),
    15 items, two tracking dimensions (one option archived), 5 projects, and five unreconciled
    money-out lines on each live bank and card account (paid 2-27 days ago to seeded suppliers;
    fixed amounts such as 54.00, 42.50, 68.40, 312.00 and 18.95, plus a penny per account index, so
    an amount belongs to one account). The second is a joinery business with a different chart,
    different contacts and different items (and the same kind of bank lines).
``large``
    The first organisation grows to 500 accounts, 10,000 contacts and 1,000 items (for paging and
    incremental-sync benchmarks); the second stays small.
``empty``
    The same two organisations with no accounts, contacts, items, tracking or projects; VAT rates
    remain because every ledger has them built in.

Ages are relative (``updated_minutes_ago``) so a simulator stamps them against its own clock.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal

Preset = Literal["small", "large", "empty"]
PRESETS: tuple[Preset, ...] = ("small", "large", "empty")

# Namespace for every id a simulator derives from the neutral dataset.
_SANDBOX_NAMESPACE = uuid.UUID("6f1c2a47-3e5b-4d0a-9a57-2f7c1b8e4d21")


def stable_uuid(*parts: str) -> str:
    """A deterministic GUID for a record: the same parts always give the same id."""
    return str(uuid.uuid5(_SANDBOX_NAMESPACE, ":".join(parts)))


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


class VatKey(StrEnum):
    """UK VAT treatments. Ledgers split these further (Xero: one tax type per direction)."""

    STANDARD = "standard"
    REDUCED = "reduced"
    ZERO = "zero"
    EXEMPT = "exempt"
    NO_VAT = "no_vat"
    # The 17.5 % standard rate that ended in January 2011: kept, archived, in older ledgers.
    HISTORIC_STANDARD = "historic_standard"


@dataclass(frozen=True)
class VatRate:
    key: VatKey
    name: str
    percent: Decimal
    archived: bool = False


UK_VAT_RATES: tuple[VatRate, ...] = (
    VatRate(VatKey.STANDARD, "Standard rate", Decimal("20")),
    VatRate(VatKey.REDUCED, "Reduced rate", Decimal("5")),
    VatRate(VatKey.ZERO, "Zero rate", Decimal("0")),
    VatRate(VatKey.EXEMPT, "Exempt", Decimal("0")),
    VatRate(VatKey.NO_VAT, "No VAT (outside the scope)", Decimal("0")),
    VatRate(VatKey.HISTORIC_STANDARD, "Standard rate (pre-2011)", Decimal("17.5"), archived=True),
)


class AccountKind(StrEnum):
    """What an account is for, in terms every ledger can map to its own account types."""

    BANK = "bank"
    CREDIT_CARD = "credit_card"
    CURRENT_ASSET = "current_asset"
    FIXED_ASSET = "fixed_asset"
    INVENTORY = "inventory"
    PREPAYMENT = "prepayment"
    CURRENT_LIABILITY = "current_liability"
    LONG_TERM_LIABILITY = "long_term_liability"
    EQUITY = "equity"
    REVENUE = "revenue"
    OTHER_INCOME = "other_income"
    DIRECT_COSTS = "direct_costs"
    OVERHEADS = "overheads"
    DEPRECIATION = "depreciation"


INCOME_KINDS = frozenset({AccountKind.REVENUE, AccountKind.OTHER_INCOME})
EXPENSE_KINDS = frozenset({AccountKind.DIRECT_COSTS, AccountKind.OVERHEADS, AccountKind.DEPRECIATION})
BANK_KINDS = frozenset({AccountKind.BANK, AccountKind.CREDIT_CARD})


class SystemRole(StrEnum):
    """Accounts the ledger itself owns; transactions may not post to most of them directly."""

    RECEIVABLES = "receivables"
    PAYABLES = "payables"
    VAT = "vat"
    RETAINED_EARNINGS = "retained_earnings"
    ROUNDING = "rounding"
    HISTORICAL = "historical"
    TRACKING_TRANSFERS = "tracking_transfers"
    UNPAID_EXPENSE_CLAIMS = "unpaid_expense_claims"


@dataclass(frozen=True)
class BankDetails:
    sort_code: str
    account_number: str


@dataclass(frozen=True)
class SeedAccount:
    key: str
    code: str
    name: str
    kind: AccountKind
    # Default VAT treatment for lines posted to this account (direction follows the kind).
    vat: VatKey = VatKey.NO_VAT
    archived: bool = False
    description: str = ""
    system_role: SystemRole | None = None
    bank: BankDetails | None = None
    expense_claims: bool = False
    # Liability/asset accounts that bills may be paid from (e.g. a director's loan account).
    accepts_payments: bool = False
    updated_minutes_ago: int = 0


@dataclass(frozen=True)
class SeedAddress:
    line1: str
    city: str
    postcode: str
    country: str = "United Kingdom"


@dataclass(frozen=True)
class SeedContact:
    key: str
    name: str
    first_name: str
    last_name: str
    email: str
    phone: str
    address: SeedAddress
    is_supplier: bool
    is_customer: bool
    contact_number: str
    archived: bool = False
    vat_number: str | None = None
    company_number: str | None = None
    default_purchase_account_code: str | None = None
    default_sales_account_code: str | None = None
    updated_minutes_ago: int = 0


@dataclass(frozen=True)
class ItemPrice:
    unit_price: Decimal
    account_code: str
    vat: VatKey


@dataclass(frozen=True)
class SeedItem:
    key: str
    code: str
    name: str
    description: str
    purchase: ItemPrice | None
    sales: ItemPrice | None
    updated_minutes_ago: int = 0


@dataclass(frozen=True)
class SeedTrackingOption:
    key: str
    name: str
    archived: bool = False


@dataclass(frozen=True)
class SeedTrackingDimension:
    key: str
    name: str
    options: tuple[SeedTrackingOption, ...]
    archived: bool = False


@dataclass(frozen=True)
class SeedProject:
    key: str
    name: str
    customer_key: str
    closed: bool
    deadline: date | None
    estimate: Decimal


@dataclass(frozen=True)
class SeedPerson:
    """Someone in the organisation who may claim expenses (Xero: a User)."""

    key: str
    first_name: str
    last_name: str
    email: str
    role: Literal["admin", "standard", "invoice_only"]


@dataclass(frozen=True)
class SeedBankLine:
    """A line on a bank account that nobody has reconciled yet: money that left the account and
    waits to be paired with a bill (what bank match looks for). Ledgers that show such lines map it
    into their own shape (Xero: an unreconciled SPEND BankTransaction)."""

    key: str
    bank_account_code: str
    days_ago: int
    amount: Decimal  # positive: money out
    payee_key: str  # a seeded supplier (SeedContact.key)
    reference: str
    category_code: str  # what the ledger coded it to, where a line carries coding


@dataclass(frozen=True)
class SeedOrganisation:
    key: str
    name: str
    legal_name: str
    short_code: str
    vat_number: str
    company_number: str
    address: SeedAddress
    period_lock_date: date | None
    financial_year_end_day: int
    financial_year_end_month: int
    created_minutes_ago: int
    accounts: tuple[SeedAccount, ...] = ()
    contacts: tuple[SeedContact, ...] = ()
    items: tuple[SeedItem, ...] = ()
    tracking: tuple[SeedTrackingDimension, ...] = ()
    projects: tuple[SeedProject, ...] = ()
    people: tuple[SeedPerson, ...] = ()
    bank_lines: tuple[SeedBankLine, ...] = ()
    vat_rates: tuple[VatRate, ...] = UK_VAT_RATES
    base_currency: str = "GBP"
    country_code: str = "GB"

    def account(self, code: str) -> SeedAccount:
        return next(account for account in self.accounts if account.code == code)


@dataclass(frozen=True)
class Dataset:
    preset: Preset
    seed: int
    organisations: tuple[SeedOrganisation, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------------------------
# Vocabulary (fictitious but plausible UK businesses and people)
# --------------------------------------------------------------------------------------------

_PLACE_WORDS = (
    "Thames", "Pennine", "Cotswold", "Mersey", "Severn", "Chiltern", "Mendip", "Solent", "Humber",
    "Tyne", "Clyde", "Avon", "Wessex", "Mercia", "Kentish", "Cheviot", "Malvern", "Quantock",
    "Fenland", "Dales", "Brecon", "Exmoor", "Lakeland", "Trent", "Medway", "Downland", "Peak",
    "Wolds", "Orwell", "Tamar", "Highland", "Lowther", "Bramley", "Ashdown", "Kingsway", "Harbour",
    "Millbrook", "Oakfield", "Westgate", "Northgate", "Riverside", "Bridgewater", "Castle", "Abbey",
    "Crown", "Granite", "Copper", "Ironbridge", "Kestrel", "Heron", "Foxglove", "Oakwood", "Willow",
    "Beacon", "Meridian", "Albion", "Victoria", "Regent", "Sterling", "Pioneer",
)
_SUPPLIER_TRADES = (
    "Office Supplies", "Print Works", "Stationers", "Couriers", "Logistics", "IT Services",
    "Cleaning Services", "Catering", "Joinery Supplies", "Electrical", "Plumbing & Heating",
    "Facilities", "Security", "Telecoms", "Web Design", "Marketing", "Recruitment", "Accountancy",
    "Legal Services", "Insurance Brokers", "Van Hire", "Fuel Services", "Software", "Hardware",
    "Packaging", "Signs", "Timber Merchants", "Builders Merchants", "Waste Management", "Training",
)
_CUSTOMER_TRADES = (
    "Dental Practice", "Veterinary Clinic", "Hotels", "Garden Centre", "Bakery", "Brewing Co",
    "Estate Agents", "Architects", "Consulting", "Fitness", "Florists", "Motors", "Nurseries",
    "Opticians", "Pharmacy", "Salon", "Tea Rooms", "Bookshop", "Gallery", "Surveyors",
    "Engineering", "Properties", "Care Homes", "Cycles", "Delicatessen", "Kitchens", "Interiors",
    "Landscapes", "Music School", "Studios",
)
_COMPANY_SUFFIXES = ("Ltd", "Ltd", "Ltd", "Limited", "LLP", "& Co", "Group Ltd", "& Sons", "plc")
_FIRST_NAMES = (
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy", "Leo",
    "Freya", "Arthur", "Lily", "Muhammad", "Florence", "Oscar", "Grace", "Charlie", "Sophia",
    "Priya", "Aisha", "Tomasz", "Siobhan", "Rhys", "Eilidh", "Callum", "Niamh", "Dev", "Chloe",
)
_LAST_NAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
    "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood",
    "Jackson", "Clarke", "Khan", "Murphy", "Campbell", "Hughes", "Edwards", "Lewis", "Kaur",
    "Ahmed", "Morgan",
)
_TOWNS = (
    ("London", "EC1V 2NX", "020"), ("Manchester", "M1 4BT", "0161"), ("Leeds", "LS1 5AB", "0113"),
    ("Bristol", "BS1 6QF", "0117"), ("Birmingham", "B3 2DJ", "0121"), ("Glasgow", "G2 1DY", "0141"),
    ("Edinburgh", "EH2 2ER", "0131"), ("Cardiff", "CF10 1EP", "029"), ("Newcastle upon Tyne",
    "NE1 5DW", "0191"), ("Nottingham", "NG1 6HL", "0115"), ("Sheffield", "S1 2HE", "0114"),
    ("Liverpool", "L2 3SX", "0151"), ("Brighton", "BN1 1EE", "01273"), ("Cambridge", "CB2 3QZ",
    "01223"), ("Oxford", "OX1 2JD", "01865"), ("York", "YO1 7HH", "01904"), ("Norwich", "NR2 1NH",
    "01603"), ("Exeter", "EX1 1BX", "01392"), ("Belfast", "BT1 5GS", "028"), ("Aberdeen",
    "AB10 1AF", "01224"),
)
_STREETS = (
    "High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane", "King Street",
    "Market Place", "Park Road", "Queen Street", "The Green", "Bridge Street", "Castle Street",
)

# --------------------------------------------------------------------------------------------
# Charts of accounts
# --------------------------------------------------------------------------------------------

_A = AccountKind
_V = VatKey

# (code, name, kind, vat, extras) — a UK small-business chart in the usual numbering.
_DEMO_CHART: tuple[tuple[str, str, AccountKind, VatKey, dict[str, object]], ...] = (
    ("090", "Business Current Account", _A.BANK, _V.NO_VAT,
     {"bank": BankDetails("20-45-77", "41234567")}),
    ("091", "Business Savings Account", _A.BANK, _V.NO_VAT,
     {"bank": BankDetails("20-45-77", "83456712")}),
    ("092", "Company Credit Card", _A.CREDIT_CARD, _V.NO_VAT,
     {"bank": BankDetails("", "4929000000001234")}),
    ("200", "Sales", _A.REVENUE, _V.STANDARD, {}),
    ("205", "Sales - Zero Rated Goods", _A.REVENUE, _V.ZERO, {}),
    ("260", "Other Revenue", _A.REVENUE, _V.STANDARD, {}),
    ("270", "Interest Income", _A.OTHER_INCOME, _V.EXEMPT, {}),
    ("310", "Cost of Goods Sold", _A.DIRECT_COSTS, _V.STANDARD, {}),
    ("320", "Direct Wages", _A.DIRECT_COSTS, _V.NO_VAT, {}),
    ("325", "Direct Expenses", _A.DIRECT_COSTS, _V.STANDARD, {}),
    ("400", "Advertising & Marketing", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("401", "Audit & Accountancy fees", _A.OVERHEADS, _V.STANDARD, {}),
    ("404", "Bank Fees", _A.OVERHEADS, _V.EXEMPT, {}),
    ("408", "Cleaning", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("412", "Consulting", _A.OVERHEADS, _V.STANDARD, {}),
    ("416", "Depreciation Expense", _A.DEPRECIATION, _V.NO_VAT, {}),
    ("420", "Entertainment-100% business", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("424", "Entertainment - 0%", _A.OVERHEADS, _V.NO_VAT, {"expense_claims": True}),
    ("425", "Postage, Freight & Courier", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("429", "General Expenses", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("433", "Insurance", _A.OVERHEADS, _V.EXEMPT, {}),
    ("437", "Interest Paid", _A.OVERHEADS, _V.EXEMPT, {}),
    ("441", "Legal Expenses", _A.OVERHEADS, _V.STANDARD, {}),
    ("445", "Light, Power, Heating", _A.OVERHEADS, _V.REDUCED, {}),
    ("449", "Motor Vehicle Expenses", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("450", "Motor Vehicle Expenses (pre-2023 leases)", _A.OVERHEADS, _V.STANDARD,
     {"archived": True}),
    ("461", "Printing & Stationery", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("463", "IT Software and Consumables", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("469", "Rent", _A.OVERHEADS, _V.EXEMPT, {}),
    ("473", "Repairs and Maintenance", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("477", "Salaries", _A.OVERHEADS, _V.NO_VAT, {}),
    ("485", "Subscriptions", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("489", "Telephone & Internet", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("493", "Travel - National", _A.OVERHEADS, _V.ZERO, {"expense_claims": True}),
    ("494", "Travel - International", _A.OVERHEADS, _V.ZERO, {"expense_claims": True}),
    ("495", "Books & Publications", _A.OVERHEADS, _V.ZERO, {"expense_claims": True}),
    ("610", "Accounts Receivable", _A.CURRENT_ASSET, _V.NO_VAT,
     {"system_role": SystemRole.RECEIVABLES}),
    ("620", "Prepayments", _A.PREPAYMENT, _V.NO_VAT, {}),
    ("630", "Inventory", _A.INVENTORY, _V.NO_VAT, {}),
    ("710", "Office Equipment", _A.FIXED_ASSET, _V.STANDARD, {}),
    ("720", "Computer Equipment", _A.FIXED_ASSET, _V.STANDARD, {}),
    ("800", "Accounts Payable", _A.CURRENT_LIABILITY, _V.NO_VAT,
     {"system_role": SystemRole.PAYABLES}),
    ("814", "Unpaid Expense Claims", _A.CURRENT_LIABILITY, _V.NO_VAT,
     {"system_role": SystemRole.UNPAID_EXPENSE_CLAIMS}),
    ("820", "VAT", _A.CURRENT_LIABILITY, _V.NO_VAT, {"system_role": SystemRole.VAT}),
    ("835", "Directors' Loan Account", _A.CURRENT_LIABILITY, _V.NO_VAT,
     {"accepts_payments": True}),
    ("840", "Historical Adjustment", _A.CURRENT_LIABILITY, _V.NO_VAT,
     {"system_role": SystemRole.HISTORICAL}),
    ("860", "Rounding", _A.CURRENT_LIABILITY, _V.NO_VAT, {"system_role": SystemRole.ROUNDING}),
    ("877", "Tracking Transfers", _A.CURRENT_LIABILITY, _V.NO_VAT,
     {"system_role": SystemRole.TRACKING_TRANSFERS}),
    ("900", "Loan", _A.LONG_TERM_LIABILITY, _V.NO_VAT, {}),
    ("960", "Retained Earnings", _A.EQUITY, _V.NO_VAT,
     {"system_role": SystemRole.RETAINED_EARNINGS}),
    ("970", "Owner A Funds Introduced", _A.EQUITY, _V.NO_VAT, {}),
)

# The joinery business: a leaner chart with its own direct costs and only two bank accounts.
_JOINERY_CHART: tuple[tuple[str, str, AccountKind, VatKey, dict[str, object]], ...] = (
    ("1200", "Current Account", _A.BANK, _V.NO_VAT, {"bank": BankDetails("40-11-62", "70112233")}),
    ("1210", "Card Account", _A.CREDIT_CARD, _V.NO_VAT, {"bank": BankDetails("", "5454000000009876")}),
    ("4000", "Fitted Kitchens", _A.REVENUE, _V.STANDARD, {}),
    ("4010", "Bespoke Furniture", _A.REVENUE, _V.STANDARD, {}),
    ("4020", "Repairs & Call-outs", _A.REVENUE, _V.STANDARD, {}),
    ("4900", "Sundry Income", _A.OTHER_INCOME, _V.EXEMPT, {}),
    ("5000", "Timber & Sheet Materials", _A.DIRECT_COSTS, _V.STANDARD, {}),
    ("5010", "Ironmongery", _A.DIRECT_COSTS, _V.STANDARD, {}),
    ("5020", "Subcontractors", _A.DIRECT_COSTS, _V.NO_VAT, {}),
    ("7100", "Workshop Rent", _A.OVERHEADS, _V.EXEMPT, {}),
    ("7200", "Workshop Power", _A.OVERHEADS, _V.REDUCED, {}),
    ("7300", "Tools & Small Equipment", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("7400", "Van Running Costs", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("7410", "Fuel", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("7500", "Office Costs", _A.OVERHEADS, _V.STANDARD, {"expense_claims": True}),
    ("7600", "Insurance", _A.OVERHEADS, _V.EXEMPT, {}),
    ("7700", "Accountancy", _A.OVERHEADS, _V.STANDARD, {}),
    ("7800", "Trade Shows (discontinued)", _A.OVERHEADS, _V.STANDARD, {"archived": True}),
    ("7900", "Bank Charges", _A.OVERHEADS, _V.EXEMPT, {}),
    ("1100", "Debtors Control", _A.CURRENT_ASSET, _V.NO_VAT, {"system_role": SystemRole.RECEIVABLES}),
    ("0030", "Workshop Machinery", _A.FIXED_ASSET, _V.STANDARD, {}),
    ("2100", "Creditors Control", _A.CURRENT_LIABILITY, _V.NO_VAT,
     {"system_role": SystemRole.PAYABLES}),
    ("2110", "Unpaid Expense Claims", _A.CURRENT_LIABILITY, _V.NO_VAT,
     {"system_role": SystemRole.UNPAID_EXPENSE_CLAIMS}),
    ("2200", "VAT Control", _A.CURRENT_LIABILITY, _V.NO_VAT, {"system_role": SystemRole.VAT}),
    ("2300", "Rounding", _A.CURRENT_LIABILITY, _V.NO_VAT, {"system_role": SystemRole.ROUNDING}),
    ("3200", "Retained Earnings", _A.EQUITY, _V.NO_VAT, {"system_role": SystemRole.RETAINED_EARNINGS}),
)

# Bases and qualifiers for generated accounts in the large preset.
_GENERATED_ACCOUNT_BASES = (
    ("Travel", _V.ZERO), ("Subsistence", _V.STANDARD), ("Software Subscriptions", _V.STANDARD),
    ("Equipment Hire", _V.STANDARD), ("Consultancy", _V.STANDARD), ("Advertising", _V.STANDARD),
    ("Training", _V.EXEMPT), ("Repairs", _V.STANDARD), ("Utilities", _V.REDUCED),
    ("Vehicle Costs", _V.STANDARD), ("Stationery", _V.STANDARD), ("Postage", _V.STANDARD),
    ("Telephone", _V.STANDARD), ("Cleaning", _V.STANDARD), ("Entertainment", _V.NO_VAT),
    ("Sales", _V.STANDARD), ("Service Income", _V.STANDARD), ("Materials", _V.STANDARD),
)
_GENERATED_ACCOUNT_QUALIFIERS = (
    "North", "South", "Midlands", "Scotland", "Wales", "London", "Sales Team", "Operations",
    "Administration", "Marketing", "Warehouse", "Project Delivery", "Research", "Support",
    "Field Engineers", "Head Office", "Retail", "Online", "Wholesale", "Events", "Fleet",
    "Facilities", "Finance", "HR", "Legal", "Procurement", "Quality", "Training Centre",
)


def _chart(
    rows: tuple[tuple[str, str, AccountKind, VatKey, dict[str, object]], ...],
    rng: random.Random,
) -> list[SeedAccount]:
    return [
        SeedAccount(
            key=f"account:{code}",
            code=code,
            name=name,
            kind=kind,
            vat=vat,
            updated_minutes_ago=rng.randint(60 * 24 * 30, 60 * 24 * 700),
            **extras,  # type: ignore[arg-type]
        )
        for code, name, kind, vat, extras in rows
    ]


def _generated_accounts(count: int, rng: random.Random, taken_names: set[str]) -> list[SeedAccount]:
    accounts: list[SeedAccount] = []
    code = 5000
    combos = [
        (base, vat, qualifier)
        for base, vat in _GENERATED_ACCOUNT_BASES
        for qualifier in _GENERATED_ACCOUNT_QUALIFIERS
    ]
    rng.shuffle(combos)
    for base, vat, qualifier in combos:
        if len(accounts) >= count:
            break
        name = f"{base} - {qualifier}"
        if name in taken_names:
            continue
        taken_names.add(name)
        income = base in {"Sales", "Service Income"}
        accounts.append(
            SeedAccount(
                key=f"account:{code}",
                code=str(code),
                name=name,
                kind=AccountKind.REVENUE if income else AccountKind.OVERHEADS,
                vat=vat,
                archived=rng.random() < 0.03,
                expense_claims=not income and rng.random() < 0.4,
                updated_minutes_ago=rng.randint(60, 60 * 24 * 700),
            )
        )
        code += 1
    if len(accounts) < count:
        raise ValueError(f"cannot generate {count} distinct account names")
    return accounts


# --------------------------------------------------------------------------------------------
# Contacts
# --------------------------------------------------------------------------------------------


def _company_names(rng: random.Random, trades: tuple[str, ...], count: int, taken: set[str]) -> list[str]:
    names: list[str] = []
    attempts = 0
    while len(names) < count:
        attempts += 1
        name = f"{rng.choice(_PLACE_WORDS)} {rng.choice(trades)} {rng.choice(_COMPANY_SUFFIXES)}"
        if attempts > count * 50:
            # The vocabulary is exhausted: disambiguate the way real registers do.
            name = f"{name} ({len(taken) + 1})"
        if name in taken:
            continue
        taken.add(name)
        names.append(name)
    return names


def _contact_default_codes(accounts: list[SeedAccount]) -> tuple[list[str], list[str]]:
    """(purchase, sales) account codes a contact may default to: live, non-system accounts."""
    usable = [a for a in accounts if not a.archived and a.system_role is None]
    return ([a.code for a in usable if a.kind in EXPENSE_KINDS],
            [a.code for a in usable if a.kind in INCOME_KINDS])


def _contacts(
    rng: random.Random,
    *,
    suppliers: int,
    customers: int,
    both: int,
    archived_share: float,
    purchase_codes: list[str],
    sales_codes: list[str],
) -> list[SeedContact]:
    taken: set[str] = set()
    supplier_names = _company_names(rng, _SUPPLIER_TRADES, suppliers + both, taken)
    customer_names = _company_names(rng, _CUSTOMER_TRADES, customers, taken)
    roles = (
        [(name, True, False) for name in supplier_names[:suppliers]]
        + [(name, True, True) for name in supplier_names[suppliers:]]
        + [(name, False, True) for name in customer_names]
    )
    contacts: list[SeedContact] = []
    for index, (name, is_supplier, is_customer) in enumerate(roles, start=1):
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        town, postcode, area_code = rng.choice(_TOWNS)
        domain = "".join(ch for ch in name.lower().split(" ")[0] if ch.isalnum()) + f"{index}.co.uk"
        prefix = "SUP" if is_supplier and not is_customer else "CUS" if is_customer and not is_supplier else "SC"
        contacts.append(
            SeedContact(
                key=f"contact:{index:05d}",
                name=name,
                first_name=first,
                last_name=last,
                email=f"{first.lower()}.{last.lower()}@{domain}",
                phone=f"{area_code} {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
                address=SeedAddress(f"{rng.randint(1, 220)} {rng.choice(_STREETS)}", town, postcode),
                is_supplier=is_supplier,
                is_customer=is_customer,
                contact_number=f"{prefix}-{index:05d}",
                archived=rng.random() < archived_share,
                vat_number=f"GB{rng.randint(100_000_000, 999_999_999)}" if rng.random() < 0.6 else None,
                company_number=f"{rng.randint(1_000_000, 15_999_999):08d}" if rng.random() < 0.5 else None,
                default_purchase_account_code=rng.choice(purchase_codes) if is_supplier else None,
                default_sales_account_code=rng.choice(sales_codes) if is_customer else None,
                updated_minutes_ago=rng.randint(60, 60 * 24 * 700),
            )
        )
    return contacts


# --------------------------------------------------------------------------------------------
# Items, tracking, projects, people
# --------------------------------------------------------------------------------------------


def _price(amount: str, code: str, vat: VatKey = VatKey.STANDARD) -> ItemPrice:
    return ItemPrice(Decimal(amount), code, vat)


_DEMO_ITEMS: tuple[tuple[str, str, str, ItemPrice | None, ItemPrice | None], ...] = (
    ("CONSULT-HR", "Consultancy (per hour)", "Business consultancy, charged hourly", None,
     _price("95.00", "200")),
    ("SUPPORT-MTH", "Monthly IT support", "Remote support contract, one month", _price("40.00", "463"),
     _price("120.00", "200")),
    ("TRAIN-DAY", "Training day", "On-site training for up to 8 people", None, _price("750.00", "200")),
    ("PAPER-A4", "A4 copier paper (box of 5 reams)", "80gsm white copier paper",
     _price("21.50", "461"), _price("29.99", "200")),
    ("INK-BLK", "Black toner cartridge", "High-yield black toner", _price("48.00", "461"),
     _price("64.00", "200")),
    ("LAPTOP-14", "14-inch business laptop", "Laptop with three-year warranty",
     _price("689.00", "720"), _price("899.00", "200")),
    ("MONITOR-27", "27-inch monitor", "QHD office monitor", _price("189.00", "720"),
     _price("249.00", "200")),
    ("DESK-CHAIR", "Ergonomic desk chair", "Adjustable task chair", _price("135.00", "710"),
     _price("199.00", "200")),
    ("GUIDE-BOOK", "VAT guide for small businesses", "Printed handbook (zero-rated)",
     _price("9.50", "495", VatKey.ZERO), _price("14.99", "205", VatKey.ZERO)),
    ("LED-RETRO", "Energy-saving lighting retrofit", "Installed LED retrofit (reduced rate)",
     _price("220.00", "310", VatKey.REDUCED), _price("340.00", "200", VatKey.REDUCED)),
    ("COURIER-NEXT", "Next-day courier", "Next working day delivery", _price("11.00", "425"),
     _price("15.00", "260")),
    ("CLEAN-OFFICE", "Office cleaning visit", "Two-hour cleaning visit", _price("45.00", "408"), None),
    ("BROADBAND", "Business broadband (monthly)", "FTTP business line", _price("38.00", "489"), None),
    ("INSURE-ADMIN", "Insurance administration fee", "Exempt administration charge",
     _price("25.00", "433", VatKey.EXEMPT), None),
    ("POSTAGE", "Postage (stamps)", "First class stamps, outside the scope of VAT",
     _price("1.35", "425", VatKey.NO_VAT), None),
)

_JOINERY_ITEMS: tuple[tuple[str, str, str, ItemPrice | None, ItemPrice | None], ...] = (
    ("OAK-BOARD-2M", "Oak board 2m", "Kiln-dried oak, 2m x 200mm", _price("38.00", "5000"),
     _price("55.00", "4010")),
    ("MDF-18", "MDF sheet 18mm", "2440 x 1220 MDF", _price("32.50", "5000"), None),
    ("HINGE-SOFT", "Soft-close hinge (pair)", "Concealed soft-close hinge", _price("4.20", "5010"),
     _price("7.50", "4000")),
    ("WORKTOP-OAK", "Solid oak worktop (per metre)", "40mm solid oak worktop", _price("95.00", "5000"),
     _price("160.00", "4000")),
    ("FIT-DAY", "Fitting (per day)", "Two-person fitting team", None, _price("480.00", "4000")),
    ("CALLOUT", "Call-out charge", "Repairs call-out within 20 miles", None, _price("65.00", "4020")),
    ("VARNISH-5L", "Floor varnish 5L", "Water-based satin varnish", _price("54.00", "5010"), None),
    ("DIESEL", "Diesel (per litre)", "Van fuel", _price("1.49", "7410"), None),
    ("DESIGN-HR", "Design consultation (per hour)", "Kitchen design session", None,
     _price("70.00", "4000")),
    ("SKIP-HIRE", "Skip hire (week)", "Six-yard skip", _price("210.00", "5020"), None),
    ("GLUE-PVA", "PVA wood glue 5L", "Interior wood adhesive", _price("18.00", "5010"), None),
    ("SANDPAPER", "Abrasive sheets (pack of 50)", "Assorted grits", _price("14.00", "7300"), None),
)


def _items(
    rows: tuple[tuple[str, str, str, ItemPrice | None, ItemPrice | None], ...], rng: random.Random
) -> list[SeedItem]:
    return [
        SeedItem(
            key=f"item:{code}",
            code=code,
            name=name,
            description=description,
            purchase=purchase,
            sales=sales,
            updated_minutes_ago=rng.randint(60, 60 * 24 * 500),
        )
        for code, name, description, purchase, sales in rows
    ]


def _generated_items(count: int, rng: random.Random, accounts: list[SeedAccount]) -> list[SeedItem]:
    expense_codes = [a.code for a in accounts if a.kind in EXPENSE_KINDS and not a.archived]
    revenue_codes = [a.code for a in accounts if a.kind is AccountKind.REVENUE and not a.archived]
    materials = ("Cable", "Bracket", "Panel", "Fixing kit", "Filter", "Sensor", "Adapter", "Battery",
                 "Lamp", "Valve", "Switch", "Hose", "Gasket", "Bearing", "Coupling")
    grades = ("Standard", "Heavy-duty", "Compact", "Premium", "Outdoor", "Industrial", "Mini")
    items: list[SeedItem] = []
    for index in range(1, count + 1):
        name = f"{rng.choice(grades)} {rng.choice(materials).lower()} {index}"
        cost = Decimal(rng.randint(150, 25_000)) / 100
        sold = rng.random() < 0.7
        items.append(
            SeedItem(
                key=f"item:GEN-{index:05d}",
                code=f"GEN-{index:05d}",
                name=name[:50],
                description=f"{name} (catalogue line {index})",
                purchase=ItemPrice(cost, rng.choice(expense_codes), VatKey.STANDARD),
                sales=ItemPrice((cost * Decimal("1.4")).quantize(Decimal("0.01")),
                                rng.choice(revenue_codes), VatKey.STANDARD) if sold else None,
                updated_minutes_ago=rng.randint(60, 60 * 24 * 500),
            )
        )
    return items


def _tracking(dimensions: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]) -> list[SeedTrackingDimension]:
    return [
        SeedTrackingDimension(
            key=f"tracking:{name.lower()}",
            name=name,
            options=tuple(SeedTrackingOption(f"tracking:{name.lower()}:{o.lower()}", o) for o in active)
            + tuple(SeedTrackingOption(f"tracking:{name.lower()}:{o.lower()}", o, archived=True)
                    for o in archived),
        )
        for name, active, archived in dimensions
    ]


def _projects(
    names: tuple[str, ...], customers: list[SeedContact], rng: random.Random, today: date
) -> list[SeedProject]:
    active_customers = [c for c in customers if c.is_customer and not c.archived]
    return [
        SeedProject(
            key=f"project:{index}",
            name=name,
            customer_key=rng.choice(active_customers).key,
            closed=index == len(names),  # the last one is finished
            deadline=today + timedelta(days=rng.randint(-30, 180)),
            estimate=Decimal(rng.randint(20, 400) * 50),
        )
        for index, name in enumerate(names, start=1)
    ]


def _people(org: str, domain: str) -> list[SeedPerson]:
    return [
        SeedPerson(f"person:{org}:admin", "Alex", "Morgan", "admin@example.com", "admin"),
        SeedPerson(f"person:{org}:1", "Priya", "Shah", f"priya.shah@{domain}", "standard"),
        SeedPerson(f"person:{org}:2", "Tom", "Fletcher", f"tom.fletcher@{domain}", "standard"),
    ]


# (reference, amount, days ago): a few card and bank payments a small business has not reconciled yet.
# Fixed rather than random so the lines (and the amounts tests avoid) never move with the rng.
_BANK_LINE_PATTERNS: tuple[tuple[str, str, int], ...] = (
    ("CARD PAYMENT STATIONERY", "54.00", 2),
    ("DD TELECOM", "42.50", 5),
    ("CARD PAYMENT FUEL", "68.40", 9),
    ("FASTER PAYMENT SUPPLIER", "312.00", 16),
    ("CARD PAYMENT COURIER", "18.95", 23),
)


def _bank_lines(accounts: list[SeedAccount], contacts: list[SeedContact]) -> list[SeedBankLine]:
    """A deterministic handful of unreconciled money-out lines on every live bank or card account,
    each paid to a live seeded supplier and coded to that supplier's default purchase account."""
    banks = [a for a in accounts if a.kind in BANK_KINDS and not a.archived]
    payees = [c for c in contacts if c.is_supplier and not c.archived and c.default_purchase_account_code]
    if not payees:
        return []
    lines: list[SeedBankLine] = []
    for bank_index, bank in enumerate(banks):
        for line_index, (reference, amount, days_ago) in enumerate(_BANK_LINE_PATTERNS):
            payee = payees[(bank_index * len(_BANK_LINE_PATTERNS) + line_index) % len(payees)]
            assert payee.default_purchase_account_code is not None
            lines.append(SeedBankLine(
                key=f"bank-line:{bank.code}:{line_index + 1}",
                bank_account_code=bank.code,
                days_ago=days_ago + bank_index,
                # Pence differ per account so one amount is never on two accounts at once.
                amount=Decimal(amount) + Decimal(bank_index) / 100,
                payee_key=payee.key,
                reference=reference,
                category_code=payee.default_purchase_account_code,
            ))
    return lines


def _quarter_end_before(today: date, quarters_back: int) -> date:
    """The last day of the calendar quarter ``quarters_back`` quarters before today's."""
    quarter_start_month = 3 * ((today.month - 1) // 3) + 1
    start = date(today.year, quarter_start_month, 1)
    for _ in range(quarters_back - 1):
        start = date(start.year - (start.month == 1), (start.month - 4) % 12 + 1, 1)
    return start - timedelta(days=1)


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


def build_dataset(preset: Preset = "small", *, seed: int = 0, today: date | None = None) -> Dataset:
    """The seeded user's organisations for ``preset``, deterministic for ``(preset, seed, today)``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    today = today or date.today()
    return Dataset(
        preset=preset,
        seed=seed,
        organisations=(
            _demo_company(preset, seed, today),
            _joinery_company("empty" if preset == "empty" else "small", seed, today),
        ),
    )


def _demo_company(preset: Preset, seed: int, today: date) -> SeedOrganisation:
    rng = random.Random(f"demo:{seed}")
    org = SeedOrganisation(
        key="demo-uk",
        name="Demo Company (UK)",
        legal_name="Demo Company (UK) Limited",
        short_code="!dmUK1",
        vat_number="GB 123 4567 89",
        company_number="09876543",
        address=SeedAddress("23 Main Street", "London", "EC1V 2NX"),
        # Locked up to the end of the quarter before last: recent documents post, old ones do not.
        period_lock_date=_quarter_end_before(today, 2),
        financial_year_end_day=31,
        financial_year_end_month=3,
        created_minutes_ago=60 * 24 * 900,
        people=tuple(_people("demo-uk", "democompany.example")),
    )
    if preset == "empty":
        return org
    accounts = _chart(_DEMO_CHART, rng)
    items = _items(_DEMO_ITEMS, rng)
    if preset == "large":
        accounts += _generated_accounts(500 - len(accounts), rng, {a.name for a in accounts})
        items += _generated_items(1000 - len(items), rng, accounts)
    purchase_codes, sales_codes = _contact_default_codes(accounts)
    if preset == "large":
        contacts = _contacts(rng, suppliers=5200, customers=4400, both=400, archived_share=0.08,
                             purchase_codes=purchase_codes, sales_codes=sales_codes)
    else:
        contacts = _contacts(rng, suppliers=70, customers=55, both=5, archived_share=0.07,
                             purchase_codes=purchase_codes, sales_codes=sales_codes)
    tracking = _tracking((
        ("Department", ("Sales", "Operations", "Administration", "Marketing"), ("Events (closed)",)),
        ("Region", ("North", "South", "Midlands", "Scotland", "Wales"), ()),
    ))
    projects = _projects(
        ("Office refit", "Website relaunch", "Annual audit support", "Warehouse move", "CRM rollout"),
        contacts, rng, today,
    )
    return replace(
        org, accounts=tuple(accounts), contacts=tuple(contacts), items=tuple(items),
        tracking=tuple(tracking), projects=tuple(projects), bank_lines=tuple(_bank_lines(accounts, contacts)),
    )


def _joinery_company(preset: Preset, seed: int, today: date) -> SeedOrganisation:
    rng = random.Random(f"joinery:{seed}")
    org = SeedOrganisation(
        key="harbour-finch",
        name="Harbour & Finch Joinery Ltd",
        legal_name="Harbour & Finch Joinery Limited",
        short_code="!hfJ22",
        vat_number="GB 987 6543 21",
        company_number="12345678",
        address=SeedAddress("Unit 4, Quayside Works", "Bristol", "BS1 6QF"),
        period_lock_date=_quarter_end_before(today, 3),
        financial_year_end_day=30,
        financial_year_end_month=6,
        created_minutes_ago=60 * 24 * 400,
        people=tuple(_people("harbour-finch", "harbourfinch.example")),
    )
    if preset == "empty":
        return org
    accounts = _chart(_JOINERY_CHART, rng)
    purchase_codes, sales_codes = _contact_default_codes(accounts)
    contacts = _contacts(rng, suppliers=60, customers=62, both=3, archived_share=0.06,
                         purchase_codes=purchase_codes, sales_codes=sales_codes)
    tracking = _tracking((
        ("Site", ("Workshop", "Customer premises", "Showroom"), ("Old unit",)),
        ("Team", ("Fitting", "Design", "Repairs"), ()),
    ))
    projects = _projects(("Quayside kitchens", "Clifton library shelving", "Showroom refresh"),
                         contacts, rng, today)
    return replace(
        org, accounts=tuple(accounts), contacts=tuple(contacts), items=tuple(_items(_JOINERY_ITEMS, rng)),
        tracking=tuple(tracking), projects=tuple(projects), bank_lines=tuple(_bank_lines(accounts, contacts)),
    )
