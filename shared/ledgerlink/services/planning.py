"""Turning a stored item into a publish plan for its connection: the imported lists (cached per
container until a refresh changes them), the party's rule, the connection's settings."""

from __future__ import annotations

import threading
from typing import Protocol

from ledgerlink.models.common import ItemType, ListType
from ledgerlink.models.connection import Connection
from ledgerlink.models.items import StoredItem
from ledgerlink.models.publishing import PublishPlan
from ledgerlink.models.rules import PartyRule
from ledgerlink.providers import registry
from ledgerlink.services.coding import ListIndex, build_publish_plan
from ledgerlink.storage.lists import ListRepository


class RuleLookup(Protocol):
    def for_party(self, business_id: str, kind: str, *, key: str | None, name: str) -> PartyRule | None: ...


class Planner:
    def __init__(self, lists: ListRepository, rules: RuleLookup):
        self._lists = lists
        self._rules = rules
        self._cache: dict[str, tuple[str, ListIndex]] = {}
        self._lock = threading.Lock()

    def plan(self, connection: Connection, stored: StoredItem) -> PublishPlan:
        return build_publish_plan(
            business_id=stored.business_id,
            item=stored.item,
            revision=stored.revision,
            rule=self.rule_for(stored),
            settings=connection.settings,
            lists=self.lists_of(connection),
            capabilities=registry.capabilities(connection.provider),
        )

    def rule_for(self, stored: StoredItem) -> PartyRule | None:
        item = stored.item
        party = item.party
        if party is None:
            return None
        kind = "customer" if item.type == ItemType.SALES else "supplier"
        return self._rules.for_party(stored.business_id, kind, key=party.key, name=party.name)

    def lists_of(self, connection: Connection) -> ListIndex:
        """The connection's lists, rebuilt only when a refresh changed them."""
        stamp = "|".join(
            f"{t.value}:{f.refreshed_at.isoformat() if f.refreshed_at else ''}"
            for t, f in sorted(connection.lists.items())
        )
        with self._lock:
            cached = self._cache.get(connection.connection_id)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        records = [
            r for list_type in ListType for r in self._lists.records(connection.connection_id, list_type)
        ]
        index = ListIndex.build(records)
        with self._lock:
            self._cache[connection.connection_id] = (stamp, index)
        return index

    def forget(self, connection_id: str) -> None:
        """A record was added outside a refresh (a contact created while publishing)."""
        with self._lock:
            self._cache.pop(connection_id, None)
