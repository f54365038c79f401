"""Merge Lists: the proposal (old entry -> proposed new entry, with the reason), the request that
applies it, and what applying or undoing it did."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ledgerlink.models.common import ListType, ProviderName


class MatchReason(StrEnum):
    """Why an old entry is proposed for a new one, strongest evidence first."""

    SAME_CODE = "same_code"
    SAME_NAME = "same_name"  # equal once case, punctuation and legal suffixes are ignored
    SIMILAR_NAME = "similar_name"  # typos, small renames: scored
    SAME_RATE = "same_rate"  # tax rates: the only new rate with the same percentage
    UNMATCHED = "unmatched"


# The lists whose entries rules and captured items refer to, in the order the proposal shows them.
MERGED_LISTS: tuple[ListType, ...] = (
    ListType.CATEGORIES,
    ListType.TAX_RATES,
    ListType.ITEMS,
    ListType.PROJECTS,
    ListType.CONTACTS,
    ListType.BANK_ACCOUNTS,
)
# A rule known by name only (no ledger contact) appears in the contacts proposal under this id.
NAME_ONLY_RULE_PREFIX = "rule:"


def name_only_rule_id(kind: str, key: str) -> str:
    return f"{NAME_ONLY_RULE_PREFIX}{kind}:{key}"


class ProposedEntry(BaseModel):
    # The old list record id, or rule:<kind>:<key> for a rule that names its party only.
    old_id: str
    old_name: str
    old_code: str | None = None
    new_id: str | None = None
    new_name: str | None = None
    new_code: str | None = None
    reason: MatchReason
    score: float | None = None
    # Other old entries proposed for the same new entry (e.g. Xero's two 20% rates, one QuickBooks 20%).
    shared_with: list[str] = Field(default_factory=list)
    rules: int = 0  # rules that refer to the old entry
    items: int = 0  # unpublished items that refer to it


class ListTotals(BaseModel):
    entries: int = 0
    same_code: int = 0
    same_name: int = 0
    similar_name: int = 0
    same_rate: int = 0
    unmatched: int = 0
    shared: int = 0


class ListProposal(BaseModel):
    list_type: ListType
    totals: ListTotals
    entries: list[ProposedEntry]


class MergeProposal(BaseModel):
    proposal_id: str
    connection_id: str
    previous_connection_id: str
    from_provider: ProviderName
    to_provider: ProviderName
    created_at: datetime
    valid_until: datetime
    # When each list of the connection was last refreshed as the proposal was computed: a refresh
    # since makes the proposal stale (apply answers 409, preview again).
    lists_refreshed_at: dict[ListType, datetime | None]
    lists: list[ListProposal]
    rules: int  # rules that refer to old entries
    items: int  # unpublished items that refer to old entries


class ApplyMergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposal_id: str = Field(min_length=1, max_length=64)
    # old entry id -> the new list record id to use instead of the proposal's, or null for none.
    overrides: dict[str, str | None] = Field(default_factory=dict)
    # Lists left as they are (their references keep pointing at the old lists).
    skip: list[ListType] = Field(default_factory=list)


class UndoMergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposal_id: str = Field(min_length=1, max_length=64)


class ListOutcome(BaseModel):
    mapped: int = 0
    unmatched: int = 0
    skipped: bool = False


class MergeResult(BaseModel):
    proposal_id: str
    status: Literal["applied"] = "applied"
    applied_at: datetime
    applied_by: str
    undo_until: datetime
    lists: dict[ListType, ListOutcome]
    rules_rewritten: int
    rules_linked: int  # name-only rules now linked to an imported contact
    items_rewritten: int
    destinations_cleared: int  # destinations the new ledger does not have, left to the defaults
    # "transaction" (one DynamoDB transaction) or "staged" (stage, flip, roll forward): see services/merge.py
    write_mode: Literal["transaction", "staged"]


class UndoResult(BaseModel):
    proposal_id: str
    status: Literal["undone"] = "undone"
    undone_at: datetime
    undone_by: str
    rules_restored: int
    items_restored: int
    # Rewritten rows changed since the merge (an edited rule, a published item): left as they are.
    kept: int


class MergeState(StrEnum):
    PROPOSED = "proposed"
    APPLIED = "applied"
    UNDONE = "undone"


class MergeRecord(BaseModel):
    """The stored header of a proposal: its state and what applying and undoing it did."""

    proposal_id: str
    business_id: str
    connection_id: str
    state: MergeState = MergeState.PROPOSED
    created_at: datetime
    valid_until: datetime
    proposal_parts: int = 0
    undo_parts: int = 0
    result: MergeResult | None = None
    undo_result: UndoResult | None = None
