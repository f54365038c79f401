"""The connection's publishing settings: General (destination per item type), Bank match, Tax
(a default tax rate from the imported list), Automatic publishing."""

from __future__ import annotations

from ledgerlink.api.auth import Caller, require_admin
from ledgerlink.clock import Clock
from ledgerlink.errors import ResourceNotFound, Unprocessable
from ledgerlink.models.common import ListType
from ledgerlink.models.connection import Connection, PublishingSettings
from ledgerlink.models.lists import RecordStatus, list_type_of
from ledgerlink.providers import registry
from ledgerlink.storage.connections import ConnectionRepository, StaleConnection
from ledgerlink.storage.lists import ListRepository

SAVE_ATTEMPTS = 5


class BankMatchUnsupported(Unprocessable):
    code = "bank_match_unsupported"


class SettingsService:
    def __init__(self, *, connections: ConnectionRepository, lists: ListRepository, clock: Clock):
        self._connections = connections
        self._lists = lists
        self._clock = clock

    def get(self, caller: Caller) -> PublishingSettings:
        return self._connection_of(caller).settings

    def update(self, caller: Caller, settings: PublishingSettings) -> PublishingSettings:
        require_admin(caller, "change the publishing settings")
        for _attempt in range(SAVE_ATTEMPTS):
            connection = self._connection_of(caller)
            self._validate(connection, settings)
            try:
                return self._connections.save(connection.model_copy(update={"settings": settings})).settings
            except StaleConnection:
                continue  # a refresh or status change saved the connection meanwhile: read again
        raise StaleConnection("the connection kept changing; try again")

    def _validate(self, connection: Connection, settings: PublishingSettings) -> None:
        capabilities = registry.capabilities(connection.provider)
        ledger = capabilities.display_name
        for item_type, destination in settings.destinations.items():
            choices = capabilities.destinations.get(item_type, ())
            if destination not in choices:
                raise Unprocessable(
                    f"{ledger} has no destination {destination!r} for {item_type.value} items; choose one of: "
                    + (", ".join(choices) or "none"),
                    field=f"destinations.{item_type.value}",
                )
        if settings.bank_match and not capabilities.bank_match:
            raise BankMatchUnsupported(
                f"{ledger} has no bank match: paid items can be matched to a bank account in Xero and Sage only",
                field="bank_match",
            )
        if settings.default_tax_rate is not None:
            if list_type_of(settings.default_tax_rate) != ListType.TAX_RATES:
                raise Unprocessable(
                    "default_tax_rate must be a tax rate id from GET /v1/lists/tax_rates",
                    field="default_tax_rate",
                )
            record = self._lists.get(connection.connection_id, settings.default_tax_rate)
            if record is None:
                raise Unprocessable(
                    "that tax rate is not in the imported tax rates; refresh the lists",
                    field="default_tax_rate",
                )
            if record.status == RecordStatus.ARCHIVED:
                raise Unprocessable(
                    f"the tax rate {record.name} is archived in {ledger}", field="default_tax_rate"
                )

    def _connection_of(self, caller: Caller) -> Connection:
        connection = self._connections.get(caller.business_id)
        if connection is None:
            raise ResourceNotFound("this business has no accounting connection yet")
        return connection
