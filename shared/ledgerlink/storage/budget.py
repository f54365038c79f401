"""The per-connection call budget's counters: one small item per connection and fixed window, each
call counted with one conditional UpdateItem (see services/budget.py for why this shape)."""

from __future__ import annotations

from ledgerlink.storage.dynamo import ConditionFailed, Table
from ledgerlink.storage.schema import TTL_ATTRIBUTE, call_budget_sk, connection_pk

# Counters outlive their window a little (TTL deletion is lazy and free); nothing reads old ones.
COUNTER_TTL_SECONDS = 3600


class CallBudgetRepository:
    def __init__(self, table: Table):
        self._table = table

    def try_spend(
        self,
        connection_id: str,
        window: int,
        *,
        expires_at: int,
        cap: int,
        refresh_cap: int | None = None,
    ) -> bool:
        """Count one call in the window (its number since the epoch, in the ledger's window length;
        ``expires_at``: its end, epoch seconds) if the window has room: ``cap`` calls in all and, when
        ``refresh_cap`` is given (a list refresh), at most that many refresh calls. Returns False,
        counting nothing, when the window is full."""
        condition = "(attribute_not_exists(calls) OR calls < :cap)"
        update = "ADD calls :one SET #expires = :expires"
        values: dict[str, object] = {
            ":one": 1,
            ":cap": cap,
            ":expires": expires_at + COUNTER_TTL_SECONDS,
        }
        if refresh_cap is not None:
            condition += " AND (attribute_not_exists(refresh_calls) OR refresh_calls < :refresh_cap)"
            update = "ADD calls :one, refresh_calls :one SET #expires = :expires"
            values[":refresh_cap"] = refresh_cap
        try:
            self._table.update(
                connection_pk(connection_id),
                call_budget_sk(window),
                update=update,
                condition=condition,
                names={"#expires": TTL_ATTRIBUTE},
                values=values,
            )
        except ConditionFailed:
            return False
        return True

    def spent(self, connection_id: str, window: int) -> tuple[int, int]:
        """(all calls, refresh calls) counted in a window: for tests and the benchmark."""
        raw = self._table.get(connection_pk(connection_id), call_budget_sk(window)) or {}
        return int(raw.get("calls", 0)), int(raw.get("refresh_calls", 0))
