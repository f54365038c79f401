"""What will be sent to the ledger for an item (the plan) and what came back (the result).

A plan records where each value came from, so the preview can say exactly what would be sent and
why before anything is sent.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ledgerlink.models.common import ItemType, ProviderName
from ledgerlink.models.items import Document, Money


class ValueSource(StrEnum):
    """Where a value in the plan came from, highest precedence first."""

    MANUAL = "manual_edit"
    SUPPLIER_RULE = "supplier_rule"
    CAPTURED = "captured"  # sent by the capture product (its own suggestion), not edited by a person
    CONNECTION_DEFAULT = "connection_default"
    LEDGER_DEFAULT = "ledger_default"
    MISSING = "missing"


class Resolved(BaseModel):
    """A reference to a list record, resolved to what the ledger needs, with its source."""

    model_config = ConfigDict(frozen=True)

    record_id: str | None = None
    remote_id: str | None = None
    code: str | None = None
    name: str | None = None
    # Tracking (projects): the dimension the option belongs to, as the ledger names it.
    dimension_remote_id: str | None = None
    source: ValueSource


class PlannedLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    description: str
    quantity: float
    amount: Money  # net
    tax_amount: Money
    category: Resolved
    tax_rate: Resolved
    project: Resolved | None = None
    project_2: Resolved | None = None
    product: Resolved | None = None


class PlanProblem(BaseModel):
    """Something that stops the plan from being sent, found before any call to the ledger."""

    code: str
    message: str
    hint: str
    field: str | None = None


class PublishPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    revision: int
    provider: ProviderName
    item_type: ItemType
    destination: str
    contact: Resolved
    date: dt.date
    due_date: dt.date | None
    reference: str | None
    currency: str
    net: Money
    tax: Money
    gross: Money
    lines: list[PlannedLine]
    bank_account: Resolved | None = None
    # Paid items: when and how. With bank match on (Xero, Sage) the payment is recorded against the
    # published document in the bank account, dated like the matching bank line.
    paid_on: dt.date | None = None
    payment_method: str | None = None
    bank_match: bool = False
    document: Document | None = None
    # Sent as the ledger's idempotency mechanism; derived from item id + revision.
    idempotency_key: str
    # True when an earlier attempt of this revision may have reached the ledger without us seeing
    # the answer (a redelivered message, an earlier attempt that ended in a timeout). A ledger's
    # idempotency window is short (Xero ~6 minutes) next to a queue's redelivery (12 minutes), so
    # adapters then look the document up by our key before creating it again.
    may_exist: bool = False
    problems: list[PlanProblem] = Field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.problems


class PublishResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    remote_id: str
    url: str | None = None
    warnings: list[str] = Field(default_factory=list)
