"""Keeping lists fresh cheaply: refreshes that stop part-way carry on from their checkpoint with the
lists intact meanwhile, a refused consent wipes nothing, a second refresh request joins the first,
the schedule spreads connections over their interval, and the call budget that refresh shares
with publishing keeps both under the ledger's limit."""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import httpx
import pytest

from infra.api_routes import FunctionName
from ledgerlink.api.auth import Caller
from ledgerlink.models.common import ListType, ProviderName, Role
from ledgerlink.models.connection import Connection, ConnectionStatus
from ledgerlink.models.lists import record_id
from ledgerlink.providers import registry
from ledgerlink.runtime import Runtime, install_runtime
from ledgerlink.services.budget import REFRESH_INLINE_WAIT_SECONDS, BudgetLimits
from ledgerlink.services.lists import next_refresh_due
from ledgerlink.storage.connections import ConnectionRepository, refresh_shard
from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.lists import ListRepository
from ledgerlink.storage.schema import CONNECTION_SK, GSI1_SORT_KEY, business_pk
from ledgerlink.wiring import list_service
from sandbox.moto_speed import speed_up_moto_dynamodb
from sandbox.simulators.harness import truncate_to_millis
from tests.integration.conftest import LEDGER_HOSTS, Service
from tests.integration.helpers import cost_item

DEMO = "Demo Company (UK)"
CONTACT_PAGES = "/api.xro/2.0/Contacts"


def _fan_out(service: Service) -> Any:
    return service.host.invoke(
        FunctionName.REFRESH_LISTS, {"source": "ledgerlink.schedule", "action": "fan_out"}
    )


def _refreshed(service: Service) -> list[dict[str, Any]]:
    return [e["detail"] for e in service.events() if e["detail-type"] == "lists.refreshed"]


def _contact_pages(service: Service, since_seq: int = 0) -> list[tuple[int, int]]:
    """(page, status) of each Contacts list request Xero answered after ``since_seq``."""
    return [
        (int(parse_qs(entry.query)["page"][0]), entry.status)
        for entry in service.xero.request_log.entries(path_glob=CONTACT_PAGES, method="GET")
        if entry.seq > since_seq and "page" in parse_qs(entry.query)
    ]


def _last_seq(service: Service) -> int:
    entries = service.xero.request_log.entries()
    return entries[-1].seq if entries else 0


def _queue_depth(service: Service) -> tuple[int, int]:
    attributes = service.session.client("sqs").get_queue_attributes(
        QueueUrl=service.resources.refresh_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _freshness(api: httpx.Client) -> dict[str, Any]:
    lists: dict[str, Any] = api.get("/v1/connection").json()["lists"]
    return lists


def _stored_name(service: Service, connection_id: str, contact_id: str) -> str | None:
    """The stored name of a Xero contact, read directly (a search of 10,000 records through the API
    reads the whole list, which moto makes slow)."""
    lists = ListRepository(Table(service.session.client("dynamodb"), service.resources.table_name))
    stored = lists.get(connection_id, record_id(connection_id, ListType.CONTACTS, contact_id))
    return stored.name if stored else None


@pytest.fixture(scope="module", autouse=True)
def _fast_moto() -> None:
    speed_up_moto_dynamodb()


@pytest.fixture
def large_xero(service: Service) -> Service:
    service.xero.seed("large")
    assert service.connect_xero()["lists"]["contacts"]["record_count"] == 10_000
    service.events()
    return service


def test_a_500_mid_pagination_resumes_from_its_checkpoint_and_the_list_stays_readable(large_xero: Service):
    service, api = large_xero, large_xero.client()
    # Every contact changes in Xero (a few are renamed): the incremental refresh pages through all.
    org = service.xero.org(DEMO)
    connection_id = api.get("/v1/connection").json()["connection_id"]
    now = truncate_to_millis(service.clock.now())
    renamed = {}  # contact id -> (old name, new name)
    for number, contact in enumerate(org.contacts.values()):
        contact["UpdatedDateUTC"] = now
        if number % 1250 == 7:
            renamed[contact["ContactID"]] = (contact["Name"], contact["Name"] + " (renamed)")
            contact["Name"] += " (renamed)"
    start = _last_seq(service)
    # Page 4 fails every attempt of the adapter (it retries a 5xx three times itself, each attempt
    # spent from the call budget, which may pace the refresh between attempts) until Xero recovers.
    service.xero.inject_fault("500", CONTACT_PAGES, method="GET", skip=3, count=None)

    started = api.post("/v1/connection/refresh")
    assert started.status_code == 202, started.text
    service.drain()

    pages = _contact_pages(service, start)
    assert pages[:3] == [(1, 200), (2, 200), (3, 200)]
    assert len(pages) >= 7 and set(pages[3:]) == {(4, 500)}
    assert _queue_depth(service) == (0, 1)  # held back for a while, not lost and not dead-lettered
    lists = _freshness(api)
    assert "paused part-way" in lists["contacts"]["last_error"]
    assert lists["contacts"]["record_count"] == 10_000
    # The previous list is whole and readable meanwhile: nothing was wiped or half-deleted.
    first_page = api.get("/v1/lists/contacts", params={"status": "all", "limit": 500})
    assert first_page.status_code == 200 and len(first_page.json()["records"]) == 500
    stored = {contact_id: _stored_name(service, connection_id, contact_id) for contact_id in renamed}
    assert all(stored[contact_id] in names for contact_id, names in renamed.items())
    assert 0 < sum(stored[c] == new for c, (_old, new) in renamed.items()) < len(renamed)  # some pages in
    assert not _refreshed(service)

    resumed_from = _last_seq(service)
    service.xero.clear_faults()
    service.let_time_pass(60)
    service.drain()

    # The retry carried on at page 4: the three pages already stored were not fetched again, nor
    # was the list finished before contacts (categories: one Accounts call, for bank accounts).
    assert [page for page, _ in _contact_pages(service, resumed_from)] == list(range(4, 11))
    accounts = service.xero.request_log.entries(path_glob="/api.xro/2.0/Accounts")
    assert len([a for a in accounts if a.seq > start]) == 2
    done = _refreshed(service)
    assert [d["reason"] for d in done] == ["requested"]
    counts = done[0]["lists"]["contacts"]
    assert counts["changed"] == len(renamed) and counts["deleted"] == 0 and counts["added"] == 0
    assert counts["unchanged"] == 10_000 - len(renamed)
    assert counts["ledger_calls"] >= 10 and counts["seconds"] > 0
    lists = _freshness(api)
    assert lists["contacts"]["last_error"] is None and lists["contacts"]["record_count"] == 10_000
    assert lists["contacts"]["seconds"] is not None and lists["contacts"]["ledger_calls"] >= 10
    assert all(_stored_name(service, connection_id, c) == new for c, (_old, new) in renamed.items())


def test_a_token_revoked_mid_refresh_needs_reconnect_and_wipes_nothing(service: Service):
    service.connect_xero()
    api = service.client()
    before = {name: view["record_count"] for name, view in _freshness(api).items()}
    assert before["contacts"] > 100
    # The user withdraws consent in Xero while the refresh is between two lists.
    service.xero.inject_fault("revoke", CONTACT_PAGES, count=1)

    assert api.post("/v1/connection/refresh").status_code == 202
    service.drain()

    connection = api.get("/v1/connection").json()
    assert connection["status"] == "needs_reconnect"
    assert {name: view["record_count"] for name, view in connection["lists"].items()} == before
    everything = api.get("/v1/lists/contacts", params={"status": "all", "limit": 500}).json()["records"]
    assert len(everything) == before["contacts"]
    assert (
        len(api.get("/v1/lists/categories", params={"status": "all", "limit": 500}).json()["records"])
        == before["categories"]
    )
    refused = api.post("/v1/connection/refresh")
    assert refused.status_code == 409 and "reconnect" in refused.json()["error"]["message"]


def test_a_second_refresh_request_joins_the_one_queued_instead_of_queueing_another(service: Service):
    service.connect_xero()
    service.events()
    api = service.client()

    first = api.post("/v1/connection/refresh")
    second = api.post("/v1/connection/refresh")
    assert first.status_code == second.status_code == 202
    assert first.json()["joined"] is False and first.json()["refresh"]["state"] == "queued"
    assert second.json()["joined"] is True
    assert second.json()["refresh"]["refresh_id"] == first.json()["refresh"]["refresh_id"]
    assert _queue_depth(service) == (1, 0)  # one message for both requests

    service.drain()
    assert [d["refresh_id"] for d in _refreshed(service)] == [first.json()["refresh"]["refresh_id"]]
    # Once it has finished, a new request starts a new refresh.
    third = api.post("/v1/connection/refresh").json()
    assert (
        third["joined"] is False and third["refresh"]["refresh_id"] != first.json()["refresh"]["refresh_id"]
    )
    service.drain()


def test_a_request_while_a_refresh_runs_or_waits_joins_it(service: Service):
    service.connect_xero()
    api = service.client()
    caller = Caller(user_id="admin-2", business_id="biz-1", role=Role.ADMIN)
    seen: list[dict[str, Any]] = []

    class AskingMidway(httpx.BaseTransport):
        """Xero, where an Admin asks for a refresh while the first list is being fetched."""

        def __init__(self, inner: httpx.BaseTransport):
            self._inner = inner

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/Accounts") and not seen:
                seen.append(list_service().request_refresh(caller).model_dump(mode="json"))
            return self._inner.handle_request(request)

    service.transport.add(LEDGER_HOSTS["xero"], AskingMidway(service.xero.transport()))
    started = api.post("/v1/connection/refresh").json()
    # Xero answers 429 with a long Retry-After on the last list: the refresh waits to carry on.
    service.xero.inject_fault("429", "/api.xro/2.0/TrackingCategories", count=1, retry_after=120)
    service.drain()

    assert seen and seen[0]["joined"] is True
    assert seen[0]["refresh"]["refresh_id"] == started["refresh"]["refresh_id"]
    assert seen[0]["refresh"]["state"] == "running"
    waiting = api.post("/v1/connection/refresh").json()
    assert waiting["joined"] is True and waiting["refresh"]["state"] == "waiting"
    assert waiting["refresh"]["lists_done"] == ["categories", "contacts", "tax_rates", "items"]
    assert _queue_depth(service) == (0, 1)

    # After Xero's Retry-After the same refresh carries on with the list it stopped in; the lists it
    # finished are not fetched again.
    resumed_from = _last_seq(service)
    service.let_time_pass(120)
    service.drain()
    requested = [d for d in _refreshed(service) if d["reason"] == "requested"]
    assert [d["refresh_id"] for d in requested] == [started["refresh"]["refresh_id"]]
    assert set(requested[0]["lists"]) == {t.value for t in ListType}
    fetched = sorted(
        (e.path, unquote_plus(e.query)) for e in service.xero.request_log.entries() if e.seq > resumed_from
    )
    assert fetched == [
        ("/api.xro/2.0/Accounts", 'where=Type=="BANK"'),  # bank accounts, the list after it
        ("/api.xro/2.0/TrackingCategories", "includeArchived=true"),
        ("/projects.xro/2.0/Projects", "states=INPROGRESS,CLOSED&page=1&pageSize=500"),
    ]


def test_the_schedule_spreads_connections_across_their_interval():
    hour = timedelta(hours=1)
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    ids = [f"conn-{n:04d}" for n in range(1200)]
    due = {connection_id: next_refresh_due(connection_id, hour, start) for connection_id in ids}
    assert all(start < when <= start + hour for when in due.values())
    # Twelve five-minute ticks of the schedule each find about a twelfth of the connections due.
    per_tick = Counter(int(((when - start).total_seconds() - 1) // 300) for when in due.values())
    assert len(per_tick) == 12 and all(60 <= n <= 140 for n in per_tick.values()), per_tick
    # Each connection keeps its slot: the next due time is exactly one interval later.
    assert all(next_refresh_due(c, hour, due[c]) == due[c] + hour for c in ids[:50])
    assert all(next_refresh_due(c, hour, due[c] + timedelta(minutes=4)) == due[c] + hour for c in ids[:50])
    # The slot is a stable function of the connection id (no randomness, no clock).
    assert len({zlib.crc32(c.encode()) for c in ids}) == len(ids)


def test_the_schedule_queues_due_connections_at_their_own_slot_with_their_own_interval(service: Service):
    businesses = ["biz-1", "biz-2", "biz-3"]
    for business in businesses:
        service.connect_xero(business)
    table = Table(service.session.client("dynamodb"), service.resources.table_name)

    def due_at(business: str) -> str:
        raw = table.get(business_pk(business), CONNECTION_SK)
        assert raw is not None
        return str(raw[GSI1_SORT_KEY])

    ids = {b: service.client(b).get("/v1/connection").json()["connection_id"] for b in businesses}
    # A new connection's first scheduled refresh is already at its own slot (not "now + 1 hour"),
    # at least half an hour after the first import.
    for business in businesses:
        first = datetime.fromisoformat(due_at(business))
        assert next_refresh_due(ids[business], timedelta(hours=1), first - timedelta(hours=1)) == first
        assert timedelta(minutes=29) < first - service.clock.now() <= timedelta(minutes=90)
    settings = service.client("biz-3").get("/v1/connection/settings").json()
    assert settings["list_refresh_minutes"] == 60
    assert (
        service.client("biz-3")
        .put("/v1/connection/settings", json={**settings, "list_refresh_minutes": 180})
        .status_code
        == 200
    )

    service.clock.advance(2 * 3600)
    now = service.clock.now()
    assert _fan_out(service) == {"queued": 3}
    assert _fan_out(service) == {"queued": 0}  # nothing due any more
    expected = {
        "biz-1": next_refresh_due(ids["biz-1"], timedelta(hours=1), now),
        "biz-2": next_refresh_due(ids["biz-2"], timedelta(hours=1), now),
        "biz-3": next_refresh_due(ids["biz-3"], timedelta(hours=3), now),
    }
    assert {b: due_at(b) for b in businesses} == {b: when.isoformat() for b, when in expected.items()}
    assert len({when.strftime("%M:%S") for when in expected.values()}) == 3  # no wave at :00
    service.drain()
    assert sorted(d["reason"] for d in _refreshed(service) if d["reason"] == "scheduled") == ["scheduled"] * 3


def test_the_call_budget_keeps_a_large_refresh_and_publishing_under_xeros_limit(large_xero: Service):
    service, api = large_xero, large_xero.client()
    s3 = service.session.client("s3")
    template = cost_item(api, "cap-budget", supplier="Avon Security & Sons", document=True)
    items = []
    for number in range(45):
        item = json.loads(json.dumps(template).replace("cap-budget", f"cap-budget-{number}"))
        s3.put_object(
            Bucket=service.resources.documents_bucket, Key=item["document"]["key"], Body=b"%PDF-1.4"
        )
        items.append(item)
    start, began = _last_seq(service), service.clock.now()
    # A full refresh of the large organisation and 45 bills with documents, at the same time.
    refresh = {"business_id": "biz-1", "connection_id": api.get("/v1/connection").json()["connection_id"]}
    service.session.client("sqs").send_message(
        QueueUrl=service.resources.refresh_queue_url,
        MessageBody=json.dumps({**refresh, "reason": "requested", "full": True}),
    )
    for item in items:
        assert api.post("/v1/items", json={"item": item, "publish": True}).status_code == 201
    for _round in range(20):
        service.drain()
        if all(api.get(f"/v1/items/{i['id']}").json()["status"] == "published" for i in items):
            break
        service.let_time_pass(30)

    assert all(api.get(f"/v1/items/{i['id']}").json()["status"] == "published" for i in items)
    calls = [e for e in service.xero.request_log.entries(path_glob="/api.xro/2.0/*") if e.seq > start]
    assert len(calls) > 60  # more than Xero takes in a minute...
    assert [e for e in service.xero.request_log.entries() if e.status == 429] == []  # ...yet never a 429
    # Nor more than 60 in any rolling minute, the limit the simulator enforces.
    times = sorted(e.time for e in calls)
    assert max(sum(1 for t in times if first <= t < first + timedelta(seconds=60)) for first in times) <= 60
    assert service.clock.now() - began > timedelta(seconds=60)
    refreshed = [d for d in _refreshed(service) if d["reason"] == "requested"]
    assert refreshed and refreshed[0]["lists"]["contacts"]["unchanged"] == 10_000


def test_lists_filter_categories_by_item_type_and_contacts_by_role(service: Service):
    service.connect_xero()
    api = service.client()

    def fetch(list_type: str, **params: Any) -> list[dict[str, Any]]:
        page = api.get(f"/v1/lists/{list_type}", params={"status": "all", "limit": 500, **params})
        assert page.status_code == 200, page.text
        return list(page.json()["records"])

    categories = fetch("categories")
    for item_type in ("cost", "sales", "expense_claim"):
        usable = fetch("categories", usable_for=item_type)
        assert usable and all(item_type in r["usable_for"] for r in usable)
        assert {r["id"] for r in usable} == {r["id"] for r in categories if item_type in r["usable_for"]}
    assert len(fetch("categories", usable_for="sales")) < len(categories)

    contacts = fetch("contacts")
    suppliers, customers = fetch("contacts", role="supplier"), fetch("contacts", role="customer")
    assert suppliers and all(r["is_supplier"] for r in suppliers)
    assert customers and all(r["is_customer"] for r in customers)
    assert {r["id"] for r in suppliers} == {r["id"] for r in contacts if r["is_supplier"]}
    assert len(suppliers) < len(contacts) and len(customers) < len(contacts)

    for path, params, field in (
        ("contacts", {"usable_for": "cost"}, "usable_for"),
        ("categories", {"role": "supplier"}, "role"),
        ("categories", {"usable_for": "lunch"}, "usable_for"),
        ("contacts", {"role": "employee"}, "role"),
    ):
        refused = api.get(f"/v1/lists/{path}", params=params)
        assert refused.status_code == 422, (path, params, refused.text)
        assert refused.json()["error"]["field"] == field
    unknown = api.get("/v1/lists/suppliers")
    assert unknown.status_code == 404
    assert (
        "categories, contacts, tax_rates, items, projects, bank_accounts"
        in unknown.json()["error"]["message"]
    )


def test_a_refresh_paced_by_the_call_budget_hands_its_waits_to_the_queue_and_resumes(service: Service):
    """KashFlow's contacts, its whole list every time (no change filter), in many pages at the
    refresh's share of each budget window (two calls every 60/11 s; ~100 pages for 10,000
    contacts; here the simulator serves two a page): the wait for each next window is handed back to the queue (checkpoint
    saved, the message hidden for the wait), not slept out in the invocation, and each delivery
    carries on from the page the last one stopped on."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        service.clock.advance(seconds)

    install_runtime(
        Runtime(
            clock=service.clock, http_transport=service.transport, sleep=sleep, boto3_session=service.session
        )
    )
    kashflow = service.simulator("kashflow")
    kashflow.settings = kashflow.settings.model_copy(update={"max_page_size": 2})  # many pages
    connection = service.connect("kashflow")
    api, queue_time = service.client(), service.queue_time
    assert queue_time is not None
    service.events()
    # Meanwhile in KashFlow: the first supplier is deleted, the last customer renamed.
    company = max(kashflow.companies.values(), key=lambda c: len(c.suppliers))
    with kashflow.lock:
        company.suppliers.pop(next(iter(company.suppliers)))
        list(company.customers.values())[-1]["Name"] += " (renamed)"
    contacts = len(company.suppliers) + len(company.customers)
    assert connection["lists"]["contacts"]["record_count"] == contacts + 1
    pages = {
        "/v2/suppliers": math.ceil(len(company.suppliers) / 2),
        "/v2/customers": math.ceil(len(company.customers) / 2),
    }
    assert sum(pages.values()) >= 12
    start, began, handed_back = (
        max(e.seq for e in kashflow.request_log.entries()),
        service.clock.now(),
        len(queue_time.visibility),
    )
    slept.clear()
    service.session.client("sqs").send_message(
        QueueUrl=service.resources.refresh_queue_url,
        MessageBody=json.dumps(
            {
                "business_id": "biz-1",
                "connection_id": connection["connection_id"],
                "reason": "requested",
                "lists": ["contacts"],
            }
        ),
    )

    # The first delivery fetches what the window allows, then hands the rest of it back.
    assert service.pollers[0].poll_once() == 1
    assert _queue_depth(service) == (0, 1) and slept == []
    waiting = api.post("/v1/connection/refresh").json()  # a request meanwhile joins it
    assert waiting["joined"] is True and waiting["refresh"]["state"] == "waiting"
    assert waiting["refresh"]["last_error"] is None  # pacing is no error
    resume_in = datetime.fromisoformat(waiting["refresh"]["resume_at"]) - service.clock.now()
    assert timedelta(0) < resume_in <= timedelta(seconds=11)
    service.drain()

    # Never slept out a window's wait: every one went back to the queue, a delivery each.
    assert all(wait <= REFRESH_INLINE_WAIT_SECONDS for wait in slept), slept
    deliveries = len(queue_time.visibility) - handed_back
    limits = BudgetLimits.of(registry.adapter_class(ProviderName.KASHFLOW).default_config)
    windows = math.ceil(sum(pages.values()) / limits.refresh_per_window)
    # A delivery sleeps out at most one short wait, so it spans two windows at most...
    assert deliveries >= math.ceil(windows / 2) - 1
    # ...and the refresh kept to its share of every window all the same.
    assert service.clock.now() - began >= timedelta(seconds=(windows - 1) * 60 / limits.windows_per_minute)
    # Each page fetched once, in order: every delivery carried on where the last one stopped.
    for path, count in pages.items():
        fetched = [
            (int(parse_qs(e.query)["page"][0]), e.status)
            for e in kashflow.request_log.entries(path_glob=path, method="GET")
            if e.seq > start
        ]
        assert fetched == [(n, 200) for n in range(1, count + 1)], path
    # One refresh, counted once, with the deletion found across all those deliveries.
    done = _refreshed(service)
    assert len(done) == 1 and done[0]["refresh_id"] == waiting["refresh"]["refresh_id"]
    counts = done[0]["lists"]["contacts"]
    assert (counts["added"], counts["changed"], counts["deleted"]) == (0, 1, 1)
    assert counts["unchanged"] == contacts - 1 and counts["ledger_calls"] == sum(pages.values())
    assert _freshness(api)["contacts"]["record_count"] == contacts
    # Over: the next request starts a refresh of its own.
    assert api.post("/v1/connection/refresh").json()["joined"] is False


def test_the_schedule_fans_out_per_shard_ten_messages_to_a_call(service: Service):
    """A tick's due connections, spread over the refresh shards, each queued once at its own slot,
    their messages sent ten to a SendMessageBatch call rather than one call each."""
    table = Table(service.session.client("dynamodb"), service.resources.table_name)
    connections = ConnectionRepository(table)
    now = service.clock.now()
    due = {}
    for number in range(60):
        business = f"biz-fan-{number:02d}"
        connection = Connection(
            connection_id=f"conn-fan-{number:02d}",
            business_id=business,
            provider=ProviderName.XERO,
            status=ConnectionStatus.CONNECTED,
            status_reason="connected",
            status_since=now,
            token_store="secretsmanager",
            created_at=now,
            created_by="admin",
        )
        # Two in three are due now; the rest later this hour.
        when = now - timedelta(minutes=1) if number % 3 else now + timedelta(minutes=30)
        connections.create(connection, next_refresh_at=when)
        if number % 3:
            due[business] = connection.connection_id
    shards = Counter(refresh_shard(c) for c in due.values())
    assert len(shards) >= 8  # spread over the shards
    sent: list[str] = []
    service.session.events.register("before-call.sqs.*", lambda model, **_: sent.append(model.name))

    assert _fan_out(service) == {"queued": len(due)}

    # One SendMessageBatch per ten due connections of a shard, and no one-by-one sends.
    assert Counter(sent) == {"SendMessageBatch": sum(math.ceil(n / 10) for n in shards.values())}
    sqs = service.session.client("sqs")
    bodies = []
    while messages := sqs.receive_message(
        QueueUrl=service.resources.refresh_queue_url, MaxNumberOfMessages=10
    ).get("Messages", []):
        bodies += [json.loads(m["Body"]) for m in messages]
        sqs.delete_message_batch(
            QueueUrl=service.resources.refresh_queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    assert sorted(b["business_id"] for b in bodies) == sorted(due)
    assert all(b["reason"] == "scheduled" and b["refresh_id"] for b in bodies)
    # Each connection moved to its own next slot (a stable offset), and queued only once.
    for business, connection_id in due.items():
        raw = table.get(business_pk(business), CONNECTION_SK)
        assert raw is not None
        assert raw[GSI1_SORT_KEY] == next_refresh_due(connection_id, timedelta(hours=1), now).isoformat()
    assert _fan_out(service) == {"queued": 0}
