"""Lists refresh benchmark (issue 5): what importing and refreshing the six lists costs on the large
seeded organisation (10,000 contacts, 500 accounts, 1,000 items) of each of the five ledgers, beside
a naive full re-import (fetch everything, write everything) measured in the same run.

For each ledger, in one process with no sockets (moto in-process, the simulator in-process):

  (a) the initial import right after connecting;
  (b) a scheduled refresh with nothing changed in the ledger;
  (c) a scheduled refresh after 100 contacts were edited in the simulator;
  naive: every list fetched whole (``since=None``) and every record written.

Ledger calls come from the simulator's request log. DynamoDB writes are counted by a botocore
``before-call`` hook on the boto3 session (one per PutItem/UpdateItem/DeleteItem, one per item of a
BatchWriteItem) and split into list records and bookkeeping (list states, the call budget's
counters, the refresh record, freshness and schedule on the connection). Ledger time is the
simulated time the phase took, budget pacing included; wall time is this machine's time.
Deliveries are the refresh worker's SQS deliveries; its Lambda time is what those invocations
would be billed for: the simulated time they slept (budget waits too short to hand back, a ledger's
short Retry-After, backoffs) plus their wall time here (in-process moto standing in for DynamoDB).

Run: ``.venv/bin/python -m bench.lists_bench`` (or ``make bench-lists``); results go to
bench/RESULTS.md under "Lists refresh (issue 5)".
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import httpx
from moto import mock_aws

from bench.harness import installed_runtime, prepare_benchmark_process, restored_environ
from bench.results import write_section
from infra.api_routes import FunctionName
from ledgerlink.models.common import ListType, ProviderName
from ledgerlink.services.budget import CallPurpose
from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.lists import ListRepository
from ledgerlink.wiring import list_service
from sandbox.aws_resources import REGION, create_resources
from sandbox.gateway import LocalGateway
from sandbox.lambda_host import FunctionHost
from sandbox.poller import QueuePoller, SimulatedQueueTime
from sandbox.simulators import PROVIDER_ORDER, SIMULATORS
from sandbox.simulators.harness import LedgerSimulator, SimClock, truncate_to_millis
from sandbox.transport import RoutingTransport

API_HOST = "127.0.0.1"
API_URL = f"http://{API_HOST}:8000"
BUSINESS = "bench-biz"
CHANGES = 100
SECTION = "## Lists refresh (issue 5)"
COMMAND = ".venv/bin/python -m bench.lists_bench"
KASHFLOW_LOGIN = {"username": "demo", "password": "demo-password", "memorable_word": "ledgerlink"}


# --- counting ----------------------------------------------------------------------------------


@dataclass
class WriteCounter:
    """DynamoDB writes seen by the botocore ``before-call`` hook, by kind of item."""

    by_kind: Counter[str] = field(default_factory=Counter)

    def __call__(self, model: Any, params: dict[str, Any], **_kwargs: Any) -> None:
        if model.service_model.service_name != "dynamodb":
            return
        body = json.loads(params.get("body") or b"{}")
        if model.name in ("PutItem", "UpdateItem", "DeleteItem"):
            self.by_kind[_kind(body.get("Item") or body.get("Key") or {})] += 1
        elif model.name == "BatchWriteItem":
            for requests in body.get("RequestItems", {}).values():
                for request in requests:
                    put = request.get("PutRequest", {}).get("Item")
                    self.by_kind[_kind(put or request.get("DeleteRequest", {}).get("Key", {}))] += 1
        elif model.name == "TransactWriteItems":
            for entry in body.get("TransactItems", []):
                operation = next(iter(entry.values()))
                self.by_kind[_kind(operation.get("Item") or operation.get("Key") or {})] += 1

    def snapshot(self) -> Counter[str]:
        return Counter(self.by_kind)


def _kind(key: dict[str, Any]) -> str:
    pk, sk = key.get("pk", {}).get("S", ""), key.get("sk", {}).get("S", "")
    if "#LIST#" in pk:
        return "records"
    if sk.startswith("BUDGET#"):
        return "budget"
    if sk.startswith("LISTSTATE#"):
        return "list_state"
    return "other"


@dataclass
class Measure:
    ledger_calls: int  # API calls (the token endpoint's are counted apart)
    token_calls: int
    record_writes: int
    other_writes: int
    wall_seconds: float
    ledger_seconds: float
    detail: dict[str, int] = field(default_factory=dict)
    deliveries: int = 0  # refresh worker SQS deliveries
    slept_seconds: float = 0.0  # simulated time slept inside those invocations
    invoked_wall_seconds: float = 0.0  # this machine's time inside them

    @property
    def lambda_seconds(self) -> float:
        return self.slept_seconds + self.invoked_wall_seconds

    @property
    def all_writes(self) -> int:
        return self.record_writes + self.other_writes


@contextmanager
def measuring(env: Bench) -> Iterator[list[Measure]]:
    """Measure what the block costs: ledger calls, DynamoDB writes, wall and ledger time."""
    found: list[Measure] = []
    writes_before = env.writes.snapshot()
    invocations_before = (env.deliveries, env.slept, env.invoked_wall)
    seq_before = _last_seq(env.simulator)
    sim_before = env.clock.now()
    started = time.perf_counter()
    yield found
    wall = time.perf_counter() - started
    writes = env.writes.snapshot() - writes_before
    calls = [e for e in env.simulator.request_log.entries() if e.seq > seq_before]
    token_calls = sum(1 for e in calls if "token" in e.path.lower())
    found.append(
        Measure(
            ledger_calls=len(calls) - token_calls,
            token_calls=token_calls,
            record_writes=writes["records"],
            other_writes=writes["list_state"] + writes["budget"] + writes["other"],
            wall_seconds=wall,
            ledger_seconds=(env.clock.now() - sim_before).total_seconds(),
            detail=dict(writes),
            deliveries=env.deliveries - invocations_before[0],
            slept_seconds=env.slept - invocations_before[1],
            invoked_wall_seconds=env.invoked_wall - invocations_before[2],
        )
    )


def _last_seq(simulator: LedgerSimulator) -> int:
    entries = simulator.request_log.entries()
    return entries[-1].seq if entries else 0


# --- the in-process service ---------------------------------------------------------------------


@dataclass
class Bench:
    provider: str
    session: Any
    resources: Any
    clock: SimClock
    simulator: LedgerSimulator
    transport: RoutingTransport
    writes: WriteCounter
    queue_time: SimulatedQueueTime
    host: FunctionHost = field(default_factory=FunctionHost)
    deliveries: int = 0
    slept: float = 0.0
    invoked_wall: float = 0.0

    def __post_init__(self) -> None:
        invoke = self.host.invoke

        def watched(function: FunctionName, event: dict[str, Any]) -> Any:
            """The refresh worker's invocations: how many, and the time Lambda would bill."""
            if function != FunctionName.REFRESH_LISTS or "Records" not in event:
                return invoke(function, event)
            sim_before, wall_before = self.clock.now(), time.perf_counter()
            try:
                return invoke(function, event)
            finally:
                self.deliveries += len(event["Records"])
                self.slept += (self.clock.now() - sim_before).total_seconds()
                self.invoked_wall += time.perf_counter() - wall_before

        self.host.invoke = watched  # type: ignore[method-assign]

    def client(self) -> httpx.Client:
        from sandbox.devauth import mint_token

        headers = {"Authorization": f"Bearer {mint_token(BUSINESS, 'admin')}"}
        return httpx.Client(transport=self.transport, base_url=API_URL, headers=headers)

    def drain(self) -> None:
        sqs = self.session.client("sqs")
        pollers = [
            QueuePoller(sqs, self.resources.refresh_queue_url, FunctionName.REFRESH_LISTS, self.host),
            QueuePoller(sqs, self.resources.publish_queue_url, FunctionName.PUBLISH_ITEM, self.host),
        ]
        for _ in range(2000):
            if sum(poller.poll_once() for poller in pollers) == 0:
                # A refresh paced by the call budget comes back after the wait it handed back.
                if self.queue_time.release_paced(pollers[0], self.clock.advance):
                    continue
                if not any(poller.make_failed_visible() for poller in pollers):
                    return
                self.clock.advance(60)  # a refresh held back by a Retry-After comes back
        raise RuntimeError("the queues did not drain")

    def start_connection(self) -> None:
        """Connect through the ledger's sign-in, up to the first import being queued."""
        admin = self.client()
        browser = httpx.Client(transport=self.transport)
        if self.provider == "kashflow":
            started = admin.post(
                "/v1/connection", json={"provider": "kashflow", "credentials": KASHFLOW_LOGIN}
            )
            assert started.status_code == 201, started.text
            return
        started = admin.post("/v1/connection", json={"provider": self.provider})
        assert started.status_code == 201, started.text
        landed = browser.get(started.json()["authorize_url"], follow_redirects=True)
        assert landed.status_code == 200, landed.text
        if landed.json()["status"] == "choose_organisation":
            organisations = admin.get("/v1/connection/organisations").json()["organisations"]
            chosen = admin.post(
                "/v1/connection/organisation", json={"organisation_id": organisations[0]["id"]}
            )
            assert chosen.status_code == 200, chosen.text

    def scheduled_refresh(self) -> None:
        queued = self.host.invoke(
            FunctionName.REFRESH_LISTS, {"source": "ledgerlink.schedule", "action": "fan_out"}
        )
        assert queued == {"queued": 1}, queued
        self.drain()

    def naive_reimport(self) -> None:
        """Fetch every list whole and write every record, comparing nothing."""
        service = list_service()
        connection = service._connections.get(BUSINESS)  # the benchmark reaches into the service
        assert connection is not None
        ledgers = service._ledgers
        adapter = ledgers.adapter(ProviderName(self.provider))
        # Paced by the same call budget as a refresh (or FreeAgent and KashFlow would stop on their
        # rate limits); its counter updates count as bookkeeping, like the refresh's.
        session = ledgers.session(connection, purpose=CallPurpose.REFRESH, deadline=None)
        repository = ListRepository(Table(self.session.client("dynamodb"), self.resources.table_name))
        for list_type in adapter.capabilities.lists:
            fetched = adapter.fetch_list(session, list_type, since=None)
            repository.write(connection.connection_id, list_type, fetched.records)

    def contact_count(self) -> int:
        lists: dict[str, Any] = self.client().get("/v1/connection").json()["lists"]
        return int(lists[ListType.CONTACTS.value]["record_count"])


@contextmanager
def bench_for(provider: str) -> Iterator[Bench]:
    with restored_environ(), mock_aws():
        session = boto3.session.Session(region_name=REGION)
        queue_time = SimulatedQueueTime(session)
        resources = create_resources(session)
        writes = WriteCounter()
        session.events.register("before-call", writes)
        host = f"{provider}.sim"
        os.environ.update(
            resources.environment(
                api_url=API_URL, ledger_origins={provider: f"https://{host}"}, return_origins=[]
            )
        )
        clock = SimClock()
        simulator = SIMULATORS[provider](clock, auto_consent=True, preset="large")
        transport = RoutingTransport({host: simulator.transport()})
        env = Bench(provider, session, resources, clock, simulator, transport, writes, queue_time)
        transport.add(API_HOST, httpx.WSGITransport(app=LocalGateway(env.host)))
        with installed_runtime(clock, transport, session):
            yield env


# --- 100 changes in each simulator --------------------------------------------------------------


def _largest(candidates: Any, contacts: Callable[[Any], Any]) -> Any:
    return max(candidates, key=lambda org: len(contacts(org)))


def edit_contacts(simulator: Any, provider: str, count: int) -> None:
    """Rename ``count`` contacts of the large organisation, as a bookkeeper would in the ledger,
    each with the ledger's own change stamp moved to now."""
    now = truncate_to_millis(simulator.clock.now())
    with simulator.lock:
        if provider == "xero":
            rows = list(_largest(simulator.orgs.values(), lambda o: o.contacts).contacts.values())[:count]
            for row in rows:
                row["Name"] += " (edited)"
                row["UpdatedDateUTC"] = now
        elif provider == "quickbooks":
            company = _largest(simulator.companies.values(), lambda c: c.entities["Vendor"])
            for row in list(company.entities["Vendor"].values())[:count]:
                row["DisplayName"] += " (edited)"
                row["MetaData"] = {**row["MetaData"], "LastUpdatedTime": now}
        elif provider == "sage":
            business = _largest(simulator.businesses.values(), lambda b: b.resources["contacts"])
            live = [row for row in business.resources["contacts"].values() if row["deleted_at"] is None]
            for row in live[:count]:
                row["name"] += " (edited)"
                row["displayed_as"] = f"{row['name']} ({row['reference']})"
                row["updated_at"] = now
        elif provider == "freeagent":
            company = _largest(simulator.companies.values(), lambda c: c.contacts)
            for row in list(company.contacts.values())[:count]:
                row["organisation_name"] += " (edited)"
                row["updated_at"] = now.replace(microsecond=0)
        elif provider == "kashflow":
            company = _largest(simulator.companies.values(), lambda c: c.suppliers)
            for row in list(company.suppliers.values())[:count]:
                row["Name"] += " (edited)"
                row["LastUpdatedDate"] = now
        else:  # pragma: no cover - every simulator is listed
            raise ValueError(provider)


# --- the run -------------------------------------------------------------------------------------


@dataclass
class LedgerResult:
    provider: str
    contacts: int
    initial: Measure
    unchanged: Measure
    changed: Measure
    naive: Measure
    incremental_lists: int


def run_ledger(provider: str) -> LedgerResult:
    with bench_for(provider) as env:
        env.start_connection()
        with measuring(env) as initial:
            env.drain()
        contacts = env.contact_count()
        with measuring(env) as naive:
            env.naive_reimport()
        env.clock.advance(2 * 3600)  # past the connection's hourly slot
        with measuring(env) as unchanged:
            env.scheduled_refresh()
        env.clock.advance(3600)
        edit_contacts(env.simulator, provider, CHANGES)
        env.clock.advance(3600)
        with measuring(env) as changed:
            env.scheduled_refresh()
        incremental = len(SIMULATORS_CAPABILITIES[provider])
        return LedgerResult(provider, contacts, initial[0], unchanged[0], changed[0], naive[0], incremental)


# The refresh function's memory size (infra/constants.py) rests on these: the ledgers with the
# largest single fetches (Xero's 10,000 contacts in the import, KashFlow's every list every time).
MEMORY_PROVIDERS = ("xero", "kashflow")


def peak_memory(provider: str) -> tuple[float, float]:
    """Peak Python allocations (MiB) during (a) the initial import and (b) a refresh, in a run of
    their own (tracing slows everything, so the timed run does not trace). Moto and the simulator
    run in the same process, so this overstates what the refresh itself holds."""
    with bench_for(provider) as env:
        env.start_connection()
        tracemalloc.start()
        try:
            env.drain()
            peak_import = tracemalloc.get_traced_memory()[1]
            env.clock.advance(2 * 3600)
            tracemalloc.reset_peak()
            env.scheduled_refresh()
            peak_refresh = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return peak_import / 2**20, peak_refresh / 2**20


def _capabilities() -> dict[str, tuple[ListType, ...]]:
    from ledgerlink.providers import registry

    return {p: registry.capabilities(ProviderName(p)).incremental_lists for p in PROVIDER_ORDER}


SIMULATORS_CAPABILITIES = _capabilities()


def _ratio(ours: float, naive: float) -> str:
    if naive == 0:
        return "n/a"
    value = ours / naive
    return "0" if value == 0 else f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x"


NOTES = (
    "Reading the tables: a refresh with nothing changed makes one call per list that has an",
    "incremental filter (Xero's accounts and contacts, QuickBooks' name lists, FreeAgent's contacts)",
    "plus a whole fetch of the lists without one (Xero's tax rates, items, tracking and Projects API projects are one call",
    "each; Sage's ledger accounts are three pages), and writes no list record. Sage's incremental",
    "lists take two calls per endpoint (changes, then `deleted_since` for deletions). KashFlow has no",
    "incremental filter at all: every refresh fetches everything, and only the fingerprint diff keeps",
    "its writes at zero (its wall time is the whole stored list read back to compare). Bookkeeping is",
    "mostly the call budget: one conditional UpdateItem per ledger call. The initial import is the",
    "naive import by nature; its ledger time is the budget's pacing at the refresh's share.",
    "Lambda time: a refresh hands a budget wait back to the queue where stopping loses nothing (at a",
    "list's start, or inside a paged fetch that resumes: Xero's and KashFlow's contacts), and sleeps",
    "it out elsewhere (inside a multi-call list that cannot resume yet, such as FreeAgent's or",
    "KashFlow's items): the asleep part. KashFlow's working time includes the stored fingerprints",
    "each delivery looks up to compare its pages (BatchGetItem, a hundred keys a call).",
)


def render(results: list[LedgerResult], total_seconds: float, memory: dict[str, tuple[float, float]]) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}` (or `make bench-lists`). Machine: `{platform.machine()}`, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, run on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; the whole run took {total_seconds:.0f} s.",
        "",
        "Each ledger's large seeded organisation (10,000 contacts, 500 accounts, 1,000 items), served",
        "in-process by its simulator, with moto in-process for AWS. *Ledger calls* come from the",
        "simulator's request log (API calls; a token refresh, when the access token had expired, is",
        "shown apart); *record writes* are DynamoDB writes of list records, *bookkeeping*",
        "the other DynamoDB writes (per-list state, one call-budget counter update per ledger call, the",
        "refresh record, freshness and the next due time on the connection), counted by a botocore",
        "`before-call` hook. *Ledger time* is the simulated time the phase took, pacing by the call",
        "budget included (a refresh may use half of each budget window, 5 to 6.7 s by ledger). *Deliveries* are the",
        "refresh worker's SQS deliveries (a refresh hands each budget wait over 2 s back to the queue",
        "and carries on in the next); *Lambda s* is what they would be billed for: the simulated time",
        "slept inside them (shorter budget waits, waits inside a list fetch that cannot resume) plus",
        "their wall time here, moto in-process standing in for DynamoDB. Ratios are ours ÷ the",
        "naive full re-import (every list fetched whole, every record written) measured in the same",
        "run; the naive run's calls and record writes do not depend on what changed, so it is measured",
        "once per ledger. (b) and (c) are scheduled (hourly, incremental) refreshes.",
        "",
        "| ledger | (b) calls ÷ naive | (b) record writes | (c) record writes | (c) all writes ÷ naive "
        "| (a) ledger time s | (b) deliveries | (b) Lambda s (asleep + working) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        unchanged = result.unchanged
        lines.append(
            f"| {result.provider} | {_ratio(unchanged.ledger_calls, result.naive.ledger_calls)} "
            f"| {unchanged.record_writes} | {result.changed.record_writes} "
            f"| {_ratio(result.changed.all_writes, result.naive.all_writes)} | {result.initial.ledger_seconds:.0f} "
            f"| {unchanged.deliveries} | {unchanged.lambda_seconds:.1f} "
            f"({unchanged.slept_seconds:.1f} + {unchanged.invoked_wall_seconds:.1f}) |"
        )
    lines += ["", *NOTES, ""]
    if memory:
        lines += [
            "Memory (what sizes `refresh_lists`): peak Python allocations, traced in a run of their own,",
            "with moto and the simulator in the same process (so an overstatement): "
            + "; ".join(
                f"{provider} (a) {peaks[0]:.0f} MiB, (b) {peaks[1]:.0f} MiB"
                for provider, peaks in memory.items()
            )
            + ". The handler's imports take ~80 MiB of a fresh interpreter's RSS.",
            "",
        ]
    for result in results:
        naive = result.naive
        lines += [
            f"### {result.provider} ({result.contacts:,} contacts; incremental filter on "
            f"{result.incremental_lists} of 6 lists)",
            "",
            "| phase | ledger calls | record writes | bookkeeping writes | wall s | ledger time s "
            "| deliveries | Lambda s | calls ÷ naive | record writes ÷ naive | all writes ÷ naive |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, measure in (
            ("(a) initial import", result.initial),
            ("(b) refresh, nothing changed", result.unchanged),
            (f"(c) refresh after {CHANGES} changes", result.changed),
            ("naive full re-import", naive),
        ):
            tokens = f" (+{measure.token_calls} token)" if measure.token_calls else ""
            lines.append(
                f"| {label} | {measure.ledger_calls:,}{tokens} | {measure.record_writes:,} | {measure.other_writes:,} "
                f"| {measure.wall_seconds:.1f} | {measure.ledger_seconds:.0f} "
                f"| {measure.deliveries or '-'} | {f'{measure.lambda_seconds:.1f}' if measure.deliveries else '-'} "
                f"| {_ratio(measure.ledger_calls, naive.ledger_calls)} "
                f"| {_ratio(measure.record_writes, naive.record_writes)} "
                f"| {_ratio(measure.all_writes, naive.all_writes)} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    providers = (argv if argv is not None else sys.argv[1:]) or list(PROVIDER_ORDER)
    prepare_benchmark_process()
    started = time.perf_counter()
    results = []
    for provider in providers:
        print(f"{provider}: ", end="", flush=True)
        # The handlers' metrics (EMF lines) go to stdout, as in Lambda: keep them out of the report.
        with contextlib.redirect_stdout(io.StringIO()):
            result = run_ledger(provider)
        results.append(result)
        print(
            f"import {result.initial.ledger_calls} calls / {result.initial.record_writes} writes; "
            f"unchanged {result.unchanged.ledger_calls} / {result.unchanged.record_writes}; "
            f"changed {result.changed.ledger_calls} / {result.changed.record_writes}; "
            f"naive {result.naive.ledger_calls} / {result.naive.record_writes}",
            flush=True,
        )
    memory = {}
    for provider in MEMORY_PROVIDERS:
        if provider in providers:
            with contextlib.redirect_stdout(io.StringIO()):
                memory[provider] = peak_memory(provider)
    section = render(results, time.perf_counter() - started, memory)
    if len(results) == len(PROVIDER_ORDER):
        write_section(SECTION, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
