"""The per-connection call budget that list refresh and publishing share, kept in DynamoDB so every
container working for one connection counts against the same numbers.

Every API call to a ledger first spends one call from the connection's budget
(``LedgerSession.spend_call``). The budget is a fixed-window counter: one small item per connection
and ten-second window, and each call is one conditional UpdateItem (``ADD calls :one`` if ``calls <
cap``). Why this shape rather than a token bucket:

- It is exactly one write per call, with no read: the condition does the check and the count
  atomically across containers, and a refused call needs nothing more, because the wait (the rest
  of the window) is known locally. A token bucket (or GCRA) has to compute ``max(stored, now)``,
  which an UpdateItem cannot: it costs a read plus a conditional write, or a second write whenever
  the bucket has refilled.
- Its price is the window boundary. A ledger counts calls in a rolling minute, which can overlap
  ``n + 1`` of ``n`` equal windows a minute, so a window's cap is ``limit // (n + 1)``: under the
  ledger's limit however the windows fall, and ``n * (limit // (n + 1))`` a minute sustained. The
  window count is chosen per ledger to make that as large as it can be with windows of at least
  five seconds (Xero's 60 a minute: 11 windows of 5.45 s, 5 calls each, 55 a minute sustained, at
  most 60 in any rolling minute; ten-second windows would give 48).
- A refresh may use only ``refresh_share`` of each window (its own counter on the same item, checked
  in the same write); publishing may use the whole window. Whatever a refresh does, publishing
  keeps the rest of every window, and the two together stay under the ledger's limit, so a refresh
  never pushes publishing into the ledger's 429s.

Cost: one write unit per ledger call (the items are tiny), expired by TTL. Publishing sleeps a wait
(the rest of the window) out in place; once it has waited its allowance it gets ``RateLimited`` with
the wait as ``retry_after`` and backs off like after a ledger's 429. A refresh sleeps out only short
waits: a longer one, where its caller says stopping loses nothing (``hand_back``), is refused at
once, and the refresh saves its checkpoint and hands the wait back to its queue.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ledgerlink.clock import Clock
from ledgerlink.errors import RateLimited
from ledgerlink.observability import count
from ledgerlink.providers.config import ProviderConfig
from ledgerlink.storage.budget import CallBudgetRepository

# Windows no shorter than this: each is one counter item, and a wait handed back to the queue is
# rounded up to whole seconds.
MIN_WINDOW_SECONDS = 5
# Publishing sleeps out at most this much of budget waits per session before handing the item back
# to the queue (its function has a short timeout, and a held item says why).
PUBLISH_WAIT_ALLOWANCE = timedelta(seconds=30)
# Land just inside the next window rather than on its edge.
WINDOW_EDGE_SECONDS = 0.01
# A refresh sleeps out a budget wait up to this long inside its invocation; a longer one (up to the
# rest of a window) ends the delivery and the message comes back when the window opens.
# A sleeping invocation is billed for the wait; a hand-back costs about a second of SQS rounding
# (visibility is whole seconds) plus a fresh delivery (a receive, a few small DynamoDB writes,
# ~0.1 s of work), so it pays only when the wait is longer than that: about two seconds.
REFRESH_INLINE_WAIT_SECONDS = 2.0
# ``RateLimited.limit`` of a refusal by the budget itself: no call was made, so nothing was tried.
CALL_BUDGET_LIMIT = "call_budget"


class CallPurpose(StrEnum):
    REFRESH = "refresh"
    PUBLISH = "publish"


@dataclass(frozen=True)
class BudgetLimits:
    windows_per_minute: int
    per_window: int
    refresh_per_window: int

    def window_of(self, moment: float) -> int:
        """The window (its number since the epoch) holding ``moment`` (epoch seconds); windows
        start on the minute, so integer arithmetic keeps their edges exact."""
        return math.floor(moment * self.windows_per_minute / 60)

    def window_end(self, window: int) -> float:
        return (window + 1) * 60 / self.windows_per_minute

    @property
    def sustained_per_minute(self) -> int:
        return self.windows_per_minute * self.per_window

    @classmethod
    def of(cls, config: ProviderConfig) -> BudgetLimits:
        limit = config.calls_per_minute
        # A rolling minute overlaps at most n + 1 of n windows a minute; the most calls a minute
        # sustained, and of equals the fewest (longest) windows.
        most_windows = 60 // MIN_WINDOW_SECONDS
        windows = max(range(1, most_windows + 1), key=lambda n: (n * (limit // (n + 1)), -n))
        per_window = max(1, limit // (windows + 1))
        # At least one call for a refresh to make progress; at least one left for publishing.
        refresh = max(1, min(per_window - 1, math.floor(per_window * config.refresh_share)))
        return cls(windows_per_minute=windows, per_window=per_window, refresh_per_window=refresh)


class CallBudget:
    def __init__(self, counters: CallBudgetRepository, clock: Clock, sleep: Callable[[float], None]):
        self._counters = counters
        self._clock = clock
        self._sleep = sleep

    def spender(
        self,
        connection_id: str,
        config: ProviderConfig,
        purpose: CallPurpose,
        *,
        deadline: datetime | None = None,
        hand_back: Callable[[], bool] | None = None,
    ) -> Callable[[], None]:
        """The ``spend_call`` of one session: spends one call, waiting for the next window when this
        one is full. Raises ``RateLimited`` instead when the wait would pass ``deadline`` (a refresh's
        time in this invocation) or the session's wait allowance (publishing), and for a refresh's
        wait longer than ``REFRESH_INLINE_WAIT_SECONDS`` when ``hand_back()`` says that stopping the
        refresh here loses nothing (it is then cheaper to hand the wait back to the queue)."""
        limits = BudgetLimits.of(config)
        refresh_cap = limits.refresh_per_window if purpose == CallPurpose.REFRESH else None
        allowance = None if purpose == CallPurpose.REFRESH else PUBLISH_WAIT_ALLOWANCE.total_seconds()
        handing_back = hand_back if purpose == CallPurpose.REFRESH else None
        waited = 0.0

        def spend_call() -> None:
            nonlocal waited
            while True:
                now = self._clock.now()
                moment = now.timestamp()
                window = limits.window_of(moment)
                window_end = limits.window_end(window)
                if self._counters.try_spend(
                    connection_id,
                    window,
                    expires_at=math.ceil(window_end),
                    cap=limits.per_window,
                    refresh_cap=refresh_cap,
                ):
                    return
                wait = window_end - moment + WINDOW_EDGE_SECONDS
                # A wait is never longer than one window; what bounds the waiting is the caller's
                # time (a refresh's deadline) or the session's allowance (publishing).
                handed_back = (
                    handing_back is not None and wait > REFRESH_INLINE_WAIT_SECONDS and handing_back()
                )
                if (
                    handed_back
                    or (allowance is not None and waited + wait > allowance)
                    or (deadline is not None and now + timedelta(seconds=wait) > deadline)
                ):
                    count("CallBudgetHandedBack" if handed_back else "CallBudgetRefused")
                    raise RateLimited(
                        f"the connection's {config.name.value} call budget is spent for now",
                        retry_after=wait,
                        provider=config.name.value,
                        limit=CALL_BUDGET_LIMIT,
                    )
                count("CallBudgetWaits")
                self._sleep(wait)
                waited += wait

        return spend_call
