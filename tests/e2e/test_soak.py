"""The fault soak, short: `ledgerlink local` in its own process for 60 s of captures from five
businesses (one per ledger) while the simulators fail at random — 429 storms, 500s and 503s, a
timeout, writes whose response is lost, a revoked consent, a ledger down — then the audit: nothing
lost, nothing twice in any ledger, every failure explained, every connection connected or saying
why, the runtime's memory bounded. `make soak` runs the same code for ten minutes and 50
businesses. The audit itself is checked first, against a ledger's write log with a known fault in
it, so that a clean soak means a clean service and not a blind audit."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx

from sandbox.demo import LEDGERS
from sandbox.soak import Business, Soak, SoakConfig, run_soak, summary

XERO = LEDGERS[0]


class _Runtime:
    urls = {ledger.provider: f"http://{ledger.provider}.test" for ledger in LEDGERS} | {
        "API": "http://api.test"
    }


def _audit_xero_books(
    writes: list[dict[str, Any]], views: dict[str, dict[str, Any]], read_again: str = "published"
) -> list[str]:
    """The audit of one Xero business whose ledger wrote ``writes`` and whose items read
    ``views`` on the last pass and ``read_again`` when read once more."""

    def ledger(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/_sandbox/writes"
        return httpx.Response(200, json=writes)

    def api(request: httpx.Request) -> httpx.Response:
        item_id = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json={**views[item_id], "status": read_again})

    soak = Soak(_Runtime(), SoakConfig())  # type: ignore[arg-type]
    soak.browser = httpx.Client(transport=httpx.MockTransport(ledger))
    client = httpx.Client(base_url="http://api.test", transport=httpx.MockTransport(api))
    business = Business(0, "soak-xero-00", XERO, client)
    business.captured = {item_id: {"id": item_id, "reference": f"S00-{item_id}"} for item_id in views}
    soak.businesses = [business]
    soak._audit_ledger(XERO, {business.business_id: views})
    return soak.report.problems


def _bill(reference: str) -> dict[str, Any]:
    return {
        "action": "create",
        "kind": "Invoice",
        "org": "o1",
        "body": {"Type": "ACCPAY", "InvoiceNumber": reference},
    }


def test_the_audit_reports_a_duplicate_a_lost_bill_and_a_bill_behind_a_failed_item():
    reason = {"code": "ledger_unavailable", "message": "Xero is down", "hint": "Publish it again later."}
    views = {
        "1": {"status": "published"},
        "2": {"status": "published"},
        "3": {"status": "failed", "last_error": reason},
        "4": {"status": "published"},
    }
    clean = [_bill("S00-1"), _bill("S00-2"), _bill("S00-4")]
    assert _audit_xero_books(clean, views) == []
    # A bill written twice, one never written, and one behind an item that says it failed.
    faulty = [_bill("S00-1"), _bill("S00-1"), _bill("S00-2"), _bill("S00-3")]
    problems = "\n".join(_audit_xero_books(faulty, views))
    assert "documents created more than once: ['S00-1']" in problems
    assert "1: published but 2 documents in xero" in problems
    assert "4: published but 0 documents in xero" in problems
    assert "3 is published but 1 documents reached xero" not in problems  # read again: a race
    assert len(problems.splitlines()) == 3, problems


def test_an_item_that_failed_but_reached_the_ledger_is_a_fault_unless_it_published_meanwhile():
    reason = {"code": "ledger_unavailable", "message": "Xero is down", "hint": "Publish it again later."}
    views = {"1": {"status": "failed", "last_error": reason}}
    # Read again it answers published (a race with the last read): not a fault.
    assert _audit_xero_books([_bill("S00-1")], views) == []
    # Still failed when read again, with its bill in the ledger: a fault.
    problems = _audit_xero_books([_bill("S00-1")], views, read_again="failed")
    assert problems == ["1 is failed but 1 documents reached xero"], problems
    # Twice in the ledger is a fault whatever the item says now.
    assert any("2 documents reached xero" in p for p in _audit_xero_books([_bill("S00-1")] * 2, views))


def test_the_outage_stays_until_a_call_meets_it_even_past_the_load():
    """While the local runtime's one publisher is held elsewhere (a timeout fault at another
    ledger), no call may reach the down ledger in the outage's time: the ledger then stays down,
    past the end of the load if need be, until a call meets it, and its fired count is reported."""
    outage: dict[str, Any] = {}  # host, rule id, and whether a call has met it yet
    rule_ids = iter(range(1, 1000))
    lifted_after_the_load: list[bool] = []
    load_over = threading.Event()

    def simulator(request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        if request.method == "POST":
            rule_id = next(rule_ids)
            if "faults" not in json.loads(request.content):  # the outage; random faults come as a list
                outage.update(host=host, rule_id=rule_id, met=False)
            return httpx.Response(201, json=[{"rule_id": rule_id}])
        if request.method == "GET":
            if load_over.is_set():
                outage["met"] = True  # settling: the down ledger's waiting items call it now
            rules = (
                [{"rule_id": outage["rule_id"], "fired": int(outage["met"])}]
                if host == outage["host"]
                else []
            )
            return httpx.Response(200, json=rules)
        if host == outage["host"] and path.endswith(f"/faults/{outage['rule_id']}"):
            lifted_after_the_load.append(load_over.is_set())
        return httpx.Response(200, json={"fired": int(host == outage.get("host") and outage["met"])})

    soak = Soak(
        _Runtime(), SoakConfig(duration=1, fault_every=0.02, down_seconds=0.05, log=lambda _line: None)
    )  # type: ignore[arg-type]
    soak.browser = httpx.Client(transport=httpx.MockTransport(simulator))
    faults = threading.Thread(target=soak.fault_loop)
    faults.start()
    time.sleep(1)  # the load: the outage starts at 0.4 s and no call meets it
    load_over.set()
    soak._stop_load.set()
    faults.join(timeout=30)
    assert not faults.is_alive() and not soak.report.problems
    assert lifted_after_the_load == [True]
    assert soak._fired["ledger down"] == 1


def test_a_minute_of_load_and_random_faults_loses_and_duplicates_nothing():
    report = run_soak(
        SoakConfig(
            duration=60,
            businesses=5,
            rate=1.0,
            fault_every=4.0,
            down_seconds=20,
            # Settling lasts as long as the backlog moves; 3 s between reads of five businesses.
            settle_timeout=600,
            settle_stall=60,
            settle_poll=3,
        )
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
