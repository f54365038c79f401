"""Import and keep fresh the six lists of a connection, cheaply; and read them.

A refresh fetches each list from its high-water mark where the ledger has an incremental filter,
compares fingerprints and writes only what changed. Every ledger call is spent from the
connection's call budget under the refresh's share (services/budget.py), so a refresh never pushes
publishing into the ledger's 429s. A refresh that stops part-way (a 429, a 5xx, its budget or its
time) keeps what it fetched, records a checkpoint (the lists it finished, the page to carry on
from where the adapter can resume) and its message comes back after the ledger's Retry-After; the
stored lists stay whole and readable meanwhile, because deletions are only ever applied from a
fetch that covered the whole list (in one go, or across deliveries that kept the ids they saw).
Pacing by the call budget works the same way: rather than sleep out the rest of a budget window
inside the invocation (billed Lambda time, most of a large refresh's), a refresh ends its delivery
there and its message comes back when the window opens, wherever stopping loses nothing. One refresh per connection at a time: the refresh
record on the connection, which a second request joins instead of queueing another.
"""

from __future__ import annotations

import base64
import contextvars
import math
import time
import uuid
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from pydantic import ValidationError

from ledgerlink.api.auth import Caller, require_admin
from ledgerlink.api.schemas import ListPage
from ledgerlink.clock import Clock
from ledgerlink.errors import (
    AuthRevoked,
    Conflict,
    InvalidRequest,
    InvalidState,
    LedgerError,
    RateLimited,
    ResourceNotFound,
    TokenEndpointUnavailable,
    Unavailable,
    Unprocessable,
)
from ledgerlink.models.common import ItemType, ListType
from ledgerlink.models.connection import Connection, ConnectionStatus, ListCounts, ListFreshness
from ledgerlink.models.lists import ListRecord, RecordStatus, record_id
from ledgerlink.models.refresh import RefreshRecord, RefreshStarted, RefreshState
from ledgerlink.observability import count, logger
from ledgerlink.providers.base import LedgerAdapter, LedgerSession, ListFetchInterrupted
from ledgerlink.services.budget import CALL_BUDGET_LIMIT, CallPurpose
from ledgerlink.services.connection_status import ConnectionStatusKeeper
from ledgerlink.services.events import EventPublisher
from ledgerlink.services.ledgers import Ledgers
from ledgerlink.services.queues import SEND_BATCH_LIMIT, RefreshQueue, RefreshRequest
from ledgerlink.storage.connections import ConnectionRepository, StaleConnection
from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.lists import ListCheckpoint, ListRepository, ListState, RefreshRecordRepository
from ledgerlink.storage.schema import (
    GSI1_NAME,
    GSI1_PARTITION_KEY,
    GSI1_SORT_KEY,
    REFRESH_SHARDS,
    refresh_shard_pk,
)

REFRESHABLE = frozenset({ConnectionStatus.CONNECTED, ConnectionStatus.REFRESH_FAILING})
# Refresh tokens that would die unused within this window are renewed by the scheduled refresh
# (Sage's live 31 days, Xero's 60 days unused).
KEEP_ALIVE_WINDOW = timedelta(days=7)
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
SAVE_ATTEMPTS = 5
# The fan-out's threads: one per refresh shard. Its calls are network round trips, not CPU.
FAN_OUT_THREADS = REFRESH_SHARDS

# One delivery starts no list after this long (and stops waiting for the call budget), then
# checkpoints and hands over to a fresh delivery: inside the refresh function's 15-minute timeout
# (infra/constants.py), budget waits included. The longest single list (10,000 contacts at the
# refresh's share of FreeAgent's or KashFlow's budget) takes under five minutes.
REFRESH_TIME_ALLOWANCE = timedelta(minutes=12)
# How long a refresh record stays "under way" without news: longer than the function's timeout
# (running) or than the queue usually takes to deliver (queued). Past it, a worker that died or a
# message that was never sent no longer makes every request join a refresh that will not finish.
RUNNING_LEASE = timedelta(minutes=20)
QUEUED_LEASE = timedelta(minutes=30)
# The refresh queue's maxReceiveCount (infra/constants.py DLQ_MAX_RECEIVE_COUNT).
MAX_RECEIVES = 5
# Backoff before a delivery stopped by a 5xx (no Retry-After) comes back.
RETRY_BASE_SECONDS = 30
RETRY_CAP_SECONDS = 900
# An incremental fetch of at most this many records (or a quarter of the list: one GetItem reads
# one record, a Query of the list reads them all) looks those records up instead of reading the
# whole stored list to compare fingerprints.
FINGERPRINT_LOOKUP_LIMIT = 200
CONTACT_ROLES = ("supplier", "customer")
# A checkpoint keeps the remote ids a whole-list fetch saw (compressed) up to this size, well inside
# DynamoDB's 400 KB item (10,000 KashFlow contact codes take ~25 KB; as many GUIDs ~200 KB).
SEEN_LIMIT_CHARS = 250_000


class RefreshInterrupted(Exception):
    """A refresh stopped part-way and saved its checkpoint: its message must come back after
    ``retry_after`` seconds and carry on. ``progressed``: this delivery finished lists or pages.
    ``paced``: the call budget stopped it (the rest of a window), which is pacing, not a failure."""

    def __init__(
        self, message: str, *, refresh_id: str, retry_after: float, progressed: bool, paced: bool = False
    ):
        super().__init__(message)
        self.refresh_id = refresh_id
        self.retry_after = retry_after
        self.progressed = progressed
        self.paced = paced


class MalformedRefreshMessage(ValueError):
    """A refresh queue message that is not a refresh request."""


class _ListStopped(Exception):
    """One list's fetch stopped part-way; ``state`` holds its checkpoint."""

    def __init__(self, state: ListState, cause: LedgerError):
        super().__init__(cause.message)
        self.state = state
        self.cause = cause


class _OutOfTime(Exception):
    """This delivery used its time: hand over to a fresh one."""


class _HandBack:
    """Whether a long call-budget wait may end this delivery (``CallBudget.spender``'s
    ``hand_back``): only where stopping loses nothing. That is before the list being fetched has
    spent a call in this delivery (it starts again, or carries on from its saved checkpoint), or
    inside a paged fetch that keeps its pages on a stop (``LedgerSession.resumable``). Anywhere
    else (a list some ledger fetches in several calls it cannot resume) the wait is slept out."""

    def __init__(self) -> None:
        self.list_calls = 0
        self._session: LedgerSession | None = None

    def watch(self, session: LedgerSession) -> None:
        self._session = session
        spend = session.spend_call

        def spend_call() -> None:
            spend()
            self.list_calls += 1

        session.spend_call = spend_call

    def new_list(self) -> None:
        self.list_calls = 0

    def __call__(self) -> bool:
        return self.list_calls == 0 or (self._session is not None and self._session.resumable)


def next_refresh_due(connection_id: str, interval: timedelta, after: datetime) -> datetime:
    """The connection's first scheduled slot strictly after ``after``. Each connection has a stable
    offset within the interval (a hash of its id), so the due times of many connections spread
    evenly across the interval instead of a wave at the top of the hour, and a connection keeps
    its slot from one refresh to the next."""
    period = max(1, int(interval.total_seconds()))
    offset = zlib.crc32(f"refresh-slot\x1f{connection_id}".encode()) % period
    moment = int(after.timestamp())
    slot = ((moment - offset) // period + 1) * period + offset
    return datetime.fromtimestamp(slot, UTC)


def first_refresh_due(connection_id: str, interval: timedelta, now: datetime) -> datetime:
    """A new connection's first scheduled refresh: its own slot, at least half an interval after
    the initial import that runs right away."""
    return next_refresh_due(connection_id, interval, now + interval / 2)


def refresh_interval(connection: Connection) -> timedelta:
    return timedelta(minutes=connection.settings.list_refresh_minutes)


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
        refreshes: RefreshRecordRepository,
        refresh_queue: RefreshQueue | None = None,
        table: Table | None = None,
    ):
        self._connections = connections
        self._lists = lists
        self._ledgers = ledgers
        self._status = status
        self._events = events
        self._clock = clock
        self._refreshes = refreshes
        self._refresh_queue = refresh_queue
        self._table = table

    # --- triggers --------------------------------------------------------------------------------

    def request_refresh(self, caller: Caller) -> RefreshStarted:
        """``POST /v1/connection/refresh``: queue a refresh, or join the one queued or running."""
        require_admin(caller, "refresh the lists")
        connection = self._connections.get(caller.business_id)
        if connection is None:
            raise ResourceNotFound("this business has no accounting connection yet")
        if connection.status not in REFRESHABLE:
            raise InvalidState(
                f"the connection is {connection.status.value}: reconnect it before refreshing its lists"
            )
        record, joined = self._start(connection, reason="requested", requested_by=caller.user_id)
        logger.info(
            "refresh requested",
            connection_id=connection.connection_id,
            refresh_id=record.refresh_id,
            joined=joined,
        )
        return RefreshStarted(refresh=record, joined=joined)

    def fan_out(self) -> int:
        """Queue a refresh for every connection that is due (unless one is under way already) and
        move its next due time to its next slot (its own, stable offset within its interval).

        The refresh shards are worked at once, each by its own thread, and each shard's messages
        go ten to a SendMessageBatch: at 100,000 businesses a five-minute tick finds ~8,300
        connections due, ~520 a shard, a few sequential DynamoDB calls each (bench/RESULTS.md)."""
        assert self._table is not None
        now = self._clock.now()
        with ThreadPoolExecutor(max_workers=FAN_OUT_THREADS, thread_name_prefix="fan-out") as pool:
            # Each thread runs in a copy of the invocation's context (its logging keys and such).
            shards = [
                pool.submit(contextvars.copy_context().run, self._fan_out_shard, shard, now)
                for shard in range(REFRESH_SHARDS)
            ]
            queued = sum(shard.result() for shard in shards)
        logger.info("scheduled refreshes queued", count=queued)
        return queued

    def _fan_out_shard(self, shard: int, now: datetime) -> int:
        assert self._table is not None
        queued = 0
        batch: list[tuple[Connection, RefreshRecord | None, RefreshRequest | None]] = []
        for raw in self._table.query(
            refresh_shard_pk(shard),
            index=GSI1_NAME,
            pk_name=GSI1_PARTITION_KEY,
            sk_name=GSI1_SORT_KEY,
            sk_at_most=now.isoformat(),
        ):
            connection = self._connections.get(raw["pk"].removeprefix("BIZ#"))
            if connection is None or connection.status not in REFRESHABLE:
                continue
            record, request = self._record_queued(connection, reason="scheduled", requested_by=None)
            batch.append((connection, record, request))
            if sum(1 for _c, _r, sent in batch if sent) == SEND_BATCH_LIMIT:
                queued += self._send_scheduled(batch, now)
                batch = []
        return queued + self._send_scheduled(batch, now)

    def _send_scheduled(
        self, batch: list[tuple[Connection, RefreshRecord | None, RefreshRequest | None]], now: datetime
    ) -> int:
        """Send the batch's messages in one call, then move each connection to its next slot. A
        message SQS refused leaves its refresh failed (not under way, so not joined) and its
        connection due: the next tick queues it again."""
        assert self._refresh_queue is not None
        requests = [request for _c, _r, request in batch if request is not None]
        refused = {r.refresh_id for r in self._refresh_queue.request_batch(requests)} if requests else set()
        for connection, record, request in batch:
            if request is not None and record is not None and request.refresh_id in refused:
                logger.error("the refresh queue refused a message", connection_id=connection.connection_id)
                self._save_record(
                    connection,
                    record,
                    state=RefreshState.FAILED,
                    last_error="the refresh could not be queued; the next schedule tick tries again",
                    finished_at=now,
                )
                continue
            self._reschedule(
                connection, next_refresh_due(connection.connection_id, refresh_interval(connection), now)
            )
        return len(requests) - len(refused)

    def _start(
        self, connection: Connection, *, reason: str, requested_by: str | None
    ) -> tuple[RefreshRecord, bool]:
        """Record a new queued refresh and send its message, unless one is under way: then that
        one is returned, joined (``True``)."""
        assert self._refresh_queue is not None
        record, request = self._record_queued(connection, reason=reason, requested_by=requested_by)
        if request is None:
            return record, True
        self._refresh_queue.request(request)
        return record, False

    def _record_queued(
        self, connection: Connection, *, reason: str, requested_by: str | None
    ) -> tuple[RefreshRecord, RefreshRequest | None]:
        """Record a new queued refresh and return the message to send for it; or, when one is
        under way already, that one and no message (joined)."""
        for _attempt in range(SAVE_ATTEMPTS):
            now = self._clock.now()
            current = self._refreshes.get(connection.business_id, connection.connection_id)
            if current is not None and current.under_way(now):
                return current, None
            record = RefreshRecord(
                refresh_id=uuid.uuid4().hex,
                state=RefreshState.QUEUED,
                reason=reason,
                requested_at=now,
                requested_by=requested_by,
                lease_until=now + QUEUED_LEASE,
                sequence=current.sequence + 1 if current else 1,
            )
            if self._refreshes.replace(
                connection.business_id, connection.connection_id, record, expected=current
            ):
                return record, RefreshRequest(
                    business_id=connection.business_id,
                    connection_id=connection.connection_id,
                    reason=reason,
                    refresh_id=record.refresh_id,
                    requested_at=now,
                )
        raise Conflict("the connection's refresh kept changing meanwhile; try again")

    def _reschedule(self, connection: Connection, due: datetime) -> None:
        current: Connection | None = connection
        for _attempt in range(SAVE_ATTEMPTS):
            if current is None or current.connection_id != connection.connection_id:
                return
            try:
                self._connections.save(current, next_refresh_at=due)
                return
            except StaleConnection:  # a refresh or a settings change saved it meanwhile
                current = self._connections.get(connection.business_id)
        logger.warning("could not move the next refresh time", connection_id=connection.connection_id)

    # --- the refresh worker ---------------------------------------------------------------------

    def handle_record(self, body: str, *, message_id: str, receipt_handle: str, receive_count: int) -> None:
        """One refresh queue message. Raising marks it failed in the batch response, so SQS
        redelivers it: after the visibility set here when the refresh stopped part-way."""
        try:
            request = RefreshRequest.model_validate_json(body)
        except ValidationError as error:
            logger.error("malformed refresh message", receive_count=receive_count)
            raise MalformedRefreshMessage(str(error.errors()[:3])) from error
        assert self._refresh_queue is not None
        try:
            self.refresh(request, message_id=message_id, receive_count=receive_count)
        except RefreshInterrupted as stopped:
            if (stopped.progressed or stopped.paced) and receive_count >= MAX_RECEIVES - 1:
                # Making progress (or only paced by the call budget, which every large refresh is
                # many times over) but close to the dead-letter queue: carry on in a fresh message
                # (a fresh receive count) rather than let a slow, working refresh be dead-lettered.
                self._refresh_queue.request(
                    request.model_copy(update={"refresh_id": stopped.refresh_id}),
                    delay_seconds=math.ceil(stopped.retry_after),
                )
                return
            self._refresh_queue.redeliver_after(receipt_handle, stopped.retry_after)
            raise

    def refresh(
        self, request: RefreshRequest, *, message_id: str | None = None, receive_count: int = 1
    ) -> dict[ListType, ListCounts]:
        """Refresh the requested lists of one connection; returns the counts of the lists this
        refresh completed. Raises ``RefreshInterrupted`` when it stopped part-way (checkpoint
        saved); a refused consent marks the connection ``needs_reconnect`` and wipes nothing."""
        connection = self._connections.get(request.business_id)
        if connection is None or connection.connection_id != request.connection_id:
            logger.info("refresh skipped: connection gone", connection_id=request.connection_id)
            return {}
        if connection.status not in REFRESHABLE:
            logger.info(
                "refresh skipped", connection_id=connection.connection_id, status=connection.status.value
            )
            return {}
        refresh_id = request.refresh_id or message_id or uuid.uuid4().hex
        record = self._claim(connection, request, refresh_id)
        if record is None:
            return {}
        refresh_id = record.refresh_id  # a delivery may carry on a refresh that was waiting
        adapter = self._ledgers.adapter(connection.provider)
        deadline = self._clock.now() + REFRESH_TIME_ALLOWANCE
        hand_back = _HandBack()
        session = self._ledgers.session(
            connection, purpose=CallPurpose.REFRESH, deadline=deadline, hand_back=hand_back
        )
        hand_back.watch(session)
        wanted = [t for t in (request.lists or adapter.capabilities.lists) if t in adapter.capabilities.lists]
        states = self._lists.states(connection.connection_id)
        finished: dict[ListType, ListState] = {}
        current: ListType | None = None  # the list being fetched
        try:
            self._ledgers.token_manager(connection).keep_alive(
                connection, adapter.refresh_tokens, window=KEEP_ALIVE_WINDOW
            )
            for list_type in wanted:
                if states[list_type].completed_by == refresh_id:
                    continue  # finished by an earlier delivery of this refresh
                if finished and self._clock.now() >= deadline:
                    raise _OutOfTime
                hand_back.new_list()
                current = list_type
                finished[list_type] = self._refresh_list(
                    connection, adapter, session, states[list_type], refresh_id, full=request.full
                )
        except _ListStopped as stopped:
            self._stop(
                connection,
                record,
                finished,
                stopped=stopped.state,
                cause=stopped.cause,
                receive_count=receive_count,
            )
        except _OutOfTime:
            self._stop(connection, record, finished, stopped=None, cause=None, receive_count=receive_count)
        except (RateLimited, Unavailable) as error:
            if isinstance(error, TokenEndpointUnavailable):
                self._status.refresh_failing(connection, error)
            self._stop(
                connection,
                record,
                finished,
                stopped=None,
                cause=error,
                receive_count=receive_count,
                in_list=current if current not in finished else None,
            )
        except AuthRevoked as error:
            # Nothing is wiped: the lists stay as they were, readable, until a reconnect.
            self._finish_lists(connection, finished)
            self._status.move(connection, ConnectionStatus.NEEDS_RECONNECT, error.message)
            self._save_record(
                connection,
                record,
                state=RefreshState.FAILED,
                lists_done=[*record.lists_done, *finished],
                last_error=error.message,
                finished_at=self._clock.now(),
            )
            return {t: s.last_counts for t, s in finished.items()}
        except LedgerError as error:
            # The ledger refused a list outright (a permission, a gone endpoint): retrying the same
            # request cannot help. Keep what was done, say why, and let the next refresh try.
            self._finish_lists(connection, finished)
            logger.error(
                "list refresh refused by the ledger",
                connection_id=connection.connection_id,
                error_type=type(error).__name__,
                status=error.status,
            )
            self._save_record(
                connection,
                record,
                state=RefreshState.FAILED,
                lists_done=[*record.lists_done, *finished],
                last_error=error.message,
                finished_at=self._clock.now(),
            )
            return {t: s.last_counts for t, s in finished.items()}
        self._finish_lists(connection, finished)
        done = {**{t: s for t, s in states.items() if s.completed_by == refresh_id}, **finished}
        self._status.working(connection)
        self._save_record(
            connection,
            record,
            state=RefreshState.DONE,
            lists_done=list(done),
            last_error=None,
            finished_at=self._clock.now(),
        )
        self._events.publish(
            "lists.refreshed",
            {
                "business_id": connection.business_id,
                "connection_id": connection.connection_id,
                "refresh_id": refresh_id,
                "reason": request.reason,
                "lists": {
                    t.value: {
                        **s.last_counts.model_dump(),
                        "seconds": s.seconds,
                        "ledger_calls": s.ledger_calls,
                    }
                    for t, s in done.items()
                },
            },
        )
        return {t: s.last_counts for t, s in done.items()}

    def _claim(
        self, connection: Connection, request: RefreshRequest, refresh_id: str
    ) -> RefreshRecord | None:
        """Mark this refresh running on the connection's refresh record. None: nothing to do here,
        because another refresh of this connection is under way (this message joins it) or one
        that started after this was requested has finished."""
        for _attempt in range(SAVE_ATTEMPTS):
            now = self._clock.now()
            current = self._refreshes.get(connection.business_id, connection.connection_id)
            if current is not None and current.state == RefreshState.WAITING:
                # A refresh waiting for its message to come back: this delivery carries it on now
                # (same refresh, same checkpoint); the held message then finds it done.
                refresh_id = current.refresh_id
            same = current is not None and current.refresh_id == refresh_id
            if current is not None and not same:
                if current.under_way(now):
                    logger.info(
                        "refresh joined the one under way",
                        connection_id=connection.connection_id,
                        refresh_id=current.refresh_id,
                    )
                    return None
                requested_at = request.requested_at
                if (
                    current.state == RefreshState.DONE
                    and requested_at is not None
                    and current.started_at is not None
                    and current.started_at >= requested_at
                ):
                    logger.info(
                        "refresh skipped: done since requested", connection_id=connection.connection_id
                    )
                    return None
            if same and current is not None and current.state in (RefreshState.DONE, RefreshState.FAILED):
                return None  # a late duplicate of a refresh that has ended
            record = RefreshRecord(
                refresh_id=refresh_id,
                state=RefreshState.RUNNING,
                reason=current.reason if same and current else request.reason,
                requested_at=current.requested_at if same and current else (request.requested_at or now),
                requested_by=current.requested_by if same and current else None,
                started_at=(current.started_at if same and current else None) or now,
                lists_done=current.lists_done if same and current else [],
                lease_until=now + RUNNING_LEASE,
                sequence=current.sequence + 1 if current else 1,
            )
            if self._refreshes.replace(
                connection.business_id, connection.connection_id, record, expected=current
            ):
                return record
        return None

    def _save_record(self, connection: Connection, record: RefreshRecord, **changes: object) -> None:
        now = self._clock.now()
        updated = record.model_copy(update={"lease_until": now, **changes, "sequence": record.sequence + 1})
        if not self._refreshes.replace(
            connection.business_id, connection.connection_id, updated, expected=record
        ):
            logger.info("refresh record taken over meanwhile", connection_id=connection.connection_id)

    def _stop(
        self,
        connection: Connection,
        record: RefreshRecord,
        finished: dict[ListType, ListState],
        *,
        stopped: ListState | None,
        cause: LedgerError | None,
        receive_count: int,
        in_list: ListType | None = None,
    ) -> NoReturn:
        """Save what this delivery did and where it stopped, mark the refresh waiting, and raise
        ``RefreshInterrupted`` so the message comes back when the ledger said (or after a backoff),
        or, paced by the call budget, when the budget's window opens. ``in_list``: the list it
        stopped in before fetching anything of it (its saved checkpoint, if any, stands)."""
        paced = isinstance(cause, RateLimited) and cause.limit == CALL_BUDGET_LIMIT
        if isinstance(cause, RateLimited):
            delay = cause.retry_after
        elif cause is None:
            delay = 0.0  # out of time: carry on straight away in a fresh delivery
        else:
            delay = float(min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, receive_count - 1)))
        reason = cause.message if cause else "this delivery used its time; carrying on"
        saved = [*finished.values(), *([stopped] if stopped else [])]
        if saved:
            self._lists.save_states(connection.connection_id, saved)
        resume_at = self._clock.now() + timedelta(seconds=delay)
        # Pacing is routine (a large refresh is paced many times): it is no error to show on the
        # list, and costs no write of the connection unless lists were finished.
        self._record_freshness(
            connection,
            finished,
            paused=None if paced else stopped.list_type if stopped else in_list,
            why=f"paused part-way ({reason}); carrying on at {resume_at:%H:%M:%S} UTC",
        )
        self._save_record(
            connection,
            record,
            state=RefreshState.WAITING,
            lists_done=[*record.lists_done, *finished],
            last_error=None if paced else reason,
            resume_at=resume_at,
            lease_until=resume_at + QUEUED_LEASE,
        )
        count("ListRefreshesPaced" if paced else "ListRefreshesInterrupted")
        logger.info(
            "refresh paced by the call budget; it carries on from its checkpoint"
            if paced
            else "refresh stopped part-way; it carries on from its checkpoint",
            connection_id=connection.connection_id,
            refresh_id=record.refresh_id,
            lists_done=[t.value for t in finished],
            stopped_in=stopped.list_type.value if stopped else None,
            retry_after=delay,
            reason=reason,
        )
        raise RefreshInterrupted(
            reason, refresh_id=record.refresh_id, retry_after=delay, progressed=bool(saved), paced=paced
        ) from cause

    def _finish_lists(self, connection: Connection, finished: dict[ListType, ListState]) -> None:
        if finished:
            self._lists.save_states(connection.connection_id, finished.values())
            self._record_freshness(connection, finished)

    def _refresh_list(
        self,
        connection: Connection,
        adapter: LedgerAdapter,
        session: LedgerSession,
        state: ListState,
        refresh_id: str,
        *,
        full: bool,
    ) -> ListState:
        """Fetch one list (carrying on from its checkpoint when there is one for the same mark)
        and store what changed; returns its new state. Raises ``_ListStopped`` with a checkpoint
        when the fetch stopped part-way."""
        list_type = state.list_type
        since = None if full else state.high_water
        resume = (
            state.checkpoint if state.checkpoint is not None and state.checkpoint.since == since else None
        )
        started = time.monotonic()
        try:
            if resume is not None:
                fetch = adapter.resume_list(session, list_type, since=since, resume_at=resume.resume_at)
            else:
                fetch = adapter.fetch_list(session, list_type, since=since)
        except ListFetchInterrupted as stopped:
            # Keep the pages fetched so far (additions and changes only, never deletions) and
            # remember where to carry on.
            counts, total, writes = self._apply(connection, state, stopped.fetched.records, complete=False)
            before = resume or ListCheckpoint(refresh_id=refresh_id, since=since, resume_at={})
            # A whole-list fetch keeps the ids it saw, for the deletions when it completes.
            keeps_seen = since is None and (resume is None or resume.seen is not None)
            checkpoint = ListCheckpoint(
                refresh_id=refresh_id,
                since=since,
                resume_at=stopped.resume_at,
                counts=_added(before.counts, counts),
                ledger_calls=before.ledger_calls + stopped.fetched.calls,
                seconds=before.seconds + time.monotonic() - started,
                seen=_pack_seen(_unpack_seen(before.seen) | {r.remote_id for r in stopped.fetched.records})
                if keeps_seen
                else None,
            )
            count("ListRecordsWritten", writes)
            raise _ListStopped(
                state.model_copy(
                    update={
                        "checkpoint": checkpoint,
                        "record_count": total,
                        "last_error": stopped.cause.message,
                    }
                ),
                stopped.cause,
            ) from stopped
        # A resumed fetch covered only part of the list: it shows additions and changes, and the
        # deletions the ledger reports, but absence from it proves nothing, unless the deliveries
        # before it kept the ids they saw (a whole-list fetch finished across deliveries).
        seen_before = (
            {record_id(connection.connection_id, list_type, r) for r in _unpack_seen(resume.seen)}
            if resume is not None and resume.seen is not None
            else None
        )
        counts, total, writes = self._apply(
            connection,
            state,
            fetch.records,
            complete=fetch.complete and (resume is None or seen_before is not None),
            deleted_remote_ids=fetch.deleted_remote_ids,
            seen_before=seen_before or set(),
        )
        seconds = time.monotonic() - started
        calls = fetch.calls
        if resume is not None:
            counts = _added(resume.counts, counts)
            seconds += resume.seconds
            calls += resume.ledger_calls
        count("ListRecordsWritten", writes)
        count("LedgerCalls", calls)
        logger.info(
            "list refreshed",
            connection_id=connection.connection_id,
            list_type=list_type.value,
            ledger_calls=calls,
            dynamodb_writes=writes,
            seconds=round(seconds, 3),
            resumed=resume is not None,
            **counts.model_dump(),
        )
        return ListState(
            list_type=list_type,
            high_water=fetch.high_water,
            refreshed_at=self._clock.now(),
            record_count=total,
            last_counts=counts,
            seconds=round(seconds, 3),
            ledger_calls=calls,
            completed_by=refresh_id,
        )

    def _apply(
        self,
        connection: Connection,
        state: ListState,
        records: list[ListRecord],
        *,
        complete: bool,
        deleted_remote_ids: list[str] | None = None,
        seen_before: set[str] | frozenset[str] = frozenset(),
    ) -> tuple[ListCounts, int, int]:
        """Write the records that are new or changed and drop the deleted ones. Returns the counts,
        the list's new size and the DynamoDB writes made. ``seen_before``: record ids the same
        whole-list fetch returned in earlier deliveries (present, so not deleted)."""
        list_type = state.list_type
        connection_id = connection.connection_id
        # Ledgers that report deletions (Sage's deleted_since) name them by remote id.
        reported_deleted = {
            record_id(connection_id, list_type, remote) for remote in deleted_remote_ids or []
        }
        wanted = {record.id for record in records} | reported_deleted
        if complete or len(wanted) > max(FINGERPRINT_LOOKUP_LIMIT, state.record_count // 4):
            stored = self._lists.fingerprints(connection_id, list_type)
            stored_total = len(stored)
        else:
            # A few changed records: look those up instead of reading the whole stored list.
            stored = self._lists.fingerprints_of(connection_id, list_type, sorted(wanted))
            stored_total = state.record_count
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
        deleted_ids = {r for r in stored if r not in seen and r not in seen_before} if complete else set()
        deleted_ids |= {deleted for deleted in reported_deleted if deleted in stored and deleted not in seen}
        counts.deleted = len(deleted_ids)
        writes = self._lists.write(connection_id, list_type, changed, sorted(deleted_ids))
        total = max(0, stored_total + counts.added - counts.deleted)
        return counts, total, writes

    def _record_freshness(
        self,
        connection: Connection,
        finished: dict[ListType, ListState],
        *,
        paused: ListType | None = None,
        why: str | None = None,
    ) -> None:
        """Show each list's freshness (and why a list stopped part-way) in ``GET /v1/connection``."""
        if not finished and paused is None:
            return
        current: Connection | None = connection
        for _attempt in range(SAVE_ATTEMPTS):
            current = self._connections.get(connection.business_id)
            if current is None or current.connection_id != connection.connection_id:
                return
            lists = dict(current.lists)
            for list_type, state in finished.items():
                lists[list_type] = ListFreshness(
                    refreshed_at=state.refreshed_at,
                    record_count=state.record_count,
                    last_counts=state.last_counts,
                    seconds=state.seconds,
                    ledger_calls=state.ledger_calls,
                )
            if paused is not None:
                lists[paused] = lists.get(paused, ListFreshness()).model_copy(update={"last_error": why})
            try:
                self._connections.save(current.model_copy(update={"lists": lists}))
                return
            except StaleConnection:
                continue

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
        usable_for: str | None = None,
        role: str | None = None,
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
        coded_type = _usable_for_filter(list_type, usable_for)
        contact_role = _role_filter(list_type, role)
        offset = _decode_cursor(cursor)
        records = self._lists.records(connection.connection_id, list_type)
        if status != "all":
            records = [r for r in records if r.status.value == status]
        if coded_type is not None:
            records = [r for r in records if coded_type in r.usable_for]
        if contact_role == "supplier":
            records = [r for r in records if r.is_supplier]
        elif contact_role == "customer":
            records = [r for r in records if r.is_customer]
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


def _usable_for_filter(list_type: ListType, value: str | None) -> ItemType | None:
    if value is None:
        return None
    if list_type != ListType.CATEGORIES:
        raise Unprocessable(
            f"usable_for filters the categories list only (which item types a category can code), "
            f"not {list_type.value}",
            field="usable_for",
        )
    try:
        return ItemType(value)
    except ValueError:
        raise Unprocessable(
            f"usable_for must be one of {', '.join(t.value for t in ItemType)}", field="usable_for"
        ) from None


def _role_filter(list_type: ListType, value: str | None) -> str | None:
    if value is None:
        return None
    if list_type != ListType.CONTACTS:
        raise Unprocessable(
            f"role filters the contacts list only (suppliers or customers), not {list_type.value}",
            field="role",
        )
    if value not in CONTACT_ROLES:
        raise Unprocessable(f"role must be one of {', '.join(CONTACT_ROLES)}", field="role")
    return value


def _added(first: ListCounts, second: ListCounts) -> ListCounts:
    return ListCounts(
        added=first.added + second.added,
        changed=first.changed + second.changed,
        archived=first.archived + second.archived,
        deleted=first.deleted + second.deleted,
        unchanged=first.unchanged + second.unchanged,
    )


def _pack_seen(remote_ids: Iterable[str]) -> str | None:
    """Remote ids, compressed for a checkpoint; None when too many to keep in the item."""
    packed = base64.b64encode(zlib.compress("\n".join(sorted(remote_ids)).encode(), 9)).decode()
    return packed if len(packed) <= SEEN_LIMIT_CHARS else None


def _unpack_seen(packed: str | None) -> set[str]:
    if not packed:
        return set()
    return set(zlib.decompress(base64.b64decode(packed)).decode().split("\n")) - {""}


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
