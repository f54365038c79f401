"""`ledgerlink soak`: the local runtime under load and random faults for a while, then an audit.

The runtime runs as its own process (``ledgerlink local --auto-consent``), exactly as a user starts
it, so its memory can be sampled from outside. This process plays everyone else:

* the capture product: businesses spread over the five ledgers, each connected through its
  ledger's sign-in (auto-consent) and fed coded items at a steady rate (some with a PDF, some
  captured first and published later, some sent twice as a retrying client would);
* the ledgers misbehaving: at random, through each simulator's ``/_sandbox/faults``, 429 storms,
  500s and 503s, timeouts, writes whose response is lost, consent revoked, and one ledger down
  (every path answering 503) for a minute;
* the Admins: a connection that needs a reconnect is reconnected (POST /v1/connection/reconnect),
  and, once the faults stop, items the service gave up on are published again, as their hint says.

At the end it checks, from the API and the simulators' write logs: every captured item is
published or says why not; no document, attachment or supplier exists twice in any ledger; every
published item is in its ledger exactly once and every unpublished one not at all; every
connection is connected or gives its reason; the runtime's memory stayed within a bound.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sandbox.demo import (
    KASHFLOW_LOGIN,
    LEDGERS,
    LIST_TYPES,
    DemoFailed,
    Ledger,
    _all_records,
    _items,
    _ok,
    _pdf,
)
from sandbox.devauth import mint_token
from sandbox.local import free_port

ROOT = Path(__file__).resolve().parents[1]

# Where each ledger's API lives (faults go there; its sign-in and token endpoints stay healthy
# except while the ledger is down), and where a purchase document keeps the item's reference.
API_PATHS: dict[str, tuple[str, ...]] = {
    "xero": ("/api.xro/2.0/*",),
    "quickbooks": ("/v3/company/*",),
    "sage": ("/v3.1/*",),
    "freeagent": ("/v2/[!t]*",),  # not /v2/token_endpoint
    "kashflow": ("/v2/purchases*", "/v2/suppliers*", "/v2/customers*"),
}
REFERENCE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "xero": lambda body: body.get("InvoiceNumber"),
    "quickbooks": lambda body: body.get("DocNumber"),
    "sage": lambda body: body.get("vendor_reference"),
    "freeagent": lambda body: body.get("reference"),
    "kashflow": lambda body: body.get("SupplierReference"),
}
# The write-log kind of a document attached to a purchase, per ledger.
ATTACHMENT_KIND = {
    "xero": "Attachment",
    "quickbooks": "Attachable",
    "sage": "attachments",
    "freeagent": "Attachment",
    "kashflow": "File",
}
# KashFlow signs in with a login, not a revocable OAuth consent.
REVOCABLE = frozenset({"xero", "quickbooks", "sage", "freeagent"})
# One cycle of random faults: each kind at least once, the cheap ones more often. A timeout or a
# lost response holds a ledger call until the client gives up (10 s), so they are the rarest.
FAULT_CYCLE = (
    "429",
    "429",
    "429",
    "500",
    "500",
    "503",
    "503",
    "timeout",
    "lost_response",
    "lost_response",
    "revoke",
)
RARE_FIRST = frozenset({"revoke", "lost_response", "timeout"})
TERMINAL = frozenset({"published", "rejected", "failed"})
NEW_SUPPLIER = re.compile(r"^Demo New Supplier (\d+)$")
SOAK_SUPPLIER = re.compile(r"Soak Supplier soak-[a-z]+-\d+ \d+")
POOL_SIZE = 40
CODING_LISTS = ("categories", "tax_rates", "contacts")
# Captures come from a few clients at once, as from a capture product's many users; each client
# keeps its share of the rate.
CAPTURE_WORKERS = 4  # coded items per business, reused with fresh ids and references


# After the load, how long the one outage waits at most for a call to meet it.
OUTAGE_MEETS_A_CALL_WITHIN = 120.0


@dataclass
class SoakConfig:
    duration: float = 600.0  # seconds of load and faults
    businesses: int = 50
    rate: float = 1.0  # items captured per second, over all businesses
    fault_every: float = 10.0  # seconds between random faults
    down_seconds: float = 60.0  # the one ledger outage
    # After the load, every item must reach a final state. Settling goes on while it makes
    # progress: it stops when the pending items have not moved for max(settle_stall,
    # settle_per_item x pending) seconds, or at the hard limit settle_timeout.
    settle_timeout: float = 3600.0
    settle_stall: float = 180.0
    settle_per_item: float = 10.0
    settle_poll: float = 10.0
    # Memory bound: the runtime's RSS may grow this much over its level after set-up (the moto
    # tables, queues and simulator books legitimately grow with the items they hold).
    rss_growth_limit_mb: float = 400.0
    seed: int = 9
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


@dataclass
class Business:
    index: int
    business_id: str
    ledger: Ledger
    api: httpx.Client
    pool: list[dict[str, Any]] = field(default_factory=list)
    captured: dict[str, dict[str, Any]] = field(default_factory=dict)  # item id -> item
    reconnects: int = 0
    held_seen: int = 0


@dataclass
class SoakReport:
    started: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    captured: int = 0
    resent: int = 0
    with_document: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    per_ledger: dict[str, dict[str, int]] = field(default_factory=dict)
    faults: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> {injected, fired}
    reconnects: int = 0
    held_released: int = 0
    republished: int = 0
    late_published: int = 0  # not published on the last read, published when read again
    connections: dict[str, int] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    # Why the items that were not published were not: "status code: message" -> count.
    explanations: dict[str, int] = field(default_factory=dict)
    capture_ms: dict[str, float] = field(default_factory=dict)  # median and p95 of one capture
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# --------------------------------------------------------------------------------------------
# The runtime, in its own process
# --------------------------------------------------------------------------------------------


class RuntimeProcess:
    """``ledgerlink local --auto-consent`` as a child process, with its URLs and its memory."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self._process: subprocess.Popen[str] | None = None
        self._output: list[str] = []

    def start(self, timeout: float = 180) -> RuntimeProcess:
        self._process = subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
            [sys.executable, "-m", "sandbox.cli", "local", "--port", str(free_port()), "--auto-consent"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ready = threading.Event()

        def read() -> None:  # a thread: a silent process cannot block the deadline below
            assert self._process is not None and self._process.stdout is not None
            for line in self._process.stdout:
                self._output.append(line)
                del self._output[:-200]  # the tail is enough to say why it stopped
                if line.startswith("Mint a sign-in token"):
                    ready.set()

        threading.Thread(target=read, name="runtime-output", daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise DemoFailed("ledgerlink local did not start:\n" + "".join(self._output[-40:]))
        for words in (line.split() for line in self._output):
            if words[:2] == ["AWS", "(moto)"]:
                self.urls["aws"] = words[2]
            elif words and words[0] in ("API", *API_PATHS):
                self.urls[words[0]] = words[1].removesuffix("/v1")
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def rss_mb(self) -> float:
        """Resident memory of the runtime process (Linux /proc), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS for the runtime process")

    def tail(self) -> str:
        return "".join(self._output[-30:])

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)


class RssSampler(threading.Thread):
    def __init__(self, runtime: RuntimeProcess, every: float = 2.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self._runtime, self._every = runtime, every
        self.samples: list[tuple[float, float]] = []  # (monotonic, MiB)
        self._halt = threading.Event()

    def sample(self) -> float:
        value = self._runtime.rss_mb()
        self.samples.append((time.monotonic(), value))
        return value

    def run(self) -> None:
        while not self._halt.wait(self._every):
            if self._runtime.alive():
                self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


# --------------------------------------------------------------------------------------------
# The soak
# --------------------------------------------------------------------------------------------


class Soak:
    def __init__(self, runtime: RuntimeProcess, config: SoakConfig) -> None:
        self.runtime = runtime
        self.config = config
        self.rng = random.Random(config.seed)
        self.report = SoakReport(
            started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            config={
                "duration_s": config.duration,
                "businesses": config.businesses,
                "rate_per_s": config.rate,
                "fault_every_s": config.fault_every,
                "down_s": config.down_seconds,
            },
        )
        self.browser = httpx.Client(timeout=120, follow_redirects=True)
        self.businesses: list[Business] = []
        self._lock = threading.Lock()
        self._stop_load = threading.Event()
        self._injected: dict[tuple[str, int], str] = {}  # (provider, rule id) -> label
        self._fired: Counter[str] = Counter()  # from rules withdrawn before the end
        self._s3: Any = None
        self._sqs: Any = None
        self._capture_seconds: list[float] = []
        self._api_calls = ThreadPoolExecutor(max_workers=4, thread_name_prefix="capture-api")

    # -- helpers ---------------------------------------------------------------------------------

    def log(self, line: str) -> None:
        self.config.log(f"[soak {time.strftime('%H:%M:%S')}] {line}")

    def control(self, provider: str) -> str:
        return f"{self.runtime.urls[provider]}/_sandbox"

    def inject(self, provider: str, label: str, spec: dict[str, Any]) -> list[int]:
        added = _ok(self.browser.post(f"{self.control(provider)}/faults", json=spec), 201)
        ids = [rule["rule_id"] for rule in added]
        with self._lock:
            for rule_id in ids:
                self._injected[(provider, rule_id)] = label
        return ids

    # -- set-up ----------------------------------------------------------------------------------

    def connect_all(self) -> None:
        self._s3, self._sqs = self._aws("s3"), self._aws("sqs")
        for index in range(self.config.businesses):
            ledger = LEDGERS[index % len(LEDGERS)]
            business_id = f"soak-{ledger.provider}-{index:02d}"
            api = httpx.Client(
                base_url=self.runtime.urls["API"],
                headers={"Authorization": f"Bearer {mint_token(business_id, 'admin')}"},
                timeout=120,
            )
            business = Business(index, business_id, ledger, api)
            self._connect(business)
            self.businesses.append(business)
        self.log(f"{len(self.businesses)} businesses connected; waiting for their first imports")
        for done, business in enumerate(self.businesses, start=1):
            self._wait_for_lists(business)
            business.pool = self._coded_pool(business)
            if done % 10 == 0:
                self.log(f"{done} businesses imported and ready to capture")
        self.log("every business has its six lists")

    def _connect(self, business: Business) -> None:
        api = business.api
        if business.ledger.provider == "kashflow":
            _ok(api.post("/v1/connection", json={"provider": "kashflow", "credentials": KASHFLOW_LOGIN}), 201)
            return
        started = _ok(api.post("/v1/connection", json={"provider": business.ledger.provider}), 201)
        landed = _ok(self.browser.get(started["authorize_url"]))
        if landed["status"] == "choose_organisation":
            # Spread the businesses over the organisations the consent covers (rate limits are
            # per organisation, as they would be for unrelated businesses).
            offered = _ok(api.get("/v1/connection/organisations"))["organisations"]
            chosen = offered[(business.index // len(LEDGERS)) % len(offered)]
            _ok(api.post("/v1/connection/organisation", json={"organisation_id": chosen["id"]}))

    def _wait_for_lists(self, business: Business, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            connection = _ok(business.api.get("/v1/connection"))
            lists = connection["lists"]
            if len(lists) >= 5 and all(entry.get("refreshed_at") for entry in lists.values()):
                return
            time.sleep(2)
        raise DemoFailed(f"{business.business_id}: the first import did not finish in {timeout:.0f}s")

    def _coded_pool(self, business: Business) -> list[dict[str, Any]]:
        """Items coded from the business's imported lists, as the demo codes them; suppliers new to
        the ledger get names of this business's own (businesses may share an organisation)."""
        # Coding needs three of the six lists; the others are not worth fetching 50 times.
        lists = {t: _all_records(business.api, t) if t in CODING_LISTS else [] for t in LIST_TYPES}
        pool = _items(replace(business.ledger, items=POOL_SIZE), lists)
        for item in pool:
            new = NEW_SUPPLIER.match(item["supplier"]["name"])
            if new:
                item["supplier"] = {"name": f"Soak Supplier {business.business_id} {new.group(1)}"}
        return pool

    # -- load --------------------------------------------------------------------------------------

    def _next_item(self, business: Business, number: int) -> dict[str, Any]:
        item = json.loads(json.dumps(business.pool[number % len(business.pool)]))
        item["id"] = f"{business.business_id}-{number:05d}"
        item["reference"] = f"S{business.index:02d}-{number:05d}"
        if number % 4 == 0:
            key = f"soak/{business.business_id}/{number:05d}.pdf"
            item["document"] = {
                "key": key,
                "file_name": f"{number:05d}.pdf",
                "content_type": "application/pdf",
            }
            self._s3.put_object(
                Bucket=self._bucket(), Key=key, Body=_pdf(item["id"]), ContentType="application/pdf"
            )
        else:
            item.pop("document", None)
        return item

    def _bucket(self) -> str:
        if not hasattr(self, "_bucket_name"):
            names = [b["Name"] for b in self._s3.list_buckets()["Buckets"]]
            self._bucket_name = next(name for name in names if name.endswith("-documents"))
        return self._bucket_name

    def _queue_url(self) -> str:
        if not hasattr(self, "_publish_queue_url"):
            sqs = self._aws("sqs")
            urls = sqs.list_queues().get("QueueUrls", [])
            self._publish_queue_url = next(u for u in urls if "publish" in u and "dlq" not in u.lower())
        return self._publish_queue_url

    def _aws(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.runtime.urls["aws"],
            region_name="eu-west-2",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def _send(self, business: Business, item: dict[str, Any], copy: str) -> None:
        """What the capture product does most: put the item on the FIFO publish queue itself."""
        self._sqs.send_message(
            QueueUrl=self._queue_url(),
            MessageBody=json.dumps({"business_id": business.business_id, "action": "publish", "item": item}),
            MessageGroupId=business.business_id,
            MessageDeduplicationId=f"{item['id']}-{copy}",
        )

    def capture_loop(self, businesses: list[Business], interval: float) -> None:
        """Capture at a steady rate, round ``businesses`` in a shuffled order. Most items go on
        the queue; one in five through POST /v1/items, half of those captured first and published
        a moment later; one in twenty is sent twice (a redelivery, or a client that retried)."""
        numbers: Counter[str] = Counter()
        order = list(businesses)
        next_at = time.monotonic()
        turn = 0
        while not self._stop_load.is_set():
            if turn % len(order) == 0:
                self.rng.shuffle(order)
            business = order[turn % len(order)]
            turn += 1
            numbers[business.business_id] += 1
            item = self._next_item(business, numbers[business.business_id])
            twice = self.rng.random() < 0.05
            if self.rng.random() < 0.8:
                began = time.monotonic()
                try:
                    for copy in ("a", "b") if twice else ("a",):
                        self._send(business, item, copy)
                    self._captured(business, item, twice, time.monotonic() - began)
                except Exception as error:  # any failure to capture is a finding
                    self.report.problems.append(f"capture of {item['id']} failed: {error}")
            else:
                # The API answers behind the business's publisher (one invocation at a time per
                # function locally), so these calls run beside the steady rate, not in it.
                self._api_calls.submit(self._capture_by_api, business, item, twice)
            next_at = max(next_at + interval, time.monotonic() - 5 * interval)  # no catch-up burst
            self._stop_load.wait(max(0.0, next_at - time.monotonic()))

    def _captured(self, business: Business, item: dict[str, Any], twice: bool, seconds: float) -> None:
        with self._lock:
            business.captured[item["id"]] = item
            self.report.resent += twice
            self._capture_seconds.append(seconds)

    def _capture_by_api(self, business: Business, item: dict[str, Any], twice: bool) -> None:
        """POST /v1/items (half of them captured first and published a moment later). A call that
        times out is sent again, as a client would: capture is idempotent."""
        publish_now = self.rng.random() < 0.5
        began = time.monotonic()
        sends = 2 if twice else 1
        for attempt in range(1, 4):
            try:
                for _copy in range(sends):
                    _ok(business.api.post("/v1/items", json={"item": item, "publish": publish_now}), 201)
                if not publish_now:
                    _ok(business.api.post(f"/v1/items/{item['id']}/publish"), 202)
                self._captured(business, item, twice or attempt > 1, time.monotonic() - began)
                return
            except httpx.TimeoutException:
                sends = 1
                continue
            except Exception as error:  # any other failure to capture is a finding
                self.report.problems.append(f"capture of {item['id']} failed: {error}")
                return
        self.report.problems.append(f"capture of {item['id']} timed out three times")

    def fault_loop(self) -> None:
        """A random fault every few seconds; one ledger goes down once, near the middle."""
        duration = self.config.duration
        down_at = time.monotonic() + duration * 0.4
        down_seconds = min(self.config.down_seconds, duration / 3)
        down: tuple[str, list[int], float] | None = None
        down_done = False
        revoked: set[str] = set()
        cycle: list[str] = []
        try:
            while not self._stop_load.wait(self.config.fault_every * (0.5 + self.rng.random())):
                now = time.monotonic()
                # The outage lasts its time and until a call has met it: the local runtime runs one
                # publish invocation at a time, and a timeout fault at another ledger holds it ~35 s.
                if down is not None and now >= down[2] and self._outage_met_a_call(down):
                    self._end_outage(down)
                    down = None
                if not down_done and now >= down_at:
                    # Not a ledger whose consent was revoked: its businesses wait for a reconnect
                    # and would not call it while it is down (with one business per ledger, none would).
                    up = [ledger.provider for ledger in LEDGERS if ledger.provider not in revoked]
                    provider = self.rng.choice(up or [ledger.provider for ledger in LEDGERS])
                    ids = self.inject(provider, "ledger down", {"kind": "503", "path": "*", "count": None})
                    down, down_done = (provider, ids, now + down_seconds), True
                    self._count_injected("ledger down")
                    self.log(f"{provider} is down (every call answers 503) for {down_seconds:.0f}s or more")
                    continue
                if not cycle:
                    cycle = list(FAULT_CYCLE)
                    self.rng.shuffle(cycle)
                    # The rare kinds first in each cycle, so that even a short soak meets them
                    # early enough for their effects to play out before the load stops.
                    cycle.sort(key=lambda kind: kind in RARE_FIRST)  # pop() takes from the end
                kind = cycle.pop()
                providers = [
                    ledger.provider
                    for ledger in LEDGERS
                    if (kind != "revoke" or ledger.provider in REVOCABLE)
                    and (down is None or ledger.provider != down[0])
                ]
                provider = self.rng.choice(providers)
                if kind == "revoke":
                    revoked.add(provider)
                self._inject_random(provider, kind)
            if down is not None:
                # The load ended first. The down ledger's items still wait for it: it stays down until
                # one of their calls meets the outage (settling has begun), then comes back.
                deadline = time.monotonic() + OUTAGE_MEETS_A_CALL_WITHIN
                while time.monotonic() < deadline and not self._outage_met_a_call(down):
                    time.sleep(1.0)
        except Exception as error:  # a soak whose faults stopped early must not pass for a clean one
            self.report.problems.append(f"the fault injection stopped: {error!r}")
            raise
        finally:
            if down is not None:  # the load ended first: the ledger comes back for settling
                self._end_outage(down)

    def _outage_met_a_call(self, down: tuple[str, list[int], float]) -> bool:
        provider, ids, _until = down
        rules = _ok(self.browser.get(f"{self.control(provider)}/faults"))
        return any(rule["rule_id"] in ids and rule["fired"] > 0 for rule in rules)

    def _end_outage(self, down: tuple[str, list[int], float]) -> None:
        provider, ids, _until = down
        for rule_id in ids:
            removed = _ok(self.browser.delete(f"{self.control(provider)}/faults/{rule_id}"))
            self._fired["ledger down"] += removed["fired"]
            self._injected.pop((provider, rule_id), None)
        self.log(f"{provider} is back up")

    def _count_injected(self, label: str) -> None:
        entry = self.report.faults.setdefault(label, {"injected": 0, "fired": 0})
        entry["injected"] += 1

    def _inject_random(self, provider: str, kind: str) -> None:
        paths = API_PATHS[provider]
        if kind == "429":
            label = "429 storm"
            spec = {"kind": "429", "count": self.rng.randint(5, 20), "retry_after": self.rng.randint(1, 5)}
        elif kind in ("500", "503"):
            label = kind
            spec = {"kind": kind, "count": self.rng.randint(1, 3)}
        elif kind == "lost_response":
            label = "commit, response lost"
            spec = {"kind": kind, "count": 1, "method": "POST,PUT"}
        elif kind == "timeout":
            label = "timeout"
            spec = {"kind": kind, "count": 1}
        else:
            label = "consent revoked"
            spec = {"kind": "revoke", "count": 1}
        self.inject(provider, label, {"faults": [{**spec, "path": path} for path in paths[:1]]})
        self._count_injected(label)
        self.log(f"fault: {label} at {provider}")

    def reconnect_loop(self, stop: threading.Event, every: float = 10.0) -> None:
        """The Admins: reconnect any connection that needs it (the held items then publish)."""
        while not stop.wait(every):
            for business in self.businesses:
                if stop.is_set():
                    return
                try:
                    self.reconnect_if_needed(business)
                except (DemoFailed, httpx.HTTPError) as error:
                    # The ledger may be down right now: try again on the next round.
                    self.log(f"{business.business_id}: reconnect failed for now: {error}")

    def reconnect_if_needed(self, business: Business) -> bool:
        connection = _ok(business.api.get("/v1/connection"))
        if connection["status"] != "needs_reconnect":
            return False
        held = len(self.views(business, status="held"))
        business.held_seen += held
        if business.ledger.provider == "kashflow":
            _ok(business.api.post("/v1/connection/reconnect", json={"credentials": KASHFLOW_LOGIN}))
        else:
            started = _ok(business.api.post("/v1/connection/reconnect", json={}))
            landed = _ok(self.browser.get(started["authorize_url"]))
            if landed.get("status") != "reconnected":
                raise DemoFailed(f"reconnect landed on {landed}")
        business.reconnects += 1
        self.log(
            f"{business.business_id} needed a reconnect ({connection['status_reason']}); "
            f"reconnected with {held} items held"
        )
        return True

    # -- settling and the audit -------------------------------------------------------------------

    def views(self, business: Business, status: str | None = None) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            if status:
                params["status"] = status
            page = _ok(business.api.get("/v1/items", params=params))
            found |= {view["item"]["id"]: view for view in page["items"]}
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    def collect_fault_counts(self) -> None:
        """Fired counts of every rule injected, read from the simulators, then all faults cleared."""
        for ledger in LEDGERS:
            rules = _ok(self.browser.get(f"{self.control(ledger.provider)}/faults"))
            for rule in rules:
                label = self._injected.get((ledger.provider, rule["rule_id"]))
                if label:
                    self._fired[label] += rule["fired"]
            response = self.browser.delete(f"{self.control(ledger.provider)}/faults")
            if response.status_code != 204:
                raise DemoFailed(f"could not clear {ledger.provider}'s faults: {response.status_code}")
        for label, fired in self._fired.items():
            self.report.faults.setdefault(label, {"injected": 0, "fired": 0})["fired"] = fired

    def _unsettled(self, item: dict[str, Any], view: dict[str, Any] | None) -> str | None:
        """Why an item is not in a final state yet (None when it is): published (with its document
        attached or the failure to attach explained), or failed/rejected with its reason."""
        if view is None:
            return "missing"  # still on the queue, not yet recorded
        status = view["status"]
        if status not in TERMINAL:
            return str(status)
        if status == "published" and "document" in item and not view.get("attachment_id"):
            return None if view.get("last_error") else "published, document not attached yet"
        return None

    def settle(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Faults are off: reconnect what needs it, publish again what was given up on (once), and
        wait until every captured item is in a final state. The wait is bounded by the progress
        it makes, not by a fixed time: it ends when the items still pending have not moved for a
        stall allowance proportional to how many there are (the local runtime publishes one
        invocation at a time), or at the hard limit. Returns the views of the last pass, in which
        every item is final unless a problem says which are not."""
        started = time.monotonic()
        hard_deadline = started + self.config.settle_timeout
        republished: set[str] = set()
        views: dict[str, dict[str, dict[str, Any]]] = {}
        pending: dict[str, str] = {}  # item id -> why it is not final
        best, progressed_at = None, started
        while True:
            for business in self.businesses:
                if time.monotonic() >= hard_deadline:
                    break
                try:
                    self.reconnect_if_needed(business)
                except (DemoFailed, httpx.HTTPError) as error:
                    self.log(f"{business.business_id}: reconnect failed: {error}")
            pending = {}
            for business in self.businesses:
                seen = views.get(business.business_id)
                # A business whose items were all final on the last pass stays final, except
                # that the final pass (below) reads every business again.
                if seen is None or any(self._unsettled(i, seen.get(k)) for k, i in business.captured.items()):
                    seen = views[business.business_id] = self.views(business)
                for item_id, item in business.captured.items():
                    view = seen.get(item_id)
                    if view is not None and view["status"] == "failed" and item_id not in republished:
                        # The hint says: publish it again when the ledger is back. It is back.
                        _ok(business.api.post(f"/v1/items/{item_id}/publish"), 202)
                        republished.add(item_id)
                        pending[item_id] = "published again"
                        continue
                    why = self._unsettled(item, view)
                    if why:
                        pending[item_id] = why
            now = time.monotonic()
            if not pending:
                break
            if best is None or len(pending) < best:
                best, progressed_at = len(pending), now
            stall_limit = max(self.config.settle_stall, self.config.settle_per_item * len(pending))
            if now >= hard_deadline or now - progressed_at >= stall_limit:
                break
            self.log(f"settling: {len(pending)} items not final yet ({dict(Counter(pending.values()))})")
            time.sleep(self.config.settle_poll)
        self.report.republished = len(republished)
        if pending:
            waited = time.monotonic() - started
            shown = ", ".join(f"{k} ({v})" for k, v in sorted(pending.items())[:20])
            self.report.problems.append(
                f"{len(pending)} items still not final after {waited:.0f}s of settling "
                f"(no progress for {time.monotonic() - progressed_at:.0f}s): {shown}"
            )
        # The last read of every business, after everything is final; the ledgers' write logs
        # are read only after it, so an item published per this read must be in its ledger.
        return {b.business_id: self.views(b) for b in self.businesses}

    def audit(self, every_view: dict[str, dict[str, dict[str, Any]]]) -> None:
        report = self.report
        outcomes: Counter[str] = Counter()
        for ledger in LEDGERS:
            outcomes.update(self._audit_ledger(ledger, every_view))
        report.outcomes = dict(sorted(outcomes.items()))
        report.captured = sum(len(b.captured) for b in self.businesses)
        report.with_document = sum(1 for b in self.businesses for i in b.captured.values() if "document" in i)
        report.reconnects = sum(b.reconnects for b in self.businesses)
        report.held_released = sum(b.held_seen for b in self.businesses)
        statuses: Counter[str] = Counter()
        for business in self.businesses:
            connection = _ok(business.api.get("/v1/connection"))
            statuses[connection["status"]] += 1
            if connection["status"] != "connected" and not connection["status_reason"]:
                report.problems.append(f"{business.business_id} is {connection['status']} with no reason")
        report.connections = dict(statuses)
        revoked = report.faults.get("consent revoked", {}).get("fired", 0)
        if revoked and not report.reconnects:
            report.problems.append("consent was revoked but no connection went needs_reconnect")

    def _audit_ledger(self, ledger: Ledger, every_view: dict[str, dict[str, dict[str, Any]]]) -> Counter[str]:
        """One ledger's books against what its businesses captured; returns their outcomes."""
        provider, problems = ledger.provider, self.report.problems
        mine = [b for b in self.businesses if b.ledger.provider == provider]
        creates = [
            w for w in _ok(self.browser.get(f"{self.control(provider)}/writes")) if w["action"] == "create"
        ]
        document_kind, attachment_kind = ledger.document_kind.lower(), ATTACHMENT_KIND[provider].lower()
        documents = Counter(
            REFERENCE[provider](w["body"] or {})
            for w in creates
            if w["kind"].lower() == document_kind and ledger.is_document(w["body"] or {})
        )
        attachments = sum(1 for w in creates if w["kind"].lower() == attachment_kind)
        # A supplier new to the ledger is created there once per organisation, whatever happens.
        suppliers: Counter[tuple[str, str]] = Counter()
        for w in creates:
            if w["kind"].lower() not in (document_kind, attachment_kind):
                for name in set(SOAK_SUPPLIER.findall(json.dumps(w["body"]))):
                    suppliers[(w["org"], name)] += 1
        twice = [ref for ref, n in documents.items() if n > 1]
        if twice:
            problems.append(f"{provider}: documents created more than once: {twice[:5]}")
        if any(n > 1 for n in suppliers.values()):
            problems.append(
                f"{provider}: suppliers created twice: {[k for k, n in suppliers.items() if n > 1][:5]}"
            )
        attached = 0
        counts: Counter[str] = Counter()
        for business in mine:
            seen = every_view[business.business_id]
            for item_id, item in business.captured.items():
                view = seen.get(item_id)
                if view is None:
                    problems.append(f"{item_id}: captured but not found (lost)")
                    continue
                counts[view["status"]] += 1
                attached += self._check_item(provider, item, view, documents.get(item["reference"], 0))
        if attachments != attached:
            # More: a document attached twice (or attached to nothing we know); fewer: an item
            # that says its document is attached while the ledger has no such attachment.
            problems.append(
                f"{provider}: {attachments} attachments written for {attached} attached documents"
            )
        self.report.per_ledger[provider] = {
            "businesses": len(mine),
            "captured": sum(len(b.captured) for b in mine),
            **dict(sorted(counts.items())),
            "documents_in_ledger": sum(documents.values()),
            "attachments_in_ledger": attachments,
            "reconnects": sum(b.reconnects for b in mine),
        }
        return counts

    def _business_of(self, item_id: str) -> Business:
        return next(b for b in self.businesses if item_id in b.captured)

    def _check_item(self, provider: str, item: dict[str, Any], view: dict[str, Any], in_ledger: int) -> int:
        """Problems with one item; returns 1 when its document is attached in the ledger."""
        problems, item_id, status = self.report.problems, item["id"], view["status"]
        error = view.get("last_error") or {}
        if status != "published":
            if in_ledger:
                # Read it again: a race (it published after the last read) is not a fault; an item
                # that says it was not published while its bill is in the ledger is.
                again = _ok(self._business_of(item_id).api.get(f"/v1/items/{item_id}"))
                if again["status"] != "published" or in_ledger != 1:
                    problems.append(
                        f"{item_id} is {again['status']} but {in_ledger} documents reached {provider}"
                    )
                    return 0
                self.report.late_published += 1
                return self._check_item(provider, item, again, in_ledger)
            why = f"{status} {error.get('code')}: {(error.get('ledger_message') or error.get('message') or '')[:160]}"
            with self._lock:
                self.report.explanations[why] = self.report.explanations.get(why, 0) + 1
            if not (error.get("message") and error.get("hint")):
                problems.append(f"{item_id} is {status} with no explanation: {view.get('last_error')}")
            return 0
        if in_ledger != 1:
            problems.append(f"{item_id}: published but {in_ledger} documents in {provider}")
        if "document" not in item:
            return 0
        if view.get("attachment_id"):
            return 1
        if not error:
            problems.append(f"{item_id}: its document was neither attached nor explained")
        return 0

    # -- the whole run ------------------------------------------------------------------------------

    def run(self, sampler: RssSampler) -> SoakReport:
        started = time.monotonic()
        self.connect_all()
        self.report.phases["set-up"] = round(time.monotonic() - started, 1)
        start_rss = sampler.sample()
        sampler.start()
        self.log(f"load and faults for {self.config.duration:.0f}s; runtime RSS {start_rss:.0f} MiB")
        stop_reconnects = threading.Event()
        clients = min(CAPTURE_WORKERS, len(self.businesses))
        workers = [
            *[
                threading.Thread(
                    target=self.capture_loop,
                    args=(self.businesses[n::clients], clients / self.config.rate),
                    name=f"capture-{n}",
                    daemon=True,
                )
                for n in range(clients)
            ],
            threading.Thread(target=self.fault_loop, name="faults", daemon=True),
            threading.Thread(
                target=self.reconnect_loop, args=(stop_reconnects,), name="reconnect", daemon=True
            ),
        ]
        load_started = time.monotonic()
        for worker in workers:
            worker.start()
        self._stop_load.wait(self.config.duration)
        self._stop_load.set()
        for worker in workers[:-1]:
            worker.join(timeout=180)
        self._api_calls.shutdown(wait=True)
        stop_reconnects.set()
        workers[-1].join(timeout=180)
        self.report.phases["load"] = round(time.monotonic() - load_started, 1)
        took = sorted(self._capture_seconds) or [0.0]
        self.report.capture_ms = {
            "median": round(took[len(took) // 2] * 1000),
            "p95": round(took[int(len(took) * 0.95)] * 1000),
        }
        settle_started = time.monotonic()
        self.collect_fault_counts()
        self.log("faults off; settling")
        every_view = self.settle()
        self.report.phases["settle"] = round(time.monotonic() - settle_started, 1)
        self.audit(every_view)
        sampler.stop()
        end_rss = sampler.sample()
        values = [value for _t, value in sampler.samples]
        self.report.rss_mb = {
            "start": round(start_rss, 1),
            "peak": round(max(values), 1),
            "end": round(end_rss, 1),
            "samples": len(values),
            "limit_growth": self.config.rss_growth_limit_mb,
        }
        if max(values) - start_rss > self.config.rss_growth_limit_mb:
            self.report.problems.append(
                f"runtime memory grew {max(values) - start_rss:.0f} MiB (limit {self.config.rss_growth_limit_mb:.0f})"
            )
        if not self.runtime.alive():
            self.report.problems.append("the runtime process died:\n" + self.runtime.tail())
        return self.report


def run_soak(config: SoakConfig) -> SoakReport:
    """Start the runtime, soak it, audit it; the report says what happened and what went wrong."""
    config.log(
        f"Starting ledgerlink local (auto-consent) for a {config.duration:.0f}s soak of {config.businesses} businesses..."
    )
    runtime = RuntimeProcess()
    soak: Soak | None = None
    try:
        runtime.start()
        soak = Soak(runtime, config)
        return soak.run(RssSampler(runtime))
    except DemoFailed as failure:
        report = soak.report if soak else SoakReport()
        report.problems.append(f"the soak could not run: {failure}")
        return report
    finally:
        runtime.stop()


def summary(report: SoakReport) -> list[str]:
    """The report as Markdown, for the console and bench/RESULTS.md."""
    rss = report.rss_mb
    spread = ", ".join(f"{provider} {row['businesses']}" for provider, row in report.per_ledger.items())
    lines = [
        f"- date: {report.started}; duration {report.config['duration_s']:.0f} s of load and faults "
        f"(set-up {report.phases.get('set-up', 0):.0f} s, settle {report.phases.get('settle', 0):.0f} s)",
        f"- businesses: {report.config['businesses']} ({spread}); "
        f"items captured: {report.captured} ({report.with_document} with a PDF, {report.resent} sent twice)",
        "- outcomes: "
        + ", ".join(f"{status} {n}" for status, n in report.outcomes.items())
        + f"; given up on during the faults and published again after: {report.republished}"
        + f"; not published on the last read but published when read again: {report.late_published}",
        "- faults (rules injected / times fired): "
        + ", ".join(
            f"{label} {entry['injected']}/{entry['fired']}" for label, entry in sorted(report.faults.items())
        ),
        f"- captures: {report.captured / max(report.phases.get('load', 1), 1):.2f} items/s achieved; one capture "
        f"(queue send or API call, with its PDF upload; API calls wait behind the publisher) took median {report.capture_ms.get('median')} ms, "
        f"p95 {report.capture_ms.get('p95')} ms",
        f"- reconnects after revoked consent: {report.reconnects}, with {report.held_released} held items released",
        "- connections at the end: " + ", ".join(f"{status} {n}" for status, n in report.connections.items()),
        f"- runtime RSS (MiB): start {rss.get('start')}, peak {rss.get('peak')}, end {rss.get('end')} "
        f"({rss.get('samples')} samples; bound: growth <= {rss.get('limit_growth')})",
        "",
        "| ledger | businesses | captured | published | rejected | failed | other | in ledger | attachments | reconnects |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for provider, row in report.per_ledger.items():
        other = row["captured"] - sum(row.get(s, 0) for s in ("published", "rejected", "failed"))
        lines.append(
            f"| {provider} | {row['businesses']} | {row['captured']} | {row.get('published', 0)} | "
            f"{row.get('rejected', 0)} | {row.get('failed', 0)} | {other} | {row['documents_in_ledger']} | "
            f"{row['attachments_in_ledger']} | {row['reconnects']} |"
        )
    lines.append("")
    if report.explanations:
        lines.append("Not published, and why (as the items say):")
        lines += [
            f"- {n} x {why}" for why, n in sorted(report.explanations.items(), key=lambda e: -e[1])[:10]
        ]
        lines.append("")
    lines.append("Result: " + ("every check passed" if report.ok else f"{len(report.problems)} problems"))
    lines += [f"- PROBLEM: {problem}" for problem in report.problems[:50]]
    return lines


def main(duration: float, businesses: int, rate: float | None = None, seed: int = 9) -> int:
    # About sixty faults in ten minutes; a short soak still gets every kind at least once.
    config = SoakConfig(
        duration=duration, businesses=businesses, seed=seed, fault_every=min(10.0, duration / 15)
    )
    if rate is not None:
        config.rate = rate
    report = run_soak(config)
    print("\n".join(["", "## Soak summary", *summary(report)]), flush=True)
    return 0 if report.ok else 1


__all__ = ["RuntimeProcess", "Soak", "SoakConfig", "SoakReport", "main", "run_soak", "summary"]
