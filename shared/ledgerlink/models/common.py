"""Names shared by every part of ledgerlink."""

from __future__ import annotations

from enum import StrEnum


class ProviderName(StrEnum):
    XERO = "xero"
    QUICKBOOKS = "quickbooks"
    SAGE = "sage"
    FREEAGENT = "freeagent"
    KASHFLOW = "kashflow"


class ListType(StrEnum):
    CATEGORIES = "categories"
    CONTACTS = "contacts"
    TAX_RATES = "tax_rates"
    ITEMS = "items"
    PROJECTS = "projects"
    BANK_ACCOUNTS = "bank_accounts"


class Role(StrEnum):
    ADMIN = "admin"
    STANDARD = "standard"


class ItemType(StrEnum):
    COST = "cost"
    SALES = "sales"
    EXPENSE_CLAIM = "expense_claim"
