"""Builds each function's service from the current runtime, once per container.

Handlers call these factories inside the request (never at import), so tests and the local runtime
that install their own ``Runtime`` get services wired to moto and the simulators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ledgerlink.runtime import Runtime, current_runtime
from ledgerlink.services.connection_settings import SettingsService
from ledgerlink.services.connection_status import ConnectionStatusKeeper
from ledgerlink.services.connections import ConnectionService
from ledgerlink.services.events import EventPublisher
from ledgerlink.services.ledgers import Ledgers
from ledgerlink.services.licences import LicenceService
from ledgerlink.services.lists import ListService
from ledgerlink.services.publishing import PublishingService
from ledgerlink.services.queues import HeldItems, PublishQueue, RefreshQueue
from ledgerlink.settings import CommonSettings, ConnectionSettings, PublishSettings, RefreshSettings
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.items import ItemRepository
from ledgerlink.storage.licences import LicenceRepository
from ledgerlink.storage.lists import ListRepository
from ledgerlink.storage.oauth_state import OAuthStateRepository

T = TypeVar("T")


def _table(runtime: Runtime, settings: CommonSettings) -> Table:
    return runtime.memo(
        ("table", settings.table_name), lambda: Table(runtime.aws_client("dynamodb"), settings.table_name)
    )


def _common(
    runtime: Runtime, settings: CommonSettings
) -> tuple[ConnectionRepository, Ledgers, EventPublisher, ConnectionStatusKeeper]:
    table = _table(runtime, settings)
    connections = ConnectionRepository(table)
    ledgers = runtime.memo("ledgers", lambda: Ledgers(settings, runtime, connections, table))
    events = EventPublisher(runtime.aws_client("events"), settings.event_bus_name)
    return connections, ledgers, events, ConnectionStatusKeeper(connections, events, runtime.clock)


def per_container(build: Callable[[Runtime], T]) -> Callable[[], T]:
    """Turn a builder into a factory that builds once per runtime (per container) and reuses."""

    def get() -> T:
        runtime = current_runtime()
        return runtime.memo(build.__name__, lambda: build(runtime))

    get.__name__ = build.__name__
    get.__doc__ = build.__doc__
    return get


@per_container
def licence_service(runtime: Runtime) -> LicenceService:
    settings = runtime.settings(ConnectionSettings)
    table = _table(runtime, settings)
    return LicenceService(
        licences=LicenceRepository(table), connections=ConnectionRepository(table), clock=runtime.clock
    )


@per_container
def settings_service(runtime: Runtime) -> SettingsService:
    settings = runtime.settings(ConnectionSettings)
    table = _table(runtime, settings)
    return SettingsService(
        connections=ConnectionRepository(table), lists=ListRepository(table), clock=runtime.clock
    )


@per_container
def connection_service(runtime: Runtime) -> ConnectionService:
    settings = runtime.settings(ConnectionSettings)
    connections, ledgers, _events, status = _common(runtime, settings)
    table = _table(runtime, settings)
    sqs = runtime.aws_client("sqs")
    return ConnectionService(
        settings=settings,
        connections=connections,
        states=OAuthStateRepository(table),
        lists=ListRepository(table),
        ledgers=ledgers,
        status=status,
        licences=licence_service(),
        refresh_queue=RefreshQueue(sqs, settings.refresh_queue_url),
        held_items=HeldItems(
            ItemRepository(table), PublishQueue(sqs, settings.publish_queue_url), runtime.clock
        ),
        clock=runtime.clock,
    )


@per_container
def list_service(runtime: Runtime) -> ListService:
    settings = runtime.settings(RefreshSettings)
    connections, ledgers, events, status = _common(runtime, settings)
    table = _table(runtime, settings)
    return ListService(
        connections=connections,
        lists=ListRepository(table),
        ledgers=ledgers,
        status=status,
        events=events,
        clock=runtime.clock,
        refresh_queue=RefreshQueue(runtime.aws_client("sqs"), settings.refresh_queue_url),
        table=table,
    )


@per_container
def publishing_service(runtime: Runtime) -> PublishingService:
    settings = runtime.settings(PublishSettings)
    connections, ledgers, events, status = _common(runtime, settings)
    table = _table(runtime, settings)
    return PublishingService(
        items=ItemRepository(table),
        connections=connections,
        lists=ListRepository(table),
        ledgers=ledgers,
        status=status,
        events=events,
        queue=PublishQueue(runtime.aws_client("sqs"), settings.publish_queue_url),
        documents=runtime.aws_client("s3"),
        documents_bucket=settings.documents_bucket,
        clock=runtime.clock,
    )
