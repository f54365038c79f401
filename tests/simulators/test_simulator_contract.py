"""The contract every ledger simulator keeps (``reference/providers.md`` §6.1 and §6.7), asserted
once per behaviour and run against all five through a small driver per ledger
(``contract_drivers.py``):

1. credential rotation — a renewal returns a new credential; the previous one keeps working
   only for the ledger's own grace (Xero 30 min, QuickBooks 24 h, Sage none, FreeAgent per its
   setting) and is refused after it (``invalid_grant``; KashFlow: its session expires and is
   refused with 401, and a fresh login works);
2. the real rate limit, reached by calls, answers 429 with the ledger's own headers/body, and
   moving the clock past the window lets calls through again;
3. paging to the end in the ledger's own style gives the whole list once;
4. the incremental filter's inclusive/exclusive edge (KashFlow: no filter — it is ignored);
5. a validation error in the ledger's own format, with nothing written.

Everything runs in-process on the simulated clock (nothing sleeps). Where the reference leaves a
behaviour UNCONFIRMED the driver reads its expectation from the simulator's setting; those tests
also run with the setting changed, so both readings are exercised.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from contract_drivers import DRIVERS, LedgerDriver

from sandbox.simulators.harness import SimClock

pytestmark = pytest.mark.integration

PAGE_SIZE = 7  # small, so every list spans several pages; not a divisor of any seeded list size


def ledgers(*variants: tuple[str, dict[str, Any]]) -> list[Any]:
    """The five ledgers with default settings, plus ``variants`` (ledger, settings)."""
    default = [pytest.param((name, {}), id=name) for name in DRIVERS]
    changed = [pytest.param((name, settings), id=f"{name}[{','.join(f'{k}={v}' for k, v in settings.items())}]")
               for name, settings in variants]
    return default + changed


@pytest.fixture
def driver(request: pytest.FixtureRequest, clock: SimClock) -> Iterator[LedgerDriver]:
    name, settings = request.param
    ledger = DRIVERS[name](clock, **settings)
    yield ledger
    ledger.close()


@pytest.mark.parametrize("driver", ledgers(
    ("freeagent", {"refresh_token_grace_seconds": 600}),
    ("kashflow", {"session_ttl_seconds": 600}),
), indirect=True)
def test_renewal_rotates_and_the_previous_credential_dies_after_its_grace(driver: LedgerDriver) -> None:
    first = driver.connect()
    renewed = driver.renew(first)
    assert renewed.status_code == 200, renewed.text
    second = driver.renewed(renewed)
    assert second.renewal != first.renewal
    assert driver.call(second).status_code == 200

    grace = driver.refresh_grace_seconds
    assert math.isfinite(grace), "the previous credential never dies: nothing to assert about its end"
    if grace:
        driver.sim.advance_clock(grace - 1)
        inside = driver.present_previous(first)
        assert inside.status_code == 200, inside.text
        driver.sim.advance_clock(1)
    assert driver.refusal(driver.present_previous(first)) == driver.refused

    # Renewal still works once the first credential is dead (OAuth: from the second refresh token,
    # current or itself inside a grace; KashFlow: a fresh login) and its result is usable.
    again = driver.renew(second)
    assert again.status_code == 200, again.text
    assert driver.call(driver.renewed(again)).status_code == 200


@pytest.mark.parametrize("driver", ledgers(
    ("quickbooks", {"throttle_retry_after_seconds": 30}),
    ("sage", {"retry_after_seconds": 20}),
    ("sage", {"minute_limit": 30}),
    ("kashflow", {"rate_limit_per_minute": 10}),
), indirect=True)
def test_the_real_rate_limit_answers_429_in_the_ledgers_shape_then_recovers(driver: LedgerDriver) -> None:
    credentials = driver.connect()
    statuses = [driver.call(credentials).status_code for _ in range(driver.rate_limit)]
    assert statuses == [200] * driver.rate_limit

    limited = driver.call(credentials)
    assert limited.status_code == 429, limited.text
    assert driver.throttle_signature(limited) == driver.throttle
    assert driver.call(credentials).status_code == 429  # still refused: the window has not moved

    if "Retry-After" in limited.headers:
        assert 0 < int(limited.headers["Retry-After"]) <= driver.rate_window_seconds
    driver.sim.advance_clock(driver.rate_window_seconds)  # past the window
    assert driver.call(credentials).status_code == 200


@pytest.mark.parametrize("driver", ledgers(), indirect=True)
def test_pages_to_the_end_give_the_whole_list_once(driver: LedgerDriver) -> None:
    pages = driver.pages(driver.connect(), PAGE_SIZE)
    assert len(pages) > 1
    assert all(len(page) == PAGE_SIZE for page in pages[:-1]) and len(pages[-1]) <= PAGE_SIZE
    ids = [driver.row_id(row) for page in pages for row in page]
    assert len(ids) == len(set(ids))
    assert set(ids) == driver.whole_list()


@pytest.mark.parametrize("driver", ledgers(("freeagent", {"updated_since_inclusive": True})), indirect=True)
def test_incremental_filter_edges(driver: LedgerDriver) -> None:
    credentials = driver.connect()
    driver.sim.advance_clock(10)  # past every seeded change
    new_id, stamp = driver.touch(credentials)
    now = driver.sim.clock.now()
    before = driver.changed_since(credentials, driver.stamp(now - timedelta(seconds=1)))
    exactly = driver.changed_since(credentials, stamp)  # the high-water mark a client would store
    after = driver.changed_since(credentials, driver.stamp(now + timedelta(seconds=1)))

    if driver.since_inclusive is None:  # no incremental filter: the parameter changes nothing
        assert new_id in before
        assert before == exactly == after == driver.whole_list()
    else:
        assert before == {new_id}
        assert exactly == ({new_id} if driver.since_inclusive else set())
        assert after == set()


@pytest.mark.parametrize("driver", ledgers(
    ("freeagent", {"error_format": "array"}),
    ("kashflow", {"error_format": "message"}),
    ("kashflow", {"error_format": "plain"}),
), indirect=True)
def test_validation_error_in_the_ledgers_format_and_nothing_written(driver: LedgerDriver) -> None:
    response = driver.post_invalid(driver.connect())
    assert driver.validation_signature(response) == driver.validation
    assert driver.sim.writes() == []
