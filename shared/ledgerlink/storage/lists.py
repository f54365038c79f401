"""Imported list records (one item per record, written only when it changed), each list's refresh
state (high-water mark, resume checkpoint, last counts and time) and the connection's refresh record."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ledgerlink.models.common import ListType
from ledgerlink.models.connection import ListCounts
from ledgerlink.models.lists import ListRecord, list_type_of
from ledgerlink.models.refresh import RefreshRecord
from ledgerlink.storage.dynamo import ConditionFailed, Table
from ledgerlink.storage.schema import (
    CONNECTION_SK,
    LIST_STATE_SK_PREFIX,
    PARTITION_KEY,
    SORT_KEY,
    business_pk,
    connection_pk,
    list_pk,
    list_state_sk,
)


class ListCheckpoint(BaseModel):
    """A list fetch that stopped part-way: the pages before the stop are stored already; the next
    delivery carries on from ``resume_at`` with the same ``since``."""

    refresh_id: str
    since: str | None
    resume_at: dict[str, Any]  # the adapter's own position (e.g. the next page)
    # What the part already done counted and cost, added to the rest when the list completes.
    counts: ListCounts = Field(default_factory=ListCounts)
    ledger_calls: int = 0
    seconds: float = 0.0
    # The remote ids a whole-list fetch returned before the stop (zlib, base64): with the rest, they
    # tell what was deleted. None: not kept (an incremental fetch, or too many to fit in the item),
    # and then a fetch finished across deliveries applies no deletions, as absence proves nothing.
    seen: str | None = None


class ListState(BaseModel):
    """Where a list's refresh stands."""

    list_type: ListType
    # The ledger's own "changed since" value for the next incremental fetch. It moves only when a
    # fetch completes, so a stopped fetch is carried on (or redone) from the same mark.
    high_water: str | None = None
    # Where an interrupted fetch resumes (e.g. the next page), None when complete.
    checkpoint: ListCheckpoint | None = None
    refreshed_at: datetime | None = None
    record_count: int = 0
    last_counts: ListCounts = Field(default_factory=ListCounts)
    # How long the last refresh of this list took and how many ledger calls it cost.
    seconds: float | None = None
    ledger_calls: int | None = None
    # The refresh that last completed this list: a redelivered refresh skips the lists it finished.
    completed_by: str | None = None
    last_error: str | None = None


class ListRepository:
    def __init__(self, table: Table):
        self._table = table

    def records(self, connection_id: str, list_type: ListType) -> list[ListRecord]:
        return [
            ListRecord.model_validate_json(raw["data"])
            for raw in self._table.query(list_pk(connection_id, list_type))
        ]

    def fingerprints(self, connection_id: str, list_type: ListType) -> dict[str, tuple[str, str]]:
        """record id -> (content fingerprint, status) of every stored record of the list."""
        return {
            raw[SORT_KEY]: (raw["fingerprint"], raw["status"])
            for raw in self._table.query(list_pk(connection_id, list_type))
        }

    def fingerprints_of(
        self, connection_id: str, list_type: ListType, record_ids: Iterable[str]
    ) -> dict[str, tuple[str, str]]:
        """Like ``fingerprints``, for the given records only (those that are stored): an incremental
        fetch that returned a few records need not read the whole list to compare them."""
        pk = list_pk(connection_id, list_type)
        # A paced refresh looks up each delivery's pages (~400 records for KashFlow's contacts):
        # a hundred to a BatchGetItem rather than a round trip each.
        raws = self._table.batch_get([(pk, record_id) for record_id in record_ids], consistent=False)
        return {raw[SORT_KEY]: (raw["fingerprint"], raw["status"]) for raw in raws}

    def get(self, connection_id: str, record_id: str) -> ListRecord | None:
        list_type = list_type_of(record_id)
        if list_type is None:
            return None
        raw = self._table.get(list_pk(connection_id, list_type), record_id, consistent=False)
        return ListRecord.model_validate_json(raw["data"]) if raw else None

    def write(
        self,
        connection_id: str,
        list_type: ListType,
        upserts: Iterable[ListRecord],
        deletes: Iterable[str] = (),
    ) -> int:
        """Store changed records and drop deleted ones; returns the number of DynamoDB writes."""
        pk = list_pk(connection_id, list_type)
        puts = [
            {
                PARTITION_KEY: pk,
                SORT_KEY: record.id,
                "data": record.model_dump_json(),
                "fingerprint": record.content_fingerprint(),
                "status": record.status.value,
            }
            for record in upserts
        ]
        return self._table.batch_write(puts, [(pk, record_id) for record_id in deletes])

    def delete_all(self, connection_id: str) -> int:
        removed = 0
        for list_type in ListType:
            keys = [
                (raw[PARTITION_KEY], raw[SORT_KEY])
                for raw in self._table.query(list_pk(connection_id, list_type))
            ]
            removed += self._table.batch_write([], keys)
            self._table.delete(connection_pk(connection_id), list_state_sk(list_type))
        return removed

    def state(self, connection_id: str, list_type: ListType) -> ListState:
        raw = self._table.get(connection_pk(connection_id), list_state_sk(list_type))
        return ListState.model_validate_json(raw["data"]) if raw else ListState(list_type=list_type)

    def states(self, connection_id: str) -> dict[ListType, ListState]:
        """Every list's state, in one Query (lists never refreshed get an empty state)."""
        found = {
            state.list_type: state
            for state in (
                ListState.model_validate_json(raw["data"])
                for raw in self._table.query(
                    connection_pk(connection_id), sk_prefix=LIST_STATE_SK_PREFIX, consistent=True
                )
            )
        }
        return {list_type: found.get(list_type, ListState(list_type=list_type)) for list_type in ListType}

    def save_state(self, connection_id: str, state: ListState) -> None:
        self.save_states(connection_id, [state])

    def save_states(self, connection_id: str, states: Iterable[ListState]) -> int:
        """Store the states of the lists a refresh went through, in one batch."""
        return self._table.batch_write(
            [
                {
                    PARTITION_KEY: connection_pk(connection_id),
                    SORT_KEY: list_state_sk(state.list_type),
                    "data": state.model_dump_json(),
                }
                for state in states
            ]
        )


class RefreshRecordRepository:
    """The refresh record on the connection item, in attributes of its own: it is written with its
    own sequence check, so it never races the connection's versioned ``data`` (settings, status)."""

    def __init__(self, table: Table):
        self._table = table

    def get(self, business_id: str, connection_id: str) -> RefreshRecord | None:
        raw = self._table.get(business_pk(business_id), CONNECTION_SK)
        if raw is None or raw.get("connection_id") != connection_id or "refresh" not in raw:
            return None
        return RefreshRecord.model_validate_json(raw["refresh"])

    def replace(
        self, business_id: str, connection_id: str, record: RefreshRecord, *, expected: RefreshRecord | None
    ) -> bool:
        """Write ``record`` if the stored one is still ``expected`` (None: there is none yet) and
        the business's connection is still ``connection_id``; False when someone got there first."""
        condition = "connection_id = :connection_id AND " + (
            "attribute_not_exists(refresh_sequence)" if expected is None else "refresh_sequence = :expected"
        )
        values: dict[str, object] = {
            ":record": record.model_dump_json(),
            ":sequence": record.sequence,
            ":connection_id": connection_id,
        }
        if expected is not None:
            values[":expected"] = expected.sequence
        try:
            self._table.update(
                business_pk(business_id),
                CONNECTION_SK,
                update="SET refresh = :record, refresh_sequence = :sequence",
                condition=condition,
                values=values,
            )
        except ConditionFailed:
            return False
        return True
