"""The publisher: takes a business's queued items oldest first, plans them, publishes them in the
ledger's batches, then sends each document and (bank match) each payment — exactly once, with
every failure explained on its item.

The queue messages only wake it up: one SQS FIFO group per business means one publisher per
ledger organisation at a time, and because the items themselves wait in DynamoDB, a wake-up takes
as many as the ledger's batch write holds (Xero 50) instead of the ten a FIFO delivery carries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ledgerlink.clock import Clock
from ledgerlink.errors import (
    AuthRevoked,
    LedgerError,
    NotFound,
    RateLimited,
    Rejected,
    TokenEndpointUnavailable,
    Unavailable,
)
from ledgerlink.models.common import ItemType, ListType
from ledgerlink.models.connection import Connection, ConnectionStatus
from ledgerlink.models.items import ItemError, ItemStatus, PublishAttempt, StoredItem
from ledgerlink.models.lists import normalise_name
from ledgerlink.models.publishing import PublishPlan, PublishResult, Resolved, ValueSource
from ledgerlink.observability import count, logger
from ledgerlink.providers.base import Attachment, LedgerAdapter, LedgerSession
from ledgerlink.services.budget import CALL_BUDGET_LIMIT
from ledgerlink.services.coding import idempotency_key
from ledgerlink.services.connection_status import ConnectionStatusKeeper
from ledgerlink.services.events import EventPublisher
from ledgerlink.services.ledgers import Ledgers
from ledgerlink.services.planning import Planner
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.storage.items import ItemRepository, StaleItem
from ledgerlink.storage.lists import ListRepository

PUBLISHABLE_CONNECTION = frozenset({ConnectionStatus.CONNECTED, ConnectionStatus.REFRESH_FAILING})
# Attempts after which the ledger may hold the document although we never saw it created.
UNSURE_OUTCOMES = frozenset({ItemStatus.RETRYING.value, ItemStatus.HELD.value})
# After this many transient failures of one revision an item stops retrying by itself.
MAX_TRANSIENT_FAILURES = 5
# Items read per round; the ledger's batch size cuts them further.
ROUND_SIZE = 200
# Leave a Lambda invocation this long to save its state before it is cut off.
TIME_RESERVE_SECONDS = 20.0
# A 5xx or timeout without a Retry-After: try again after this long.
OUTAGE_RETRY_SECONDS = 30.0
# A wake-up that is not the last of a backlog waits for a full batch, but never longer than this.
MAX_BATCH_WAIT = timedelta(seconds=5)
# Bank match windows (issue 6): around the due date, after the document date, never older.
DUE_DATE_WINDOW = timedelta(days=10)
NO_DUE_DATE_WINDOW = timedelta(days=30)
OLDEST_BANK_LINE = timedelta(days=183)


@dataclass
class DrainOutcome:
    published: int = 0
    retry_after: float | None = None  # stopped on a transient failure: wake again after this
    more: bool = False  # stopped for time with items still queued


class _Stop(Exception):
    def __init__(self, retry_after: float | None):
        super().__init__(f"retry after {retry_after}")
        self.retry_after = retry_after


@dataclass
class _Work:
    """One item in this round, with its latest stored version."""

    stored: StoredItem
    version: int
    plan: PublishPlan | None = None
    done: bool = False
    # Handed to the ledger in this round (its document may exist even if no answer came back).
    sent: bool = False


@dataclass
class _Round:
    connection: Connection
    adapter: LedgerAdapter
    session: LedgerSession
    work: dict[str, _Work] = field(default_factory=dict)


class Publisher:
    def __init__(
        self,
        *,
        items: ItemRepository,
        connections: ConnectionRepository,
        lists: ListRepository,
        ledgers: Ledgers,
        planner: Planner,
        status: ConnectionStatusKeeper,
        events: EventPublisher,
        documents: Any,
        documents_bucket: str,
        clock: Clock,
    ):
        self._items = items
        self._connections = connections
        self._lists = lists
        self._ledgers = ledgers
        self._planner = planner
        self._status = status
        self._events = events
        self._documents = documents
        self._documents_bucket = documents_bucket
        self._clock = clock

    def batch_ready(self, business_id: str) -> bool:
        """Whether the business's queue holds a full batch for its ledger, or has waited long
        enough; otherwise publishing waits for more captures so one call carries many items."""
        connection = self._connections.get(business_id)
        if connection is None:
            return True  # nothing to batch: the items are held at once
        batch_size = self._ledgers.adapter(connection.provider).capabilities.batch_size
        pending = self._items.pending(business_id, limit=batch_size)
        if len(pending) >= batch_size or not pending:
            return True
        oldest = pending[0][0].queued_at or pending[0][0].updated_at
        return self._clock.now() - oldest >= MAX_BATCH_WAIT

    def drain(self, business_id: str, *, time_left: Callable[[], float]) -> DrainOutcome:
        # The round's item.published / item.failed events go out ten to a PutEvents call.
        with self._events.batched():
            return self._drain(business_id, time_left=time_left)

    def _drain(self, business_id: str, *, time_left: Callable[[], float]) -> DrainOutcome:
        """Publish the business's queued items until none are left, the ledger asks us to wait,
        or the invocation runs out of time."""
        outcome = DrainOutcome()
        while True:
            pending = self._items.pending(business_id, limit=ROUND_SIZE)
            if not pending:
                return outcome
            if time_left() < TIME_RESERVE_SECONDS:
                outcome.more = True
                return outcome
            connection = self._connections.get(business_id)
            if connection is None or connection.status not in PUBLISHABLE_CONNECTION:
                self._hold(pending, connection)
                return outcome
            adapter = self._ledgers.adapter(connection.provider)
            current = _Round(connection, adapter, self._ledgers.session(connection))
            current.work = {stored.item.id: _Work(stored, version) for stored, version in pending}
            try:
                outcome.published += self._publish_round(current)
            except _Stop as stop:
                outcome.retry_after = stop.retry_after
                return outcome
            if not any(work.done for work in current.work.values()):
                # Nothing in the round was anything to do (a bug, or a state this code does not
                # know): stop rather than read the same items again until the invocation ends.
                logger.warning("publishing round made no progress", business_id=business_id)
                return outcome

    # --- one round ---------------------------------------------------------------------------------

    def _publish_round(self, current: _Round) -> int:
        try:
            published = self._publish_new(current)
            for work in current.work.values():
                if not work.done and work.stored.follow_up:
                    self._follow_up(current, work)
            return published
        except AuthRevoked as error:
            broken = self._status.move(current.connection, ConnectionStatus.NEEDS_RECONNECT, error.message)
            self._hold([(w.stored, w.version) for w in current.work.values() if not w.done], broken)
            raise _Stop(None) from error
        except (RateLimited, Unavailable) as error:
            if isinstance(error, TokenEndpointUnavailable):
                self._status.refresh_failing(current.connection, error)
            delay = error.retry_after if isinstance(error, RateLimited) else OUTAGE_RETRY_SECONDS
            if isinstance(error, RateLimited) and error.limit == CALL_BUDGET_LIMIT:
                # Our own call budget stopped the round before a call. Items not handed to the
                # ledger yet were not tried: they stay queued as they are (a long backlog must not
                # count as failures). A batch it cut short may have created documents before it
                # stopped: those items are marked, so the next attempt looks before it sends.
                self._retry_later(current, error, only_sent=True)
            else:
                self._retry_later(current, error)
            raise _Stop(delay) from error

    def _publish_new(self, current: _Round) -> int:
        fresh = [w for w in current.work.values() if not w.stored.remote_id]
        for work in fresh:
            plan = self._planner.plan(current.connection, work.stored)
            # After a failure we could not read, the document may already be at the ledger,
            # perhaps past its idempotency window: the adapter looks for it before sending again.
            # Held counts too: consent can be withdrawn while a batch's answer is lost, and the
            # held items then go out in another batch, under another key (found by the soak).
            may_exist = any(
                a.revision == work.stored.revision and a.outcome in UNSURE_OUTCOMES
                for a in work.stored.attempts
            )
            plan = plan.model_copy(update={"may_exist": may_exist})
            if plan.ready:
                work.plan = plan
                continue
            first = plan.problems[0]
            self._settle(work, ItemStatus.REJECTED, "rejected", ItemError(
                code=first.code, message="; ".join(p.message for p in plan.problems), hint=first.hint, field=first.field,
            ))  # fmt: skip
        ready = [w for w in fresh if w.plan is not None and not w.done]
        self._resolve_new_contacts(current, ready)
        published = 0
        batch_size = current.adapter.capabilities.batch_size
        for destination_batch in _batches(ready, batch_size):
            live = [w for w in destination_batch if not w.done]
            for work in live:
                work.sent = True
            results = current.adapter.publish_batch(
                current.session, [w.plan for w in live if w.plan is not None]
            )
            stopped: LedgerError | None = None
            for work, result in zip(live, results, strict=True):
                if isinstance(result, PublishResult):
                    self._published(current, work, result)
                    published += 1
                elif isinstance(result, (Rejected, NotFound)):
                    self._settle(work, ItemStatus.REJECTED, "rejected", _ledger_error(result))
                else:
                    stopped = result  # the batch was cut short: the rest wait, the published stay
            if stopped is not None:
                raise stopped
        return published

    def _resolve_new_contacts(self, current: _Round, ready: list[_Work]) -> None:
        """Suppliers and customers the ledger does not know yet are created first, once per name
        (and added to the imported contacts at once, so later items find them by name)."""
        created: dict[str, Resolved] = {}
        for work in ready:
            plan = work.plan
            assert plan is not None
            native_claim = (
                plan.item_type == ItemType.EXPENSE_CLAIM
                and current.adapter.capabilities.native_expense_claims
            )
            if plan.contact.remote_id is not None or native_claim:
                continue
            name = plan.contact.name or ""
            key = normalise_name(name)
            if key not in created:
                try:
                    record = current.adapter.ensure_contact(
                        current.session,
                        name,
                        customer=plan.item_type == ItemType.SALES,
                        key=idempotency_key(current.connection.business_id, f"contact:{key}", 1),
                    )
                except (Rejected, NotFound) as refused:
                    self._settle(work, ItemStatus.REJECTED, "rejected", _ledger_error(refused))
                    continue
                self._lists.write(current.connection.connection_id, ListType.CONTACTS, [record])
                self._planner.forget(current.connection.connection_id)
                created[key] = Resolved(
                    record_id=record.id,
                    remote_id=record.remote_id,
                    code=record.code,
                    name=record.name,
                    source=ValueSource.CAPTURED,
                )
            work.plan = plan.model_copy(update={"contact": created[key]})

    def _published(self, current: _Round, work: _Work, result: PublishResult) -> None:
        plan = work.plan
        assert plan is not None
        needs_follow_up = plan.document is not None or plan.bank_match
        stored = work.stored.model_copy(
            update={
                "status": ItemStatus.PUBLISHED,
                "connection_id": current.connection.connection_id,
                "remote_id": result.remote_id,
                "remote_url": result.url,
                "last_error": None,
                "follow_up": needs_follow_up,
            }
        )
        message = "; ".join(result.warnings) or None
        # Saved before the document and the payment: those are retried alone, never the bill. The
        # round sends them once every result of the batch is saved, so a stop while sending one
        # (the call budget, a 429) cannot lose a bill the batch created.
        self._save(work, stored, "published", message)
        count("ItemsPublished")
        self._status.working(current.connection)
        self._events.publish("item.published", _event_detail(work.stored, current.connection))
        work.done = not needs_follow_up

    # --- document and payment -----------------------------------------------------------------------

    def _follow_up(self, current: _Round, work: _Work) -> None:
        """The document, then (bank match) the payment; each step saved as it completes, so a
        retry repeats only what is missing."""
        plan = work.plan or self._planner.plan(current.connection, work.stored)
        work.plan = plan
        result = PublishResult(remote_id=work.stored.remote_id or "", url=work.stored.remote_url)
        notes: list[ItemError] = []
        if plan.document is not None and work.stored.attachment_id is None:
            try:
                attachment_id = current.adapter.attach(current.session, plan, result, self._document(plan))
                self._save(
                    work,
                    work.stored.model_copy(update={"attachment_id": attachment_id or "attached"}),
                    "attached",
                    None,
                )
            except (Rejected, NotFound) as refused:
                note = ItemError(
                    code="attachment_refused",
                    message=f"Published, but the ledger refused the document: {refused.message}",
                    hint="Attach the document in the ledger by hand, or check its size and file type.",
                    ledger_message=refused.message,
                )
                notes.append(note)
                self._save(work, work.stored, "attachment_refused", note.message)
        if plan.bank_match and work.stored.payment_id is None:
            payment_id, unpaid = self._bank_match(current, plan, result, work.stored)
            if unpaid is not None:
                notes.append(unpaid)
            paid = work.stored.model_copy(update={"payment_id": payment_id})
            self._save(work, paid, "paid" if payment_id else "unpaid", unpaid.message if unpaid else None)
        finished = work.stored.model_copy(
            update={
                "status": ItemStatus.PUBLISHED,
                "follow_up": False,
                "last_error": notes[0] if notes else None,
            }
        )
        self._save_quietly(work, finished)
        work.done = True

    def _bank_match(
        self, current: _Round, plan: PublishPlan, result: PublishResult, stored: StoredItem
    ) -> tuple[str | None, ItemError | None]:
        """Pay the document from the matched bank account, dated like the bank line it pairs with.
        No line → published unpaid, saying why (never a bank transaction of our own)."""
        if plan.bank_account is None or plan.bank_account.remote_id is None or plan.paid_on is None:
            return None, ItemError(
                code="bank_match_skipped",
                message="Published unpaid: the item names no bank account",
                hint="Choose the bank account it was paid from.",
            )
        earliest, latest = bank_match_window(plan, today=self._clock.now().date())
        line = current.adapter.find_bank_line(
            current.session,
            bank_account_remote_id=plan.bank_account.remote_id,
            amount=plan.gross,
            earliest=earliest,
            latest=latest,
        )
        if line is None:
            return None, ItemError(
                code="no_bank_line",
                message=f"Published unpaid: no unreconciled line of {plan.gross} on {plan.bank_account.name} between {earliest} and {latest}",
                hint="Match it in the ledger once the bank line arrives.",
            )
        payment_id = current.adapter.record_payment(
            current.session,
            plan,
            result,
            bank_account_remote_id=plan.bank_account.remote_id,
            paid_on=line.date,
            amount=plan.gross,
            key=idempotency_key(stored.business_id, f"payment:{stored.item.id}", stored.revision),
        )
        return payment_id, None

    def _document(self, plan: PublishPlan) -> Attachment:
        assert plan.document is not None
        response = self._documents.get_object(Bucket=self._documents_bucket, Key=plan.document.key)
        return Attachment(
            file_name=plan.document.file_name,
            content_type=plan.document.content_type,
            content=response["Body"].read(),
        )

    # --- outcomes ----------------------------------------------------------------------------------

    def _retry_later(self, current: _Round, error: LedgerError, *, only_sent: bool = False) -> None:
        for work in current.work.values():
            if work.done or (only_sent and (not work.sent or work.stored.remote_id)):
                continue
            gave_up = work.stored.transient_failures() + 1 >= MAX_TRANSIENT_FAILURES
            status = ItemStatus.FAILED if gave_up else ItemStatus.RETRYING
            if work.stored.remote_id:
                status = ItemStatus.PUBLISHED  # only its document or payment is waiting
            self._settle(work, status, ItemStatus.RETRYING.value, ItemError(
                code="ledger_busy" if isinstance(error, RateLimited) else "ledger_unavailable",
                message=f"{current.adapter.capabilities.display_name} could not take it right now: {error.message}",
                hint=(
                    "It was tried repeatedly and set aside; publish it again when the ledger is back."
                    if gave_up
                    else "Nothing to do: it will be retried automatically."
                ),
                ledger_message=error.message,
            ))  # fmt: skip

    def _hold(self, pending: Iterable[tuple[StoredItem, int]], connection: Connection | None) -> None:
        reason = "the business has no connected ledger" if connection is None else connection.status_reason
        needs_reconnect = connection is not None and connection.status == ConnectionStatus.NEEDS_RECONNECT
        code = "needs_reconnect" if needs_reconnect else "connection_unavailable"
        for stored, version in pending:
            work = _Work(stored, version)
            if stored.remote_id:
                # Already in the ledger: only its document or payment waits for the reconnect.
                note = ItemError(
                    code=code,
                    message=f"Published; its document or payment is sent once the ledger is back: {reason}",
                    hint="Reconnect the accounting software; the rest is sent once it is back.",
                )
                waiting = stored.model_copy(update={"status": ItemStatus.PUBLISHED, "last_error": note})
                self._save(work, waiting, "held", note.message)
                continue
            self._settle(work, ItemStatus.HELD, "held", ItemError(
                code=code,
                message=f"Not published: {reason}",
                hint="Reconnect the accounting software; held items are published once it is back.",
            ))  # fmt: skip

    def _settle(self, work: _Work, status: ItemStatus, outcome: str, error: ItemError) -> None:
        stored = work.stored.model_copy(update={"status": status, "last_error": error})
        self._save(work, stored, outcome, error.message)
        work.done = True
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

    def _save_quietly(self, work: _Work, stored: StoredItem) -> None:
        """Save without recording an attempt (bookkeeping after the steps were recorded)."""
        self._save(work, stored, None, None)

    def _save(self, work: _Work, stored: StoredItem, outcome: str | None, message: str | None) -> None:
        now = self._clock.now()
        attempts = stored.attempts
        if outcome is not None:
            attempts = [
                *attempts,
                PublishAttempt(at=now, revision=stored.revision, outcome=outcome, message=message),
            ]
        updated = stored.model_copy(update={"attempts": attempts, "updated_at": now})
        try:
            work.version = self._items.save(updated, work.version)
        except StaleItem:
            # A person edited the item while it was being published: keep what the ledger now has.
            fresh = self._items.get(stored.business_id, stored.item.id)
            if fresh is None:
                raise
            merged = updated.model_copy(update={"item": fresh[0].item, "revision": fresh[0].revision})
            work.version = self._items.save(merged, fresh[1])
            updated = merged
        work.stored = updated


def bank_match_window(plan: PublishPlan, *, today: date) -> tuple[date, date]:
    """Where the bank line may be: within 10 days of the due date when there is one, otherwise in
    the 30 days after the document date; never more than six months back."""
    if plan.due_date is not None:
        earliest, latest = plan.due_date - DUE_DATE_WINDOW, plan.due_date + DUE_DATE_WINDOW
    else:
        earliest, latest = plan.date, plan.date + NO_DUE_DATE_WINDOW
    return max(earliest, today - OLDEST_BANK_LINE), latest


def _batches(work: list[_Work], size: int) -> Iterable[list[_Work]]:
    """Same-destination groups, cut to the ledger's batch size."""
    by_destination: dict[str, list[_Work]] = {}
    for item in work:
        assert item.plan is not None
        by_destination.setdefault(item.plan.destination, []).append(item)
    for group in by_destination.values():
        for start in range(0, len(group), size):
            yield group[start : start + size]


def _event_detail(stored: StoredItem, connection: Connection) -> dict[str, Any]:
    return {
        "business_id": stored.business_id,
        "item_id": stored.item.id,
        "revision": stored.revision,
        "provider": connection.provider.value,
        "remote_id": stored.remote_id,
        "remote_url": stored.remote_url,
    }


# Refusals people meet most, recognised in any of the five ledgers' words, each with its own fix.
# (code, what the ledger's message says, the field to change, the plain-language fix)
_KNOWN_REFUSALS: tuple[tuple[str, re.Pattern[str], str, str], ...] = (
    (
        "period_locked",
        # Xero's period lock date, QuickBooks' closed books, Sage's year-end lockdown.
        re.compile(r"lock ?date|lockdown|period (is )?(locked|closed)|books are closed|closed period", re.I),
        "date",
        "The ledger's books are closed up to a date on or after this item's date. Change the item's "
        "date to after the lock date, or ask whoever keeps the books to move the lock date, then "
        "publish again.",
    ),
    (
        "currency_not_enabled",
        # Xero "not subscribed to currency", QuickBooks and Sage "multi-currency is off".
        re.compile(r"currenc", re.I),
        "currency",
        "The ledger does not take this item's currency. Turn the currency on in the ledger "
        "(multi-currency), or correct the item's currency and amounts, then publish again.",
    ),
)


def _ledger_error(error: LedgerError) -> ItemError:
    field_errors = getattr(error, "field_errors", [])
    for code, pattern, field_name, hint in _KNOWN_REFUSALS:
        if pattern.search(error.message):
            return ItemError(
                code=code,
                message=f"The ledger refused it: {error.message}",
                hint=hint,
                field=field_name,
                ledger_message=error.message,
            )
    return ItemError(
        code="rejected_by_ledger",
        message=f"The ledger refused it: {error.message}",
        hint="Correct the item (category, tax rate, supplier or dates) and publish again.",
        field=field_errors[0].field if field_errors else None,
        ledger_message=error.message,
    )
