"""Supplier and customer rules: how a party's items are coded by default."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ledgerlink.models.common import ItemType, ListType
from ledgerlink.models.items import ListRecordId


class PartyRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    contact: ListRecordId | None = None
    category: ListRecordId | None = None
    tax_rate: ListRecordId | None = None
    project: ListRecordId | None = None
    project_2: ListRecordId | None = None
    product: ListRecordId | None = None
    destination: str | None = Field(default=None, max_length=64)
    bank_account: ListRecordId | None = None
    auto_publish: bool = False


# The fields of a rule that name a list record, with the list each must come from.
RULE_REFERENCE_LISTS: dict[str, ListType] = {
    "contact": ListType.CONTACTS,
    "category": ListType.CATEGORIES,
    "tax_rate": ListType.TAX_RATES,
    "project": ListType.PROJECTS,
    "project_2": ListType.PROJECTS,
    "product": ListType.ITEMS,
    "bank_account": ListType.BANK_ACCOUNTS,
}
RULE_REFERENCES: tuple[str, ...] = tuple(RULE_REFERENCE_LISTS)


class RuleKind(StrEnum):
    """Whose rule: a supplier's (cost items) or a customer's (sales items)."""

    SUPPLIER = "supplier"
    CUSTOMER = "customer"

    @property
    def item_type(self) -> ItemType:
        return ItemType.COST if self is RuleKind.SUPPLIER else ItemType.SALES

    @property
    def plural(self) -> str:
        """The path segment: /v1/rules/suppliers, /v1/rules/customers."""
        return f"{self.value}s"


class StoredRule(BaseModel):
    """A rule as stored and as the rules API returns it."""

    model_config = ConfigDict(frozen=True)

    kind: RuleKind
    key: str
    rule: PartyRule
    updated_at: datetime
    updated_by: str


class RulesView(BaseModel):
    rules: list[StoredRule]


class RuleSaved(BaseModel):
    """PUT answer: the rule, and the waiting items it queued for publishing (auto-publish)."""

    rule: StoredRule
    queued_items: list[str] = Field(default_factory=list)
