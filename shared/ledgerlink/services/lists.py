"""Import and keep fresh the six lists of a connection, writing only what changed; and read them."""

from __future__ import annotations

import base64
import time
from datetime import datetime, timedelta

from ledgerlink.api.auth import Caller
from ledgerlink.api.schemas import ListPage
from ledgerlink.clock import Clock
from ledgerlink.errors import AuthRevoked, InvalidRequest, ResourceNotFound, TokenEndpointUnavailable
from ledgerlink.models.common import ListType
from ledgerlink.models.connection import Connection, ConnectionStatus, ListCounts, ListFreshness
from ledgerlink.models.lists import ListRecord, RecordStatus, record_id
from ledgerlink.observability import count, logger
from ledgerlink.services.connection_status import ConnectionStatusKeeper
from ledgerlink.services.events import EventPublisher
from ledgerlink.services.ledgers import Ledgers
from ledgerlink.services.queues import RefreshQueue, RefreshRequest
from ledgerlink.storage.connections import ConnectionRepository, StaleConnection
from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.lists import ListRepository, ListState
from ledgerlink.storage.schema import (
    GSI1_NAME,
    GSI1_PARTITION_KEY,
    GSI1_SORT_KEY,
    REFRESH_SHARDS,
    refresh_shard_pk,
)

REFRESHABLE = frozenset({ConnectionStatus.CONNECTED, ConnectionStatus.REFRESH_FAILING})
DEFAULT_REFRESH_INTERVAL = timedelta(hours=1)
# Refresh tokens that would die unused within this window are renewed by the scheduled refresh
# (Sage's live 31 days, Xero's 60 days unused).
KEEP_ALIVE_WINDOW = timedelta(days=7)
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100


class ListService:
    def __init__(
        self,
        *,
        connections: ConnectionRepository,
        lists: ListRepository,
        ledgers: Ledgers,
        status: ConnectionStatusKeeper,
        events: EventPublisher,
        clock: Clock,
        refresh_queue: RefreshQueue | None = None,
        table: Table | None = None,
    ):
        self._connections = connections
        self._lists = lists
        self._ledgers = ledgers
        self._status = status
        self._events = events
        self._clock = clock
        self._refresh_queue = refresh_queue
        self._table = table

    # --- refresh ---------------------------------------------------------------------------------

    def refresh(self, request: RefreshRequest) -> dict[ListType, ListCounts]:
        """Refresh the requested lists of one connection. Transient ledger errors propagate (the
        message goes back to the queue); a refused consent marks the connection and stops."""
        connection = self._connections.get(request.business_id)
        if connection is None or connection.connection_id != request.connection_id:
            logger.info("refresh skipped: connection gone", connection_id=request.connection_id)
            return {}
        if connection.status not in REFRESHABLE:
            logger.info(
                "refresh skipped", connection_id=connection.connection_id, status=connection.status.value
            )
            return {}
        adapter = self._ledgers.adapter(connection.provider)
        session = self._ledgers.session(connection)
        wanted = [t for t in (request.lists or adapter.capabilities.lists) if t in adapter.capabilities.lists]
        results: dict[ListType, ListCounts] = {}
        try:
            self._ledgers.token_manager(connection).keep_alive(
                connection, adapter.refresh_tokens, window=KEEP_ALIVE_WINDOW
            )
            for list_type in wanted:
                state = self._lists.state(connection.connection_id, list_type)
                started = time.monotonic()
                fetch = adapter.fetch_list(
                    session, list_type, since=None if request.full else state.high_water
                )
                counts, total, writes = self._apply(
                    connection, list_type, fetch.records, fetch.complete, fetch.deleted_remote_ids
                )
                results[list_type] = counts
                count("ListRecordsWritten", writes)
                count("LedgerCalls", fetch.calls)
                self._lists.save_state(
                    connection.connection_id,
                    ListState(
                        list_type=list_type,
                        high_water=fetch.high_water,
                        refreshed_at=self._clock.now(),
                        record_count=total,
                        last_counts=counts,
                    ),
                )
                logger.info(
                    "list refreshed",
                    connection_id=connection.connection_id,
                    list_type=list_type.value,
                    ledger_calls=fetch.calls,
                    dynamodb_writes=writes,
                    seconds=round(time.monotonic() - started, 3),
                    **counts.model_dump(),
                )
        except AuthRevoked as error:
            self._status.move(connection, ConnectionStatus.NEEDS_RECONNECT, error.message)
            return results
        except TokenEndpointUnavailable as error:
            self._status.refresh_failing(connection, error)
            raise
        finally:
            if results:
                self._record_freshness(connection, results)
        self._status.working(connection)
        self._events.publish(
            "lists.refreshed",
            {
                "business_id": connection.business_id,
                "connection_id": connection.connection_id,
                "reason": request.reason,
                "lists": {t.value: c.model_dump() for t, c in results.items()},
            },
        )
        return results

    def _apply(
        self,
        connection: Connection,
        list_type: ListType,
        records: list[ListRecord],
        complete: bool,
        deleted_remote_ids: list[str],
    ) -> tuple[ListCounts, int, int]:
        stored = self._lists.fingerprints(connection.connection_id, list_type)
        counts = ListCounts()
        changed: list[ListRecord] = []
        seen: set[str] = set()
        for record in records:
            seen.add(record.id)
            previous = stored.get(record.id)
            if previous is None:
                counts.added += 1
            elif previous[0] == record.content_fingerprint():
                counts.unchanged += 1
                continue
            elif record.status == RecordStatus.ARCHIVED and previous[1] != RecordStatus.ARCHIVED.value:
                counts.archived += 1
            else:
                counts.changed += 1
            changed.append(record)
        deleted_ids = {r for r in stored if r not in seen} if complete else set()
        # Ledgers that report deletions (Sage's deleted_since) name them by remote id.
        deleted_ids |= {
            deleted
            for deleted in (
                record_id(connection.connection_id, list_type, remote) for remote in deleted_remote_ids
            )
            if deleted in stored
        }
        counts.deleted = len(deleted_ids)
        writes = self._lists.write(connection.connection_id, list_type, changed, sorted(deleted_ids))
        total = len(stored) + counts.added - counts.deleted
        return counts, total, writes

    def _record_freshness(self, connection: Connection, results: dict[ListType, ListCounts]) -> None:
        for _attempt in range(5):
            current = self._connections.get(connection.business_id)
            if current is None or current.connection_id != connection.connection_id:
                return
            lists = dict(current.lists)
            for list_type, counts in results.items():
                state = self._lists.state(connection.connection_id, list_type)
                lists[list_type] = ListFreshness(
                    refreshed_at=state.refreshed_at, record_count=state.record_count, last_counts=counts
                )
            try:
                self._connections.save(current.model_copy(update={"lists": lists}))
                return
            except StaleConnection:
                continue

    # --- scheduled fan-out -------------------------------------------------------------------------

    def fan_out(self) -> int:
        """Queue a refresh for every connection that is due, and move its next due time on."""
        assert self._table is not None and self._refresh_queue is not None
        now = self._clock.now()
        queued = 0
        for shard in range(REFRESH_SHARDS):
            for raw in self._table.query(
                refresh_shard_pk(shard),
                index=GSI1_NAME,
                pk_name=GSI1_PARTITION_KEY,
                sk_name=GSI1_SORT_KEY,
                sk_at_most=now.isoformat(),
            ):
                business_id = raw["pk"].removeprefix("BIZ#")
                connection = self._connections.get(business_id)
                if connection is None or connection.status not in REFRESHABLE:
                    continue
                self._refresh_queue.request(
                    RefreshRequest(
                        business_id=business_id, connection_id=connection.connection_id, reason="scheduled"
                    )
                )
                self._connections.save(connection, next_refresh_at=_next_due(now))
                queued += 1
        logger.info("scheduled refreshes queued", count=queued)
        return queued

    # --- reading ---------------------------------------------------------------------------------

    def page(
        self,
        caller: Caller,
        list_type_name: str,
        *,
        status: str = "active",
        query: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> ListPage:
        try:
            list_type = ListType(list_type_name)
        except ValueError:
            valid = ", ".join(t.value for t in ListType)
            raise ResourceNotFound(
                f"there is no list called {list_type_name!r}; the lists are: {valid}"
            ) from None
        connection = self._connections.get(caller.business_id)
        if connection is None:
            raise ResourceNotFound("this business has no accounting connection yet")
        if status not in ("active", "archived", "all"):
            raise InvalidRequest("status must be active, archived or all", field="status")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE_SIZE}", field="limit")
        offset = _decode_cursor(cursor)
        records = self._lists.records(connection.connection_id, list_type)
        if status != "all":
            records = [r for r in records if r.status.value == status]
        if query:
            needle = query.casefold()
            records = [
                r for r in records if needle in r.name.casefold() or needle in (r.code or "").casefold()
            ]
        records.sort(key=lambda r: (r.dimension or 0, r.name.casefold(), r.id))
        page = records[offset : offset + limit]
        next_cursor = _encode_cursor(offset + limit) if offset + limit < len(records) else None
        freshness = connection.lists.get(list_type)
        return ListPage(
            list_type=list_type,
            records=page,
            next_cursor=next_cursor,
            refreshed_at=freshness.refreshed_at if freshness else None,
        )


def _next_due(now: datetime) -> datetime:
    return now + DEFAULT_REFRESH_INTERVAL


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = decoded.partition(":")
        if kind != "o":
            raise ValueError(kind)
        return max(0, int(value))
    except ValueError as error:
        raise InvalidRequest("cursor is not one this API returned", field="cursor") from error
