"""Supplier and customer rules: how a party's items are coded by default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

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
