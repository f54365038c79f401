"""The connection item: one per business, created once, updated with a version check; it also
carries the token generation and the refresh lease (DESIGN §5)."""

from __future__ import annotations

import contextlib
import zlib
from datetime import datetime, timedelta
from typing import Any

from ledgerlink.models.connection import Connection, ConnectionStatus, PreviousConnection
from ledgerlink.storage.dynamo import ConditionFailed, Table
from ledgerlink.storage.schema import (
    CONNECTION_SK,
    GSI1_PARTITION_KEY,
    GSI1_SORT_KEY,
    PARTITION_KEY,
    PREVIOUS_CONNECTION_SK,
    REFRESH_SHARDS,
    business_pk,
    refresh_shard_pk,
)

# Connections in these states are visited by the scheduled list refresh.
SCHEDULED_STATUSES = frozenset({ConnectionStatus.CONNECTED, ConnectionStatus.REFRESH_FAILING})


class StaleConnection(ConditionFailed):
    """Someone else updated the connection since it was read; read again and retry."""


def refresh_shard(connection_id: str) -> int:
    return zlib.crc32(connection_id.encode()) % REFRESH_SHARDS


class ConnectionRepository:
    def __init__(self, table: Table):
        self._table = table

    def get(self, business_id: str) -> Connection | None:
        raw = self._table.get(business_pk(business_id), CONNECTION_SK)
        if raw is None:
            return None
        connection = Connection.model_validate_json(raw["data"])
        return connection.model_copy(
            update={"version": int(raw["version"]), "token_generation": int(raw.get("token_generation", 0))}
        )

    def create(self, connection: Connection, *, next_refresh_at: datetime | None = None) -> Connection:
        """Create the business's connection; fails with ConditionFailed if it already has one."""
        stored = connection.model_copy(update={"version": 1})
        item = {
            PARTITION_KEY: business_pk(connection.business_id),
            "sk": CONNECTION_SK,
            "data": stored.model_dump_json(exclude={"version", "token_generation"}),
            "version": 1,
            "token_generation": connection.token_generation,
            "connection_id": connection.connection_id,
            **self._schedule_attributes(stored, next_refresh_at),
        }
        self._table.put(item, condition="attribute_not_exists(pk)")
        return stored

    def save(self, connection: Connection, *, next_refresh_at: datetime | None = None) -> Connection:
        """Write the connection if nobody changed it since it was read (its ``version``)."""
        schedule = self._schedule_attributes(connection, next_refresh_at)
        sets = ["#data = :data", "#version = :next"]
        values: dict[str, object] = {
            ":data": connection.model_dump_json(exclude={"version", "token_generation"}),
            ":next": connection.version + 1,
            ":expected": connection.version,
        }
        names = {"#data": "data", "#version": "version"}
        if schedule:
            sets += ["#g1pk = :g1pk", "#g1sk = :g1sk"]
            names |= {"#g1pk": GSI1_PARTITION_KEY, "#g1sk": GSI1_SORT_KEY}
            values |= {":g1pk": schedule[GSI1_PARTITION_KEY], ":g1sk": schedule[GSI1_SORT_KEY]}
            update = "SET " + ", ".join(sets)
        elif connection.status in SCHEDULED_STATUSES:
            update = "SET " + ", ".join(sets)  # keep the existing schedule
        else:
            names |= {"#g1pk": GSI1_PARTITION_KEY, "#g1sk": GSI1_SORT_KEY}
            update = "SET " + ", ".join(sets) + " REMOVE #g1pk, #g1sk"
        try:
            self._table.update(
                business_pk(connection.business_id),
                CONNECTION_SK,
                update=update,
                condition="#version = :expected",
                names=names,
                values=values,
            )
        except ConditionFailed as error:
            raise StaleConnection(
                f"connection {connection.connection_id} changed since it was read"
            ) from error
        return connection.model_copy(update={"version": connection.version + 1})

    def save_action(self, connection: Connection) -> dict[str, Any]:
        """``save`` as a transaction action, keeping the refresh schedule: for a change that must land
        together with others (Merge Lists clears ``merge_pending`` in the transaction that applies it)."""
        return self._table.update_action(
            business_pk(connection.business_id),
            CONNECTION_SK,
            update="SET #data = :data, #version = :next",
            condition="#version = :expected",
            names={"#data": "data", "#version": "version"},
            values={
                ":data": connection.model_dump_json(exclude={"version", "token_generation"}),
                ":next": connection.version + 1,
                ":expected": connection.version,
            },
        )

    def replace(
        self, old: Connection, new: Connection, *, next_refresh_at: datetime | None = None
    ) -> Connection:
        """Swap the business's connection for a new one (Change connection), if it is still ``old``."""
        stored = new.model_copy(update={"version": 1})
        item = {
            PARTITION_KEY: business_pk(new.business_id),
            "sk": CONNECTION_SK,
            "data": stored.model_dump_json(exclude={"version", "token_generation"}),
            "version": 1,
            "token_generation": new.token_generation,
            "connection_id": new.connection_id,
            **self._schedule_attributes(stored, next_refresh_at),
        }
        try:
            self._table.put(item, condition="connection_id = :old", values={":old": old.connection_id})
        except ConditionFailed as error:
            raise StaleConnection("the connection changed meanwhile") from error
        return stored

    def delete(self, connection: Connection) -> None:
        """Remove the business's connection, if it is still this one."""
        try:
            self._table.delete(
                business_pk(connection.business_id),
                CONNECTION_SK,
                condition="connection_id = :id",
                values={":id": connection.connection_id},
            )
        except ConditionFailed as error:
            raise StaleConnection("the connection changed meanwhile") from error

    def previous(self, business_id: str) -> PreviousConnection | None:
        raw = self._table.get(business_pk(business_id), PREVIOUS_CONNECTION_SK)
        return PreviousConnection.model_validate_json(raw["data"]) if raw else None

    def remember_previous(self, business_id: str, previous: PreviousConnection) -> None:
        self._table.put(
            {
                PARTITION_KEY: business_pk(business_id),
                "sk": PREVIOUS_CONNECTION_SK,
                "data": previous.model_dump_json(),
            }
        )

    def forget_previous(self, business_id: str) -> None:
        self._table.delete(business_pk(business_id), PREVIOUS_CONNECTION_SK)

    # --- token generation and refresh lease ---------------------------------------------------

    def token_generation(self, business_id: str) -> int:
        raw = self._table.get(business_pk(business_id), CONNECTION_SK)
        return int(raw.get("token_generation", 0)) if raw else 0

    def publish_token_generation(self, business_id: str, generation: int) -> None:
        """A reconnect stored new tokens: workers waiting on the old generation move on."""
        with contextlib.suppress(ConditionFailed):  # a later generation is already published
            self._table.update(
                business_pk(business_id),
                CONNECTION_SK,
                update="SET token_generation = :generation",
                condition="attribute_exists(pk) AND (attribute_not_exists(token_generation) OR token_generation < :generation)",
                values={":generation": generation},
            )

    def try_acquire_refresh_lease(self, business_id: str, owner: str, now: datetime, hold: timedelta) -> bool:
        """Take the one-refresh-at-a-time lease unless another worker holds a live one."""
        try:
            self._table.update(
                business_pk(business_id),
                CONNECTION_SK,
                update="SET lease_owner = :owner, lease_until = :until",
                condition="attribute_exists(pk) AND (attribute_not_exists(lease_until) OR lease_until < :now)",
                values={":owner": owner, ":until": (now + hold).isoformat(), ":now": now.isoformat()},
            )
        except ConditionFailed:
            return False
        return True

    def release_refresh_lease(self, business_id: str, owner: str, *, new_generation: int | None) -> None:
        """Give the lease back, publishing the new token generation in the same write."""
        update = "REMOVE lease_owner, lease_until"
        values: dict[str, object] = {":owner": owner}
        if new_generation is not None:
            update = "SET token_generation = :generation " + update
            values[":generation"] = new_generation
        try:
            self._table.update(
                business_pk(business_id),
                CONNECTION_SK,
                update=update,
                condition="lease_owner = :owner",
                values=values,
            )
        except ConditionFailed:
            # Our lease ran out and another worker took it; it will publish its own generation.
            if new_generation is not None:
                with contextlib.suppress(ConditionFailed):  # a later generation is already published
                    self._table.update(
                        business_pk(business_id),
                        CONNECTION_SK,
                        update="SET token_generation = :generation",
                        condition="token_generation < :generation",
                        values={":generation": new_generation},
                    )

    @staticmethod
    def _schedule_attributes(connection: Connection, next_refresh_at: datetime | None) -> dict[str, str]:
        if next_refresh_at is None or connection.status not in SCHEDULED_STATUSES:
            return {}
        return {
            GSI1_PARTITION_KEY: refresh_shard_pk(refresh_shard(connection.connection_id)),
            GSI1_SORT_KEY: next_refresh_at.isoformat(),
        }
