"""Captured items and their publishing history, one item per captured item of a business.

Items waiting to be published also sit on GSI1 under their business (``QUEUE#<business>``, sorted
by when they were queued), so the publisher takes the next batch with one small Query instead of
reading every item the business ever captured.
"""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Iterator
from typing import Any

from ledgerlink.models.items import PENDING_STATUSES, ItemStatus, StoredItem
from ledgerlink.storage.dynamo import ConditionFailed, Table
from ledgerlink.storage.merge import StagedReads
from ledgerlink.storage.schema import (
    GSI1_NAME,
    GSI1_PARTITION_KEY,
    GSI1_SORT_KEY,
    ITEM_SK_PREFIX,
    PARTITION_KEY,
    SORT_KEY,
    business_pk,
    item_sk,
    publish_queue_pk,
)


class StaleItem(ConditionFailed):
    """The item changed since it was read."""


class InvalidCursor(ValueError):
    pass


class ItemRepository:
    def __init__(self, table: Table):
        self._table = table
        # A Merge Lists apply too large for one transaction stages its new item contents before
        # flipping one pointer; reading through StagedReads never shows half of such a merge.
        self._staged = StagedReads(table)

    def get(self, business_id: str, item_id: str) -> tuple[StoredItem, int] | None:
        """The item and its storage version (for a conditional save)."""
        raw = self._table.get(business_pk(business_id), item_sk(item_id))
        if raw is None:
            return None
        return StoredItem.model_validate_json(self._staged.data_of(raw)), int(raw["version"])

    def create(self, stored: StoredItem) -> bool:
        """Store a new item; False if an item with that id already exists."""
        try:
            self._table.put(self._row(stored, 1), condition="attribute_not_exists(pk)")
        except ConditionFailed:
            return False
        return True

    def save(self, stored: StoredItem, version: int) -> int:
        """Replace the item if it is still at ``version``; returns the new version."""
        try:
            self._table.put(
                self._row(stored, version + 1), condition="version = :expected", values={":expected": version}
            )
        except ConditionFailed as error:
            raise StaleItem(f"item {stored.item.id} changed since it was read") from error
        return version + 1

    def list(self, business_id: str, status: ItemStatus | None = None) -> Iterator[StoredItem]:
        for stored, _version in self.list_with_versions(business_id, status):
            yield stored

    def list_with_versions(
        self, business_id: str, status: ItemStatus | None = None
    ) -> Iterator[tuple[StoredItem, int]]:
        states: dict[tuple[str, str], str] = {}
        for raw in self._table.query(business_pk(business_id), sk_prefix=ITEM_SK_PREFIX):
            if status is None or raw.get("status") == status.value:
                yield StoredItem.model_validate_json(self._staged.data_of(raw, states)), int(raw["version"])

    def key_of(self, business_id: str, item_id: str) -> tuple[str, str]:
        return business_pk(business_id), item_sk(item_id)

    def page(
        self, business_id: str, *, status: ItemStatus | None, limit: int, cursor: str | None
    ) -> tuple[builtins.list[StoredItem], str | None]:
        raw, last = self._table.query_page(
            business_pk(business_id),
            sk_prefix=ITEM_SK_PREFIX,
            limit=limit,
            start_key=_decode(cursor),
            attribute_equals=("status", status.value) if status else None,
        )
        states: dict[tuple[str, str], str] = {}
        return [StoredItem.model_validate_json(self._staged.data_of(r, states)) for r in raw], _encode(last)

    def pending(self, business_id: str, *, limit: int) -> builtins.list[tuple[StoredItem, int]]:
        """The oldest items waiting to be published (queued or retrying), with their versions."""
        found = []
        for raw in self._table.query(
            publish_queue_pk(business_id),
            index=GSI1_NAME,
            pk_name=GSI1_PARTITION_KEY,
            sk_name=GSI1_SORT_KEY,
            limit=limit,
        ):
            found.append((StoredItem.model_validate_json(self._staged.data_of(raw)), int(raw["version"])))
        return found

    @staticmethod
    def _row(stored: StoredItem, version: int) -> dict[str, object]:
        row: dict[str, object] = {
            PARTITION_KEY: business_pk(stored.business_id),
            SORT_KEY: item_sk(stored.item.id),
            "data": stored.model_dump_json(),
            "status": stored.status.value,
            "version": version,
        }
        if stored.status in PENDING_STATUSES or stored.follow_up:
            queued_at = (stored.queued_at or stored.updated_at).isoformat()
            row[GSI1_PARTITION_KEY] = publish_queue_pk(stored.business_id)
            row[GSI1_SORT_KEY] = f"{queued_at}#{stored.item.id}"
        return row


def _encode(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode().rstrip("=")


def _decode(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as error:
        raise InvalidCursor("cursor is not one this API returned") from error
    return decoded
