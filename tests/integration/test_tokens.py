"""Token safety: one refresh per connection at a time, rotated tokens saved before use, lost
refresh responses, revoked consent, and no secret value in any log."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from infra.api_routes import FunctionName
from ledgerlink.errors import Unavailable
from ledgerlink.models.connection import ConnectionStatus
from ledgerlink.runtime import current_runtime
from ledgerlink.services.ledgers import Ledgers
from ledgerlink.settings import PublishSettings
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.schema import TOKENS_SK, connection_pk
from tests.integration.conftest import Service
from tests.integration.helpers import cost_item

SUPPLIER = "Avon Security & Sons"


def _ledgers(service: Service) -> tuple[Ledgers, ConnectionRepository]:
    runtime = current_runtime()
    settings = runtime.settings(PublishSettings)
    table = Table(runtime.aws_client("dynamodb"), settings.table_name)
    connections = ConnectionRepository(table)
    return Ledgers(settings, runtime, connections, table), connections


def _token_calls(service: Service) -> list:
    return service.xero.request_log.entries(path_glob="/connect/token", method="POST")


@pytest.fixture
def connected(service: Service) -> Service:
    service.connect_xero()
    return service


def test_an_expired_access_token_is_refreshed_once_and_the_rotated_token_is_stored(connected: Service):
    ledgers, connections = _ledgers(connected)
    connection = connections.get("biz-1")
    store = ledgers.token_store(connection.token_store)
    before = store.read(connection.connection_id)
    connected.clock.advance(31 * 60)  # Xero access tokens live 30 minutes

    ledgers.session(connection).access_token(False)
    after = store.read(connection.connection_id)
    assert after.generation == before.generation + 1
    assert after.refresh_token.get_secret_value() != before.refresh_token.get_secret_value()
    assert connections.get("biz-1").token_generation == after.generation
    states = {r["token"]: r["status"] for r in connected.xero.refresh_tokens()}
    assert states[after.refresh_token.get_secret_value()] == "current"
    assert states[before.refresh_token.get_secret_value()] == "superseded"


def test_twenty_workers_with_an_expired_token_cause_exactly_one_refresh(connected: Service):
    _ledgers_unused, connections = _ledgers(connected)
    connection = connections.get("biz-1")
    connected.clock.advance(31 * 60)
    calls_before = len(_token_calls(connected))
    tokens: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def worker() -> None:
        # Each worker is its own container: its own token cache and its own lease attempts.
        ledgers, _ = _ledgers(connected)
        start.wait()
        try:
            tokens.append(ledgers.session(connection).access_token(False))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(tokens) == 20 and len(set(tokens)) == 1
    refreshes = _token_calls(connected)[calls_before:]
    assert len(refreshes) == 1 and refreshes[0].status == 200


def test_a_lost_refresh_response_is_recovered_inside_xeros_grace_window(connected: Service):
    ledgers, connections = _ledgers(connected)
    connection = connections.get("biz-1")
    store = ledgers.token_store(connection.token_store)
    original = store.read(connection.connection_id)
    connected.clock.advance(31 * 60)
    connected.xero.inject_fault("lost_response", "/connect/token", method="POST", count=1)

    with pytest.raises(Unavailable):
        ledgers.session(connection).access_token(False)
    assert store.read(connection.connection_id).generation == original.generation  # nothing half-saved

    # Xero rotated on its side; the old refresh token still works for 30 minutes.
    token = ledgers.session(connection).access_token(False)
    assert token
    assert store.read(connection.connection_id).generation == original.generation + 1
    assert connections.get("biz-1").status == ConnectionStatus.CONNECTED


def test_a_lost_refresh_response_at_sage_ends_in_needs_reconnect_saying_why(service: Service):
    """Sage's refresh tokens are single use with no grace: once a rotation's response is lost the
    connection cannot recover by itself, and it says so instead of failing silently."""
    connection = service.connect("sage")
    assert connection["status"] == "connected"
    api = service.client()
    service.clock.advance(6 * 60)  # Sage access tokens live five minutes
    service.simulator("sage").inject_fault("lost_response", "/token", method="POST", count=1)
    refresh = {"business_id": "biz-1", "connection_id": connection["connection_id"], "reason": "requested"}
    sqs = service.session.client("sqs")
    sqs.send_message(QueueUrl=service.resources.refresh_queue_url, MessageBody=json.dumps(refresh))
    service.drain()  # the refresh's response is lost: a transient failure, the message comes back
    assert api.get("/v1/connection").json()["status"] == "refresh_failing"
    sqs.purge_queue(QueueUrl=service.resources.refresh_queue_url)
    sqs.send_message(QueueUrl=service.resources.refresh_queue_url, MessageBody=json.dumps(refresh))
    service.drain()
    after = api.get("/v1/connection").json()
    assert after["status"] == "needs_reconnect"
    assert "invalid_grant" in after["status_reason"] or "refused" in after["status_reason"]
    assert not [key for key in after if "token" in key]  # the view never carries token material


def test_sage_tokens_live_in_the_kms_encrypted_table_not_secrets_manager(service: Service):
    connection = service.connect("sage")
    secrets = service.session.client("secretsmanager").list_secrets()["SecretList"]
    assert not [s for s in secrets if connection["connection_id"] in s["Name"]]
    table = Table(service.session.client("dynamodb"), service.resources.table_name)
    stored = table.get(connection_pk(connection["connection_id"]), TOKENS_SK)
    assert stored is not None and "ciphertext" in stored


def test_consent_revoked_at_xero_marks_the_connection_and_holds_the_item(connected: Service):
    api = connected.client()
    item = cost_item(api, "cap-held", supplier=SUPPLIER)
    connected.events()
    connected.xero.revoke_consent()
    connected.clock.advance(31 * 60)
    api.post("/v1/items", json={"item": item, "publish": True})
    connected.drain()

    connection = api.get("/v1/connection").json()
    assert connection["status"] == "needs_reconnect"
    assert "refused" in connection["status_reason"]
    view = api.get("/v1/items/cap-held").json()
    assert view["status"] == "held"
    assert view["last_error"]["code"] == "needs_reconnect"
    changes = [e["detail"] for e in connected.events() if e["detail-type"] == "connection.status_changed"]
    assert [c["status"] for c in changes] == ["needs_reconnect"]


def test_no_token_or_secret_value_reaches_the_logs(service: Service, caplog, capfd):
    caplog.set_level("DEBUG")
    service.connect_xero()
    api = service.client()
    service.clock.advance(31 * 60)
    api.post("/v1/items", json={"item": cost_item(api, "cap-log", supplier=SUPPLIER), "publish": True})
    service.drain()
    ledgers, connections = _ledgers(service)
    connection = connections.get("biz-1")
    tokens = ledgers.token_store(connection.token_store).read(connection.connection_id)
    secrets = [
        tokens.access_token.get_secret_value(),
        tokens.refresh_token.get_secret_value(),
        "ledgerlink-dev-secret",
        *[r["token"] for r in service.xero.refresh_tokens()],
    ]
    captured = capfd.readouterr()
    everything = caplog.text + captured.out + captured.err + "".join(str(r.__dict__) for r in caplog.records)
    assert api.get("/v1/items/cap-log").json()["status"] == "published"
    leaked = [secret[:12] + "..." for secret in secrets if secret in everything]
    assert leaked == []


def test_a_connection_idle_past_its_refresh_token_life_needs_a_reconnect(connected: Service):
    """Unused Xero refresh tokens die after 60 days (the scheduled keep-alive exists to prevent it)."""
    _, connections = _ledgers(connected)
    connection = connections.get("biz-1")
    connected.clock.advance(timedelta(days=61).total_seconds())
    api = connected.client()
    api.post("/v1/items", json={"item": cost_item(api, "cap-idle", supplier=SUPPLIER), "publish": True})
    connected.drain()
    assert api.get("/v1/connection").json()["status"] == "needs_reconnect"
    assert connections.get("biz-1").connection_id == connection.connection_id


def test_the_schedule_keeps_an_idle_connection_alive(connected: Service):
    """Nothing published for 55 days: the scheduled refresh renews the refresh token, so the
    connection still works ten days after Xero's 60-day limit would have killed the first one."""
    connected.clock.advance(timedelta(days=55).total_seconds())
    connected.host.invoke(FunctionName.REFRESH_LISTS, {"source": "ledgerlink.schedule", "action": "fan_out"})
    connected.drain()
    connected.clock.advance(timedelta(days=10).total_seconds())
    api = connected.client()
    api.post("/v1/items", json={"item": cost_item(api, "cap-alive", supplier=SUPPLIER), "publish": True})
    connected.drain()
    assert api.get("/v1/connection").json()["status"] == "connected"
    assert api.get("/v1/items/cap-alive").json()["status"] == "published"


def test_a_failing_token_endpoint_marks_the_connection_until_it_recovers(connected: Service):
    api = connected.client()
    connected.events()
    connected.clock.advance(31 * 60)
    connected.xero.inject_fault("503", "/connect/token", method="POST", count=None)
    connection_id = api.get("/v1/connection").json()["connection_id"]
    refresh = {"business_id": "biz-1", "connection_id": connection_id, "reason": "requested"}
    sqs = connected.session.client("sqs")
    sqs.send_message(QueueUrl=connected.resources.refresh_queue_url, MessageBody=json.dumps(refresh))
    connected.drain()
    failing = api.get("/v1/connection").json()
    assert failing["status"] == "refresh_failing"
    assert "503" in failing["status_reason"]

    connected.xero.clear_faults()
    sqs.purge_queue(QueueUrl=connected.resources.refresh_queue_url)
    sqs.send_message(QueueUrl=connected.resources.refresh_queue_url, MessageBody=json.dumps(refresh))
    connected.drain()
    assert api.get("/v1/connection").json()["status"] == "connected"
    changes = [
        e["detail"]["status"] for e in connected.events() if e["detail-type"] == "connection.status_changed"
    ]
    assert changes == ["refresh_failing", "connected"]
