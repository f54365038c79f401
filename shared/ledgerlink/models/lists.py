"""One row of one of the six imported lists, in ledgerlink's own terms whatever the ledger."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ledgerlink.models.common import ItemType, ListType

RECORD_ID_PREFIX: dict[ListType, str] = {
    ListType.CATEGORIES: "cat",
    ListType.CONTACTS: "con",
    ListType.TAX_RATES: "tax",
    ListType.ITEMS: "itm",
    ListType.PROJECTS: "prj",
    ListType.BANK_ACCOUNTS: "bnk",
}
LIST_TYPE_BY_PREFIX = {prefix: list_type for list_type, prefix in RECORD_ID_PREFIX.items()}


_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_LEGAL_SUFFIXES = ("limited", "ltd", "plc", "llp", "inc", "llc", "co", "company")


def normalise_name(name: str) -> str:
    """Case, punctuation and legal suffix do not make two suppliers different."""
    words = _NON_ALNUM.sub(" ", name.lower()).split()
    while words and words[-1] in _LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words)


class RecordStatus(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


def record_id(connection_id: str, list_type: ListType, remote_id: str) -> str:
    """Our id for a list record: stable across refreshes, and says which list it belongs to."""
    digest = hashlib.sha256(f"{connection_id}\x1f{list_type}\x1f{remote_id}".encode()).digest()
    return f"{RECORD_ID_PREFIX[list_type]}_{base64.b32encode(digest[:15]).decode().lower()}"


def list_type_of(record_id_value: str) -> ListType | None:
    prefix, _, _ = record_id_value.partition("_")
    return LIST_TYPE_BY_PREFIX.get(prefix)


# The raw extra that marks a record as one no document line can carry (see ``codes_lines``).
LINE_CODABLE = "line_codable"


class ListRecord(BaseModel):
    """A category, contact, tax rate, item, project (tracking option) or bank account.

    The common fields come first; the rest are filled for the list types they belong to and left
    empty otherwise. ``raw`` keeps the ledger's own extras that publishing may need.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    list_type: ListType
    remote_id: str
    code: str | None = None
    name: str
    status: RecordStatus = RecordStatus.ACTIVE
    remote_updated_at: datetime | None = None

    # categories
    account_type: str | None = None
    default_tax_code: str | None = None  # the ledger's tax code (also used by contacts and items)
    usable_for: list[ItemType] = Field(default_factory=list)
    # contacts
    is_supplier: bool | None = None
    is_customer: bool | None = None
    default_category_code: str | None = None
    email: str | None = None
    # tax rates
    rate: float | None = None  # percent
    applies_to: list[ItemType] = Field(default_factory=list)
    # items
    purchase_category_code: str | None = None
    purchase_tax_code: str | None = None
    purchase_price: float | None = None
    sales_category_code: str | None = None
    sales_tax_code: str | None = None
    sales_price: float | None = None
    # projects (tracking dimensions)
    dimension: int | None = None  # 1 or 2
    dimension_name: str | None = None
    dimension_remote_id: str | None = None
    # bank accounts (and categories that are bank accounts)
    bank_account_type: str | None = None
    currency: str | None = None
    account_number: str | None = None

    raw: dict[str, Any] = Field(default_factory=dict)

    @property
    def codes_lines(self) -> bool:
        """False for a project that a document line cannot carry: Xero Projects API projects are
        listed (so the capture product can show them) but Xero's bills, receipts and spend money
        take tracking options only. Kept in ``raw`` so that records stored before it keep their
        fingerprints."""
        return self.raw.get(LINE_CODABLE, True) is not False

    def content_fingerprint(self) -> str:
        """Changes when anything a user or publishing could see changes; decides whether to write."""
        payload = self.model_dump_json(exclude={"remote_updated_at"})
        return hashlib.sha256(payload.encode()).hexdigest()[:32]
