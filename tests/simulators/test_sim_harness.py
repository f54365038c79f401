"""The provider-neutral harness pieces on their own: clock, rate windows, concurrency gate, faults,
codes and token rotation, redirect rules, PKCE and the seeded dataset."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest

from sandbox.simulators import harness
from sandbox.simulators.harness import (
    DEFAULT_APP,
    AuthorizationCodeStore,
    ConcurrencyGate,
    Consent,
    FaultInjector,
    OAuthError,
    RateLimiter,
    RefreshTokenState,
    SimClock,
    TokenPolicy,
    TokenRegistry,
    WindowLimit,
    pkce_challenge,
    verify_pkce,
)
from sandbox.simulators.seed import build_dataset, stable_uuid

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def test_clock_is_frozen_by_default_and_moves_when_told() -> None:
    clock = SimClock(T0)
    assert clock.now() == T0 == clock.now()
    assert clock.advance(90) == T0 + timedelta(seconds=90)
    clock.sleep(30)  # a frozen clock "sleeps" by advancing
    assert clock.now() == T0 + timedelta(minutes=2)
    clock.set(T0)
    assert clock.now() == T0
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        SimClock(datetime(2026, 1, 1))  # naive


def test_clock_scale_runs_faster_than_wall_time(monkeypatch: pytest.MonkeyPatch) -> None:
    wall = [1000.0]
    monkeypatch.setattr(harness.time, "monotonic", lambda: wall[0])
    clock = SimClock(T0, scale=60)
    wall[0] += 2  # two wall seconds
    assert clock.now() == T0 + timedelta(minutes=2)
    clock.advance(60)
    wall[0] += 1
    assert clock.now() == T0 + timedelta(minutes=4)
    clock.set_scale(0)
    wall[0] += 100
    assert clock.now() == T0 + timedelta(minutes=4)


def test_rolling_window_counts_and_reports_retry_after() -> None:
    clock = SimClock(T0)
    limiter = RateLimiter(clock)
    minute = WindowLimit("minute", 3, 60)
    for remaining in (2, 1, 0):
        decision = limiter.acquire([(minute, "tenant-a")])
        assert decision.allowed and decision.remaining["minute"] == remaining
        clock.advance(10)
    refused = limiter.acquire([(minute, "tenant-a")])
    assert (refused.allowed, refused.problem, refused.retry_after_seconds) == (False, "minute", 30)
    assert limiter.acquire([(minute, "tenant-b")]).allowed  # windows are per key
    clock.advance(30)
    assert limiter.acquire([(minute, "tenant-a")]).allowed  # the first hit left the window


def test_a_refused_request_counts_against_no_limit() -> None:
    limiter = RateLimiter(SimClock(T0))
    tight, loose = WindowLimit("minute", 1, 60), WindowLimit("day", 10, 86400)
    limiter.acquire([(loose, "t"), (tight, "t")])
    assert not limiter.acquire([(loose, "t"), (tight, "t")]).allowed
    assert limiter.remaining([(loose, "t")]) == {"day": 9}


def test_concurrency_gate_counts_in_flight_requests_across_threads() -> None:
    gate = ConcurrencyGate()
    barrier = threading.Barrier(8)
    admitted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        entered = gate.try_enter("tenant", 5)
        with lock:
            admitted.append(entered)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 5 and gate.in_flight("tenant") == 5
    gate.leave("tenant")
    assert gate.try_enter("tenant", 5)


def test_fault_rules_match_method_and_glob_and_count() -> None:
    faults = FaultInjector()
    rule = faults.add("500", "/api.xro/2.0/Invoices*", method="PUT,POST", count=2)
    assert faults.take("GET", "/api.xro/2.0/Invoices") is None
    assert faults.take("put", "/API.XRO/2.0/invoices") is rule
    assert faults.take("POST", "/api.xro/2.0/Invoices/abc") is rule
    assert faults.take("POST", "/api.xro/2.0/Invoices") is None
    assert rule.exhausted and rule.describe()["fired"] == 2
    with pytest.raises(ValueError):
        faults.add("418")


def test_codes_are_bound_and_single_use() -> None:
    clock = SimClock(T0)
    codes = AuthorizationCodeStore(clock)
    verifier = "v" * 50
    consent = Consent(client_id="app", user_id="u", scope=("offline_access",), redirect_uri="http://127.0.0.1:1/cb",
                      code_challenge=pkce_challenge(verifier), code_challenge_method="S256")
    code = codes.issue(consent, ttl_seconds=60)
    with pytest.raises(OAuthError, match="another client"):
        codes.redeem(code, client_id="other", redirect_uri=consent.redirect_uri, code_verifier=verifier)
    with pytest.raises(OAuthError, match="already used"):  # the failed attempt burnt it
        codes.redeem(code, client_id="app", redirect_uri=consent.redirect_uri, code_verifier=verifier)
    fresh = codes.issue(consent, ttl_seconds=60)
    assert codes.redeem(fresh, client_id="app", redirect_uri=consent.redirect_uri, code_verifier=verifier) == consent


def test_token_registry_rotation_grace_and_strict_single_use() -> None:
    clock = SimClock(T0)
    registry = TokenRegistry(clock)
    consent = Consent(client_id="app", user_id="u", scope=("offline_access",))
    graceful = TokenPolicy(access_ttl_seconds=300, refresh_unused_ttl_seconds=None, rotation=True, grace_seconds=60)
    first = registry.start_grant(consent, graceful, with_refresh_token=True)
    assert first.refresh_token is not None
    second = registry.refresh(first.refresh_token, client_id="app", policy=graceful)
    assert registry.refresh_token_state(first.refresh_token) is RefreshTokenState.SUPERSEDED
    clock.advance(61)
    with pytest.raises(OAuthError):
        registry.refresh(first.refresh_token, client_id="app", policy=graceful)
    with pytest.raises(OAuthError):
        registry.refresh(second.refresh_token, client_id="other-app", policy=graceful)

    # Sage-style: no grace at all.
    strict = TokenPolicy(access_ttl_seconds=300, refresh_unused_ttl_seconds=31 * 86400, rotation=True,
                         grace_seconds=0)
    chain = registry.start_grant(consent, strict, with_refresh_token=True)
    assert chain.refresh_token is not None
    registry.refresh(chain.refresh_token, client_id="app", policy=strict)
    with pytest.raises(OAuthError):
        registry.refresh(chain.refresh_token, client_id="app", policy=strict)

    # QuickBooks-style without rotation: the same refresh token comes back.
    steady = TokenPolicy(access_ttl_seconds=3600, refresh_unused_ttl_seconds=None, rotation=False,
                         grace_seconds=0)
    kept = registry.start_grant(consent, steady, with_refresh_token=True)
    assert registry.refresh(kept.refresh_token, client_id="app", policy=steady).refresh_token == kept.refresh_token
    records = registry.refresh_token_records(kept.grant.grant_id)
    assert [r["use_count"] for r in records] == [1]


def test_redirect_uri_rules() -> None:
    assert DEFAULT_APP.accepts_redirect("http://127.0.0.1:8080/cb")
    assert DEFAULT_APP.accepts_redirect("http://localhost:5173/oauth/callback?x=1")
    assert not DEFAULT_APP.accepts_redirect("https://127.0.0.1:8080/cb")
    assert not DEFAULT_APP.accepts_redirect("http://192.168.1.2:8080/cb")
    assert not DEFAULT_APP.accepts_redirect("http://127.0.0.1:8080/cb#frag")
    assert not DEFAULT_APP.accepts_redirect(None)


def test_pkce_s256() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 appendix B
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert verify_pkce("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "S256", verifier)
    assert not verify_pkce("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "S256", "short")


def test_seed_dataset_is_deterministic_and_shaped_for_the_simulators() -> None:
    today = date(2026, 11, 2)
    small = build_dataset("small", today=today)
    assert small == build_dataset("small", today=today)
    assert build_dataset("small", seed=1, today=today) != small
    demo, joinery = small.organisations
    assert demo.name == "Demo Company (UK)" and joinery.name != demo.name
    assert len(demo.accounts) >= 40 and any(a.archived for a in demo.accounts)
    assert 2 <= sum(a.kind in {"bank", "credit_card"} for a in demo.accounts) <= 3
    assert len(demo.contacts) >= 120 and any(c.archived for c in demo.contacts)
    assert any(c.is_supplier for c in demo.contacts) and any(c.is_customer for c in demo.contacts)
    assert len({c.name for c in demo.contacts}) == len(demo.contacts)
    assert {r.key for r in demo.vat_rates} >= {"standard", "reduced", "zero", "exempt", "no_vat"}
    assert len(demo.items) == 15 and all(i.purchase or i.sales for i in demo.items)
    assert len(demo.tracking) == 2 and any(o.archived for t in demo.tracking for o in t.options)
    assert demo.period_lock_date == date(2026, 6, 30)
    assert {c.name for c in joinery.contacts}.isdisjoint({"Demo Company (UK)"})

    large = build_dataset("large", today=today).organisations[0]
    assert (len(large.contacts), len(large.accounts), len(large.items)) == (10_000, 500, 1000)
    assert len({a.code for a in large.accounts}) == 500 and len({c.name for c in large.contacts}) == 10_000
    assert build_dataset("empty", today=today).organisations[0].contacts == ()
    assert stable_uuid("a", "b") == stable_uuid("a", "b") != stable_uuid("a", "c")
