"""Captured items: store them, plan them (coding resolution), publish them exactly once, attach
their documents, and explain every failure on the item."""

from __future__ import annotations

import threading
from typing import Any

from pydantic import ValidationError

from ledgerlink.api.auth import Caller
from ledgerlink.api.schemas import SubmitItemRequest
from ledgerlink.clock import Clock
from ledgerlink.errors import (
    AuthRevoked,
    Conflict,
    LedgerError,
    NotFound,
    RateLimited,
    Rejected,
    ResourceNotFound,
    TokenEndpointUnavailable,
    Unavailable,
)
from ledgerlink.models.common import ItemType, ListType
from ledgerlink.models.connection import Connection, ConnectionStatus
from ledgerlink.models.items import CapturedItem, ItemError, ItemStatus, PublishAttempt, StoredItem
from ledgerlink.models.lists import normalise_name
from ledgerlink.models.publishing import PublishPlan, PublishResult, Resolved, ValueSource
from ledgerlink.observability import count, logger
from ledgerlink.providers.base import Attachment, LedgerAdapter, LedgerSession
from ledgerlink.services.coding import ListIndex, build_publish_plan, idempotency_key
from ledgerlink.services.connection_status import ConnectionStatusKeeper
from ledgerlink.services.events import EventPublisher
from ledgerlink.services.ledgers import Ledgers
from ledgerlink.services.queues import PublishMessage, PublishQueue
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.storage.items import ItemRepository, StaleItem
from ledgerlink.storage.lists import ListRepository

# The publish queue's maxReceiveCount: the last delivery before SQS moves a message to the DLQ.
MAX_RECEIVES = 5
PUBLISHABLE_CONNECTION = frozenset({ConnectionStatus.CONNECTED, ConnectionStatus.REFRESH_FAILING})
SETTLED = frozenset({ItemStatus.PUBLISHED})


class RetryLater(Exception):
    """Publishing hit a transient problem; the message must come back after ``delay`` seconds."""

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


class MalformedMessage(ValueError):
    """A queue message that is not a valid publish message."""


class PublishingService:
    def __init__(
        self,
        *,
        items: ItemRepository,
        connections: ConnectionRepository,
        lists: ListRepository,
        ledgers: Ledgers,
        status: ConnectionStatusKeeper,
        events: EventPublisher,
        queue: PublishQueue,
        documents: Any,
        documents_bucket: str,
        clock: Clock,
    ):
        self._items = items
        self._connections = connections
        self._lists = lists
        self._ledgers = ledgers
        self._status = status
        self._events = events
        self._queue = queue
        self._documents = documents
        self._documents_bucket = documents_bucket
        self._clock = clock
        self._list_cache: dict[str, tuple[str, ListIndex]] = {}
        self._list_cache_lock = threading.Lock()

    # --- capture -----------------------------------------------------------------------------------

    def submit(self, caller: Caller, request: SubmitItemRequest) -> StoredItem:
        """POST /v1/items: store the item now (so it is visible at once) and queue it if asked."""
        stored, _version = self._store(caller.business_id, request.item, queued=request.publish)
        if request.publish and stored.status == ItemStatus.QUEUED:
            self._queue.send(
                PublishMessage(business_id=caller.business_id, action="publish", item=request.item),
                revision=stored.revision,
            )
        return stored

    def get(self, caller: Caller, item_id: str) -> StoredItem:
        found = self._items.get(caller.business_id, item_id)
        if found is None:
            raise ResourceNotFound(f"no item {item_id} in this business")
        return found[0]

    def _store(self, business_id: str, item: CapturedItem, *, queued: bool) -> tuple[StoredItem, int]:
        """Create the item, or a new revision when its content changed; the same content is a no-op."""
        now = self._clock.now()
        status = ItemStatus.QUEUED if queued else ItemStatus.WAITING
        for _attempt in range(5):
            found = self._items.get(business_id, item.id)
            if found is None:
                stored = StoredItem(
                    business_id=business_id, item=item, status=status, created_at=now, updated_at=now
                )
                if self._items.create(stored):
                    return stored, 1
                continue
            existing, version = found
            if existing.item == item:
                if queued and existing.status in (
                    ItemStatus.WAITING,
                    ItemStatus.REJECTED,
                    ItemStatus.FAILED,
                    ItemStatus.HELD,
                ):
                    existing = existing.model_copy(update={"status": ItemStatus.QUEUED, "updated_at": now})
                    version = self._items.save(existing, version)
                return existing, version
            if existing.status in SETTLED:
                raise Conflict(f"item {item.id} was already published; capture changes as a new item")
            revised = existing.model_copy(
                update={
                    "item": item,
                    "revision": existing.revision + 1,
                    "status": status,
                    "updated_at": now,
                    "last_error": None,
                }
            )
            try:
                return revised, self._items.save(revised, version)
            except StaleItem:
                continue
        raise Conflict(f"item {item.id} is being changed by someone else; try again")

    # --- the queue consumer ------------------------------------------------------------------------

    def handle_record(self, body: str, receipt_handle: str, receive_count: int) -> None:
        """One SQS record. Raising marks it failed in the batch response (SQS redelivers it)."""
        try:
            message = PublishMessage.model_validate_json(body)
        except ValidationError as error:
            # Malformed: redelivery cannot fix it; it fails until SQS moves it to the dead-letter queue.
            reasons = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5]
            )
            logger.error("malformed publish message", reasons=reasons, receive_count=receive_count)
            raise MalformedMessage(reasons) from error
        try:
            self.handle_message(message, receive_count=receive_count)
        except RetryLater as retry:
            if retry.delay:
                self._queue.redeliver_after(receipt_handle, retry.delay)
            raise

    def handle_message(self, message: PublishMessage, *, receive_count: int) -> None:
        stored, version = self._store(message.business_id, message.item, queued=message.action == "publish")
        if message.action != "publish":
            return
        final_delivery = receive_count >= MAX_RECEIVES
        self.publish(stored, version, final_delivery=final_delivery)

    def publish(self, stored: StoredItem, version: int, *, final_delivery: bool = False) -> StoredItem:
        """Publish one item. Raises RetryLater for transient failures (the message is redelivered)."""
        if stored.status == ItemStatus.PUBLISHED and stored.attachment_id is not None:
            return stored  # exactly once: a redelivered message finds the work done
        if stored.status == ItemStatus.PUBLISHED and stored.item.document is None:
            return stored
        connection = self._connections.get(stored.business_id)
        if connection is None or connection.status not in PUBLISHABLE_CONNECTION:
            reason = (
                "the business has no connected ledger" if connection is None else connection.status_reason
            )
            return self._record(
                stored,
                version,
                ItemStatus.HELD,
                "held",
                ItemError(
                    code="connection_unavailable",
                    message=f"Not published: {reason}",
                    hint="Reconnect the accounting software; held items are published once it is back.",
                ),
            )
        adapter = self._ledgers.adapter(connection.provider)
        plan = build_publish_plan(
            business_id=stored.business_id,
            item=stored.item,
            revision=stored.revision,
            rule=None,
            settings=connection.settings,
            lists=self._list_index(connection),
            capabilities=adapter.capabilities,
        )
        if not plan.ready:
            first = plan.problems[0]
            return self._record(
                stored,
                version,
                ItemStatus.REJECTED,
                "rejected",
                ItemError(
                    code=first.code,
                    message="; ".join(p.message for p in plan.problems),
                    hint=first.hint,
                    field=first.field,
                ),
            )
        session = self._ledgers.session(connection)
        try:
            if stored.status != ItemStatus.PUBLISHED:
                # A claimant of a native expense claim is a user of the ledger, found by the adapter.
                native_claim = (
                    plan.item_type == ItemType.EXPENSE_CLAIM and adapter.capabilities.native_expense_claims
                )
                if plan.contact.remote_id is None and not native_claim:
                    plan = self._with_ledger_contact(connection, adapter, session, plan)
                result = adapter.publish(session, plan)
                stored = stored.model_copy(
                    update={
                        "status": ItemStatus.PUBLISHED,
                        "connection_id": connection.connection_id,
                        "remote_id": result.remote_id,
                        "remote_url": result.url,
                        "last_error": None,
                    }
                )
                # Saved before the attachment: a failed attachment is retried alone, never the bill.
                stored, version = self._saved_attempt(stored, version, "published", None)
                count("ItemsPublished")
                self._status.working(connection)
                self._events.publish("item.published", self._event_detail(stored, connection))
            if stored.item.document is not None and stored.attachment_id is None:
                return self._attach(stored, version, adapter, session, plan)
            return stored
        except (Rejected, NotFound) as error:
            # NotFound: something the plan names is gone at the ledger; like a refusal, an edit fixes it.
            return self._record(stored, version, ItemStatus.REJECTED, "rejected", _ledger_error(error))
        except AuthRevoked as error:
            self._status.move(connection, ConnectionStatus.NEEDS_RECONNECT, error.message)
            return self._record(
                stored,
                version,
                ItemStatus.HELD,
                "held",
                ItemError(
                    code="needs_reconnect",
                    message=f"{adapter.capabilities.display_name} refused our access: {error.message}",
                    hint="An Admin must reconnect; the item is published automatically afterwards.",
                ),
            )
        except (RateLimited, Unavailable) as error:
            if isinstance(error, TokenEndpointUnavailable):
                self._status.refresh_failing(connection, error)
            status = ItemStatus.FAILED if final_delivery else ItemStatus.RETRYING
            hint = (
                "It was tried repeatedly and moved aside; publish it again when the ledger is back."
                if final_delivery
                else "Nothing to do: it will be retried automatically."
            )
            self._record(
                stored,
                version,
                status,
                status.value,
                ItemError(
                    code="ledger_busy" if isinstance(error, RateLimited) else "ledger_unavailable",
                    message=f"{adapter.capabilities.display_name} could not take it right now: {error.message}",
                    hint=hint,
                    ledger_message=error.message,
                ),
            )
            raise RetryLater(
                error.message, delay=error.retry_after if isinstance(error, RateLimited) else None
            ) from error

    def _attach(
        self,
        stored: StoredItem,
        version: int,
        adapter: LedgerAdapter,
        session: LedgerSession,
        plan: PublishPlan,
    ) -> StoredItem:
        """Attach the document to what was published. A refused attachment leaves the document
        published (it is never sent again) and says why on the item."""
        try:
            attachment_id = adapter.attach(session, plan, _result_of(stored), self._document(plan))
        except (Rejected, NotFound) as error:
            refused = stored.model_copy(
                update={
                    "attachment_id": None,
                    "last_error": ItemError(
                        code="attachment_refused",
                        message=f"Published, but the ledger refused the document: {error.message}",
                        hint="Attach the document in the ledger by hand, or check its size and file type.",
                        ledger_message=error.message,
                    ),
                }
            )
            updated, _ = self._saved_attempt(refused, version, "attachment_refused", error.message)
            return updated
        attached = stored.model_copy(update={"attachment_id": attachment_id or "attached"})
        updated, _ = self._saved_attempt(attached, version, "attached", None)
        return updated

    # --- helpers -----------------------------------------------------------------------------------

    def _with_ledger_contact(
        self, connection: Connection, adapter: LedgerAdapter, session: LedgerSession, plan: PublishPlan
    ) -> PublishPlan:
        """A supplier or customer the ledger does not know yet is found or created (once) and
        added to the imported contacts at once, so the next item for it resolves by name."""
        name = plan.contact.name or ""
        record = adapter.ensure_contact(
            session,
            name,
            customer=plan.item_type == ItemType.SALES,
            key=idempotency_key(connection.business_id, f"contact:{normalise_name(name)}", 1),
        )
        self._lists.write(connection.connection_id, ListType.CONTACTS, [record])
        with self._list_cache_lock:
            self._list_cache.pop(connection.connection_id, None)
        contact = Resolved(
            record_id=record.id,
            remote_id=record.remote_id,
            code=record.code,
            name=record.name,
            source=ValueSource.CAPTURED,
        )
        return plan.model_copy(update={"contact": contact})

    def _list_index(self, connection: Connection) -> ListIndex:
        """The connection's lists, rebuilt only when a refresh changed them (cached per container)."""
        stamp = "|".join(
            f"{t.value}:{f.refreshed_at.isoformat() if f.refreshed_at else ''}"
            for t, f in sorted(connection.lists.items())
        )
        with self._list_cache_lock:
            cached = self._list_cache.get(connection.connection_id)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        records = [
            r for list_type in ListType for r in self._lists.records(connection.connection_id, list_type)
        ]
        index = ListIndex.build(records)
        with self._list_cache_lock:
            self._list_cache[connection.connection_id] = (stamp, index)
        return index

    def _document(self, plan: PublishPlan) -> Attachment:
        assert plan.document is not None
        response = self._documents.get_object(Bucket=self._documents_bucket, Key=plan.document.key)
        return Attachment(
            file_name=plan.document.file_name,
            content_type=plan.document.content_type,
            content=response["Body"].read(),
        )

    def _saved_attempt(
        self, stored: StoredItem, version: int, outcome: str, message: str | None
    ) -> tuple[StoredItem, int]:
        now = self._clock.now()
        attempt = PublishAttempt(at=now, revision=stored.revision, outcome=outcome, message=message)
        updated = stored.model_copy(update={"attempts": [*stored.attempts, attempt], "updated_at": now})
        return updated, self._items.save(updated, version)

    def _record(
        self, stored: StoredItem, version: int, status: ItemStatus, outcome: str, error: ItemError
    ) -> StoredItem:
        updated = stored.model_copy(update={"status": status, "last_error": error})
        updated, _ = self._saved_attempt(updated, version, outcome, error.message)
        logger.info("item not published", item_id=stored.item.id, status=status.value, code=error.code)
        count(f"Items{status.value.capitalize()}")
        if status in (ItemStatus.REJECTED, ItemStatus.FAILED):
            self._events.publish(
                "item.failed",
                {
                    "business_id": stored.business_id,
                    "item_id": stored.item.id,
                    "status": status.value,
                    "error": error.model_dump(),
                },
            )
        return updated

    @staticmethod
    def _event_detail(stored: StoredItem, connection: Connection) -> dict[str, Any]:
        return {
            "business_id": stored.business_id,
            "item_id": stored.item.id,
            "revision": stored.revision,
            "provider": connection.provider.value,
            "remote_id": stored.remote_id,
            "remote_url": stored.remote_url,
        }


def _result_of(stored: StoredItem) -> PublishResult:
    return PublishResult(remote_id=stored.remote_id or "", url=stored.remote_url)


def _ledger_error(error: LedgerError) -> ItemError:
    field_errors = getattr(error, "field_errors", [])
    return ItemError(
        code="rejected_by_ledger",
        message=f"The ledger refused it: {error.message}",
        hint="Correct the item (category, tax rate, supplier or dates) and publish again.",
        field=field_errors[0].field if field_errors else None,
        ledger_message=error.message,
    )
