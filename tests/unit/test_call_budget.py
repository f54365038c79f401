"""The call budget's sizing and pacing, on a fake counter store (no AWS)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from ledgerlink.errors import RateLimited
from ledgerlink.models.common import ProviderName
from ledgerlink.providers import registry
from ledgerlink.services.budget import (
    REFRESH_INLINE_WAIT_SECONDS,
    BudgetLimits,
    CallBudget,
    CallPurpose,
)
from ledgerlink.storage.budget import CallBudgetRepository


class FakeCounters(CallBudgetRepository):
    def __init__(self) -> None:
        self.calls: Counter[tuple[str, int]] = Counter()
        self.refresh_calls: Counter[tuple[str, int]] = Counter()

    def try_spend(
        self,
        connection_id: str,
        window: int,
        *,
        expires_at: int,
        cap: int,
        refresh_cap: int | None = None,
    ) -> bool:
        key = (connection_id, window)
        if self.calls[key] >= cap or (refresh_cap is not None and self.refresh_calls[key] >= refresh_cap):
            return False
        self.calls[key] += 1
        self.refresh_calls[key] += refresh_cap is not None
        return True


class Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 11, 2, 9, 0, 3, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("provider", "windows", "per_window", "refresh"),
    [
        ("xero", 11, 5, 2),
        ("quickbooks", 12, 38, 19),
        ("sage", 9, 10, 5),
        ("freeagent", 11, 10, 5),
        ("kashflow", 11, 5, 2),
    ],
)
def test_each_window_is_sized_to_stay_under_the_ledgers_rolling_minute(
    provider, windows, per_window, refresh
):
    config = registry.adapter_class(ProviderName(provider)).default_config
    limits = BudgetLimits.of(config)
    assert (limits.windows_per_minute, limits.per_window, limits.refresh_per_window) == (
        windows,
        per_window,
        refresh,
    )
    # A rolling minute overlaps at most n + 1 of n windows: even then it stays under the limit...
    assert limits.per_window * (limits.windows_per_minute + 1) <= config.calls_per_minute
    # ...while at least nine tenths of the limit go through a minute, sustained.
    assert limits.sustained_per_minute >= 0.9 * config.calls_per_minute


def test_no_rolling_minute_passes_the_ledgers_limit_however_calls_fall():
    counters, clock = FakeCounters(), Clock()
    budget = CallBudget(counters, clock, clock.sleep)
    config = registry.adapter_class(ProviderName.XERO).default_config
    moments: list[datetime] = []
    while len(moments) < 300:
        # Each session waits its allowance at most, then comes back after the wait (a redelivery).
        publish = budget.spender("c1", config, CallPurpose.PUBLISH)
        try:
            publish()
        except RateLimited as stopped:
            clock.sleep(stopped.retry_after or 0)
            continue
        moments.append(clock.now())
        clock.sleep(0.37)  # calls spaced unevenly against the windows' edges
    for index, start in enumerate(moments):
        in_minute = [m for m in moments[index:] if m < start + timedelta(seconds=60)]
        assert len(in_minute) <= config.calls_per_minute
    elapsed = (moments[-1] - moments[0]).total_seconds()
    assert 300 / (elapsed / 60) >= 0.9 * config.calls_per_minute


def test_a_refresh_uses_its_share_and_publishing_the_rest_of_each_window():
    counters, clock = FakeCounters(), Clock()
    budget = CallBudget(counters, clock, clock.sleep)
    config = registry.adapter_class(ProviderName.XERO).default_config
    refresh = budget.spender("c1", config, CallPurpose.REFRESH)
    publish = budget.spender("c1", config, CallPurpose.PUBLISH)
    for _ in range(2):
        refresh()
    assert clock.now().second == 3  # two refresh calls fit in the window (09:00:00 to 09:00:05.45)
    for _ in range(3):
        publish()  # publishing still has the rest of the window...
    assert clock.now().second == 3
    publish()  # ...and the sixth call waits for the next window
    assert clock.now() >= datetime(2026, 11, 2, 9, 0, 5, 454000, tzinfo=UTC)


def test_a_spent_budget_raises_rate_limited_when_the_caller_cannot_wait():
    counters, clock = FakeCounters(), Clock()
    budget = CallBudget(counters, clock, clock.sleep)
    config = registry.adapter_class(ProviderName.XERO).default_config
    refresh = budget.spender("c1", config, CallPurpose.REFRESH, deadline=clock.now() + timedelta(seconds=1))
    for _ in range(2):
        refresh()
    with pytest.raises(RateLimited) as stopped:
        refresh()
    assert 0 < stopped.value.retry_after <= BudgetLimits.of(config).window_end(0) + 0.1
    assert stopped.value.limit == "call_budget"
    # Publishing waits out at most its allowance in one session, then backs off the same way.
    publish = budget.spender("c2", config, CallPurpose.PUBLISH)
    with pytest.raises(RateLimited):
        for _ in range(5 * 8):
            publish()


def test_a_refresh_hands_a_long_wait_back_only_where_stopping_loses_nothing():
    counters, clock = FakeCounters(), Clock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.sleep(seconds)

    budget = CallBudget(counters, clock, sleep)
    config = registry.adapter_class(ProviderName.XERO).default_config
    safe = [True]
    refresh = budget.spender("c1", config, CallPurpose.REFRESH, hand_back=lambda: safe[0])
    for _ in range(2):
        refresh()
    with pytest.raises(RateLimited) as handed:
        refresh()  # 2.46 seconds to the next window: handed back, not slept
    assert slept == [] and handed.value.limit == "call_budget"
    assert handed.value.retry_after == pytest.approx(60 / 11 - 3 + 0.01)
    safe[0] = False  # mid-way through a fetch that cannot resume: the wait is slept out
    refresh()
    assert slept == [pytest.approx(60 / 11 - 3 + 0.01)]
    # A wait shorter than the threshold is slept out wherever it falls.
    clock.moment = datetime(2026, 11, 2, 9, 0, 10, tzinfo=UTC)  # 0.9 s before a window ends
    for _ in range(2):
        refresh()
    safe[0] = True
    refresh()
    assert slept[-1] <= REFRESH_INLINE_WAIT_SECONDS
