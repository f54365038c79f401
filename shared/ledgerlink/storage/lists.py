"""Imported list records (one item per record, written only when it changed) and each list's
refresh state (high-water mark, resume checkpoint, last counts)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ledgerlink.models.common import ListType
from ledgerlink.models.connection import ListCounts
from ledgerlink.models.lists import ListRecord, list_type_of
from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.schema import PARTITION_KEY, SORT_KEY, connection_pk, list_pk, list_state_sk


class ListState(BaseModel):
    """Where a list's refresh stands."""

    list_type: ListType
    # The ledger's own "changed since" value for the next incremental fetch.
    high_water: str | None = None
    # Where an interrupted import resumes (e.g. the next page), None when complete.
    checkpoint: dict[str, Any] | None = None
    refreshed_at: datetime | None = None
    record_count: int = 0
    last_counts: ListCounts = Field(default_factory=ListCounts)
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

    def save_state(self, connection_id: str, state: ListState) -> None:
        self._table.put(
            {
                PARTITION_KEY: connection_pk(connection_id),
                SORT_KEY: list_state_sk(state.list_type),
                "data": state.model_dump_json(),
            }
        )
