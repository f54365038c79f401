"""The refresh record a connection carries: which refresh of its lists is queued or running, so a
second request joins it instead of queueing another."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from ledgerlink.models.common import ListType


class RefreshState(StrEnum):
    QUEUED = "queued"  # a message is on the refresh queue
    RUNNING = "running"  # a worker is fetching the lists
    WAITING = "waiting"  # stopped by a 429/5xx; its message comes back at resume_at and carries on
    DONE = "done"
    FAILED = "failed"  # the ledger refused our access: the connection needs a reconnect


# While a refresh is in one of these states (and its lease has not run out) it is "under way":
# requests join it, and other queued messages for the same connection step aside.
UNDER_WAY = frozenset({RefreshState.QUEUED, RefreshState.RUNNING, RefreshState.WAITING})


class RefreshRecord(BaseModel):
    refresh_id: str
    state: RefreshState
    reason: str  # initial_import | scheduled | requested | reconnected ...
    requested_at: datetime
    requested_by: str | None = None  # the Admin's user id for a requested refresh
    started_at: datetime | None = None
    finished_at: datetime | None = None
    resume_at: datetime | None = None
    lists_done: list[ListType] = Field(default_factory=list)
    last_error: str | None = None
    # Until when the record counts as under way: a worker that died (a Lambda timeout) or a message
    # that was never sent must not make every later request join a refresh that will never end.
    lease_until: datetime
    # Bumped on every write: updates are conditional on it (optimistic concurrency).
    sequence: int = 1

    def under_way(self, now: datetime) -> bool:
        return self.state in UNDER_WAY and self.lease_until > now


class RefreshStarted(BaseModel):
    """``POST /v1/connection/refresh``: the refresh that will bring the lists up to date, and whether
    this request joined one already queued or running."""

    refresh: RefreshRecord
    joined: bool
