"""Captured items and their publishing history, one item per captured item of a business."""

from __future__ import annotations

from collections.abc import Iterator

from ledgerlink.models.items import ItemStatus, StoredItem
from ledgerlink.storage.dynamo import ConditionFailed, Table
from ledgerlink.storage.schema import ITEM_SK_PREFIX, PARTITION_KEY, SORT_KEY, business_pk, item_sk


class StaleItem(ConditionFailed):
    """The item changed since it was read."""


class ItemRepository:
    def __init__(self, table: Table):
        self._table = table

    def get(self, business_id: str, item_id: str) -> tuple[StoredItem, int] | None:
        """The item and its storage version (for a conditional save)."""
        raw = self._table.get(business_pk(business_id), item_sk(item_id))
        if raw is None:
            return None
        return StoredItem.model_validate_json(raw["data"]), int(raw["version"])

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
        for raw in self._table.query(business_pk(business_id), sk_prefix=ITEM_SK_PREFIX):
            if status is None or raw.get("status") == status.value:
                yield StoredItem.model_validate_json(raw["data"])

    @staticmethod
    def _row(stored: StoredItem, version: int) -> dict[str, object]:
        return {
            PARTITION_KEY: business_pk(stored.business_id),
            SORT_KEY: item_sk(stored.item.id),
            "data": stored.model_dump_json(),
            "status": stored.status.value,
            "version": version,
        }
