"""Supplier and customer rules: read, save (validated against the imported lists), delete; and a
saved auto-publish rule re-resolves the party's waiting items."""

from __future__ import annotations

import re

from ledgerlink.api.auth import Caller, require_admin
from ledgerlink.clock import Clock
from ledgerlink.errors import InvalidRequest, ResourceNotFound, Unprocessable
from ledgerlink.models.connection import Connection, ConnectionStatus
from ledgerlink.models.items import ItemStatus, StoredItem
from ledgerlink.models.lists import ListRecord, RecordStatus, list_type_of, normalise_name
from ledgerlink.models.publishing import ValueSource
from ledgerlink.models.rules import (
    RULE_REFERENCE_LISTS,
    PartyRule,
    RuleKind,
    RuleSaved,
    RulesView,
    StoredRule,
)
from ledgerlink.observability import logger
from ledgerlink.providers import registry
from ledgerlink.services.coding import build_publish_plan
from ledgerlink.services.planning import Planner
from ledgerlink.services.queues import PublishMessage, PublishQueue
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.storage.items import ItemRepository, StaleItem
from ledgerlink.storage.lists import ListRepository
from ledgerlink.storage.rules import RuleRepository, StaleRule, pick_by_name

SAVE_ATTEMPTS = 5
KEY_PATTERN_HINT = "letters, digits, spaces and . _ : @ + - (at most 128, starting with a letter or digit)"
RULE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:@+-]{0,127}")


class RuleService:
    def __init__(
        self,
        *,
        rules: RuleRepository,
        connections: ConnectionRepository,
        lists: ListRepository,
        items: ItemRepository,
        planner: Planner,
        queue: PublishQueue,
        clock: Clock,
    ):
        self._rules = rules
        self._connections = connections
        self._lists = lists
        self._items = items
        self._planner = planner
        self._queue = queue
        self._clock = clock

    def all(self, caller: Caller, kind: RuleKind) -> RulesView:
        rules = [stored for stored, _version in self._rules.list(caller.business_id, kind)]
        return RulesView(rules=sorted(rules, key=lambda stored: stored.key))

    def get(self, caller: Caller, kind: RuleKind, key: str) -> StoredRule:
        found = self._rules.get(caller.business_id, kind, _checked_key(key))
        if found is None:
            raise ResourceNotFound(f"there is no {kind.value} rule {key!r}")
        return found[0]

    def put(self, caller: Caller, kind: RuleKind, key: str, rule: PartyRule) -> RuleSaved:
        require_admin(caller, f"change {kind.value} rules")
        key = _checked_key(key)
        connection = self._connection_of(caller)
        self._validate(connection, kind, rule)
        stored = StoredRule(
            kind=kind, key=key, rule=rule, updated_at=self._clock.now(), updated_by=caller.user_id
        )
        for _attempt in range(SAVE_ATTEMPTS):
            found = self._rules.get(caller.business_id, kind, key)
            try:
                self._rules.save(caller.business_id, stored, found[1] if found else None)
                break
            except StaleRule:
                continue  # saved by someone else meanwhile: last writer wins, as for settings
        else:
            raise StaleRule(f"the {kind.value} rule {key} kept changing; try again")
        queued = self._requeue_waiting_items(connection, stored) if rule.auto_publish else []
        return RuleSaved(rule=stored, queued_items=queued)

    def delete(self, caller: Caller, kind: RuleKind, key: str) -> None:
        require_admin(caller, f"change {kind.value} rules")
        if not self._rules.delete(caller.business_id, kind, _checked_key(key)):
            raise ResourceNotFound(f"there is no {kind.value} rule {key!r}")

    # --- validation --------------------------------------------------------------------------------

    def _validate(self, connection: Connection, kind: RuleKind, rule: PartyRule) -> None:
        """Every reference names an active record of the right imported list (422 naming the field)."""
        ledger = registry.capabilities(connection.provider)
        for field_name, list_type in RULE_REFERENCE_LISTS.items():
            record_id = getattr(rule, field_name)
            if record_id is None:
                continue
            if list_type_of(record_id) != list_type:
                raise Unprocessable(
                    f"{field_name} must be a {list_type.value} record id from GET /v1/lists/{list_type.value}",
                    field=field_name,
                )
            record = self._lists.get(connection.connection_id, record_id)
            if record is None:
                raise Unprocessable(
                    f"{field_name} {record_id} is not in the imported {list_type.value}; refresh the lists",
                    field=field_name,
                )
            if record.status == RecordStatus.ARCHIVED:
                raise Unprocessable(
                    f"the {field_name.replace('_', ' ')} {record.name} is archived in {ledger.display_name}",
                    field=field_name,
                )
            _check_dimension(field_name, record)
        if rule.destination is not None:
            choices = ledger.destinations.get(kind.item_type, ())
            if rule.destination not in choices:
                raise Unprocessable(
                    f"{ledger.display_name} has no destination {rule.destination!r} for {kind.item_type.value} "
                    f"items; choose one of: {', '.join(choices) or 'none'}",
                    field="destination",
                )

    # --- a rule edit re-resolves the party's waiting items -------------------------------------------

    def _requeue_waiting_items(self, connection: Connection, saved: StoredRule) -> list[str]:
        """Waiting items are coded when they are published (and for the preview), so they need no
        rewriting; what a saved auto-publish rule changes is whether they may go now. The ones whose
        party resolves to this rule and whose plan is complete are queued, by the same test as at
        capture time (services/items.py)."""
        if connection.status != ConnectionStatus.CONNECTED or not connection.settings.auto_publish:
            return []
        business_id = connection.business_id
        # Consistent reads of every rule of the kind, not the name index: it may lag a just-saved rule.
        rules = [stored for stored, _version in self._rules.list(business_id, saved.kind)]
        by_key = {stored.key: stored for stored in rules}
        lists = self._planner.lists_of(connection)
        capabilities = registry.capabilities(connection.provider)
        queued: list[str] = []
        for stored in self._items.list(business_id, ItemStatus.WAITING):
            party = stored.item.party
            if stored.item.type != saved.kind.item_type or party is None:
                continue
            keyed = by_key.get(party.key) if party.key else None
            rule = keyed.rule if keyed else pick_by_name(rules, normalise_name(party.name))
            if rule != saved.rule:
                continue
            plan = build_publish_plan(
                business_id=business_id,
                item=stored.item,
                revision=stored.revision,
                rule=rule,
                settings=connection.settings,
                lists=lists,
                capabilities=capabilities,
            )
            complete = plan.ready and all(line.category.source != ValueSource.MISSING for line in plan.lines)
            if complete and self._queue_item(stored):
                queued.append(stored.item.id)
        logger.info("rule saved", kind=saved.kind.value, items_queued=len(queued))
        return queued

    def _queue_item(self, listed: StoredItem) -> bool:
        found = self._items.get(listed.business_id, listed.item.id)
        if found is None or found[0].status != ItemStatus.WAITING:
            return False
        stored, version = found
        now = self._clock.now()
        try:
            self._items.save(
                stored.model_copy(update={"status": ItemStatus.QUEUED, "queued_at": now, "updated_at": now}),
                version,
            )
        except StaleItem:
            return False  # changed meanwhile: whoever changed it decides what happens next
        self._queue.send(
            PublishMessage(business_id=stored.business_id, action="publish", item=stored.item),
            revision=stored.revision,
        )
        return True

    def _connection_of(self, caller: Caller) -> Connection:
        connection = self._connections.get(caller.business_id)
        if connection is None:
            raise ResourceNotFound("this business has no accounting connection yet: rules refer to its lists")
        return connection


def _checked_key(key: str) -> str:
    """``{key}`` is the capture product's id for the party, or its normalised name: it becomes part
    of a sort key, so it is held to one plain alphabet."""
    if not RULE_KEY.fullmatch(key):
        raise InvalidRequest(f"a rule key is {KEY_PATTERN_HINT}", field="key")
    return key


def _check_dimension(field_name: str, record: ListRecord) -> None:
    """project is a first tracking dimension's option, project_2 a second one's; a project that no
    document line can carry is neither."""
    if not record.codes_lines:
        raise Unprocessable(
            f"{record.name} is from {record.dimension_name}, which no document line can carry: "
            "use a tracking option from GET /v1/lists/projects",
            field=field_name,
        )
    if field_name == "project" and record.dimension == 2:
        raise Unprocessable(
            f"{record.name} belongs to the second tracking dimension: use project_2", field=field_name
        )
    if field_name == "project_2" and record.dimension != 2:
        raise Unprocessable(
            f"{record.name} is not an option of the second tracking dimension", field=field_name
        )
