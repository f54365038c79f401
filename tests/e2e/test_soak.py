"""The fault soak, short: `ledgerlink local` in its own process for 60 s of captures from five
businesses (one per ledger) while the simulators fail at random — 429 storms, 500s and 503s, a
timeout, writes whose response is lost, a revoked consent, a ledger down — then the audit: nothing
lost, nothing twice in any ledger, every failure explained, every connection connected or saying
why, the runtime's memory bounded. `make soak` runs the same code for ten minutes and 50
businesses."""

from __future__ import annotations

from sandbox.soak import SoakConfig, run_soak, summary


def test_a_minute_of_load_and_random_faults_loses_and_duplicates_nothing():
    report = run_soak(
        SoakConfig(duration=60, businesses=5, rate=1.0, fault_every=4.0, down_seconds=20, settle_timeout=240)
    )
    assert report.ok, "\n".join(summary(report))
    assert report.captured >= 40, report.captured  # the load really ran
    assert report.outcomes.get("published", 0) >= report.captured * 0.9, report.outcomes
    fired = {label: entry["fired"] for label, entry in report.faults.items()}
    # The one outage and at least some of the random faults really hit the ledgers' APIs.
    assert fired.get("ledger down", 0) > 0, report.faults
    assert sum(fired.values()) - fired["ledger down"] >= 3, report.faults
    if fired.get("consent revoked"):
        assert report.reconnects >= 1
    assert set(report.connections) == {"connected"}, report.connections
    assert report.rss_mb["samples"] >= 10
