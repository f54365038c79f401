"""Status changes of a connection: saved with a version check, each one an event."""

from __future__ import annotations

from ledgerlink.clock import Clock
from ledgerlink.errors import LedgerError
from ledgerlink.models.connection import Connection, ConnectionStatus
from ledgerlink.observability import CONNECTIONS_NEEDING_RECONNECT, count, logger
from ledgerlink.services.events import EventPublisher
from ledgerlink.storage.connections import ConnectionRepository, StaleConnection

SAVE_ATTEMPTS = 5


class ConnectionStatusKeeper:
    def __init__(self, connections: ConnectionRepository, events: EventPublisher, clock: Clock):
        self._connections = connections
        self._events = events
        self._clock = clock

    def move(self, connection: Connection, status: ConnectionStatus, reason: str) -> Connection:
        """Move the connection to ``status`` (re-reading if someone else saved it meanwhile)."""
        current = connection
        for _attempt in range(SAVE_ATTEMPTS):
            if current.status == status:
                return current
            previous = current.status
            moved = current.moved_to(status, reason, self._clock.now())
            try:
                saved = self._connections.save(moved)
            except StaleConnection:
                fresh = self._connections.get(connection.business_id)
                if fresh is None or fresh.connection_id != connection.connection_id:
                    return current
                current = fresh
                continue
            self.announce(saved, previous)
            return saved
        raise StaleConnection(f"could not record status {status} for {connection.connection_id}")

    def refresh_failing(self, connection: Connection, error: LedgerError) -> Connection:
        """The ledger's token endpoint is failing: say so, and keep trying (it may recover)."""
        if connection.status not in (ConnectionStatus.CONNECTED, ConnectionStatus.REFRESH_FAILING):
            return connection
        return self.move(
            connection,
            ConnectionStatus.REFRESH_FAILING,
            f"the ledger could not renew our access: {error.message}",
        )

    def working(self, connection: Connection) -> Connection:
        """A call to the ledger just succeeded: a refresh_failing connection is healthy again."""
        if connection.status != ConnectionStatus.REFRESH_FAILING:
            return connection
        return self.move(connection, ConnectionStatus.CONNECTED, "access renewed")

    def announce(self, connection: Connection, previous: ConnectionStatus | None) -> None:
        logger.info(
            "connection status changed",
            connection_id=connection.connection_id,
            status=connection.status.value,
            previous=previous.value if previous else None,
            reason=connection.status_reason,
        )
        if connection.status == ConnectionStatus.NEEDS_RECONNECT:
            count(CONNECTIONS_NEEDING_RECONNECT)
        self._events.publish(
            "connection.status_changed",
            {
                "business_id": connection.business_id,
                "connection_id": connection.connection_id,
                "provider": connection.provider.value,
                "status": connection.status.value,
                "previous_status": previous.value if previous else None,
                "reason": connection.status_reason,
                "since": connection.status_since.isoformat(),
            },
        )
