"""Builds each function's service from the current runtime, once per container.

Handlers call these factories inside the request (never at import), so tests and the local runtime
that install their own ``Runtime`` get services wired to moto and the simulators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ledgerlink.runtime import Runtime, current_runtime
from ledgerlink.services.connection_status import ConnectionStatusKeeper
from ledgerlink.services.events import EventPublisher
from ledgerlink.services.ledgers import Ledgers
from ledgerlink.services.queues import HeldItems, PublishQueue, RefreshQueue
from ledgerlink.settings import (
    CommonSettings,
    ConnectionSettings,
    MergeSettings,
    PublishSettings,
    RefreshSettings,
)
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.items import ItemRepository
from ledgerlink.storage.licences import LicenceRepository
from ledgerlink.storage.lists import ListRepository, RefreshRecordRepository
from ledgerlink.storage.oauth_state import OAuthStateRepository
from ledgerlink.storage.rules import RuleRepository
from ledgerlink.storage.schema import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

# Each service (and Powertools' batch utility) is imported by the factory that builds it: a handler's
# cold start loads only the services it serves, not the other three functions'.
if TYPE_CHECKING:
    from ledgerlink.services.connection_settings import SettingsService
    from ledgerlink.services.connections import ConnectionService
    from ledgerlink.services.items import ItemService
    from ledgerlink.services.licences import LicenceService
    from ledgerlink.services.lists import ListService
    from ledgerlink.services.merge import MergeService
    from ledgerlink.services.planning import Planner
    from ledgerlink.services.publish_consumer import PublishConsumer
    from ledgerlink.services.publishing import Publisher
    from ledgerlink.services.rules import RuleService

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
    from ledgerlink.services.licences import LicenceService

    settings = runtime.settings(ConnectionSettings)
    table = _table(runtime, settings)
    return LicenceService(
        licences=LicenceRepository(table), connections=ConnectionRepository(table), clock=runtime.clock
    )


@per_container
def settings_service(runtime: Runtime) -> SettingsService:
    from ledgerlink.services.connection_settings import SettingsService

    settings = runtime.settings(ConnectionSettings)
    table = _table(runtime, settings)
    return SettingsService(
        connections=ConnectionRepository(table), lists=ListRepository(table), clock=runtime.clock
    )


@per_container
def connection_service(runtime: Runtime) -> ConnectionService:
    from ledgerlink.services.connections import ConnectionService

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
        refreshes=RefreshRecordRepository(table),
    )


@per_container
def list_service(runtime: Runtime) -> ListService:
    from ledgerlink.services.lists import ListService

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
        refreshes=RefreshRecordRepository(table),
        refresh_queue=RefreshQueue(runtime.aws_client("sqs"), settings.refresh_queue_url),
        table=table,
    )


def _planner(runtime: Runtime, table: Table) -> Planner:
    from ledgerlink.services.planning import Planner

    return runtime.memo("planner", lambda: Planner(ListRepository(table), RuleRepository(table)))


@per_container
def item_service(runtime: Runtime) -> ItemService:
    from ledgerlink.services.items import ItemService

    settings = runtime.settings(PublishSettings)
    table = _table(runtime, settings)
    return ItemService(
        items=ItemRepository(table),
        connections=ConnectionRepository(table),
        planner=_planner(runtime, table),
        queue=PublishQueue(runtime.aws_client("sqs"), settings.publish_queue_url),
        clock=runtime.clock,
    )


@per_container
def publisher(runtime: Runtime) -> Publisher:
    from ledgerlink.services.publishing import Publisher

    settings = runtime.settings(PublishSettings)
    connections, ledgers, events, status = _common(runtime, settings)
    table = _table(runtime, settings)
    return Publisher(
        items=ItemRepository(table),
        connections=connections,
        lists=ListRepository(table),
        ledgers=ledgers,
        planner=_planner(runtime, table),
        status=status,
        events=events,
        documents=runtime.aws_client("s3"),
        documents_bucket=settings.documents_bucket,
        clock=runtime.clock,
    )


@per_container
def publish_consumer(runtime: Runtime) -> PublishConsumer:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    from ledgerlink.services.publish_consumer import PublishConsumer

    settings = runtime.settings(PublishSettings)
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.table_name,
        key_attr=PARTITION_KEY,
        sort_key_attr=SORT_KEY,
        expiry_attr=TTL_ATTRIBUTE,
        boto3_client=runtime.aws_client("dynamodb"),
    )
    # A message delivered again within the hour is captured once (the whole message is the key).
    config = IdempotencyConfig(expires_after_seconds=3600)

    def capture_once(function: Callable[..., Any]) -> Callable[..., Any]:
        wrapped: Callable[..., Any] = idempotent_function(
            function, data_keyword_argument="message", persistence_store=persistence, config=config
        )
        return wrapped

    return PublishConsumer(
        items=item_service(),
        publisher=publisher(),
        queue=PublishQueue(runtime.aws_client("sqs"), settings.publish_queue_url),
        capture_once=capture_once,
        bind_context=config.register_lambda_context,
    )


# --- merge_lists: supplier and customer rules, Merge Lists (issue 7) -------------------------------------


@per_container
def rule_service(runtime: Runtime) -> RuleService:
    from ledgerlink.services.planning import Planner
    from ledgerlink.services.rules import RuleService

    settings = runtime.settings(MergeSettings)
    table = _table(runtime, settings)
    rules = RuleRepository(table)
    return RuleService(
        rules=rules,
        connections=ConnectionRepository(table),
        lists=ListRepository(table),
        items=ItemRepository(table),
        # Its own planner, caching lists per container for re-resolving waiting items.
        planner=Planner(ListRepository(table), rules),
        queue=PublishQueue(runtime.aws_client("sqs"), settings.publish_queue_url),
        clock=runtime.clock,
    )


@per_container
def merge_service(runtime: Runtime) -> MergeService:
    from ledgerlink.services.merge import MergeService
    from ledgerlink.storage.merge import AtomicWriter, MergeRepository

    settings = runtime.settings(MergeSettings)
    table = _table(runtime, settings)
    return MergeService(
        connections=ConnectionRepository(table),
        lists=ListRepository(table),
        rules=RuleRepository(table),
        items=ItemRepository(table),
        merges=MergeRepository(table),
        writer=AtomicWriter(table),
        events=EventPublisher(runtime.aws_client("events"), settings.event_bus_name),
        clock=runtime.clock,
    )
