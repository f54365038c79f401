"""Captured items as the API sees them: capture (optionally publish, or auto-publish), read, list,
edit by hand, preview the plan, ask to publish. Publishing itself is the publisher's job."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ledgerlink.api.auth import Caller
from ledgerlink.api.schemas import ItemPage, PublishPreview, SubmitItemRequest
from ledgerlink.clock import Clock
from ledgerlink.errors import Conflict, InvalidRequest, ResourceNotFound, Unprocessable
from ledgerlink.models.connection import ConnectionStatus
from ledgerlink.models.items import PENDING_STATUSES, CapturedItem, ItemPatch, ItemStatus, StoredItem
from ledgerlink.models.publishing import ValueSource
from ledgerlink.services.planning import Planner
from ledgerlink.services.queues import PublishMessage, PublishQueue
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.storage.items import InvalidCursor, ItemRepository, StaleItem

SAVE_ATTEMPTS = 5
MAX_PAGE = 200
# The line fields a person can edit; changing one marks it as a manual edit.
LINE_CODING_FIELDS = ("category", "tax_rate", "project", "project_2", "product")
HEADER_FIELDS = ("supplier", "customer", "date", "due_date", "reference", "destination")


class ItemService:
    def __init__(
        self,
        *,
        items: ItemRepository,
        connections: ConnectionRepository,
        planner: Planner,
        queue: PublishQueue,
        clock: Clock,
    ):
        self._items = items
        self._connections = connections
        self._planner = planner
        self._queue = queue
        self._clock = clock

    # --- capture ----------------------------------------------------------------------------------

    def submit(self, caller: Caller, request: SubmitItemRequest) -> StoredItem:
        return self.capture(caller.business_id, request.item, publish=request.publish, wake_publisher=True)

    def capture(
        self, business_id: str, item: CapturedItem, *, publish: bool, wake_publisher: bool = False
    ) -> StoredItem:
        """Store the item (a new revision if its content changed) and queue it when asked to, or
        when its supplier's rule auto-publishes and its coding is complete. Captures that arrive
        by the queue are published by the same consumer; the API's need ``wake_publisher``."""
        for _attempt in range(SAVE_ATTEMPTS):
            stored, version = self._stored_revision(business_id, item)
            if stored.status == ItemStatus.PUBLISHED:
                return stored
            if stored.status in PENDING_STATUSES or not (publish or self._auto_publishes(stored)):
                return stored
            try:
                return self._queue_for_publishing(stored, version, wake_publisher=wake_publisher)
            except StaleItem:
                continue
        raise Conflict(f"item {item.id} is being changed by someone else; try again")

    def _stored_revision(self, business_id: str, item: CapturedItem) -> tuple[StoredItem, int]:
        now = self._clock.now()
        for _attempt in range(SAVE_ATTEMPTS):
            found = self._items.get(business_id, item.id)
            if found is None:
                stored = StoredItem(
                    business_id=business_id,
                    item=item,
                    status=ItemStatus.WAITING,
                    created_at=now,
                    updated_at=now,
                )
                if self._items.create(stored):
                    return stored, 1
                continue
            existing, version = found
            if existing.item == item:
                return existing, version  # the same capture again (a redelivery): nothing changes
            if existing.status == ItemStatus.PUBLISHED:
                raise Conflict(f"item {item.id} was already published; capture changes as a new item")
            revised = existing.model_copy(
                update={
                    "item": item,
                    "revision": existing.revision + 1,
                    "status": ItemStatus.WAITING,
                    "updated_at": now,
                    "last_error": None,
                }
            )
            try:
                return revised, self._items.save(revised, version)
            except StaleItem:
                continue
        raise Conflict(f"item {item.id} is being changed by someone else; try again")

    def _auto_publishes(self, stored: StoredItem) -> bool:
        connection = self._connections.get(stored.business_id)
        if (
            connection is None
            or connection.status != ConnectionStatus.CONNECTED
            or not connection.settings.auto_publish
        ):
            return False
        rule = self._planner.rule_for(stored)
        if rule is None or not rule.auto_publish:
            return False
        plan = self._planner.plan(connection, stored)
        return plan.ready and all(line.category.source != ValueSource.MISSING for line in plan.lines)

    def _queue_for_publishing(
        self, stored: StoredItem, version: int, *, wake_publisher: bool = True
    ) -> StoredItem:
        now = self._clock.now()
        queued = stored.model_copy(update={"status": ItemStatus.QUEUED, "queued_at": now, "updated_at": now})
        self._items.save(queued, version)
        if not wake_publisher:
            return queued
        # The message wakes the business's publisher; the item itself is already stored.
        self._queue.send(
            PublishMessage(business_id=stored.business_id, action="publish", item=stored.item),
            revision=stored.revision,
        )
        return queued

    # --- reading ----------------------------------------------------------------------------------

    def get(self, caller: Caller, item_id: str) -> StoredItem:
        return self._find(caller, item_id)[0]

    def page(self, caller: Caller, *, status: str | None, cursor: str | None, limit: int) -> ItemPage:
        if status is not None and status not in {s.value for s in ItemStatus}:
            raise InvalidRequest(
                f"status must be one of: {', '.join(s.value for s in ItemStatus)}", field="status"
            )
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        try:
            items, next_cursor = self._items.page(
                caller.business_id, status=ItemStatus(status) if status else None, limit=limit, cursor=cursor
            )
        except InvalidCursor as error:
            raise InvalidRequest(str(error), field="cursor") from error
        return ItemPage(items=items, next_cursor=next_cursor)

    def preview(self, caller: Caller, item_id: str) -> PublishPreview:
        stored, _version = self._find(caller, item_id)
        connection = self._connections.get(caller.business_id)
        if connection is None or connection.status == ConnectionStatus.PENDING_ORGANISATION:
            raise Conflict("connect the accounting software first: the preview codes items against its lists")
        plan = self._planner.plan(connection, stored)
        return PublishPreview(item_id=stored.item.id, revision=stored.revision, ready=plan.ready, plan=plan)

    # --- changing ---------------------------------------------------------------------------------

    def edit(self, caller: Caller, item_id: str, patch: ItemPatch) -> StoredItem:
        for _attempt in range(SAVE_ATTEMPTS):
            stored, version = self._find(caller, item_id)
            if stored.status == ItemStatus.PUBLISHED:
                raise Conflict(f"item {item_id} is already published; change it in the ledger")
            item = _patched(stored.item, patch)
            now = self._clock.now()
            status = stored.status if stored.status in PENDING_STATUSES else ItemStatus.WAITING
            revised = stored.model_copy(
                update={
                    "item": item,
                    "revision": stored.revision + 1,
                    "status": status,
                    "updated_at": now,
                    "last_error": None,
                }
            )
            try:
                self._items.save(revised, version)
            except StaleItem:
                continue
            return revised
        raise Conflict(f"item {item_id} is being changed by someone else; try again")

    def request_publish(self, caller: Caller, item_id: str) -> StoredItem:
        for _attempt in range(SAVE_ATTEMPTS):
            stored, version = self._find(caller, item_id)
            if stored.status == ItemStatus.PUBLISHED:
                raise Conflict(f"item {item_id} is already published")
            if stored.status in PENDING_STATUSES:
                return stored
            try:
                return self._queue_for_publishing(stored.model_copy(update={"last_error": None}), version)
            except StaleItem:
                continue
        raise Conflict(f"item {item_id} is being changed by someone else; try again")

    def _find(self, caller: Caller, item_id: str) -> tuple[StoredItem, int]:
        found = self._items.get(caller.business_id, item_id)
        if found is None:
            raise ResourceNotFound(f"no item {item_id} in this business")
        return found


def _patched(item: CapturedItem, patch: ItemPatch) -> CapturedItem:
    """The item with a person's edits applied, and those edits remembered as manual."""
    changes = patch.model_dump(exclude_unset=True)
    edited = set(item.edited_fields)
    edited |= {name for name in HEADER_FIELDS if name in changes}
    if patch.lines is not None:
        for index, line in enumerate(patch.lines):
            before = item.lines[index] if index < len(item.lines) else None
            edited |= {
                name
                for name in LINE_CODING_FIELDS
                if getattr(line, name) is not None
                and (before is None or getattr(before, name) != getattr(line, name))
            }
    merged: dict[str, Any] = item.model_dump()
    for name in changes:
        value = getattr(patch, name)
        merged[name] = (
            value.model_dump()
            if isinstance(value, BaseModel)
            else [v.model_dump() for v in value]
            if isinstance(value, list)
            else value
        )
    merged["edited_fields"] = sorted(edited)
    try:
        return CapturedItem.model_validate(merged)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise Unprocessable(f"the edited item is not valid: {first['msg']}", field=field) from error
