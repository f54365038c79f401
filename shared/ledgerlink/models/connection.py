"""A business's connection to its ledger, and the state machine its status follows."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ledgerlink.models.common import ItemType, ListType, ProviderName


class ConnectionStatus(StrEnum):
    PENDING_ORGANISATION = "pending_organisation"
    CONNECTED = "connected"
    REFRESH_FAILING = "refresh_failing"
    NEEDS_RECONNECT = "needs_reconnect"
    DISCONNECTED = "disconnected"


# Which status may follow which (DESIGN §5). Anything else is a bug, refused by `Connection.moved_to`.
ALLOWED_TRANSITIONS: dict[ConnectionStatus, frozenset[ConnectionStatus]] = {
    ConnectionStatus.PENDING_ORGANISATION: frozenset(
        {ConnectionStatus.CONNECTED, ConnectionStatus.DISCONNECTED}
    ),
    ConnectionStatus.CONNECTED: frozenset(
        {ConnectionStatus.REFRESH_FAILING, ConnectionStatus.NEEDS_RECONNECT, ConnectionStatus.DISCONNECTED}
    ),
    ConnectionStatus.REFRESH_FAILING: frozenset(
        {ConnectionStatus.CONNECTED, ConnectionStatus.NEEDS_RECONNECT, ConnectionStatus.DISCONNECTED}
    ),
    ConnectionStatus.NEEDS_RECONNECT: frozenset({ConnectionStatus.CONNECTED, ConnectionStatus.DISCONNECTED}),
    ConnectionStatus.DISCONNECTED: frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


class Organisation(BaseModel):
    """An organisation (Xero tenant, QuickBooks company, Sage business...) the consent covers."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    kind: str | None = None  # e.g. Xero tenantType ORGANISATION / PRACTICE


class PublishingSettings(BaseModel):
    """What the Admin chose on the connection's settings page."""

    model_config = ConfigDict(frozen=True)

    # Default destination per item type, one of the ledger's capability choices.
    destinations: dict[ItemType, str] = Field(default_factory=dict)
    bank_match: bool = False
    default_tax_rate: str | None = None  # a tax_rates list record id
    auto_publish: bool = False
    # How often the scheduled refresh brings the six lists up to date (incremental: only what changed
    # since the last refresh is fetched). The schedule ticks every few minutes, hence the floor.
    list_refresh_minutes: int = Field(default=60, ge=15, le=7 * 24 * 60)


class ListCounts(BaseModel):
    added: int = 0
    changed: int = 0
    archived: int = 0
    deleted: int = 0
    unchanged: int = 0


class ListFreshness(BaseModel):
    refreshed_at: datetime | None = None
    record_count: int = 0
    last_counts: ListCounts = Field(default_factory=ListCounts)
    # How long the list's last refresh took and how many ledger calls it cost (summed over the
    # deliveries of a refresh that was interrupted and resumed).
    seconds: float | None = None
    ledger_calls: int | None = None
    last_error: str | None = None


class PreviousConnection(BaseModel):
    """The connection this one replaced (Change connection) or followed (Disconnect, connect again)."""

    model_config = ConfigDict(frozen=True)

    connection_id: str
    provider: ProviderName
    organisation: Organisation | None
    ended_at: datetime
    ended_by: str  # "change" | "disconnect"
    lists_kept: bool


class Connection(BaseModel):
    connection_id: str
    business_id: str
    provider: ProviderName
    status: ConnectionStatus
    status_reason: str
    status_since: datetime
    organisation: Organisation | None = None
    # The organisations the consent covers, while the Admin still has to pick one.
    organisation_choices: list[Organisation] = Field(default_factory=list)
    settings: PublishingSettings = Field(default_factory=PublishingSettings)
    lists: dict[ListType, ListFreshness] = Field(default_factory=dict)
    token_store: str  # which TokenStore back end holds this connection's tokens
    token_generation: int = 0
    created_at: datetime
    created_by: str
    previous: PreviousConnection | None = None
    # Rules and waiting items still point at the previous connection's lists (Merge Lists pending).
    merge_pending: bool = False
    # Optimistic-concurrency counter for every update of this record.
    version: int = 0

    def moved_to(self, status: ConnectionStatus, reason: str, now: datetime) -> Connection:
        if status == self.status:
            return self.model_copy(update={"status_reason": reason})
        if status not in ALLOWED_TRANSITIONS[self.status]:
            raise IllegalTransition(f"connection cannot go from {self.status} to {status}")
        return self.model_copy(update={"status": status, "status_reason": reason, "status_since": now})
