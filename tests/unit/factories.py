"""Small builders for list records and captured items used across unit tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ledgerlink.models.common import ItemType, ListType
from ledgerlink.models.items import CapturedItem
from ledgerlink.models.lists import ListRecord, RecordStatus, record_id

CONNECTION = "conn-1"


def record(list_type: ListType, remote_id: str, name: str, **fields: Any) -> ListRecord:
    return ListRecord(
        id=record_id(CONNECTION, list_type, remote_id),
        list_type=list_type,
        remote_id=remote_id,
        name=name,
        **fields,
    )


EXPENSES = record(
    ListType.CATEGORIES,
    "acc-429",
    "General Expenses",
    code="429",
    account_type="EXPENSE",
    default_tax_code="INPUT2",
    usable_for=[ItemType.COST, ItemType.EXPENSE_CLAIM],
)
STATIONERY = record(
    ListType.CATEGORIES,
    "acc-461",
    "Printing & Stationery",
    code="461",
    account_type="OVERHEADS",
    default_tax_code="INPUT2",
    usable_for=[ItemType.COST],
)
SALES = record(
    ListType.CATEGORIES,
    "acc-200",
    "Sales",
    code="200",
    account_type="REVENUE",
    default_tax_code="OUTPUT2",
    usable_for=[ItemType.SALES],
)
OLD_ACCOUNT = record(
    ListType.CATEGORIES,
    "acc-499",
    "Old Expenses",
    code="499",
    account_type="EXPENSE",
    status=RecordStatus.ARCHIVED,
    usable_for=[ItemType.COST],
)
VAT_ON_EXPENSES = record(
    ListType.TAX_RATES,
    "INPUT2",
    "20% (VAT on Expenses)",
    code="INPUT2",
    rate=20.0,
    applies_to=[ItemType.COST, ItemType.EXPENSE_CLAIM],
)
VAT_ON_INCOME = record(
    ListType.TAX_RATES,
    "OUTPUT2",
    "20% (VAT on Income)",
    code="OUTPUT2",
    rate=20.0,
    applies_to=[ItemType.SALES],
)
NO_VAT = record(
    ListType.TAX_RATES,
    "NONE",
    "No VAT",
    code="NONE",
    rate=0.0,
    applies_to=[ItemType.COST, ItemType.SALES, ItemType.EXPENSE_CLAIM],
)
OFFICE_SUPPLIES = record(
    ListType.CONTACTS,
    "c-1",
    "Office Supplies Ltd",
    is_supplier=True,
    default_category_code="461",
    default_tax_code="INPUT2",
)
GONE_SUPPLIER = record(
    ListType.CONTACTS, "c-2", "Bygone Traders", is_supplier=True, status=RecordStatus.ARCHIVED
)
NORTH = record(
    ListType.PROJECTS, "opt-n", "North", dimension=1, dimension_name="Region", dimension_remote_id="tc-1"
)
CURRENT_ACCOUNT = record(
    ListType.BANK_ACCOUNTS,
    "bank-1",
    "Business Current Account",
    code="090",
    bank_account_type="BANK",
    currency="GBP",
)

ALL_RECORDS = [
    EXPENSES,
    STATIONERY,
    SALES,
    OLD_ACCOUNT,
    VAT_ON_EXPENSES,
    VAT_ON_INCOME,
    NO_VAT,
    OFFICE_SUPPLIES,
    GONE_SUPPLIER,
    NORTH,
    CURRENT_ACCOUNT,
]


def cost_item(**overrides: Any) -> CapturedItem:
    line: dict[str, Any] = {"description": "Printer paper", "amount": 100.0, "tax_amount": 20.0}
    line.update(overrides.pop("line", {}))
    data: dict[str, Any] = {
        "id": "cap-001",
        "type": "cost",
        "supplier": {"name": "Office Supplies Ltd"},
        "date": "2026-11-02",
        "due_date": "2026-12-02",
        "reference": "INV-4471",
        "currency": "GBP",
        "totals": {"net": 100.0, "tax": 20.0, "gross": 120.0},
        "lines": [line],
        "paid": None,
        "document": {
            "key": "docs/cap-001.pdf",
            "file_name": "cap-001.pdf",
            "content_type": "application/pdf",
        },
        "edited_fields": [],
    }
    data.update(overrides)
    return CapturedItem.model_validate(data)


def money(value: str) -> Decimal:
    return Decimal(value)
