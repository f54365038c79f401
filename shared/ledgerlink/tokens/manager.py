"""Valid access tokens for a connection, with at most one refresh per connection at a time.

A refresh takes a lease with a conditional write on the connection item, re-reads the stored token
set (a sibling may have rotated it meanwhile), refreshes, saves the rotated token set *before* the
new access token is used, publishes the new generation and releases. Workers that find the lease
taken wait for the generation to move and then read what the winner stored (DESIGN §5).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

from ledgerlink.clock import Clock
from ledgerlink.errors import AuthRevoked, Unavailable
from ledgerlink.models.connection import Connection
from ledgerlink.models.tokens import TokenSet
from ledgerlink.observability import count, logger
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.tokens.store import TokenStore

Refresher = Callable[[TokenSet], TokenSet]

# Refresh this long before the access token expires, so a call never starts with a dying token.
REFRESH_MARGIN = timedelta(seconds=120)
# Longer than one refresh round trip (the adapter's timeout is 10 s) with room to save the result.
LEASE_HOLD = timedelta(seconds=30)
WRITE_ATTEMPTS = 3


class TokenManager:
    def __init__(
        self,
        store: TokenStore,
        connections: ConnectionRepository,
        clock: Clock,
        sleep: Callable[[float], None],
        *,
        poll_interval: float = 0.1,
        max_wait_polls: int = 300,
    ):
        self._store = store
        self._connections = connections
        self._clock = clock
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._max_wait_polls = max_wait_polls
        # Decrypted token sets kept in the container until shortly before they expire.
        self._cache: dict[str, TokenSet] = {}
        self._cache_lock = threading.Lock()

    def access_token(self, connection: Connection, refresher: Refresher) -> str:
        tokens = self.current(connection)
        if tokens.expires_within(self._clock.now(), REFRESH_MARGIN):
            tokens = self.refresh(connection, refresher, seen_generation=tokens.generation)
        return tokens.access_token.get_secret_value()

    def keep_alive(self, connection: Connection, refresher: Refresher, *, window: timedelta) -> bool:
        """Refresh now if the refresh token would die unused within ``window`` (an idle
        connection must not lose its consent). Returns whether it refreshed."""
        tokens = self.current(connection)
        if tokens.refresh_expires_at is None or tokens.refresh_expires_at - window > self._clock.now():
            return False
        self.refresh(connection, refresher, seen_generation=tokens.generation)
        logger.info("keep-alive refresh", connection_id=connection.connection_id)
        return True

    def current(self, connection: Connection) -> TokenSet:
        with self._cache_lock:
            cached = self._cache.get(connection.connection_id)
        if cached is not None and not cached.expires_within(self._clock.now(), REFRESH_MARGIN):
            return cached
        tokens = self._store.read(connection.connection_id)
        self._remember(connection.connection_id, tokens)
        return tokens

    def refresh(self, connection: Connection, refresher: Refresher, *, seen_generation: int) -> TokenSet:
        """A token set newer than ``seen_generation``: refreshed here, or by whoever holds the lease."""
        owner = uuid.uuid4().hex
        for _poll in range(self._max_wait_polls):
            if self._connections.try_acquire_refresh_lease(
                connection.business_id, owner, self._clock.now(), LEASE_HOLD
            ):
                return self._refresh_holding_lease(connection, refresher, owner, seen_generation)
            self._sleep(self._poll_interval)
            if self._connections.token_generation(connection.business_id) > seen_generation:
                tokens = self._store.read(connection.connection_id)
                self._remember(connection.connection_id, tokens)
                return tokens
        raise Unavailable(
            "another worker's token refresh did not finish in time", provider=connection.provider
        )

    def _refresh_holding_lease(
        self, connection: Connection, refresher: Refresher, owner: str, seen_generation: int
    ) -> TokenSet:
        new_generation: int | None = None
        try:
            stored = self._store.read(connection.connection_id)
            if stored.generation > seen_generation and not stored.expires_within(
                self._clock.now(), REFRESH_MARGIN
            ):
                self._remember(connection.connection_id, stored)
                return stored  # a sibling refreshed between our read and our lease
            try:
                refreshed = refresher(stored)
            except AuthRevoked:
                # Re-read before giving up: the refresh token we used may just have been superseded.
                again = self._store.read(connection.connection_id)
                if again.generation > stored.generation:
                    self._remember(connection.connection_id, again)
                    return again
                raise
            refreshed = refreshed.model_copy(update={"generation": stored.generation + 1})
            self._write_with_retries(connection, refreshed)
            new_generation = refreshed.generation
            self._remember(connection.connection_id, refreshed)
            logger.info("token refreshed", connection_id=connection.connection_id, generation=new_generation)
            count("TokenRefreshes")
            return refreshed
        finally:
            self._connections.release_refresh_lease(
                connection.business_id, owner, new_generation=new_generation
            )

    def _write_with_retries(self, connection: Connection, tokens: TokenSet) -> None:
        # The ledger has already rotated: losing this write loses the only valid refresh token for
        # ledgers without a grace window, so try hard before giving up.
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                self._store.write(connection.connection_id, tokens)
                return
            except Exception:
                if attempt == WRITE_ATTEMPTS:
                    raise
                logger.warning("token write failed, retrying", connection_id=connection.connection_id)
                self._sleep(0.2 * attempt)

    def store_new(self, connection_id: str, tokens: TokenSet) -> None:
        """A fresh token set from a (re)connect."""
        self._remember(connection_id, tokens)

    def forget(self, connection_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(connection_id, None)

    def _remember(self, connection_id: str, tokens: TokenSet) -> None:
        with self._cache_lock:
            self._cache[connection_id] = tokens
