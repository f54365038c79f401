"""The whole service in-process: moto for AWS, the simulators and the API gateway behind one
routing httpx transport, the simulator's clock shared with ledgerlink. No sockets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from infra.api_routes import FunctionName
from ledgerlink.runtime import Runtime, install_runtime
from sandbox.aws_resources import REGION, LocalResources, create_resources
from sandbox.devauth import mint_token
from sandbox.gateway import LocalGateway
from sandbox.lambda_host import FunctionHost, current_function
from sandbox.poller import QueuePoller, SimulatedQueueTime
from sandbox.simulators import SIMULATORS
from sandbox.simulators.harness import LedgerSimulator, SimClock
from sandbox.simulators.xero import XeroSimulator
from sandbox.transport import RoutingTransport

API_HOST = "127.0.0.1"
API_URL = f"http://{API_HOST}:8000"  # the simulators accept loopback redirect URIs only
APP_ORIGIN = "https://app.capture.test"
# Each ledger's simulator answers, in-process, on a made-up host of its own.
LEDGER_HOSTS = {provider: f"{provider}.sim" for provider in SIMULATORS}
KASHFLOW_LOGIN = {"username": "demo", "password": "demo-password", "memorable_word": "ledgerlink"}


@dataclass
class Service:
    """Handles on everything a test needs."""

    session: Any
    resources: LocalResources
    clock: SimClock
    transport: RoutingTransport
    host: FunctionHost = field(default_factory=FunctionHost)
    simulators: dict[str, LedgerSimulator] = field(default_factory=dict)
    _pollers: list[QueuePoller] = field(default_factory=list)
    queue_time: SimulatedQueueTime | None = None

    def simulator(self, provider: str) -> LedgerSimulator:
        """The ledger's simulator, started on first use (a test pays only for the ledgers it uses)."""
        if provider not in self.simulators:
            self.simulators[provider] = SIMULATORS[provider](self.clock, auto_consent=True)
            self.transport.add(LEDGER_HOSTS[provider], self.simulators[provider].transport())
        return self.simulators[provider]

    @property
    def xero(self) -> XeroSimulator:
        simulator = self.simulator("xero")
        assert isinstance(simulator, XeroSimulator)
        return simulator

    def client(self, business: str = "biz-1", role: str = "admin", user: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {mint_token(business, role, user_id=user)}"}
        return httpx.Client(transport=self.transport, base_url=API_URL, headers=headers)

    def browser(self) -> httpx.Client:
        """A client with no sign-in token (the ledger's redirect back to us carries none)."""
        return httpx.Client(transport=self.transport)

    def poller(self, queue_url: str, function: FunctionName) -> QueuePoller:
        return QueuePoller(self.session.client("sqs"), queue_url, function, self.host)

    def drain(self, *, max_batches: int = 200) -> int:
        """Run both consumers until their queues are empty (or hold only messages waiting out
        a Retry-After); returns the messages handled. A refresh paced by the call budget comes
        back after the simulated seconds it handed back, as it would have slept them before."""
        handled = 0
        for _ in range(max_batches):
            batch = sum(poller.poll_once() for poller in self.pollers)
            handled += batch
            if batch == 0 and not (
                self.queue_time is not None
                and self.queue_time.release_paced(self.pollers[0], self.clock.advance)
            ):
                return handled
        raise AssertionError("queues did not drain")

    @property
    def pollers(self) -> list[QueuePoller]:
        if not self._pollers:
            self._pollers = [
                self.poller(self.resources.refresh_queue_url, FunctionName.REFRESH_LISTS),
                self.poller(self.resources.publish_queue_url, FunctionName.PUBLISH_ITEM),
            ]
        return self._pollers

    def let_time_pass(self, seconds: float) -> None:
        """Simulated time moves on: the ledgers' rate windows reopen and the messages held back
        by a Retry-After are delivered again (SQS itself runs on wall-clock time)."""
        self.clock.advance(seconds)
        for poller in self.pollers:
            poller.make_failed_visible()

    def events(self) -> list[dict[str, Any]]:
        sqs = self.session.client("sqs")
        found = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=self.resources.events_queue_url, MaxNumberOfMessages=10
            ).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(
                    QueueUrl=self.resources.events_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def consent(self, authorize_url: str, organisation_ids: list[str]) -> httpx.Response:
        """Sign in on the ledger's consent page and pick organisations, as a person would; returns
        our callback's answer."""
        form = {
            "username": "admin@example.com",
            "password": "sandbox",
            "organisation": organisation_ids,
            "action": "allow",
        }
        consented = self.browser().post(authorize_url, data=form)
        assert consented.status_code == 302, consented.text[:500]
        return self.browser().get(consented.headers["location"])

    def connect_xero(self, business: str = "biz-1", *, organisation_index: int = 0) -> dict[str, Any]:
        return self.connect("xero", business, organisation_index=organisation_index)

    def connect(
        self, provider: str, business: str = "biz-1", *, organisation_index: int = 0
    ) -> dict[str, Any]:
        """Connect through the ledger's real sign-in (the OAuth redirect dance, or KashFlow's
        login) and wait for the first import."""
        self.simulator(provider)
        admin = self.client(business)
        if provider == "kashflow":
            started = admin.post("/v1/connection", json={"provider": provider, "credentials": KASHFLOW_LOGIN})
            assert started.status_code == 201, started.text
            self.drain()
            return admin.get("/v1/connection").json()
        started = admin.post("/v1/connection", json={"provider": provider})
        assert started.status_code == 201, started.text
        landed = self.browser().get(started.json()["authorize_url"], follow_redirects=True)
        assert landed.status_code == 200, landed.text
        if landed.json()["status"] == "choose_organisation":
            organisations = admin.get("/v1/connection/organisations").json()["organisations"]
            chosen = admin.post(
                "/v1/connection/organisation",
                json={"organisation_id": organisations[organisation_index]["id"]},
            )
            assert chosen.status_code == 200, chosen.text
        self.drain()
        return admin.get("/v1/connection").json()


# service:Operation calls each function's handler made, across the whole integration run.
AWS_CALLS: dict[FunctionName, set[str]] = {}


# TransactWriteItems is no IAM action of its own: IAM checks each action inside it.
_TRANSACTION_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


# Batch operations that IAM authorises as their single-message action.
_BATCH_ACTIONS = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage"}


def _record_aws_call(model: Any, params: Any = None, **_kwargs: Any) -> None:
    function = current_function()
    if function is None:
        return
    calls = AWS_CALLS.setdefault(function, set())
    if model.name in _BATCH_ACTIONS:
        calls.add(f"{model.service_model.signing_name}:{_BATCH_ACTIONS[model.name]}")
        return
    if model.name == "TransactWriteItems":
        # before-call sees the serialised request: DynamoDB's is a JSON body.
        for action in json.loads((params or {}).get("body") or b"{}").get("TransactItems", []):
            calls |= {f"dynamodb:{_TRANSACTION_ACTIONS[kind]}" for kind in action}
        return
    calls.add(f"{model.service_model.signing_name}:{model.name}")


def _sleep_on(clock: SimClock):
    def sleep(seconds: float) -> None:
        # Simulated time moves by the full wait; real time only a little, so threads interleave.
        clock.advance(seconds)
        time.sleep(min(seconds, 0.005))

    return sleep


# Secrets of the test set-up itself (app secret, KashFlow login) that must never be logged either.
FIXED_SECRETS = ("ledgerlink-dev-secret", KASHFLOW_LOGIN["password"])


def _assert_no_secret_logged(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    secrets = [s for simulator in service.simulators.values() for s in simulator.issued_secrets()]
    secrets += FIXED_SECRETS
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    leaked = [secret[:10] + "..." for secret in secrets if secret and secret in logged]
    assert not leaked, f"secret values reached the logs: {leaked}"


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[Service]:
    """Every test that uses the service also proves no token or secret reached its logs."""
    caplog.set_level("DEBUG")
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        queue_time = SimulatedQueueTime(session)
        resources = create_resources(session)
        # Watch what the handlers really call, to hold it against the IAM grants (test_iam_usage).
        session.events.register("before-call", _record_aws_call)
        origins = {provider: f"https://{host}" for provider, host in LEDGER_HOSTS.items()}
        for name, value in resources.environment(
            api_url=API_URL, ledger_origins=origins, return_origins=[APP_ORIGIN]
        ).items():
            monkeypatch.setenv(name, value)
        clock = SimClock()
        hosts = {host: provider for provider, host in LEDGER_HOSTS.items()}
        transport = RoutingTransport(
            {}, start=lambda host: service.simulator(hosts[host]).transport() if host in hosts else None
        )
        service = Service(
            session=session, resources=resources, clock=clock, transport=transport, queue_time=queue_time
        )
        transport.add(API_HOST, httpx.WSGITransport(app=LocalGateway(service.host)))
        install_runtime(
            Runtime(clock=clock, http_transport=transport, sleep=_sleep_on(clock), boto3_session=session)
        )
        try:
            yield service
            _assert_no_secret_logged(service, caplog)
        finally:
            install_runtime(None)
