"""A captured item (receipt, bill, sales invoice, expense claim) as the capture product sends it,
and the record ledgerlink keeps of it while publishing."""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from ledgerlink.models.common import ItemType

# Money is exact (Decimal) inside ledgerlink and a JSON number on the wire.
Money = Annotated[
    Decimal,
    Field(max_digits=15, decimal_places=2),
    PlainSerializer(float, return_type=float, when_used="json"),
]
ListRecordId = Annotated[str, Field(min_length=4, max_length=64, pattern=r"^[a-z]{3}_[a-z0-9]+$")]
ItemId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]

# The item fields a person can edit by hand; an edited field always wins over any rule or default.
EDITABLE_FIELDS = frozenset(
    {"supplier", "customer", "date", "due_date", "reference", "category", "tax_rate", "project",
     "project_2", "product", "bank_account", "destination"}
)  # fmt: skip

TOTALS_TOLERANCE = Decimal("0.01")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Party(_Strict):
    """A supplier or customer as captured; ``id`` links it to an imported contact when known."""

    name: str = Field(min_length=1, max_length=255)
    # The capture product's own stable key for this supplier or customer: its rule is found by it.
    key: str | None = Field(default=None, min_length=1, max_length=255)
    id: ListRecordId | None = None  # contacts list record id
    remote_id: str | None = Field(default=None, max_length=255)


class Claimant(_Strict):
    name: str = Field(min_length=1, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    remote_id: str | None = Field(default=None, max_length=255)


class Totals(_Strict):
    net: Money
    tax: Money
    gross: Money

    @model_validator(mode="after")
    def _adds_up(self) -> Totals:
        if abs(self.net + self.tax - self.gross) > TOTALS_TOLERANCE:
            raise ValueError(f"totals.gross ({self.gross}) must equal net + tax ({self.net + self.tax})")
        return self


class Line(_Strict):
    description: str = Field(min_length=1, max_length=4000)
    amount: Money  # net
    tax_amount: Money = Decimal("0")
    quantity: Decimal = Field(default=Decimal("1"), gt=0, max_digits=12, decimal_places=4)
    category: ListRecordId | None = None
    tax_rate: ListRecordId | None = None
    project: ListRecordId | None = None
    project_2: ListRecordId | None = None
    product: ListRecordId | None = None


class Paid(_Strict):
    date: dt.date
    payment_method: str | None = Field(default=None, max_length=64)
    bank_account: ListRecordId | None = None  # bank_accounts list record id


class Document(_Strict):
    key: str = Field(min_length=1, max_length=1024)  # S3 key in the documents bucket
    file_name: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=3, max_length=128, pattern=r"^[\w.+-]+/[\w.+-]+$")


class CapturedItem(_Strict):
    id: ItemId
    type: ItemType
    supplier: Party | None = None
    customer: Party | None = None
    claimant: Claimant | None = None
    date: dt.date
    due_date: dt.date | None = None
    reference: str | None = Field(default=None, max_length=255)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    totals: Totals
    lines: list[Line] = Field(min_length=1, max_length=500)
    paid: Paid | None = None
    document: Document | None = None
    destination: str | None = Field(default=None, max_length=64)
    edited_fields: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> CapturedItem:
        if self.type == ItemType.COST and self.supplier is None:
            raise ValueError("a cost item needs a supplier")
        if self.type == ItemType.SALES and self.customer is None:
            raise ValueError("a sales item needs a customer")
        if self.type == ItemType.EXPENSE_CLAIM and self.claimant is None:
            raise ValueError("an expense claim needs a claimant")
        if self.due_date is not None and self.due_date < self.date:
            raise ValueError("due_date cannot be before date")
        net = sum((line.amount for line in self.lines), Decimal("0"))
        tax = sum((line.tax_amount for line in self.lines), Decimal("0"))
        if abs(net - self.totals.net) > TOTALS_TOLERANCE * len(self.lines):
            raise ValueError(f"the lines' amounts add up to {net}, but totals.net is {self.totals.net}")
        if abs(tax - self.totals.tax) > TOTALS_TOLERANCE * len(self.lines):
            raise ValueError(f"the lines' tax amounts add up to {tax}, but totals.tax is {self.totals.tax}")
        unknown = set(self.edited_fields) - EDITABLE_FIELDS
        if unknown:
            raise ValueError(f"edited_fields has unknown names: {sorted(unknown)}")
        return self

    @property
    def party(self) -> Party | None:
        return self.customer if self.type == ItemType.SALES else self.supplier


class ItemStatus(StrEnum):
    WAITING = "waiting"  # captured, not asked to publish (or auto-publish not allowed)
    QUEUED = "queued"  # waiting its turn to be published
    PUBLISHED = "published"
    REJECTED = "rejected"  # the ledger or our pre-flight refused it: fix and publish again
    RETRYING = "retrying"  # a transient failure; it will be tried again by itself
    HELD = "held"  # the connection needs a reconnect; published once it is back
    FAILED = "failed"  # gave up after repeated transient failures: publish again to retry


# Items the publisher picks up (they sit on the business's publishing queue index).
PENDING_STATUSES = frozenset({ItemStatus.QUEUED, ItemStatus.RETRYING})


class ItemError(BaseModel):
    code: str
    message: str  # what went wrong, in plain language
    hint: str | None = None  # what to do about it
    field: str | None = None
    ledger_message: str | None = None  # the ledger's own words, verbatim


class PublishAttempt(BaseModel):
    at: datetime
    revision: int
    outcome: str  # published | rejected | retrying | held | failed
    message: str | None = None


class StoredItem(BaseModel):
    """What ledgerlink knows about one captured item."""

    business_id: str
    item: CapturedItem
    revision: int = 1
    status: ItemStatus
    connection_id: str | None = None
    remote_id: str | None = None
    remote_url: str | None = None
    attachment_id: str | None = None
    payment_id: str | None = None  # bank match: the payment recorded against the document
    # Published, but its document or payment is still to be sent (retried alone, never the bill).
    follow_up: bool = False
    attempts: list[PublishAttempt] = Field(default_factory=list)
    last_error: ItemError | None = None
    created_at: datetime
    updated_at: datetime
    # When it joined the publishing queue: the publisher takes items oldest first.
    queued_at: datetime | None = None

    def transient_failures(self) -> int:
        """Transient failures of the current revision (after MAX_TRANSIENT_FAILURES it is FAILED)."""
        return sum(
            1 for a in self.attempts if a.revision == self.revision and a.outcome == ItemStatus.RETRYING.value
        )


class ItemPatch(_Strict):
    """Manual edits of a captured item; every field given replaces the stored one and counts as
    a person's edit (it then wins over any rule or default)."""

    supplier: Party | None = None
    customer: Party | None = None
    claimant: Claimant | None = None
    date: dt.date | None = None
    due_date: dt.date | None = None
    reference: str | None = Field(default=None, max_length=255)
    # A currency the ledger refused is corrected here (with the totals and lines if they change).
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    totals: Totals | None = None
    lines: list[Line] | None = Field(default=None, min_length=1, max_length=500)
    paid: Paid | None = None
    destination: str | None = Field(default=None, max_length=64)
